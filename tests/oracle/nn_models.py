"""Oracle for tests/test_nn_models.c: GPT-2 and Llama forwards, masks, KV
cache, rope scaling and gradients, computed by reference modules written
from torch.nn.functional.

transformers is not installed (Debian packages torch 1.13 without it), so
the modules below transcribe the Hugging Face modelling code of
transformers 4.48 (models/gpt2/modeling_gpt2.py, models/llama/
modeling_llama.py, modeling_rope_utils.py, modeling_attn_mask_utils.py,
pytorch_utils.py, activations.py): same class names, child names and
registration order (so torch prints the same tree and named_parameters()
lists the same names), same arithmetic (eager attention). Masks are Hugging
Face's 4-D additive masks: 0 where a query may attend, float32's lowest
value elsewhere (causal and padding combined, as _update_causal_mask and
_prepare_4d_causal_attention_mask_for_sdpa build them).

Weights are drawn here with large spreads (std 0.3-0.5, norm weights
around 1) so that a wrong GELU form, a missing bias, an untransposed Conv1D
or a wrong rotary layout changes the outputs far beyond the tolerances.
Strings are stored as uint8 tensors of their bytes.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import oracle

torch.manual_seed(0)
o = oracle()
MIN = torch.finfo(torch.float32).min


def put_str(key, s):
    o.put(key, torch.tensor(list(s.encode()), dtype=torch.uint8))


def make_mask(attention_mask, B, T, past):
    """[B or 1, 1, T, S] additive mask: query i (position past + i) sees key j <= past + i that is not padding."""
    S = past + T
    allowed = torch.arange(S)[None, :] <= (past + torch.arange(T))[:, None]  # [T, S]
    allowed = allowed[None, None]
    if attention_mask is not None:
        allowed = allowed & (attention_mask[:, None, None, :] != 0)
    return torch.zeros(allowed.shape).masked_fill(~allowed, MIN)


def draw(model, std=0.4):
    """Random parameters: norm weights 1 + 0.3 N, everything else std * N."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm = any(k in name for k in ("ln_", "layernorm", "norm.", "ln_f"))
            if norm and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape))
            else:
                p.copy_(std * torch.randn(p.shape))


def put_params(prefix, model):
    """Every parameter (tied ones once, as named_parameters() lists them), and their count."""
    params = list(model.named_parameters())
    for name, p in params:
        o.put(f"{prefix}.{name}", p)
    o.put(f"{prefix}.__count", torch.tensor([len(params), sum(p.numel() for _, p in params)]))


def call_order(model, fn):
    """Names of the modules called during fn(), in call order (forward pre-hooks)."""
    order, handles = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList):
            continue
        handles.append(mod.register_forward_pre_hook(lambda m, i, name=name: order.append(name)))
    fn()
    for h in handles:
        h.remove()
    return "\n".join(order)


# ---- shared pieces ----------------------------------------------------------------


class ModuleList(nn.ModuleList):
    """torch >= 2.0's ModuleList.__repr__ (transformers 4.48 needs torch >= 2.0), which
    prints runs of identical items once, as "(0-11): 12 x GPT2Block(". torch 1.13's
    lists every item."""

    def __repr__(self):
        list_of_reprs = [repr(item) for item in self]
        if len(list_of_reprs) == 0:
            return self._get_name() + "()"
        start_end_indices = [[0, 0]]
        repeated_blocks = [list_of_reprs[0]]
        for i, r in enumerate(list_of_reprs[1:], 1):
            if r == repeated_blocks[-1]:
                start_end_indices[-1][1] += 1
                continue
            start_end_indices.append([i, i])
            repeated_blocks.append(r)
        lines = []
        main_str = self._get_name() + "("
        for (start_id, end_id), b in zip(start_end_indices, repeated_blocks):
            local_repr = f"({start_id}): {b}"
            if start_id != end_id:
                n = end_id - start_id + 1
                local_repr = f"({start_id}-{end_id}): {n} x {b}"
            local_repr = nn.modules.module._addindent(local_repr, 2)
            lines.append(local_repr)
        main_str += "\n  " + "\n  ".join(lines) + "\n"
        main_str += ")"
        return main_str



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


class NewGELUActivation(nn.Module):
    def forward(self, input):
        return 0.5 * input * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (input + 0.044715 * torch.pow(input, 3.0))))


# ---- GPT-2 ----------------------------------------------------------------------


class GPT2Config:
    def __init__(self, **kw):
        self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.n_head = 50257, 1024, 768, 12, 12
        self.n_inner, self.layer_norm_epsilon = None, 1e-5
        self.attn_pdrop = self.embd_pdrop = self.resid_pdrop = 0.1
        self.__dict__.update(kw)


class GPT2Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = self.embed_dim // self.num_heads
        self.split_size = self.embed_dim
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.weights = None  # the last attention probabilities, for the oracle

    def forward(self, hidden_states, mask):
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = query.view(shape).transpose(1, 2)
        key = key.view(shape).transpose(1, 2)
        value = value.view(shape).transpose(1, 2)
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype)
        attn_weights = attn_weights + mask
        attn_weights = F.softmax(attn_weights, dim=-1)
        self.weights = attn_weights
        attn_weights = self.attn_dropout(attn_weights)
        attn_output = torch.matmul(attn_weights, value).transpose(1, 2)
        attn_output = attn_output.reshape(*attn_output.shape[:-2], -1).contiguous()
        attn_output = self.c_proj(attn_output)
        return self.resid_dropout(attn_output)


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size, config):
        super().__init__()
        self.c_fc = Conv1D(intermediate_size, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, intermediate_size)
        self.act = NewGELUActivation()
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, h):
        return self.dropout(self.c_proj(self.act(self.c_fc(h))))


class GPT2Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner, config)

    def forward(self, hidden_states, mask):
        residual = hidden_states
        attn_output = self.attn(self.ln_1(hidden_states), mask)
        hidden_states = attn_output + residual
        residual = hidden_states
        feed_forward_hidden_states = self.mlp(self.ln_2(hidden_states))
        return residual + feed_forward_hidden_states


class GPT2Model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = ModuleList([GPT2Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids, attention_mask=None):
        B, T = input_ids.shape
        position_ids = torch.arange(0, T)[None]
        hidden_states = self.wte(input_ids) + self.wpe(position_ids)
        hidden_states = self.drop(hidden_states)
        mask = make_mask(attention_mask, B, T, 0)
        for block in self.h:
            hidden_states = block(hidden_states, mask)
        return self.ln_f(hidden_states)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tie_weights()

    def forward(self, input_ids, attention_mask=None):
        return self.lm_head(self.transformer(input_ids, attention_mask))


# ---- Llama ----------------------------------------------------------------------


class LlamaConfig:
    def __init__(self, **kw):
        self.vocab_size, self.hidden_size, self.intermediate_size = 32000, 4096, 11008
        self.num_hidden_layers, self.num_attention_heads, self.num_key_value_heads = 32, 32, None
        self.head_dim, self.max_position_embeddings, self.rms_norm_eps = None, 2048, 1e-6
        self.rope_theta, self.rope_scaling, self.tie_word_embeddings = 10000.0, None, False
        self.attention_bias = self.mlp_bias = False
        self.__dict__.update(kw)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads


def rope_inv_freq(config):
    """_compute_default_rope_parameters and _compute_llama3_parameters."""
    base, dim = config.rope_theta, config.head_dim
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if config.rope_scaling is None:
        return inv_freq
    factor = config.rope_scaling["factor"]
    low_freq_factor = config.rope_scaling["low_freq_factor"]
    high_freq_factor = config.rope_scaling["high_freq_factor"]
    old_context_len = config.rope_scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


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


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.attention_scaling = 1.0

    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class LlamaAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        h, q, kv = config.hidden_size, config.num_attention_heads * self.head_dim, config.num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(h, q, bias=config.attention_bias)
        self.k_proj = nn.Linear(h, kv, bias=config.attention_bias)
        self.v_proj = nn.Linear(h, kv, bias=config.attention_bias)
        self.o_proj = nn.Linear(q, h, bias=config.attention_bias)
        self.weights = None

    def forward(self, hidden_states, position_embeddings, mask):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling
        attn_weights = attn_weights + mask
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        self.weights = attn_weights
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output)


class LlamaMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        h, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=config.mlp_bias)
        self.up_proj = nn.Linear(h, i, bias=config.mlp_bias)
        self.down_proj = nn.Linear(i, h, bias=config.mlp_bias)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = LlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, mask):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, position_embeddings, mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


class LlamaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = ModuleList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)

    def forward(self, input_ids, attention_mask=None):
        B, T = input_ids.shape
        inputs_embeds = self.embed_tokens(input_ids)
        position_ids = torch.arange(T)[None]
        mask = make_mask(attention_mask, B, T, 0)
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, mask)
        return self.norm(hidden_states)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, attention_mask=None):
        return self.lm_head(self.model(input_ids, attention_mask))


# ---- GPT-2 cases ------------------------------------------------------------------

# Small config (n_inner left at 4 * n_embd); test_nn_models.c builds the same.
gcfg = GPT2Config(vocab_size=48, n_positions=40, n_embd=32, n_layer=2, n_head=4)
gpt2 = GPT2LMHeadModel(gcfg).eval()  # eval: dropout is the identity, as in glassbox
draw(gpt2, std=0.4)
put_params("gpt2", gpt2)
put_str("gpt2.repr", repr(gpt2))

ids = torch.randint(0, gcfg.vocab_size, (2, 6))
o.put("gpt2.ids", ids)
with torch.no_grad():
    o.put("gpt2.logits", gpt2(ids))
    put_str("gpt2.call_order", call_order(gpt2, lambda: gpt2(ids)))
    # Left padding: the first sequence has two pads.
    pad = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    o.put("gpt2.pad_mask", pad)
    o.put("gpt2.pad_logits", gpt2(ids, pad))
    # The first block's parts on a random hidden state.
    block = gpt2.transformer.h[0]
    x = torch.randn(2, 5, gcfg.n_embd)
    mask = make_mask(None, 2, 5, 0)
    o.put("gpt2.x", x)
    o.put("gpt2.attn_out", block.attn(x, mask))
    o.put("gpt2.attn_weights", block.attn.weights)
    o.put("gpt2.mlp_out", block.mlp(x))
    o.put("gpt2.block_out", block(x, mask))

# Gradients of sum(block(x) * r) for the first block's parameters and x.
x = x.clone().requires_grad_(True)
y = block(x, make_mask(None, 2, 5, 0))
r = torch.randn(y.shape)
(y * r).sum().backward()
o.put("gpt2.block_r", r)
o.put("gpt2.block_grad.x", x.grad)
for name, p in block.named_parameters():
    o.put(f"gpt2.block_grad.{name}", p.grad)

# ---- Llama cases ------------------------------------------------------------------

lcfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0)
llama = LlamaForCausalLM(lcfg).eval()
draw(llama, std=0.4)
put_params("llama", llama)
put_str("llama.repr", repr(llama))

ids = torch.randint(0, lcfg.vocab_size, (2, 6))
o.put("llama.ids", ids)
with torch.no_grad():
    o.put("llama.logits", llama(ids))
    put_str("llama.call_order", call_order(llama, lambda: llama(ids)))
    pad = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    o.put("llama.pad_mask", pad)
    o.put("llama.pad_logits", llama(ids, pad))
    layer = llama.model.layers[0]
    x = torch.randn(2, 5, lcfg.hidden_size)
    pos = torch.arange(5)[None]
    cos, sin = llama.model.rotary_emb(x, pos)
    o.put("llama.x", x)
    o.put("llama.cos", cos)
    o.put("llama.sin", sin)
    mask = make_mask(None, 2, 5, 0)
    o.put("llama.attn_out", layer.self_attn(x, (cos, sin), mask))
    o.put("llama.attn_weights", layer.self_attn.weights)
    o.put("llama.mlp_out", layer.mlp(x))
    o.put("llama.layer_out", layer(x, (cos, sin), mask))

x = x.clone().requires_grad_(True)
y = layer(x, (cos, sin), make_mask(None, 2, 5, 0))
r = torch.randn(y.shape)
(y * r).sum().backward()
o.put("llama.layer_r", r)
o.put("llama.layer_grad.x", x.grad)
for name, p in layer.named_parameters():
    o.put(f"llama.layer_grad.{name}", p.grad)

# rope_scaling "llama3" over 300 positions, far past original_max_position_embeddings = 64, so
# that the low (divided by factor), medium (interpolated) and high (kept) bands all occur:
# head_dim 16 gives wavelengths 6.3 .. 19869 against thresholds 16 and 64.
rcfg = LlamaConfig(vocab_size=40, hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
long = LlamaForCausalLM(rcfg).eval()
draw(long, std=0.4)
put_params("long", long)
ids = torch.randint(0, rcfg.vocab_size, (1, 300))
o.put("long.ids", ids)
o.put("long.inv_freq", long.model.rotary_emb.inv_freq)
with torch.no_grad():
    logits = long(ids)
    o.put("long.logits", logits)
    # The scaling must matter: the unscaled rotary gives clearly different logits.
    plain = rope_inv_freq(LlamaConfig(rope_theta=10000.0, head_dim=16))
    long.model.rotary_emb.inv_freq.copy_(plain)
    assert (long(ids) - logits).abs().max() > 0.1

# ---- Mistral ----------------------------------------------------------------------

# transformers' modular_mistral.py derives Mistral's classes from Llama's:
# the same modules (without biases) under Mistral's class names, attributes
# reassigned after Llama's __init__ (which keeps their registration order).
# Only the printed tree is needed: test_model_fixtures.c compares the print of
# the "mistral" fixture (tests/fixtures/make_models.py's mistral_config(),
# same sizes as mcfg) with it.


class MistralRMSNorm(LlamaRMSNorm):
    pass


class MistralRotaryEmbedding(LlamaRotaryEmbedding):
    pass


class MistralAttention(LlamaAttention):
    pass


class MistralMLP(LlamaMLP):
    pass


class MistralDecoderLayer(LlamaDecoderLayer):
    def __init__(self, config):
        super().__init__(config)
        self.self_attn = MistralAttention(config)
        self.mlp = MistralMLP(config)
        self.input_layernorm = MistralRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = MistralRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class MistralModel(LlamaModel):
    def __init__(self, config):
        super().__init__(config)
        self.layers = ModuleList([MistralDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = MistralRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = MistralRotaryEmbedding(config)


class MistralForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model = MistralModel(config)


mcfg = LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5)
put_str("mistral.repr", repr(MistralForCausalLM(mcfg)))
o.save()
