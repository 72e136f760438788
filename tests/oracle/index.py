"""Oracle for tests/test_index.c: PyTorch evaluates the same index strings.

Besides the tensors (common.Oracle lines), the cases are tab-separated lines
starting with '#' (gbt_oracle_load skips them; test_index.c reads them):

  #view  NAME BASE EXPR               NAME.out, NAME.stride (i64), NAME.offset
  #err   NAME BASE STATUS EXPR NEEDLE x[EXPR] fails; message contains NEEDLE
  #put   NAME BASE VALUE EXPR         NAME.out = x.clone(); out[EXPR] = VALUE
  #puterr NAME BASE VALUE STATUS EXPR NEEDLE
  #fill  NAME BASE NUMBER EXPR        NAME.out = x.clone(); out[EXPR] = NUMBER
  #grad  NAME KIND EXPR               autograd cases, see grad_case()
  #msg   NAME STATUS NEEDLE           other error messages from PyTorch

STATUS is glassbox's name for the kind of error: IndexError -> index,
ValueError -> argument, RuntimeError (shapes) -> shape.
"""
import re

import numpy as np
import torch

from common import oracle

o = oracle()
torch.manual_seed(0)

STATUS = {IndexError: "index", ValueError: "argument", RuntimeError: "shape"}


def line(*fields):
    for f in fields:
        assert "\t" not in str(f) and "\n" not in str(f), fields
    o.lines.append("\t".join(str(f) for f in fields))


def pyindex(expr):
    """The Python subscript for an index string (brackets optional)."""
    s = expr.strip()
    if not s.startswith("["):
        s = "[" + s + "]"
    if s[1:-1].strip() == "":
        s = "[()]"
    return s


def needle(msg):
    """The part of PyTorch's message glassbox repeats word for word: the first
    sentence of the 0-dim advice (the rest names Python), and expand's
    message without its "expand(torch.FloatTensor{...}, size=...): " head."""
    msg = msg.split(". Use `tensor.item()`")[0]
    return re.sub(r"^expand\(.*?\): ", "", msg)


bases = {
    "x0": torch.tensor(3.5),
    "x1": torch.arange(10.0),
    "x2": torch.arange(20.0).reshape(2, 10),
    "x3": torch.arange(60.0).reshape(3, 4, 5),
    "x4": torch.arange(120.0).reshape(2, 3, 4, 5),
    "i2": torch.arange(20).reshape(2, 10),
    "h2": torch.arange(20.0).reshape(2, 10).half(),
}
for k, v in bases.items():
    o.put(k, v)

views = [
    ("x2", "[:, -1]"), ("x2", ":, -1"), ("x2", "  [ : ,  -1 ]  "), ("x2", "[0]"), ("x2", "[-1]"),
    ("x2", "[1, 3]"), ("x2", "[-2, -10]"), ("x2", "[1:3]"), ("x2", "[::2]"), ("x2", "[:, ::3]"),
    ("x2", "[:, 1::4]"), ("x2", "[:, -3:]"), ("x2", "[:, :-3]"), ("x2", "[:, -100:100]"), ("x2", "[:, 5:1]"),
    ("x2", "[:, 100:]"), ("x2", "[:, :-100]"), ("x2", "[:, ::7]"), ("x2", "[:, ::100]"), ("x2", "[:, 3:4:]"),
    ("x2", "[...]"), ("x2", "[..., 0]"), ("x2", "[0, ...]"), ("x2", "[None]"), ("x2", "[None, :, None]"),
    ("x2", "[..., None]"), ("x2", "[0, None, 2:5]"), ("x2", "[None, 0, None, 1]"), ("x2", "[]"), ("x2", ""),
    ("x2", "[1,]"), ("x2", "[+1, +2:+5]"), ("x2", "[:, 2:9:3]"), ("x2", "[None, None, None, None, None, None]"),
    ("x1", "[3]"), ("x1", "[2:8:2]"), ("x1", "[-7::3]"), ("x1", "[None, ::2]"),
    ("x1", "[..., None]"), ("x1", "[...,]"),
    ("x0", "[None]"), ("x0", "[...]"), ("x0", "[None, None]"), ("x0", "[..., None]"), ("x0", "[]"),
    ("x3", "[1]"), ("x3", "[..., 2]"), ("x3", "[:, 1, ::2]"), ("x3", "[-1, ..., 1:]"), ("x3", "[1:, None, -2]"),
    ("x3", "[..., None, 1]"), ("x3", "[0, 0, 0]"), ("x3", "[None, ..., None]"), ("x3", "[:, :, :]"),
    ("x3", "[::2, ::3, ::2]"), ("x3", "[2:, 1:3, 4]"), ("x3", "[..., 1:2, :]"),
    ("x4", "[1, ..., 2]"), ("x4", "[:, None, 1:, ..., ::2]"), ("x4", "[..., 0, 1]"), ("x4", "[0, 1, 2, 3]"),
    ("x4", "[None, 1, None, 2, None, 3, None]"), ("x4", "[:, :, :, :, None]"),
    ("i2", "[1, 2:6]"), ("h2", "[:, 3]"),
]
for i, (base, expr) in enumerate(views):
    x = bases[base]
    r = eval("x" + pyindex(expr))
    name = f"view{i}"
    line("#view", name, base, expr)
    o.put(name + ".out", r)
    o.put(name + ".stride", torch.tensor(r.stride(), dtype=torch.int64).reshape(-1))
    o.put(name + ".offset", torch.tensor(r.storage_offset(), dtype=torch.int64))

errors = [
    ("x2", "[:, 10]"), ("x2", "[0, 10]"), ("x2", "[None, 0, 10]"), ("x2", "[10]"), ("x2", "[-3]"),
    ("x2", "[:, -11]"), ("x3", "[..., 10]"), ("x3", "[..., -6]"), ("x3", "[1, ..., 7]"), ("x2", "[1, 2, 3]"),
    ("x2", "[:, :, 0]"), ("x2", "[1, ..., 2, 3]"), ("x2", "[::-1]"), ("x2", "[..., ::-2]"), ("x2", "[::0]"),
    ("x2", "[2, ::-2]"), ("x2", "[::-2, 5]"), ("x0", "[0]"), ("x0", "[:]"), ("x0", "[0, :]"),
    ("x0", "[None, 0]"), ("x0", "[..., 0]"), ("x1", "[0, 0]"), ("x4", "[0, 0, 0, 0, 0]"),
]
for i, (base, expr) in enumerate(errors):
    x = bases[base]
    try:
        eval("x" + pyindex(expr))
        raise AssertionError(f"{expr} should fail")
    except (IndexError, ValueError) as e:
        line("#err", f"err{i}", base, STATUS[type(e)], expr, needle(str(e)))

# PyTorch 1.13 accepts a second ellipsis; NumPy's words for refusing it.
for i, (base, expr) in enumerate([("x2", "[..., ...]"), ("x3", "[..., None, ...]"), ("x2", "[1, ..., 2, ...]")]):
    try:
        eval("np.zeros(bases[base].shape)" + pyindex(expr))
        raise AssertionError(expr)
    except IndexError as e:
        line("#err", f"ellipsis{i}", base, "index", expr, str(e))

# Assignment: v broadcasts to the indexed shape (leading 1s dropped).
values = {
    "v2": torch.tensor([-1.0, -2.0]),
    "v1": torch.tensor([-7.0]),
    "v0": torch.tensor(-9.0),
    "v112": torch.tensor([[[-1.0, -2.0]]]),
    "v21": torch.tensor([[-1.0], [-2.0]]),
    "v3": torch.tensor([-1.0, -2.0, -3.0]),
    "v23": -torch.arange(1.0, 7.0).reshape(2, 3),
    "v45": -torch.arange(1.0, 21.0).reshape(4, 5),
    "v5": -torch.arange(1.0, 6.0),
    "v41": -torch.arange(1.0, 5.0).reshape(4, 1),
    "v343": -torch.arange(1.0, 37.0).reshape(3, 4, 3),
    "v13": torch.tensor([[-1.5, -2.5, -3.5]]),
    "v10i": -torch.arange(1, 11),
    "v10h": (-torch.arange(1.0, 11.0) / 3).half(),
    "v10": -torch.arange(1.0, 11.0) / 3,
    "v22": torch.ones(2, 2),
    "v310": torch.ones(3, 10),
    "v2110": torch.ones(2, 1, 10),
    "v11110": torch.ones(1, 1, 1, 10),
}
for k, v in values.items():
    o.put(k, v)

puts = [
    ("x2", "v2", "[:, 0]"), ("x2", "v1", "[:, 0]"), ("x2", "v0", "[:, 0]"), ("x2", "v112", "[:, 0]"),
    ("x2", "v21", "[:, 0:3]"), ("x2", "v3", "[:, 0:3]"), ("x2", "v23", "[:, 7:]"), ("x2", "v23", "[:, ::4]"),
    ("x3", "v45", "[1]"), ("x3", "v5", "[1]"), ("x3", "v41", "[-1]"), ("x3", "v343", "[..., ::2]"),
    ("x3", "v13", "[..., ::2]"), ("x2", "v10i", "[0]"), ("x2", "v10h", "[1]"), ("x2", "v0", "[...]"),
    ("x2", "v0", "[]"), ("x2", "v10", "[None, 1]"), ("x2", "v11110", "[0]"), ("x2", "v1", "[:, 5:5]"),
    ("x2", "v0", "[1, 9]"), ("i2", "v10", "[1]"), ("i2", "v0", "[:, 2:4]"), ("h2", "v10", "[0]"),
    ("x1", "v0", "[::3]"), ("x0", "v1", "[...]"), ("x0", "v0", "[None]"),
]
for i, (base, val, expr) in enumerate(puts):
    y = bases[base].clone()
    exec("y" + pyindex(expr) + " = v", {"y": y, "v": values[val]})
    line("#put", f"put{i}", base, val, expr)
    o.put(f"put{i}.out", y)

put_errors = [
    ("x2", "v3", "[:, 0]"), ("x2", "v22", "[:, 0]"), ("x2", "v41", "[:, 0:3]"), ("x2", "v310", "[0]"),
    ("x2", "v2110", "[0]"), ("x2", "v2", "[0, 1]"), ("x3", "v5", "[..., 1:3]"), ("x2", "v2", "[:, 10]"),
    ("x2", "v2", "[::-1]"), ("x0", "v0", "[0]"), ("x2", "v2", "[:, 5:5]"),
]
for i, (base, val, expr) in enumerate(put_errors):
    y = bases[base].clone()
    try:
        exec("y" + pyindex(expr) + " = v", {"y": y, "v": values[val]})
        raise AssertionError(expr)
    except (IndexError, ValueError, RuntimeError) as e:
        line("#puterr", f"puterr{i}", base, val, STATUS[type(e)], expr, needle(str(e)))

fills = [("x2", "7.5", "[:, 1:3]"), ("i2", "2.7", "[0]"), ("i2", "-2.7", "[:, -1]"), ("x3", "0", "[..., 2]"),
         ("h2", "0.1", "[1, ::2]"), ("x0", "4", "[]")]
for i, (base, num, expr) in enumerate(fills):
    y = bases[base].clone()
    exec("y" + pyindex(expr) + " = " + num, {"y": y})
    line("#fill", f"fill{i}", base, num, expr)
    o.put(f"fill{i}.out", y)


# Autograd through index_put_. x is a leaf [3, 4]; y = x.clone() has history;
# y[EXPR] = v; y.backward(R). KIND says where v comes from:
#   leaf     v is a leaf of shape VSHAPE (stored as NAME.v)
#   viewof   v = w[0] for a leaf w [2, 3] (NAME.w; w.grad is NAME.wgrad)
#   self     v = y[:, 1] (the value read from y itself)
#   plain    y = zeros [3, 4] without history (no x), v a leaf
#   fill     y[EXPR] = 5.0 (no v)
#   twice    y[EXPR] = v, then y[1] = NAME.v2 (a leaf [4])
#   stale    y[EXPR] = v, then v is overwritten under no_grad before backward
#   mul      y = x * 2 instead of the clone, and (y * R).sum().backward()
def grad_case(name, kind, expr, vshape=None):
    x = torch.randn(3, 4, requires_grad=True)
    R = torch.randn(3, 4)
    o.put(name + ".x", x)
    o.put(name + ".R", R)
    line("#grad", name, kind, expr)
    y = torch.zeros(3, 4) if kind == "plain" else x * 2 if kind == "mul" else x.clone()
    leaves = {}
    if kind in ("leaf", "plain", "twice", "stale", "mul"):
        v = torch.randn(vshape, requires_grad=True)
        o.put(name + ".v", v)
        leaves["v"] = v
    elif kind == "viewof":
        w = torch.randn(2, 3, requires_grad=True)
        o.put(name + ".w", w)
        leaves["w"] = w
        v = w[0]
    elif kind == "self":
        v = y[:, 1]
    if kind == "fill":
        exec("y" + pyindex(expr) + " = 5.0", {"y": y})
    else:
        exec("y" + pyindex(expr) + " = v", {"y": y, "v": v})
    if kind == "twice":
        v2 = torch.randn(4, requires_grad=True)
        o.put(name + ".v2", v2)
        leaves["v2"] = v2
        y[1] = v2
    if kind == "stale":
        with torch.no_grad():
            v.fill_(9.0)
    o.put(name + ".y", y)
    if kind == "mul":
        (y * R).sum().backward()
    else:
        y.backward(R)
    if kind != "plain":
        o.put(name + ".xgrad", x.grad)
    for k, t in leaves.items():
        o.put(f"{name}.{k}grad", t.grad)


grad_case("g0", "leaf", "[:, 0]", (3,))
grad_case("g1", "leaf", "[1]", (1,))
grad_case("g2", "leaf", "[..., 1:3]", (3, 1))
grad_case("g3", "leaf", "[None, 0, ::2]", (1, 2))
grad_case("g4", "leaf", "[]", (4,))
grad_case("g5", "leaf", "[-1, -1]", ())
grad_case("g6", "viewof", "[:, 1]", None)
grad_case("g7", "self", "[:, 0]", None)
grad_case("g8", "plain", "[1]", (4,))
grad_case("g9", "fill", "[:, 1]", None)
grad_case("g10", "twice", "[:, 0]", (3,))
grad_case("g11", "stale", "[0:2, 2:]", (2, 2))
grad_case("g12", "mul", "[:, 0]", (3,))
grad_case("g13", "mul", "[..., None, 1:]", (1, 3))

# Gradient through the view x[None, 1:, ::2].
x = torch.randn(3, 4, requires_grad=True)
R = torch.randn(1, 2, 2)
x[None, 1:, ::2].backward(R)
o.put("vg.x", x)
o.put("vg.R", R)
o.put("vg.xgrad", x.grad)

# PyTorch's words for in-place writes autograd refuses.
x = torch.randn(3, requires_grad=True)
for name, f in [("leaf", lambda: x.fill_(1.0)), ("viewleaf", lambda: x[1:].__setitem__(0, 1.0))]:
    try:
        f()
        raise AssertionError(name)
    except RuntimeError as e:
        line("#msg", name, "autograd", str(e).rstrip("."))

o.save()
