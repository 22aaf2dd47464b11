"""PyTorch on the shapes of bench_kernels.c: F.linear (+ GELU) and attention, GFLOP/s.
Usage: torch_kernels.py [threads]   (0 or absent: all cores)"""
import os
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 and int(sys.argv[1]) > 0 else os.cpu_count()
torch.set_num_threads(threads)
torch.manual_seed(0)


def best_time(fn):
    fn()
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if time.perf_counter() - t0 > 0.04:
            break
        reps *= 2
    best = 1e30
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


shapes = [
    ("img b1 attn.in_proj", 197, 2304, 768, None),
    ("img b1 mlp.c_fc", 197, 3072, 768, "gelu"),
    ("img b1 mlp.c_proj", 197, 768, 3072, None),
    ("img b8 attn.in_proj", 1576, 2304, 768, None),
    ("img b8 mlp.c_fc", 1576, 3072, 768, "gelu"),
    ("img b8 mlp.c_proj", 1576, 768, 3072, None),
    ("txt m10 mlp.c_fc", 10, 2048, 512, "gelu"),
    ("txt m64 mlp.c_fc", 64, 2048, 512, "gelu"),
]
print(f"torch {torch.__version__}, threads {threads}")
print(f"{'F.linear (+gelu)':22s} {'M':>5s} {'N':>5s} {'K':>5s} {'GFLOP/s':>9s}")
with torch.no_grad():
    for name, m, n, k, act in shapes:
        x, w, b = torch.randn(m, k), torch.randn(n, k) * 0.05, torch.randn(n) * 0.1
        fn = (lambda: F.gelu(F.linear(x, w, b))) if act else (lambda: F.linear(x, w, b))
        print(f"{name:22s} {m:5d} {n:5d} {k:5d} {2.0 * m * n * k / best_time(fn) * 1e-9:9.1f}")
    for name, L, W, heads, causal in [("image L=197 W=768 h=12", 197, 768, 12, False),
                                      ("text L=77 W=512 h=8 causal", 77, 512, 8, True)]:
        hd = W // heads
        q, k, v = (torch.randn(heads, L, hd) for _ in range(3))
        mask = torch.full((L, L), float("-inf")).triu_(1) if causal else torch.zeros(L, L)

        def attn():  # what nn.MultiheadAttention does between its projections
            s = torch.baddbmm(mask, q * hd ** -0.5, k.transpose(1, 2))
            return torch.bmm(torch.softmax(s, dim=-1), v)

        t = best_time(attn)
        flop = 4.0 * L * L * W / (2.0 if causal else 1.0)
        print(f"attention {name:28s} {flop / t * 1e-9:9.1f} GFLOP/s")
