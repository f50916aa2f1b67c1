#!/usr/bin/env bash
# No process outlives dtrun: SIGINT, SIGTERM, SIGHUP (forwarded; the agent exits 128+N) and
# SIGKILL of the agent itself (the guardian and the parent-death signal take
# the workers and the children they forked).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

run_and_signal() {  # SIGNAL DIR
    local sig=$1 dir=$2
    mkdir -p "$dir"
    "$DTRUN" --nproc_per_node=3 --master_port=$(freeport) "$WORKER" sleep 120 "$dir" > "$dir/out" 2> "$dir/err" &
    local agent=$!
    echo $agent > "$T/agent.pid"
    wait_file 60 "$dir/0.pids" "$dir/1.pids" "$dir/2.pids"
    local pids=$(cat "$dir"/*.pids)
    for p in $pids; do alive $p || fail "worker process $p not running"; done
    kill -$sig $agent
    local rc=0
    wait $agent || rc=$?
    echo "agent exit code after SIG$sig: $rc"
    wait_gone 30 $pids
    echo "$rc"
}

rc=$(run_and_signal INT "$T/int" | tail -1)
[ "$rc" -eq 130 ] || fail "SIGINT: dtrun exited $rc, expected 130"
expect_grep 'got SIGINT; stopping the workers' "$T/int/err"

rc=$(run_and_signal TERM "$T/term" | tail -1)
[ "$rc" -eq 143 ] || fail "SIGTERM: dtrun exited $rc, expected 143"

rc=$(run_and_signal HUP "$T/hup" | tail -1)
[ "$rc" -eq 129 ] || fail "SIGHUP: dtrun exited $rc, expected 129"

rc=$(run_and_signal KILL "$T/kill" | tail -1)
[ "$rc" -eq 137 ] || fail "SIGKILL: exit $rc"
echo "signals: ok"
