# Compares two state dicts (safetensors) tensor by tensor: error = max|b - c| / max(max|b|, 1e-30),
# i.e. the largest deviation relative to that tensor's scale (an elementwise relative error
# would blow up on weights that pass near zero). Fails when a key differs or an error exceeds TOL.
# usage: fmnist_compare.py BENCH_DIR B C TOL [-q]   (-q: print only the worst error)
import sys
sys.path.insert(0, sys.argv[1]); import safetensors_min as st
b, c, tol = st.load(sys.argv[2]), st.load(sys.argv[3]), float(sys.argv[4]); quiet = sys.argv[5:] == ["-q"]
if sorted(b) != sorted(c): sys.exit(f"keys differ: {sorted(b)} vs {sorted(c)}")
worst = 0.0
for k in sorted(b):
    if b[k].shape != c[k].shape: sys.exit(f"{k}: shape {tuple(b[k].shape)} vs {tuple(c[k].shape)}")
    e = ((b[k].double() - c[k].double()).abs().max() / max(b[k].double().abs().max().item(), 1e-30)).item()
    if not quiet: print(f"  {k:10s} {tuple(b[k].shape)!s:18s} rel err {e:.3g}")
    worst = max(worst, e)
print(f"{worst:.3g}" if quiet else f"  worst {worst:.3g} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
