"""Oracle of tests/test_trace_ops.c: the trace's functions on values
(exp, log, topk, cat, where, cross_entropy, ..., type promotion) and module
calls on values. Each case is a Python expression that is also a glassbox
statement: PyTorch evaluates the very text the C test defines, on the same
named tensors, and records its value and, for float results, the gradients
of (out * out).sum() with respect to each float input."""
import io
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F

from common import oracle

CASES = [
    "a.exp()",
    "torch.exp(a)",
    "p.log()",
    "a.abs()",
    "-a.abs()",
    "p.sqrt()",
    "a.pow(2)",
    "p.pow(b)",
    "a.log_softmax(-1)",
    "F.log_softmax(a, dim=0)",
    "a.softmax(-1).log()",
    "a.norm(dim=1)",
    "a.norm(dim=0, keepdim=True)",
    "a.norm()",
    "a.topk(2, 1).values",
    "a.topk(2, dim=0).indices",
    "torch.topk(a, 3)[0]",
    "a.reshape(2, 6)",
    "a.reshape((6, -1))",
    "a.view(-1)",
    "a.transpose(0, 1)",
    "c.permute(2, 0, 1)",
    "a.unsqueeze(1)",
    "a.unsqueeze(0).squeeze(0)",
    "c[:, :1].squeeze()",
    "torch.cat([a, b], dim=0)",
    "torch.cat([a, b, a], 1)",
    "torch.stack([a, b], dim=1)",
    "a == b",
    "a > b",
    "a <= 0",
    "a.gt(b)",
    "ids != 7",
    "(a > b).float() * a",
    "torch.where(a > 0, a, b)",
    "torch.where(ids > 4, ids, 0)",
    "F.cross_entropy(a, t)",
    "F.cross_entropy(a[0], t[0])",
    "F.cosine_similarity(a, b, dim=1)",
    "F.cosine_similarity(c, a, dim=-1)",
    "c.sum((0, 2))",
    "c.sum(dim=(1, 2), keepdim=True)",
    "c.mean(dim=(0, 1))",
    "a.mean()",
    "(a * 3).long()",
    "ids.float() / 2",
    "ids / 2",
    "a.argmax(-1) - 432",
    "a.argmax(-1) + 0.5",
    "ids * 3 - ids",
    "ids + a[:2, :2]",
    "ids.sum()",
    "ids.abs() - 10",
    "(a[0, 0] * 2).item()",
    "c @ a.transpose(0, 1)",
    # norms of every order; z has a zero row (gradient 0 there, not NaN) and a tie for inf
    "z.norm(dim=1)",
    "z.norm(dim=1) + 1",  # a nonzero gradient reaches the zero row: PyTorch gives 0 there
    "z.norm(p=3, dim=1) + 1",
    "z.norm(p=0.5, dim=1) + 1",
    "z.norm(p=float('inf'), dim=1) + 1",
    "z.norm(p=2, dim=1, keepdim=True)",
    "z.norm(p=1, dim=1)",
    "z.norm(1, 1)",
    "z.norm(p=float('inf'), dim=1)",
    "z.norm(p=float('-inf'), dim=1)",
    "z.norm(p=0, dim=1)",
    "z.norm(p=3, dim=1, keepdim=True)",
    "z.norm(p=0.5, dim=1)",
    "z.norm(p=1.5, dim=0)",
    "z.norm(p='fro')",
    "z.norm()",
    "torch.norm(z, p=2.5, dim=(0, 1))",
    "c.norm(p=float('inf'))",
    "c.norm(p=1, dim=(0, 2))",
    "torch.linalg.vector_norm(z, ord=float('inf'), dim=1)",
    "torch.linalg.vector_norm(z, 3, 0, True)",
    "torch.linalg.vector_norm(c)",
    # integers beyond float32's 2^24 and float64's 2^53: exact, wrapping as torch
    "big.sum()",
    "big.sum(1)",
    "big.sum(dim=(0, 1), keepdim=True)",
    "big.abs()",
    "big.abs().sum(0)",
    "big.argmax(1)",
    "big.argmax(0)",
    "big.topk(2, 1).values",
    "big.topk(2, dim=0).indices",
    "torch.where(big > 0, big, 0)",
    "torch.where(big < 0, big, ids[:, :1])",
    "big @ big.transpose(0, 1)",
    "big[0] @ big[1]",
    "big * 3 - big",
    "big + 1 == big",
    "big - 1 < big",
    "big.pow(2)",
    "ids.pow(ids)",
    "big.pow(2.0)",
    "big.exp()",
    "torch.cat([big, ids], dim=1)",
    "torch.stack([big[0], big[1]], 0)",
    "big[:, 1].sum() + ids.sum()",
    "(big > 0).sum()",
    "-big",
    "-ids * 2 + big[:, :2]",
    "big.clone()",
    "big[0, 0].item()",
    "big.long()",
    "big.reshape(3, 2)",
    "big.transpose(0, 1)[1]",
    "big.unsqueeze(0).squeeze(0)",
    "big / 3",
    "big.float() - 1",
    "big - 1.5",
    "big == 9007199254740993",
    "big == big.float()",  # an integer meeting a float compares in float32
    "big + 1 > big.float()",
    "big > 16777216.5",
    # % and // (torch.remainder, torch.floor_divide): Python's, the remainder
    # taking the divisor's sign; integers exact, floats with gradients
    "-ids % 2",
    "-ids // 2",
    "ids % -2",
    "ids // -2",
    "(ids - 6) % -4",
    "(ids - 6) // -4",
    "-5 % ids",
    "5 // (ids - 6)",
    "3 * ids % 4 // 2",  # one level with * and /, left to right
    "ids - ids % 3 * 2",
    "big % 7",
    "big // 7",
    "big % -1000",
    "big // ids[:, :1]",
    "-big % ids[:, 1:]",
    "a % b",
    "a // b",
    "a % 0.5",
    "a % -0.7",
    "(a * 3) // 1",
    "ids % 2.5",
    "-ids // 2.5",
    "a // 0.3 + a % 0.3",
    "-ids % 2 == 1",
    # comparisons are bool; bools add as or, multiply as and; their sum is int64
    "(a > 0) + (b > 0)",
    "(a > 0) * (b > 0)",
    "((a > 0) + (b > 0)).sum()",
    "(a > 0).sum(1)",
    "(a > 0) + 1",
    "(a > 0) * 1.5",
    "(ids + 1) % (ids > 1)",
]

# nnsight walkthrough's "Conditional Interventions" cells, word for word
# (glassbox runs each as the statements of one trace on the tiny network).
CELLS = {
    84: """rand_int = torch.randint(low=-10, high=10, size=(1,))

with tracer.cond(rand_int % 2 == 0):
    tracer.log("Random Integer ", rand_int, " is Even")

with tracer.cond(rand_int % 2 == 1):
    tracer.log("Random Integer ", rand_int, " is Odd")
""",
    21: """non_rand_int = 8

with tracer.cond(non_rand_int > 0):
    with tracer.cond(non_rand_int % 2 == 0):
        tracer.log("Rand Int ", non_rand_int, " is Positive and Even")
""",
    85: """rand_int = torch.randint(low=-10, high=10, size=(1,))

# Since this if statement is inside the tracing context the if will
# create a conditional context and will only execute the intervention
# if this condition is met
if rand_int % 2 == 0:
    tracer.log("Random Integer ", rand_int, " is Even")

if rand_int % 2 == 1:
    tracer.log("Random Integer ", rand_int, " is Odd")
""",
    86: """rand_int = torch.randint(low=-10, high=10, size=(1,))

# Since this if statement is inside the tracing context the if will
# create a conditional context and will only execute the intervention
# if this condition is met
if rand_int % 2 == 0:
    tracer.log("Random Integer ", rand_int, " is Even")
elif rand_int % 2 == 1:
    tracer.log("Random Integer ", rand_int, " is Odd")
""",
}
# torch.manual_seed(S) before each cell: glassbox seeds each run with its trace's seed
SEEDS = [0, 1, 2, 3, 9, 2**32 + 3, 123456789012]


class Tracer:
    """nnsight's tracer as plain Python: log is print, cond is if."""

    def __init__(self, out):
        self.out = out

    def log(self, *args):
        print(*args, file=self.out)


def run_cell(text, seed):
    """The cell as plain Python after torch.manual_seed(seed): each
    `with tracer.cond(c):` becomes `if c:` (what it means), tracer.log prints."""
    out = io.StringIO()
    torch.manual_seed(seed)
    exec(re.sub(r"with tracer\.cond\((.*)\):", r"if \1:", text), {"torch": torch, "tracer": Tracer(out)})
    return out.getvalue()


# What PyTorch refuses on integer values: glassbox refuses too.
REFUSED = [
    "ids.mean()",
    "ids.mean(1)",
    "ids.mean(dim=(0, 1))",
    "ids.softmax(-1)",
    "ids.log_softmax(-1)",
    "ids.norm()",
    "F.cross_entropy(ids, t[:2])",
    "F.cosine_similarity(ids, ids, dim=1)",
    "ids.pow(-1)",
    "ids % 0",
    "ids // (ids - 5)",
    "(ids > 5) % (ids > 2)",
    "(ids > 5) // (ids > 2)",
    "(ids > 5) - (ids > 2)",
]


def main():
    o = oracle()
    torch.manual_seed(3)
    named = {
        "a": torch.randn(3, 4),
        "b": torch.randn(3, 4),
        "p": torch.rand(3, 4) + 0.5,
        "c": torch.randn(2, 3, 4),
        "t": torch.tensor([1, 0, 3]),
        "ids": torch.tensor([[5, 2], [7, 9]]),
        "z": torch.tensor([[0.0, 0, 0, 0], [1, -2, 3, -4], [2, 0, -2, 1]]),
        "big": torch.tensor([[2**53 + 1, -3, 5], [7, 2**40, -(2**60)]]),
    }
    for k, v in named.items():
        o.put(f"in.{k}", v)
    o.put("ncases", torch.tensor(len(CASES)))
    for i, expr in enumerate(CASES):
        env = {k: (v.clone().requires_grad_(True) if v.is_floating_point() else v.clone()) for k, v in named.items()}
        out = eval(expr, {"torch": torch, "F": F}, env)
        if isinstance(out, (int, float)):  # .item(): a Python number, a 0-dim tensor in glassbox
            out = torch.tensor(out, dtype=torch.float32 if isinstance(out, float) else torch.int64)
        o.put(f"case.{i}.expr", torch.tensor(list(expr.encode()), dtype=torch.uint8))
        o.put(f"case.{i}.out", out)
        grads = []
        # floor_divide records, but PyTorch has no derivative for it: no gradients then
        if out.is_floating_point() and out.requires_grad:
            try:
                (out * out).sum().backward()
            except RuntimeError as e:
                assert "floor_divide" in str(e), e
                env = {}
            for k, v in env.items():
                if v.is_floating_point() and v.grad is not None:
                    o.put(f"case.{i}.grad.{k}", v.grad)
                    grads.append(k)
        o.put(f"case.{i}.grads", torch.tensor(list(" ".join(grads).encode()), dtype=torch.uint8))

    o.put("nrefused", torch.tensor(len(REFUSED)))
    for i, expr in enumerate(REFUSED):
        try:
            eval(expr, {"torch": torch, "F": F}, dict(named))
            raise AssertionError(f"PyTorch computed {expr}")
        except RuntimeError as e:
            o.put(f"refused.{i}.expr", torch.tensor(list(expr.encode()), dtype=torch.uint8))
            o.put(f"refused.{i}.msg", torch.tensor(list(str(e).encode()), dtype=torch.uint8))

    # torch.randint after torch.manual_seed(S): the (low, high, size) form, a
    # range past 2^32 (two words a draw), the (high, size) form, in order
    o.put("nseeds", torch.tensor(len(SEEDS)))
    for i, seed in enumerate(SEEDS):
        o.put(f"seed.{i}", torch.tensor(seed))
        torch.manual_seed(seed)
        o.put(f"randint.{i}.small", torch.randint(low=-10, high=10, size=(1,)))
        o.put(f"randint.{i}.wide", torch.randint(-2**40, 2**40, (2, 3)))
        o.put(f"randint.{i}.high", torch.randint(5, (4,)))
        for k, text in CELLS.items():
            o.put(f"cell.{k}.{i}", torch.tensor(list(run_cell(text, seed).encode()), dtype=torch.uint8))
    for k, text in CELLS.items():
        o.put(f"cell.{k}.text", torch.tensor(list(text.encode()), dtype=torch.uint8))
    o.put("ncells", torch.tensor(list(CELLS)))

    # a backward through floor_divide fails
    try:
        a = named["a"].clone().requires_grad_(True)
        (a // 0.5).sum().backward()
        raise AssertionError("PyTorch differentiated floor_divide")
    except RuntimeError as e:
        o.put("floor_divide_grad.msg", torch.tensor(list(str(e).encode()), dtype=torch.uint8))

    # gather does not count negative indices from the end
    try:
        torch.gather(torch.tensor([[1.0, 3, 3], [float("nan"), 0, 2]]), 1, torch.tensor([[-1], [-1]]))
        raise AssertionError("PyTorch gathered index -1")
    except RuntimeError as e:
        o.put("gather_neg.msg", torch.tensor(list(str(e).encode()), dtype=torch.uint8))

    # Module calls on values, the walkthrough's tiny network: layer2 run on
    # twice layer1's output (the model's own layer2 still sees the original),
    # and the gradient of the call's result reaching layer1's output.
    torch.manual_seed(1)
    net = torch.nn.Sequential(OrderedDict([
        ("layer1", torch.nn.Linear(5, 10)),
        ("layer2", torch.nn.Linear(10, 2)),
    ])).requires_grad_(False)
    x = torch.rand((1, 5))
    for name, prm in net.named_parameters():
        o.put(name, prm)
    o.put("input", x)
    h = net.layer1(x).requires_grad_(True)
    y = net.layer2(h * 2)
    o.put("call.out", y)
    o.put("call.model_out", net.layer2(h))
    (y * y).sum().backward()
    o.put("call.grad", h.grad)
    o.put("call.nested", net.layer2(net.layer1(x * 3)))
    o.save()


if __name__ == "__main__":
    main()
