#!/usr/bin/python3
"""Independent PyTorch reference of CLIPN inference, for golden parity with libclipn.

Run with /usr/bin/python3 (Debian's torch 1.13). Written from the facts of the official
architecture (docs: /work/shared/docs/clipn-reference.md), not copied from it; checked once
against the official src/open_clip/model.py (docs/accuracy.md).

    reference_model.py CHECKPOINT OUTDIR [--seed N] [--quickgelu] [--images N]

CHECKPOINT: a torch.save file from make_checkpoint.py (--format clipn or openclip).
OUTDIR receives float32/int32 .npy files (all C order):
  pixels.npy [N,3,S,S]          image_features.npy [N,E]
  pixels_up.npy [1,3,S',S']     image_features_up.npy    (S' = S + 2P: interpolated positions)
  pixels_down.npy [1,3,S'',S''] image_features_down.npy  (S'' = S - P)
  ids.npy [K,C] int32           text_features.npy [K,E]   no_text_features.npy [K,E]
  head_ids.npy [T,NC,C] int32   heads_yes.npy [NC,E]      heads_no.npy [NC,E]
  scores.npy [N,9]: pred ctw atd msp maxlogit energy mcm ood_ctw ood_atd (images of pixels.npy)
  heads_syn_yes.npy, heads_syn_no.npy [NS,E]: synthetic heads near the image features
  scores_syn.npy [N,9]: the same scores against the synthetic heads
  metrics.npy [5,2] float64: (AUROC, FPR95) of MSP, MaxLogit, Energy, CTW, ATD on scores_syn,
                     the first half of the images as ID and the second half as OOD
  meta.json: the config and the sizes used
"""
import argparse
import collections
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). Sequences are [L, N, W]."""

    def __init__(self, width, heads, act):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential(collections.OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("act", act()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, act):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads, act) for _ in range(layers))

    def forward(self, x, mask=None):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class Vision(nn.Module):
    def __init__(self, cfg, act):
        super().__init__()
        W, P, G = cfg["vision_width"], cfg["patch_size"], cfg["image_size"] // cfg["patch_size"]
        self.conv1 = nn.Conv2d(3, W, kernel_size=P, stride=P, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(W))
        self.positional_embedding = nn.Parameter(torch.empty(G * G + 1, W))
        self.ln_pre = nn.LayerNorm(W, eps=1e-5)
        self.transformer = Transformer(W, cfg["vision_layers"], cfg["vision_heads"], act)
        self.ln_post = nn.LayerNorm(W, eps=1e-5)
        self.proj = nn.Parameter(torch.empty(W, cfg["embed_dim"]))

    def positions(self, grid):
        """The position table for a grid x grid input: the stored one, or its patch part
        resized with F.interpolate(bicubic, align_corners=False) as the official forward."""
        pos = self.positional_embedding
        g0 = int(round((pos.shape[0] - 1) ** 0.5))
        if grid == g0:
            return pos
        W = pos.shape[1]
        table = pos[1:].reshape(g0, g0, W).permute(2, 0, 1).unsqueeze(0)
        table = F.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
        table = table[0].permute(1, 2, 0).reshape(grid * grid, W)
        return torch.cat([pos[:1], table], dim=0)

    def forward(self, pixels):
        x = self.conv1(pixels)                       # [N, W, G, G]
        N, W, G = x.shape[0], x.shape[1], x.shape[2]
        x = x.reshape(N, W, G * G).permute(0, 2, 1)  # [N, G*G, W], patches row-major
        cls = self.class_embedding.expand(N, 1, W)
        x = torch.cat([cls, x], dim=1) + self.positions(G)
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIPN(nn.Module):
    """Attribute names are the checkpoint's, so load_state_dict(strict=True) checks them."""

    def __init__(self, cfg, act, no_tower=True, prompt=True):
        super().__init__()
        T, C, V, E = cfg["text_width"], cfg["context_length"], cfg["vocab_size"], cfg["embed_dim"]
        L, H = cfg["text_layers"], cfg["text_heads"]
        self.visual = Vision(cfg, act)
        self.token_embedding = nn.Embedding(V, T)
        self.positional_embedding = nn.Parameter(torch.empty(C, T))
        self.transformer = Transformer(T, L, H, act)
        self.ln_final = nn.LayerNorm(T, eps=1e-5)
        self.text_projection = nn.Parameter(torch.empty(T, E))
        self.logit_scale = nn.Parameter(torch.empty([]))
        self.no_tower = no_tower
        if no_tower:
            self.token_embedding_no = nn.Embedding(V, T)
            self.positional_embedding_no = nn.Parameter(torch.empty(C, T))
            self.transformer_no = Transformer(T, L, H, act)
            self.ln_final_no = nn.LayerNorm(T, eps=1e-5)
            self.text_projection_no = nn.Parameter(torch.empty(T, E))
            self.prompt_no = nn.Parameter(torch.empty(cfg["n_prompt_no"], C, T)) if prompt else None
        # causal: position i sees j <= i (additive -inf above the diagonal)
        self.register_buffer("causal_mask",
                             torch.full((C, C), float("-inf")).triu(1), persistent=False)

    def encode_image(self, pixels):
        return self.visual(pixels)

    def encode_text(self, ids, no=False):
        if no:
            x = self.token_embedding_no(ids) + self.positional_embedding_no
            if self.prompt_no is not None:  # inference: the mean of the learnt prompts
                x = x + self.prompt_no.mean(dim=0, keepdim=True)
            transformer, ln, proj = self.transformer_no, self.ln_final_no, self.text_projection_no
        else:
            x = self.token_embedding(ids) + self.positional_embedding
            transformer, ln, proj = self.transformer, self.ln_final, self.text_projection
        x = transformer(x.permute(1, 0, 2), self.causal_mask).permute(1, 0, 2)
        x = ln(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ proj


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu")
    sd = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    return collections.OrderedDict(
        (k[len("module."):] if k.startswith("module.") else k, v.float()) for k, v in sd.items())


def config_from_state_dict(sd):
    """Shapes tell everything but the heads: open_clip's head_width 64."""
    def count_layers(prefix):
        return len({k.split(".")[len(prefix.split("."))] for k in sd if k.startswith(prefix + ".")})
    W = sd["visual.conv1.weight"].shape[0]
    P = sd["visual.conv1.weight"].shape[-1]
    G = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    T = sd["ln_final.weight"].shape[0]
    return dict(embed_dim=sd["text_projection"].shape[1], image_size=G * P, patch_size=P,
                vision_width=W, vision_layers=count_layers("visual.transformer.resblocks"),
                vision_heads=max(1, W // 64), context_length=sd["positional_embedding"].shape[0],
                vocab_size=sd["token_embedding.weight"].shape[0], text_width=T,
                text_layers=count_layers("transformer.resblocks"), text_heads=max(1, T // 64),
                has_no_tower="ln_final_no.weight" in sd, has_prompt_no="prompt_no" in sd,
                n_prompt_no=sd["prompt_no"].shape[0] if "prompt_no" in sd else 0)


def build(path, quickgelu=False):
    sd = load_state_dict(path)
    cfg = config_from_state_dict(sd)
    model = CLIPN(cfg, QuickGELU if quickgelu else nn.GELU, cfg["has_no_tower"],
                  cfg["has_prompt_no"])
    model.load_state_dict(sd, strict=True)
    return model.eval(), cfg, sd


# ----------------------------------------------------------------------------- inputs

def make_pixels(g, n, size, photos=()):
    """Random normalised-looking pixels at a few scales, then real photos if given."""
    out = []
    for i in range(n):
        if i < len(photos):
            out.append(photos[i])
        else:
            out.append((0.5 + 0.5 * i) * torch.randn(3, size, size, generator=g))
    return torch.stack(out)


def load_photo(path, size):
    """The open_clip val transform through torchvision (informative; any pixels do)."""
    from PIL import Image
    import torchvision.transforms as T
    tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
                    T.CenterCrop(size), lambda im: im.convert("RGB"), T.ToTensor(),
                    T.Normalize((0.48145466, 0.4578275, 0.40821073),
                                (0.26862954, 0.26130258, 0.27577711))])
    return tf(Image.open(path))


def make_prompt(g, cfg, n_content, extra=()):
    """[sot, n_content random tokens, eot] padded with 0 (cut to C with eot last)."""
    V, C = cfg["vocab_size"], cfg["context_length"]
    sot, eot = V - 2, V - 1
    body = torch.randint(1, V - 2, (n_content,), generator=g).tolist()
    ids = ([sot] + body)[:C - 1] + [eot] + list(extra)
    ids = ids[:C]
    return ids + [0] * (C - len(ids))


def make_text_ids(g, cfg):
    C, eot = cfg["context_length"], cfg["vocab_size"] - 1
    rows = [make_prompt(g, cfg, n) for n in (0, 1, 3, 7, 12, 30, C - 2)]
    rows.append(make_prompt(g, cfg, C + 10))          # too long: cut, eot at C-1
    rows.append(make_prompt(g, cfg, 4, extra=[17, eot, 5]))  # two eots: the first pools
    return torch.tensor(rows, dtype=torch.int64)


# ----------------------------------------------------------------------------- scores

def scores(features, yes, no):
    """The official classification.py / zero_shot_infer.py arithmetic, per image."""
    v = F.normalize(features, dim=-1)
    logits, logits_no = 100.0 * v @ yes.T, 100.0 * v @ no.T
    p = torch.softmax(logits, -1)
    pred = logits.argmax(-1)
    yesno = torch.softmax(torch.stack([logits, logits_no], -1), -1)[:, :, 0]
    ctw = torch.gather(yesno, 1, pred.unsqueeze(-1))[:, 0]
    atd = (yesno * p).sum(1)
    msp = p.max(-1)[0]
    maxlogit = logits.max(-1)[0]
    energy = torch.logsumexp(logits, -1)
    mcm = torch.softmax(logits / 100.0 / 1.0, -1).max(-1)[0]
    ood_ctw = (1 - ctw > 0.5).float()
    ood_atd = (1 - atd > (p * yesno).max(-1)[0]).float()
    return torch.stack([pred.float(), ctw, atd, msp, maxlogit, energy, mcm, ood_ctw, ood_atd], 1)


def auc_fpr(ind, ood):
    """zero_shot_infer.py's cal_auc_fpr."""
    from sklearn import metrics
    from scipy import interpolate
    conf = np.concatenate((ind, ood))
    label = np.concatenate((np.ones_like(ind), np.zeros_like(ood)))
    auroc = metrics.roc_auc_score(label, conf)
    fpr, tpr, _ = metrics.roc_curve(label, conf, pos_label=1)
    return auroc, float(interpolate.interp1d(tpr, fpr)(0.95))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quickgelu", action="store_true")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--photo", action="append", default=[], help="image file(s) to include")
    a = ap.parse_args()

    torch.set_grad_enabled(False)
    model, cfg, _ = build(a.checkpoint, a.quickgelu)
    S, P = cfg["image_size"], cfg["patch_size"]
    g = torch.Generator().manual_seed(a.seed)
    os.makedirs(a.outdir, exist_ok=True)

    def save(name, t, dtype=np.float32):
        np.save(os.path.join(a.outdir, name + ".npy"), np.ascontiguousarray(t.numpy(), dtype))

    photos = [load_photo(p, S) for p in a.photo]
    pixels = make_pixels(g, a.images, S, photos)
    feats = model.encode_image(pixels)
    save("pixels", pixels)
    save("image_features", feats)
    for name, size in (("up", S + 2 * P), ("down", S - P)):
        px = make_pixels(g, 1, size)
        save("pixels_" + name, px)
        save("image_features_" + name, model.encode_image(px))

    ids = make_text_ids(g, cfg)
    save("ids", ids, np.int32)
    save("text_features", model.encode_text(ids))
    meta = dict(config=cfg, quickgelu=a.quickgelu, sizes=dict(up=S + 2 * P, down=S - P))
    if cfg["has_no_tower"]:
        save("no_text_features", model.encode_text(ids, no=True))
        # class heads as merge_yes_no_feature: ids [templates, classes, C]
        n_templates, n_classes = 3, 5
        head_ids = torch.tensor([[make_prompt(g, cfg, 2 + (3 * t + c) % 9)
                                  for c in range(n_classes)] for t in range(n_templates)])
        yes = sum(F.normalize(model.encode_text(head_ids[t]), dim=-1) for t in range(n_templates))
        no = sum(F.normalize(model.encode_text(head_ids[t], no=True), dim=-1)
                 for t in range(n_templates))
        yes, no = F.normalize(yes, dim=-1), F.normalize(no, dim=-1)
        save("head_ids", head_ids, np.int32)
        save("heads_yes", yes)
        save("heads_no", no)
        save("scores", scores(feats, yes, no))
        # Random towers give near-identical logits for every class (degenerate scores), so
        # the same arithmetic also runs on synthetic heads close to the image features:
        # mid-range probabilities, varied predictions.
        n_syn = min(n_classes, a.images - 1)
        yes_syn = F.normalize(feats[:n_syn] + 0.5 * yes[:n_syn].norm() * yes[:n_syn], dim=-1)
        no_syn = F.normalize(feats[1:n_syn + 1] + 0.5 * no[:n_syn].norm() * no[:n_syn], dim=-1)
        save("heads_syn_yes", yes_syn)
        save("heads_syn_no", no_syn)
        sc = scores(feats, yes_syn, no_syn)
        save("scores_syn", sc)
        half = a.images // 2
        rows = []
        for col in (3, 4, 5, 1, 2):  # MSP, MaxLogit, Energy, CTW, ATD
            s = sc[:, col].numpy().astype(np.float64)
            rows.append(auc_fpr(s[:half], s[half:]))
        np.save(os.path.join(a.outdir, "metrics.npy"), np.array(rows, dtype=np.float64))
    with open(os.path.join(a.outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("reference: wrote %s (%d images, %d prompts)" % (a.outdir, a.images, ids.shape[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
