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
run 1 "--list folder" "$CLIPN" preprocess --size 32 --out "$T/x.npy" --list "$T/imgs"
mkdir "$T/empty"
run 1 "empty folder" "$CLIPN" preprocess --size 32 --out "$T/x.npy" "$T/empty"
has "$T/err" "no images in the folder" "empty folder"

# ---- tables by display width; names cut with an ellipsis at a character boundary
mkdir -p "$T/o1"
cp "$IMAGES/photo_brick_gray.jpg" "$IMAGES/photo_camera_gray.jpg" "$T/o1/"
run 0 "eval text table" "$CLIPN" eval --model "$MODEL" --classes "$T/classes.txt" --id "$T/imgs" \
    --ood "café=$T/o1" --ood "猫の画像=$T/o1" \
    --ood "a-very-long-ood-set-name-that-runs-on-and-on=$T/o1" --plot "$T/roc.svg"
# every row's score column starts at the same display column (33 + 1)
python3 - "$T/out" <<'PY' || fail "eval table: rows misaligned"
import sys, unicodedata
def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in 'WF' else 0 if unicodedata.combining(c) else 1 for c in s)
rows = [l for l in open(sys.argv[1], encoding='utf-8') if ' ctw ' in l or l.startswith('OOD set')]
cols = {width(l[:l.index(' ctw ' if ' ctw ' in l else ' score ')]) for l in rows}
assert len(rows) == 4 and cols == {32}, (rows, cols)
assert any('a-very-long-ood-set-name-that-r\u2026 ctw' in l for l in rows), rows
PY

# ---- the ROC plot: a grid of two columns, names shortened, FPR95 convention shown;
# rendered to PNG by librsvg (rsvg-convert), which must parse it
has "$T/roc.svg" 'width="760"' "plot grid of 2 columns"
has "$T/roc.svg" 'FPR95 = FPR at TPR 0.95, interp' "plot FPR95 convention"
has "$T/roc.svg" 'ID vs a-very-long-ood-set-name-that-r…<' "plot name shortened"
has "$T/roc.svg" 'stroke-dasharray="8 4"' "plot dash patterns"
if command -v rsvg-convert >/dev/null; then
    run 0 "rsvg-convert the plot" rsvg-convert "$T/roc.svg" -o "$T/roc.png"
    python3 - "$T/roc.png" <<'PY' || fail "the PNG does not parse"
import struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n'
w, h = struct.unpack('>II', d[16:24])
assert w == 760 and 900 < h < 1200, (w, h)
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

echo "cli ux: $n runs, $fails failed"
[ $fails = 0 ]
