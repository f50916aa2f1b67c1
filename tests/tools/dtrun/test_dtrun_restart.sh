#!/usr/bin/env bash
# dtrun failure handling: a worker failing on attempt 0 is restarted with
# --max_restarts=1 and the job succeeds; with --max_restarts=0 the summary
# names the rank, its exit code and the error it recorded (the library's exit
# handler wrote TORCHELASTIC_ERROR_FILE); a death by signal is named; a worker
# ignoring SIGTERM is SIGKILLed after DTRAIN_STOP_TIMEOUT.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$DTRUN" --nproc_per_node=2 --master_port=$(freeport) --max_restarts=1 --log_dir "$T/l1" \
    "$WORKER" fail-once > "$T/o1" 2> "$T/e1" || { cat "$T/e1"; fail "fail-once did not succeed with one restart"; }
cat "$T/o1" "$T/e1"
expect_grep '^\[0\]: attempt 1 ok$' "$T/o1"
expect_grep '^\[1\]: attempt 1 ok$' "$T/o1"
expect_no_grep 'attempt 0 ok' "$T/o1"
expect_grep 'rank 1 .* failed: exit code 3: I/O error: rank 1 gives up on attempt 0' "$T/e1"
expect_grep 'restarting the worker group \(restart 1 of 1\)' "$T/e1"
d=$(echo "$T"/l1/none_*)
[ -d "$d/attempt_0/1" ] && [ -d "$d/attempt_1/1" ] || fail "attempt_0 and attempt_1 expected: $(find "$T/l1")"
expect_grep '"message":\{"message":"I/O error: rank 1 gives up on attempt 0","extraInfo":\{"py_callstack":".*","timestamp":"[0-9]+"\}\}' "$d/attempt_0/1/error.json"

# a restarted group meets under a fresh store prefix (/worker/attempt_N, as torch):
# a key of attempt 0 is not visible to attempt 1
"$DTRUN" --nproc_per_node=2 --master_port=$(freeport) --max_restarts=1 \
    "$WORKER" pg-attempt > "$T/o5" 2> "$T/e5" || { cat "$T/o5" "$T/e5"; fail "pg-attempt did not succeed with one restart"; }
cat "$T/o5"
expect_grep '^\[0\]: attempt 1 mark clean$' "$T/o5"
expect_grep '^\[1\]: attempt 1 mark clean$' "$T/o5"
expect_no_grep 'mark seen' "$T/o5"
expect_grep '^\[1\]: attempt 0 mark clean$' "$T/o5"

# no restarts left: the summary
if "$DTRUN" --nproc_per_node=3 --master_port=$(freeport) --max_restarts=0 "$WORKER" fail 5 > "$T/o2" 2> "$T/e2"; then
    fail "a failing job exited 0"
fi
cat "$T/e2"
expect_grep '^dtrun_worker FAILED$' "$T/e2"
expect_grep '^Root Cause \(first observed failure\):$' "$T/e2"
awk '/^Root Cause/{r=1} r' "$T/e2" > "$T/root2"
expect_grep '^  rank      : 1 \(local_rank: 1\)$' "$T/root2"
expect_grep '^  exitcode  : 5 \(pid: [0-9]+\)$' "$T/root2"
expect_grep "^  host      : $(hostname)\$" "$T/root2"
expect_grep '^  time      : [0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9:]{8}$' "$T/root2"
expect_grep '^  traceback : peer failed or disconnected: boom from rank 1$' "$T/root2"
expect_grep '^  error_file: /.*/attempt_0/1/error.json$' "$T/root2"

# a signal (SIGABRT: ASan builds catch SIGSEGV themselves), and a worker that ignores SIGTERM (killed after the stop timeout)
start=$SECONDS
if DTRAIN_STOP_TIMEOUT=1 "$DTRUN" --nproc_per_node=2 --master_port=$(freeport) "$WORKER" crash 6 > "$T/o3" 2> "$T/e3"; then
    fail "a crashing job exited 0"
fi
expect_grep '^  exitcode  : -6 \(pid: [0-9]+, signal SIGABRT\)$' "$T/e3"
expect_grep '^  traceback : Signal 6 \(SIGABRT\) received by PID' "$T/e3"
if DTRAIN_STOP_TIMEOUT=1 "$DTRUN" --nproc_per_node=2 --master_port=$(freeport) "$WORKER" ignore-term 60 > "$T/o4" 2> "$T/e4"; then
    fail "ignore-term job exited 0"
fi
expect_grep '^\[0\]: ignoring SIGTERM$' "$T/o4"
[ $((SECONDS - start)) -lt 50 ] || fail "the SIGTERM-ignoring worker was not SIGKILLed"
echo "restart: ok"
