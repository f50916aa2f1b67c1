# PyTorch's results and gradients for test_torch_gpt.c (the GPT's layer_norm, embedding
# and attention), as one safetensors file.
#   gpt_ref.py OUT.safetensors
# For each case c and dtype d in (f32, f64), the C test has a closure named c:
#   c_d.in.<i>    input i; floating inputs require grad
#   c_d.w         weights: the loss is sum(out * w)
#   c_d.out       the op's output
#   c_d.grad.<i>  d loss / d input i (absent for integer inputs)
# Attention is computed as the reference GPT (bench/torch_gpt_ddp.py) does, unfused:
# (q @ k^T) / sqrt(d), masked_fill(triu(ones, 1), -inf), softmax(-1), @ v.
import math, os, sys, warnings, torch
import torch.nn.functional as F
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))
import safetensors_min as st

torch.manual_seed(11)

def attention(q, k, v, causal, scale=None):
    L, S = q.shape[-2], k.shape[-2]
    att = (q @ k.transpose(-2, -1)) * scale if scale else (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if causal:
        att = att.masked_fill(torch.triu(torch.ones(L, S, dtype=torch.bool), 1), float("-inf"))
    return att.softmax(-1) @ v

def gpt_block_attention(x, wqkv, bqkv, wproj, H=4):
    B, T, C = x.shape
    q, k, v = F.linear(x, wqkv, bqkv).split(C, 2)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
    return F.linear(attention(q, k, v, True).transpose(1, 2).reshape(B, T, C), wproj)

def ids(shape, num):
    t = torch.randint(0, num, shape)
    t.view(-1)[1] = t.view(-1)[0]  # a repeated id
    return ("ids", t)

CASES = {
    "layer_norm": (lambda: [(2, 5, 8), (8,), (8,)], lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5)),
    "layer_norm_2d_noaffine": (lambda: [(3, 4, 6)], lambda x: F.layer_norm(x, (4, 6), None, None, 1e-5)),
    "layer_norm_gpt": (lambda: [(4, 16, 32), (32,), (32,)], lambda x, w, b: F.layer_norm(x, (32,), w, b, 1e-5)),
    "embedding": (lambda: [(10, 6), ids((2, 7), 10)], lambda w, i: F.embedding(i, w)),
    "embedding_tok_pos": (lambda: [(256, 16), (8, 16), ids((3, 8), 256)],
                          lambda tok, pos, i: F.embedding(i, tok) + F.embedding(torch.arange(i.shape[1]), pos)),
    "sdpa_causal": (lambda: [(2, 4, 16, 8), (2, 4, 16, 8), (2, 4, 16, 8)], lambda q, k, v: attention(q, k, v, True)),
    "sdpa_causal_t128": (lambda: [(1, 2, 128, 32), (1, 2, 128, 32), (1, 2, 128, 32)], lambda q, k, v: attention(q, k, v, True)),
    "sdpa_cross": (lambda: [(3, 5, 8), (3, 9, 8), (3, 9, 6)], lambda q, k, v: attention(q, k, v, False, 0.3)),
    "gpt_attention": (lambda: [(2, 12, 32), (96, 32), (96,), (32, 32)], gpt_block_attention),
}

out = {}
for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
    for name, (specs, fn) in CASES.items():
        ins = []
        for s in specs():
            if isinstance(s, tuple) and s and s[0] == "ids":
                ins.append(s[1])
            else:
                ins.append((torch.randn(s, dtype=torch.float64) * 0.5).to(dtype).requires_grad_())
        y = fn(*ins)
        w = torch.randn(y.shape, dtype=torch.float64).to(dtype)
        (y * w).sum().backward()
        key = f"{name}_{suffix}"
        for i, t in enumerate(ins):
            out[f"{key}.in.{i}"] = t.detach()
            if t.is_floating_point():
                out[f"{key}.grad.{i}"] = t.grad
        out[f"{key}.w"] = w
        out[f"{key}.out"] = y.detach()
st.save(out, sys.argv[1])
