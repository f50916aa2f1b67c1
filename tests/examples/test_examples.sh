#!/usr/bin/env bash
# hello and collectives started by hand, the way their launch lines say, for
# world sizes 1 to 3 and each init method: env:// (MASTER_ADDR/PORT, RANK,
# WORLD_SIZE), tcp://host:port with --rank/--world-size flags, file:///path
# with RANK/WORLD_SIZE. Every rank's lines are checked. Ports are picked at
# run time; `timeout` is a hang detector only.
set -euo pipefail
build=$1
T=$(mktemp -d /tmp/dt_examples_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
freeport() { "$build/tests/dtrun_worker" freeport; }   # a port the kernel says is free
expect_grep() { grep -Eq -- "$1" "$2" || { echo "--- $2:" >&2; cat "$2" >&2; fail "no line matches /$1/ in $2"; }; }

# run_world EX N METHOD: start N ranks of EX, wait for all, check their output
run_world() {
    local ex=$1 n=$2 how=$3 port pids=() r
    port=$(freeport)
    for r in $(seq 0 $((n - 1))); do
        case $how in
        env)  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=$n timeout 60 "$build/bin/$ex" ;;
        tcp)  timeout 60 "$build/bin/$ex" --init-method tcp://127.0.0.1:$port --rank $r --world-size $n --backend shm ;;
        file) RANK=$r WORLD_SIZE=$n timeout 60 "$build/bin/$ex" --init-method "file://$T/store.$ex.$n" ;;
        esac > "$T/out.$r" 2> "$T/err.$r" &
        pids+=($!)
    done
    for r in $(seq 0 $((n - 1))); do
        wait "${pids[$r]}" || { cat "$T/err.$r" >&2; fail "$ex rank $r of $n ($how) failed"; }
    done
    local gathered=""
    for q in $(seq 0 $((n - 1))); do gathered+="${gathered:+, }\\[$((1 + 2 * q)), $((2 + 2 * q))\\]"; done
    for r in $(seq 0 $((n - 1))); do
        if [ "$ex" = hello ]; then
            expect_grep "^rank $r local_rank $r world_size $n$" "$T/out.$r"
        else
            expect_grep "^rank $r holds \\[$((1 + 2 * r)), $((2 + 2 * r))\\]$" "$T/out.$r"
            expect_grep "^rank $r all_gather \\[$gathered\\]$" "$T/out.$r"
            expect_grep "^rank $r all_reduce sum \\[$((n * n)), $((n * n + n))\\]$" "$T/out.$r"
        fi
    done
    rm -f "$T"/store.*
}

for ex in hello collectives; do
    for n in 1 2 3; do
        for how in env tcp file; do run_world $ex $n $how; done
    done
done
# a bad init method is an error, not a hang
if timeout 30 "$build/bin/hello" --init-method bogus:// --rank 0 --world-size 1 2> "$T/bad"; then fail "bogus:// accepted"; fi
expect_grep "unknown init method" "$T/bad"
echo "examples: ok"
