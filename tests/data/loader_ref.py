# torch's DataLoader batches (as the dataset items of their rows) for test_loader.c, in one
# safetensors file (safetensors_min). The dataset is TensorDataset(arange(n)), so a batch's
# values are its items. Per case two tensors: the items of all batches concatenated, and
# the batch sizes. Names carry the case:
#   dl.<n>.<R>.<rank>.<bs>.<loader drop_last>.<sampler drop_last>.<shuffle>.<seed>.<epoch>
#       DataLoader(batch_size=bs, drop_last, sampler=DistributedSampler(...)) after set_epoch
#   rs.<n>.<bs>.<replacement>.<num_samples or 0>.<seed>.<epoch>
#       DataLoader(sampler=RandomSampler(..., generator=manual_seed(seed))), its (epoch+1)-th pass
#   seq.<n>.<bs>.<drop_last>       DataLoader(batch_size=bs, drop_last) (sequential)
# with ".items" or ".sizes" appended.
import os, sys, torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))
import safetensors_min as st

out = {}
def put(name, dl):
    bs = [b[0] for b in dl]
    out[name + ".items"] = torch.cat(bs) if bs else torch.zeros(0, dtype=torch.int64)
    out[name + ".sizes"] = torch.tensor([len(b) for b in bs], dtype=torch.int64)

for n in (0, 1, 10, 11, 101, 1000):
    ds = TensorDataset(torch.arange(n))
    for bs in (1, 3, 8, 64):
        for ldrop in (0, 1):
            put(f"seq.{n}.{bs}.{ldrop}", DataLoader(ds, batch_size=bs, drop_last=bool(ldrop)))
        for R in (1, 2, 3, 4):
            for r in range(R):
                for ldrop in (0, 1):
                    for sdrop in (0, 1):
                        for shuf, seed, ep in ((0, 0, 0), (1, 0, 0), (1, 0, 2), (1, 17, 1)):
                            s = DistributedSampler(ds, num_replicas=R, rank=r, shuffle=bool(shuf), seed=seed, drop_last=bool(sdrop))
                            s.set_epoch(ep)
                            put(f"dl.{n}.{R}.{r}.{bs}.{ldrop}.{sdrop}.{shuf}.{seed}.{ep}",
                                DataLoader(ds, batch_size=bs, drop_last=bool(ldrop), sampler=s))
    if n == 0: continue
    for bs in (1, 8):
        for repl, ns in ((0, 0), (0, n // 2 + 1), (0, 2 * n + 3), (1, 0), (1, 70)):
            for seed in (0, 5):
                g = torch.Generator(); g.manual_seed(seed)
                rs = RandomSampler(ds, replacement=bool(repl), num_samples=ns or None, generator=g)
                dl = DataLoader(ds, batch_size=bs, sampler=rs)
                for ep in range(3):
                    put(f"rs.{n}.{bs}.{repl}.{ns}.{seed}.{ep}", dl)
st.save(out, sys.argv[1])
