"""PyTorch 2.x and ONNX Runtime from PyPI (the venv bench/run.sh makes under build/), fp32
and their own INT8, on the bench checkpoint: image tower batch 1 and 8, text tower batch 1
and 8 (ms per item, best of ROUNDS), outputs checked against fp32 PyTorch first.

    build/bench-venv/bin/python bench/venv_bench.py CHECKPOINT.pt WORKDIR [ROUNDS]

INT8 here is what each ships: torch.ao.quantization.quantize_dynamic (nn.Linear -> dynamic
int8: the MLPs; nn.MultiheadAttention's projections stay fp32 by PyTorch's design) and
onnxruntime.quantization.quantize_dynamic (MatMul/Gemm weights int8, QInt8). Each line
"RESULT name b1_ms=.. b8_ms=.. cos=.." is read by bench/run.sh.
"""
import os
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "golden"))
sys.path.insert(0, here)
import reference_model  # noqa: E402
from ort_export import ImageTower, TextTower  # noqa: E402

BATCH = 8


def best_of(fn, rounds):
    fn()  # warm up
    best = 1e30
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def min_cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def report(name, b1, b8, t1, t8, cos_img, cos_txt):
    print(f"RESULT {name} img_b1_ms={b1 * 1e3:.2f} img_b8_ms={b8 * 1e3 / BATCH:.2f} "
          f"txt_b1_ms={t1 * 1e3:.2f} txt_b8_ms={t8 * 1e3 / BATCH:.2f} "
          f"cos_img={cos_img:.6f} cos_txt={cos_txt:.6f}", flush=True)


def main():
    ckpt, work = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    os.makedirs(work, exist_ok=True)
    model, cfg, sd = reference_model.build(ckpt)
    del sd
    model.eval()
    size, C = cfg["image_size"], cfg["context_length"]
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(BATCH, 3, size, size, generator=g) * 4 - 2
    ids = torch.zeros(BATCH, C, dtype=torch.int64)
    for i in range(BATCH):  # sot, a few words, eot: like a short prompt
        n = 5 + i
        ids[i, 0] = cfg["vocab_size"] - 2
        ids[i, 1:n] = torch.randint(300, 40000, (n - 1,), generator=g)
        ids[i, n] = cfg["vocab_size"] - 1
    print(f"torch {torch.__version__} (intra-op threads {torch.get_num_threads()})", flush=True)

    def torch_side(m, name, ref=None):
        with torch.no_grad():
            img = m.encode_image(pixels).numpy()
            txt = m.encode_text(ids).numpy()
            b1 = best_of(lambda: m.encode_image(pixels[:1]), rounds)
            b8 = best_of(lambda: m.encode_image(pixels), rounds)
            t1 = best_of(lambda: m.encode_text(ids[:1]), rounds)
            t8 = best_of(lambda: m.encode_text(ids), rounds)
        ref = ref or (img, txt)
        report(name, b1, b8, t1, t8, min_cos(img, ref[0]), min_cos(txt, ref[1]))
        return img, txt

    ref = torch_side(model, "torch_fp32")
    q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    torch_side(q, "torch_int8", ref)
    del q

    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        print(f"ONNX Runtime: not importable ({e}), skipped")
        return
    print(f"onnxruntime {ort.__version__}", flush=True)
    grid = size // cfg["patch_size"]
    paths = {"image": os.path.join(work, "image.onnx"), "text": os.path.join(work, "text.onnx")}
    with torch.no_grad():
        if not os.path.exists(paths["image"]):
            torch.onnx.export(ImageTower(model, grid), (pixels[:1],), paths["image"],
                              input_names=["pixels"], output_names=["features"],
                              dynamic_axes={"pixels": {0: "b"}, "features": {0: "b"}},
                              opset_version=14)
        if not os.path.exists(paths["text"]):
            torch.onnx.export(TextTower(model, False), (ids[:1],), paths["text"],
                              input_names=["ids"], output_names=["features"],
                              dynamic_axes={"ids": {0: "b"}, "features": {0: "b"}},
                              opset_version=14)
    for kind in ("fp32", "int8"):
        p_img, p_txt = paths["image"], paths["text"]
        if kind == "int8":
            p_img, p_txt = p_img.replace(".onnx", "_int8.onnx"), p_txt.replace(".onnx", "_int8.onnx")
            for src, dst in ((paths["image"], p_img), (paths["text"], p_txt)):
                if not os.path.exists(dst):
                    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        si = ort.InferenceSession(p_img, providers=["CPUExecutionProvider"])
        st = ort.InferenceSession(p_txt, providers=["CPUExecutionProvider"])
        px, tk = pixels.numpy(), ids.numpy()
        img = si.run(None, {"pixels": px})[0]
        txt = st.run(None, {"ids": tk})[0]
        b1 = best_of(lambda: si.run(None, {"pixels": px[:1]}), rounds)
        b8 = best_of(lambda: si.run(None, {"pixels": px}), rounds)
        t1 = best_of(lambda: st.run(None, {"ids": tk[:1]}), rounds)
        t8 = best_of(lambda: st.run(None, {"ids": tk}), rounds)
        report("ort_" + kind, b1, b8, t1, t8, min_cos(img, ref[0]), min_cos(txt, ref[1]))


if __name__ == "__main__":
    main()
