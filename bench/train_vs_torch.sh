#!/usr/bin/env bash
# Training speed, ours beside the PyTorch reference scripts, in one run on one machine.
#
#   bench/train_vs_torch.sh [--reps N] [--world W] [--threads T] [--new-torch PY] [mlp] [cnn] [gpt]
#
# --new-torch PY: also run the reference under the python PY (a venv with the newest
# torch from PyPI), ranks started by hand with env:// as launch_torch.sh does; the ratio
# is then taken against the faster of the two torches.
# For each model, alternates the reference (../shared/bench/torch_*_ddp.py, launched by
# ../shared/bench/launch_torch.sh with OMP_NUM_THREADS=T) and our example (build/bin/
# train_fmnist / train_gpt with --threads T; under build/bin/dtrun for W > 1), N times
# each, and prints every RESULT's throughput, the medians and the ratio ours / torch.
# Same flags on both sides; the throughput is what each program's RESULT line reports
# (samples/s for mlp and cnn, tokens/s for gpt, summed over ranks).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${DTRAIN_SHARED:-$here/../shared}
reps=3 world=1 threads=1 models=() newpy=
while [ $# -gt 0 ]; do
    case $1 in
        --reps) reps=$2; shift 2 ;;
        --world) world=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --new-torch) newpy=$2; shift 2 ;;
        mlp|cnn|gpt) models+=("$1"); shift ;;
        *) echo "usage: $0 [--reps N] [--world W] [--threads T] [--new-torch PY] [mlp] [cnn] [gpt]" >&2; exit 2 ;;
    esac
done
[ ${#models[@]} -gt 0 ] || models=(mlp cnn gpt)
. "$here/bench/jobs.sh"
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "torch is not importable by /usr/bin/python3 (apt-get install python3-torch)" >&2; exit 1; }

ours() {   # model -> RESULT line
    local prog=train_fmnist; [ "$1" = gpt ] && prog=train_gpt
    if [ "$world" -gt 1 ]; then
        DTRAIN_NUM_THREADS=$threads "$bin/dtrun" --standalone --nproc_per_node="$world" "$bin/$prog" $(args_of "$1") --threads "$threads" 2>&1 | grep -a 'RESULT' | sed 's/^\[[0-9]*\]: //'
    else
        "$bin/$prog" $(args_of "$1") --threads "$threads" 2>&1 | grep -a '^RESULT'
    fi
}
torch_ref() {
    local script=torch_fmnist_ddp.py; [ "$1" = gpt ] && script=torch_gpt_ddp.py
    OMP_NUM_THREADS=$threads "$shared/bench/launch_torch.sh" "$world" "$shared/bench/$script" $(args_of "$1") --threads "$threads" 2>&1 | grep -a '^RESULT'
}
# The reference under another python (launch_torch.sh names /usr/bin/python3).
torch_new() {
    local script=torch_fmnist_ddp.py; [ "$1" = gpt ] && script=torch_gpt_ddp.py
    local port=$((20000 + RANDOM % 20000)) pids=() r
    for ((r = 0; r < world; r++)); do
        MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r LOCAL_RANK=$r WORLD_SIZE=$world LOCAL_WORLD_SIZE=$world \
            OMP_NUM_THREADS=$threads "$newpy" "$shared/bench/$script" $(args_of "$1") --threads "$threads" > "$tmpd/new.$r" 2>&1 &
        pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r" || true; done
    grep -ah '^RESULT' "$tmpd"/new.* || true
    rm -f "$tmpd"/new.*
}
tmpd=$(mktemp -d /tmp/dt_train_vs_torch.XXXXXX); trap 'rm -rf "$tmpd"' EXIT
value() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

newv=""; [ -n "$newpy" ] && newv=$("$newpy" -c 'import torch; print(torch.__version__)')
echo "# $(date -u +%F) $(nproc) cores, world=$world, threads/rank=$threads, $reps runs each, alternating${newv:+; newer torch $newv}"
for m in "${models[@]}"; do
    f=$(field_of "$m")
    o=() t=() n=()
    for ((i = 0; i < reps; i++)); do
        r=$(torch_ref "$m"); v=$(value "$r" "$f"); t+=("$v"); echo "torch  $m: $r"
        if [ -n "$newpy" ]; then r=$(torch_new "$m"); v=$(value "$r" "$f"); n+=("${v:-0}"); echo "torch2 $m: $r"; fi
        r=$(ours "$m"); v=$(value "$r" "$f"); o+=("$v"); echo "dtrain $m: $r"
    done
    mo=$(printf '%s\n' "${o[@]}" | median); mt=$(printf '%s\n' "${t[@]}" | median)
    if [ -n "$newpy" ]; then
        mn=$(printf '%s\n' "${n[@]}" | median); best=$(awk -v a="$mt" -v b="$mn" 'BEGIN {print (a > b ? a : b)}')
        printf '%-4s %s median: dtrain %s, torch %s, torch %s %s, ratio to the faster %.2f\n' "$m" "$f" "$mo" "$mt" "$newv" "$mn" \
            "$(awk -v a="$mo" -v b="$best" 'BEGIN {print a / b}')"
    else
        printf '%-4s %s median: dtrain %s, torch %s, ratio %.2f\n' "$m" "$f" "$mo" "$mt" "$(awk -v a="$mo" -v b="$mt" 'BEGIN {print a / b}')"
    fi
done
