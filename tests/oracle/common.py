"""Writes oracle files for the C tests: PyTorch computes, C compares.

Each line: `key dtype ndim d0 .. dn-1 v0 v1 ...`. f32 values are printed
with repr() of the float64 that holds them exactly, so they round-trip.
"""
import sys

import torch

torch.set_num_threads(1)

_DT = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


class Oracle:
    def __init__(self, path):
        self.path = path
        self.lines = []
        self.keys = set()

    def put(self, key, t):
        assert key not in self.keys, key
        self.keys.add(key)
        t = torch.as_tensor(t).detach().contiguous()
        dt = _DT[t.dtype]
        flat = t.reshape(-1)
        if t.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        if t.dtype.is_floating_point:
            vals = [repr(float(v)) for v in flat.tolist()]
        else:
            vals = [str(int(v)) for v in flat.tolist()]
        self.lines.append(" ".join([key, dt, str(t.dim())] + [str(s) for s in t.shape] + vals))

    def save(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def oracle():
    return Oracle(sys.argv[1])
