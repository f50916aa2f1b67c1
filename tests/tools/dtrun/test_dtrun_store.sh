#!/usr/bin/env bash
# Workers meet through the store: the agent's (TORCHELASTIC_USE_AGENT_STORE=True,
# workers are clients), or rank 0's own on a free port (--worker_store=rank0,
# torch's c10d convention), --standalone; two agents on this host as a static
# 2-node job; a failure on one node restarts both; and the hello/collectives
# examples when they are built.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

check_meet() {  # FILE WORLD
    for r in $(seq 0 $(($2 - 1))); do expect_grep "^\[$r\]: store ok rank=$r world=$2 " "$1"; done
}
"$DTRUN" --nproc_per_node=4 --master_port=$(freeport) "$WORKER" store > "$T/a"
check_meet "$T/a" 4
"$DTRUN" --nproc_per_node=3 --master_port=$(freeport) --worker_store=rank0 "$WORKER" store > "$T/b"
check_meet "$T/b" 3
"$DTRUN" --standalone --nproc_per_node=2 "$WORKER" env > "$T/c"
expect_grep '^\[1\]: TORCHELASTIC_USE_AGENT_STORE=False$' "$T/c"
"$DTRUN" --standalone --nproc_per_node=2 "$WORKER" store > "$T/c2"
check_meet "$T/c2" 2

# two agents, one job: node ranks given, node 0 hosts the store
port=$(freeport)
"$DTRUN" --nnodes=2 --node_rank=1 --nproc_per_node=2 --master_addr=127.0.0.1 --master_port=$port "$WORKER" store > "$T/n1" &
n1=$!
"$DTRUN" --nnodes=2 --node_rank=0 --nproc_per_node=2 --master_addr=127.0.0.1 --master_port=$port "$WORKER" store > "$T/n0"
wait $n1 || fail "node 1 failed"
cat "$T/n0" "$T/n1" > "$T/n"
check_meet "$T/n" 4
expect_grep '^\[2\]: store ok' "$T/n1"

# a failure on node 1 restarts both nodes (attempt 1 everywhere)
port=$(freeport)
"$DTRUN" --nnodes=2 --node_rank=1 --nproc_per_node=1 --max_restarts=1 --monitor_interval=0.05 --master_port=$port \
    "$WORKER" fail-once > "$T/f1" 2> "$T/fe1" &
f1=$!
"$DTRUN" --nnodes=2 --node_rank=0 --nproc_per_node=1 --max_restarts=1 --monitor_interval=0.05 --master_port=$port \
    "$WORKER" fail-once > "$T/f0" 2> "$T/fe0" || { cat "$T/fe0"; fail "node 0 failed"; }
wait $f1 || { cat "$T/fe1"; fail "node 1 failed"; }
expect_grep '^\[0\]: attempt 1 ok$' "$T/f0"
expect_grep '^\[1\]: attempt 1 ok$' "$T/f1"

# no restarts left: both agents fail, and node 0's summary names node 1's rank as the root cause
port=$(freeport)
"$DTRUN" --nnodes=2 --node_rank=1 --nproc_per_node=1 --monitor_interval=0.05 --master_port=$port \
    "$WORKER" fail 4 > "$T/g1" 2> "$T/ge1" &
g1=$!
if "$DTRUN" --nnodes=2 --node_rank=0 --nproc_per_node=1 --monitor_interval=0.05 --master_port=$port \
    "$WORKER" fail 4 > "$T/g0" 2> "$T/ge0"; then fail "node 0 exited 0 after node 1 failed"; fi
if wait $g1; then fail "node 1 exited 0 after its worker failed"; fi
for f in "$T/ge0" "$T/ge1"; do
    awk '/^Root Cause/{r=1} r' "$f" > "$f.root"
    expect_grep '^  rank      : 1 \(local_rank: 0\)$' "$f.root"
    expect_grep '^  exitcode  : 4 ' "$f.root"
    expect_grep '^  traceback : peer failed or disconnected: boom from rank 1$' "$f.root"
done

# the examples under dtrun: env:// (the agent's store), tcp:// at the agent's
# store (TORCHELASTIC_USE_AGENT_STORE: workers are clients, as in torch), and
# tcp:// at a fresh port under --standalone (rank 0 hosts it)
ex_expect() {  # NAME FILE: what each example prints on both ranks
    for r in 0 1; do
        if [ "$1" = hello ]; then
            expect_grep "^\[$r\]: rank $r local_rank $r world_size 2$" "$2"
        else
            expect_grep "^\[$r\]: rank $r all_gather \[\[1, 2\], \[3, 4\]\]$" "$2"
            expect_grep "^\[$r\]: rank $r all_reduce sum \[4, 6\]$" "$2"
        fi
    done
}
for ex in hello collectives; do
    if [ -x "$build/bin/$ex" ]; then
        "$DTRUN" --nproc_per_node=2 --master_port=$(freeport) "$build/bin/$ex" > "$T/$ex" 2> "$T/$ex.err" ||
            { cat "$T/$ex.err"; fail "$ex failed under dtrun"; }
        ex_expect $ex "$T/$ex"
        port=$(freeport)
        "$DTRUN" --nproc_per_node=2 --master_port=$port "$build/bin/$ex" --init-method tcp://127.0.0.1:$port \
            > "$T/$ex.tcp" 2> "$T/$ex.tcp.err" || { cat "$T/$ex.tcp.err"; fail "$ex (tcp://, agent store) failed"; }
        ex_expect $ex "$T/$ex.tcp"
        "$DTRUN" --standalone --nproc_per_node=2 "$build/bin/$ex" --init-method tcp://127.0.0.1:$(freeport) \
            > "$T/$ex.tcp2" 2> "$T/$ex.tcp2.err" || { cat "$T/$ex.tcp2.err"; fail "$ex (tcp://, standalone) failed"; }
        ex_expect $ex "$T/$ex.tcp2"
    else
        echo "SKIP: $build/bin/$ex is not built"
    fi
done
cat "$T/ge0"
echo "store: ok"
