# Shared by the dtrun tests: paths, a private temp dir, free ports, waits with
# generous limits (hang detectors, not timings), and assertions that print
# what they saw.
build=$1
src=$2
DTRUN=$build/bin/dtrun
WORKER=$build/tests/dtrun_worker
T=$(mktemp -d /tmp/dt_dtrun_XXXXXX)
cleanup() {
    # anything a failed test left running is ours: its pids were recorded
    for f in "$T"/*.pid "$T"/*/*.pids; do
        [ -f "$f" ] && for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null || true; done
    done
    rm -rf "$T"
}
trap cleanup EXIT
export TMPDIR=$T   # dtrun's own temporary folders land here too
export DTRAIN_STOP_TIMEOUT=${DTRAIN_STOP_TIMEOUT:-5}

fail() { echo "FAIL: $*" >&2; exit 1; }
freeport() { "$WORKER" freeport; }
# expect_grep PATTERN FILE: an extended regex must match a line of FILE
expect_grep() { grep -Eq -- "$1" "$2" || { echo "--- $2:" >&2; cat "$2" >&2; fail "no line matches /$1/ in $2"; }; }
expect_no_grep() { ! grep -Eq -- "$1" "$2" || { echo "--- $2:" >&2; cat "$2" >&2; fail "a line matches /$1/ in $2"; }; }
# alive PID: true while the process exists and is not a zombie
alive() { [ -e /proc/$1 ] && ! grep -q '^State:.*Z' /proc/$1/status 2>/dev/null; }
# wait_gone SECONDS PID...: every process gone within the limit
wait_gone() {
    local lim=$1; shift
    local end=$((SECONDS + lim))
    for p in "$@"; do
        while alive "$p"; do
            [ $SECONDS -ge $end ] && fail "process $p ($(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null)) still alive after ${lim}s"
            sleep 0.05
        done
    done
}
# wait_file SECONDS FILE...: every file exists within the limit
wait_file() {
    local lim=$1; shift
    local end=$((SECONDS + lim))
    for f in "$@"; do
        while [ ! -s "$f" ]; do
            [ $SECONDS -ge $end ] && fail "$f did not appear within ${lim}s"
            sleep 0.05
        done
    done
}
# wait_count SECONDS N REGEX FILE: FILE has at least N lines matching REGEX within the limit
wait_count() {
    local lim=$1 n=$2 re=$3 f=$4
    local end=$((SECONDS + lim))
    while [ "$(grep -Ec -- "$re" "$f" 2>/dev/null || true)" -lt "$n" ]; do
        [ $SECONDS -ge $end ] && { echo "--- $f:" >&2; cat "$f" >&2 || true; fail "fewer than $n lines match /$re/ in $f after ${lim}s"; }
        sleep 0.05
    done
}
