#!/usr/bin/env bash
# backend "auto" across hosts: two simulated hosts, each a network namespace
# (10.77.1.1 and 10.77.1.2 on a veth pair, nothing else reachable) with its
# own host name (a UTS namespace, so the ranks' host identities differ), env://
# with rank 0's store on host A. Host B picks its interface with
# DTRAIN_SOCKET_IFNAME, host A by the route to MASTER_ADDR.
#  1. two ranks on each host: auto must be hier (shm within a host, tcp among
#     the leaders) and auto_worker's checks pass (every reduction and dtype
#     bit for bit against the documented order, reduce/broadcast from every
#     root, barrier, all_gather, reduce_scatter, send/recv, subgroups); then
#     again with DTRAIN_HIER_ALLREDUCE=slice;
#  2. rank 3 (host B, not its leader) SIGKILLed mid all_reduce: the three
#     others fail with DT_EPEER naming it, well within the op timeout; then
#     the same for rank 2 (host B's leader), and for rank 3 with all_reduce by
#     slices;
#  3. rank 1 aborts: the others fail with DT_EABORTED naming it; rank 3 comes
#     after everyone's 3 s timeout: the others fail with DT_ETIMEOUT naming it;
#  4. rank 3 calls all_reduce with another count: everyone gets DT_EMISMATCH,
#     without and with DTRAIN_DEBUG=DETAIL;
#  5. one rank per host: auto is plain tcp.
# Each run has its own store port (the namespaces are private, so any port is
# free; a new one per run avoids waiting out TIME_WAIT). Needs root, iproute2
# and unshare; skipped with the reason otherwise.
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

PORT=29517
# rank NS HOSTNAME RANK WORLD [VAR=V ...] -- ARGS...: one rank in its own "host"
rank() {
    local ns=$1 h=$2 r=$3 w=$4; shift 4
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    ip netns exec "$ns" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$h" \
        env RANK=$r WORLD_SIZE=$w MASTER_ADDR=10.77.1.1 MASTER_PORT=$PORT DTRAIN_TIMEOUT=60 ${envs[@]+"${envs[@]}"} \
        timeout 150 "$WORKER" "$@" > "$T/$r.out" 2> "$T/$r.err" &
    echo $! >> "$T/pids"
}
# start4 [VAR=V ...] -- ARGS...: ranks 0, 1 on host A, 2, 3 on host B
start4() {
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    PORT=$((PORT + 1))
    rm -f "$T"/*.out "$T"/*.err
    : > "$T/pids"
    rank $A hostA 0 4 DT_TEST_HOSTS=0,0,1,1 ${envs[@]+"${envs[@]}"} -- "$@"
    rank $A hostA 1 4 DT_TEST_HOSTS=0,0,1,1 ${envs[@]+"${envs[@]}"} -- "$@"
    rank $B hostB 2 4 DT_TEST_HOSTS=0,0,1,1 DTRAIN_SOCKET_IFNAME=xb$$ ${envs[@]+"${envs[@]}"} -- "$@"
    rank $B hostB 3 4 DT_TEST_HOSTS=0,0,1,1 DTRAIN_SOCKET_IFNAME=xb$$ ${envs[@]+"${envs[@]}"} -- "$@"
}
wait_all() { local st=0; for p in $(cat "$T/pids"); do wait "$p" || st=1; done; return $st; }

# 1. the hierarchy, and its results
start4 DT_TEST_BACKEND=hier -- check
wait_all || fail "a rank failed the checks"
for r in 0 1 2 3; do
    l=$((r % 2))
    grep -Eq "^rank $r world 4 local $l/2 backend hier ok$" "$T/$r.out" || fail "rank $r: unexpected output"
    grep -Eq "^rank $r desc hier: 2 hosts \(ranks per host: 2 2\), shm within a host, tcp among leaders" "$T/$r.out" ||
        fail "rank $r: unexpected composition"
done
echo "auto across two hosts: $(sed -n 's/^rank 0 desc //p' "$T/0.out"); every check passed: ok"

# 1b. the same with all_reduce by slices (same bits: the worker checks the same order)
start4 DT_TEST_BACKEND=hier DTRAIN_HIER_ALLREDUCE=slice -- check
wait_all || fail "a rank failed the checks (DTRAIN_HIER_ALLREDUCE=slice)"
for r in 0 1 2 3; do
    grep -Eq "^rank $r desc hier: .*, all_reduce by slices," "$T/$r.out" || fail "rank $r: not by slices"
done
echo "DTRAIN_HIER_ALLREDUCE=slice: every check passed: ok"

# 2. a rank killed: a non-leader, then a leader
for case in 3:leader 2:leader 3:slice; do
    v=${case%:*}
    start4 DT_TEST_TIMEOUT_MS=20000 DTRAIN_HIER_ALLREDUCE=${case#*:} -- victim $v
    pids=($(cat "$T/pids"))
    for i in 0 1 2 3; do
        [ $i = $v ] && continue
        wait "${pids[$i]}" || fail "rank $i did not fail as expected when rank $v died"
    done
    wait "${pids[$v]}" && fail "rank $v survived"
    for r in 0 1 2 3; do
        [ $r = $v ] && continue
        grep -Eq "^rank $r: failed as expected after .*rank $v \(" "$T/$r.out" || fail "rank $r: unexpected output"
    done
    echo "rank $v on host B killed (all_reduce by ${case#*:}): the others fail with DT_EPEER naming it: ok ($(sed -n "s/^rank 0: failed as expected //p" "$T/0.out"))"
done

# 3. abort
start4 DT_TEST_TIMEOUT_MS=20000 -- abort 1
wait_all || fail "abort"
for r in 0 2 3; do grep -Eq "^rank $r: failed as expected after .*rank 1 aborted" "$T/$r.out" || fail "rank $r: abort"; done
echo "rank 1 aborts: the others fail with DT_EABORTED naming it: ok"

# 3b. rank 3 arrives after everyone's 3 s timeout: the others fail with DT_ETIMEOUT in time
start4 DT_TEST_TIMEOUT_MS=3000 -- late 3
wait_all || fail "late rank"
for r in 0 1 2; do
    grep -Eq "^rank $r: failed as expected after .*timed out.*ranks that did not take part: 3\b" "$T/$r.out" ||
        fail "rank $r: late"
done
echo "rank 3 late: the others time out: ok ($(sed -n "s/^rank 1: failed as expected //p" "$T/1.out"))"

# 4. mismatch, without and with DETAIL
for d in "" DETAIL; do
    start4 DT_TEST_TIMEOUT_MS=20000 DTRAIN_DEBUG=$d -- mismatch
    wait_all || fail "mismatch ($d)"
    for r in 0 1 2 3; do grep -Eq "^rank $r: mismatch detected" "$T/$r.out" || fail "rank $r: mismatch ($d)"; done
    if [ "$d" = DETAIL ]; then grep -q "DTRAIN_DEBUG=DETAIL" "$T/0.out" || fail "DETAIL: no DETAIL message"; fi
    echo "mismatched all_reduce ${d:+(DTRAIN_DEBUG=DETAIL) }fails on every rank with DT_EMISMATCH: ok"
done

# 5. one rank per host: plain tcp
PORT=$((PORT + 1))
rm -f "$T"/*.out "$T"/*.err
: > "$T/pids"
rank $A hostA 0 2 DT_TEST_HOSTS=0,1 DT_TEST_BACKEND=tcp -- check
rank $B hostB 1 2 DT_TEST_HOSTS=0,1 DT_TEST_BACKEND=tcp DTRAIN_SOCKET_IFNAME=xb$$ -- check
wait_all || fail "one rank per host"
grep -Eq "^rank 1 world 2 local 0/1 backend tcp ok$" "$T/1.out" || fail "one rank per host: not tcp"
echo "one rank per host: auto is tcp: ok"
