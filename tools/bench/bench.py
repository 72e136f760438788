"""`make bench`: runs glassbox's C benchmark and the same workloads in PyTorch,
in the same run, and prints one table.

usage: bench.py BENCH_BINARY [reps]

The C benchmark (tools/bench/bench.c) prints `info` and `row` lines; this
script times the same shapes with torch (best of `reps` after two warmup
runs, the same thread count) and prints, per workload, glassbox's rate,
PyTorch's and their ratio, then how close gb_matmul comes to calling
OpenBLAS's sgemm directly with the kernel glassbox chose.
"""
import ctypes
import subprocess
import sys
import time

BYTES = 4


def run_c(binary, reps):
    out = subprocess.run([binary, str(reps)], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench: {binary} failed ({out.returncode}): {out.stderr.strip()}")
    info, rows = {}, {}
    for line in out.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "info":
            info[f[1]] = f[2]
        elif f[0] == "row":
            rows[f[1]] = (f[2], float(f[3]), f[4])
    return info, rows


def best(fn, reps):
    for _ in range(2):
        fn()
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def torch_rows(threads, reps):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    rows = {}

    def gemm(m, k, n):
        a, b = torch.randn(m, k), torch.randn(k, n)
        flop = 2.0 * m * n * k
        rows[f"sgemm_{m}x{k}x{n}"] = flop / best(lambda: torch.matmul(a, b), reps) * 1e-9
        c = torch.empty(m, n)
        rows[f"raw_sgemm_{m}x{k}x{n}"] = flop / best(lambda: torch.matmul(a, b, out=c), reps) * 1e-9
        w = torch.randn(n, k)
        rows[f"linear_{m}x{k}x{n}"] = flop / best(lambda: F.linear(a, w), reps) * 1e-9

    gemm(1024, 1024, 1024)
    gemm(128, 768, 3072)
    n = 16 * 1024 * 1024
    a, b = torch.randn(n), torch.randn(n)
    for name, fn, arrays in (("add", lambda: a + b, 3), ("mul", lambda: a * b, 3),
                             ("gelu", lambda: F.gelu(a), 2), ("exp", lambda: torch.exp(a), 2)):
        rows[f"{name}_16M"] = arrays * n * BYTES / best(fn, reps) * 1e-9
    x = torch.randn(4096, 1024)
    w, bias = torch.randn(1024), torch.randn(1024)
    rows["softmax_4096x1024"] = 2 * x.numel() * BYTES / best(lambda: torch.softmax(x, -1), reps) * 1e-9
    rows["layer_norm_4096x1024"] = 2 * x.numel() * BYTES / best(
        lambda: F.layer_norm(x, (1024,), w, bias, 1e-5), reps) * 1e-9
    return torch.__version__, torch.get_num_threads(), rows


def torch_blas_kernel():
    """The OpenBLAS kernel PyTorch's process runs (torch links libblas.so.3)."""
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "unknown (not OpenBLAS)"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    info, gb = run_c(binary, reps)
    threads = int(info["threads"])
    version, tthreads, th = torch_rows(threads, reps)

    print(f"glassbox: OpenBLAS kernel {info['kernel']}, {threads} threads ({info['openblas']})")
    print(f"PyTorch {version}: OpenBLAS kernel {torch_blas_kernel()}, {tthreads} threads")
    print(f"best of {reps} runs after 2 warmup runs; ratio = glassbox / PyTorch (higher is better for glassbox)\n")
    head = f"{'workload':<24} {'unit':<8} {'glassbox':>10} {'PyTorch':>10} {'ratio':>7}  what (glassbox side)"
    print(head)
    print("-" * len(head))
    for name, (unit, value, what) in gb.items():
        t = th.get(name)
        ts = f"{t:10.2f}" if t else f"{'-':>10}"
        ratio = f"{value / t:7.2f}" if t else f"{'-':>7}"
        print(f"{name:<24} {unit:<8} {value:10.2f} {ts} {ratio}  {what}")
    print()
    for shape in ("1024x1024x1024", "128x768x3072"):
        mm, raw = gb.get(f"sgemm_{shape}"), gb.get(f"raw_sgemm_{shape}")
        if mm and raw:
            print(f"gb_matmul {shape}: {100.0 * mm[1] / raw[1]:.0f}% of raw cblas_sgemm with kernel {info['kernel']}")
    print("(PyTorch's raw_sgemm row is torch.matmul with out=, i.e. without allocating the result.)")


if __name__ == "__main__":
    main()
