# PyTorch's forward results and gradients for test_torch_ops.c, as one safetensors file.
#   ops_ref.py OUT.safetensors
# For each case c (the C test has a closure of the same name):
#   c.in.<i>    input i (float32 unless the case says otherwise), requires grad when float
#   c.w         weights: the loss is sum(out * w)
#   c.out       the op's output
#   c.grad.<i>  d loss / d input i
# Cases named *_bf16 compute in bfloat16; their tensors are stored as float32 (exact).
import math, os, sys, warnings, torch
import torch.nn.functional as F
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))
import safetensors_min as st

torch.manual_seed(7)

def attention(x, wqkv, wproj):
    B, T, C = x.shape; H = 2
    q, k, v = F.linear(x, wqkv).split(C, 2)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
    att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
    att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
    return F.linear((att @ v).transpose(1, 2).reshape(B, T, C), wproj)

P = "pos"  # inputs drawn in [0.5, 2.5) instead of N(0, 1)
CASES = {
    "add_bcast": ([(3, 4), (4,)], lambda a, b: a + b),
    "sub_bcast": ([(2, 1, 4), (3, 1)], lambda a, b: a - b),
    "mul_bcast": ([(2, 1, 4), (3, 1)], lambda a, b: a * b),
    "div": ([(3, 4), ((3, 4), P)], lambda a, b: a / b),
    "pow": ([((3, 4), P), (4,)], lambda a, b: a ** b),
    "scalars": ([(5, 3)], lambda a: (2.5 - a) * 3 / 1.5 + 0.25),
    "rdiv_pow": ([((5, 3), P)], lambda a: 2.0 / a + a ** 1.5),
    "exp": ([(4, 5)], torch.exp), "log": ([((4, 5), P)], torch.log), "sqrt": ([((4, 5), P)], torch.sqrt),
    "tanh": ([(4, 5)], torch.tanh), "sigmoid": ([(4, 5)], torch.sigmoid), "relu": ([(4, 5)], torch.relu),
    "gelu": ([(4, 5)], F.gelu), "gelu_tanh": ([(4, 5)], lambda a: F.gelu(a, approximate="tanh")),
    "sum_dim1_keep": ([(3, 4, 5)], lambda a: a.sum(1, keepdim=True)),
    "sum_all": ([(3, 4, 5)], lambda a: a.sum()),
    "mean_dims02": ([(3, 4, 5)], lambda a: a.mean((0, 2))),
    "max_dim1": ([(3, 4, 5)], lambda a: a.max(1).values),
    "softmax_last": ([(3, 4, 5)], lambda a: a.softmax(-1)),
    "log_softmax_dim0": ([(3, 4, 5)], lambda a: a.log_softmax(0)),
    "matmul": ([(5, 7), (7, 3)], lambda a, b: a @ b),
    "matmul_t": ([(7, 5), (3, 7)], lambda a, b: a.t() @ b.t()),
    "matmul_batched": ([(2, 1, 5, 7), (3, 7, 4)], lambda a, b: a @ b),
    "matmul_vec": ([(7,), (2, 7, 3)], lambda a, b: a @ b),
    "linear": ([(2, 5, 8), (6, 8), (6,)], F.linear),
    "masked_softmax": ([(2, 6, 6)], lambda a: a.masked_fill(torch.triu(torch.ones(6, 6, dtype=torch.bool), 1), float("-inf")).softmax(-1)),
    "cat_views": ([(2, 3, 4), (2, 3, 2)], lambda a, b: torch.cat([a.transpose(1, 2).reshape(2, 2, 6), b.reshape(2, 1, 6), a[:, :, ::3].reshape(2, 1, 6)], 1)),
    "attention": ([(2, 5, 8), (24, 8), (8, 8)], attention),
    "matmul_bf16": ([((6, 16), "bf16"), ((16, 5), "bf16")], lambda a, b: a @ b),
    "gelu_bf16": ([((4, 8), "bf16")], F.gelu),
}

out = {}
for name, (specs, fn) in CASES.items():
    ins = []
    for s in specs:
        shape, kind = (s, None) if isinstance(s[0], int) or s == () else s
        if kind == P: t = torch.rand(shape) * 2 + 0.5
        else: t = torch.randn(shape)
        if kind == "bf16": t = t.to(torch.bfloat16)
        ins.append(t.requires_grad_())
    y = fn(*ins)
    w = torch.randn(y.shape).to(y.dtype)
    (y * w).sum().backward()
    for i, t in enumerate(ins):
        out[f"{name}.in.{i}"] = t.detach()
        out[f"{name}.grad.{i}"] = t.grad
    out[f"{name}.w"] = w
    out[f"{name}.out"] = y.detach()
# forward only
x = torch.randn(4, 7)
out["argmax.in.0"] = x
out["argmax.out"] = x.argmax(1)
# numpy has no bfloat16: bf16 tensors are stored as the float32 values they equal exactly
st.save({k: v.float() if v.dtype == torch.bfloat16 else v for k, v in out.items()}, sys.argv[1])
