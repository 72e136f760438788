"""Oracle for tests/test_nn_ops.c: softmax, log_softmax, layer_norm, rms_norm,
embedding, cross_entropy, cat, stack, tril, triu; values and gradients.

For each case KEY: the inputs KEY.NAME, the output KEY.y, a random KEY.r of
y's shape and the gradients KEY.dNAME of sum(y * r) for the float inputs.
"""
import torch
import torch.nn.functional as F

from common import oracle

torch.manual_seed(0)
o = oracle()


def case(key, fn, precise=False, **inputs):
    """precise: compute in float64 and round the results to float32. For inputs
    where PyTorch's own float32 kernel is less accurate than 1e-5 relative."""
    xs = {n: t.clone().requires_grad_(t.dtype == torch.float32) for n, t in inputs.items()}
    if precise:
        y = fn(**{n: x.double() for n, x in xs.items()}).float()
    else:
        y = fn(**xs)
    for n, t in inputs.items():
        o.put(f"{key}.{n}", t)
    o.put(f"{key}.y", y)
    if not y.dtype.is_floating_point:
        return
    r = torch.randn(y.shape)
    o.put(f"{key}.r", r)
    (y * r).sum().backward()
    for n, x in xs.items():
        if x.requires_grad:
            o.put(f"{key}.d{n}", x.grad)


def llama_rms_norm(x, w, eps):
    # transformers' LlamaRMSNorm.forward for float32 input (the spec of gb_rms_norm)
    variance = x.pow(2).mean(-1, keepdim=True)
    h = x * torch.rsqrt(variance + eps)
    return h if w is None else w * h


R = torch.randn

# ---- softmax / log_softmax ------------------------------------------------
masked = R(3, 6) * 5
masked[0, 2:] = float("-inf")  # a causal-mask row
masked[1, 0] = float("-inf")
for name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
    case(f"{name}.last", lambda x: fn(x, -1), x=R(3, 5))
    case(f"{name}.d0", lambda x: fn(x, 0), x=R(4, 3, 2))
    case(f"{name}.d1", lambda x: fn(x, 1), x=R(4, 3, 2))
    case(f"{name}.t", lambda xt: fn(xt.T, -1), xt=R(5, 3))
    case(f"{name}.large", lambda x: fn(x, -1), x=R(2, 6) * 50 + 1000)
    case(f"{name}.masked", lambda x: fn(x, -1), x=masked)
    case(f"{name}.s0", lambda x: fn(x, 0), x=torch.tensor(0.75))

# Long enough for the vector loops and their tails: 301 = 18 * 16 + 13 = 37 * 8 + 5
# (AVX-512 and AVX2 floats per vector); along another dim softmax.c takes up
# to 128 rows side by side: 150 = 128 + 22, and 70.
long_masked = R(5, 301) * 5
long_masked[0, 100:] = float("-inf")  # a causal-mask row
long_masked[1, :] = float("-inf")     # fully masked: NaN, as in torch
long_masked[2, 7] = float("nan")      # one NaN makes the row NaN
for name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
    case(f"{name}.long", lambda x: fn(x, -1), x=R(3, 301) * 3)
    case(f"{name}.long_large", lambda x: fn(x, -1), x=R(2, 301) * 50 + 1000)
    case(f"{name}.long_masked", lambda x: fn(x, -1), x=long_masked)
    case(f"{name}.cols", lambda x: fn(x, 1), x=R(3, 5, 150) * 3)
    case(f"{name}.cols0", lambda x: fn(x, 0), x=R(37, 70) * 3)

# ---- layer_norm / rms_norm ------------------------------------------------
case("layer_norm.wb", lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5), x=R(2, 3, 8), w=R(8), b=R(8))
case("layer_norm.none", lambda x: F.layer_norm(x, (6,), None, None, 1e-5), x=R(4, 6))
case("layer_norm.w", lambda x, w: F.layer_norm(x, (6,), w, None, 1e-5), x=R(4, 6), w=R(6))
case("layer_norm.b", lambda x, b: F.layer_norm(x, (6,), None, b, 1e-5), x=R(4, 6), b=R(6))
case("layer_norm.t", lambda xt, w, b: F.layer_norm(xt.T, (8,), w, b, 1e-5), xt=R(8, 3), w=R(8), b=R(8))
# |mean| >> std: torch's f32 kernel computes x * (rstd * w) + (b - mean * rstd * w),
# which cancels and is off by ~1e-5; the float64 result is the reference.
case("layer_norm.shift", lambda x, w, b: F.layer_norm(x, (16,), w, b, 1e-5), precise=True,
     x=R(3, 16) + 100, w=R(16), b=R(16))
case("layer_norm.eps", lambda x: F.layer_norm(x, (5,), None, None, 0.5), x=R(2, 5) * 0.1)
case("rms_norm.w", lambda x, w: llama_rms_norm(x, w, 1e-6), x=R(2, 3, 8), w=R(8))
case("rms_norm.none", lambda x: llama_rms_norm(x, None, 1e-6), x=R(4, 6))
case("rms_norm.t", lambda xt, w: llama_rms_norm(xt.T, w, 1e-5), xt=R(8, 3), w=R(8))
case("rms_norm.eps", lambda x, w: llama_rms_norm(x, w, 0.5), x=R(2, 5) * 0.1, w=R(5))
# rows of 301 (see softmax.long), with and without each parameter
N = 301
case("layer_norm.long_wb", lambda x, w, b: F.layer_norm(x, (N,), w, b, 1e-5), x=R(3, N), w=R(N), b=R(N))
case("layer_norm.long_none", lambda x: F.layer_norm(x, (N,), None, None, 1e-5), x=R(3, N))
case("layer_norm.long_w", lambda x, w: F.layer_norm(x, (N,), w, None, 1e-5), x=R(3, N), w=R(N))
case("layer_norm.long_b", lambda x, b: F.layer_norm(x, (N,), None, b, 1e-5), x=R(3, N), b=R(N))
case("layer_norm.long_shift", lambda x, w, b: F.layer_norm(x, (N,), w, b, 1e-5), precise=True,
     x=R(3, N) + 100, w=R(N), b=R(N))
case("rms_norm.long_w", lambda x, w: llama_rms_norm(x, w, 1e-6), x=R(3, N), w=R(N))
case("rms_norm.long_none", lambda x: llama_rms_norm(x, None, 1e-6), x=R(3, N))
# 20 rows: the weight and bias gradients add partial sums of blocks of 8 rows (norm.c)
case("layer_norm.blocks", lambda x, w, b: F.layer_norm(x, (40,), w, b, 1e-5), x=R(20, 40), w=R(40), b=R(40))
case("rms_norm.blocks", lambda x, w: llama_rms_norm(x, w, 1e-6), x=R(20, 40), w=R(40))

# ---- embedding ------------------------------------------------------------
case("embedding.i64", lambda w, ids: F.embedding(ids, w), w=R(10, 4), ids=torch.tensor([[1, 3, 3], [9, 0, 1]]))
case("embedding.i32", lambda w, ids: F.embedding(ids, w), w=R(10, 4),
     ids=torch.tensor([4, 4, 4, 2, 7], dtype=torch.int32))
case("embedding.s0", lambda w, ids: F.embedding(ids, w), w=R(6, 3), ids=torch.tensor(5))
case("embedding.wt", lambda wt, ids: F.embedding(ids, wt.T), wt=R(4, 10), ids=torch.tensor([[2, 0], [2, 8]]))

# ---- cross_entropy --------------------------------------------------------
# y is a 0-dim loss; r is a 0-dim weight on it
case("ce.basic", lambda x, t: F.cross_entropy(x, t), x=R(5, 7), t=torch.tensor([0, 6, -100, 3, 3]))
case("ce.ignore3", lambda x, t: F.cross_entropy(x, t, ignore_index=3), x=R(5, 7), t=torch.tensor([3, 6, 1, 3, 0]))
case("ce.large", lambda x, t: F.cross_entropy(x, t), x=R(4, 9) * 30, t=torch.tensor([8, 0, 4, 4]))
case("ce.t", lambda xt, t: F.cross_entropy(xt.T, t), xt=R(7, 5), t=torch.tensor([1, 2, 3, 4, 5]))
case("ce.allignored", lambda x, t: F.cross_entropy(x, t), x=R(3, 4), t=torch.tensor([-100, -100, -100]))

# ---- rope: transformers' apply_rotary_pos_emb -------------------------------


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


# x as split heads ([B, T, H, D] transposed to [B, H, T, D]) with cos, sin
# [B, 1, T, D]; D odd (the second half is the longer) with cos [D] and sin
# [1, D]; x whose last dim is not contiguous (a transposed view: the strided
# loop; the others take the contiguous one); a large one whose rows the
# threads share. Gradients reach all three.
case("rope.heads", lambda xt, cos, sin: rope(xt.transpose(1, 2), cos, sin), xt=R(2, 5, 3, 6), cos=R(2, 1, 5, 6),
     sin=R(2, 1, 5, 6))
case("rope.odd", lambda x, cos, sin: rope(x, cos, sin), x=R(4, 7), cos=R(7), sin=R(1, 7))
case("rope.strided", lambda xt, cos, sin: rope(xt.transpose(-1, -2), cos, sin), xt=R(3, 7, 5), cos=R(5, 7), sin=R(7))
case("rope.big", lambda x, cos, sin: rope(x, cos, sin), x=R(2, 4, 64, 130), cos=R(1, 1, 64, 130), sin=R(1, 1, 64, 130))

# ---- scaled_dot_product_attention: Hugging Face's eager attention ----------
# (repeat_kv, scores times the scale, masked_fill with finfo.min, softmax,
# the value product). In float64: the op sums in another order than
# PyTorch's float32 kernels, and both are within 1e-6 of the exact values.


def sdpa(q, k, v, hidden=None, scale=1.0):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    s = (q @ k.transpose(-1, -2)) * scale
    if hidden is not None:
        s = s.masked_fill(hidden.bool(), torch.finfo(torch.float32).min)
    return torch.softmax(s, -1) @ v


def hidden_mask(B, T, S, window=0, pad=None):
    """True where query i (at position S - T + i) must not see key j: later
    keys, keys window or more behind, and padded keys (pad [B, S], 0 = pad)."""
    i = torch.arange(T)[:, None] + (S - T)
    j = torch.arange(S)[None, :]
    h = j > i
    if window:
        h = h | (j <= i - window)
    h = h[None, None].expand(B if pad is not None else 1, 1, T, S)
    if pad is not None:
        h = h | (pad[:, None, None, :] == 0)
    return h.contiguous()


# grouped-query heads under a causal mask; several heads, no mask, Dv != D;
# a KV cache of 2 with padding that leaves one query seeing no key (its
# output: the mean of all values, as finfo.min gives); a sliding window;
# q, k, v as split-heads views [B, T, H, D] transposed; blocks of 32 rows
# and threads (T = 70, D = 64); one decoding query.
case("attn.causal", lambda q, k, v, h: sdpa(q, k, v, h, 8 ** -0.5), precise=True, q=R(2, 4, 5, 8), k=R(2, 2, 5, 8),
     v=R(2, 2, 5, 8), h=hidden_mask(2, 5, 5))
case("attn.nomask", lambda q, k, v: sdpa(q, k, v, None, 0.5), precise=True, q=R(1, 3, 3, 4), k=R(1, 3, 7, 4),
     v=R(1, 3, 7, 6))
case("attn.pad", lambda q, k, v, h: sdpa(q, k, v, h, 0.25), precise=True, q=R(2, 2, 4, 16), k=R(2, 1, 6, 16),
     v=R(2, 1, 6, 5), h=hidden_mask(2, 4, 6, pad=torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])))
case("attn.window", lambda q, k, v, h: sdpa(q, k, v, h, 0.3), precise=True, q=R(1, 2, 9, 4), k=R(1, 2, 9, 4),
     v=R(1, 2, 9, 4), h=hidden_mask(1, 9, 9, window=3))
case("attn.t", lambda qt, kt, vt, h: sdpa(qt.transpose(1, 2), kt.transpose(1, 2), vt.transpose(1, 2), h, 0.5),
     precise=True, qt=R(2, 6, 4, 8), kt=R(2, 6, 2, 8), vt=R(2, 6, 2, 8), h=hidden_mask(2, 6, 6))
case("attn.big", lambda q, k, v, h: sdpa(q, k, v, h, 0.125), precise=True, q=R(1, 6, 70, 64), k=R(1, 2, 70, 64),
     v=R(1, 2, 70, 64), h=hidden_mask(1, 70, 70))
case("attn.decode", lambda q, k, v: sdpa(q, k, v, None, 0.5), precise=True, q=R(1, 4, 1, 8), k=R(1, 2, 9, 8),
     v=R(1, 2, 9, 8))

# ---- cat / stack ----------------------------------------------------------
case("cat.d1", lambda a, b: torch.cat([a, b], 1), a=R(2, 3), b=R(2, 5))
case("cat.d0", lambda a, b, c: torch.cat([a, b, c], 0), a=R(1, 4), b=R(3, 4), c=R(2, 4))
case("cat.neg", lambda a, b: torch.cat([a, b], -1), a=R(2, 3, 2), b=R(2, 3, 4))
case("cat.mid", lambda a, b: torch.cat([a, b], 1), a=R(2, 1, 3), b=R(2, 2, 3))
case("cat.legacy", lambda e, a: torch.cat([e, a], 0), e=R(0), a=R(2, 3))
case("cat.t", lambda at, b: torch.cat([at.T, b], 0), at=R(3, 2), b=R(1, 3))
case("cat.ids", lambda a, b: torch.cat([a, b], 0), a=torch.tensor([1, 2]), b=torch.tensor([7]))
case("stack.d0", lambda a, b, c: torch.stack([a, b, c], 0), a=R(2, 3), b=R(2, 3), c=R(2, 3))
case("stack.last", lambda a, b: torch.stack([a, b], 2), a=R(2, 3), b=R(2, 3))
case("stack.neg", lambda a, b: torch.stack([a, b], -2), a=R(2, 3), b=R(2, 3))
case("stack.t", lambda at, b: torch.stack([at.T, b], 1), at=R(3, 2), b=R(2, 3))

# ---- tril / triu ----------------------------------------------------------
for name, fn in (("tril", torch.tril), ("triu", torch.triu)):
    case(f"{name}.k0", lambda x: fn(x, 0), x=R(4, 5))
    case(f"{name}.k1", lambda x: fn(x, 1), x=R(4, 5))
    case(f"{name}.km2", lambda x: fn(x, -2), x=R(5, 4))
    case(f"{name}.batch", lambda x: fn(x, -1), x=R(2, 3, 4))
    case(f"{name}.far", lambda x: fn(x, 10), x=R(3, 3))
    case(f"{name}.farneg", lambda x: fn(x, -10), x=R(3, 3))
    case(f"{name}.t", lambda xt: fn(xt.T, 0), xt=R(5, 4))
    case(f"{name}.ids", lambda x: fn(x, 0), x=torch.arange(9).reshape(3, 3))

o.save()
