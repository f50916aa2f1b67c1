#!/usr/bin/env bash
# dtbench --check: each op, a few dtypes, private and shared buffers, out of
# place and in place, under
# dtrun (2 ranks) and by hand (3 ranks, env://); every row's `wrong` column
# must be 0 and the sizes must be the ones asked for. No timing is asserted.
# Unknown or unbuilt backends fail with a clear message.
set -euo pipefail
build=$1
T=$(mktemp -d /tmp/dt_dtbench_XXXXXX)
trap 'rm -rf "$T"' EXIT
export TMPDIR=$T
B=$build/bin/dtbench
fail() { echo "FAIL: $*" >&2; exit 1; }
freeport() { "$build/tests/dtrun_worker" freeport; }   # a port the kernel says is free

# check_rows FILE NROWS: every data row has wrong == 0, and there are NROWS of them
check_rows() {
    local rows
    rows=$(grep -Ev '^(\[0\]: )?#' "$1" | sed 's/^\[0\]: //' | grep -E '^ *[0-9]' || true)
    [ "$(printf '%s\n' "$rows" | grep -c .)" = "$2" ] || { cat "$1" >&2; fail "$1: want $2 rows"; }
    printf '%s\n' "$rows" | awk '$7 != 0 { bad = 1 } END { exit bad }' || { cat "$1" >&2; fail "$1: wrong != 0"; }
    printf '%s\n' "$rows" | awk 'NF != 7 { bad = 1 } END { exit bad }' || { cat "$1" >&2; fail "$1: not 7 columns"; }
}

for op in all_reduce all_gather reduce_scatter broadcast reduce all_to_all; do
    for dt in f32 bf16 i64 u8; do
        timeout 120 "$build/bin/dtrun" --standalone --nproc_per_node=2 "$B" $op --dtype $dt --check \
            --min-bytes 8 --max-bytes 2M --factor 8 --iters 3 --warmup 1 > "$T/$op.$dt" 2> "$T/err" ||
            { cat "$T/err" "$T/$op.$dt" >&2; fail "$op $dt"; }
        check_rows "$T/$op.$dt" 7   # 8 64 512 4K 32K 256K 2M
    done
    timeout 120 "$build/bin/dtrun" --standalone --nproc_per_node=2 "$B" $op --check --shared-buffers \
        --min-bytes 1K --max-bytes 4M --factor 4 --iters 3 --warmup 1 > "$T/$op.shared" 2> "$T/err" ||
        { cat "$T/err" >&2; fail "$op --shared-buffers"; }
    grep -q 'shared (dt_pg_alloc) buffers' "$T/$op.shared" || fail "$op: shared buffers not used"
    check_rows "$T/$op.shared" 7
done

# --in-place (send == recv, all_gather's input inside its output, reduce_scatter's
# output inside its input), 3 ranks: private and shared buffers, small and large sizes
for op in all_reduce all_gather reduce_scatter reduce; do
    for sh in "" --shared-buffers; do
        timeout 120 "$build/bin/dtrun" --standalone --nproc_per_node=3 "$B" $op --check --in-place $sh \
            --min-bytes 96 --max-bytes 6M --factor 16 --iters 3 --warmup 1 > "$T/$op.inplace" 2> "$T/err" ||
            { cat "$T/err" >&2; fail "$op --in-place $sh"; }
        grep -q 'buffers in place' "$T/$op.inplace" || fail "$op: not in place"
        check_rows "$T/$op.inplace" 5   # 96 1.5K 24K 384K 6M
    done
done
if timeout 10 "$B" all_to_all --in-place 2> "$T/a2a"; then fail "all_to_all --in-place accepted"; fi
grep -q "no in-place form" "$T/a2a" || fail "all_to_all --in-place message"

# the group's first large op decides inside itself whether ranks may read each
# other's memory (shm cma.c): with no warm-up, that very call is the checked one
for op in all_reduce reduce all_gather reduce_scatter all_to_all; do
    for np in 2 3; do
        timeout 120 "$build/bin/dtrun" --standalone --nproc_per_node=$np "$B" $op --check --min-bytes 4M --max-bytes 4M \
            --iters 1 --warmup 0 > "$T/$op.first" 2> "$T/err" || { cat "$T/err" >&2; fail "$op first call, $np ranks"; }
        check_rows "$T/$op.first" 1
    done
done

# by hand, 3 ranks (uneven splits of the buffer), env://
port=$(freeport)
pids=()
for r in 0 1 2; do
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=3 timeout 120 "$B" reduce_scatter --check \
        --min-bytes 4 --max-bytes 1M --factor 16 --iters 3 --warmup 1 > "$T/hand.$r" 2> "$T/hand.err.$r" &
    pids+=($!)
done
for r in 0 1 2; do wait "${pids[$r]}" || { cat "$T/hand.err.$r" >&2; fail "rank $r by hand"; }; done
grep -q '^# dtbench reduce_scatter, 3 ranks' "$T/hand.0" || { cat "$T/hand.0" >&2; fail "header"; }
check_rows "$T/hand.0" 5
[ ! -s "$T/hand.1" ] || fail "rank 1 printed rows"

# the tcp backend on one host, checked; a backend that does not exist: a clear error, non-zero exit
timeout 120 "$build/bin/dtrun" --standalone --nproc_per_node=2 "$B" all_reduce --backend tcp --min-bytes 1K --max-bytes 64K --iters 3 --warmup 1 --check \
    > "$T/tcp" 2> "$T/tcp.err" || { cat "$T/tcp" "$T/tcp.err" >&2; fail "--backend tcp"; }
sed -i 's/^\[0\]: //' "$T/tcp"
check_rows "$T/tcp" 4
if MASTER_ADDR=127.0.0.1 MASTER_PORT=$(freeport) RANK=0 WORLD_SIZE=1 timeout 60 "$B" all_reduce --backend nosuch \
    > /dev/null 2> "$T/bad"; then fail "--backend nosuch succeeded"; fi
grep -q "unknown backend" "$T/bad" || { cat "$T/bad" >&2; fail "unknown backend message"; }
if timeout 10 "$B" no_such_op 2> "$T/op"; then fail "unknown op accepted"; fi
grep -q "unknown op" "$T/op" || fail "unknown op message"
echo "dtbench: ok"
