"""Oracle of the tests that run on the bundled model (models/gpt2-facts)
rather than on ../shared's stories260k: the CLI (tests/test_cli.c),
generation with interventions (test_generate.c), invokes (test_invoke.c),
persistent edits (test_edits.c), stepping (test_exec.c) and the language
model layer (test_lm.c).

The model is train.py's independent GPT-2 loading the checkpoint, run with
forward hooks (demo.py's run); prompts are tokenized by Hugging Face's
tokenizers through Node (demo.py's load), and generation is demo.py's
greedy, which recomputes the whole sequence at each step (no KV cache). A
batch of prompts of different lengths is left-padded under an attention
mask with positions 0..T-1 for every row, which is what Hugging Face's
GPT-2 does without position_ids (and what a trace's invokes do, as in
nnsight). Writes nothing (an empty
file) when the model or the Node oracle is missing; the tests then skip.

Keys (ids are int64; prompts [1, T], new tokens [n]):
  ids.NAME, tokens.NAME (the token strings joined by newlines)
  logits.eiffel, hidden.eiffel.L (block L's output), hidden.eiffel.final (ln_f's)
  hidden_states.eiffel.I: Hugging Face's output_hidden_states order, written
    out from GPT2Model.forward: the input of block I (0: the embeddings),
    then, as I = L, ln_f's output
  argmax.eiffel: each position's next token, and .repr: PyTorch's repr of it
  greedy.NAME: 20 greedy new tokens, no stop tokens
  eos.NAME: greedy new tokens up to and with the first EOS, at most 6
  padded.logits: each row's last logits [2, V] in the batch [eiffel; vatican]
    in one pass (vatican left-padded by one under the mask); padded.next: their
    argmax, and .a.repr / .b.repr
  edit2: 5 new tokens with lm_head's logit 42 set to 1e9 at step 2;
    edit2.step1.repr: step 1's token; edit2.cli.repr: the prompt and the
    first 4, as [1, T + 4] (generator.output)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import oracle  # noqa: E402
from demo import greedy, load, run  # noqa: E402

PROMPTS = {
    "eiffel": "The Eiffel Tower is in the city of",
    "eiffel_located": "The Eiffel Tower is located in the city of",
    "vatican": "Vatican is located in the city of",
}
FORCED = 42  # the token an edit forces


def put_str(o, key, text):
    """A string as the uint8 tensor of its bytes (gbt_get_str reads it)."""
    o.put(key, torch.tensor(list(text.encode()), dtype=torch.uint8))


def forward_padded(model, rows, pad_id=0):
    """Logits [B, T, V] of rows (lists of ids) left-padded to the longest,
    as GPT2LMHeadModel(input_ids, attention_mask) computes them: positions
    0..T-1, and no query attends to a padded key (the additive 4-D mask of
    _prepare_4d_causal_attention_mask: finfo.min where masked)."""
    T = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows], dtype=torch.bool)
    tr = model.transformer
    h = tr.wte(ids) + tr.wpe(torch.arange(T))[None]
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :]
    for block in tr.h:
        a = block.attn
        q, k, v = a.c_attn(block.ln_1(h)).split(a.embed_dim, dim=2)
        q, k, v = (t.view(*t.shape[:2], a.num_heads, a.head_dim).transpose(1, 2) for t in (q, k, v))
        w = q @ k.transpose(-1, -2) / a.head_dim ** 0.5
        w = w.masked_fill(~allowed, torch.finfo(torch.float32).min).softmax(-1)
        h = h + a.c_proj((w @ v).transpose(1, 2).reshape(*h.shape))
        h = h + block.mlp(block.ln_2(h))
    return model.lm_head(tr.ln_f(h))


def main():
    o = oracle()
    loaded = load(PROMPTS)
    if loaded is None:
        o.save()  # empty: the tests skip, saying why
        return
    model, eos, enc = loaded
    blocks = model.transformer.h
    ids = {k: v["ids"] for k, v in enc.items()}
    for k, v in enc.items():
        o.put(f"ids.{k}", torch.tensor([v["ids"]]))
        put_str(o, f"tokens.{k}", "\n".join(v["tokens"]))
    eiffel = ids["eiffel"]

    with torch.no_grad():
        seen = {}

        def keep(name):
            def hook(module, inputs, output):
                seen[name] = output
            return hook

        logits = run(model, eiffel, [(b, keep(str(i))) for i, b in enumerate(blocks)]
                     + [(model.transformer.ln_f, keep("final"))])
        o.put("logits.eiffel", logits)
        states = []
        pre = [b.register_forward_pre_hook(lambda m, inputs: states.append(inputs[0])) for b in blocks]
        try:
            run(model, eiffel, [(model.transformer.ln_f, lambda m, inputs, out: states.append(out))])
        finally:
            for h in pre:
                h.remove()
        assert len(states) == len(blocks) + 1
        for i, h in enumerate(states):
            o.put(f"hidden_states.eiffel.{i}", h)
        for name, h in seen.items():
            o.put(f"hidden.eiffel.{name}", h)
        top = logits[0].argmax(-1)
        o.put("argmax.eiffel", top)
        put_str(o, "argmax.eiffel.repr", repr(top))
        # the padded row really is computed under the mask: a row of ones gives the plain forward
        assert torch.allclose(forward_padded(model, [eiffel]), logits, atol=1e-5)

        for k in PROMPTS:
            o.put(f"greedy.{k}", torch.tensor(greedy(model, ids[k], 20)))
            o.put(f"eos.{k}", torch.tensor(greedy(model, ids[k], 6, eos=eos)))

        last = forward_padded(model, [eiffel, ids["vatican"]])[:, -1]
        o.put("padded.logits", last)
        padded = last.argmax(-1)
        o.put("padded.next", padded)
        for row, name in enumerate("ab"):
            put_str(o, f"padded.next.{name}.repr", repr(padded[row]))

        def force(module, inputs, output):  # lm_head.next().next().output[0, -1, 42] = 1e9
            output = output.clone()
            output[0, -1, FORCED] = 1e9
            return output

        edit2 = greedy(model, eiffel, 5, lambda step: [(model.lm_head, force)] if step == 2 else [])
        assert edit2[2] == FORCED and eos not in edit2[:3]  # the CLI (which stops at EOS) runs 4 steps
        o.put("edit2", torch.tensor(edit2))
        put_str(o, "edit2.step1.repr", repr(torch.tensor(edit2[1])))
        put_str(o, "edit2.cli.repr", repr(torch.tensor([eiffel + edit2[:4]])))
    o.save()


if __name__ == "__main__":
    main()
