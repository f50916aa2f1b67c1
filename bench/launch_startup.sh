#!/usr/bin/env bash
# Start-up time of dtrun: from the moment `dtrun --nproc_per_node=N` is started
# until every rank is past init (connected to the agent's store and through a
# barrier of all ranks: tests/tools/dtrun/dtrun_worker.c "store" mode prints
# its wall-clock time then). Prints each run and the median, in milliseconds.
#   bench/launch_startup.sh [BUILD_DIR] [NPROC] [RUNS]
set -euo pipefail
build=${1:-build}
nproc=${2:-4}
runs=${3:-15}
port_of() { "$build/tests/dtrun_worker" freeport; }
times=()
for i in $(seq "$runs"); do
    t0=$(date +%s%3N)
    out=$("$build/bin/dtrun" --nproc_per_node="$nproc" --master_port="$(port_of)" "$build/tests/dtrun_worker" store)
    last=$(sed -n 's/.* t=\([0-9]*\)$/\1/p' <<<"$out" | sort -n | tail -1)
    [ "$(grep -c 'store ok' <<<"$out")" -eq "$nproc" ] || { echo "run $i: not every rank got through" >&2; exit 1; }
    times+=($((last - t0)))
done
echo "runs (ms): ${times[*]}"
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %d ms, min %d ms, max %d ms over %d runs\n", a[int((NR+1)/2)], a[1], a[NR], NR}'
