#!/usr/bin/python3
"""ONNX Runtime side of `make bench`, step 1: export the three CLIPN towers of
tests/golden/reference_model.py (built from the bench checkpoint) to ONNX, fp32, opset 14,
dynamic batch axis, and write PyTorch's own features for the bench inputs so that
bench/ort_bench.js can check the exported graphs against torch as well as against C.

    /usr/bin/python3 bench/ort_export.py CHECKPOINT.pt OUTDIR [--pixels P.npy] [--ids IDS.txt]

OUTDIR receives
  image.onnx       pixels float32 [B, 3, S, S] -> image_features float32 [B, E]
  text_yes.onnx    ids int64 [B, C]           -> text_features float32 [B, E]
  text_no.onnx     ids int64 [B, C]           -> text_features float32 [B, E] ("no" tower,
                   with the mean of prompt_no added as reference_model.py does)
  torch_image.npy, torch_yes.npy, torch_no.npy   torch's features of --pixels / --ids
IDS.txt is `clipn tokenize` output: one prompt per line, ids separated by spaces.
Needs only torch (torch.onnx.export writes the protobuf itself; no `onnx` package).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "golden"))
import reference_model  # noqa: E402

OPSET = 14


class ImageTower(torch.nn.Module):
    """encode_image at the model's own image size. Under tracing the grid size is a tensor
    and Vision.positions() cannot round it, so the table it returns for that size (the
    stored one) is fixed beforehand; the exported graph takes S x S pixels only."""

    def __init__(self, model, grid):
        super().__init__()
        self.model = model
        table = model.visual.positions(grid)
        model.visual.positions = lambda g: table

    def forward(self, pixels):
        return self.model.encode_image(pixels)


class TextTower(torch.nn.Module):
    def __init__(self, model, no):
        super().__init__()
        self.model, self.no = model, no

    def forward(self, ids):
        return self.model.encode_text(ids, no=self.no)


def export(module, example, input_name, output_name, path):
    t0 = time.perf_counter()
    torch.onnx.export(module, (example,), path, opset_version=OPSET, do_constant_folding=True,
                      input_names=[input_name], output_names=[output_name],
                      dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    print(f"  {os.path.basename(path)}: {os.path.getsize(path) / 1048576:.1f} MB "
          f"in {time.perf_counter() - t0:.1f} s")


def read_ids(path):
    with open(path) as f:
        rows = [[int(t) for t in line.split()] for line in f if line.strip()]
    return torch.tensor(rows, dtype=torch.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("outdir")
    ap.add_argument("--pixels", help="float32 [N,3,S,S] .npy (clipn preprocess)")
    ap.add_argument("--ids", help="clipn tokenize output, one prompt per line")
    a = ap.parse_args()

    torch.set_grad_enabled(False)
    model, cfg, sd = reference_model.build(a.checkpoint)
    del sd
    os.makedirs(a.outdir, exist_ok=True)
    S, C = cfg["image_size"], cfg["context_length"]
    print(f"torch {torch.__version__}: exporting {a.checkpoint} to {a.outdir} (opset {OPSET})")

    # Example inputs of batch 2 so that nothing batch-sized is traced as a constant 1.
    pixels = torch.zeros(2, 3, S, S)
    ids = torch.zeros(2, C, dtype=torch.int64)
    ids[:, 0], ids[:, 3] = cfg["vocab_size"] - 2, cfg["vocab_size"] - 1
    export(ImageTower(model, S // cfg["patch_size"]), pixels, "pixels", "image_features",
           os.path.join(a.outdir, "image.onnx"))
    towers = [("yes", False)] + ([("no", True)] if cfg["has_no_tower"] else [])
    for name, no in towers:
        export(TextTower(model, no), ids, "ids", "text_features",
               os.path.join(a.outdir, f"text_{name}.onnx"))

    # torch's answers on the bench inputs: ort_bench.js compares ORT with these too
    if a.pixels:
        x = torch.from_numpy(np.load(a.pixels).astype(np.float32))
        np.save(os.path.join(a.outdir, "torch_image.npy"), model.encode_image(x).numpy())
    if a.ids:
        x = read_ids(a.ids)
        for name, no in towers:
            np.save(os.path.join(a.outdir, f"torch_{name}.npy"),
                    model.encode_text(x, no=no).numpy())
    print("  torch reference features written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
