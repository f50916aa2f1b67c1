#!/usr/bin/env bash
# all_reduce (f32 sum, 4 B - 64 MiB) of Open MPI (../shared/bench/mpi_allreduce.c)
# and of dtbench (private buffers; --shared-buffers; --shared-buffers
# --in-place, as Open MPI's program calls MPI_IN_PLACE), run back to back on
# NP ranks, ROUNDS times interleaved (mpi, dtbench, dtbench --shared-buffers,
# dtbench --shared-buffers --in-place, mpi, ...), then printed side by side:
# the median over rounds of each program's time per size, and the ratios.
# ratio > 1: dtrain is faster.
#   bench/dtbench_vs_mpi.sh [BUILD_DIR] [NP] [ROUNDS] [ITERS]
# Needs mpicc/mpirun (apt-get install -y libopenmpi-dev openmpi-bin).
# Open MPI's figure is the mean of up to 2000 calls per size (its program's
# own loop), dtbench's the slowest rank's median of ITERS calls.
# BASE=other/build adds that build's dtbench (private buffers) to every round,
# right after this one's, as the columns base_us and mpi/base: a before/after
# in the same run. MAX=4K stops dtbench there (Open MPI's program always runs
# to 64 MiB). NP above the cores works (mpirun --oversubscribe; dtbench then
# binds no rank).
set -euo pipefail
build=${1:-build}
np=${2:-2}
rounds=${3:-3}
iters=${4:-50}
here=$(cd "$(dirname "$0")" && pwd)
mpisrc=${MPI_SRC:-$here/../../shared/bench/mpi_allreduce.c}
T=$(mktemp -d /tmp/dt_vs_mpi_XXXXXX)
trap 'rm -rf "$T"' EXIT
command -v mpicc > /dev/null || { echo "mpicc missing: apt-get install -y libopenmpi-dev openmpi-bin" >&2; exit 2; }
mpicc -O2 "$mpisrc" -o "$T/mpi_allreduce"
base=${BASE:-}
max=${MAX:-64M}
dtb() {  # build, extra dtbench flags...
    local b=$1
    shift
    "$b/bin/dtrun" --standalone --nproc_per_node="$np" "$b/bin/dtbench" all_reduce --min-bytes 4 \
        --max-bytes "$max" --factor 4 --iters "$iters" --warmup 5 "$@" | sed 's/^\[0\]: //' | grep -v '^#' | awk '{print $1, $4}'
}
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $np ranks, $rounds rounds"
for r in $(seq "$rounds"); do
    mpirun --allow-run-as-root --oversubscribe -np "$np" "$T/mpi_allreduce" | grep -v '^#' | awk '{print $1, $2}' > "$T/mpi.$r"
    dtb "$build" > "$T/dt.$r"
    if [ -n "$base" ]; then dtb "$base" > "$T/base.$r"; fi
    dtb "$build" --shared-buffers > "$T/dts.$r"
    dtb "$build" --shared-buffers --in-place > "$T/dti.$r"
done
python3 - "$T" "$rounds" "$np" "$base" <<'PY'
import sys, statistics
T, rounds, n, has_base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] != ""
def load(kind):
    per = {}
    for r in range(1, rounds + 1):
        for line in open(f"{T}/{kind}.{r}"):
            b, t = line.split()
            per.setdefault(int(b), []).append(float(t))
    return {b: statistics.median(v) for b, v in per.items()}
mpi, dt, dts, dti = load("mpi"), load("dt"), load("dts"), load("dti")
base = load("base") if has_base else {}
f = 2 * (n - 1) / n
bus = lambda b, t: b / (t * 1e3) * f if t > 0 else 0
print(f"{'bytes':>10} {'mpi_us':>10} {'dt_us':>10} {'dtsh_us':>10} {'dtship_us':>10} {'mpi_busbw':>10} {'dt_busbw':>9} {'dtsh_busbw':>10} {'mpi/dt':>7} {'mpi/dtsh':>8} {'mpi/dtship':>10}"
      + (f" {'base_us':>9} {'mpi/base':>8}" if has_base else ""))
for b in sorted(mpi):
    if b not in dt: continue
    m, d, s, i = mpi[b], dt[b], dts.get(b, float('nan')), dti.get(b, float('nan'))
    line = (f"{b:>10} {m:>10.2f} {d:>10.2f} {s:>10.2f} {i:>10.2f} {bus(b, m):>10.3f} {bus(b, d):>9.3f} {bus(b, s):>10.3f}"
            f" {m / d:>7.2f} {m / s:>8.2f} {m / i:>10.2f}")
    if has_base:
        o = base.get(b, float('nan'))
        line += f" {o:>9.2f} {m / o:>8.2f}"
    print(line)
PY
