"""Oracle of tests/test_trace.c: the walkthrough's tiny network
(Sequential(layer1: Linear(5, 10), layer2: Linear(10, 2))) with its weights
and input, and what each intervention of the tests gives in plain PyTorch
(forward hooks, forward pre-hooks, tensor gradient hooks; no nnsight).
Texts (log lines) are stored as uint8 bytes."""
from collections import OrderedDict

import torch

from common import oracle


def run(net, x, hooks):
    handles = [m.register_forward_pre_hook(fn) if pre else m.register_forward_hook(fn) for m, fn, pre in hooks]
    try:
        return net(x)
    finally:
        for h in handles:
            h.remove()


def main():
    o = oracle()
    torch.manual_seed(1)
    net = torch.nn.Sequential(OrderedDict([
        ("layer1", torch.nn.Linear(5, 10)),
        ("layer2", torch.nn.Linear(10, 2)),
    ])).requires_grad_(False)
    x = torch.rand((1, 5))
    for name, p in net.named_parameters():
        o.put(name, p)
    o.put("input", x)
    l1 = net.layer1(x)
    o.put("l1", l1)
    o.put("out", net(x))
    o.put("log", torch.tensor(list(f"layer1: {str(l1)}\n".encode()), dtype=torch.uint8))

    # layer1.output = layer1.output * 2 (replace): layer2 sees the new tensor.
    o.put("set.out", run(net, x, [(net.layer1, lambda m, i, out: out * 2, False)]))

    # layer1.output[:, 0:3] = -1 (in place).
    def edit(m, i, out):
        out[:, 0:3] = -1
    o.put("set_index.l1", run(net.layer1, x, [(net.layer1, edit, False)]))
    o.put("set_index.out", run(net, x, [(net.layer1, edit, False)]))

    # An edit (layer1.output doubled) under the trace's own in-place edit:
    # the edit's hook is registered first, as edits are part of the model.
    o.put("edit_then_set.out", run(net, x, [(net.layer1, lambda m, i, out: out * 2, False),
                                            (net.layer1, edit, False)]))

    # layer2.input = ones (a pre-hook replacing the input).
    ones = torch.ones(1, 10)
    o.put("input_set.out", run(net, x, [(net.layer2, lambda m, i: (ones,), True)]))

    # layer1 skipped, 0.5 everywhere as its output.
    o.put("skip.out", net.layer2(torch.full((1, 10), 0.5)))

    # Gradients with parameters that require grad: layer2's output gradient
    # doubled, layer1's output gradient read (after the doubling).
    net.requires_grad_(True)
    g = {}

    def on_layer1(m, i, out):
        out.register_hook(lambda grad: g.__setitem__("l1", grad.clone()))

    def on_layer2(m, i, out):
        out.register_hook(lambda grad: grad * 2)
    run(net, x, [(net.layer1, on_layer1, False), (net.layer2, on_layer2, False)]).sum().backward()
    o.put("grad.l1", g["l1"])
    for name, p in net.named_parameters():
        o.put(f"grad.{name}", p.grad)
    o.save()


if __name__ == "__main__":
    main()
