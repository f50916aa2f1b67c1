#!/usr/bin/env bash
# dtrun: options (both spellings, PET_* variables, --help), torchrun's worker
# environment, rank-prefixed output that never mixes mid-line, the log_dir
# layout, --redirects, --tee and --local_ranks_filter.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$DTRUN" --help > "$T/help"
for o in nnodes nproc_per_node node_rank master_addr master_port standalone rdzv_backend rdzv_endpoint \
         rdzv_id rdzv_conf max_restarts monitor_interval role log_dir redirects tee local_ranks_filter \
         local_addr run_id; do
    expect_grep "--$o" "$T/help"
done
if "$DTRUN" --no-such-option x 2> "$T/err"; then fail "unknown option accepted"; fi
expect_grep "unknown option '--no-such-option'" "$T/err"
if "$DTRUN" --nproc_per_node=zero x 2> "$T/err"; then fail "bad nproc accepted"; fi
expect_grep "nproc_per_node" "$T/err"
if "$DTRUN" --nnodes=1:2 x 2> "$T/err"; then fail "an elastic static job accepted"; fi
expect_grep "needs a dynamic rendezvous" "$T/err"
if "$DTRUN" --rdzv_backend=c10d --rdzv_endpoint=127.0.0.1:1 --worker_store=agent x 2> "$T/err"; then fail "c10d + agent store accepted"; fi
expect_grep "needs --rdzv_backend=static" "$T/err"
# IPv6 master address in torch's bracket form
"$DTRUN" --nproc_per_node=1 --master_addr='[::1]' --master_port=$(freeport) "$WORKER" store > "$T/v6" 2>&1 ||
    { cat "$T/v6"; fail "[::1] as master_addr"; }
expect_grep '^\[0\]: store ok rank=0 world=1' "$T/v6"

# the environment, for 3 ranks (dashes spelling, an option from PET_*)
port=$(freeport)
env -u OMP_NUM_THREADS -u DTRAIN_NUM_THREADS PET_ROLE=trainer PET_MAX_RESTARTS=2 \
    "$DTRUN" --nproc-per-node 3 --master-port=$port --rdzv_id=job7 "$WORKER" env > "$T/env"
cat "$T/env"
ncpu=$(nproc)
per=$(( ncpu / 3 )); [ $per -lt 1 ] && per=1
for r in 0 1 2; do
    for kv in RANK=$r LOCAL_RANK=$r WORLD_SIZE=3 LOCAL_WORLD_SIZE=3 GROUP_RANK=0 GROUP_WORLD_SIZE=1 ROLE_RANK=$r \
              ROLE_WORLD_SIZE=3 ROLE_NAME=trainer MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
              TORCHELASTIC_RESTART_COUNT=0 TORCHELASTIC_MAX_RESTARTS=2 TORCHELASTIC_RUN_ID=job7 \
              TORCHELASTIC_USE_AGENT_STORE=True OMP_NUM_THREADS=$per DTRAIN_NUM_THREADS=$per; do
        expect_grep "^\[$r\]: $kv\$" "$T/env"
    done
    expect_grep "^\[$r\]: TORCHELASTIC_ERROR_FILE=/.*/attempt_0/$r/error.json\$" "$T/env"
done
[ "$(wc -l < "$T/env")" -eq 54 ] || fail "expected 54 lines of env"
# a value the user set is kept
OMP_NUM_THREADS=7 "$DTRUN" --nproc_per_node=2 --master_port=$(freeport) "$WORKER" env > "$T/env2"
expect_grep '^\[1\]: OMP_NUM_THREADS=7$' "$T/env2"

# lines from 4 ranks written in 7-byte pieces come out whole, each with its own rank
"$DTRUN" --nproc_per_node=4 --master_port=$(freeport) "$WORKER" lines 300 500 > "$T/lines"
[ "$(wc -l < "$T/lines")" -eq 1200 ] || fail "expected 1200 lines, got $(wc -l < "$T/lines")"
for r in 0 1 2 3; do
    c=$(printf "\\x$(printf %x $((97 + r)))")
    n=$(grep -Ec "^\[$r\]: ${c}{500}\$" "$T/lines")
    [ "$n" -eq 300 ] || fail "rank $r: $n whole lines of 300"
done

# log_dir: LOG_DIR/RUNID_XXXXXX/attempt_0/LOCAL_RANK/{stdout,stderr}.log; --redirects 1 keeps
# stdout off the console, --tee 0:2 ... the filter shows local rank 1 only
"$DTRUN" --nproc_per_node=2 --master_port=$(freeport) --rdzv_id=logs --log_dir "$T/logs" --redirects 0:1 \
    "$WORKER" env > "$T/out1"
d=$(echo "$T"/logs/logs_*)
[ -d "$d/attempt_0/0" ] && [ -d "$d/attempt_0/1" ] || fail "attempt folders missing: $(find "$T/logs")"
expect_grep '^RANK=0$' "$d/attempt_0/0/stdout.log"
expect_grep '^RANK=1$' "$d/attempt_0/1/stdout.log"
[ -f "$d/attempt_0/0/stderr.log" ] || fail "no stderr.log"
expect_no_grep '^\[0\]:' "$T/out1"
expect_grep '^\[1\]: RANK=1$' "$T/out1"
"$DTRUN" --nproc_per_node=3 --master_port=$(freeport) --local_ranks_filter=1 "$WORKER" env > "$T/out2"
expect_grep '^\[1\]: RANK=1$' "$T/out2"
expect_no_grep '^\[[02]\]:' "$T/out2"
# --redirects without --log_dir: a kept temporary folder, announced
"$DTRUN" --nproc_per_node=1 --master_port=$(freeport) -r 3 "$WORKER" env > "$T/out3" 2> "$T/err3"
expect_grep 'worker logs in ' "$T/err3"
tmpd=$(sed -n 's/.*worker logs in //p' "$T/err3")
expect_grep '^RANK=0$' "$tmpd/attempt_0/0/stdout.log"
rm -rf "$tmpd"
[ ! -s "$T/out3" ] || fail "redirected output reached the console"
# --tee: console and file; --nproc_per_node=cpu; a flag from PET_STANDALONE
"$DTRUN" --nproc_per_node=2 --master_port=$(freeport) --rdzv_id=tee --log_dir "$T/tl" --tee=1 "$WORKER" env > "$T/out4"
expect_grep '^\[1\]: RANK=1$' "$T/out4"
expect_grep '^RANK=1$' "$(echo "$T"/tl/tee_*)/attempt_0/1/stdout.log"
"$DTRUN" --nproc_per_node=cpu --master_port=$(freeport) "$WORKER" env > "$T/out5"
expect_grep "^\[0\]: LOCAL_WORLD_SIZE=$(nproc)\$" "$T/out5"
PET_STANDALONE=1 "$DTRUN" --nproc_per_node=2 "$WORKER" env > "$T/out6"
expect_grep '^\[0\]: TORCHELASTIC_USE_AGENT_STORE=False$' "$T/out6"
expect_grep '^\[1\]: MASTER_ADDR=127.0.0.1$' "$T/out6"
echo "basic: ok"
