# Runs a PyTorch reference script in float64: torch.set_default_dtype(torch.float64), then the
# script as __main__ with the remaining arguments, so its model, loss and optimizer compute in
# f64 (an --init file of f32 values is widened on load_state_dict). Gives the exact-arithmetic
# result that the f32 runs of torch and dtrain are both compared with.
# usage: run_f64.py SCRIPT.py [args...]   (under launch_torch.sh when the script needs a process group)
import runpy, sys, torch
torch.set_default_dtype(torch.float64)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
