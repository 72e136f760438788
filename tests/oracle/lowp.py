"""Oracle for tests/test_lowp.c: ops reading float16/bfloat16 weights as
stored (linear, matmul, embedding, layer_norm, rms_norm) with float32
activations.

For each dtype DT (bf16, f16) and case KEY: the stored weights DT.KEY.NAME
(in their own dtype), the float32 inputs DT.KEY.NAME, the output DT.KEY.y,
a random DT.KEY.r of y's shape and the gradients DT.KEY.dNAME of sum(y * r)
with respect to the float32 inputs. The reference upcasts the same stored
weights and computes in float64, rounded to float32 at the end, so the C
test compares against the exact product of what it reads (glassbox sums in
float32, in its own order). The C test rebuilds each case from the same
leaves with the same views (transposes, permutes, batch dims).

Shapes are chosen for the kernels' edges: K not a multiple of 16 or 8
(vector tails), N not a multiple of 4 or 16 (block tails), rows M from 1
(generation) through the direct kernels' limits (32 rows for row-major
weights, 16 for transposed ones) into the sgemm panel path, and products
large enough (M*N*K > 262144) to be split over threads.
"""
import torch
import torch.nn.functional as F

from common import oracle

torch.manual_seed(14)
o = oracle()
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}


def case(key, fn, weights, inputs):
    for n, t in {**weights, **inputs}.items():
        o.put(f"{key}.{n}", t)
    xs = {n: t.double().requires_grad_() for n, t in inputs.items()}
    y = fn(**xs, **{n: t.double() if t.is_floating_point() else t for n, t in weights.items()})
    r = torch.randn(y.shape)
    o.put(f"{key}.y", y.float())
    o.put(f"{key}.r", r)
    if any(t.requires_grad for t in xs.values()) and y.requires_grad:
        (y * r.double()).sum().backward()
        for n, t in xs.items():
            o.put(f"{key}.d{n}", t.grad.float())


def R(*shape):
    return torch.randn(*shape)


for dt, torch_dt in DTYPES.items():
    def W(*shape, std=0.1):
        return (torch.randn(*shape) * std).to(torch_dt)

    # linear, weight [N, K] row-major (nn.Linear): the dot kernels, then panels
    for m in (1, 2, 3, 5, 17, 32, 33, 70):
        case(f"{dt}.linear_{m}", lambda x, w, b: F.linear(x, w, b), dict(w=W(41, 37), b=W(41)), dict(x=R(m, 37)))
    # Conv1D's weight [K, N] read transposed: the axpy kernels, then panels
    for m in (1, 3, 16, 17, 40):
        case(f"{dt}.conv1d_{m}", lambda x, wt, b: F.linear(x, wt.T, b), dict(wt=W(37, 41), b=W(41)),
             dict(x=R(m, 37)))
    # strided inputs: batch dims that are permuted, a transposed x
    case(f"{dt}.linear_perm", lambda x, w, b: F.linear(x.permute(1, 0, 2), w, b), dict(w=W(9, 20), b=W(9)),
         dict(x=R(3, 2, 20)))
    case(f"{dt}.linear_xt", lambda xt, w: F.linear(xt.T, w), dict(w=W(9, 20)), dict(xt=R(20, 6)))
    case(f"{dt}.conv1d_perm", lambda x, wt: F.linear(x.permute(1, 0, 2), wt.T), dict(wt=W(20, 9)),
         dict(x=R(3, 2, 20)))
    # split over threads: 7 rows in both layouts, and panels (test_lowp.c
    # checks larger products, GEMV among them, against the float32 path)
    case(f"{dt}.rows7", lambda x, w: F.linear(x, w), dict(w=W(300, 131, std=0.08)), dict(x=R(7, 131)))
    case(f"{dt}.rows7_t", lambda x, wt: F.linear(x, wt.T), dict(wt=W(131, 300, std=0.08)), dict(x=R(7, 131)))
    case(f"{dt}.panels", lambda x, w, b: F.linear(x, w, b), dict(w=W(201, 100), b=W(201)), dict(x=R(40, 100)))
    case(f"{dt}.panels_t", lambda x, wt: F.linear(x, wt.T), dict(wt=W(100, 201)), dict(x=R(40, 100)))
    # matmul: an f32 left operand times a 2-D weight as stored; other
    # placements of the low-precision operand are converted to float32
    case(f"{dt}.mm_b", lambda a, b: a @ b, dict(b=W(37, 23)), dict(a=R(2, 5, 37)))
    case(f"{dt}.mm_vec", lambda a, b: a @ b, dict(b=W(37, 23)), dict(a=R(37)))
    case(f"{dt}.mm_a", lambda a, b: a @ b, dict(a=W(5, 37)), dict(b=R(37, 23)))
    case(f"{dt}.mm_batched", lambda a, b: a @ b, dict(b=W(2, 37, 23)), dict(a=R(2, 3, 37)))
    # the other ops a GPT-2 or Llama forward reads weights through
    case(f"{dt}.embedding", lambda w, ids: F.embedding(ids, w),
         dict(w=W(50, 37, std=1.0), ids=torch.tensor([[3, 0, 49, 3, 7], [12, 1, 1, 48, 20]])), {})
    case(f"{dt}.layer_norm", lambda x, w, b: F.layer_norm(x, (37,), w, b, 1e-5),
         dict(w=(1 + 0.3 * R(37)).to(torch_dt), b=W(37, std=0.3)), dict(x=R(4, 37)))
    case(f"{dt}.rms_norm", lambda x, w: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)),
         dict(w=(1 + 0.3 * R(37)).to(torch_dt)), dict(x=R(4, 37)))

o.save()
