#!/usr/bin/env bash
# Resume: a 2-rank train_fmnist job under dtrun --max_restarts, one random worker SIGKILLed at
# a random moment (several seeds), must end with the weights of the same job never stopped,
# bit for bit (cmp of the saved state dicts). The fmnist job crosses an epoch boundary (600 steps
# of 469 per epoch); the gpt job draws its random order from per-rank generators, which the
# snapshot carries. Snapshots every 7 steps. Skips without the dataset.
# usage: test_fmnist_resume.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1; data=/usr/share/datasets/fashion-mnist
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "SKIP: no Fashion-MNIST in $data (apt-get install dataset-fashion-mnist)"; exit 0; }
tmp=$(mktemp -d /tmp/dt_fmnist_resume.XXXXXX); trap 'pkill -9 -f "$tmp" 2>/dev/null || true; rm -rf "$tmp"' EXIT
fails=0
# resume_case PROGRAM SEEDS... : the job in ${job[@]}
resume_case() {
local prog=$1; shift
"$build/bin/dtrun" --standalone --nproc_per_node=2 "$build/bin/$prog" "${job[@]}" --save "$tmp/ref.st" > "$tmp/ref.log" 2>&1 \
    || { cat "$tmp/ref.log"; echo "FAIL: the uninterrupted run failed"; fails=$((fails + 1)); return; }
for seed in "$@"; do
    RANDOM=$seed
    d=$tmp/$prog.run$seed
    "$build/bin/dtrun" --standalone --nproc_per_node=2 --max_restarts=3 "$build/bin/$prog" "${job[@]}" \
        --snapshot "$d/snap" --snapshot-every 7 --save "$d/out.st" > "$d.log" 2>&1 &
    agent=$!
    # wait until training has begun (the first progress line), then a random moment more
    for _ in $(seq 600); do grep -q 'step [0-9]*/' "$d.log" 2>/dev/null && break; sleep 0.05; done
    sleep "0.$((RANDOM % 9 + 1))"
    victims=($(pgrep -f "^$build/bin/$prog .*$d/snap" || true))
    if [ ${#victims[@]} -gt 0 ]; then
        v=${victims[$((RANDOM % ${#victims[@]}))]}
        kill -9 "$v" 2>/dev/null || true
        echo "seed $seed: killed worker pid $v"
    fi
    if ! wait $agent; then cat "$d.log"; echo "FAIL seed $seed: the restarted job failed"; fails=$((fails + 1)); continue; fi
    grep -q 'restarting the worker group' "$d.log" || echo "seed $seed: note: the kill came too late to restart anything"
    grep -a 'resuming\|RESULT' "$d.log" || true
    if cmp -s "$tmp/ref.st" "$d/out.st"; then echo "$prog seed $seed: final weights identical to the uninterrupted run"
    else echo "FAIL $prog seed $seed: final weights differ from the uninterrupted run"; fails=$((fails + 1)); fi
done
}
job=(--model mlp --epochs 2 --steps 600 --threads 1)
resume_case train_fmnist 1 2 3
if [ -f /usr/share/games/fortunes/fortunes ]; then
    job=(--layers 2 --heads 4 --embd 64 --block-size 64 --batch-size 8 --steps 400 --threads 1)   # random data order
    resume_case train_gpt 4 5
else
    echo "SKIP the train_gpt cases: no fortunes corpus (apt-get install fortunes fortunes-min)"
fi
[ $fails -eq 0 ] && echo "resume: ok"
exit $fails
