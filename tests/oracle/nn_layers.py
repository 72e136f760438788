"""Oracle for tests/test_nn_layers.c: print() and forward/backward of the
building blocks (nn/layers.c) on weights drawn here.

PyTorch's own classes (Linear, LayerNorm, Embedding, Dropout, SiLU, ReLU,
Sequential) print themselves. Hugging Face's classes are not installed
(transformers is not packaged for Debian's torch 1.13), so Conv1D,
LlamaRMSNorm, GELUActivation and NewGELUActivation are transcribed below from
transformers 4.48 (pytorch_utils.py, models/llama/modeling_llama.py,
activations.py); torch's Module.__repr__ prints them.

Strings (print output) are stored as uint8 tensors of their UTF-8 bytes.
For forward cases: the parameters, the input x, y, a random r and the
gradients of sum(y * r).
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import oracle

torch.manual_seed(0)
o = oracle()


def put_str(key, s):
    o.put(key, torch.tensor(list(s.encode()), dtype=torch.uint8))


# ---- Hugging Face classes (transformers 4.48) ------------------------------


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.nx = nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def __repr__(self) -> str:
        return "Conv1D(nf={nf}, nx={nx})".format(**self.__dict__)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)

    def extra_repr(self):
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}"


class GELUActivation(nn.Module):
    def forward(self, input):
        return F.gelu(input)


class NewGELUActivation(nn.Module):
    def forward(self, input):
        return 0.5 * input * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (input + 0.044715 * torch.pow(input, 3.0))))


# ACT2CLS in transformers 4.48: "silu" and "swish" are both nn.SiLU.
ACT = {"gelu": GELUActivation, "gelu_new": NewGELUActivation, "silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU}

# ---- print() -----------------------------------------------------------------

# The walkthrough's tiny model, printed by real torch.
net = nn.Sequential(OrderedDict([("layer1", nn.Linear(5, 10)), ("layer2", nn.Linear(10, 2))]))
put_str("repr.sequential", repr(net))
reprs = {
    "linear": nn.Linear(5, 10),
    "linear_nobias": nn.Linear(768, 50257, bias=False),
    "conv1d": Conv1D(2304, 768),
    "embedding": nn.Embedding(50257, 768),
    "layer_norm": nn.LayerNorm(768, eps=1e-5),
    "layer_norm_plain": nn.LayerNorm(16, eps=1e-6, elementwise_affine=False),
    "rms_norm": LlamaRMSNorm(64, eps=1e-5),
    "rms_norm_6": LlamaRMSNorm(2048, eps=1e-6),
    "dropout": nn.Dropout(0.1),
    "dropout_0": nn.Dropout(0.0),
    "dropout_half": nn.Dropout(0.5),
}
for name in ACT:
    reprs["act_" + name] = ACT[name]()
for key, mod in reprs.items():
    put_str("repr." + key, repr(mod))


# ---- forward and backward ------------------------------------------------------


def case(key, mod, x, params_std=0.5):
    """Draw every parameter of mod (large std so mistakes show), run x through
    it, and store parameters, x, y, r and the gradients of sum(y * r)."""
    with torch.no_grad():
        for name, p in mod.named_parameters():
            if name.endswith("weight") and isinstance(mod, (nn.LayerNorm, LlamaRMSNorm)):
                p.copy_(1.0 + 0.5 * torch.randn(p.shape))
            else:
                p.copy_(params_std * torch.randn(p.shape))
            o.put(f"{key}.{name}", p)
    x = x.clone()
    if x.dtype == torch.float32:
        x.requires_grad_(True)
    y = mod(x)
    r = torch.randn(y.shape)
    (y * r).sum().backward()
    o.put(f"{key}.x", x)
    o.put(f"{key}.y", y)
    o.put(f"{key}.r", r)
    if x.dtype == torch.float32:
        o.put(f"{key}.grad.x", x.grad)
    for name, p in mod.named_parameters():
        o.put(f"{key}.grad.{name}", p.grad)


case("linear", nn.Linear(5, 10), torch.randn(2, 3, 5))
case("linear_nobias", nn.Linear(4, 3, bias=False), torch.randn(6, 4))
case("conv1d", Conv1D(6, 4), torch.randn(2, 3, 4))
case("embedding", nn.Embedding(10, 4), torch.randint(0, 10, (2, 3)))
case("layer_norm", nn.LayerNorm(8, eps=1e-5), 3.0 * torch.randn(2, 3, 8) + 1.0)
case("layer_norm_plain", nn.LayerNorm(8, eps=1e-6, elementwise_affine=False), 3.0 * torch.randn(2, 3, 8) - 1.0)
case("rms_norm", LlamaRMSNorm(8, eps=1e-6), 3.0 * torch.randn(2, 3, 8) + 0.5)
for name in ACT:
    # std 2 around 0 covers the region where GELU's exact and tanh forms differ (~1e-3).
    case("act_" + name, ACT[name](), 2.0 * torch.randn(4, 25))
o.save()
