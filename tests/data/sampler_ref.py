# torch's randperm and DistributedSampler index lists for test_sampler.c, in one
# safetensors file (safetensors_min). Tensor names carry the case:
#   perm.<n>.<seed>                                      torch.randperm(n, generator=manual_seed(seed))
#   ds.<n>.<R>.<rank>.<drop_last>.<shuffle>.<seed>.<epoch>  list(DistributedSampler(...)) after set_epoch
#   randint.<seed>.<low>.<high>                          torch.randint(low, high, (50,)) then randint(0, 1000, (3,))
# (negative seeds are written with an 'm': m3 is -3)
import os, sys, torch
from torch.utils.data import DistributedSampler
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))  # ../shared/bench beside the checkout
import safetensors_min as st

def s(x): return f"m{-x}" if x < 0 else str(x)
out = {}
for n in (0, 1, 2, 10, 100, 1000, 4097, 60000):
    for seed in (0, 1, 42, 123456789, 2**32 + 7, -3):
        g = torch.Generator(); g.manual_seed(seed)
        out[f"perm.{n}.{s(seed)}"] = torch.randperm(n, generator=g)

for seed in (0, 5, 2**32 + 9):
    for low, high in ((0, 10), (0, 2), (-7, 100), (0, 2**31 + 5), (0, 2**32 - 1), (0, 2**32), (3, 2**33 + 7),
                      (-2**40, 2**40), (0, 2**62 + 1)):
        g = torch.Generator(); g.manual_seed(seed)
        a = torch.randint(low, high, (50,), generator=g)
        b = torch.randint(0, 1000, (3,), generator=g)  # where the generator stands afterwards
        out[f"randint.{s(seed)}.{s(low)}.{s(high)}"] = torch.cat([a, b])

class Sized:
    def __init__(self, n): self.n = n
    def __len__(self): return self.n

cases = 0
for n in (0, 1, 2, 5, 7, 10, 11, 64, 101, 1000):
    for R in (1, 2, 3, 4, 7, 8, 16):
        for drop in (False, True):
            for shuf in (False, True):
                for seed, epochs in (((0, (0, 1, 5)),) if shuf else ((0, (0,)),)) + (((17, (0, 3)), (-3, (2,))) if shuf else ()):
                    for ep in epochs:
                        for r in range(R):
                            ds = DistributedSampler(Sized(n), num_replicas=R, rank=r, shuffle=shuf, seed=seed, drop_last=drop)
                            ds.set_epoch(ep)
                            out[f"ds.{n}.{R}.{r}.{int(drop)}.{int(shuf)}.{s(seed)}.{ep}"] = torch.tensor(list(ds), dtype=torch.int64)
                            cases += 1
for R in (1, 2, 3, 4):  # the Fashion-MNIST job's size
    for r in range(R):
        for ep in (0, 1):
            ds = DistributedSampler(Sized(60000), num_replicas=R, rank=r, shuffle=True, seed=0)
            ds.set_epoch(ep)
            out[f"ds.60000.{R}.{r}.0.1.0.{ep}"] = torch.tensor(list(ds), dtype=torch.int64)
st.save(out, sys.argv[1])
