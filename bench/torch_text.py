"""PyTorch 1.13 side of bench_text.c: the same prompts (ids written by bench_text) through
both text towers of tests/golden/reference_model.py, batch 1 and batched, then the ratios
to the C numbers of the same run. PyTorch always runs all 77 positions (the official code).
Torch keeps its default threads: on this machine set_num_threads(2) oversubscribes with
OpenBLAS and is ~3x slower. When bench_text ran with BENCH_TEXT_B1_ONLY=1 (no batched C
numbers), only batch 1 is timed.

    /usr/bin/python3 bench/torch_text.py CHECKPOINT.pt [WORKDIR]   (WORKDIR: build/bench-work)
"""
import os
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "golden"))
import reference_model  # noqa: E402

N_SINGLE = 20   # prompts timed one at a time
N_BATCH = 100   # prompts per batched call (all 1000 x 77 positions would take minutes)


def per_prompt_ms(fn, ids, batch):
    fn(ids[:batch])  # warm up
    best = 1e30
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(0, ids.shape[0], batch):
            fn(ids[i:i + batch])
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / ids.shape[0]


def main():
    ckpt = sys.argv[1]
    work = sys.argv[2] if len(sys.argv) > 2 else "build/bench-work"
    c = {}
    with open(os.path.join(work, "text_c.txt")) as f:
        for line in f:
            k, v = line.split()
            c[k] = float(v)
    n, ctx_len = int(c["n"]), int(c["context"])
    ids = np.fromfile(os.path.join(work, "text_ids.i32"), dtype=np.int32).reshape(n, ctx_len)
    ids = torch.from_numpy(ids.astype(np.int64))
    model, cfg, _ = reference_model.build(ckpt)
    print(f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()} (default), "
          f"{n} prompts of bench_text, all {ctx_len} positions")
    towers = ["yes", "no"] if cfg["has_no_tower"] else ["yes"]
    with torch.no_grad():
        for tower in towers:
            fn = (lambda x, no=(tower == "no"): model.encode_text(x, no=no))
            b1 = per_prompt_ms(fn, ids[:N_SINGLE], 1)
            c_b1 = c[f"{tower}_b1"]
            if f"{tower}_batch_shared" not in c:  # batch-1 only run
                print(f"  {tower:3s} tower: torch batch 1 {b1:.3f} ms/prompt, C {c_b1:.3f}: "
                      f"C/torch speedup {b1 / c_b1:.2f}x")
                continue
            bn = per_prompt_ms(fn, ids[:2 * N_BATCH], N_BATCH)
            c_sh = c[f"{tower}_batch_shared"]
            c_un = c[f"{tower}_batch_unshared"]
            print(f"  {tower:3s} tower: torch batch 1 {b1:.3f} ms/prompt, batch {N_BATCH} "
                  f"{bn:.3f} ms/prompt")
            print(f"      C/torch speedup: batch 1 {b1 / c_b1:.1f}x | best batched: C shared "
                  f"{bn / c_sh:.1f}x, C unshared {bn / c_un:.1f}x "
                  f"(C batch {n} vs torch batch {N_BATCH})")


if __name__ == "__main__":
    main()
