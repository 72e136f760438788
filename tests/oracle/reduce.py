"""Oracle for tests/test_reduce.c: values and gradients of the reductions.

For each case: the output y, a random R of y's shape and dx, the gradient of
sum(y * R) with respect to the input. Inputs: x (continuous values) and xi
(small integers, so max/min/argmax/argmin meet ties).
"""
import torch

from common import oracle

torch.manual_seed(0)
o = oracle()

x = torch.randn(3, 4, 5)
xi = torch.randint(-3, 4, (3, 4, 5)).float()
o.put("x", x)
o.put("xi", xi)


def put_case(key, fn, inp, grad=True):
    xg = inp.clone().requires_grad_(grad)
    y = fn(xg)
    o.put(f"{key}.y", y)
    if grad:
        r = torch.randn(y.shape)
        (y * r).sum().backward()
        o.put(f"{key}.r", r)
        o.put(f"{key}.dx", xg.grad)


def dname(d):
    return f"m{-d}" if d < 0 else str(d)


DIMS = [0, 1, 2, -1, -2]
for d in DIMS:
    for k in (False, True):
        sfx = f"d{dname(d)}.k{int(k)}"
        put_case(f"sum.{sfx}", lambda t: t.sum(d, keepdim=k), x)
        put_case(f"mean.{sfx}", lambda t: t.mean(d, keepdim=k), x)
        put_case(f"var.{sfx}", lambda t: t.var(d, keepdim=k), x)
        put_case(f"max.{sfx}", lambda t: t.max(d, keepdim=k).values, xi)
        put_case(f"min.{sfx}", lambda t: t.min(d, keepdim=k).values, xi)
        put_case(f"argmax.{sfx}", lambda t: t.argmax(d, keepdim=k), xi, grad=False)
        put_case(f"argmin.{sfx}", lambda t: t.argmin(d, keepdim=k), xi, grad=False)
for c in (0, 2, 5):
    put_case(f"var.c{c}", lambda t: t.var(-1, correction=c), x)  # correction 5 = N: inf

DIMLISTS = {"0_2": [0, 2], "m1_0": [-1, 0], "1": [1], "all": []}
for name, dims in DIMLISTS.items():
    for k in (False, True):
        # torch reads an empty list as all dims, like glassbox's ndims = 0
        put_case(f"sum_dims.{name}.k{int(k)}", lambda t: t.sum(dims, keepdim=k), x)
        put_case(f"mean_dims.{name}.k{int(k)}", lambda t: t.mean(dims, keepdim=k), x)
put_case("sum_all", lambda t: t.sum(), x)
put_case("mean_all", lambda t: t.mean(), x)
put_case("max_all", lambda t: t.max(), xi)  # ties share the gradient

# 0-dim input
x0 = torch.tensor(1.5)
o.put("x0", x0)
put_case("zero.sum", lambda t: t.sum(0), x0)
put_case("zero.mean", lambda t: t.mean(-1, keepdim=True), x0)
put_case("zero.max", lambda t: t.max(0).values, x0)
put_case("zero.min", lambda t: t.min(-1).values, x0)
put_case("zero.argmax", lambda t: t.argmax(0), x0, grad=False)
put_case("zero.var0", lambda t: t.var(0, correction=0), x0)
put_case("zero.var1", lambda t: t.var(0), x0, grad=False)  # nan
put_case("zero.sum_all", lambda t: t.sum(), x0)
put_case("zero.max_all", lambda t: t.max(), x0)

# empty inputs
e = torch.zeros(2, 0)
o.put("empty.sum1", e.sum(1))
o.put("empty.sum0", e.sum(0))
o.put("empty.mean1", e.mean(1))
o.put("empty.var1", e.var(1))
o.put("empty.sum_all", e.sum())
o.put("empty.mean_all", e.mean())
o.put("empty.max0", e.max(0).values)  # reducing the size-2 dim is fine

# NaN wins max/min and their indices
nan = float("nan")
xn = torch.tensor([[1, nan, 3, nan], [nan, 2, nan, 5.0], [1, 7, 2, 0]])
o.put("xn", xn)
o.put("nan.max", xn.max(1).values)
o.put("nan.min", xn.min(1).values)
o.put("nan.argmax", xn.argmax(1))
o.put("nan.argmin", xn.argmin(1))
o.put("nan.max_all", xn.max())

o.save()
