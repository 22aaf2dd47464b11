"""Write the small seed files of tests/fuzz/corpus/ (run from the repo root with
/usr/bin/python3). Model seeds are micro models (width 8, one layer, F16) so the loader
fuzzer starts from files it accepts; the rest are cut from tests/fixtures."""
import json, os, struct

import numpy as np

OUT = "tests/fuzz/corpus"
PLAIN = "tests/fixtures/model/tiny_openclip.safetensors"


def read_merges(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    t = h["tokenizer.bpe_merges"]
    lo, hi = t["data_offsets"]
    return b[8 + n + lo:8 + n + hi]


def safetensors(tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        pad = (-off) % 64
        blobs.append(b"\0" * pad)
        off += pad
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-(8 + len(h))) % 64)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def micro_model(no_tower, prompt_no):
    W, M, E, P, S, C, V = 8, 16, 4, 8, 16, 8, 516
    G = S // P
    rng = np.random.default_rng(0)
    t = {}

    def f16(name, *shape):
        t[name] = ("F16", list(shape), (rng.standard_normal(shape) * 0.1).astype("<f2").tobytes())

    def block(prefix):
        for ln in ("ln_1", "ln_2"):
            f16(f"{prefix}.{ln}.weight", W)
            f16(f"{prefix}.{ln}.bias", W)
        f16(f"{prefix}.attn.in_proj_weight", 3 * W, W)
        f16(f"{prefix}.attn.in_proj_bias", 3 * W)
        f16(f"{prefix}.attn.out_proj.weight", W, W)
        f16(f"{prefix}.attn.out_proj.bias", W)
        f16(f"{prefix}.mlp.c_fc.weight", M, W)
        f16(f"{prefix}.mlp.c_fc.bias", M)
        f16(f"{prefix}.mlp.c_proj.weight", W, M)
        f16(f"{prefix}.mlp.c_proj.bias", W)

    f16("visual.conv1.weight", W, 3, P, P)
    f16("visual.class_embedding", W)
    f16("visual.positional_embedding", G * G + 1, W)
    f16("visual.ln_pre.weight", W)
    f16("visual.ln_pre.bias", W)
    block("visual.transformer.resblocks.0")
    f16("visual.ln_post.weight", W)
    f16("visual.ln_post.bias", W)
    f16("visual.proj", W, E)
    towers = [""] + (["_no"] if no_tower else [])
    for s in towers:
        f16(f"token_embedding{s}.weight", V, W)
        f16(f"positional_embedding{s}", C, W)
        block(f"transformer{s}.resblocks.0")
        f16(f"ln_final{s}.weight", W)
        f16(f"ln_final{s}.bias", W)
        f16(f"text_projection{s}", W, E)
        if s == "":
            t["logit_scale"] = ("F32", [], struct.pack("<f", 4.6052))
    if prompt_no:
        f16("prompt_no", 2, C, W)
    merges = b"".join(l + b"\n" for l in read_merges(PLAIN).split(b"\n")[:V - 514])
    t["tokenizer.bpe_merges"] = ("U8", [len(merges)], merges)
    cfg = {"format_version": 1, "embed_dim": E, "image_size": S, "patch_size": P,
           "vision_width": W, "vision_layers": 1, "vision_heads": 2, "vision_mlp_width": M,
           "context_length": C, "vocab_size": V, "text_width": W, "text_layers": 1,
           "text_heads": 2, "text_mlp_width": M, "activation": "quickgelu", "ln_eps": 1e-5,
           "pad_id": 0, "sot_id": V - 2, "eot_id": V - 1, "pooling": "argmax",
           "has_no_tower": no_tower, "has_prompt_no": prompt_no,
           "n_prompt_no": 2 if prompt_no else 0,
           "image_mean": [0.48145466, 0.4578275, 0.40821073],
           "image_std": [0.26862954, 0.26130258, 0.27577711]}
    return safetensors(t, {"format": "libclipn", "format_version": "1",
                           "config": json.dumps(cfg), "source": "fuzz_seed"})


def heads_file(C, D, no):
    rng = np.random.default_rng(1)

    def unit_rows():  # clipn_heads_load refuses rows that are not unit vectors
        x = rng.standard_normal((C, D))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("<f4").tobytes()
    t = {"heads.yes": ("F32", [C, D], unit_rows())}
    if no:
        t["heads.no"] = ("F32", [C, D], unit_rows())
    meta = {"format": "libclipn-heads", "version": "1", "model_fingerprint": "0123456789abcdef",
            "classes": json.dumps([f"class {i}" for i in range(C)]),
            "templates": json.dumps(["a photo of a {}."])}
    return safetensors(t, meta)


def npy(arr, version=1):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (tuple(arr.shape),)
    pre = 10 if version == 1 else 12
    hdr += " " * ((-(pre + len(hdr) + 1)) % 64) + "\n"
    size = struct.pack("<H", len(hdr)) if version == 1 else struct.pack("<I", len(hdr))
    return b"\x93NUMPY" + bytes([version, 0]) + size + hdr.encode() + arr.tobytes()


def write(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data)


if __name__ == "__main__":
    write("model_load", "micro_plain.clipn", micro_model(False, False))
    write("model_load", "micro_clipn.clipn", micro_model(True, True))
    write("model_load", "micro_noprompt.clipn", micro_model(True, False))
    write("heads_load", "heads_3x4.safetensors", heads_file(3, 4, True))
    write("heads_load", "heads_yes_only.safetensors", heads_file(2, 4, False))
    write("npy", "f32_2x3.npy", npy(np.arange(6).reshape(2, 3)))
    write("npy", "f32_scalar.npy", npy(np.float32(1.5)))
    write("npy", "f32_v2_4.npy", npy(np.arange(4), version=2))
    write("npy", "f32_empty_0x4.npy", npy(np.zeros((0, 4))))
    texts = ["a photo of a cat.", "Hello, World! 123 don't", "caf\u00e9 \u00c3\u00a9 &amp; <b>x</b>",
             "\u4e2d\u6587 emoji \U0001F600  tabs\tand\nnewlines", "a" * 300]
    for i, s in enumerate(texts):
        write("tokenize", f"text_{i}.txt", s.encode())
    write("tokenize", "invalid_utf8.txt", b"abc \xff\xfe \xc3( \xed\xa0\x80 end")

    # small images in every format the decoder takes (the fixtures are too big to seed with)
    import io
    from PIL import Image
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 255, (6, 9, 3), dtype=np.uint8), "RGB")
    cases = {"rgb.png": (rgb, "PNG", {}), "rgba.png": (rgb.convert("RGBA"), "PNG", {}),
             "pal.png": (rgb.convert("P"), "PNG", {}), "gray.png": (rgb.convert("L"), "PNG", {}),
             "bilevel.png": (rgb.convert("1"), "PNG", {}),
             "interlaced.png": (rgb, "PNG", {"interlace": 1}),
             "rgb.jpg": (rgb, "JPEG", {"quality": 50}),
             "progressive.jpg": (rgb, "JPEG", {"progressive": True}),
             "gray.jpg": (rgb.convert("L"), "JPEG", {}), "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
             "pal.gif": (rgb.convert("P"), "GIF", {}), "rgb.bmp": (rgb, "BMP", {}),
             "pal.bmp": (rgb.convert("P"), "BMP", {}), "rgb.tga": (rgb, "TGA", {}),
             "rle.tga": (rgb, "TGA", {"compression": "tga_rle"}), "rgb.ppm": (rgb, "PPM", {}),
             "gray.pgm": (rgb.convert("L"), "PPM", {})}
    for name, (im, fmt, kw) in cases.items():
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        write("image", name, buf.getvalue())
    for name in ("bad_huge_100000x100000.png", "bad_text.png"):
        write("image", name, open(f"tests/fixtures/images/{name}", "rb").read())
