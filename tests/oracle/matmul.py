"""Oracle for tests/test_matmul.c: matmul and linear, values and gradients.

For each case KEY: the leaf inputs KEY.NAME, the output KEY.y, a random
KEY.r of y's shape and the gradients KEY.dNAME of sum(y * r). The C test
rebuilds each case's operands from the same leaves with the same views
(transposes, slices, expands), so strided operands are covered too.
"""
import torch
import torch.nn.functional as F

from common import oracle

torch.manual_seed(0)
o = oracle()


def case(key, fn, **leaves):
    xs = {n: t.clone().requires_grad_(True) for n, t in leaves.items()}
    y = fn(**xs)
    for n, t in leaves.items():
        o.put(f"{key}.{n}", t)
    o.put(f"{key}.y", y)
    r = torch.randn(y.shape)
    o.put(f"{key}.r", r)
    (y * r).sum().backward()
    for n, x in xs.items():
        o.put(f"{key}.d{n}", x.grad)


R = torch.randn

# matmul: every rank combination of torch.matmul
case("mm", lambda a, b: a @ b, a=R(3, 4), b=R(4, 5))
case("vm", lambda a, b: a @ b, a=R(4), b=R(4, 5))
case("mv", lambda a, b: a @ b, a=R(3, 4), b=R(4))
case("dot", lambda a, b: a @ b, a=R(4), b=R(4))
case("bcast", lambda a, b: a @ b, a=R(2, 1, 3, 4), b=R(5, 4, 2))
case("fold", lambda a, b: a @ b, a=R(2, 3, 4), b=R(4, 5))
case("vbatch", lambda a, b: a @ b, a=R(4), b=R(2, 4, 5))
case("batchv", lambda a, b: a @ b, a=R(2, 3, 4), b=R(4))
case("bcast_a", lambda a, b: a @ b, a=R(1, 3, 5), b=R(4, 5, 2))
case("par", lambda a, b: a @ b, a=R(8, 16, 32), b=R(8, 32, 16))
case("k0", lambda a, b: a @ b, a=R(3, 0), b=R(0, 4))
# strided operands: transposed views (sgemm "T"), slices and expands
case("at", lambda at, b: at.T @ b, at=R(4, 3), b=R(4, 5))
case("bt", lambda a, bt: a @ bt.T, a=R(3, 4), bt=R(5, 4))
case("batch_t", lambda at, bt: at.mT @ bt.mT, at=R(2, 4, 3), bt=R(2, 5, 4))
case("fold_bt", lambda a, bt: a @ bt.T, a=R(3, 2, 4), bt=R(5, 4))
case("strided", lambda x, b: x[:, ::2] @ b, x=R(3, 8), b=R(4, 5))
case("expand", lambda x, b: x.expand(2, 3, 4) @ b, x=R(3, 4), b=R(2, 4, 5))
case("perm", lambda x, b: x.permute(1, 0, 2) @ b, x=R(3, 2, 4), b=R(4, 5))
# few rows (decoding): matrix-vector kernels instead of sgemm, B row-major
# (rows scaled and added) or stored transposed (dot products); K and N not
# multiples of the kernels' 4 rows and 16 lanes; the large ones split over
# threads
case("gemv_rows", lambda a, b: a @ b, a=R(3, 37), b=R(37, 45))
case("gemv_rows_par", lambda a, b: a @ b, a=R(2, 203), b=R(203, 1001))
case("gemv_dots_par", lambda x, w, bias: F.linear(x, w, bias), x=R(4, 203), w=R(1001, 203), bias=R(1001))
case("gemv_dots", lambda x, w: F.linear(x, w), x=R(1, 1, 13), w=R(21, 13))
# B row-major of 300 x 1001 (above 2^18 elements): by blocks of 64 rows of B,
# the last one short, summed in block order; with a bias (beta 1)
case("gemv_rows_blocked", lambda a, b: a @ b, a=R(2, 300), b=R(300, 1001))
case("gemv_rows_blocked_bias", lambda x, wt, bias: F.linear(x, wt.T, bias), x=R(3, 300), wt=R(300, 1001),
     bias=R(1001))
# a transposed view's backward (tiles of the transposed plane): partial tiles, a batch dim
case("view_t", lambda at, b: at.T @ b, at=R(70, 45), b=R(70, 33))
case("perm_t", lambda x, b: x.permute(2, 0, 1) @ b, x=R(3, 37, 40), b=R(37, 5))
# 5 rows and more with a weight of 64K elements or more, on AVX-512: the
# weight-in-place kernel (wgemm.c), 12 weight rows by 32 rows of x per tile:
# rows and weight rows not multiples of either, bias (added by the kernel), a
# batch folded into rows, and B as a transposed view (Conv1D's gradient to its
# input); K in two blocks of A^T (128 x 2100 floats are over 1 MB), the bias
# added once
case("wgemm_linear", lambda x, w, bias: F.linear(x, w, bias), x=R(37, 256), w=R(263, 256), bias=R(263))
case("wgemm_kblocks_bias", lambda x, w, bias: F.linear(x, w, bias), x=R(100, 2100), w=R(37, 2100), bias=R(37))
case("wgemm_rows5", lambda x, w: F.linear(x, w), x=R(5, 250), w=R(301, 250))
case("wgemm_bt", lambda a, bt: a @ bt.T, a=R(2, 20, 256), bt=R(270, 256))
# the same with the weight stored [K, N] (Conv1D's forward, nn.Linear's
# gradient to its input): 256 rows of B per block, the last one short, 12
# rows of A by 32 columns per tile, partial in both; a Conv1D-shaped linear
# with a batch folded into rows and a bias (beta 1)
case("wgemm_kn", lambda a, b: a @ b, a=R(37, 257), b=R(257, 263))
case("wgemm_kn_bias", lambda x, wt, bias: F.linear(x, wt.T, bias), x=R(2, 20, 256), wt=R(256, 300), bias=R(300))
# long sums: K = 200
case("big", lambda a, b: a @ b, a=R(32, 200), b=R(200, 24))

# linear: x @ w^T + bias
case("linear", lambda x, w, bias: F.linear(x, w, bias), x=R(2, 3, 4), w=R(5, 4), bias=R(5))
case("linear_nobias", lambda x, w: F.linear(x, w), x=R(4), w=R(5, 4))
case("linear_xt", lambda xt, w, bias: F.linear(xt.T, w, bias), xt=R(4, 6), w=R(5, 4), bias=R(5))
case("linear_wt", lambda x, wt: F.linear(x, wt.T), x=R(6, 4), wt=R(4, 5))
case("linear_perm", lambda x, w, bias: F.linear(x.permute(1, 0, 2), w, bias), x=R(3, 2, 4), w=R(5, 4), bias=R(5))
# m*n*k = 48*96*72 is above OpenBLAS's single-thread threshold: its own threads run
case("linear_big", lambda x, w, bias: F.linear(x, w, bias), x=R(2, 24, 72), w=R(96, 72), bias=R(96))

o.save()
