# PyTorch's results for test_optim.c, written as one safetensors file (safetensors_min).
#   optim_ref.py OUT.safetensors
# For each optimizer config c (the C test has the same table):
#   c.init.<j>        parameter j before the first step
#   c.grad.<k>.<j>    its gradient at step k (absent: grad is None at that step)
#   c.lr.<k>          the lr set before step k (F64 [1])
#   c.param.<k>.<j>   parameter j after step k
# Schedulers: sched.<name> = the lr before the first scheduler.step() and after each (F64).
# Clipping: clip.<m>.grad.<j> before, clip.<m>.out.<j> after, clip.<m>.norm (F32 [1]).
import os, sys, warnings, torch
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "bench"))  # ../shared/bench beside the checkout
import safetensors_min as st

torch.manual_seed(1234)
SHAPES = [(7,), (5, 3), (33,)]
STEPS = 5
O = torch.optim
CONFIGS = {
    "sgd_plain": lambda p: O.SGD(p, lr=0.1),
    "sgd_mom": lambda p: O.SGD(p, lr=0.1, momentum=0.9),
    "sgd_damp": lambda p: O.SGD(p, lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "sgd_nest": lambda p: O.SGD(p, lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-3),
    "sgd_max": lambda p: O.SGD(p, lr=0.1, momentum=0.5, maximize=True),
    "adam": lambda p: O.Adam(p, lr=1e-3),
    "adam_wd": lambda p: O.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    "adamw": lambda p: O.AdamW(p, lr=1e-3),
    "adamw_wd": lambda p: O.AdamW(p, lr=0.01, betas=(0.85, 0.995), weight_decay=0.1, maximize=True),
}
LRS = {"adamw": [1e-3, 2e-3, 5e-4, 1e-3, 3e-3], "sgd_nest": [0.1, 0.05, 0.2, 0.1, 0.01]}
NONE_AT = {"sgd_mom": (2, 1), "adam": (1, 0)}  # (step, slot) whose grad is None

out = {}
for c, make in CONFIGS.items():
    params = [torch.nn.Parameter(torch.randn(s) * 2) for s in SHAPES]
    for j, p in enumerate(params): out[f"{c}.init.{j}"] = p.detach().clone()
    opt = make(params)
    for k in range(STEPS):
        lr = LRS.get(c, [opt.param_groups[0]["lr"]] * STEPS)[k]
        opt.param_groups[0]["lr"] = lr
        out[f"{c}.lr.{k}"] = torch.tensor([lr], dtype=torch.float64)
        for j, p in enumerate(params):
            if NONE_AT.get(c) == (k, j):
                p.grad = None
            else:
                p.grad = torch.randn(p.shape)
                out[f"{c}.grad.{k}.{j}"] = p.grad.clone()
        opt.step()
        for j, p in enumerate(params): out[f"{c}.param.{k}.{j}"] = p.detach().clone()

def lrs(make_sched, n, base=0.1):
    opt = O.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    s = make_sched(opt); seq = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step(); s.step(); seq.append(opt.param_groups[0]["lr"])
    return torch.tensor(seq, dtype=torch.float64)

S = O.lr_scheduler
out["sched.step"] = lrs(lambda o: S.StepLR(o, step_size=3, gamma=0.5), 20)
out["sched.cosine"] = lrs(lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 35)
out["sched.linear_up"] = lrs(lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4), 10)
out["sched.linear_down"] = lrs(lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=6), 10)
out["sched.warmup_cosine"] = lrs(lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
                                                               S.CosineAnnealingLR(o, T_max=15, eta_min=0.0)], milestones=[5]), 25)

for m, max_norm in (("clip", 1.0), ("noclip", 100.0)):
    ps = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES + [(300,)]]
    for j, p in enumerate(ps):
        p.grad = torch.randn(p.shape) * 0.7
        out[f"clip.{m}.grad.{j}"] = p.grad.clone()
    norm = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    out[f"clip.{m}.norm"] = norm.reshape(1)
    for j, p in enumerate(ps): out[f"clip.{m}.out.{j}"] = p.grad.clone()
st.save(out, sys.argv[1])
