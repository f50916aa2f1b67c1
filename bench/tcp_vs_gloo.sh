#!/usr/bin/env bash
# all_reduce f32 bus bandwidth of dtrain's tcp backend (bench/allreduce_bw)
# against torch's gloo (../shared/bench/gloo_allreduce.py), on this host,
# runs alternating so both see the same machine load; medians per size and
# the ratio dtrain/gloo at 1, 4, 16 and 64 MiB.
#   bench/tcp_vs_gloo.sh [BUILD=build] [ROUNDS=3] [WORLD=2] [BACKEND=tcp]
# BASE=<another build> adds that build's allreduce_bw to every round (a
# "before" column); DT_ENV="VAR=value ..." is set for the dtrain runs.
# SHARED_BUFFERS=1: dtrain's buffer from dt_pg_alloc (BACKEND=shm's direct path).
# ALL=1: every size from 4 B (time per op, and the ratio gloo_us / dtrain_us),
# not only the bandwidths from 1 MiB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build} rounds=${2:-3} world=${3:-2} backend=${4:-tcp}
base=${BASE:-} dtenv=${DT_ENV:-}
bwargs=()
[ -n "${SHARED_BUFFERS:-}" ] && bwargs=($((64 << 20)) shared)
shared=${SHARED:-$here/../../shared/bench}
T=$(mktemp -d /tmp/dt_tcpbench_XXXXXX)
trap 'rm -rf "$T"' EXIT
loads=()
for i in $(seq 1 "$rounds"); do
    loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    [ -n "$base" ] && env $dtenv "$base/bin/allreduce_bw" "$backend" "$world" > "$T/base.$i"
    env $dtenv "$build/bin/allreduce_bw" "$backend" "$world" "${bwargs[@]}" > "$T/dt.$i"
    "$shared/launch_torch.sh" "$world" "$shared/gloo_allreduce.py" > "$T/gloo.$i" 2>/dev/null
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "# all_reduce f32 busbw GB/s, world $world, $rounds rounds alternating, medians; 1-min load at each round: ${loads[*]}${dtenv:+; $dtenv}${SHARED_BUFFERS:+; dtrain buffer from dt_pg_alloc}"
if [ -n "${ALL:-}" ]; then
    echo "| bytes | dtrain $backend us | gloo us | gloo / dtrain |"
    echo "|---|---|---|---|"
    for b in $(awk '!/^#/ {print $1}' "$T/dt.1"); do
        d=$(cat "$T"/dt.* | awk -v b=$b '$1 == b {print $2}' | median)
        g=$(cat "$T"/gloo.* | awk -v b=$b '$1 == b {print $2}' | median)
        echo "| $b | $d | $g | $(awk -v d="$d" -v g="$g" 'BEGIN {printf "%.1f", g / d}') |"
    done
    exit 0
fi
if [ -n "$base" ]; then
    echo "| size | before ($base) | dtrain $backend | gloo | before / gloo | ratio |"
    echo "|---|---|---|---|---|---|"
else
    echo "| size | dtrain $backend | gloo | ratio |"
    echo "|---|---|---|---|"
fi
for b in 1048576 4194304 16777216 67108864; do
    d=$(cat "$T"/dt.* | awk -v b=$b '$1 == b {print $4}' | median)
    g=$(cat "$T"/gloo.* | awk -v b=$b '$1 == b {print $4}' | median)
    r=$(awk -v d="$d" -v g="$g" 'BEGIN {printf "%.2f", d / g}')
    if [ -n "$base" ]; then
        o=$(cat "$T"/base.* | awk -v b=$b '$1 == b {print $4}' | median)
        echo "| $((b >> 20)) MiB | $o | $d | $g | $(awk -v d="$o" -v g="$g" 'BEGIN {printf "%.2f", d / g}') | $r |"
    else
        echo "| $((b >> 20)) MiB | $d | $g | $r |"
    fi
done
