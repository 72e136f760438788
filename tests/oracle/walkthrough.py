"""Oracle of the walkthrough examples (examples/*.c, run by
tests/test_walkthrough.c): the same experiments in plain PyTorch, with
forward hooks (register_forward_hook, register_forward_pre_hook) and tensor
gradient hooks (Tensor.register_hook) -- not nnsight.

Writes, beside OUT.txt:
  walkthrough.safetensors  the tiny network's weights and input, plus the
                           extra tensors some cells use (noise, rand_int),
                           with a small safetensors writer of its own; every
                           example reads it with --weights.
and in OUT.txt (common.py's format):
  EXAMPLE.CELL.NAME   the value the example must write under CELL.NAME to --out
  keys.EXAMPLE        the names above for that example, comma-separated (uint8 bytes)
  stdout.EXAMPLE      text blocks its stdout must contain, separated by \\x1f (bytes)
  absent.EXAMPLE      text its stdout must not contain, separated by \\x1f (bytes)
  message.index_oob   PyTorch's IndexError message for layer1.output[:, 10] = 0
"""
import copy
import json
import os
import struct
import sys
from collections import OrderedDict

import torch

from common import oracle

SEED = 9  # a draw where the conditional ablation of conditions.c happens (layer1 sums > 0)
INPUT_SIZE, HIDDEN_DIMS, OUTPUT_SIZE = 5, 10, 2


def write_safetensors(path, tensors):
    """A minimal safetensors writer: 8-byte little-endian header length, JSON
    header padded with spaces to 8 bytes, then the raw little-endian data."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(path + ".tmp", path)


class Stop(Exception):
    """Raised by a hook to end the forward pass (nnsight's .stop())."""


def hooked(module, fn, pre=False):
    return module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn)


def run(net, x, hooks):
    """One forward pass with (module, fn[, pre]) hooks; returns the output,
    or None when a hook stopped it."""
    handles = [hooked(*h) for h in hooks]
    try:
        return net(x)
    except Stop:
        return None
    finally:
        for h in handles:
            h.remove()


class Expect:
    def __init__(self, o):
        self.o = o
        self.keys, self.stdout, self.absent = {}, {}, {}

    def value(self, example, key, t):
        self.o.put(f"{example}.{key}", t)
        self.keys.setdefault(example, []).append(key)

    def prints(self, example, text):
        self.stdout.setdefault(example, []).append(text)

    def never_prints(self, example, text):
        self.absent.setdefault(example, []).append(text)

    def text(self, key, s):
        self.o.put(key, torch.tensor(list(s.encode()), dtype=torch.uint8))

    def save(self, examples):
        for ex in examples:
            self.text(f"keys.{ex}", ",".join(self.keys.get(ex, [])))
            self.text(f"stdout.{ex}", "\x1f".join(self.stdout.get(ex, [])))
            self.text(f"absent.{ex}", "\x1f".join(self.absent.get(ex, [])))
        self.o.save()


def main():
    o = oracle()
    torch.manual_seed(SEED)
    net = torch.nn.Sequential(OrderedDict([
        ("layer1", torch.nn.Linear(INPUT_SIZE, HIDDEN_DIMS)),
        ("layer2", torch.nn.Linear(HIDDEN_DIMS, OUTPUT_SIZE)),
    ])).requires_grad_(False)
    x = torch.rand((1, INPUT_SIZE))
    noise = (0.001 ** 0.5) * torch.randn((1, HIDDEN_DIMS))
    rand_int = torch.randint(low=-10, high=10, size=(1,))
    files = {name: p for name, p in net.named_parameters()}
    files.update(input=x, noise=noise, rand_int=rand_int)
    write_safetensors(os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "walkthrough.safetensors"), files)

    e = Expect(o)
    layer1, layer2 = net.layer1, net.layer2
    W2, b2 = layer2.weight, layer2.bias

    def capture(store, key, transform=lambda t: t.clone()):
        def hook(module, inputs, output=None):
            store[key] = transform(inputs[0] if output is None else output)
        return hook

    # ---- getting -----------------------------------------------------------
    got = {}
    out = run(net, x, [(net, capture(got, "out")), (layer1, capture(got, "l1")),
                       (layer2, capture(got, "l2_in"), True)])
    assert torch.equal(out, got["out"])
    e.prints("getting", str(net) + "\n")
    e.value("getting", "output.output", got["out"])
    e.value("getting", "layer1_output.l1_output", got["l1"])
    e.value("getting", "layer2_input.l2_input", got["l2_in"])
    e.prints("getting", "Layer 1 - out: " + str(got["l1"]) + "\n")
    l1, l2 = got["l1"], got["out"]

    # ---- operations --------------------------------------------------------
    e.value("operations", "argmax.l1_amax", torch.argmax(l1, dim=1)[0])
    e.value("operations", "sum.value", l1.sum() + l2.sum())
    e.value("operations", "more.probs", l2.softmax(dim=-1))
    e.value("operations", "more.top", l1.max(dim=1).values)
    e.value("operations", "more.centered", l1 - l1.mean(dim=1, keepdim=True))
    e.value("operations", "more.scaled", l1[:, :3] * 2 / 4)
    e.value("operations", "more.manual", l1 @ W2.T + b2)

    # ---- apply -------------------------------------------------------------
    def tensor_sum(tensor):
        flat = tensor.flatten()
        total = 0
        for element in flat:
            total += element.item()
        return torch.tensor(total)

    e.value("apply", "custom_sum.custom_sum", tensor_sum(l1))
    e.value("apply", "custom_sum.sum", l1.sum())

    # ---- setting -----------------------------------------------------------
    def edit_column(column):
        seen = {}

        def hook(module, inputs, output):
            seen["before"] = output.clone()
            output[:, column] = 0
            seen["after"] = output.clone()
        run(net, x, [(layer1, hook)])
        return seen

    for cell, column in (("first", 0), ("last", HIDDEN_DIMS - 1)):
        seen = edit_column(column)
        e.value("setting", f"{cell}.before", seen["before"])
        e.value("setting", f"{cell}.after", seen["after"])
    try:
        edit_column(HIDDEN_DIMS)
        raise AssertionError("layer1.output[:, 10] = 0 did not fail")
    except IndexError as err:
        e.text("message.index_oob", str(err))

    # ---- scan and validate -------------------------------------------------
    meta = {}
    meta_net = copy.deepcopy(net).to("meta")  # shapes only, like glassbox's scan
    run(meta_net, x.to("meta"), [(meta_net.layer1, capture(meta, "l1", lambda t: t))])
    e.value("scan_validate", "scan.shape", torch.tensor(list(meta["l1"].shape)))
    e.prints("scan_validate", f"\n{meta['l1'].shape[-1]}\n")
    e.never_prints("scan_validate", "layer1 ran:")

    seen = {}

    def add_noise(module, inputs, output):
        seen["before"] = output.clone()
        seen["after"] = output + noise
        return seen["after"]
    out = run(net, x, [(layer1, add_noise)])
    e.value("scan_validate", "noise.before", seen["before"])
    e.value("scan_validate", "noise.after", seen["after"])
    e.value("scan_validate", "noise.output", out)

    # ---- gradients ---------------------------------------------------------
    def grads(layer1_hooks, layer2_hooks):
        """Backward of output.sum() with gradient hooks on the two outputs,
        run in the order given (an edit, then a save, as in the example)."""
        def on_layer1(module, inputs, output):
            output.requires_grad_(True)
            for h in layer1_hooks:
                output.register_hook(h)

        def on_layer2(module, inputs, output):
            for h in layer2_hooks:
                output.register_hook(h)
        run(net, x, [(layer1, on_layer1), (layer2, on_layer2)]).sum().backward()

    g = {}

    def keep(key):
        def hook(grad):
            g[key] = grad.clone()
        return hook

    grads([keep("l1")], [keep("l2")])
    e.value("gradients", "read.layer1_grad", g["l1"])
    e.value("gradients", "read.layer2_grad", g["l2"])
    g.clear()
    grads([lambda grad: torch.zeros_like(grad), keep("l1")], [lambda grad: grad * 2, keep("l2")])
    e.value("gradients", "edit.layer1_grad", g["l1"])
    e.value("gradients", "edit.layer2_grad", g["l2"])
    g.clear()
    grads([keep("l1")], [lambda grad: grad * 2])
    e.value("gradients", "propagate.layer1_grad", g["l1"])

    # ---- early stop --------------------------------------------------------
    seen = {}

    def stop_after(module, inputs, output):
        seen["l1"] = output.clone()
        raise Stop()
    assert run(net, x, [(layer1, stop_after), (layer2, capture(seen, "l2"))]) is None
    assert "l2" not in seen
    e.value("early_stop", "stop.l1_out", seen["l1"])
    e.never_prints("early_stop", "layer2 ran:")

    # ---- conditions --------------------------------------------------------
    parity = "Even" if rand_int.item() % 2 == 0 else "Odd"  # Python's modulo
    other = "Odd" if parity == "Even" else "Even"
    e.prints("conditions", f"Random Integer is {parity}: {str(rand_int)}\n")
    e.never_prints("conditions", f"Random Integer is {other}:")
    non_rand_int = torch.tensor(8)
    if non_rand_int > 0:
        if non_rand_int % 2 == 0:
            e.prints("conditions", f"Rand Int is Positive and Even: {str(non_rand_int)}\n")

    seen = {}

    def ablate_if_positive(module, inputs, output):
        seen["l1_sum"] = output.sum()
        if seen["l1_sum"] > 0:
            output[:] = 0

    def flag_class1(module, inputs, output):
        if torch.argmax(output, dim=1).item():
            seen["class1"] = output.clone()
    out = run(net, x, [(layer1, ablate_if_positive), (layer2, flag_class1)])
    e.value("conditions", "model.l1_sum", seen["l1_sum"])
    e.value("conditions", "model.output", out)
    if "class1" in seen:
        e.value("conditions", "model.class1", seen["class1"])
        e.prints("conditions", f"Predicts class 1: {str(seen['class1'])}\n")
    else:
        e.never_prints("conditions", "Predicts class 1:")

    e.save(["getting", "operations", "apply", "setting", "scan_validate", "gradients", "early_stop", "conditions"])


if __name__ == "__main__":
    main()
