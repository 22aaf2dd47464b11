"""Drift of `clipn classify` / `clipn eval` at another precision against fp32 on the e2e
eval set (bench/precision.sh): top-1 changes, largest change of each score over the
images, and the AUROC / FPR95 change of each score.

    python3 bench/precision_e2e.py LABEL PRECISION DIR
DIR holds classify_fp32.jsonl, classify_P.jsonl, eval_fp32.json, eval_P.json."""
import json
import math
import sys

label, prec, d = sys.argv[1], sys.argv[2], sys.argv[3]


def rows(path):
    with open(path, encoding="utf-8") as f:
        return {r["image"]: r for r in map(json.loads, f) if r.get("image")}


a, b = rows(f"{d}/classify_fp32.jsonl"), rows(f"{d}/classify_{prec}.jsonl")
common = sorted(set(a) & set(b))
top1 = sum(a[i]["pred"] != b[i]["pred"] for i in common)
score_change = {}
for i in common:
    for k, v in a[i]["scores"].items():
        w = b[i]["scores"].get(k)
        if v is None or w is None or not math.isfinite(v) or not math.isfinite(w):
            continue
        score_change[k] = max(score_change.get(k, 0.0), abs(v - w))
with open(f"{d}/eval_fp32.json", encoding="utf-8") as f:
    ea = json.load(f)["ood"]
with open(f"{d}/eval_{prec}.json", encoding="utf-8") as f:
    eb = json.load(f)["ood"]
metric = {}
for s, per in ea.items():
    for k, m in per.items():
        for name in ("auroc", "fpr95"):
            x, y = m.get(name), eb[s][k].get(name)
            if x is None or y is None:
                continue
            metric[(k, name)] = max(metric.get((k, name), 0.0), abs(x - y))
print(f"{label:<18} {prec:<5} images {len(common):>2}  top-1 changes {top1}  "
      f"max |score change| ctw {score_change.get('ctw', float('nan')):.4f} "
      f"atd {score_change.get('atd', float('nan')):.4f} mcm {score_change.get('mcm', float('nan')):.4f}")
print(f"{'':<18} {prec:<5} AUROC / FPR95 change: " +
      "  ".join(f"{k} {metric.get((k, 'auroc'), 0):.3f}/{metric.get((k, 'fpr95'), 0):.3f}"
                for k in ("ctw", "atd", "msp", "maxlogit", "energy", "mcm", "glmcm")))
