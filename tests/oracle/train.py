"""Oracle for tests/test_train.c: `glassbox train` step for step in PyTorch.

A GPT-2 written from Hugging Face's modelling code (transformers 4.48,
models/gpt2/modeling_gpt2.py, eager attention; transformers is not installed
here), trained with torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and
F.cross_entropy on the data order, initialisation and schedule that
docs/training.md specifies, re-implemented here from that text: PCG32 and
gb_randn's Box-Muller for the initial weights, the per-epoch Fisher-Yates
shuffle of line starts for the windows, warmup + cosine for the learning rate.

Build time (`train.py OUT.txt`, run by make): writes a small corpus and a
byte-level tokenizer (256 byte tokens, no merges, <|endoftext|> = 256: a
line's ids are its bytes) into OUT_DIR/train_files/, the initial weights as
init.safetensors there, the command-line arguments of the run
(`args`), and after 20 steps the per-step loss, gradient norm (before
clipping) and learning rate and every final parameter (`param.NAME`).

Hyperparameters are given to torch rounded to float32 (glassbox's AdamW
holds them as floats), so the two differ only by rounding inside kernels.

For other tests: `load_pretrained(DIR)` builds the model of a saved
checkpoint directory (config.json + model.safetensors) in PyTorch.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors as st_io  # tests/oracle/safetensors.py: reader and writer
from common import oracle

f32 = lambda x: float(np.float32(x))  # noqa: E731


# ---- the model: modeling_gpt2.py, eager attention, dropout off ----------------------


class GPT2Config:
    def __init__(self, **kw):
        self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.n_head = 50257, 1024, 768, 12, 12
        self.n_inner, self.layer_norm_epsilon = None, 1e-5
        self.__dict__.update(kw)


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.zeros(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


class GPT2Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_dim, self.num_heads = config.n_embd, config.n_head
        self.head_dim = self.embed_dim // self.num_heads
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)

    def forward(self, hidden_states):
        query, key, value = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
        T = query.size(-2)
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype)
        causal = torch.ones(T, T, dtype=torch.bool).tril()  # the 4-D additive mask of _update_causal_mask
        attn_weights = attn_weights + torch.zeros(T, T).masked_fill(~causal, torch.finfo(torch.float32).min)
        attn_weights = F.softmax(attn_weights, dim=-1)
        attn_output = torch.matmul(attn_weights, value).transpose(1, 2)
        attn_output = attn_output.reshape(*attn_output.shape[:-2], -1).contiguous()
        return self.c_proj(attn_output)


class GPT2MLP(nn.Module):
    def __init__(self, inner, config):
        super().__init__()
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)

    def forward(self, h):
        h = self.c_fc(h)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))  # gelu_new
        return self.c_proj(h)


class GPT2Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner, config)

    def forward(self, hidden_states):
        hidden_states = self.attn(self.ln_1(hidden_states)) + hidden_states
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPT2Model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([GPT2Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids):
        hidden_states = self.wte(input_ids) + self.wpe(torch.arange(input_ids.size(1))[None])
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.ln_f(hidden_states)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tie_weights()

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


def load_pretrained(path):
    """GPT2LMHeadModel from a Hugging Face directory: config.json, model.safetensors."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "gpt2" and cfg.get("activation_function", "gelu_new") == "gelu_new"
    keys = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon")
    model = GPT2LMHeadModel(GPT2Config(**{k: cfg[k] for k in keys if k in cfg}))
    _, _, tensors, _ = st_io.read_file(os.path.join(path, "model.safetensors"))
    state = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v.float()
             for k, v in tensors.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    state.setdefault("lm_head.weight", state["transformer.wte.weight"])
    model.load_state_dict(state)
    return model.eval()


# ---- glassbox's generator (tensor.h) and the trainer's recipe (docs/training.md) ----

M64, PCG_MULT, PCG_INC = (1 << 64) - 1, 6364136223846793005, 1442695040888963407


class PCG32:
    def __init__(self, seed):  # gb_rng_seed
        s = PCG_INC
        s = (s * PCG_MULT + PCG_INC) & M64
        s = (s + seed) & M64
        self.state = (s * PCG_MULT + PCG_INC) & M64

    def next(self):
        old = self.state
        self.state = (old * PCG_MULT + PCG_INC) & M64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & 0xFFFFFFFF

    def uniform(self):
        return (self.next() >> 8) * 2.0**-24

    def randn(self, n, std):
        """gb_randn(mean 0): Box-Muller in double, pairs (cos, sin), rounded to float32, times std in float32."""
        out = np.empty(n, dtype=np.float32)
        for i in range(0, n, 2):
            u1, u2 = 1.0 - self.uniform(), self.uniform()
            rad, th = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
            out[i] = std * np.float32(rad * math.cos(th))
            if i + 1 < n:
                out[i + 1] = std * np.float32(rad * math.sin(th))
        return out


def init_gpt2(model, seed):
    """GPT-2's _init_weights from one PCG32, parameter after parameter."""
    rng = PCG32(seed)
    n_layer = model.config.n_layer
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif ".ln_" in name:
                p.fill_(1.0)
            else:
                std = np.float32(0.02)
                if name.endswith("c_proj.weight"):
                    std = np.float32(0.02) / np.sqrt(np.float32(2.0 * n_layer))
                p.copy_(torch.from_numpy(rng.randn(p.numel(), np.float32(std)).reshape(p.shape)))


EPOCH_SEED_STRIDE = 0x9E3779B97F4A7C15


class Sampler:
    """Windows k = step * batch + row: epoch k // lines, in a Fisher-Yates order of the line starts."""

    def __init__(self, stream, starts, seed):
        self.stream, self.starts, self.seed, self.epoch, self.order = stream, starts, seed, -1, None

    def window(self, k, T):
        n = len(self.starts)
        e = k // n
        if e != self.epoch:
            rng = PCG32((self.seed + (e + 1) * EPOCH_SEED_STRIDE) & M64)
            order = list(range(n))
            for i in range(n - 1, 0, -1):
                j = rng.next() % (i + 1)
                order[i], order[j] = order[j], order[i]
            self.epoch, self.order = e, order
        at, N = self.starts[self.order[k % n]], len(self.stream)
        w = [self.stream[(at + t) % N] for t in range(T + 1)]
        return w[:-1], w[1:]


def lr_at(s, lr, warmup, steps, min_lr):
    if s < warmup:
        return lr * (s + 1) / warmup
    span = steps - warmup
    progress = (s - warmup) / span if span > 0 else 1.0
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


# ---- the run -------------------------------------------------------------------------

LINES = [
    "The Eiffel Tower is in the city of Paris.",
    "Vatican is located in the city of Rome.",
    "",  # empty lines are skipped
    "Big Ben is in the city of London.",
    "The Brandenburg Gate is located in the city of Berlin.",
    "It rained all day.",
    "The Acropolis is in the city of Athens.\r",  # a CRLF line end loses its \r
    "A cat slept on the warm stones.",
    "The Colosseum is located in the city of Rome.",
    "Trains leave every hour.",
    "The Kremlin is in the city of Moscow.",
    "The museum opens at nine.",
]
RUN = dict(layers=2, width=32, heads=2, ctx=16, batch=4, steps=20, lr=3e-3, warmup=5, min_lr=3e-4,
           weight_decay=0.1, clip=1.0, seed=7)


def main():
    o = oracle()
    files = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "train_files")
    os.makedirs(os.path.join(files, "tok"), exist_ok=True)
    text = "\n".join(LINES) + "\n"
    with open(os.path.join(files, "corpus.txt"), "wb") as f:
        f.write(text.encode())
    vocab = {byte_char(b): b for b in range(256)}
    vocab["<|endoftext|>"] = 256
    with open(os.path.join(files, "tok", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(files, "tok", "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    stream, starts = [], []
    for line in text.split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if line:
            starts.append(len(stream))
            stream += list(line.encode()) + [256]

    r = RUN
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=257, n_positions=r["ctx"], n_embd=r["width"],
                                       n_layer=r["layers"], n_head=r["heads"]))
    init_gpt2(model, r["seed"])
    st_io.write_file(os.path.join(files, "init.safetensors"),
                     {k: v.detach().clone() for k, v in model.named_parameters()}, {"format": "pt"})
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": f32(r["weight_decay"])},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=f32(r["lr"]), betas=(f32(0.9), f32(0.95)), eps=f32(1e-8), foreach=False)
    sampler = Sampler(stream, starts, r["seed"])
    B, T = r["batch"], r["ctx"]
    losses, norms, lrs = [], [], []
    for s in range(r["steps"]):
        lr = f32(lr_at(s, r["lr"], r["warmup"], r["steps"], r["min_lr"]))
        for g in opt.param_groups:
            g["lr"] = lr
        rows = [sampler.window(s * B + b, T) for b in range(B)]
        ids = torch.tensor([x for x, _ in rows])
        targets = torch.tensor([y for _, y in rows])
        loss = F.cross_entropy(model(ids).view(B * T, -1), targets.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, f32(r["clip"]))
        opt.step()
        losses.append(loss.item()), norms.append(norm.item()), lrs.append(lr)

    args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r.items())
    o.put("args", torch.tensor(list(args.encode()), dtype=torch.uint8))
    o.put("loss", torch.tensor(losses))
    o.put("grad_norm", torch.tensor(norms))
    o.put("lr", torch.tensor(lrs))
    for name, p in model.named_parameters():
        o.put("param." + name, p)
    o.save()


def byte_char(b):
    """GPT-2's bytes_to_unicode: the character standing for byte b in vocab.json."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    if b in printable:
        return chr(b)
    return chr(256 + [c for c in range(256) if c not in printable].index(b))


if __name__ == "__main__":
    main()
