"""Optimiser trajectories from torch.optim for fixed gradient sequences."""
import torch

from common import oracle

o = oracle()
torch.manual_seed(0)
STEPS = 10
p0 = torch.randn(5, 4)
grads = [torch.randn(5, 4) for _ in range(STEPS)]
o.put("p0", p0)
for t, g in enumerate(grads):
    o.put(f"g{t}", g)

CONFIGS = {
    "sgd_plain": lambda p: torch.optim.SGD([p], lr=0.1),
    "sgd_momentum": lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov": lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
    "adamw_default": lambda p: torch.optim.AdamW([p]),
    "adamw_custom": lambda p: torch.optim.AdamW([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
}
for name, make in CONFIGS.items():
    p = p0.clone().requires_grad_()
    opt = make(p)
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        o.put(f"{name}.{t}", p.detach())

# clip_grad_norm_: two parameters, clipped and not clipped.
a, b = torch.randn(3, 3, requires_grad=True), torch.randn(4, requires_grad=True)
ga, gb = torch.randn(3, 3) * 3, torch.randn(4) * 3
for max_norm in (1.0, 100.0):
    a.grad, b.grad = ga.clone(), gb.clone()
    total = torch.nn.utils.clip_grad_norm_([a, b], max_norm)
    o.put(f"clip{int(max_norm)}.total", total.reshape(1))
    o.put(f"clip{int(max_norm)}.a", a.grad)
    o.put(f"clip{int(max_norm)}.b", b.grad)
o.put("clip.ga", ga)
o.put("clip.gb", gb)
o.save()
