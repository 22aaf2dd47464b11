#!/usr/bin/python3
"""End-to-end reference for `clipn classify --json` and `clipn eval --json`.

    ref_scores.py make CHECKPOINT OUTDIR --id IMG... --ood IMG...
    ref_scores.py check OUTDIR
    ref_scores.py prompts OUTDIR            (text_classes.txt x text_templates.txt -> prompts.txt)
    ref_scores.py heads CHECKPOINT OUTDIR   (prompt_ids.txt + heads_text.safetensors)

`make` runs the independent PyTorch reference (reference_model.py, same folder) on the
images, builds class heads near the ID image features (random tiny towers give nearly
equal logits for every class otherwise: the heads are drawn near their mean direction), and writes: heads_yes.npy, heads_no.npy,
classes.txt, id.txt, ood.txt and expected.json (per-image official scores in float32 torch,
and cal_auc_fpr of zero_shot_infer.py for every score).

`check` reads classify.jsonl, eval.json and scores.csv written by the CLI into OUTDIR and
compares: per-image pred and scores against the reference (features come from two
implementations, so 1e-4 relative; measured 6e-6); eval's AUROC/FPR95 against sklearn/scipy run on the
CLI's own scores (1e-12: the metric code) and against the reference metrics (equal unless
a near-tie flips between the two feature computations, reported). Exit 1 on mismatch.
`prompts`/`heads` check `clipn head --classes --templates` against the official
merge_yes_no_feature (src/classification.py) restated on the reference model: prompts are
`template.format(class)` template-major, their ids come from `clipn tokenize` (the
tokenizer has its own parity tests), each tower's features are normalised, summed over
templates and normalised again.
Run with /usr/bin/python3 (Debian's torch, sklearn, scipy).
"""
import csv
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as ref  # noqa: E402

SCORES = ["ctw", "atd", "msp", "maxlogit", "energy", "mcm"]
N_CLASSES = 4


def make(ckpt, outdir, id_images, ood_images):
    torch.set_grad_enabled(False)
    model, cfg, _ = ref.build(ckpt)
    S = cfg["image_size"]
    images = id_images + ood_images
    readable, pixels = [], []
    for p in images:
        try:
            pixels.append(ref.load_photo(p, S))
            readable.append(p)
        except Exception:  # the CLI must skip it too
            pass
    feats = model.encode_image(torch.stack(pixels))
    g = torch.Generator().manual_seed(7)
    n_id = sum(p in id_images for p in readable)
    assert n_id > N_CLASSES
    # Random towers map every image near one direction m; heads a little off m (and no
    # heads a little off the yes heads) give mid-range probabilities and p_yes.
    m = F.normalize(F.normalize(feats, dim=-1).mean(0), dim=-1)
    def unit(n):
        return F.normalize(torch.randn(n, feats.shape[1], generator=g), dim=-1)
    yes = F.normalize(m + 0.04 * unit(N_CLASSES), dim=-1)
    no = F.normalize(yes + 0.03 * unit(N_CLASSES), dim=-1)
    sc = ref.scores(feats, yes, no)  # float32, the official arithmetic
    probs = torch.softmax(100.0 * F.normalize(feats, dim=-1) @ yes.T, -1)
    os.makedirs(outdir, exist_ok=True)
    np.save(os.path.join(outdir, "heads_yes.npy"), yes.numpy().astype(np.float32))
    np.save(os.path.join(outdir, "heads_no.npy"), no.numpy().astype(np.float32))
    classes = ["class %d" % c for c in range(N_CLASSES)]
    with open(os.path.join(outdir, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    with open(os.path.join(outdir, "id.txt"), "w") as f:
        f.write("\n".join(id_images) + "\n")
    with open(os.path.join(outdir, "ood.txt"), "w") as f:
        f.write("\n".join(ood_images) + "\n")
    per_image = {}
    for i, p in enumerate(readable):
        row = sc[i].tolist()
        per_image[p] = dict(pred=classes[int(row[0])],
                            scores=dict(zip(SCORES, row[1:7])),
                            ood=dict(ctw=bool(row[7]), atd=bool(row[8])),
                            probs=probs[i].tolist())
    metrics = {}
    is_id = np.array([p in id_images for p in readable])
    for k, name in enumerate(SCORES):
        s = sc[:, 1 + k].numpy()
        auroc, fpr = ref.auc_fpr(s[is_id], s[~is_id])
        metrics[name] = dict(auroc=auroc, fpr95=fpr)
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(dict(images=per_image, metrics=metrics, n_id=int(is_id.sum()),
                       n_ood=int((~is_id).sum()), classes=classes), f, indent=1)
    print("ref_scores: %d readable images (%d ID), %d classes -> %s"
          % (len(readable), n_id, N_CLASSES, outdir))


def close(a, b, rel, abs_tol=0.0):
    return abs(a - b) <= rel * abs(b) + abs_tol


def check(outdir):
    exp = json.load(open(os.path.join(outdir, "expected.json")))
    bad = []
    got = [json.loads(line) for line in open(os.path.join(outdir, "classify.jsonl"))]
    if sorted(g["image"] for g in got) != sorted(exp["images"]):
        bad.append("classify: images %s vs %s" % ([g["image"] for g in got], list(exp["images"])))
    for g in got:
        e = exp["images"].get(g["image"])
        if e is None:
            continue
        if g["pred"] != e["pred"]:
            bad.append("%s: pred %s vs %s" % (g["image"], g["pred"], e["pred"]))
        for k in SCORES:
            if not close(g["scores"][k], e["scores"][k], 1e-4, 1e-6):
                bad.append("%s: %s %r vs %r" % (g["image"], k, g["scores"][k], e["scores"][k]))
        for k in ("ctw", "atd"):
            if g["ood"][k] != e["ood"][k]:
                bad.append("%s: ood %s %r vs %r" % (g["image"], k, g["ood"][k], e["ood"][k]))
        top = g["top"][0]
        if top["class"] != e["pred"] or not close(top["prob"], max(e["probs"]), 1e-4, 1e-6):
            bad.append("%s: top %r" % (g["image"], top))

    ev = json.load(open(os.path.join(outdir, "eval.json")))
    if ev["n_id"] != exp["n_id"] or ev["fpr95_convention"] != "interp":
        bad.append("eval: n_id %r vs %r" % (ev["n_id"], exp["n_id"]))
    rows = list(csv.DictReader(open(os.path.join(outdir, "scores.csv"))))
    flips = []
    for k in SCORES:
        ids = np.array([float(r[k]) for r in rows if r["set"] == "id"], np.float32)
        oods = np.array([float(r[k]) for r in rows if r["set"] != "id"], np.float32)
        auroc, fpr = ref.auc_fpr(ids, oods)  # the official metric code on the CLI's scores
        m = next(iter(ev["ood"].values()))[k]
        if not (close(m["auroc"], auroc, 1e-12) and close(m["fpr95"], fpr, 1e-12, 1e-15)):
            bad.append("eval %s: %r vs sklearn/scipy on the same scores %r"
                       % (k, m, (auroc, fpr)))
        e = exp["metrics"][k]
        if not (close(m["auroc"], e["auroc"], 1e-9) and close(m["fpr95"], e["fpr95"], 1e-9, 1e-12)):
            flips.append("%s: %r vs reference %r" % (k, m, e))
    for f in flips:
        print("ref_scores: note (ranking differs between the two feature computations):", f)
    for b in bad:
        print("ref_scores: MISMATCH", b)
    print("ref_scores: %s (%d images, %d metric checks)"
          % ("FAIL" if bad else "ok", len(got), 2 * len(SCORES)))
    return 1 if bad else 0


def read_lines(path):
    with open(path, newline="") as f:  # as the CLI: CR/LF stripped, blank lines dropped
        return [l for l in f.read().splitlines() if l]


def prompts(outdir):
    classes = read_lines(os.path.join(outdir, "text_classes.txt"))
    templates = read_lines(os.path.join(outdir, "text_templates.txt"))
    with open(os.path.join(outdir, "prompts.txt"), "w") as f:
        for t in templates:
            for c in classes:
                f.write(t.format(c) + "\n")


def read_heads_file(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    data = buf[8 + n:]
    out = {}
    for name in ("heads.yes", "heads.no"):
        t = header[name]
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"])
    return header["__metadata__"], out


def heads(ckpt, outdir):
    torch.set_grad_enabled(False)
    model, cfg, _ = ref.build(ckpt)
    classes = read_lines(os.path.join(outdir, "text_classes.txt"))
    templates = read_lines(os.path.join(outdir, "text_templates.txt"))
    ids = np.loadtxt(os.path.join(outdir, "prompt_ids.txt"), dtype=np.int64, ndmin=2)
    ids = torch.from_numpy(ids).reshape(len(templates), len(classes), -1)
    yes = torch.zeros(len(classes), cfg["embed_dim"])
    no = torch.zeros(len(classes), cfg["embed_dim"])
    for i in range(len(templates)):  # merge_yes_no_feature
        yes += F.normalize(model.encode_text(ids[i]), dim=-1)
        no += F.normalize(model.encode_text(ids[i], no=True), dim=-1)
    yes, no = F.normalize(yes, dim=-1).numpy(), F.normalize(no, dim=-1).numpy()
    meta, got = read_heads_file(os.path.join(outdir, "heads_text.safetensors"))
    bad = []
    if json.loads(meta["classes"]) != classes or json.loads(meta["templates"]) != templates:
        bad.append("metadata classes/templates differ")
    for name, want in (("heads.yes", yes), ("heads.no", no)):
        err = float(np.abs(got[name] - want).max())
        print("ref_scores: %s max |C - PyTorch| = %.3g" % (name, err))
        if err > 1e-4:
            bad.append("%s differs by %.3g" % (name, err))
    for b in bad:
        print("ref_scores: MISMATCH", b)
    print("ref_scores: text heads %s (%d classes x %d templates)"
          % ("FAIL" if bad else "ok", len(classes), len(templates)))
    return 1 if bad else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "prompts":
        prompts(argv[2])
        return 0
    if len(argv) == 4 and argv[1] == "heads":
        return heads(argv[2], argv[3])
    if len(argv) >= 2 and argv[1] == "check":
        return check(argv[2])
    if len(argv) >= 4 and argv[1] == "make":
        ids, oods, cur = [], [], None
        for a in argv[4:]:
            if a in ("--id", "--ood"):
                cur = ids if a == "--id" else oods
            else:
                cur.append(a)
        make(argv[2], argv[3], ids, oods)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
