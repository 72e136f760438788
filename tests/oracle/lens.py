"""Oracle of `glassbox lens`, `patch` and `attn` (tests/test_lens.c) on the
bundled model, in plain PyTorch with forward hooks.

The model is train.py's independent GPT-2 loading models/gpt2-facts, the
prompts tokenized by Hugging Face's tokenizers (demo.py's load). Writes
nothing (an empty file) when the model or the Node oracle is missing; the
tests then skip.

- The logit lens: each block's output, taken by a forward hook, through the
  model's own ln_f and lm_head, softmaxed; the top K per layer and position.
- Activation patching, the textbook loop: for every layer and position, a
  forward hook on the corrupted run replaces that position of the module's
  output (the block's: resid; the attention's: attn; the MLP's: mlp) with
  the clean run's, and the metric is logit[target] - logit[foil] at the
  last position, target = the clean run's prediction, foil = the corrupted
  run's; recovered = (patched - corrupted) / (clean - corrupted).
- Attention patterns: softmax(q k^T / sqrt(d) + causal mask) of one block,
  q and k from its c_attn applied to the attention's input (a forward hook
  on the attention module reads the input).
- Steering (docs/recipes.md, examples/recipes.c): block 1's output at the
  last position of the Colosseum prompt minus the Eiffel Tower prompt's,
  added by a forward hook to the Louvre prompt's; the top token and its
  probability before and after.
- Attribution: input x gradient of the ' Paris' logit at the last position
  for the residual stream entering each block (a forward pre-hook keeps
  each block's input; the embedding output is made a leaf so gradients
  reach the first block's input), summed over the hidden size.

Keys: ids.NAME [1, T]; lens.top [L, T, K] (int64), lens.prob [L, T, K];
model.top, model.prob [T, K] (the model's own logits); patch.target,
patch.foil (int64 [1]); patch.clean, patch.corrupt ([1]);
patch.WHAT.diff, patch.WHAT.recovered [L, T]; attn.LAYER [H, T, T];
attn_scores.LAYER [H, T, T] (before softmax, -inf where masked);
steer.plain.top, steer.steered.top (int64 [1]), steer.plain.prob,
steer.steered.prob ([1]); attr [L, T].
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import oracle  # noqa: E402
from demo import load, run  # noqa: E402

PROMPTS = {
    "eiffel": "The Eiffel Tower is in the city of",
    "colosseum": "The Colosseum is in the city of",
    "louvre": "The Louvre is located in the city of",
}
STEER_LAYER = 1
K = 3
ATTN_LAYER = 1


def lens(model, ids):
    """(top ids [L, T, K], their probabilities) of the logit lens."""
    outs = []
    run(model, ids, [(b, lambda m, i, o: outs.append(o)) for b in model.transformer.h])
    probs = torch.stack([model.lm_head(model.transformer.ln_f(h[0])) for h in outs]).softmax(-1)
    top = probs.topk(K, dim=-1)
    return top.indices, top.values


def patch(model, clean, corrupt, module_of):
    """Patched metrics [L, T], the target, the foil and the clean and corrupted metrics."""
    blocks = model.transformer.h
    saved = {}
    run(model, clean, [(module_of(b), lambda m, i, o, l=l: saved.__setitem__(l, o.clone())) for l, b in enumerate(blocks)])
    clean_last, corrupt_last = run(model, clean)[0, -1], run(model, corrupt)[0, -1]
    target, foil = int(clean_last.argmax()), int(corrupt_last.argmax())

    def metric(last):
        return float(last[target] - last[foil])

    diff = torch.zeros(len(blocks), len(corrupt))
    for l, b in enumerate(blocks):
        for t in range(len(corrupt)):
            def put(m, i, o, l=l, t=t):
                o = o.clone()
                o[:, t] = saved[l][:, t]
                return o
            diff[l, t] = metric(run(model, corrupt, [(module_of(b), put)])[0, -1])
    return diff, target, foil, metric(clean_last), metric(corrupt_last)


def attention(model, ids, layer):
    """The pattern [H, T, T] of block `layer`'s attention."""
    return attention_scores(model, ids, layer).softmax(-1)


def attention_scores(model, ids, layer):
    """The scores [H, T, T] of block `layer`'s attention before softmax,
    -inf where the causal mask removes a key."""
    attn = model.transformer.h[layer].attn
    seen = {}
    run(model, ids, [(attn, lambda m, i, o: seen.__setitem__("x", i[0]))])
    q, k, _ = attn.c_attn(seen["x"]).split(attn.embed_dim, dim=2)
    T = q.shape[1]
    q, k = (t.view(1, T, attn.num_heads, attn.head_dim).transpose(1, 2) for t in (q, k))
    w = q @ k.transpose(-1, -2) / attn.head_dim ** 0.5
    return w.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))[0]


def steer(model, ids):
    """(top id, probability) of the Louvre prompt, plain and steered."""
    block = model.transformer.h[STEER_LAYER]
    seen = {}
    for name in ("colosseum", "eiffel"):
        run(model, ids[name], [(block, lambda m, i, o, name=name: seen.__setitem__(name, o[:, -1].clone()))])
    vector = seen["colosseum"] - seen["eiffel"]

    def add(m, i, o):
        o = o.clone()
        o[:, -1] += vector
        return o

    out = []
    for hooks in ([], [(block, add)]):
        p = run(model, ids["louvre"], hooks)[0, -1].softmax(-1)
        out.append((int(p.argmax()), float(p.max())))
    return out


def attribution(model, ids, answer):
    """[L, T]: (input x gradient of logit[answer]) of each block's input, summed over the hidden size."""
    inputs = []
    handles = [b.register_forward_pre_hook(lambda m, i: (i[0].retain_grad(), inputs.append(i[0]))[1] and None)
               for b in model.transformer.h]
    try:
        logits = run(model, ids, [(model.transformer.wte, lambda m, i, o: o.detach().requires_grad_())])
        logits[0, -1, answer].backward()
    finally:
        for h in handles:
            h.remove()
    return torch.stack([(h * h.grad).sum(-1)[0] for h in inputs]).detach()


def main():
    o = oracle()
    loaded = load(PROMPTS)
    if loaded is None:
        o.save()  # empty: the tests skip, saying why
        return
    model, _, enc = loaded
    ids = {k: v["ids"] for k, v in enc.items()}
    for k, v in ids.items():
        o.put(f"ids.{k}", torch.tensor([v]))
    with torch.no_grad():
        top, prob = lens(model, ids["eiffel"])
        o.put("lens.top", top)
        o.put("lens.prob", prob)
        own = run(model, ids["eiffel"])[0].softmax(-1).topk(K, dim=-1)
        o.put("model.top", own.indices)
        o.put("model.prob", own.values)

        whats = {"resid": lambda b: b, "attn": lambda b: b.attn, "mlp": lambda b: b.mlp}
        for name, module_of in whats.items():
            diff, target, foil, clean, corrupt = patch(model, ids["eiffel"], ids["colosseum"], module_of)
            o.put(f"patch.{name}.diff", diff)
            o.put(f"patch.{name}.recovered", (diff - corrupt) / (clean - corrupt))
        o.put("patch.target", torch.tensor([target]))
        o.put("patch.foil", torch.tensor([foil]))
        o.put("patch.clean", torch.tensor([clean]))
        o.put("patch.corrupt", torch.tensor([corrupt]))
        o.put(f"attn.{ATTN_LAYER}", attention(model, ids["eiffel"], ATTN_LAYER))
        o.put(f"attn_scores.{ATTN_LAYER}", attention_scores(model, ids["eiffel"], ATTN_LAYER))
        (plain, p_plain), (steered, p_steered) = steer(model, ids)
        o.put("steer.plain.top", torch.tensor([plain]))
        o.put("steer.plain.prob", torch.tensor([p_plain]))
        o.put("steer.steered.top", torch.tensor([steered]))
        o.put("steer.steered.prob", torch.tensor([p_steered]))
    o.put("attr", attribution(model, ids["eiffel"], target))  # the clean run's prediction, ' Paris'
    o.save()


if __name__ == "__main__":
    main()
