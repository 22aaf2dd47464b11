#!/usr/bin/env python3
"""Build the tokenizer corpus and the official token ids for it.

Runs the official CLIPN tokenizer (src/open_clip/tokenizer.py of xmed-lab/CLIPN), imported
from a path given on the command line, with ftfy 6.1.1 (the version CLIPN's
requirements.txt pins) and the `regex` module:

  /usr/bin/python3 tests/tokenizer_ref/make_reference.py \
      --clipn /tmp/ref/clipn/src/open_clip --ftfy /tmp/ref/ftfy \
      --out tests/fixtures/tokenizer

Writes corpus.jsonl: one object per text, {"hex": UTF-8 bytes of the text (possibly
invalid: the reference decodes them with errors='replace'), "ids": the 77 ids without the
trailing 0 padding}. Texts whose ids change when ftfy's
mojibake repair (fix_encoding) is switched off go to mojibake.jsonl instead, with both
results ("ids" official, "ids_no_fix_encoding"); libclipn does not repair mojibake
(docs/tokenizer.md).
"""
import argparse
import importlib.util
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_official(clipn_dir, ftfy_dir):
    sys.path.insert(0, ftfy_dir)
    import ftfy  # noqa: E402
    assert ftfy.__version__ == "6.1.1", ftfy.__version__
    spec = importlib.util.spec_from_file_location("clipn_tokenizer",
                                                  os.path.join(clipn_dir, "tokenizer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, ftfy


class NoFixEncoding:
    """Stands in for the ftfy module inside the official tokenizer."""

    def __init__(self, ftfy):
        self.ftfy = ftfy

    def fix_text(self, text):
        return self.ftfy.fix_text(text, fix_encoding=False)


def read_lines(name):
    with open(os.path.join(ROOT, "data", name), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


HANDWRITTEN = [
    # scripts
    "Crème brûlée à la française, naïve façade, Ångström, Øresund, Łódź, Straße",
    "Ελληνικά: Η γρήγορη καφέ αλεπού πηδάει ΠΆΝΩ ΑΠΌ ΤΟ ΣΚΥΛΊ. ΟΔΟΣ ΟΔΟΣ. Σ ΣΣ",
    "Русский язык: Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЛКА",
    "العربية: نص تجريبي للقطة على الطاولة ١٢٣",
    "עברית: חתול שחור יושב על הגדר",
    "हिन्दी: बिल्ली मेज़ पर बैठी है। १२३",
    "ภาษาไทย: แมวนั่งอยู่บนโต๊ะ ๑๒๓",
    "中文：一只猫坐在桌子上。漢字 繁體",
    "한국어: 고양이가 탁자 위에 앉아 있다",
    "日本語: ひらがな カタカナ 猫が机の上に座っている。ｶﾀｶﾅ",
    "ქართული: კატა ზის მაგიდაზე",
    "Հայերեն: Կատուն նստած է սեղանին",
    "Tiếng Việt: Con mèo đang ngồi trên bàn",
    "Türkçe: İstanbul'da IĞDIR ılık şiş",
    "አማርኛ ጽሑፍ ፊደል", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ᐃᓄᒃᑎᑐᑦ", "ꦧꦱꦗꦮ", "𐌰𐌽𐍃 gothic 𝕬𝖇𝖈 𝟘𝟙",
    # emoji
    "👩‍👩‍👧‍👦 family", "👍🏽 thumbs 👋🏿 wave", "🇫🇷🇩🇪🇯🇵 flags", "🏳️‍🌈 rainbow flag",
    "a 🐱 cat and 🐶 dog 🤖🦄", "❤️ ✔ ☕ ⚽", "keycap 1️⃣ #️⃣",
    # normalization
    "cafe\u0301 nai\u0308ve A\u030a e\u0301\u0301 o\u0323\u0302", "\u1100\u1161\u11a8 jamo",
    "\u0041\u0327\u0301 \u1e9b\u0323 \u212b \u2126 ohm",
    # html entities
    "Tom &amp; Jerry &lt;3 &gt; &quot;q&quot; &apos;",
    "double &amp;amp; triple &amp;amp;amp; quad &amp;amp;amp;amp;",
    "semicolonless &amp &lt &gt &copy 2023 &notit &notin; &ampx",
    "numeric &#65;&#x42;&#X43; &#8220;quoted&#8221; &#x1F600; &#128512;",
    "invalid &#0; &#x80; &#150; &#xD800; &#x110000; &#1; &#11; &#x7f; &#xFDD0; &#13;",
    "no semicolon &#65 &#x42 &#8220 text", "&NTILDE; &EACUTE; &AMP; &Eacute; &eacute;",
    "&hellip; &mdash; &ndash; &nbsp;x&nbsp; &ensp;&emsp;&thinsp;",
    "a <b>bold</b> &amp; tag", "line one &amp;\nline <two> &amp;\nline three &amp;",
    "&&&;;; &#; &#x; &# &unknownentity; &zwnj;x&zwj;",
    "&#x201c;curly&#x201d; &lsquo;single&rsquo; &ldquo;double&rdquo;",
    # width, ligatures, quotes
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ　１２３！？", "halfwidth ﾊﾝｶｸ ｶﾞ",
    "ﬁne ﬂour ﬀ ﬃ ﬄ ﬅ ﬆ Ĳ ĳ ǅ ǆ ŉ", "“curly” ‘quotes’ ‚low„ ‛rev‟ ʼn",
    "DON'T IT'S WE'RE THEY'VE I'M YOU'LL HE'D", "don't it's we're they've i'm you'll he'd",
    "DON’T IT’S", "'s's 't 're 've 'm 'll 'd '", "rock'n'roll o'clock",
    # whitespace
    "tab\there\nnew\rcr\vvt\fff end", "nbsp\u00a0here\u2000\u2001\u2002\u2003\u2004\u2005",
    "\u2006\u2007\u2008\u2009\u200a thin \u2028ls\u2029ps\u3000ideo\u0085nel\u1680ogham",
    "\u202fnarrow\u205fmath \u200bzwsp\u180emvs \u00adshy\ufeffbom",
    "   leading and trailing   ", "\n\n\t  \r\n", "", " ", "\u3000\u3000",
    "\x1c\x1d\x1e\x1f file separators", "a\x1cb\x1fc",
    # controls
    "ctrl\x00\x01\x02\x07\x08\x1b[31mred\x1b[0m bell", "c1 \x80\x81\x85\x8d\x90\x9d\x9f end",
    "del\x7f here \u206a\u206f \ufff9\ufffa\ufffb \ufffc \ufffd",
    "\u200e\u200f rtl marks \u202a\u202e",
    # special tokens and punctuation
    "<start_of_text> hello <end_of_text>", "<START_OF_TEXT>x<End_Of_Text>",
    "!!!??? ... --- *** ### @@@ $$$ %%% ^^^", "a.b,c;d:e", "3.14159 1,000,000 42nd 7th",
    "½ ¾ ² ³ ⅕ Ⅻ ⑴ ① ٣ ൯", "x² H₂O 10⁻³",
    "İ i̇ ß ẞ ǰ ΐ ŉ ﬁ Ω K Å", "ſ 'ſ ſt ﬅ K 'K",
    "ΣΑΣ ΟΔΟΣ. ΑΣ' Σ́ aΣb ᾼΣ", "μ µ ÿ Ÿ", "a.Σ.b", "a'Σ", "Σ", "aΣ",
    "<ſtart_of_text>x", "it'ſ", "&#0000000000000000000065; &#99999999999999999999;",
    # mojibake-looking (goes to mojibake.jsonl if ftfy would repair it)
    "sÃ³ mojibake Ã©tÃ©", "âœ” No problems", "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "voilÃ  le travail",
    # long
    " ".join(["word"] * 100), "supercalifragilisticexpialidocious " * 20,
    "a" * 500, "🙂" * 100, "漢" * 200, ("The quick brown fox jumps over the lazy dog. " * 10),
]

POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" \t\n\r\v\f\u00a0\u2000\u2009\u3000\u0085\u2028\u2029\x1c")
    + list("'\"&;#<>!?.,-_()[]{}/\\@$%^*+=|~`")
    + ["&amp;", "&lt;", "&#39;", "&#x27;", "&nbsp;", "&eacute;", "&AMP", "&#0;", "&#150;"]
    + list("\u0301\u0308\u0327\u0323\u0345\u20dd\u200d\ufe0f")
    + list("éÉüÜñÑçÇøØåÅæÆßİıſΣσςΑωЖжЯяÀ")
    + list("“”‘’ʼﬁﬂﬃＡＢａｂ１！ｶﾞ")
    + list("\x00\x01\x07\x1b\x7f\x80\x85\x9f\u206a\ufeff\ufffd")
    + list("日本語中文한국어ภาษาहिन्दीالعربيةעבריתქართულიՀայ")
    + ["👍", "🏽", "👩‍👧", "🇫🇷", "\U0001F600", "\U00010EFD", "\U00011F41"]
)


def fuzz_texts(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(POOL) for _ in range(k)))
    return out


MARKS = [chr(c) for c in list(range(0x300, 0x370, 3)) + [
    0x5B0, 0x64B, 0x651, 0x93C, 0x94D, 0x9BE, 0x9BC, 0x9C7, 0xB3E, 0xB47, 0x1DC0, 0x20D0,
    0x302A, 0x3099, 0x309A, 0x10EFD, 0x11F41, 0x1E4EC]]
BASES = list("aeiouAEIOUnNcCsSzZyY'. \n<&;#x2019") + [
    "\u1100", "\u1161", "\u11a8", "\uac00", "\u0b47", "\u09c7", "\u3046", "\u30a6",
    "\u0391", "\u03a3", "\u03c3", "\u0399", "\u0130", "\u212b", "\u0345", "\u00ad",
    "\u200d", "\u0387", "\u00b7", ":", "\u2019", "\u02bc"]
PIECES = ["&amp;", "&amp;amp;amp;", "&lt;", "&#x3c;", "&Sigma;", "&SIGMA;", "&#931;", "&#x301;",
          "&#x0345;", "&rsquo;", "&#x1b;[1m", "\x1b[1;31m", "\x1b[", "\r\n", "\r", "&#13;",
          "&#133;"]


def fuzz_marks(rng, n):
    """Combining marks (NFC reordering), final sigma contexts, entities, escapes."""
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            parts.append(rng.choice(MARKS) if r < 0.3 else rng.choice(PIECES) if r < 0.45
                         else rng.choice(BASES))
        out.append("".join(parts))
    return out


def fuzz_long_marks(rng, n):
    """Long runs of combining marks (canonical ordering of more than 16 marks)."""
    return ["".join(rng.choice(BASES) + "".join(rng.choice(MARKS) for _ in range(rng.randint(17, 120)))
                    for _ in range(rng.randint(1, 3))) for _ in range(n)]


def fuzz_bytes(rng, n):
    pieces = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc2", b"\xe0\x80", b"\xe2\x82", b"\xed\xa0\x80",
              b"\xf0\x9f", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xfe",
              b"\xc3\xa9", b"abc", b" ", b"\xe2\x80\x9c", b"&amp;", b"\xef\xbb\xbf"]
    return [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clipn", required=True, help="dir holding the official tokenizer.py")
    ap.add_argument("--ftfy", required=True, help="dir holding the ftfy 6.1.1 package")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    mod, ftfy = load_official(args.clipn, args.ftfy)

    classes = read_lines("imagenet_classes.txt")
    templates = read_lines("clipn_templates_official.txt")
    rng = random.Random(20231001)
    texts = []
    for i, c in enumerate(classes):
        texts.append(c)
        texts.append("a photo of a {}.".format(c))
        texts.append(templates[i % len(templates)].format(c))
    texts += templates
    texts += read_lines("clipn_templates_no_handcrafted.txt")
    texts += HANDWRITTEN
    texts += fuzz_texts(rng, 600)
    texts += fuzz_marks(rng, 500)
    texts += fuzz_long_marks(rng, 100)
    raw = [t.encode("utf-8") for t in texts] + fuzz_bytes(rng, 200)

    def ids_of(b):
        toks = mod.tokenize(b.decode("utf-8", errors="replace"))
        ids = toks.tolist()
        while ids and ids[-1] == 0:
            ids.pop()
        return ids

    seen = set()
    main_rows, moji_rows = [], []
    for b in raw:
        if b in seen:
            continue
        seen.add(b)
        official = ids_of(b)
        mod.ftfy = NoFixEncoding(ftfy)
        plain = ids_of(b)
        mod.ftfy = ftfy
        if official == plain:
            main_rows.append({"hex": b.hex(), "ids": official})
        else:
            moji_rows.append({"hex": b.hex(), "ids": official, "ids_no_fix_encoding": plain})
    os.makedirs(args.out, exist_ok=True)
    for name, rows in (("corpus.jsonl", main_rows), ("mojibake.jsonl", moji_rows)):
        with open(os.path.join(args.out, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    print("corpus.jsonl: %d texts, mojibake.jsonl: %d texts" % (len(main_rows), len(moji_rows)))


if __name__ == "__main__":
    main()
