"""Oracle for the threaded paths of the softmax and norm kernels in
tests/test_nn_ops.c: a [33, 1000] input (more than GB__PAR_MIN_WORK = 32768
elements, and 33 rows: uneven shares of rows and of blocks of rows);
values and gradients of sum(y * r).

Computed in float64 and rounded to float32: the weight and bias gradients
sum 33 rows, and torch's float32 sums would add their own rounding to what
the tests compare."""
import torch
import torch.nn.functional as F

from common import oracle

torch.manual_seed(2)
o = oracle()

x, r = torch.randn(33, 1000), torch.randn(33, 1000)
w, b = torch.randn(1000), torch.randn(1000)
for name, t in (("x", x), ("r", r), ("w", w), ("b", b)):
    o.put(name, t)


def case(key, fn, *params):
    xs = [t.double().requires_grad_() for t in (x, *params)]
    y = fn(*xs)
    (y * r.double()).sum().backward()
    o.put(f"{key}.y", y.float())
    for n, t in zip(("dx", "dw", "db"), xs):
        o.put(f"{key}.{n}", t.grad.float())


case("softmax", lambda x: torch.softmax(x, -1))
case("softmax0", lambda x: torch.softmax(x, 0))  # 1000 rows of 33, 128 side by side
case("layer_norm", lambda x, w, b: F.layer_norm(x, (1000,), w, b, 1e-5), w, b)
# transformers' LlamaRMSNorm (see nn_ops.py)
case("rms_norm", lambda x, w: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)), w)

o.save()
