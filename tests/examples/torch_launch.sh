# Sourced by the parity tests (needs $py, the python with torch).
# The reference's ranks, started as ../shared/bench/launch_torch.sh starts them (env://,
# one process per rank), but on a port that is free now (the kernel's pick for port 0)
# instead of a random one that may belong to a test running beside this one; if torch still
# finds it taken (a race), a new try. usage: torch_launch OUT W script.py args...
torch_launch() {
  local out=$1 n=$2 try r port rc; shift 2
  for try in 1 2 3 4 5; do
    port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local pids=()
    for ((r = 0; r < n; r++)); do
      MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r LOCAL_RANK=$r WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n OMP_NUM_THREADS=1 \
        $py "$@" > "$out.$r" 2>&1 & pids+=($!)
    done
    rc=0; for r in "${pids[@]}"; do wait "$r" || rc=$?; done
    cat "$out".* > "$out"; rm -f "$out".*
    [ "$rc" = 0 ] && return 0
    grep -q "Address already in use" "$out" || return 1
    echo "  (port $port was taken before torch bound it; trying another)"
  done
  return 1
}
