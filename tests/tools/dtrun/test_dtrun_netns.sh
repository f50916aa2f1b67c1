#!/usr/bin/env bash
# Multi-node on two simulated hosts: network namespaces joined by a veth pair
# (10.77.0.1 and 10.77.0.2, nothing else reachable), one agent in each.
# Static rendezvous (--node_rank, node 0 hosts the store) and dynamic (c10d,
# ranks on join); one host's workers killed -> both agents restart the group;
# elastic 1:2 shrink when one host's agent is SIGKILLed. Needs root and
# `ip netns`; skipped with the reason otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

A=dtA$$ B=dtB$$
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIP: needs root and iproute2 (ip netns)"; exit 0; fi
netns_cleanup() {
    cleanup
    ip netns pids $A 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns pids $B 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
}
trap netns_cleanup EXIT
if ! ip netns add $A 2>"$T/nserr" || ! ip netns add $B 2>>"$T/nserr" ||
   ! ip link add va$$ netns $A type veth peer name vb$$ netns $B 2>>"$T/nserr"; then
    echo "SKIP: cannot make network namespaces here: $(cat "$T/nserr")"
    exit 0
fi
ip -n $A addr add 10.77.0.1/24 dev va$$
ip -n $B addr add 10.77.0.2/24 dev vb$$
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set va$$ up
ip -n $B link set vb$$ up
# arrays, not functions: a function run with & is a subshell and $! would be its pid
inA=(ip netns exec $A)
inB=(ip netns exec $B)
meet() {  # FILE WORLD
    for r in $(seq 0 $(($2 - 1))); do expect_grep "^\[$r\]: store ok rank=$r world=$2 " "$1"; done
}

# static: the same command with --node_rank on each host (default port 29500)
"${inB[@]}" "$DTRUN" --nnodes=2 --node_rank=1 --nproc_per_node=2 --master_addr=10.77.0.1 "$WORKER" store > "$T/s1" 2> "$T/s1.err" &
b=$!
"${inA[@]}" "$DTRUN" --nnodes=2 --node_rank=0 --nproc_per_node=2 --master_addr=10.77.0.1 "$WORKER" store > "$T/s0" 2> "$T/s0.err" ||
    { cat "$T/s0.err"; fail "static: host A failed"; }
wait $b || { cat "$T/s1.err"; fail "static: host B failed"; }
cat "$T/s0" "$T/s1" > "$T/s"
meet "$T/s" 4
expect_grep '^\[[23]\]: store ok' "$T/s1"
echo "static rendezvous across hosts: ok"

# dynamic: c10d on A's address; ranks on join; rank 0 hosts the workers' store
dyn=(--nnodes=2 --nproc_per_node=2 --rdzv_backend=c10d --rdzv_endpoint=10.77.0.1:29400 --rdzv_id=dyn)
"${inB[@]}" "$DTRUN" "${dyn[@]}" "$WORKER" store > "$T/d1" 2> "$T/d1.err" &
b=$!
"${inA[@]}" "$DTRUN" "${dyn[@]}" "$WORKER" store > "$T/d0" 2> "$T/d0.err" || { cat "$T/d0.err"; fail "dynamic: host A failed"; }
wait $b || { cat "$T/d1.err"; fail "dynamic: host B failed"; }
cat "$T/d0" "$T/d1" > "$T/d"
meet "$T/d" 4
echo "dynamic rendezvous across hosts: ok"

# host B's workers killed: both agents restart the group (restart count 1 on both)
mkdir -p "$T/ka" "$T/kb"
kill_args=(--nnodes=2 --nproc_per_node=1 --master_addr=10.77.0.1 --max_restarts=1 --monitor_interval=0.05)
"${inA[@]}" "$DTRUN" "${kill_args[@]}" --node_rank=0 "$WORKER" sleep 120 "$T/ka" > "$T/k0" 2> "$T/k0.err" &
a=$!
"${inB[@]}" "$DTRUN" "${kill_args[@]}" --node_rank=1 "$WORKER" sleep 120 "$T/kb" > "$T/k1" 2> "$T/k1.err" &
b=$!
echo "$a $b" > "$T/agents.pid"
wait_count 60 1 'restart=0' "$T/k0"
wait_count 60 1 'restart=0' "$T/k1"
kill -9 $(cat "$T"/kb/*.pids)
wait_count 60 1 'sleeping rank=0 world=2 restart=1' "$T/k0"
wait_count 60 1 'sleeping rank=1 world=2 restart=1' "$T/k1"
expect_grep 'rank 1 .* failed: signal 9' "$T/k1.err"
kill -TERM $a $b
wait $a || true
wait $b || true
echo "workers killed on one host: both restarted: ok"

# elastic 1:2: SIGKILL host B's agent, A goes on alone with world 1 (not a failure restart)
mkdir -p "$T/ea" "$T/eb"
el=(--nnodes=1:2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=10.77.0.1:29401 --rdzv_id=el --max_restarts=0
    --rdzv_conf=last_call_timeout=1,heartbeat_timeout=2)
"${inA[@]}" "$DTRUN" "${el[@]}" "$WORKER" sleep 120 "$T/ea" > "$T/e0" 2> "$T/e0.err" &
a=$!
"${inB[@]}" "$DTRUN" "${el[@]}" "$WORKER" sleep 120 "$T/eb" > "$T/e1" 2> "$T/e1.err" &
b=$!
echo "$a $b" > "$T/agents.pid"
wait_count 60 1 'world=2 restart=0' "$T/e0"
wait_count 60 1 'world=2 restart=0' "$T/e1"
bp=$(cat "$T"/eb/*.pids)
kill -9 $b
wait $b 2>/dev/null || true
wait_gone 30 $bp
wait_count 60 1 'sleeping rank=0 world=1 restart=0' "$T/e0"
kill -TERM $a
wait $a || true
wait_gone 30 $(cat "$T"/ea/*.pids)
echo "elastic shrink across hosts: ok"
