"""Reference AUROC / FPR95 values for tests/test_metrics.c.

Run with Debian's python (sklearn 1.2, scipy 1.10, numpy 1.24):
    /usr/bin/python3 tests/scoring_ref/make_metrics_fixture.py > tests/fixtures/scoring/metrics_cases.txt

AUROC and FPR95 (interp) are computed exactly as the official CLIPN
`src/zero_shot_infer.py::cal_auc_fpr`; FPR95 (nearest) exactly as the
Outlier-Exposure `fpr_and_fdr_at_recall` that MCM copies.
Output: for each case a header line
    case NAME N_ID N_OOD AUROC FPR95_INTERP FPR95_NEAREST
then N_ID + N_OOD float32 scores, ID first, one per line ("%.9g" round-trips float32).
"""
import numpy as np
from scipy import interpolate
from sklearn import metrics


def cal_auc_fpr(ind_conf, ood_conf):  # restated from the official zero_shot_infer.py
    conf = np.concatenate((ind_conf, ood_conf))
    ind_indicator = np.concatenate((np.ones_like(ind_conf), np.zeros_like(ood_conf)))
    auroc = metrics.roc_auc_score(ind_indicator, conf)
    fpr, tpr, _ = metrics.roc_curve(ind_indicator, conf, pos_label=1)
    fpr = float(interpolate.interp1d(tpr, fpr)(0.95))
    return auroc, fpr


def fpr_at_recall_nearest(ind_conf, ood_conf, recall_level=0.95):
    # the Outlier Exposure / MCM fpr_and_fdr_at_recall, ID = positive
    y_score = np.concatenate((ind_conf, ood_conf))
    y_true = np.concatenate((np.ones(len(ind_conf), bool), np.zeros(len(ood_conf), bool)))
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    distinct = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / np.sum(np.logical_not(y_true))


def cases():
    rng = np.random.default_rng(20231027)
    f = np.float32
    yield "random", rng.normal(1.0, 1.0, 997).astype(f), rng.normal(0.0, 1.0, 1503).astype(f)
    yield "heavy_ties", rng.integers(0, 6, 800).astype(f), rng.integers(0, 4, 600).astype(f)
    yield "binary_ties", rng.integers(0, 2, 300).astype(f), rng.integers(0, 2, 300).astype(f)
    yield "perfect", rng.uniform(2, 3, 200).astype(f), rng.uniform(0, 1, 100).astype(f)
    yield "reversed", rng.uniform(0, 1, 150).astype(f), rng.uniform(2, 3, 250).astype(f)
    yield "all_equal", np.full(40, 0.5, f), np.full(60, 0.5, f)
    yield "tiny_1_1", np.array([0.3], f), np.array([0.7], f)
    yield "tiny_1_2", np.array([0.5], f), np.array([0.5, 0.1], f)
    yield "tiny_2_1", np.array([0.2, 0.9], f), np.array([0.5], f)
    yield "tiny_3_3", np.array([0.1, 0.4, 0.8], f), np.array([0.35, 0.4, 0.05], f)
    # tpr hits exactly 0.95 on a horizontal run of the ROC curve (19/20 of ID above a
    # block of OOD): np.interp returns the fpr at the LAST point with tpr == 0.95
    idx = np.r_[np.linspace(10, 20, 19), [0.0]].astype(f)
    yield "tpr_095_run", idx, np.r_[np.linspace(1, 5, 30), np.linspace(12, 15, 7)].astype(f)
    yield "tpr_095_ties", np.r_[np.repeat(np.arange(10, 29, dtype=f), 5), np.zeros(5, f)], \
        np.r_[np.arange(1, 20, dtype=f), np.full(4, 15, f)]
    # probabilities near 1 in float32 (ctw-like scores): many exact ties at 1.0
    yield "saturated", np.minimum(f(1), (1 - rng.exponential(1e-7, 500)).astype(f)), \
        np.minimum(f(1), (1 - rng.exponential(1e-5, 400)).astype(f))
    yield "negative_zero", np.array([0.0, -0.0, 1.0, -1.0], f), np.array([-0.0, 0.0, -1.0, 0.5], f)
    yield "large", rng.normal(0.7, 1.0, 12000).astype(f), rng.logistic(0.0, 0.6, 9000).astype(f)


def main():
    for name, i, o in cases():
        auroc, fpr_i = cal_auc_fpr(i, o)
        fpr_n = fpr_at_recall_nearest(i, o)
        print("case %s %d %d %.17g %.17g %.17g" % (name, len(i), len(o), auroc, fpr_i, fpr_n))
        for v in np.r_[i, o]:
            print("%.9g" % float(v))


if __name__ == "__main__":
    main()
