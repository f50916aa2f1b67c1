# PyTorch side of test_nn_mod_torch's GPT case: the GPT of ../shared/bench/torch_gpt_ddp.py at a
# small size, loaded from dtrain's state dict with load_state_dict(strict=True); writes the
# logits on the test's token ids, the loss and every parameter's gradient ("grad.<name>").
# usage: gpt_ref.py BENCH_DIR WORK_DIR L H E T
import math, sys, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, sys.argv[1]); import safetensors_min as st
d = sys.argv[2]; L, H, E, T = (int(v) for v in sys.argv[3:7])
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln1, s.ln2 = nn.LayerNorm(E), nn.LayerNorm(E)
        s.qkv, s.proj = nn.Linear(E, 3 * E), nn.Linear(E, E); s.fc, s.out = nn.Linear(E, 4 * E), nn.Linear(4 * E, E)
    def forward(s, x):
        B, T_, _ = x.shape; q, k, v = s.qkv(s.ln1(x)).split(E, 2)
        q, k, v = (t.view(B, T_, H, E // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(E // H)
        att = att.masked_fill(torch.triu(torch.ones(T_, T_, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        x = x + s.proj((att @ v).transpose(1, 2).reshape(B, T_, E))
        return x + s.out(F.gelu(s.fc(s.ln2(x))))
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.tok, s.pos = nn.Embedding(256, E), nn.Embedding(T, E)
        s.blocks = nn.Sequential(*[Block() for _ in range(L)]); s.ln, s.head = nn.LayerNorm(E), nn.Linear(E, 256, bias=False)
    def forward(s, idx):
        x = s.tok(idx) + s.pos(torch.arange(idx.shape[1])); return s.head(s.ln(s.blocks(x)))
m = GPT(); m.load_state_dict(st.load(f"{d}/gpt.safetensors"), strict=True)
io = st.load(f"{d}/gpt_io.safetensors"); x, y = io["x"], io["y"]
logits = m(x); loss = F.cross_entropy(logits.view(-1, 256), y.view(-1)); loss.backward()
out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
out.update({"grad." + k: p.grad for k, p in m.named_parameters()})
st.save(out, f"{d}/gpt_out.safetensors")
print(f"gpt_ref: strict load ok, loss {loss.item():.6f}")
