# PyTorch side of test_nn_mod_torch: loads dtrain's state dicts into torch's nn.Sequential
# models of torch_fmnist_ddp.py with load_state_dict(strict=True) (through
# bench/safetensors_min.py, and the safetensors package when it imports), runs them on
# the test's input, and writes torch-initialised models back for dtrain to load.
# usage: nn_ref.py BENCH_DIR WORK_DIR
import sys, torch, torch.nn as nn
sys.path.insert(0, sys.argv[1]); import safetensors_min as st
d = sys.argv[2]
try:
    import safetensors.torch as sft
except ImportError:
    sft = None
def mlp(): return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
def cnn(): return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
x = st.load(f"{d}/x.safetensors")["x"]
out = {}
for name, make in (("mlp", mlp), ("cnn", cnn)):
    for loader in [st.load] + ([sft.load_file] if sft else []):
        m = make(); sd = loader(f"{d}/ours_{name}.safetensors")
        m.load_state_dict(sd, strict=True)
        for k, v in m.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, sd[k]), k
    with torch.no_grad(): out[name] = m(x)
    torch.manual_seed(7); t = make()
    st.save(t.state_dict(), f"{d}/torch_{name}.safetensors")
    if sft: sft.save_file(t.state_dict(), f"{d}/torch_pkg_{name}.safetensors")
    with torch.no_grad(): out["torch_" + name] = t(x)
st.save(out, f"{d}/out.safetensors")
print("nn_ref: strict loads ok; safetensors package:", "used" if sft else "absent")
