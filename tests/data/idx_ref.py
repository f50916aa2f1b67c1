# numpy's reading of IDX files, for test_idx.c: for each path prints
# "ndim dims... numel sum v[i] for i in the indices given" on one line.
import gzip, sys, numpy as np
idxs = [int(x) for x in sys.argv[1].split(",")]
for path in sys.argv[2:]:
    raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
    nd = raw[3]; dims = np.frombuffer(raw, ">u4", nd, 4).astype(np.int64)
    a = np.frombuffer(raw, np.uint8, offset=4 + 4 * nd)
    vals = [int(a[i]) if i < a.size else -1 for i in idxs]
    print(nd, *dims.tolist(), a.size, int(a.astype(np.int64).sum()), *vals)
