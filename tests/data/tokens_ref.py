# The reference GPT job's corpus and sequential windows (bench/torch_gpt_ddp.py) for test_tokens.c.
#   tokens_ref.py DIR OUT.safetensors
# corpus (U8), n_val (I64 [1]); seq.<split>.<k>.<world>.<r>.<B>.<T> = the window starts (I64);
# x.<...>, y.<...> = the (B, T) batches of the first train case, as the job builds them;
# rnd.<seed>.<rank>.<train|val>.<i> = the random order's window starts (B 16, T 128).
import glob, os, sys, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))  # ../shared/bench beside the checkout
import safetensors_min as st
d, out_path = sys.argv[1], sys.argv[2]
files = sorted(f for f in glob.glob(os.path.join(d, "*")) if os.path.isfile(f) and not f.endswith((".dat", ".u8")))
data = torch.tensor(list(b"".join(open(f, "rb").read() for f in files)), dtype=torch.long)
n_val = len(data) // 10; train, val = data[:-n_val], data[-n_val:]
out = {"corpus": data.to(torch.uint8), "n_val": torch.tensor([n_val], dtype=torch.int64)}
cases = [("train", 0, 1, 0, 16, 128), ("train", 3, 2, 1, 16, 128), ("train", 1000, 4, 3, 8, 64), ("train", 123456, 3, 2, 16, 128)]
cases += [("val", k, 2, 1, 16, 128) for k in range(10)]
for c, (split, k, n, r, B, T) in enumerate(cases):
    src = train if split == "train" else val
    ix = [(((k * n + r) * B + j) * T) % (len(src) - T - 1) for j in range(B)]
    name = f"{split}.{k}.{n}.{r}.{B}.{T}"
    out["seq." + name] = torch.tensor(ix, dtype=torch.int64)
    if c == 0:
        out["x." + name] = torch.stack([src[i:i + T] for i in ix])
        out["y." + name] = torch.stack([src[i + 1:i + T + 1] for i in ix])
# the random order: one generator per rank, train batches then 10 validation batches
for seed, r in ((0, 0), (0, 1), (3, 2)):
    g = torch.Generator().manual_seed(1000 + seed * 1000 + r)
    for it in range(5):
        out[f"rnd.{seed}.{r}.train.{it}"] = torch.randint(len(train) - 128 - 1, (16,), generator=g)
    for k in range(10):
        out[f"rnd.{seed}.{r}.val.{k}"] = torch.randint(len(val) - 128 - 1, (16,), generator=g)
st.save(out, out_path)
