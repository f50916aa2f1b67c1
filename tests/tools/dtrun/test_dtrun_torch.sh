#!/usr/bin/env bash
# A PyTorch script (Debian's python3-torch, gloo) under dtrun: env:// init with
# torchrun's variables, 2 ranks, all_reduce results checked; a failing script's
# error file (torch's @record) in dtrun's summary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import torch.distributed' 2>/dev/null; then
    echo "SKIP: $PY cannot import torch.distributed"
    exit 0
fi
cat > "$T/allreduce.py" <<'PYEOF'
import os, torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="env://")
r, w = dist.get_rank(), dist.get_world_size()
assert r == int(os.environ["RANK"]) and w == int(os.environ["WORLD_SIZE"])
t = torch.arange(4, dtype=torch.float32) + r
dist.all_reduce(t)
expect = torch.arange(4, dtype=torch.float32) * w + sum(range(w))
assert torch.equal(t, expect), (t, expect)
print(f"allreduce ok rank={r} {t.tolist()}", flush=True)
dist.destroy_process_group()
PYEOF
"$DTRUN" --nproc_per_node=2 --master_port=$(freeport) $PY "$T/allreduce.py" > "$T/out" 2> "$T/err" || { cat "$T/err"; fail "torch job failed"; }
cat "$T/out"
expect_grep '^\[0\]: allreduce ok rank=0 \[1.0, 3.0, 5.0, 7.0\]$' "$T/out"
expect_grep '^\[1\]: allreduce ok rank=1 \[1.0, 3.0, 5.0, 7.0\]$' "$T/out"

# torch's own error file (@record) reaches dtrun's summary
cat > "$T/fails.py" <<'PYEOF'
import os
from torch.distributed.elastic.multiprocessing.errors import record
@record
def main():
    if os.environ["RANK"] == "1":
        raise RuntimeError("torch rank 1 gives up")
main()
PYEOF
if "$DTRUN" --nproc_per_node=2 --master_port=$(freeport) $PY "$T/fails.py" > "$T/out2" 2> "$T/err2"; then fail "failing torch job exited 0"; fi
awk '/^Root Cause/{r=1} r' "$T/err2" > "$T/root2"
expect_grep '^  rank      : 1 \(local_rank: 1\)$' "$T/root2"
expect_grep '^  traceback : RuntimeError: torch rank 1 gives up$' "$T/root2"
echo "torch: ok"
