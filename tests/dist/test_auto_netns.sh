#!/usr/bin/env bash
# backend "auto" across hosts: two simulated hosts, each a network namespace
# (10.77.1.1 and 10.77.1.2 on a veth pair, nothing else reachable) with its
# own host name (a UTS namespace, so the ranks' host identities differ), two
# ranks on each, env:// with rank 0's store on host A. Every rank must end up
# on the tcp backend with local rank/size 0-1/2 and correct results; host B
# picks its interface with DTRAIN_SOCKET_IFNAME, host A by the route to
# MASTER_ADDR. Then again with rank 3 (host B) SIGKILLed after the first
# checks: the three others must fail with DT_EPEER naming it. Needs root,
# iproute2 and unshare; skipped with the reason otherwise.
set -euo pipefail
build=$1
WORKER=$build/tests/auto_worker
T=$(mktemp -d /tmp/dt_auto_netns_XXXXXX)
A=dtaA$$ B=dtaB$$
cleanup() {
    for n in $A $B; do
        ip netns pids $n 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del $n 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$T"/*.out "$T"/*.err; do [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }; done; exit 1; }

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
    echo "SKIP: needs root, iproute2 (ip netns) and unshare"; exit 0
fi
if ! ip netns add $A 2>"$T/nserr" || ! ip netns add $B 2>>"$T/nserr" ||
   ! ip link add xa$$ netns $A type veth peer name xb$$ netns $B 2>>"$T/nserr"; then
    echo "SKIP: cannot make network namespaces here: $(cat "$T/nserr")"; exit 0
fi
if ! ip netns exec $A unshare --uts true 2>"$T/nserr"; then
    echo "SKIP: cannot make a UTS namespace here: $(cat "$T/nserr")"; exit 0
fi
ip -n $A addr add 10.77.1.1/24 dev xa$$
ip -n $B addr add 10.77.1.2/24 dev xb$$
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set xa$$ up
ip -n $B link set xb$$ up

# rank NS HOSTNAME RANK LOCAL_ENV...: one rank in its own "host"
rank() {
    local ns=$1 h=$2 r=$3; shift 3
    ip netns exec "$ns" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$h" \
        env RANK=$r WORLD_SIZE=4 MASTER_ADDR=10.77.1.1 MASTER_PORT=29517 DTRAIN_TIMEOUT=60 "$@" \
        timeout 120 "$WORKER" 1000003 $VICTIM > "$T/$r.out" 2> "$T/$r.err" &
    echo $! >> "$T/pids"
}
start_all() {
    : > "$T/pids"
    rank $A hostA 0
    rank $A hostA 1
    rank $B hostB 2 DTRAIN_SOCKET_IFNAME=xb$$
    rank $B hostB 3 DTRAIN_SOCKET_IFNAME=xb$$
}
VICTIM=
start_all
st=0
for p in $(cat "$T/pids"); do wait "$p" || st=1; done
[ $st = 0 ] || fail "a rank failed"
for r in 0 1 2 3; do
    l=$((r % 2))
    grep -Eq "^rank $r world 4 local $l/2 backend tcp ok$" "$T/$r.out" || fail "rank $r: unexpected output"
done
echo "auto across two hosts: tcp, 2 local ranks each, results correct: ok"

VICTIM=3
start_all
pids=($(cat "$T/pids"))
for i in 0 1 2; do wait "${pids[$i]}" || fail "rank $i did not fail as expected"; done
wait "${pids[3]}" && fail "rank 3 survived"
for r in 0 1 2; do
    grep -Eq "^rank $r: failed as expected: .*rank 3 \(" "$T/$r.out" || fail "rank $r: unexpected output"
done
echo "rank 3 on host B killed: the others fail with DT_EPEER naming it: ok ($(sed "s/^rank 0: failed as expected: //" "$T/0.out" | tail -1))"
