# Interop with test_safetensors.c. Every tensor's element i has a value given by a formula
# both sides compute (expected() here, expect_* in the C test).
#   st_interop.py gen-min DIR   write DIR/from_min.safetensors with safetensors_min.save
#   st_interop.py gen-pkg DIR   write DIR/from_pkg.safetensors with the safetensors package (bf16 too)
#   st_interop.py check-min F   load F (written by dtrain) with safetensors_min.load and check every value
#   st_interop.py check-pkg F   load F with the safetensors package and check every value and metadata
import os, sys, numpy as np, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))  # ../shared/bench beside the checkout
import safetensors_min as st

# name -> (torch dtype, shape); the C test has the same table.
TENSORS = {
    "a.f32": (torch.float32, (3, 4)), "b.f64": (torch.float64, (5,)), "c.f16": (torch.float16, (2, 3, 2)),
    "d.i64": (torch.int64, (7,)), "e.i32": (torch.int32, (2, 2)), "f.u8": (torch.uint8, (10,)),
    "g.scalar": (torch.float32, ()), "h.empty": (torch.float32, (0, 3)),
}
BF16 = {"i.bf16": (torch.bfloat16, (4,))}

def expected(dtype, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.float64)
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        t = torch.from_numpy(((i * 0.37 - 1.5) / 3.0).astype(np.float32)).to(dtype)
    elif dtype == torch.float64:
        t = torch.from_numpy((i * 0.37 - 1.5) / 3.0)
    elif dtype in (torch.int64, torch.int32):
        t = torch.from_numpy(np.arange(n, dtype=np.int64) * 7919 - 300).to(dtype)
    else:
        t = torch.from_numpy(((np.arange(n) * 37 + 11) % 256).astype(np.uint8))
    return t.reshape(shape)

def check(got, table):
    bad = 0
    for name, (dt, shape) in table.items():
        if name not in got: print(f"missing {name}"); bad += 1; continue
        g, e = got[name], expected(dt, shape)
        if g.dtype != dt or tuple(g.shape) != tuple(shape) or not torch.equal(g, e):
            print(f"{name}: got {g.dtype} {tuple(g.shape)} {g.flatten()[:8].tolist()}, expected {dt} {shape} {e.flatten()[:8].tolist()}")
            bad += 1
    extra = set(got) - set(table)
    if extra: print("unexpected tensors", sorted(extra)); bad += 1
    return bad

mode, arg = sys.argv[1], sys.argv[2]
if mode == "gen-min":
    st.save({k: expected(*v) for k, v in TENSORS.items()}, os.path.join(arg, "from_min.safetensors"))
elif mode == "gen-pkg":
    import safetensors.torch
    t = {k: expected(*v) for k, v in {**TENSORS, **BF16}.items()}
    safetensors.torch.save_file(t, os.path.join(arg, "from_pkg.safetensors"), metadata={"format": "pt", "who": "pkg"})
elif mode == "check-min":
    sys.exit(1 if check(st.load(arg), TENSORS) else 0)
elif mode == "check-pkg":
    import safetensors.torch
    from safetensors import safe_open
    bad = check(safetensors.torch.load_file(arg), {**TENSORS, **BF16})
    with safe_open(arg, framework="pt") as f:
        md = f.metadata()
        if md != {"format": "pt", "note": "written by \"dtrain\"\n"}: print("metadata", md); bad += 1
    sys.exit(1 if bad else 0)
else:
    sys.exit(f"unknown mode {mode}")
