#!/usr/bin/python3
"""Do clipn and PIL agree on truncated files?

    /usr/bin/python3 tests/image_ref/truncation.py BUILD_DIR FILE...

Cuts each file at 31 places (24 spread over the file, 7 in the last 16 bytes), runs the
official transform and `clipn preprocess` on each cut, and counts (PIL verdict, clipn
verdict) pairs; "ok-DIFF" means both accepted but the outputs differ.
"""
import collections
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

S = 224
official = Compose([Resize(S, interpolation=InterpolationMode.BICUBIC), CenterCrop(S),
                    lambda im: im.convert("RGB"), ToTensor(),
                    Normalize((0.48145466, 0.4578275, 0.40821073),
                              (0.26862954, 0.26130258, 0.27577711))])


def main():
    build, files = sys.argv[1], sys.argv[2:]
    disagree = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.npy")
        for f in files:
            data = open(f, "rb").read()
            counts, where = collections.Counter(), []
            cuts = sorted({len(data) - k for k in (1, 2, 4, 8, 12, 13, 16)} |
                          {len(data) * i // 25 for i in range(1, 25)})
            for cut in cuts:
                path = os.path.join(tmp, os.path.basename(f))
                open(path, "wb").write(data[:cut])
                try:
                    ref, pil = official(Image.open(path)).numpy(), "ok"
                except Exception:  # noqa: BLE001 (any refusal counts)
                    pil = "err"
                r = subprocess.run([os.path.join(build, "clipn"), "preprocess", "--out", out, path],
                                   capture_output=True)
                ours = "ok" if r.returncode == 0 else "err"
                if pil == ours == "ok" and not np.array_equal(np.load(out)[0], ref):
                    ours = "ok-DIFF"
                counts[(pil, ours)] += 1
                if pil != ours:
                    where.append(len(data) - cut)
            disagree += len(where)
            print(f"{os.path.basename(f):36s} {dict(counts)}"
                  + (f"  differ when cutting {where} bytes" if where else ""))
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
