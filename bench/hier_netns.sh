#!/usr/bin/env bash
# all_reduce f32 bus bandwidth across two simulated hosts: backend auto (the
# hier backend: shm inside each host, tcp between the two leaders; and with
# DTRAIN_HIER_ALLREDUCE=slice) against the flat tcp mesh (backend tcp), 2 ranks per host, in alternating runs so both see
# the same load; medians per size. The "hosts" are network + UTS namespaces on a
# veth pair (10.77.2.1, 10.77.2.2), so the link is a memory copy through the
# kernel and every rank shares this machine's cores. Needs root.
#   bench/hier_netns.sh [BUILD=build] [ROUNDS=3] [ITERS=10] [OP=all_reduce]
# OP all_gather or reduce_scatter: auto (hierarchical) against flat tcp alone
# (the slice variant is all_reduce's).
set -euo pipefail
build=${1:-build} rounds=${2:-3} iters=${3:-10} op=${4:-all_reduce}
DTBENCH=$(cd "$build" && pwd)/bin/dtbench
T=$(mktemp -d /tmp/dt_hierbench_XXXXXX)
A=dthA$$ B=dthB$$
cleanup() {
    for n in $A $B; do
        ip netns pids $n 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del $n 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
ip netns add $A
ip netns add $B
ip link add ha$$ netns $A type veth peer name hb$$ netns $B
ip -n $A addr add 10.77.2.1/24 dev ha$$
ip -n $B addr add 10.77.2.2/24 dev hb$$
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set ha$$ up
ip -n $B link set hb$$ up
PORT=29600
run() { # run BACKEND OUT [VAR=V]
    PORT=$((PORT + 1))
    local pids=()
    for r in 0 1 2 3; do
        local ns=$A h=hostA extra=()
        if [ $r -ge 2 ]; then ns=$B h=hostB extra=(DTRAIN_SOCKET_IFNAME=hb$$); fi
        ip netns exec $ns unshare --uts sh -c 'hostname "$0"; exec "$@"' $h \
            env ${3:-DT_NOTHING=1} RANK=$r WORLD_SIZE=4 MASTER_ADDR=10.77.2.1 MASTER_PORT=$PORT ${extra[@]+"${extra[@]}"} \
            timeout 600 "$DTBENCH" "$op" --backend "$1" --min-bytes 1M --max-bytes 64M --factor 4 \
            --iters "$iters" --warmup 2 --bind none > "$T/out.$r" 2> "$T/err.$r" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { cat "$T"/err.*; exit 1; }; done
    cp "$T/out.0" "$2"
}
for i in $(seq 1 "$rounds"); do
    run auto "$T/auto.$i"
    if [ "$op" = all_reduce ]; then run auto "$T/slice.$i" DTRAIN_HIER_ALLREDUCE=slice; fi
    run tcp "$T/tcp.$i"
done
head -1 "$T/auto.1"
head -1 "$T/tcp.1"
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "# $op f32 busbw GB/s, 2 hosts x 2 ranks, $rounds rounds alternating, medians; load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$op" != all_reduce ]; then
    echo "| size | hier | tcp (flat) | hier / flat |"
    echo "|---|---|---|---|"
    for b in 1048576 4194304 16777216 67108864; do
        h=$(cat "$T"/auto.* | awk -v b=$b '$1 == b {print $6}' | median)
        f=$(cat "$T"/tcp.* | awk -v b=$b '$1 == b {print $6}' | median)
        echo "| $((b >> 20)) MiB | $h | $f | $(awk -v h="$h" -v f="$f" 'BEGIN {printf "%.2f", h / f}') |"
    done
    exit 0
fi
echo "| size | hier, leader | hier, slice | tcp (flat) | leader / flat | slice / flat |"
echo "|---|---|---|---|---|---|"
for b in 1048576 4194304 16777216 67108864; do
    h=$(cat "$T"/auto.* | awk -v b=$b '$1 == b {print $6}' | median)
    s=$(cat "$T"/slice.* | awk -v b=$b '$1 == b {print $6}' | median)
    f=$(cat "$T"/tcp.* | awk -v b=$b '$1 == b {print $6}' | median)
    echo "| $((b >> 20)) MiB | $h | $s | $f | $(awk -v h="$h" -v f="$f" 'BEGIN {printf "%.2f", h / f}') | $(awk -v h="$s" -v f="$f" 'BEGIN {printf "%.2f", h / f}') |"
done
