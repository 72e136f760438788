"""Oracle of the GPT-2 and Llama tests of tests/test_trace.c: the
walkthrough's getting, setting and gradient steps on small random GPT-2 and
Llama models (the trees of Hugging Face's GPT2LMHeadModel and
LlamaForCausalLM, eval mode), computed by reference forwards written here
from torch.nn.functional. The forwards call tap(path, tensor) at the points
the tests intervene on (a block's hidden-state output, an MLP's output), and
tap may read, replace or hook the tensor: that is how each experiment is
done, with plain tensors and Tensor.register_hook -- no nnsight.

Keys: PREFIX.param.NAME (named_parameters() order, tied ones once),
PREFIX.count ([n]), PREFIX.ids, and PREFIX.EXPERIMENT.VALUE.
"""
import math

import torch
import torch.nn.functional as F

from common import oracle

GPT2 = dict(vocab=48, positions=40, embd=32, layers=2, heads=4, eps=1e-5)
LLAMA = dict(vocab=40, hidden=32, inter=48, layers=2, heads=4, kv_heads=2, eps=1e-5, theta=10000.0)
T = 6


def draw(shapes, std=0.4):
    """Random parameters: norm weights 1 + 0.3 N, everything else std * N."""
    params = {}
    for name, shape in shapes:
        norm = any(k in name for k in ("ln_", "layernorm", "norm.weight"))
        params[name] = 1.0 + 0.3 * torch.randn(shape) if norm and name.endswith("weight") else std * torch.randn(shape)
    return params


def causal_attention(q, k, v):
    """Eager attention as Hugging Face computes it: q, k, v [B, H, T, D]."""
    t = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    allowed = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    return F.softmax(scores, dim=-1) @ v


# ---- GPT-2 ------------------------------------------------------------------------

def gpt2_shapes(c):
    e, v = c["embd"], c["vocab"]
    shapes = [("transformer.wte.weight", (v, e)), ("transformer.wpe.weight", (c["positions"], e))]
    for i in range(c["layers"]):
        p = f"transformer.h.{i}."
        shapes += [(p + "ln_1.weight", (e,)), (p + "ln_1.bias", (e,)),
                   (p + "attn.c_attn.weight", (e, 3 * e)), (p + "attn.c_attn.bias", (3 * e,)),
                   (p + "attn.c_proj.weight", (e, e)), (p + "attn.c_proj.bias", (e,)),
                   (p + "ln_2.weight", (e,)), (p + "ln_2.bias", (e,)),
                   (p + "mlp.c_fc.weight", (e, 4 * e)), (p + "mlp.c_fc.bias", (4 * e,)),
                   (p + "mlp.c_proj.weight", (4 * e, e)), (p + "mlp.c_proj.bias", (e,))]
    return shapes + [("transformer.ln_f.weight", (e,)), ("transformer.ln_f.bias", (e,))]


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_forward(P, ids, c, tap):
    """GPT2LMHeadModel: logits [B, T, vocab]; lm_head is tied to wte."""
    b, t = ids.shape
    e, nh = c["embd"], c["heads"]
    h = F.embedding(ids, P["transformer.wte.weight"]) + P["transformer.wpe.weight"][torch.arange(t)]
    for i in range(c["layers"]):
        p = f"transformer.h.{i}."
        a = F.layer_norm(h, (e,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], c["eps"])
        qkv = a @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]  # Conv1D: weight [nx, nf]
        q, k, v = (z.view(b, t, nh, e // nh).transpose(1, 2) for z in qkv.split(e, dim=2))
        y = causal_attention(q, k, v).transpose(1, 2).reshape(b, t, e)
        h = h + (y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"])
        m = F.layer_norm(h, (e,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], c["eps"])
        m = gelu_new(m @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"]) @ P[p + "mlp.c_proj.weight"] + \
            P[p + "mlp.c_proj.bias"]
        h = h + tap(p + "mlp", m)
        h = tap(f"transformer.h.{i}", h)
    h = F.layer_norm(h, (e,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], c["eps"])
    return h @ P["transformer.wte.weight"].T


# ---- Llama ------------------------------------------------------------------------

def llama_shapes(c):
    d, v = c["hidden"], c["vocab"]
    hd = d // c["heads"]
    shapes = [("model.embed_tokens.weight", (v, d))]
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        shapes += [(p + "self_attn.q_proj.weight", (c["heads"] * hd, d)),
                   (p + "self_attn.k_proj.weight", (c["kv_heads"] * hd, d)),
                   (p + "self_attn.v_proj.weight", (c["kv_heads"] * hd, d)),
                   (p + "self_attn.o_proj.weight", (d, c["heads"] * hd)),
                   (p + "mlp.gate_proj.weight", (c["inter"], d)),
                   (p + "mlp.up_proj.weight", (c["inter"], d)),
                   (p + "mlp.down_proj.weight", (d, c["inter"])),
                   (p + "input_layernorm.weight", (d,)),
                   (p + "post_attention_layernorm.weight", (d,))]
    return shapes + [("model.norm.weight", (d,)), ("lm_head.weight", (v, d))]


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def llama_forward(P, ids, c, tap):
    """LlamaForCausalLM: logits [B, T, vocab]; rotary embedding in rotate-half form."""
    b, t = ids.shape
    d, nh, nkv = c["hidden"], c["heads"], c["kv_heads"]
    hd = d // nh
    inv_freq = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.arange(t).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    h = F.embedding(ids, P["model.embed_tokens.weight"])
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, P[p + "input_layernorm.weight"], c["eps"])
        q = F.linear(x, P[p + "self_attn.q_proj.weight"]).view(b, t, nh, hd).transpose(1, 2)
        k = F.linear(x, P[p + "self_attn.k_proj.weight"]).view(b, t, nkv, hd).transpose(1, 2)
        v = F.linear(x, P[p + "self_attn.v_proj.weight"]).view(b, t, nkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        y = causal_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        h = h + F.linear(y, P[p + "self_attn.o_proj.weight"])
        x = rms_norm(h, P[p + "post_attention_layernorm.weight"], c["eps"])
        m = F.linear(F.silu(F.linear(x, P[p + "mlp.gate_proj.weight"])) * F.linear(x, P[p + "mlp.up_proj.weight"]),
                     P[p + "mlp.down_proj.weight"])
        h = h + tap(p + "mlp", m)
        h = tap(f"model.layers.{i}", h)
    return F.linear(rms_norm(h, P["model.norm.weight"], c["eps"]), P["lm_head.weight"])


# ---- the experiments ---------------------------------------------------------------

def experiments(o, prefix, forward, shapes, config, vocab, blocks):
    """blocks: the two block paths (first, last)."""
    P = draw(shapes(config))
    ids = torch.randint(0, vocab, (1, T))
    for name, _ in shapes(config):
        o.put(f"{prefix}.param.{name}", P[name])
    o.put(f"{prefix}.count", torch.tensor([len(P)]))
    o.put(f"{prefix}.ids", ids)
    first, last = blocks

    # Getting: the hidden states of the first and last blocks, the first MLP's output, the logits.
    seen = {}

    def keep(path, t):
        seen[path] = t.clone()
        return t
    logits = forward(P, ids, config, keep)
    o.put(f"{prefix}.get.first", seen[first])
    o.put(f"{prefix}.get.last", seen[last])
    o.put(f"{prefix}.get.mlp", seen[first + ".mlp"])
    o.put(f"{prefix}.get.logits", logits)

    # Setting in place: the first block's hidden state at the last position is zeroed.
    def zero_last(path, t):
        if path == first:
            t[:, -1, :] = 0
        return t
    o.put(f"{prefix}.set_index.logits", forward(P, ids, config, zero_last))

    # Replacing: the last block's MLP output doubled.
    o.put(f"{prefix}.set.logits", forward(P, ids, config, lambda path, t: t * 2 if path == last + ".mlp" else t))

    # Gradients of logits[0, -1, 3] at the first block's hidden state (made to
    # require grad), read as they are, then with the last MLP's output gradient doubled.
    for name, double in (("grad", False), ("grad_edit", True)):
        grads = {}

        def hooks(path, t):
            if path == first:
                t = t.detach().requires_grad_(True)
                t.register_hook(lambda g: grads.__setitem__("first", g.clone()))
            if path == last + ".mlp" and double:
                t.register_hook(lambda g: g * 2)
            return t
        forward(P, ids, config, hooks)[0, -1, 3].backward()
        o.put(f"{prefix}.{name}.first", grads["first"])


def main():
    o = oracle()
    torch.manual_seed(0)
    experiments(o, "gpt2", gpt2_forward, gpt2_shapes, GPT2, GPT2["vocab"], ("transformer.h.0", "transformer.h.1"))
    experiments(o, "llama", llama_forward, llama_shapes, LLAMA, LLAMA["vocab"], ("model.layers.0", "model.layers.1"))
    o.save()


if __name__ == "__main__":
    main()
