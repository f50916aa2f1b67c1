# The training loop of ../shared/bench/torch_fmnist_ddp.py for one process without shuffling,
# computed in float64 from the same --init file: the exact-arithmetic yardstick that both
# torch's float32 run and ours are measured against (see test_fmnist_parity.sh).
# usage: fmnist_f64.py BENCH_DIR --model M --steps N --batch-size B --optimizer O --lr X
#        --momentum X --weight-decay X --init A --save OUT --no-shuffle [--data DIR]
import argparse, gzip, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, sys.argv[1]); import safetensors_min as st
p = argparse.ArgumentParser()
for f, t, d in (("--model", str, "cnn"), ("--steps", int, 20), ("--batch-size", int, 64), ("--optimizer", str, "sgd"),
                ("--lr", float, 0.05), ("--momentum", float, 0.9), ("--weight-decay", float, 0.0), ("--init", str, None),
                ("--save", str, None), ("--data", str, "/usr/share/datasets/fashion-mnist")):
    p.add_argument(f, type=t, default=d)
p.add_argument("--no-shuffle", action="store_true")
a = p.parse_args(sys.argv[2:]); torch.set_num_threads(1)
if not a.no_shuffle: sys.exit("fmnist_f64.py: only --no-shuffle (batches in index order) is implemented")
def idx(name, off): return np.frombuffer(gzip.open(os.path.join(a.data, name)).read(), np.uint8, offset=off)
x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
x = torch.from_numpy((x - 0.2860) / 0.3530).double(); y = torch.from_numpy(idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
if a.model == "mlp":
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
else:
    m = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
m = m.double(); m.load_state_dict({k: v.double() for k, v in st.load(a.init).items()})
opt = (torch.optim.SGD(m.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay) if a.optimizer == "sgd"
       else torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.weight_decay))
for s in range(a.steps):
    xb, yb = x[s * a.batch_size:(s + 1) * a.batch_size], y[s * a.batch_size:(s + 1) * a.batch_size]
    opt.zero_grad(); loss = F.cross_entropy(m(xb), yb); loss.backward(); opt.step()
st.save({k: v.float() for k, v in m.state_dict().items()}, a.save)
print(f"f64 reference: steps={a.steps} loss={loss.item():.6f}")
