"""PyTorch 1.13 side of bench_encode.c: the image tower of tests/golden/reference_model.py
on the same checkpoint, batch 1 and 8 (wall time per image, best of ROUNDS), and resident
memory after a batch. Torch keeps its default threads (1 intra-op thread here, OpenBLAS
its own pool of 2): torch.set_num_threads(2) oversubscribes and is ~3x slower.

    /usr/bin/python3 bench/torch_encode.py CHECKPOINT.pt [ROUNDS]   (ROUNDS: 5)
The last line is "RESULT key=value ..." for bench/run.sh.
"""
import gc
import os
import sys
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "golden"))
import reference_model  # noqa: E402

BATCH = 8


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def main():
    ckpt = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    model, cfg, sd = reference_model.build(ckpt)
    del sd
    gc.collect()
    file_mb = os.path.getsize(ckpt) / 1048576.0
    size = cfg["image_size"]
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(BATCH, 3, size, size, generator=g) * 4 - 2
    with torch.no_grad():
        model.encode_image(pixels)  # warm up
        rss, hwm = status_mb("VmRSS"), status_mb("VmHWM")
        best1 = best8 = 1e30
        for _ in range(rounds):
            t0 = time.perf_counter()
            model.encode_image(pixels[:1])
            best1 = min(best1, time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.encode_image(pixels)
            best8 = min(best8, (time.perf_counter() - t0) / BATCH)
    print(f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()}, "
          f"checkpoint {file_mb:.1f} MB")
    print(f"memory after a batch of {BATCH}: VmRSS {rss:.1f} MB ({rss / file_mb:.2f}x file)  "
          f"VmHWM {hwm:.1f} MB ({hwm / file_mb:.2f}x)")
    print(f"  batch 1: {best1 * 1e3:7.1f} ms/image   batch {BATCH}: {best8 * 1e3:7.1f} ms/image "
          f"(best of {rounds})")
    print(f"RESULT b1_ms={best1 * 1e3:.2f} b8_ms={best8 * 1e3:.2f} rss_mb={rss:.1f} "
          f"hwm_mb={hwm:.1f} file_mb={file_mb:.1f}")


if __name__ == "__main__":
    main()
