"""Oracle for the threaded paths of tests/test_reduce.c: a [192, 176] input
(more than GB__PAR_MIN_WORK elements); values and gradients of sum(y * R)."""
import torch

from common import oracle

torch.manual_seed(1)
o = oracle()


def put_case(key, fn, inp, grad=True):
    xg = inp.clone().requires_grad_(grad)
    y = fn(xg)
    o.put(f"{key}.y", y)
    if grad:
        r = torch.randn(y.shape)
        (y * r).sum().backward()
        o.put(f"{key}.r", r)
        o.put(f"{key}.dx", xg.grad)


xb = torch.randn(192, 176)
o.put("x", xb)
put_case("sum0", lambda t: t.sum(0), xb)
put_case("sum1", lambda t: t.sum(1), xb)
put_case("mean_all", lambda t: t.mean(), xb)
put_case("var0", lambda t: t.var(0), xb)
put_case("max1", lambda t: t.max(1).values, xb)
put_case("max_all", lambda t: t.max(), xb)
put_case("argmin0", lambda t: t.argmin(0), xb, grad=False)

o.save()
