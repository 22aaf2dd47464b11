#!/usr/bin/python3
"""Generate the image fixtures and their reference outputs from the official transform.

Run from the repository root with Debian's python (python3-pil 9.4, python3-torchvision 0.14):
    /usr/bin/python3 tests/image_ref/make_refs.py
Writes tests/fixtures/images/<name> (inputs), tests/fixtures/images/ref/<name>.png (the
official Resize(224, BICUBIC) -> CenterCrop(224) -> convert('RGB') result as an 8-bit RGB
PNG), ref/manifest.txt and ref/normalize.f32 (ToTensor + Normalize of every 8-bit level).
Normalisation is a fixed per-level formula, so storing 8-bit crops loses nothing; the
script checks that claim against the full Compose for every image.
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

S = 224
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
OUT = "tests/fixtures/images"
REF = OUT + "/ref"
SKI = "/usr/lib/python3/dist-packages/skimage/data/"
SKL = "/usr/lib/python3/dist-packages/sklearn/datasets/images/"

# Exactly the official open_clip validation transform (src/open_clip/transform.py).
official = Compose([Resize(S, interpolation=InterpolationMode.BICUBIC), CenterCrop(S),
                    lambda im: im.convert("RGB"), ToTensor(), Normalize(MEAN, STD)])
crop_only = Compose([Resize(S, interpolation=InterpolationMode.BICUBIC), CenterCrop(S),
                     lambda im: im.convert("RGB")])


def shrink(im, longest):
    w, h = im.size
    if max(w, h) <= longest:
        return im
    f = longest / max(w, h)
    return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS)


def save(im, name, **kw):
    im.save(os.path.join(OUT, name), **kw)
    return name


# Photos whose whole reference crop is committed; the others are checked by a hash of
# the 224x224x3 crop (they must match bit for bit) to keep the fixtures small.
FULL_REF_PHOTOS = {"photo_china_q90.jpg", "photo_motorcycle_progressive.jpg", "photo_camera_gray.jpg"}


EXTRA_SIZES = [("photo_china_q90.jpg", 336), ("photo_hubble_portrait.jpg", 97),
               ("edge_rgba.png", 301), ("edge_palette.png", 150), ("edge_gray16.png", 64)]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def write_png(name, w, h, depth, color, raw, row_bytes=None, palette=None, interlace=False):
    """A PNG from raw big-endian samples (filter 0 on every row). interlace: Adam7, for
    8-bit samples only."""
    if row_bytes is None:
        row_bytes = len(raw) // h
    if interlace:
        px = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, -1)
        rows = b""
        for x0, y0, dx, dy in ADAM7:
            sub = px[y0::dy, x0::dx]
            if sub.size:
                rows += b"".join(b"\0" + r.tobytes() for r in sub)
    else:
        rows = b"".join(b"\0" + raw[y * row_bytes:(y + 1) * row_bytes] for y in range(h))
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, int(interlace)))
            + (png_chunk(b"PLTE", palette) if palette else b"")
            + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b""))
    open(os.path.join(OUT, name), "wb").write(data)
    return name


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def make_fixtures():
    ok = []
    ski = lambda n: Image.open(SKI + n)
    china = Image.open(SKL + "china.jpg")
    flower = Image.open(SKL + "flower.jpg")
    astro = ski("astronaut.png")
    coffee = ski("coffee.png")
    chelsea = ski("chelsea.png")

    # -- real photographs (re-encoded small, various encoder settings)
    ok.append(save(shrink(china, 480), "photo_china_q90.jpg", quality=90))
    ok.append(save(shrink(flower, 400), "photo_flower_q75_444.jpg", quality=75, subsampling=0))
    ok.append(save(shrink(astro, 384), "photo_astronaut_q85_420.jpg", quality=85, subsampling=2))
    ok.append(save(shrink(coffee, 420), "photo_coffee_q92_422.jpg", quality=92, subsampling=1))
    ok.append(save(shrink(chelsea, 451), "photo_chelsea_q80.jpg", quality=80))
    ok.append(save(shrink(ski("motorcycle_left.png"), 400), "photo_motorcycle_progressive.jpg",
                   quality=85, progressive=True))
    ok.append(save(shrink(ski("motorcycle_right.png").crop((100, 50, 500, 450)), 300),
                   "photo_motorcycle_square_q95.jpg", quality=95))
    ok.append(save(ski("hubble_deep_field.jpg").crop((100, 100, 460, 700)),
                   "photo_hubble_portrait.jpg", quality=88))
    ok.append(save(shrink(ski("retina.jpg"), 360), "photo_retina.jpg", quality=80, optimize=True))
    ok.append(save(shrink(ski("rocket.jpg"), 320).transpose(Image.ROTATE_90),
                   "photo_rocket_portrait.jpg", quality=85))
    ok.append(save(shrink(ski("camera.png"), 300), "photo_camera_gray.jpg", quality=90))
    ok.append(save(shrink(ski("ihc.png"), 350), "photo_ihc_q70.jpg", quality=70))
    ok.append(save(shrink(ski("grass.png"), 240), "photo_grass_gray.png", optimize=True))
    ok.append(save(shrink(ski("coins.png"), 303), "photo_coins_gray.png", optimize=True))
    ok.append(save(shrink(ski("moon.png"), 256), "photo_moon_gray.png", optimize=True))
    ok.append(save(astro.crop((150, 20, 400, 260)), "photo_astronaut_face.jpg", quality=90))
    ok.append(save(chelsea.crop((120, 20, 360, 280)), "photo_chelsea_crop.png", optimize=True))
    ok.append(save(shrink(china.crop((200, 60, 640, 427)), 300), "photo_china_progressive.jpg",
                   quality=90, progressive=True))
    ok.append(save(flower.crop((0, 0, 260, 427)), "photo_flower_tall_q60.jpg", quality=60))
    ok.append(save(shrink(coffee.crop((0, 100, 600, 400)), 500), "photo_coffee_wide.jpg",
                   quality=85))
    ok.append(save(shrink(ski("gravel.png"), 150).convert("RGB"), "photo_gravel.bmp"))
    ok.append(save(shrink(ski("brick.png"), 250), "photo_brick_gray.jpg", quality=85))

    # -- edge cases (photo content where it matters)
    ok.append(save(astro.crop((200, 200, 201, 201)), "edge_1x1.png"))
    ok.append(save(astro.crop((200, 200, 202, 203)), "edge_2x3.png"))
    ok.append(save(astro.resize((40, 1500), Image.LANCZOS), "edge_40x1500.jpg", quality=85))
    ok.append(save(china.resize((997, 61), Image.LANCZOS), "edge_997x61.jpg", quality=90))
    ok.append(save(chelsea.crop((100, 30, 324, 254)), "edge_224x224.jpg", quality=85))
    ok.append(save(coffee.resize((100, 150), Image.LANCZOS), "edge_100x150_upscale.jpg",
                   quality=90))
    ok.append(save(astro.crop((0, 0, 225, 300)), "edge_225x300.jpg", quality=85))
    ok.append(save(astro.crop((50, 50, 350, 224 + 50)), "edge_300x224_width_only.jpg", quality=85))
    ok.append(save(shrink(chelsea, 300).convert("L"), "edge_gray.png"))
    la = shrink(chelsea, 300).convert("LA")
    la.putalpha(Image.linear_gradient("L").resize(la.size))
    ok.append(save(la, "edge_gray_alpha.png"))
    rgba = shrink(coffee, 200).convert("RGBA")
    a = Image.radial_gradient("L").resize(rgba.size)
    rgba.putalpha(a)
    ok.append(save(rgba, "edge_rgba.png"))
    pal = shrink(astro, 300).quantize(200)
    ok.append(save(pal, "edge_palette.png"))
    palt = shrink(chelsea, 280).quantize(64)
    ok.append(save(palt, "edge_palette_trns.png", transparency=5))
    g16 = (np.asarray(shrink(ski("camera.png"), 200), dtype=np.uint16) * 257 // 3)
    ok.append(save(Image.fromarray(g16.astype(np.uint16), "I;16"), "edge_gray16.png"))
    ok.append(save(shrink(ski("page.png"), 300).convert("1"), "edge_bilevel.png"))
    ok.append(save(shrink(coffee, 150), "edge_rgb.bmp"))
    ok.append(save(shrink(astro, 200).quantize(256), "edge_palette.bmp"))
    ok.append(save(shrink(chelsea, 260).quantize(128), "edge_palette.gif"))
    ok.append(save(shrink(astro, 240).quantize(100), "edge_palette_trns.gif", transparency=3))
    ok.append(save(shrink(coffee, 160), "edge_rgb.tga"))
    ok.append(save(shrink(chelsea, 160), "edge_rgb_rle.tga", compression="tga_rle"))
    ok.append(save(shrink(chelsea, 150), "edge_rgb.ppm"))
    ok.append(save(shrink(ski("camera.png"), 150), "edge_gray.pgm"))
    ok.append(save(shrink(flower, 300).convert("CMYK"), "edge_cmyk.jpg", quality=90))

    # PNG variants PIL cannot write: 16-bit colour (PIL keeps the high byte), low bit depths
    small = np.asarray(shrink(coffee, 100), dtype=np.uint16)
    h, w = small.shape[:2]
    wide = small * 257 + (np.arange(w, dtype=np.uint16)[None, :, None] * 7 % 256)
    alpha = (np.arange(h * w, dtype=np.uint16).reshape(h, w, 1) * 97) % 65536
    ok.append(write_png("edge_rgb16.png", w, h, 16, 2, wide.astype(">u2").tobytes()))
    ok.append(write_png("edge_rgba16.png", w, h, 16, 6,
                        np.concatenate([wide, alpha], axis=2).astype(">u2").tobytes()))
    gray4 = np.asarray(shrink(chelsea, 120).convert("L"), dtype=np.uint8) >> 4
    h, w = gray4.shape
    packed = b"".join(bytes((row[2 * i] << 4) | (row[2 * i + 1] if 2 * i + 1 < w else 0)
                            for i in range((w + 1) // 2)) for row in gray4)
    ok.append(write_png("edge_gray4.png", w, h, 4, 0, packed, row_bytes=(w + 1) // 2))

    ok.append(write_png("edge_interlaced.png", *shrink(chelsea, 120).size, 8, 2,
                        shrink(chelsea, 120).tobytes(), interlace=True))

    # modes decided by palettes and header fields (PIL reads these back as L, 1, RGB, P)
    ok.append(save(shrink(ski("camera.png"), 110), "edge_gray.bmp"))
    ok.append(save(shrink(ski("page.png"), 110).convert("1"), "edge_bilevel.bmp"))
    ok.append(save(shrink(coffee, 100).convert("RGBA"), "edge_rgba32.bmp"))  # read as RGB
    ok.append(save(shrink(ski("camera.png"), 110), "edge_gray.gif", optimize=False))  # ramp: L
    ok.append(save(shrink(ski("camera.png"), 100), "edge_gray_optimized.gif"))  # P
    ok.append(save(shrink(ski("camera.png"), 110), "edge_gray.tga"))
    ok.append(save(shrink(astro, 120).quantize(64), "edge_palette.tga"))
    ok.append(save(la.resize((80, 53)), "edge_gray_alpha.tga"))
    ok.append(save(rgba.resize((80, 53)), "edge_rgba_rle.tga", compression="tga_rle"))
    # top-down BMPs (negative height: rows stored first to last), which PIL opens
    ok.append(bmp_top_down("edge_rgb.bmp", "edge_rgb_top_down.bmp"))
    ok.append(bmp_top_down("edge_gray.bmp", "edge_gray_top_down.bmp"))

    # -- files that must be refused
    bad = []
    with open(os.path.join(OUT, "bad_empty.jpg"), "wb"):
        pass
    bad.append("bad_empty.jpg")
    data = open(os.path.join(OUT, "photo_china_q90.jpg"), "rb").read()
    open(os.path.join(OUT, "bad_truncated.jpg"), "wb").write(data[: len(data) // 3])
    bad.append("bad_truncated.jpg")
    data = open(os.path.join(OUT, "edge_gray.png"), "rb").read()
    open(os.path.join(OUT, "bad_truncated.png"), "wb").write(data[: len(data) // 2])
    bad.append("bad_truncated.png")
    open(os.path.join(OUT, "bad_text.png"), "wb").write(b"this is not an image\n")
    bad.append("bad_text.png")
    huge = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    open(os.path.join(OUT, "bad_huge_100000x100000.png"), "wb").write(huge)
    bad.append("bad_huge_100000x100000.png")
    # damaged JPEG: valid headers, garbage entropy-coded data and no EOI
    data = bytearray(open(os.path.join(OUT, "edge_100x150_upscale.jpg"), "rb").read())
    sos = data.find(b"\xff\xda")
    for i in range(sos + 20, len(data)):
        data[i] = 0xFF if i % 7 == 0 else (i * 37) & 0xFF
    open(os.path.join(OUT, "bad_corrupt.jpg"), "wb").write(bytes(data[:-2]))
    bad.append("bad_corrupt.jpg")
    return ok, bad


def bmp_top_down(src, name):
    """The uncompressed BMP `src` rewritten top-down: rows reversed, height negated."""
    d = bytearray(open(os.path.join(OUT, src), "rb").read())
    off, = struct.unpack_from("<I", d, 10)
    w, h = struct.unpack_from("<ii", d, 18)
    bits, = struct.unpack_from("<H", d, 28)
    assert h > 0 and struct.unpack_from("<I", d, 30)[0] == 0, src
    row = (w * bits + 31) // 32 * 4
    rows = [bytes(d[off + i * row: off + (i + 1) * row]) for i in range(h)]
    d[off: off + h * row] = b"".join(reversed(rows))
    struct.pack_into("<i", d, 22, -h)
    open(os.path.join(OUT, name), "wb").write(bytes(d))
    assert list(Image.open(os.path.join(OUT, name)).getdata()) == \
        list(Image.open(os.path.join(OUT, src)).getdata()), name
    return name


def main():
    os.makedirs(REF, exist_ok=True)
    ok, bad = make_fixtures()
    ok = [n for n in ok if n]
    lines = []
    for name in ok:
        im = Image.open(os.path.join(OUT, name))
        mode, size = im.mode, im.size
        crop = crop_only(Image.open(os.path.join(OUT, name)))
        arr = np.asarray(crop, dtype=np.uint8)
        assert arr.shape == (S, S, 3), (name, arr.shape)
        full = official(Image.open(os.path.join(OUT, name))).numpy()
        mean = np.array(MEAN, dtype=np.float32)[:, None, None]
        std = np.array(STD, dtype=np.float32)[:, None, None]
        again = (arr.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - mean) / std
        assert np.array_equal(full, again.astype(np.float32)), name
        digest = fnv1a64(arr.tobytes())
        # (a top-down BMP's crop is its source's, whose reference is committed)
        if (name.startswith("edge_") and "top_down" not in name) or name in FULL_REF_PHOTOS:
            gray = np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
            ref = Image.fromarray(arr[..., 0], "L") if gray else Image.fromarray(arr, "RGB")
            ref.save(os.path.join(REF, name + ".png"), optimize=True)
        lines.append(f"ok {name} {mode} {size[0]}x{size[1]} {digest:016x}")
        print(f"{name:40s} {mode:5s} {size[0]}x{size[1]}")
    # Other output sizes (the transform is the same with S = image_size): hashes only.
    for name, size in EXTRA_SIZES:
        t = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size),
                     lambda im: im.convert("RGB")])
        arr = np.asarray(t(Image.open(os.path.join(OUT, name))), dtype=np.uint8)
        lines.append(f"size {name} {size} {fnv1a64(arr.tobytes()):016x}")
    for name in bad:
        try:
            official(Image.open(os.path.join(OUT, name)))
            verdict = "PIL-ok"
        except Exception as e:  # noqa: BLE001 (we only record that PIL refuses it too)
            verdict = "PIL-error:" + type(e).__name__
        lines.append(f"bad {name} {verdict}")
        print(f"{name:40s} {verdict}")
    with open(os.path.join(REF, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # Every 8-bit level through ToTensor + Normalize, [3][256] float32 little-endian.
    levels = np.tile(np.arange(256, dtype=np.uint8), (1, 1))
    img = Image.fromarray(np.stack([levels] * 3, axis=-1), "RGB")
    table = Compose([ToTensor(), Normalize(MEAN, STD)])(img).numpy().reshape(3, 256)
    table.astype("<f4").tofile(os.path.join(REF, "normalize.f32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
