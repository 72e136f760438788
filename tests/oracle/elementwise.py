"""Oracle for tests/test_elementwise.c: values and gradients of the elementwise ops.

For each case: the inputs, the output y, a random R of y's shape and the
gradients of sum(y * R) with respect to each differentiable input.
"""
import math

import torch
import torch.nn.functional as F

from common import oracle

torch.manual_seed(0)
o = oracle()


def grads(key, fn, inputs, names):
    """Put inputs, y = fn(*inputs), r and the gradient of sum(y * r) for each input named."""
    xs = [t.clone().requires_grad_(t.dtype == torch.float32 and n is not None) for t, n in zip(inputs, names)]
    y = fn(*xs)
    for t, n in zip(inputs, names):
        if n is not None:
            o.put(f"{key}.{n}", t)
    o.put(f"{key}.y", y)
    if not y.dtype.is_floating_point:
        return
    r = torch.randn(y.shape)
    o.put(f"{key}.r", r)
    (y * r).sum().backward()
    for x, n in zip(xs, names):
        if n is not None and x.requires_grad:
            o.put(f"{key}.d{n}", x.grad)


def gelu_new(x):
    # Hugging Face's gelu_new, the spec of gb_gelu_tanh.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


# ---- unary: x [3, 5], with zeros and clamp bounds placed on purpose -------
x = torch.randn(3, 5) * 2
x[0, 0] = 0.0     # abs, relu: the gradient at 0 is 0
x[0, 1] = -0.5    # clamp: the bounds pass the gradient
x[0, 2] = 0.7
pos = x.abs() + 0.1

UNARY = {
    "neg": (torch.neg, x),
    "exp": (torch.exp, x),
    "log": (torch.log, pos),
    "sqrt": (torch.sqrt, pos),
    "rsqrt": (torch.rsqrt, pos),
    "tanh": (torch.tanh, x),
    "sigmoid": (torch.sigmoid, x),
    "abs": (torch.abs, x),
    "clamp": (lambda t: torch.clamp(t, -0.5, 0.7), x),
    "clamp_max": (lambda t: torch.clamp(t, max=0.3), x),
    "clamp_min": (lambda t: torch.clamp(t, min=-0.5), x),
    "relu": (torch.relu, x),
    "gelu": (F.gelu, x),
    "gelu_tanh": (gelu_new, x),
    "silu": (F.silu, x),
    "add_scalar": (lambda t: t + 1.5, x),
    "sub_scalar": (lambda t: t - 0.25, x),
    "rsub_scalar": (lambda t: 2.0 - t, x),
    "mul_scalar": (lambda t: t * -3.0, x),
    "div_scalar": (lambda t: t / 4.0, x),
    "pow_scalar3": (lambda t: torch.pow(t, 3.0), x),
    "pow_scalar2": (lambda t: torch.pow(t, 2.0), x),
    "pow_scalar0": (lambda t: torch.pow(t, 0.0), x),
    "pow_scalar_half": (lambda t: torch.pow(t, 0.5), pos),
    "pow_scalar_neg": (lambda t: torch.pow(t, -1.5), pos),
}
for name, (fn, inp) in UNARY.items():
    grads(f"unary.{name}", fn, [inp], ["x"])

# 0-dim inputs
grads("unary0.exp", torch.exp, [torch.tensor(0.75)], ["x"])
grads("unary0.gelu", F.gelu, [torch.tensor(-1.25)], ["x"])
# NaN passes through relu, clamp and abs as in torch
nan = torch.tensor([float("nan"), 1.0, -2.0])
o.put("nan.x", nan)
o.put("nan.relu", torch.relu(nan))
o.put("nan.clamp", torch.clamp(nan, -1.0, 0.5))
o.put("nan.abs", torch.abs(nan))
o.put("nan.maximum", torch.maximum(nan, torch.tensor([0.0, float("nan"), -3.0])))
o.put("nan.minimum", torch.minimum(nan, torch.tensor([0.0, float("nan"), -3.0])))

# ---- binary ---------------------------------------------------------------
BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}


def domain(op, a, b):
    if op == "div":
        b = torch.sign(b) * (b.abs() + 0.5)
    if op == "pow":
        a = a.abs() + 0.2
        b = b.clamp(-2, 2)
    return a, b


CASES = {
    "same": ([3, 4], [3, 4]),
    "bcast": ([2, 1, 4], [3, 1]),
    "bcast_left": ([3, 1], [2, 1, 4]),
    "scalar_b": ([3, 4], []),
    "scalar_both": ([], []),
}
for op, fn in BINARY.items():
    for case, (sa, sb) in CASES.items():
        a, b = domain(op, torch.randn(sa), torch.randn(sb))
        if case == "same" and op in ("maximum", "minimum"):
            b[0, :2] = a[0, :2]  # ties split the gradient in halves
        grads(f"{op}.{case}", fn, [a, b], ["a", "b"])

# one tensor as both operands: the two contributions add up
grads("mul.self", lambda t: t * t, [torch.randn(3, 4)], ["x"])

# pow at a = 0: the exponent gets no gradient there (torch's rule)
grads("pow.zero", torch.pow, [torch.tensor([0.0, 0.0, 2.0, 0.0]), torch.tensor([0.0, 1.5, 2.0, 1.0])], ["a", "b"])

# ---- comparisons ----------------------------------------------------------
ca = torch.randint(-2, 3, (3, 4)).float()
cb = torch.randint(-2, 3, (3, 4)).float()
c3 = torch.randint(-2, 3, (2, 1, 4)).float()
c2 = torch.randint(-2, 3, (3, 1)).float()
ci = torch.randint(-2, 3, (4,))  # int64
o.put("cmp.a", ca)
o.put("cmp.b", cb)
o.put("cmp.c3", c3)
o.put("cmp.c2", c2)
o.put("cmp.i", ci)
CMP = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge}
for name, fn in CMP.items():
    o.put(f"cmp.{name}.same", fn(ca, cb))
    o.put(f"cmp.{name}.bcast", fn(c3, c2))
    o.put(f"cmp.{name}.mixed", fn(ca, ci))  # f32 with i64
    o.put(f"cmp.{name}.zero", fn(torch.tensor(1.0), ca))  # 0-dim with [3, 4]
o.put("cmp.eq_scalar", torch.eq(ca, 1.0))
o.put("cmp.gt_scalar", torch.gt(ca, 0.5))
o.put("cmp.lt_scalar", torch.lt(ca, -1.0))
o.put("cmp.eq_scalar_i64", torch.eq(ci, 2.0))
o.put("cmp.gt_scalar_i64", torch.gt(ci, -0.5))

# ---- where and masked_fill ------------------------------------------------
cond = torch.rand(2, 1, 4) > 0.5
o.put("where.cond", cond)
grads("where", lambda c, a, b: torch.where(c, a, b), [cond, torch.randn(3, 1), torch.randn(4)], [None, "a", "b"])
mask = torch.tensor([True, False, False, True])
o.put("masked_fill.mask", mask)
grads("masked_fill", lambda a: a.masked_fill(mask, -5.0), [torch.randn(3, 4)], ["a"])
mask2 = torch.rand(1, 4) > 0.5
o.put("masked_fill2.mask", mask2)
grads("masked_fill2", lambda a: torch.masked_fill(a, mask2, 2.5), [torch.randn(3, 1)], ["a"])
# a causal mask over attention-shaped scores: runs along the last dim, the
# threads' shares (49210 elements, above the parallel threshold) split a row
mask3 = torch.triu(torch.ones(37, 38), 1).bool()
o.put("masked_fill3.mask", mask3)
grads("masked_fill3", lambda a: a.masked_fill(mask3, -3.0), [torch.randn(5, 7, 37, 38)], ["a"])

o.save()
