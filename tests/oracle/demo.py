"""The demo's experiments (tools/cli/demo.c) on the bundled model, in plain
PyTorch with forward hooks: what `glassbox demo` must print.

The model is models/gpt2-facts loaded by train.py's independent GPT-2; the
prompts are tokenized by Hugging Face's tokenizers (Node, build/oracle-node).
Generation recomputes the whole sequence at each step (no KV cache), which
is the same computation as glassbox's cached one. Writes nothing (an empty
file) when the model or the Node oracle is missing; the test then skips.
"""
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import oracle  # noqa: E402
from train import load_pretrained  # noqa: E402

MODEL = "models/gpt2-facts"
PROMPTS = {
    "eiffel": "The Eiffel Tower is in the city of",
    "colosseum": "The Colosseum is in the city of",
    "eiffel_located": "The Eiffel Tower is located in the city of",
    "vatican": "Vatican is located in the city of",
    "paris": " Paris",
    "rome": " Rome",
}
NEW = 6  # tokens the demo generates


def hf_encode(texts):
    """{key: {"ids": [...], "tokens": [...]}} of Hugging Face's tokenizer of the
    model for {key: text} (special tokens added); None when Node's oracle is missing."""
    node_dir = os.environ.get("GB_NODE_ORACLE", "build/oracle-node")
    script = (
        "const {Tokenizer} = require('tokenizers');"
        "(async () => { const t = Tokenizer.fromFile(process.argv[1]); const out = {};"
        " for (const [k, s] of Object.entries(JSON.parse(process.argv[2]))) {"
        "   const e = await t.encode(s, null, {addSpecialTokens: true});"
        "   out[k] = {ids: e.getIds(), tokens: e.getTokens()}; }"
        " console.log(JSON.stringify(out)); })();"
    )
    env = dict(os.environ, NODE_PATH=os.path.join(os.path.abspath(node_dir), "node_modules"))
    r = subprocess.run(["node", "-e", script, os.path.join(MODEL, "tokenizer.json"), json.dumps(texts)],
                       capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def load(prompts):
    """(model, its EOS id, hf_encode(prompts)), or None when the model or
    Node's oracle is missing."""
    enc = hf_encode(prompts) if os.path.isdir(MODEL) else None
    if enc is None:
        return None
    with open(os.path.join(MODEL, "config.json")) as f:
        eos = json.load(f)["eos_token_id"]
    return load_pretrained(MODEL), eos, enc


def run(model, ids, hooks=()):
    """Logits [1, T, V] of ids with forward hooks (module, fn) attached."""
    handles = [m.register_forward_hook(fn) for m, fn in hooks]
    try:
        return model(torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()


def greedy(model, ids, n, hooks_at=lambda step: [], eos=None):
    """n greedy new tokens after ids (a list), the hooks of step k attached
    at step k; stops after the first eos when eos is given."""
    seq = list(ids)
    for step in range(n):
        seq.append(int(run(model, seq, hooks_at(step))[0, -1].argmax(-1)))
        if seq[-1] == eos:
            break
    return seq[len(ids):]


def main():
    o = oracle()
    loaded = load(PROMPTS)
    if loaded is None:
        o.save()  # empty: the test skips, saying why
        return
    model, eos, enc = loaded
    toks = {k: v["ids"] for k, v in enc.items()}
    blocks = model.transformer.h
    last_mlp, first_mlp = blocks[-1].mlp, blocks[0].mlp
    eiffel, paris, rome = toks["eiffel"], toks["paris"][0], toks["rome"][0]

    def ablate(module, inputs, output):  # mlp.output[0][:] = 0
        output = output.clone()
        output[0][:] = 0
        return output

    with torch.no_grad():
        # the committed checkpoint in PyTorch: logits of the first prompt, every position
        o.put("logits", run(model, eiffel))
        # 1. the prediction: top-3 of the last position
        probs = run(model, eiffel)[0, -1].softmax(-1)
        top = probs.topk(3)
        o.put("top_ids", top.indices)
        o.put("top_probs", top.values)
        # 2-4. the last and the first MLP ablated (the first alone and as one invoke of two)
        o.put("ablated_last", run(model, eiffel, [(last_mlp, ablate)])[0, -1].argmax(-1))
        o.put("ablated_first", run(model, eiffel, [(first_mlp, ablate)])[0, -1].argmax(-1))
        o.put("original", run(model, eiffel)[0, -1].argmax(-1))
        # 5. the Colosseum's last hidden state at layer L in the Eiffel prompt
        patched = []
        for layer in range(len(blocks)):
            seen = {}

            def grab(module, inputs, output):  # blocks here return the hidden state itself
                seen["h"] = output[:, -1, :].clone()

            run(model, toks["colosseum"], [(blocks[layer], grab)])

            def put(module, inputs, output):
                h = output.clone()
                h[:, -1, :] = seen["h"]
                return h

            patched.append(run(model, eiffel, [(blocks[layer], put)])[0, -1].argmax(-1))
        o.put("patched", torch.stack(patched))

    # 6. gradients of the answer's logit with respect to each block's output
    outs = []

    def keep(module, inputs, output):
        output.retain_grad()
        outs.append(output)

    def leaf(module, inputs, output):  # wte.output.requires_grad_()
        return output.detach().requires_grad_()

    logits = run(model, eiffel, [(model.transformer.wte, leaf)] + [(b, keep) for b in blocks])
    logits[0, -1, paris].backward()
    o.put("grad_norms", torch.stack([h.grad[0, -1].norm() for h in outs]))

    with torch.no_grad():
        # 8. generation until EOS: plain, `lm_head.next().output[0, -1, rome] = 100`, the first MLP ablated at every step
        def generate(hooks_at):
            return torch.tensor(greedy(model, eiffel, NEW, hooks_at, eos))

        def force_rome(module, inputs, output):
            output = output.clone()
            output[0, -1, rome] = 100
            return output

        o.put("gen_plain", generate(lambda step: []))
        o.put("gen_next", generate(lambda step: [(model.lm_head, force_rome)] if step == 1 else []))
        o.put("gen_all", generate(lambda step: [(first_mlp, ablate)]))

        # 9. the persistent edit: the Paris prompt's last hidden state after the last block
        seen = {}

        def grab_last(module, inputs, output):
            seen["hs"] = output[:, -1, :].clone()

        run(model, toks["eiffel_located"], [(blocks[-1], grab_last)])

        def edit(module, inputs, output):
            h = output.clone()
            h[:, -1, :] = seen["hs"]
            return h

        o.put("vatican", run(model, toks["vatican"])[0, -1].argmax(-1))
        o.put("vatican_edited", run(model, toks["vatican"], [(blocks[-1], edit)])[0, -1].argmax(-1))
    o.save()


if __name__ == "__main__":
    main()
