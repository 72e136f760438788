"""Oracle for tests/test_print.c: str(t) from PyTorch, default print options.

Each case is a tensor (a common.Oracle line under the case's name) and a
tab-separated line that gbt_oracle_load skips:

  #str NAME VIEW STR

VIEW says how the printed tensor is made from the stored one: "-" (as is),
"T" (transpose of the last two dims), "meta" (a shape-only tensor of the same
shape and dtype), or an index expression such as "[::2,1:]". STR is torch's
str() with backslashes and newlines escaped as \\\\ and \\n.
"""
import math

import torch

from common import oracle

o = oracle()
torch.manual_seed(0)
n = 0


def case(t, view="-", name=None):
    global n
    name = name or f"c{n}"
    n += 1
    o.put(name, t)
    if view == "-":
        shown = t
    elif view == "T":
        shown = t.transpose(-2, -1)
    elif view == "meta":
        shown = torch.empty(t.shape, dtype=t.dtype, device="meta")
    else:
        assert " " not in view
        shown = eval("t" + view)
    s = str(shown).replace("\\", "\\\\").replace("\n", "\\n")
    assert "\t" not in s
    o.lines.append("\t".join(["#str", name, view, s]))


f = torch.float32
inf, nan = math.inf, math.nan

# small, float and integer-valued floats
case(torch.randn(2, 3))
case(torch.randn(4))
case(torch.randn(3, 4, 5))
case(torch.tensor([1.0, 2.0, 3.0]))
case(torch.tensor([-1.0, 20.0, 300.0]))
case(torch.tensor([0.5, -0.25, 100.125]))
case(torch.tensor([[1.0, -1.0], [0.0, 2.0]]))
case(torch.tensor([123456.789, 0.5]))
case(torch.tensor([-0.0, 0.0, 1.0]))
case(torch.tensor([-0.0]))
case(torch.tensor([0.0, 0.0]))
case(torch.tensor([0.00015, 0.5]))
case(torch.tensor([0.00005, 0.5]))
case(torch.tensor([0.0001, 1.0]))
case(torch.tensor([1.0, 1000.0]))
case(torch.tensor([1.0, 1001.0]))
case(torch.tensor([1.0, 1000.5]))
case(torch.tensor([1e8, 1.0]))
case(torch.tensor([1e9, 2.0]))
case(torch.tensor([1e-5, 1.0, 1000.0]))
case(torch.tensor([3.4e38, -1e-38]))
case(torch.tensor([0.99995, 0.00049]))
case(torch.tensor([2.5, 3.5, -2.5]))

# nan and inf
case(torch.tensor([nan, 1.0, inf, -inf]))
case(torch.tensor([nan]))
case(torch.tensor([inf, -inf]))
case(torch.tensor([0.0, nan]))
case(torch.tensor([1.5, nan, -inf]))
case(torch.tensor([1e-6, nan, inf]))
case(torch.tensor([1e10, -inf, nan, 3.0]))
case(torch.tensor([[nan, 1.25], [inf, 12345.5]]))

# 0-dim
case(torch.tensor(3.0))
case(torch.tensor(-0.5))
case(torch.tensor(1e-10))
case(torch.tensor(nan))
case(torch.tensor(-inf))
case(torch.tensor(5))
case(torch.tensor(7, dtype=torch.int32))
case(torch.tensor(True))
case(torch.tensor(2.5).half())
case(torch.tensor(1e20))

# wide: line wrapping at 80 columns
case(torch.randn(30))
case(torch.arange(100.0))
case(torch.arange(100))
case(torch.randn(2, 20))
case(torch.randn(3, 2, 13) * 100)
case(torch.randn(40) * 1e-5)
case(torch.randn(25) * 1e6)
case(torch.arange(-40, 40, dtype=torch.int32) * 12345)

# summarised: more than 1000 elements
case(torch.randn(1001))
case(torch.arange(2000.0))
case(torch.randn(40, 50))
case(torch.randn(10, 20, 30))
case(torch.randn(2, 1000))
case(torch.randn(1000, 2))
case(torch.randn(5, 6, 7, 8))
case(torch.randn(7, 1, 200))
case(torch.arange(3000).reshape(30, 100))
case(torch.randint(-5, 5, (1200,)) == 0)
case(torch.randn(50, 40), "T")
case(torch.randn(1010) * 1e-6)
case((torch.randn(33, 33) * 10).half())

# integers and bools
case(torch.arange(10))
case(torch.tensor([[-3, 14], [159, -2653]], dtype=torch.int32))
case(torch.tensor([0, 255, 7], dtype=torch.uint8))
case(torch.tensor([10**12, -5, 3]))
case(torch.randint(0, 2, (3, 5)) == 1)
case(torch.tensor([True, False]))
case(torch.tensor([[True], [True]]))

# float16 / bfloat16
case(torch.randn(2, 3).half())
case(torch.randn(2, 3).bfloat16())
case(torch.tensor([1.0, 2.0, 65504.0]).half())
case(torch.tensor([inf, -1.0, 0.5]).half())
case(torch.tensor([1e-7, 1.0]).half())
case(torch.tensor([3.140625, 1e30]).bfloat16())

# empty
case(torch.zeros(0))
case(torch.zeros(0, 3))
case(torch.zeros(2, 0, 4, dtype=torch.int64))
case(torch.zeros(0, dtype=torch.int32))
case(torch.zeros(0, dtype=torch.bool))
case(torch.zeros(0).half())

# non-contiguous views
case(torch.randn(3, 4), "T")
case(torch.arange(24.0).reshape(4, 6), "[::2,1:]")
case(torch.arange(60.0).reshape(3, 20), "[:,::3]")
case(torch.randn(2, 3, 4), "[:,None,::2,-1]")
case(torch.arange(12).reshape(3, 4), "T")
case(torch.randn(4, 5), "[1:3,2:]")

# shape only
case(torch.zeros(2, 3), "meta")
case(torch.zeros(4, dtype=torch.int64), "meta")
case(torch.zeros((), dtype=torch.float16), "meta")
case(torch.zeros(3, 200, 7), "meta")

# deep nesting and dtype suffixes that wrap onto a new line
case(torch.arange(64.0).reshape(2, 1, 2, 1, 2, 1, 2, 4))
case(torch.randn(2, 2, 2, 2))
for k in range(18):
    case(torch.arange(k * 7 + 3, dtype=torch.int32) * (10 ** (k % 5)))
for k in range(6):
    case((torch.randn(k * 4 + 7) * 10 ** (k - 2)).half())

# random stress: shapes, magnitudes and dtypes mixed
g = torch.Generator().manual_seed(1)
for k in range(60):
    nd = int(torch.randint(1, 4, (1,), generator=g))
    shape = [int(s) for s in torch.randint(1, 9, (nd,), generator=g)]
    scale = 10.0 ** float(torch.randint(-6, 10, (1,), generator=g))
    t = torch.randn(shape, generator=g) * scale
    kind = k % 6
    if kind == 1:
        t = t.round()
    elif kind == 2:
        t = t.half()
    elif kind == 3:
        t = t.bfloat16()
    elif kind == 4:
        t = t.round().clamp(-2**31, 2**31 - 1).to(torch.int32)
    elif kind == 5 and t.numel() > 2:
        t.view(-1)[0] = nan
        t.view(-1)[1] = -inf
    case(t)

o.save()
