#!/usr/bin/env bash
# Elastic membership on this host: two agents, --nnodes=1:2, c10d rendezvous.
# Both form a world of 2; SIGKILL one agent and the other re-forms the job
# alone (world 1, restart count unchanged: a shrink is not a failure restart);
# start it again and the job grows back to 2 at the next round.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

port=$(freeport)
common=(--nnodes=1:2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=127.0.0.1:$port --rdzv_id=el
        --max_restarts=0 --monitor_interval=0.1)
conf=last_call_timeout=1,heartbeat_timeout=2
mkdir -p "$T/a" "$T/b" "$T/b2"
"$DTRUN" "${common[@]}" --rdzv_conf=$conf,is_host=1 "$WORKER" sleep 120 "$T/a" > "$T/a.out" 2> "$T/a.err" &
a=$!
echo $a > "$T/a.pid"
"$DTRUN" "${common[@]}" --rdzv_conf=$conf,is_host=0 "$WORKER" sleep 120 "$T/b" > "$T/b.out" 2> "$T/b.err" &
b=$!
echo $b > "$T/b.pid"
wait_count 60 1 'sleeping .* world=2 restart=0' "$T/a.out"
wait_count 60 1 'sleeping .* world=2 restart=0' "$T/b.out"
bpids=$(cat "$T"/b/*.pids)

kill -9 $b
wait $b 2>/dev/null || true
wait_gone 30 $bpids
wait_count 60 1 'sleeping rank=0 world=1 restart=0 group=0' "$T/a.out"
alive $a || fail "agent a died when b did"

"$DTRUN" "${common[@]}" --rdzv_conf=$conf,is_host=0 "$WORKER" sleep 120 "$T/b2" > "$T/b2.out" 2> "$T/b2.err" &
b2=$!
echo $b2 > "$T/b2.pid"
wait_count 60 2 'sleeping .* world=2 restart=0' "$T/a.out"
wait_count 60 1 'sleeping .* world=2 restart=0' "$T/b2.out"
cat "$T/a.out" "$T/a.err"
expect_grep 'waiting to join' "$T/a.err"

kill -INT $a $b2
wait $a || true
wait $b2 || true
wait_gone 30 $(cat "$T"/a/*.pids "$T"/b2/*.pids)
echo "elastic: ok"
