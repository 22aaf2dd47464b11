"""The "yes" text tower of libclipn, and of PyTorch with --torch, on prompts of the full 77
tokens: the like-for-like text comparison with ONNX Runtime in bench/run.sh (ORT and
PyTorch always run all 77 positions; libclipn normally runs only up to each prompt's end
token, and bench_text's real prompts are ~11 positions). libclipn is called through ctypes
(build/libclipn.so); only the encode calls are timed: batch 64 and batch 1, per prompt,
best of ROUNDS after a warm-up. The prompts of a batch share only their leading tokens
(start token, a class name's first word), so C computes ~76 of the 77 positions of each.
PyTorch (tests/golden/reference_model.py, default threads as bench/torch_text.py) runs
after libclipn is freed, on the same ids.

    python3 bench/ort_text77.py LIBCLIPN.so MODEL IDS.txt [ROUNDS] [--torch CHECKPOINT.pt]
IDS.txt: `clipn tokenize` output, at least 64 prompts. ROUNDS: 3.
Last line: "X c77_ms=... c77b1_ms=... [t77_ms=... t77b1_ms=...]" for bench/run.sh.
"""
import ctypes
import os
import sys
import time

BATCH = 64
SINGLE = 8  # prompts timed one at a time


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]


class CtxOpts(ctypes.Structure):
    _fields_ = [("max_batch", ctypes.c_int), ("threads", ctypes.c_int)]


def best(fn, rounds):
    """seconds: best of rounds, after one warm-up call"""
    fn()
    b = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        b = min(b, time.perf_counter() - t0)
    return b


def torch_times(ckpt, rows, rounds):
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
    import reference_model
    torch.set_grad_enabled(False)
    model, _, sd = reference_model.build(ckpt)
    del sd
    ids = torch.tensor(rows, dtype=torch.int64)
    t64 = best(lambda: model.encode_text(ids), rounds) / BATCH
    t1 = best(lambda: [model.encode_text(ids[i:i + 1]) for i in range(SINGLE)], rounds) / SINGLE
    return t64, t1


def main():
    args = sys.argv[1:]
    ckpt = None
    if "--torch" in args:
        i = args.index("--torch")
        ckpt = args[i + 1]
        del args[i:i + 2]
    lib_path, model_path, ids_path = args[:3]
    rounds = int(args[3]) if len(args) > 3 else 3
    with open(ids_path) as f:
        rows = [[int(t) for t in line.split()] for line in f if line.strip()]
    C = len(rows[0])
    if len(rows) < BATCH or any(len(r) != C for r in rows):
        sys.exit(f"ort_c_text77: {ids_path}: need {BATCH} rows of equal length")
    rows = rows[:BATCH]
    ids = (ctypes.c_int32 * (BATCH * C))(*[t for r in rows for t in r])

    lib = ctypes.CDLL(lib_path)
    vp = ctypes.c_void_p
    lib.clipn_model_load.argtypes = [ctypes.c_char_p, vp, ctypes.POINTER(vp), ctypes.POINTER(Error)]
    lib.clipn_ctx_new.argtypes = [vp, ctypes.POINTER(CtxOpts), ctypes.POINTER(vp), ctypes.POINTER(Error)]
    lib.clipn_encode_text.argtypes = [vp, ctypes.POINTER(ctypes.c_int32), ctypes.c_int,
                                      ctypes.POINTER(ctypes.c_float), ctypes.POINTER(Error)]
    lib.clipn_ctx_free.argtypes = [vp]
    lib.clipn_model_free.argtypes = [vp]
    err, model, ctx = Error(), vp(), vp()
    opts = CtxOpts(BATCH, 0)
    if (lib.clipn_model_load(model_path.encode(), None, ctypes.byref(model), ctypes.byref(err)) or
            lib.clipn_ctx_new(model, ctypes.byref(opts), ctypes.byref(ctx), ctypes.byref(err))):
        sys.exit(f"ort_c_text77: {err.message.decode(errors='replace')}")
    out = (ctypes.c_float * (BATCH * 1024))()  # embed_dim <= 1024 for every CLIP size

    def encode(first, n):
        p = ctypes.cast(ctypes.byref(ids, 4 * first * C), ctypes.POINTER(ctypes.c_int32))
        if lib.clipn_encode_text(ctx, p, n, out, ctypes.byref(err)):
            sys.exit(f"ort_c_text77: {err.message.decode(errors='replace')}")

    t64 = best(lambda: encode(0, BATCH), rounds) / BATCH
    t1 = best(lambda: [encode(i, 1) for i in range(SINGLE)], rounds) / SINGLE
    lib.clipn_ctx_free(ctx)
    lib.clipn_model_free(model)
    print(f"C text (yes tower) at {C} positions: batch {BATCH} {t64 * 1e3:.2f} ms/prompt, "
          f"batch 1 {t1 * 1e3:.2f} ms/prompt (best of {rounds})")
    result = f"X c77_ms={t64 * 1e3:.3f} c77b1_ms={t1 * 1e3:.3f}"
    if ckpt:
        p64, p1 = torch_times(ckpt, rows, rounds)
        print(f"PyTorch text (yes tower) at {C} positions: batch {BATCH} {p64 * 1e3:.2f} ms/prompt, "
              f"batch 1 {p1 * 1e3:.2f} ms/prompt (best of {rounds})")
        result += f" t77_ms={p64 * 1e3:.3f} t77b1_ms={p1 * 1e3:.3f}"
    print(result)


if __name__ == "__main__":
    main()
