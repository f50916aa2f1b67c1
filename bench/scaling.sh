#!/usr/bin/env bash
# Our 2-rank DDP speed over our 1-rank speed, measured as pairs: each pair runs
# the 1-rank job and then the 2-rank job (build/bin/dtrun --nproc_per_node=2)
# back to back, so both see the same machine; the ratio of each pair is printed
# and then the median over pairs per model. One thread per rank, the job
# arguments of bench/train_vs_torch.sh.
#
#   bench/scaling.sh [--pairs N] [--world W] [mlp] [cnn] [gpt]
#
# On a shared VM the speed of either run drifts by 10-25% from minute to
# minute, so a single pair (or two medians taken minutes apart) says little;
# the median of the pairs is the figure to quote.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pairs=5 world=2 models=()
while [ $# -gt 0 ]; do
    case $1 in
        --pairs) pairs=$2; shift 2 ;;
        --world) world=$2; shift 2 ;;
        mlp|cnn|gpt) models+=("$1"); shift ;;
        *) echo "usage: $0 [--pairs N] [--world W] [mlp] [cnn] [gpt]" >&2; exit 2 ;;
    esac
done
[ ${#models[@]} -gt 0 ] || models=(cnn gpt mlp)
. "$here/bench/jobs.sh"
speed() {   # model world -> the RESULT line's samples_per_s / tokens_per_s
    local prog=train_fmnist field
    field=$(field_of "$1")
    [ "$1" = gpt ] && prog=train_gpt
    local out
    if [ "$2" -gt 1 ]; then
        out=$(DTRAIN_NUM_THREADS=1 "$bin/dtrun" --standalone --nproc_per_node="$2" "$bin/$prog" $(args_of "$1") --threads 1 2>&1)
    else
        out=$("$bin/$prog" $(args_of "$1") --threads 1 2>&1)
    fi
    printf '%s\n' "$out" | grep -a 'RESULT' | grep -o "$field=[0-9.]*" | cut -d= -f2
}
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $pairs pairs per model, world $world"
for m in "${models[@]}"; do
    ratios=()
    for i in $(seq "$pairs"); do
        one=$(speed "$m" 1)
        many=$(speed "$m" "$world")
        r=$(awk -v a="$one" -v b="$many" 'BEGIN {printf "%.3f", b / a}')
        ratios+=("$r")
        echo "$m pair $i: 1 rank $one, $world ranks $many, ratio $r"
    done
    med=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
    echo "$m: median $world-rank / 1-rank over $pairs pairs: $med"
done
