"""Reference CLIPN scores for tests/test_scoring.c, restating the official formulas
(src/classification.py ViT_Classifier.forward, src/zero_shot_infer.py cal_all_metric) in
float64 PyTorch on float32 inputs. Run with Debian's python:
    /usr/bin/python3 tests/scoring_ref/make_scores_fixture.py > tests/fixtures/scoring/scores_cases.txt
Output (whitespace separated):
    C D N
    C*D heads.yes floats, C*D heads.no floats (float32, "%.9g", already L2-normalised)
    then per image: D raw feature floats,
                    pred ctw atd msp maxlogit energy mcm ood_ctw ood_atd, C probs
"""
import numpy as np
import torch
import torch.nn.functional as F


def official_scores(feature, fc_yes, fc_no):
    inputs_norm = F.normalize(feature, dim=-1)
    fc_yes = F.normalize(fc_yes, dim=-1)
    fc_no = F.normalize(fc_no, dim=-1)
    logits = 100.0 * inputs_norm @ fc_yes.T
    logits_no = 100.0 * inputs_norm @ fc_no.T
    idex = torch.argmax(logits, -1).unsqueeze(-1)
    yesno = torch.cat([logits.unsqueeze(-1), logits_no.unsqueeze(-1)], -1)
    yesno = torch.softmax(yesno, dim=-1)[:, :, 0]
    ctw = torch.gather(yesno, dim=1, index=idex)[:, 0]
    prob = torch.softmax(logits, -1)
    atd = (yesno * prob).sum(1)
    msp = prob.max(-1)[0]
    maxlogit = logits.max(-1)[0]
    energy = torch.logsumexp(logits, -1)
    mcm = torch.softmax(logits / 100.0, -1).max(-1)[0]  # cos / T, T = 1
    p_no_pred = 1 - ctw
    ood_ctw = p_no_pred > 0.5
    ood_atd = (1 - atd) > (prob * yesno).max(-1)[0]
    return idex[:, 0], ctw, atd, msp, maxlogit, energy, mcm, ood_ctw, ood_atd, prob


def main():
    rng = np.random.default_rng(5)
    C, D, N = 7, 16, 24
    f32 = np.float32
    yes = rng.normal(size=(C, D))
    no = 0.6 * yes + 0.8 * rng.normal(size=(C, D))
    yes = (yes / np.linalg.norm(yes, axis=1, keepdims=True)).astype(f32)
    no = (no / np.linalg.norm(no, axis=1, keepdims=True)).astype(f32)
    feats = []
    for i in range(N):
        mix = rng.normal(size=C) * (3.0 if i % 3 == 0 else 0.3)
        f = mix @ yes + rng.normal(size=D) * (0.2 + i % 4)
        feats.append(f * 10.0 ** rng.uniform(-2, 2))
    feats = np.array(feats).astype(f32)
    feats[5] = 3 * yes[2] + 0.01 * rng.normal(size=D)  # confident, very ID
    feats[6] = 3 * no[4]                               # no-prompt wins: OOD for CTW
    feats = feats.astype(f32)
    out = official_scores(torch.from_numpy(feats).double(), torch.from_numpy(yes).double(),
                          torch.from_numpy(no).double())
    print(C, D, N)
    for v in np.r_[yes.ravel(), no.ravel()]:
        print("%.9g" % v)
    for i in range(N):
        print(" ".join("%.9g" % v for v in feats[i]))
        pred, ctw, atd, msp, ml, en, mcm, oc, oa, prob = (x[i] for x in out)
        print(int(pred), " ".join("%.17g" % float(v) for v in (ctw, atd, msp, ml, en, mcm)),
              int(oc), int(oa), " ".join("%.17g" % float(p) for p in prob))


if __name__ == "__main__":
    main()
