"""Oracle of sessions (tests/test_session.c, tests/test_remote.c) on the
bundled model, in plain PyTorch with forward hooks (train.py's GPT-2, whose
blocks return the hidden state itself; demo.py's run and greedy).

It also writes a second checkpoint of the same architecture for the
cross-model swap (nnsight: activations swapped between a base and an
instruct model): the bundled model's stored tensors each plus 0.05 times
seeded normal noise, in $GB_ORACLE_DIR/session_b/ with the bundled model's
config and tokenizer.

Keys (ids int64):
  swap.t1: trace 1's argmax of every position on the Eiffel prompt;
  swap.t2: trace 2's on the Vatican prompt with block 1's output at the
    last position replaced by trace 1's block 3 output there (the
    walkthrough's session cell, layers scaled to this 4-block model)
  cross.b: model B's last logits on the Eiffel prompt; cross.swapped: the
    same with B's block 2 output replaced by model A's
  iter.K: last logits with block 0's output times ITEMS[K]
  gen.t2: 3 greedy tokens of model B on the Eiffel prompt with block 2's
    output (prompt pass) replaced by model A's
"""
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import safetensors as st_io  # noqa: E402
from common import oracle  # noqa: E402
from demo import MODEL, greedy, load, run  # noqa: E402
from train import load_pretrained  # noqa: E402

PROMPTS = {"eiffel": "The Eiffel Tower is in the city of", "vatican": "Vatican is located in the city of"}
ITEMS = [0.5, 2.0, -1.0]


def write_b(out_dir):
    """Model B: every stored tensor of the bundled model plus seeded noise."""
    os.makedirs(out_dir, exist_ok=True)
    _, _, tensors, _ = st_io.read_file(os.path.join(MODEL, "model.safetensors"))
    g = torch.Generator().manual_seed(7)
    b = {k: (v.float() + 0.05 * torch.randn(v.shape, generator=g)).contiguous() for k, v in sorted(tensors.items())}
    st_io.write_file(os.path.join(out_dir, "model.safetensors"), b)
    for f in os.listdir(MODEL):
        if f.endswith((".json", ".txt")):
            shutil.copy(os.path.join(MODEL, f), out_dir)


def main():
    o = oracle()
    loaded = load(PROMPTS)
    if loaded is None:
        o.save()  # empty: the tests skip, saying why
        return
    a, eos, enc = loaded
    ids = {k: v["ids"] for k, v in enc.items()}
    b_dir = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "session_b")
    write_b(b_dir)
    b = load_pretrained(b_dir)
    with torch.no_grad():
        seen = {}

        def grab(name):
            def hook(module, inputs, output):
                seen[name] = output.clone()
            return hook

        t1 = run(a, ids["eiffel"], [(a.transformer.h[3], grab("h3"))])
        o.put("swap.t1", t1.argmax(-1))

        def put_last(module, inputs, output):
            h = output.clone()
            h[:, -1, :] = seen["h3"][:, -1, :]
            return h

        o.put("swap.t2", run(a, ids["vatican"], [(a.transformer.h[1], put_last)]).argmax(-1))

        run(a, ids["eiffel"], [(a.transformer.h[2], grab("a2"))])
        o.put("cross.b", run(b, ids["eiffel"])[0, -1])

        def put_all(module, inputs, output):
            return seen["a2"].clone()

        o.put("cross.swapped", run(b, ids["eiffel"], [(b.transformer.h[2], put_all)])[0, -1])
        # generation: the swap applies to the prompt pass (step 0); greedy
        # recomputes the prompt at each step, so the prompt's positions keep it
        T = len(ids["eiffel"])

        def put_prompt(module, inputs, output):
            h = output.clone()
            h[:, :T] = seen["a2"]
            return h

        o.put("gen.t2", torch.tensor(greedy(b, ids["eiffel"], 3, lambda step: [(b.transformer.h[2], put_prompt)], eos=eos)))

        for k, x in enumerate(ITEMS):
            def scale(module, inputs, output, x=x):
                return output * x
            o.put(f"iter.{k}", run(a, ids["eiffel"], [(a.transformer.h[0], scale)])[0, -1])
    o.save()


if __name__ == "__main__":
    main()
