# PyTorch's results and gradients for test_torch_nn.c (nn's conv, pooling and losses),
# as one safetensors file.   nn_ref.py OUT.safetensors
# Every case c runs in float32 as "c" and in float64 as "c.f64":
#   c.p         int64 [kind, a0..a5, reduction, ignore_index]: what the C side calls
#               (kind 0 conv2d(stride a0 a1, padding a2 a3), 1 max_pool2d and 2
#               avg_pool2d(kernel a0 a1, stride a2 a3, padding a4 a5), 3 cross_entropy,
#               4 nll_loss, 5 mse_loss; reduction 0 mean, 1 sum, 2 none)
#   c.in.<i>    floating input i (requires grad)
#   c.target    int64 class ids (losses 3 and 4)
#   c.w         weights: the loss backpropagated is sum(out * w)
#   c.out       the op's output (0-dim results stored as shape [1])
#   c.grad.<i>  d loss / d input i
import os, sys, warnings, torch
import torch.nn.functional as F
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))
import safetensors_min as st

torch.manual_seed(11)
RED = ["mean", "sum", "none"]

def conv(shapes, s, p):
    return (0, list(s) + list(p) + [0, 0], shapes, None, lambda x, w, b=None: F.conv2d(x, w, b, stride=s, padding=p))

def pool(kind, shape, k, s, p):
    f = F.max_pool2d if kind == 1 else F.avg_pool2d
    return (kind, list(k) + list(s) + list(p), [shape], None, lambda x: f(x, k, s, p))

def ce(n, c, red, ignore=-100, kind=3):
    t = torch.randint(0, c, (n,))
    t[1] = ignore            # one ignored row (a class id when ignore is one)
    if n > 4: t[4] = ignore
    f = F.cross_entropy if kind == 3 else F.nll_loss
    return (kind, [0] * 6, [(n, c)], t, lambda x: f(x, t, reduction=RED[red], ignore_index=ignore), red, ignore)

CASES = {
    "conv_p1_s1_bias": conv([(4, 3, 9, 8), (5, 3, 3, 3), (5,)], (1, 1), (1, 1)),
    "conv_p0_s1_nobias": conv([(2, 3, 7, 7), (4, 3, 3, 3)], (1, 1), (0, 0)),
    "conv_p1_s2_bias": conv([(3, 2, 9, 10), (4, 2, 3, 3), (4,)], (2, 2), (1, 1)),
    "conv_p0_s2_nobias": conv([(2, 4, 8, 9), (3, 4, 2, 3)], (2, 2), (0, 0)),
    "conv_mixed": conv([(2, 3, 11, 7), (2, 3, 5, 3), (2,)], (2, 1), (2, 1)),
    "conv_1x1": conv([(2, 6, 5, 4), (3, 6, 1, 1), (3,)], (1, 1), (0, 0)),
    "conv_fmnist1": conv([(4, 1, 28, 28), (32, 1, 3, 3), (32,)], (1, 1), (1, 1)),
    "conv_fmnist2": conv([(4, 32, 14, 14), (64, 32, 3, 3), (64,)], (1, 1), (1, 1)),
    "maxpool_2": pool(1, (2, 3, 8, 7), (2, 2), (2, 2), (0, 0)),
    "maxpool_3s2p1": pool(1, (2, 3, 9, 9), (3, 3), (2, 2), (1, 1)),
    "maxpool_mixed": pool(1, (1, 2, 7, 8), (3, 2), (1, 2), (1, 0)),
    "maxpool_unbatched": pool(1, (3, 6, 6), (2, 2), (2, 2), (0, 0)),
    "avgpool_2": pool(2, (2, 3, 8, 7), (2, 2), (2, 2), (0, 0)),
    "avgpool_3s2p1": pool(2, (2, 3, 9, 9), (3, 3), (2, 2), (1, 1)),
    "avgpool_mixed": pool(2, (1, 2, 7, 8), (3, 2), (2, 1), (1, 1)),
    "ce_mean": ce(16, 10, 0), "ce_sum": ce(16, 10, 1), "ce_none": ce(16, 10, 2),
    "ce_ignore3": ce(9, 5, 0, ignore=3),
    "nll_mean": ce(12, 7, 0, kind=4), "nll_sum": ce(12, 7, 1, kind=4), "nll_none": ce(12, 7, 2, kind=4),
    "nll_ignore0": ce(6, 4, 0, ignore=0, kind=4),
}
for r in range(3):
    CASES[f"mse_{RED[r]}"] = (5, [0] * 6, [(4, 6), (4, 6)], None, lambda a, b, r=r: F.mse_loss(a, b, reduction=RED[r]), r)
CASES["mse_bcast"] = (5, [0] * 6, [(3, 5), (5,)], None, lambda a, b: F.mse_loss(a, b), 0)

out = {}
for name, case in CASES.items():
    kind, args, shapes, target, fn = case[:5]
    red = case[5] if len(case) > 5 else 0
    ignore = case[6] if len(case) > 6 else -100
    base = [torch.randn(s) for s in shapes]
    for dtype, key in ((torch.float32, name), (torch.float64, name + ".f64")):
        ins = [t.clone().to(dtype).requires_grad_() for t in base]
        y = fn(*ins)
        w = torch.randn(y.shape, dtype=torch.float64).to(dtype)
        (y * w).sum().backward()
        out[key + ".p"] = torch.tensor([kind] + args + [red, ignore], dtype=torch.int64)
        for i, t in enumerate(ins):
            out[f"{key}.in.{i}"] = t.detach()
            out[f"{key}.grad.{i}"] = t.grad
        if target is not None: out[key + ".target"] = target
        out[key + ".w"] = w
        out[key + ".out"] = y.detach()
st.save(out, sys.argv[1])
