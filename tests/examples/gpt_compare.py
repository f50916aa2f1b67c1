# Compares two GPT state dicts (safetensors) tensor by tensor, as fmnist_compare.py does:
# err = max|b - c| / max(max|b|, 1e-30), the largest deviation relative to that tensor's scale.
# Each blocks.*.qkv.bias is split into its q, k and v thirds, and the k thirds are reported
# apart ("kbias"): their exact gradient is zero (adding a constant to every key shifts each
# query's scores by the same amount, which softmax ignores), so in f32 they receive only
# rounding noise, which AdamW's normalisation turns into small updates of random sign; the
# rest ("main") is the comparison proper. The scale of a third is that of the whole bias; for
# the k thirds the largest absolute difference max|b - c| is printed as well ("kbias_abs").
# Prints "main=<worst> kbias=<worst> kbias_abs=<worst> at=<worst main tensor>"; -v lists every tensor.
# usage: gpt_compare.py BENCH_DIR B C [-v]
import sys
sys.path.insert(0, sys.argv[1]); import safetensors_min as st
b, c = st.load(sys.argv[2]), st.load(sys.argv[3]); verbose = "-v" in sys.argv[4:]
if sorted(b) != sorted(c): sys.exit(f"keys differ: {sorted(b)} vs {sorted(c)}")
main, kbias, kabs, at = 0.0, 0.0, 0.0, "-"
for k in sorted(b):
    if b[k].shape != c[k].shape: sys.exit(f"{k}: shape {tuple(b[k].shape)} vs {tuple(c[k].shape)}")
    x, y = b[k].double(), c[k].double(); scale = max(x.abs().max().item(), 1e-30)
    parts = [(k, x, y)]
    if k.endswith(".qkv.bias"):
        E = x.shape[0] // 3
        parts = [(f"{k}[{n}]", x[i * E:(i + 1) * E], y[i * E:(i + 1) * E]) for i, n in enumerate("qkv")]
    for name, u, v in parts:
        e = ((u - v).abs().max() / scale).item()
        if verbose: print(f"  {name:24s} rel err {e:.3g}")
        if name.endswith("[k]"): kbias, kabs = max(kbias, e), max(kabs, (u - v).abs().max().item())
        elif e > main: main, at = e, name
print(f"main={main:.3g} kbias={kbias:.3g} kbias_abs={kabs:.3g} at={at}")
