"""Oracle for the threaded paths of tests/test_elementwise.c: inputs of more
than 32768 elements (GB__PAR_MIN_WORK), values and gradients of sum(y * R)."""
import torch

from common import oracle

torch.manual_seed(1)
o = oracle()

x = torch.randn(192, 176)
bias = torch.randn(176)
r = torch.randn(192, 176)
o.put("x", x)
o.put("bias", bias)
o.put("r", r)

xg = x.clone().requires_grad_()
y = torch.exp(xg)
(y * r).sum().backward()
o.put("exp.y", y)
o.put("exp.dx", xg.grad)

xg = x.clone().requires_grad_()
bg = bias.clone().requires_grad_()
y = xg * bg
(y * r).sum().backward()
o.put("mul.y", y)
o.put("mul.da", xg.grad)
o.put("mul.db", bg.grad)

o.put("gt0", x > 0)

o.save()
