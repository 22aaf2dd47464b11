#!/usr/bin/python3
"""Seeded random checkpoints in the exact structure of the official CLIPN ones.

Run with /usr/bin/python3 (Debian's, which has torch). Stable CLI:

    make_checkpoint.py --preset PRESET --seed N --out FILE
                       [--format clipn|openclip|hf] [--no-prompt] [--plain-clip]
                       [--dtype f32|f16|bf16] [--noncontig] [--ln-outliers]
                       [--manifest FILE.json]

  --preset     vit-b-16 | vit-b-32 | small | tiny (see PRESETS below)
  --format     clipn    (default) torch.save zip of {'epoch','name','state_dict','optimizer',
                        'scaler'} (src/training/main.py of the official repo),
                        state_dict keys prefixed 'module.' as CLIPN's DDP training saves them
               openclip torch.save zip of the bare state dict (OrderedDict, no prefix);
                        implies --plain-clip (open_clip models have no `_no` tower)
               hf       Hugging Face CLIPModel safetensors (q/k/v split, projections
                        stored transposed); implies --plain-clip
  --no-prompt  hand-crafted CLIPN: no `prompt_no`
  --plain-clip plain open_clip CLIP: no `_no` tower at all
  --dtype      storage dtype of the weights (default f32)
  --noncontig  store visual.proj and text_projection(_no) as transposed (non-contiguous) views
               and the first text block's in_proj_bias at a non-zero storage offset
  --ln-outliers  the INT8 stress model: in the ln_1 and ln_2 gains of every block of every
               tower, three channels (width/7, width/2, 6*width/7) scaled x30, as the few huge
               activation channels (outlier features) of real CLIP ViTs
  --manifest   write JSON {config, tensors: {name: {shape, f32, f16, bf16}}}: names as in the
               libclipn model file, sha256 of the tensor's little-endian bytes as torch
               converts it (`.float()`, `.half()`, `.bfloat16()`). Used by the converter tests.

The same --preset/--seed always gives the same weights, whatever the --format, so an
openclip and an hf file made with one seed convert to the same model file.

Python API: `make_state_dict(cfg, seed, no_tower=True, prompt=True)` returns the
OrderedDict (official names, no 'module.' prefix, f32) for a config dict of PRESETS' form.
"""
import argparse
import collections
import hashlib
import json
import math
import os
import struct
import sys

import torch

# heads = width // 64 (open_clip head_width 64), at least 1.
PRESETS = {
    "vit-b-16": dict(embed_dim=512, image_size=224, patch_size=16, vision_width=768,
                     vision_layers=12, context_length=77, vocab_size=49408, text_width=512,
                     text_layers=12, n_prompt_no=16),
    "vit-b-32": dict(embed_dim=512, image_size=224, patch_size=32, vision_width=768,
                     vision_layers=12, context_length=77, vocab_size=49408, text_width=512,
                     text_layers=12, n_prompt_no=16),
    "small": dict(embed_dim=64, image_size=64, patch_size=16, vision_width=128,
                  vision_layers=2, context_length=77, vocab_size=49408, text_width=128,
                  text_layers=2, n_prompt_no=16),
    # For committed fixtures: small vocab and widths so the file stays ~0.5 MB.
    "tiny": dict(embed_dim=16, image_size=32, patch_size=8, vision_width=32,
                 vision_layers=2, context_length=77, vocab_size=600, text_width=32,
                 text_layers=2, n_prompt_no=4),
}
for _c in PRESETS.values():
    _c["vision_heads"] = max(1, _c["vision_width"] // 64)
    _c["text_heads"] = max(1, _c["text_width"] // 64)
    _c["vision_mlp_width"] = 4 * _c["vision_width"]
    _c["text_mlp_width"] = 4 * _c["text_width"]


def _ln(g, sd, prefix, width):
    # Non-trivial LayerNorm parameters so a wrong or swapped weight shows in the outputs.
    sd[prefix + ".weight"] = 1.0 + 0.1 * torch.randn(width, generator=g)
    sd[prefix + ".bias"] = 0.05 * torch.randn(width, generator=g)


def _transformer(g, sd, prefix, width, layers, mlp_width):
    # open_clip's init stds keep activations O(1); biases perturbed away from zero.
    attn_std = width ** -0.5
    proj_std = width ** -0.5 * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5
    for i in range(layers):
        b = "%s.resblocks.%d." % (prefix, i)
        _ln(g, sd, b + "ln_1", width)
        sd[b + "attn.in_proj_weight"] = attn_std * torch.randn(3 * width, width, generator=g)
        sd[b + "attn.in_proj_bias"] = 0.02 * torch.randn(3 * width, generator=g)
        sd[b + "attn.out_proj.weight"] = proj_std * torch.randn(width, width, generator=g)
        sd[b + "attn.out_proj.bias"] = 0.02 * torch.randn(width, generator=g)
        _ln(g, sd, b + "ln_2", width)
        sd[b + "mlp.c_fc.weight"] = fc_std * torch.randn(mlp_width, width, generator=g)
        sd[b + "mlp.c_fc.bias"] = 0.02 * torch.randn(mlp_width, generator=g)
        sd[b + "mlp.c_proj.weight"] = proj_std * torch.randn(width, mlp_width, generator=g)
        sd[b + "mlp.c_proj.bias"] = 0.02 * torch.randn(width, generator=g)


def add_ln_outliers(sd, factor=30.0):
    """Scale three channels of every ln_1 / ln_2 gain by `factor` (same channels in every
    block, as real outlier features sit in fixed dimensions of the residual stream)."""
    for k, v in sd.items():
        if k.endswith((".ln_1.weight", ".ln_2.weight")):
            w = v.shape[0]
            v = v.clone()
            for c in (w // 7, w // 2, 6 * w // 7):
                v[c] *= factor
            sd[k] = v
    return sd


def make_state_dict(cfg, seed, no_tower=True, prompt=True):
    """Official names and order (own parameters of a module first, then its children)."""
    g = torch.Generator().manual_seed(seed)
    W, P, E = cfg["vision_width"], cfg["patch_size"], cfg["embed_dim"]
    T, C, V = cfg["text_width"], cfg["context_length"], cfg["vocab_size"]
    grid = cfg["image_size"] // P
    # Draw every tower in a fixed order so --no-prompt / --plain-clip keep the other weights.
    vis = collections.OrderedDict()
    scale = W ** -0.5
    vis["visual.class_embedding"] = scale * torch.randn(W, generator=g)
    vis["visual.positional_embedding"] = scale * torch.randn(grid * grid + 1, W, generator=g)
    vis["visual.proj"] = scale * torch.randn(W, E, generator=g)
    vis["visual.conv1.weight"] = (3 * P * P) ** -0.5 * torch.randn(W, 3, P, P, generator=g)
    _ln(g, vis, "visual.ln_pre", W)
    _transformer(g, vis, "visual.transformer", W, cfg["vision_layers"], cfg["vision_mlp_width"])
    _ln(g, vis, "visual.ln_post", W)

    def text_tower(suffix):
        t = collections.OrderedDict()
        t["positional_embedding" + suffix] = 0.01 * torch.randn(C, T, generator=g)
        t["text_projection" + suffix] = T ** -0.5 * torch.randn(T, E, generator=g)
        _transformer(g, t, "transformer" + suffix, T, cfg["text_layers"], cfg["text_mlp_width"])
        t["token_embedding%s.weight" % suffix] = 0.02 * torch.randn(V, T, generator=g)
        _ln(g, t, "ln_final" + suffix, T)
        return t

    yes = text_tower("")
    no = text_tower("_no")
    prompt_no = 0.05 * torch.randn(cfg["n_prompt_no"], C, T, generator=g)
    logit_scale = torch.ones([]) * math.log(1 / 0.07)

    sd = collections.OrderedDict()
    sd["positional_embedding"] = yes.pop("positional_embedding")
    if no_tower:
        sd["positional_embedding_no"] = no.pop("positional_embedding_no")
    sd["text_projection"] = yes.pop("text_projection")
    if no_tower:
        sd["text_projection_no"] = no.pop("text_projection_no")
        if prompt:
            sd["prompt_no"] = prompt_no
    sd["logit_scale"] = logit_scale
    sd.update(vis)
    sd.update((k, v) for k, v in yes.items() if k.startswith("transformer."))
    if no_tower:
        sd.update((k, v) for k, v in no.items() if k.startswith("transformer_no."))
    sd["token_embedding.weight"] = yes["token_embedding.weight"]
    if no_tower:
        sd["token_embedding_no.weight"] = no["token_embedding_no.weight"]
    sd["ln_final.weight"], sd["ln_final.bias"] = yes["ln_final.weight"], yes["ln_final.bias"]
    if no_tower:
        sd["ln_final_no.weight"] = no["ln_final_no.weight"]
        sd["ln_final_no.bias"] = no["ln_final_no.bias"]
    return sd


def _optimizer_state(sd):
    # A real AdamW state over two parameters, one step taken, as CLIPN's training saves it.
    params = [torch.nn.Parameter(sd["logit_scale"].clone()),
              torch.nn.Parameter(sd["ln_final.weight"].clone())]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    for p in params:
        p.grad = torch.full_like(p, 0.01)
    opt.step()
    return opt.state_dict()


def _with_metadata(sd, prefix):
    # nn.Module.state_dict() returns an OrderedDict carrying `_metadata` (module versions).
    meta = collections.OrderedDict()
    meta[prefix.rstrip(".")] = {"version": 1}
    for k in sd:
        mod = k.rsplit(".", 1)[0] if "." in k else ""
        meta.setdefault(mod, {"version": 1})
    sd._metadata = meta
    return sd


def hf_state_dict(sd, cfg):
    """The same weights under Hugging Face CLIPModel names (no `_no` tower)."""
    out = collections.OrderedDict()

    def encoder(src, dst, width, layers):
        for i in range(layers):
            s, d = "%s.resblocks.%d." % (src, i), "%s.encoder.layers.%d." % (dst, i)
            q, k, v = sd[s + "attn.in_proj_weight"].split(width, dim=0)
            qb, kb, vb = sd[s + "attn.in_proj_bias"].split(width, dim=0)
            for name, w, b in (("k_proj", k, kb), ("v_proj", v, vb), ("q_proj", q, qb)):
                out[d + "self_attn.%s.weight" % name] = w.clone()
                out[d + "self_attn.%s.bias" % name] = b.clone()
            out[d + "self_attn.out_proj.weight"] = sd[s + "attn.out_proj.weight"]
            out[d + "self_attn.out_proj.bias"] = sd[s + "attn.out_proj.bias"]
            out[d + "layer_norm1.weight"] = sd[s + "ln_1.weight"]
            out[d + "layer_norm1.bias"] = sd[s + "ln_1.bias"]
            out[d + "mlp.fc1.weight"] = sd[s + "mlp.c_fc.weight"]
            out[d + "mlp.fc1.bias"] = sd[s + "mlp.c_fc.bias"]
            out[d + "mlp.fc2.weight"] = sd[s + "mlp.c_proj.weight"]
            out[d + "mlp.fc2.bias"] = sd[s + "mlp.c_proj.bias"]
            out[d + "layer_norm2.weight"] = sd[s + "ln_2.weight"]
            out[d + "layer_norm2.bias"] = sd[s + "ln_2.bias"]

    n_pos = sd["visual.positional_embedding"].shape[0]
    C = sd["positional_embedding"].shape[0]
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    out["text_model.embeddings.position_ids"] = torch.arange(C).unsqueeze(0)  # dropped
    encoder("transformer", "text_model", cfg["text_width"], cfg["text_layers"])
    out["text_model.final_layer_norm.weight"] = sd["ln_final.weight"]
    out["text_model.final_layer_norm.bias"] = sd["ln_final.bias"]
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    out["vision_model.embeddings.position_ids"] = torch.arange(n_pos).unsqueeze(0)
    out["vision_model.pre_layrnorm.weight"] = sd["visual.ln_pre.weight"]
    out["vision_model.pre_layrnorm.bias"] = sd["visual.ln_pre.bias"]
    encoder("visual.transformer", "vision_model", cfg["vision_width"], cfg["vision_layers"])
    out["vision_model.post_layernorm.weight"] = sd["visual.ln_post.weight"]
    out["vision_model.post_layernorm.bias"] = sd["visual.ln_post.bias"]
    out["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    out["logit_scale"] = sd["logit_scale"]
    return out


_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64"}


def _tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: go through int16 bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save_safetensors(tensors, path, metadata=None):
    """Plain safetensors writer (the `safetensors` package is not installed)."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    for name, t in tensors.items():
        b = _tensor_bytes(t)
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def manifest(sd, cfg):
    """What the converter must produce: libclipn names, sha256 per output dtype."""
    tensors = {}
    for name, t in sd.items():
        entry = {"shape": list(t.shape)}
        for key, dt in (("f32", torch.float32), ("f16", torch.float16),
                        ("bf16", torch.bfloat16)):
            entry[key] = hashlib.sha256(_tensor_bytes(t.to(dt))).hexdigest()
        tensors[name] = entry
    return {"config": cfg, "tensors": tensors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=["clipn", "openclip", "hf"], default="clipn")
    ap.add_argument("--no-prompt", action="store_true")
    ap.add_argument("--plain-clip", action="store_true")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--noncontig", action="store_true")
    ap.add_argument("--ln-outliers", action="store_true")
    ap.add_argument("--manifest")
    a = ap.parse_args()

    cfg = dict(PRESETS[a.preset])
    plain = a.plain_clip or a.format in ("hf", "openclip")
    prompt = not (a.no_prompt or plain)
    sd = make_state_dict(cfg, a.seed, no_tower=not plain, prompt=prompt)
    if a.ln_outliers:
        add_ln_outliers(sd)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    sd = collections.OrderedDict((k, v.to(dtype)) for k, v in sd.items())
    if a.noncontig:
        for k in ("visual.proj", "text_projection", "text_projection_no"):
            if k in sd:  # same values, column-major storage
                sd[k] = sd[k].t().contiguous().t()
        k = "transformer.resblocks.0.attn.in_proj_bias"
        sd[k] = torch.cat([torch.zeros(5, dtype=dtype), sd[k]])[5:]  # storage offset 5
    cfg.update(has_no_tower=not plain, has_prompt_no=prompt,
               n_prompt_no=cfg["n_prompt_no"] if prompt else 0)

    name = "%s_seed%d" % (a.preset, a.seed)
    if a.format == "hf":
        save_safetensors(hf_state_dict(sd, cfg), a.out, {"format": "pt"})
    elif a.format == "openclip":
        torch.save(_with_metadata(sd, ""), a.out)
    else:
        wrapped = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
        torch.save({"epoch": 10, "name": name,
                    "state_dict": _with_metadata(wrapped, "module."),
                    "optimizer": _optimizer_state(sd),
                    # CLIPN trains with `--precision amp`: GradScaler.state_dict() is saved too
                    "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                               "growth_interval": 2000, "_growth_tracker": 0}}, a.out)
    if a.manifest:
        with open(a.manifest, "w") as f:
            json.dump(manifest(sd, cfg), f, indent=1, sort_keys=True)
            f.write("\n")
    print("wrote %s (%s, %d tensors, %.1f MB)" % (a.out, a.format, len(sd),
                                                  os.path.getsize(a.out) / 1e6))


if __name__ == "__main__":
    sys.exit(main())
