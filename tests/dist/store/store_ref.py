# The reference for test_store_torch: runs the operations in the file given as
# argv[1] (one per line: set K V | get K | add K D | cas K E D | del K |
# num_keys; "-" is the empty value) on torch 1.13's HashStore and
# TCPStore and prints one result line per operation, after checking that both
# stores agree. num_keys prints the change since the start (torch's TCPStore
# counts a key of its own).
import sys
from datetime import timedelta

import torch.distributed as dist


def val(s):
    return b"" if s == "-" else s.encode()


def show(b):
    return "-" if b == b"" else b.decode()


def run(store, ops):
    base = store.num_keys()
    out = []
    for line in ops:
        f = line.split()
        op = f[0]
        if op == "set":
            store.set(f[1], val(f[2]))
            out.append("ok")
        elif op == "get":
            out.append(show(store.get(f[1])))
        elif op == "add":
            out.append(str(store.add(f[1], int(f[2]))))
        elif op == "cas":
            out.append(show(store.compare_set(f[1], val(f[2]), val(f[3]))))
        elif op == "del":
            out.append(str(int(store.delete_key(f[1]))))
        elif op == "num_keys":
            out.append(str(store.num_keys() - base))
        else:
            raise SystemExit("unknown op " + op)
    return out


ops = [l.strip() for l in open(sys.argv[1]) if l.strip()]
a = run(dist.HashStore(), ops)
b = run(dist.TCPStore("127.0.0.1", 0, 1, True, timedelta(seconds=30)), ops)
if a != b:
    raise SystemExit("HashStore and TCPStore disagree: %r vs %r" % (a, b))
print("\n".join(a))
