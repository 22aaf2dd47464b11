#!/bin/sh
# The CLI for people (issue 13): image inputs the same in every subcommand, mistakes
# refused or warned, heads files inspectable, exit codes, display-width tables, the ROC
# plot. Tiny model, a few fixture images: about 2 s. Run from the repo root:
#   sh tests/cli/test_cli_ux.sh build/clipn
CLIPN=${1:-build/clipn}
MODEL=tests/fixtures/model/tiny_clipn.safetensors
IMAGES=tests/fixtures/images
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 n=0

fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# run STATUS NAME CMD...: run CMD (time-limited, stdin from $T/stdin if present), check the
# exit status; stdout in $T/out, stderr in $T/err.
run() {
    want=$1 name=$2
    shift 2
    n=$((n + 1))
    if [ -f "$T/stdin" ]; then
        timeout 60 "$@" <"$T/stdin" >"$T/out" 2>"$T/err"
    else
        timeout 60 "$@" </dev/null >"$T/out" 2>"$T/err"
    fi
    got=$?
    if [ "$got" = "$want" ]; then
        echo "ok   $name"
    else
        fail "$name: status $got (want $want); stderr: $(head -c 400 "$T/err")"
    fi
}
# has FILE PATTERN NAME: FILE contains the (grep -E) pattern
has() { grep -Eq -- "$2" "$1" || fail "$3: no /$2/ in $(basename "$1"): $(head -c 400 "$1")"; }
hasnt() { grep -Eq -- "$2" "$1" && fail "$3: /$2/ in $(basename "$1")"; true; }
one_line() { [ "$(wc -l <"$T/err")" = 1 ] || fail "$1: stderr is not one line: $(head -c 400 "$T/err")"; }

printf 'cat\ndog\nastronaut\n' >"$T/classes.txt"

# ---- image inputs: files, folders (sorted by path), --list FILE, --list -
mkdir -p "$T/imgs/b" "$T/imgs/a"
cp "$IMAGES/photo_chelsea_q80.jpg" "$T/imgs/b/z.jpg"
cp "$IMAGES/edge_rgb.bmp" "$T/imgs/a/y.bmp"
cp "$IMAGES/edge_gray.png" "$T/imgs/x.png"
printf 'not an image' >"$T/imgs/notes.txt"
mkfifo "$T/imgs/pipe.jpg" # a FIFO named like an image: skipped, never opened
sorted="$T/imgs/a/y.bmp $T/imgs/b/z.jpg $T/imgs/x.png"
run 0 "classify a folder" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" --json "$T/imgs"
[ "$(sed 's/^{"image":"\([^"]*\)".*/\1/' "$T/out" | tr '\n' ' ')" = "$sorted " ] ||
    fail "classify folder order: $(cut -c1-60 "$T/out")"
printf '%s\n' $sorted | sort -r >"$T/list.txt"
run 0 "classify --list FILE" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" --json --list "$T/list.txt"
[ "$(sed 's/^{"image":"\([^"]*\)".*/\1/' "$T/out")" = "$(cat "$T/list.txt")" ] ||
    fail "classify --list order: $(cut -c1-60 "$T/out")"
cp "$T/list.txt" "$T/stdin"
run 0 "classify --list -" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" --json --list -
rm "$T/stdin"
[ "$(wc -l <"$T/out")" = 3 ] || fail "classify --list -: $(wc -l <"$T/out") rows"
run 0 "preprocess a folder" "$CLIPN" preprocess --size 32 --out "$T/folder.npy" "$T/imgs"
run 0 "preprocess the files" "$CLIPN" preprocess --size 32 --out "$T/files.npy" $sorted
cmp -s "$T/folder.npy" "$T/files.npy" || fail "preprocess folder != files in path order"
run 0 "preprocess --list" "$CLIPN" preprocess --size 32 --out "$T/list.npy" --list "$T/list.txt"
cmp -s "$T/folder.npy" "$T/list.npy" && fail "preprocess --list ignored the list's order"
run 0 "embed-image folder + --list" "$CLIPN" embed-image --model "$MODEL" --out "$T/e.npy" \
    "$T/imgs" --list "$T/list.txt"
python3 -c "
import sys; d = open(sys.argv[1], 'rb').read(); sys.exit(b'(6, ' not in d[:128])" "$T/e.npy" ||
    fail "embed-image folder + list: not 6 rows"
# --list - with a terminal as stdin: refused at once, saying how to use it (script(1) makes
# the terminal; skipped where util-linux's script is missing)
if command -v script >/dev/null 2>&1; then
    n=$((n + 1))
    timeout 20 script -qec "$CLIPN classify --model $MODEL --classes $T/classes.txt --list -" \
        /dev/null </dev/null >"$T/out" 2>&1
    got=$?
    if [ "$got" = 1 ] && grep -q "standard input is a terminal; pipe the list in" "$T/out"; then
        echo "ok   classify --list - on a terminal"
    else
        fail "classify --list - on a terminal: status $got: $(head -c 300 "$T/out")"
    fi
fi
run 2 "classify -" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" -
has "$T/err" "--list -" "classify - names --list -"
# a file that is not a list is refused as one, saying what it looks like
printf '%s\n' "$T/imgs/x.png" >"$T/ood.txt"
run 1 "eval --id IMAGE" "$CLIPN" eval --model "$MODEL" --classes "$T/classes.txt" \
    --id "$IMAGES/photo_chelsea_q80.jpg" --ood o="$T/ood.txt"
one_line "eval --id IMAGE"
has "$T/err" "not a list of image paths: it looks like a JPEG image" "eval --id IMAGE"
run 1 "--list model" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" --list "$MODEL"
has "$T/err" "looks like a safetensors file" "--list model"
printf 'a.jpg\nb\000.jpg\n' >"$T/nul.txt"
run 1 "--list with NUL" "$CLIPN" preprocess --size 32 --out "$T/x.npy" --list "$T/nul.txt"
has "$T/err" "NUL bytes" "--list with NUL"
printf '\357\273\277%s\r\n' "$T/imgs/x.png" >"$T/bom.txt"
run 0 "--list with a BOM and CRLF" "$CLIPN" preprocess --size 32 --out "$T/x.npy" --list "$T/bom.txt"
run 1 "--list folder" "$CLIPN" preprocess --size 32 --out "$T/x.npy" --list "$T/imgs"
mkdir "$T/empty"
run 1 "empty folder" "$CLIPN" preprocess --size 32 --out "$T/x.npy" "$T/empty"
has "$T/err" "no images in the folder" "empty folder"

# ---- tables by display width; names cut with an ellipsis at a character boundary
mkdir -p "$T/o1"
cp "$IMAGES/photo_brick_gray.jpg" "$IMAGES/photo_camera_gray.jpg" "$T/o1/"
run 0 "eval text table" "$CLIPN" eval --model "$MODEL" --classes "$T/classes.txt" --id "$T/imgs" \
    --ood "café=$T/o1" --ood "猫の画像=$T/o1" \
    --ood "a-very-long-ood-set-name-that-runs-on-and-on=$T/o1" --ood "x&y<z=$T/o1" --plot "$T/roc.svg"
# every row's score column starts at the same display column (33 + 1)
python3 - "$T/out" <<'PY' || fail "eval table: rows misaligned"
import sys, unicodedata
def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in 'WF' else 0 if unicodedata.combining(c) else 1 for c in s)
rows = [l for l in open(sys.argv[1], encoding='utf-8') if ' ctw ' in l or l.startswith('OOD set')]
cols = {width(l[:l.index(' ctw ' if ' ctw ' in l else ' score ')]) for l in rows}
assert len(rows) == 5 and cols == {32}, (rows, cols)
assert any('a-very-long-ood-set-n\u2026-on-and-on ctw' in l for l in rows), rows  # cut in the middle
PY

# ---- the ROC plot: a grid of two columns, names shortened, FPR95 convention shown;
# rendered to PNG by librsvg (rsvg-convert), which must parse it
has "$T/roc.svg" 'width="760"' "plot grid of 2 columns"
has "$T/roc.svg" 'FPR95 = FPR at TPR 0.95, interp' "plot FPR95 convention"
has "$T/roc.svg" 'ID vs a-very-long-ood-set-n…-on-and-on<' "plot name shortened"
has "$T/roc.svg" 'stroke-dasharray="8 4"' "plot dash patterns"
# well-formed XML (names escaped), 4 panels, and in every panel each curve has its
# own colour, dash pattern and width, so coinciding curves stay distinguishable
python3 - "$T/roc.svg" <<'PY' || fail "plot: not well-formed or curves not distinguishable"
import sys, xml.etree.ElementTree as ET
ns = '{http://www.w3.org/2000/svg}'
root = ET.parse(sys.argv[1]).getroot()
panels = root.findall(ns + 'g')
assert len(panels) == 4, len(panels)
titles = [''.join(p.find(ns + 'text').itertext()) for p in panels]
assert titles[3] == 'ID vs x&y<z', titles
for p in panels:
    styles = [(l.get('stroke'), l.get('stroke-dasharray'), l.get('stroke-width')) for l in p.findall(ns + 'polyline')]
    n = len(styles)
    assert n >= 6 and len(set(s[0] for s in styles)) == n and len(set(s[1] for s in styles)) == n \
        and len(set(s[2] for s in styles)) == n, styles
PY
if command -v rsvg-convert >/dev/null; then
    run 0 "rsvg-convert the plot" rsvg-convert "$T/roc.svg" -o "$T/roc.png"
    python3 - "$T/roc.png" <<'PY' || fail "the PNG does not parse"
import struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n'
w, h = struct.unpack('>II', d[16:24])
assert w == 760 and 900 < h < 1200, (w, h)  # 2 rows of 2: fits a portrait page
i, idat = 8, b''
while i < len(d):
    n, = struct.unpack('>I', d[i:i + 4]); t = d[i + 4:i + 8]
    if t == b'IDAT': idat += d[i + 8:i + 8 + n]
    i += 12 + n
bpp = {2: 3, 6: 4}[d[25]] * d[24] // 8  # RGB or RGBA
assert len(zlib.decompress(idat)) == h * (1 + bpp * w)
PY
else
    fail "rsvg-convert is missing (Debian librsvg2-bin, scripts/install-deps.sh)"
fi

# ---- refuse or warn, never guess
printf 'a photo of a %%s.\n' >"$T/printf_tmpl.txt"
run 1 "template without {}" "$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" \
    --templates "$T/printf_tmpl.txt" --out "$T/h.heads"
one_line "template without {}"
has "$T/err" "template 1 'a photo of a %s.' has no \{\} field" "template without {} named"
run 1 "--no-templates without {}" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" \
    --no-templates "$T/printf_tmpl.txt" "$T/imgs/x.png"
"$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" --out "$T/h.heads" 2>/dev/null ||
    fail "head: could not build $T/h.heads"
for opt in --templates --no-templates; do
    run 2 "$opt with --head" "$CLIPN" classify --model "$MODEL" --head "$T/h.heads" \
        $opt "$T/printf_tmpl.txt" "$T/imgs/x.png"
    one_line "$opt with --head"
    has "$T/err" "$opt does nothing with --head" "$opt with --head message"
done
run 2 "--classes with --head" "$CLIPN" eval --model "$MODEL" --head "$T/h.heads" \
    --classes "$T/classes.txt" --id "$T/imgs" --ood o="$T/o1"
run 2 "classify without --model" "$CLIPN" classify --classes "$T/classes.txt" "$T/imgs/x.png"
has "$T/err" "--model M is required" "classify without --model message"
run 2 "eval without --model" "$CLIPN" eval --classes "$T/classes.txt" --id "$T/imgs" --ood o="$T/o1"
has "$T/err" "--model M is required" "eval without --model message"
run 2 "head without --model" "$CLIPN" head --classes "$T/classes.txt" --out "$T/h2.heads"
has "$T/err" "--model M is required" "head without --model message"
printf 'cat\n   \ndog\n' >"$T/blank.txt"
run 1 "blank class" "$CLIPN" head --model "$MODEL" --classes "$T/blank.txt" --out "$T/h2.heads"
has "$T/err" "class 2 is blank" "blank class message"
[ -e "$T/h2.heads" ] && fail "blank class: wrote a heads file"
printf 'cat\ndog\ncat\nbird\ndog\ncat\n' >"$T/dup.txt"
run 0 "duplicate classes" "$CLIPN" head --model "$MODEL" --classes "$T/dup.txt" --out "$T/h2.heads"
has "$T/err" "warning: class 'cat' appears 3 times" "duplicate classes warned"
has "$T/err" "warning: class 'dog' appears 2 times" "duplicate classes warned"
[ "$(grep -c warning "$T/err")" = 2 ] || fail "duplicates: not one line per name"
long=$(python3 -c "print(' '.join(['zebra'] * 80))")
printf 'cat\n%s\n' "$long" >"$T/long.txt"
run 0 "prompt cut at 77 tokens" "$CLIPN" classify --model "$MODEL" --classes "$T/long.txt" "$T/imgs/x.png"
has "$T/err" "warning: class 'zebra zebra.*': 128 of 128 prompts exceed 77 tokens and are cut" \
    "cut prompts warned"
[ "$(grep -c warning "$T/err")" = 1 ] || fail "cut prompts: not one line"
mkdir -p "$T/lab/cat" "$T/lab/dgo"
cp "$IMAGES/edge_gray.png" "$T/lab/cat/"
cp "$IMAGES/edge_rgb.bmp" "$IMAGES/edge_gray.gif" "$T/lab/dgo/"
run 0 "eval label matching no class" "$CLIPN" eval --model "$MODEL" --classes "$T/classes.txt" \
    --id "$T/lab" --ood o="$T/o1"
has "$T/err" "warning: label 'dgo' \(2 ID images\) matches no class" "unmatched label warned"
has "$T/out" "accuracy [0-9.]+ on 1 labelled" "unmatched label not counted"

# every usage error exits 2 with one line: missing required options, conflicting options
usage2() {
    name=$1
    shift
    run 2 "usage: $name" "$CLIPN" "$@"
    one_line "usage: $name"
}
usage2 "embed-text without --model" embed-text --out "$T/x.npy" a
usage2 "embed-text without text" embed-text --model "$MODEL" --out "$T/x.npy"
usage2 "embed-image without --out" embed-image --model "$MODEL" "$T/imgs"
usage2 "embed-image without images" embed-image --model "$MODEL" --out "$T/x.npy"
usage2 "embed-image images + --pixels" embed-image --model "$MODEL" --out "$T/x.npy" --pixels "$T/x.npy" "$T/imgs"
usage2 "preprocess without --out" preprocess "$T/imgs"
usage2 "preprocess --size + --model" preprocess --out "$T/x.npy" --size 32 --model "$MODEL" "$T/imgs"
usage2 "head without --out" head --model "$MODEL" --classes "$T/classes.txt"
usage2 "head --templates + --yes-npy" head --model "$MODEL" --classes "$T/classes.txt" --out "$T/h3" \
    --yes-npy "$T/x.npy" --templates "$T/printf_tmpl.txt"
usage2 "classify without --classes/--head" classify --model "$MODEL" "$T/imgs"
usage2 "eval without --ood" eval --model "$MODEL" --classes "$T/classes.txt" --id "$T/imgs"
usage2 "eval two stdin lists" eval --model "$MODEL" --classes "$T/classes.txt" --id - --ood o=-
usage2 "info without FILE" info
usage2 "tokenize --model + --vocab" tokenize --model "$MODEL" --vocab x a
usage2 "neg-labels without --model" neg-labels --classes "$T/classes.txt" --out "$T/neg.txt"

# ---- info: heads files, and files that are not libclipn models
run 0 "info heads" "$CLIPN" info "$T/h.heads"
has "$T/out" "^classes: 3 x 16 dims: cat, dog, astronaut$" "info heads classes"
has "$T/out" "^templates: 128, first: 'a bad photo of a \{\}.'$" "info heads templates"
has "$T/out" "^model fingerprint: [0-9a-f]{16}$" "info heads fingerprint"
run 0 "info heads --model (same)" "$CLIPN" info "$T/h.heads" --model "$MODEL"
has "$T/out" ": matches \(fingerprint" "info heads matches"
run 1 "info heads --model (other)" "$CLIPN" info "$T/h.heads" --json \
    --model tests/fixtures/model/tiny_openclip.safetensors
has "$T/out" '"matches_model":false' "info heads --json mismatch"
has "$T/err" "built from another model" "info heads mismatch message"
run 0 "info heads --json" "$CLIPN" info --json "$T/h.heads"
python3 -c "
import json, sys; o = json.load(open(sys.argv[1]))
assert o['kind'] == 'heads' and o['classes'] == ['cat', 'dog', 'astronaut'] and len(o['templates']) == 128
assert len(o['model_fingerprint']) == 16" "$T/out" || fail "info heads --json: $(head -c 300 "$T/out")"
printf 'ok\nbad\377name\n' >"$T/badutf8.txt"
"$CLIPN" head --model "$MODEL" --classes "$T/badutf8.txt" --out "$T/hb.heads" 2>/dev/null ||
    fail "head with an invalid UTF-8 class name"
run 0 "info --json, invalid UTF-8 class" "$CLIPN" info --json "$T/hb.heads"
python3 -c "
import json, sys; assert json.load(open(sys.argv[1], encoding='utf-8'))['classes'] == ['ok', 'bad\ufffdname']" \
    "$T/out" || fail "info --json: not valid UTF-8 JSON: $(head -c 200 "$T/out")"
run 1 "info CLIPN .pt" "$CLIPN" info tests/fixtures/ckpt/tiny_clipn.pt
has "$T/err" "is a CLIPN PyTorch checkpoint .*weights_tools/clipn_convert.py tests/fixtures/ckpt/tiny_clipn.pt OUT.safetensors" "info .pt"
one_line "info .pt"
run 1 "info open_clip .pt" "$CLIPN" info tests/fixtures/ckpt/tiny_openclip.pt
has "$T/err" "is an open_clip PyTorch checkpoint" "info open_clip .pt"
run 1 "info HF safetensors" "$CLIPN" info tests/fixtures/ckpt/tiny_hf.safetensors
has "$T/err" "Hugging Face CLIPModel safetensors .*clipn_convert.py .*--quickgelu" "info HF"
printf '\200\002}q\000.' >"$T/legacy.pt"
run 1 "info legacy pickle" "$CLIPN" info "$T/legacy.pt"
has "$T/err" "legacy PyTorch checkpoint \(a pickle" "info pickle"
printf 'PK\003\004 not much' >"$T/x.zip"
run 1 "info zip" "$CLIPN" info "$T/x.zip"
has "$T/err" "is a zip archive, not a libclipn model" "info zip"
run 1 "info on an image" "$CLIPN" info "$IMAGES/photo_chelsea_q80.jpg"
has "$T/err" "is a JPEG image, not a libclipn model" "info on an image"
run 2 "info --model on a model" "$CLIPN" info "$MODEL" --model "$MODEL"

# the hand-crafted variant's command, as README and docs/cli.md give it
run 0 "head --no-templates data/...handcrafted" "$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" \
    --no-templates data/clipn_templates_no_handcrafted.txt --out "$T/hc.heads"
run 0 "info hand-crafted heads" "$CLIPN" info "$T/hc.heads"
has "$T/out" "^no templates: 128, first: 'a bad photo of no \{\}.'$" "info hand-crafted no templates"

# ---- classify's table: display width, ellipsis, control characters, compared values
# the column is as wide as the widest name up to 60 columns; wider names are cut in the
# middle, so two names that differ only at the end stay distinct
cjk=$(python3 -c "print('猫' * 34 + '犬')")
printf 'cat\ncafé au lait with a very long name that goes on and on\n%s\nbad\033[31mred\n' "$cjk" >"$T/wide.txt"
run 0 "classify table" "$CLIPN" classify --model "$MODEL" --classes "$T/wide.txt" "$T/imgs/x.png"
python3 - "$T/out" <<'PY' || fail "classify table: rows misaligned or not cut"
import sys, unicodedata
def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in 'WF' else 0 if unicodedata.combining(c) else 1 for c in s)
rows = [l.rstrip('\n') for l in open(sys.argv[1], encoding='utf-8') if l[:6].strip().endswith('.') and '%' in l]
assert len(rows) == 4, rows
assert {width(l) for l in rows} == {6 + 60 + 9}, [(width(l), l) for l in rows]
assert any('café au lait with a very long name that goes on and on ' in l for l in rows), rows
assert any('猫' * 20 + '\u2026' + '猫' * 8 + '犬 ' in l for l in rows), rows
assert any('bad\\x1b[31mred' in l for l in rows), rows
PY
if grep -q "$(printf '\033')" "$T/out"; then fail "classify table: a raw ESC reached the terminal"; fi
has "$T/out" '^  CTW: (in-distribution|OUT-OF-DISTRIBUTION) +p_no [0-9.e+-]+ (<=|>) 0\.5 at "' "CTW verdict values"
has "$T/out" '^  ATD: (in-distribution|OUT-OF-DISTRIBUTION) +p_ood [0-9.e+-]+ (<=|>) [0-9.e+-]+ = max_c p_c \* p_yes_c$' "ATD verdict values"

echo "cli ux: $n runs, $fails failed"
[ $fails = 0 ]
