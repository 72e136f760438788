"""Gradients of compositions, and training trajectories, from PyTorch."""
import math

import torch
import torch.nn.functional as F

from common import oracle

o = oracle()
torch.manual_seed(7)

# 1. Two-layer MLP with cross-entropy (one ignored target).
x = torch.randn(8, 6)
w1, b1 = torch.randn(16, 6) * 0.5, torch.randn(16) * 0.1
w2, b2 = torch.randn(4, 16) * 0.5, torch.randn(4) * 0.1
t = torch.tensor([0, 3, 1, 2, -100, 1, 0, 3])
for k, v in dict(x=x, w1=w1, b1=b1, w2=w2, b2=b2, t=t).items():
    o.put(f"mlp.{k}", v)
ps = [p.clone().requires_grad_() for p in (x, w1, b1, w2, b2)]
loss = F.cross_entropy(F.linear(F.gelu(F.linear(ps[0], ps[1], ps[2])), ps[3], ps[4]), t, ignore_index=-100)
loss.backward()
o.put("mlp.loss", loss.detach().reshape(1))
for k, p in zip(("x", "w1", "b1", "w2", "b2"), ps):
    o.put(f"mlp.grad.{k}", p.grad)

# 2. layer norm -> causal attention -> MLP block with residuals.
B, T, C, H = 2, 5, 8, 2
D = C // H
blk = dict(
    x=torch.randn(B, T, C),
    ln_w=1 + 0.3 * torch.randn(C), ln_b=0.3 * torch.randn(C),
    wq=torch.randn(C, C) * 0.4, wk=torch.randn(C, C) * 0.4, wv=torch.randn(C, C) * 0.4, wo=torch.randn(C, C) * 0.4,
    w_fc=torch.randn(4 * C, C) * 0.4, b_fc=torch.randn(4 * C) * 0.1, w_proj=torch.randn(C, 4 * C) * 0.4,
    r=torch.randn(B, T, C),
)
for k, v in blk.items():
    o.put(f"blk.{k}", v)
p = {k: v.clone().requires_grad_() for k, v in blk.items() if k != "r"}
h = F.layer_norm(p["x"], (C,), p["ln_w"], p["ln_b"], 1e-5)
q = F.linear(h, p["wq"]).view(B, T, H, D).transpose(1, 2)
k_ = F.linear(h, p["wk"]).view(B, T, H, D).transpose(1, 2)
v = F.linear(h, p["wv"]).view(B, T, H, D).transpose(1, 2)
att = q @ k_.transpose(-1, -2) / math.sqrt(D)
att = att.masked_fill(torch.triu(torch.ones(T, T), 1).bool(), float("-inf")).softmax(-1)
y = (att @ v).transpose(1, 2).reshape(B, T, C)
x1 = p["x"] + F.linear(y, p["wo"])
out = x1 + F.linear(F.gelu(F.linear(x1, p["w_fc"], p["b_fc"]), approximate="tanh"), p["w_proj"])
(out * blk["r"]).sum().backward()
o.put("blk.out", out.detach())
for k, t_ in p.items():
    o.put(f"blk.grad.{k}", t_.grad)

# 3. The walkthrough's tiny network: frozen weights, layer1's output made to
#    require grad, loss = output.sum().
tw = dict(w1=torch.randn(10, 5), b1=torch.randn(10), w2=torch.randn(2, 10), b2=torch.randn(2), x=torch.rand(1, 5))
for k, v in tw.items():
    o.put(f"tiny.{k}", v)
l1 = F.linear(tw["x"], tw["w1"], tw["b1"]).requires_grad_()
l2 = F.linear(l1, tw["w2"], tw["b2"])
l2.retain_grad()
l2.sum().backward()
o.put("tiny.grad.l1", l1.grad)
o.put("tiny.grad.l2", l2.grad)

# 4. AdamW trajectory while training the MLP of (1) for 10 steps.
ps = [p.clone().requires_grad_() for p in (w1, b1, w2, b2)]
opt = torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05)
for step in range(10):
    opt.zero_grad()
    F.cross_entropy(F.linear(F.gelu(F.linear(x, ps[0], ps[1])), ps[2], ps[3]), t).backward()
    opt.step()
    for k, q_ in zip(("w1", "b1", "w2", "b2"), ps):
        o.put(f"adamw.{step}.{k}", q_.detach())
o.save()
