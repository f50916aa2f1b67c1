#!/usr/bin/env bash
# A worker killed by the kernel's OOM killer is named as such in the summary:
# dtrun runs in a memory cgroup of its own with a small limit (cgroup v1 or v2,
# as root; skipped with the reason where one cannot be made).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

v1=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
if [ -n "$v1" ] && [ -d "/sys/fs/cgroup/memory$v1" ]; then
    cg=/sys/fs/cgroup/memory$v1/dt_oom_$$
    limit_file=memory.limit_in_bytes
else
    v2=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)
    cg=/sys/fs/cgroup$v2/dt_oom_$$
    limit_file=memory.max
fi
if ! mkdir "$cg" 2>"$T/cgerr" || ! echo $((96 << 20)) > "$cg/$limit_file" 2>>"$T/cgerr"; then
    echo "SKIP: cannot make a memory cgroup here: $(cat "$T/cgerr")"
    exit 0
fi
[ -f "$cg/memory.memsw.limit_in_bytes" ] && echo $((96 << 20)) > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
[ -f "$cg/memory.swap.max" ] && echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
oom_cleanup() { cleanup; rmdir "$cg" 2>/dev/null || true; }
trap oom_cleanup EXIT

rc=0
( echo $BASHPID > "$cg/cgroup.procs"
  exec "$DTRUN" --nproc_per_node=2 --master_port=$(freeport) "$WORKER" oom ) > "$T/out" 2> "$T/err" || rc=$?
cat "$T/err"
[ $rc -ne 0 ] || fail "the job succeeded"
awk '/^Root Cause/{r=1} r' "$T/err" > "$T/root"
expect_grep '^  rank      : 1 \(local_rank: 1\)$' "$T/root"
expect_grep '^  exitcode  : -9 \(pid: [0-9]+, signal SIGKILL\)$' "$T/root"
expect_grep 'killed by the kernel for out of memory' "$T/root"
echo "oom: ok"
