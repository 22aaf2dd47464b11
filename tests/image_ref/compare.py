#!/usr/bin/python3
"""Measure clipn preprocess against the official transform, per image.

    /usr/bin/python3 tests/image_ref/compare.py [BUILD_DIR] [IMAGE...]

Runs BUILD_DIR/clipn preprocess (default build/) on the fixtures (or the given images) and
prints, per image, the largest difference in 8-bit levels and the fraction of identical
values against torchvision + PIL applied to the same file.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

S = 224
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
official = Compose([Resize(S, interpolation=InterpolationMode.BICUBIC), CenterCrop(S),
                    lambda im: im.convert("RGB"), ToTensor(), Normalize(MEAN, STD)])


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    files = sys.argv[2:] or sorted(glob.glob("tests/fixtures/images/photo_*") +
                                   glob.glob("tests/fixtures/images/edge_*"))
    level = np.array(STD, dtype=np.float64)[:, None, None] * 255.0
    worst, total_same, total = 0.0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            out = os.path.join(tmp, "x.npy")
            r = subprocess.run([os.path.join(build, "clipn"), "preprocess", "--size", str(S),
                                "--out", out, f], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{os.path.basename(f):40s} FAILED: {r.stderr.strip()}")
                worst = float("inf")
                continue
            got = np.load(out)[0].astype(np.float64)
            ref = official(Image.open(f)).numpy().astype(np.float64)
            diff = np.abs(got - ref) * level  # in 8-bit levels
            same = int(np.sum(got == ref))
            worst = max(worst, diff.max())
            total_same += same
            total += ref.size
            print(f"{os.path.basename(f):40s} max {diff.max():6.3f} levels  "
                  f"identical {100.0 * same / ref.size:8.4f}%")
    print(f"ALL: max {worst:.3f} levels, identical {100.0 * total_same / max(total, 1):.4f}%")
    return 0 if worst <= 1.0001 and total_same >= 0.999 * total else 1


if __name__ == "__main__":
    sys.exit(main())
