#!/usr/bin/python3
"""PyTorch reference for GL-MCM and NegLabel in libclipn (tests/golden/methods_parity.sh).

    ref_methods.py make CHECKPOINT OUTDIR     (after the CLI wrote pixels.npy, *_ids.txt)
    ref_methods.py check OUTDIR               (after the CLI wrote its outputs)
    ref_methods.py words WORDNET_DIR ID_CLASSES OUTDIR
                  (the WordNet rules restated -> ref_words.json, and the mining prompts
                   id_prompts.txt, noun_prompts.txt, adj_prompts.txt for `clipn tokenize`)

Restated from the official code on the model of reference_model.py (same folder):
- GL-MCM (AtsuMiyai/GL-MCM): clip/model.py ResidualAttentionBlock.forward computes, next
  to the block, y = ln_1(x) -> in_proj -> split q|k|v -> out_proj on each, v += x,
  v = v + mlp(ln_2(v)); VisionTransformer.forward keeps the last block's v, applies ln_post
  and @ proj to the patch rows. utils/detection_util.py: features / norm, softmax(cos / T)
  with T = 1, score = max global + lambda * max over patches and classes, lambda = 1.
- NegLabel (tmlr-group/NegLabel): multi_modal.py mining (0.95 torch.quantile of each
  candidate's cosines to the ID prompts, argsort ascending per part of speech, the first
  int(0.15 n) of each, nouns then adjectives) and clip_ood.py grouping (drop n % G, permute,
  reshape to G groups, per group the ID softmax mass of [pos, group] / t, mean) with
  logits 100 cos and t = 1; the permutation is libclipn's documented one (negative j in
  group j % G) instead of the official torch.randperm on CUDA.
Token ids come from `clipn tokenize` (the tokenizer has its own parity tests).
"""
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as ref  # noqa: E402

NEG_GROUPS = 4        # methods_parity.sh: clipn head --neg-groups 4 (some negatives dropped)
FRACTION, PERCENTILE = 0.4, 0.95   # clipn neg-labels --fraction 0.4 (more selected)


def glmcm_block_value(block, x):
    """The official ResidualAttentionBlock.forward value path; x is [L, N, W] (LND)."""
    y = block.ln_1(x)
    y = y.permute(1, 0, 2)
    y = F.linear(y, block.attn.in_proj_weight, block.attn.in_proj_bias)
    N, L, C = y.shape
    y = y.view(N, L, 3, C // 3).permute(2, 0, 1, 3).reshape(3 * N, L, C // 3)
    y = F.linear(y, block.attn.out_proj.weight, block.attn.out_proj.bias)
    q, k, v = y.tensor_split(3, dim=0)
    v = v.permute(1, 0, 2)
    v = v + x
    v = v + block.mlp(block.ln_2(v))
    return v


def encode_image_global_local(vis, pixels):
    """VisionTransformer.forward of GL-MCM: (global [N, E], local [N, G*G, E])."""
    x = vis.conv1(pixels)
    N, W, G = x.shape[0], x.shape[1], x.shape[2]
    x = x.reshape(N, W, G * G).permute(0, 2, 1)
    x = torch.cat([vis.class_embedding.expand(N, 1, W), x], dim=1) + vis.positions(G)
    x = vis.ln_pre(x).permute(1, 0, 2)
    for block in vis.transformer.resblocks:
        v = glmcm_block_value(block, x)
        x = block(x)
    x, v = x.permute(1, 0, 2), v.permute(1, 0, 2)
    v = vis.ln_post(v)[:, 1:]
    return vis.ln_post(x[:, 0, :]) @ vis.proj, v @ vis.proj


def glmcm_scores(glob, local, yes, T=1.0, lam=1.0):
    g = glob / glob.norm(dim=-1, keepdim=True)
    l = local / local.norm(dim=-1, keepdim=True)
    sg = F.softmax(g @ yes.T / T, dim=1)
    sl = F.softmax(l @ yes.T / T, dim=-1)
    return sg.max(dim=1)[0] + lam * sl.reshape(sl.shape[0], -1).max(dim=1)[0]


def neglabel_scores(feats, yes, neg, ngroup, t=1.0):
    v = F.normalize(feats, dim=-1)
    pos, negl = 100.0 * v @ yes.T, 100.0 * v @ neg.T
    drop = negl.shape[1] % ngroup
    if drop > 0:
        negl = negl[:, :-drop]
    n = negl.shape[1]
    idx = torch.tensor([g + ngroup * i for g in range(ngroup) for i in range(n // ngroup)])
    negs = negl.T[idx].T.reshape(pos.shape[0], ngroup, -1)
    scores = []
    for i in range(ngroup):
        full = (torch.cat([pos, negs[:, i, :]], dim=-1) / t).softmax(dim=-1)
        scores.append(full[:, :pos.shape[1]].sum(dim=-1).unsqueeze(-1))
    return torch.cat(scores, dim=-1).mean(dim=-1)


def read_ids(path):
    return torch.tensor(np.loadtxt(path, dtype=np.int64, ndmin=2))


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def unit_text(model, ids):
    out = []
    for i in range(0, ids.shape[0], 256):
        out.append(model.encode_text(ids[i:i + 256]))
    f = torch.cat(out)
    return f / f.norm(dim=-1, keepdim=True)


def make(ckpt, d):
    torch.set_grad_enabled(False)
    model, cfg, _ = ref.build(ckpt)
    pixels = torch.from_numpy(np.load(os.path.join(d, "pixels.npy")))
    glob, local = encode_image_global_local(model.visual, pixels)
    assert torch.allclose(glob, model.encode_image(pixels), rtol=1e-5, atol=1e-6)
    np.save(os.path.join(d, "ref_global.npy"), glob.numpy())
    np.save(os.path.join(d, "ref_local.npy"), local.numpy())
    # NegLabel mining on the candidate words
    id_f = unit_text(model, read_ids(os.path.join(d, "id_prompt_ids.txt")))
    sel = {}
    for part in ("noun", "adj"):
        cand = unit_text(model, read_ids(os.path.join(d, part + "_prompt_ids.txt")))
        q = torch.quantile((cand @ id_f.T).to(torch.float32), q=PERCENTILE, dim=-1)
        order = torch.argsort(q)
        keep = int(len(order) * FRACTION)
        prompts = read_lines(os.path.join(d, part + "_prompts.txt"))
        sel[part] = [(prompts[i], float(q[i])) for i in order[:keep].tolist()]
    with open(os.path.join(d, "ref_selected.json"), "w") as f:
        json.dump(sel, f, indent=1)

    # scores of the images of pixels.npy (= the photos classify reads), with the heads
    # `clipn head --templates "the nice {}"` builds: the ID prompts' features
    yes = id_f
    neg = unit_text(model, read_ids(os.path.join(d, "neg_ids.txt")))
    exp = dict(glmcm=glmcm_scores(glob, local, yes).tolist(),
               neglabel=neglabel_scores(glob, yes, neg, NEG_GROUPS).tolist(),
               neglabel_one_group=neglabel_scores(glob, yes, neg, 1).tolist())
    with open(os.path.join(d, "ref_scores.json"), "w") as f:
        json.dump(exp, f, indent=1)
    print("ref_methods: reference for %d images, %d negatives" % (pixels.shape[0], neg.shape[0]))
    return 0


def rel_rows(a, b):
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    return float((np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)).max())


def check(d):
    bad, rows = [], []

    def row(name, value, tol):
        ok = value <= tol
        rows.append("%s  %-34s %.3g (limit %.0e)" % ("PASS" if ok else "FAIL", name, value, tol))
        if not ok:
            bad.append(name)

    row("global features (rel/row)", rel_rows(np.load(os.path.join(d, "global.npy")),
                                              np.load(os.path.join(d, "ref_global.npy"))), 1e-4)
    L, R = np.load(os.path.join(d, "local.npy")), np.load(os.path.join(d, "ref_local.npy"))
    if L.shape != R.shape:
        bad.append("local shape %s vs %s" % (L.shape, R.shape))
    else:
        row("local features (rel/row)", rel_rows(L, R), 1e-4)
    exp = json.load(open(os.path.join(d, "ref_scores.json")))
    for name, key in (("classify.jsonl", "neglabel"), ("classify1.jsonl", "neglabel_one_group")):
        got = [json.loads(l) for l in open(os.path.join(d, name))]
        if len(got) != len(exp["glmcm"]):
            bad.append("%s: %d images, expected %d" % (name, len(got), len(exp["glmcm"])))
            continue
        if name == "classify.jsonl":
            row("glmcm scores (abs)", max(abs(g["scores"]["glmcm"] - e)
                                          for g, e in zip(got, exp["glmcm"])), 2e-5)
        row("%s scores (abs)" % key, max(abs(g["scores"]["neglabel"] - e)
                                         for g, e in zip(got, exp[key])), 2e-3)
    print("ref_methods: neglabel reference %s" % ["%.4f" % v for v in exp["neglabel"]])
    # selection equal up to ties: same prompts, or differing only where quantiles tie
    sel = json.load(open(os.path.join(d, "ref_selected.json")))
    got = read_lines(os.path.join(d, "neg.txt"))
    want = [p for p, _ in sel["noun"]] + [p for p, _ in sel["adj"]]
    qs = dict(sel["noun"] + sel["adj"])
    diff = [(a, b) for a, b in zip(got, want) if a != b]
    ties = all(b in qs and a in qs and abs(qs[a] - qs[b]) <= 1e-6 for a, b in diff)
    ok = len(got) == len(want) and (not diff or ties)
    rows.append("%s  %-34s %d prompts, %d differ (ties: %s)" % ("PASS" if ok else "FAIL",
                "NegLabel selection", len(got), len(diff), ties))
    if not ok:
        bad.append("selection")
    ev = json.load(open(os.path.join(d, "eval.json")))
    for k in ("glmcm", "neglabel"):
        m = next(iter(ev["ood"].values())).get(k)
        ok = m is not None and m.get("auroc") is not None and m.get("fpr95") is not None
        rows.append("%s  %-34s %r" % ("PASS" if ok else "FAIL", "eval reports " + k, m))
        if not ok:
            bad.append("eval " + k)
    header = open(os.path.join(d, "scores.csv")).readline().strip().split(",")
    ok = "glmcm" in header and "neglabel" in header
    rows.append("%s  %-34s %s" % ("PASS" if ok else "FAIL", "scores CSV columns", header[4:]))
    if not ok:
        bad.append("scores.csv")
    words = json.load(open(os.path.join(d, "ref_words.json")))
    for part, fname in (("nouns", "cli_nouns.txt"), ("adjectives", "cli_adjectives.txt")):
        g = read_lines(os.path.join(d, fname))
        ok = g == words[part]
        rows.append("%s  %-34s %d words" % ("PASS" if ok else "FAIL", "WordNet " + part, len(g)))
        if not ok:
            bad.append("wordnet " + part)
    print("\n".join(rows))
    print("ref_methods: %s" % ("FAIL: " + ", ".join(bad) if bad else "ok"))
    return 1 if bad else 0


NOUN_FILES = set(range(3, 29)) - {5, 13}   # noun.* but noun.animal, noun.food
ADJ_FILES = {0, 1, 44}                     # adj.all, adj.pert, adj.ppl


def words(wn, classes, d):
    """The WordNet rules of include/clipn.h, restated."""
    seen, out = set(), {}
    for part, fname, keep in (("nouns", "data.noun", NOUN_FILES), ("adjectives", "data.adj", ADJ_FILES)):
        lst = []
        for line in open(os.path.join(wn, fname), encoding="latin-1"):
            if line.startswith(" ") or not line.strip():
                continue
            f = line.split(" ")
            if int(f[1]) not in keep:
                continue
            w = re.sub(r"\((a|p|ip)\)$", "", f[4]).replace("_", " ").lower()
            if w and w not in seen:
                seen.add(w)
                lst.append(w)
        out[part] = lst
    with open(os.path.join(d, "ref_words.json"), "w") as f:
        json.dump(out, f, indent=1)
    for name, lst in (("id_prompts.txt", ["the nice %s" % c for c in read_lines(classes)]),
                      ("noun_prompts.txt", ["the nice %s" % w for w in out["nouns"]]),
                      ("adj_prompts.txt", ["This is a %s photo" % w for w in out["adjectives"]])):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write("".join(l + "\n" for l in lst))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "make":
        return make(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "check":
        return check(argv[1])
    if len(argv) == 4 and argv[0] == "words":
        return words(argv[1], argv[2], argv[3])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
