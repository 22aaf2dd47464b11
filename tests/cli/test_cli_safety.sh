#!/bin/sh
# The CLI never destroys or silently loses data (docs/security.md, "Data safety"):
# outputs are atomic and checked, inputs are never overwritten, stdout errors are reported,
# reads are bounded and never hang, partial results survive, JSON is always valid.
# Run from the repo root:  sh tests/cli/test_cli_safety.sh build/clipn
CLIPN=${1:-build/clipn}
MODEL=tests/fixtures/model/tiny_clipn.safetensors
VOCAB=weights_tools/bpe_simple_vocab_16e6.txt.gz
IMAGES=tests/fixtures/images
PY=${PYTHON:-python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 n=0

fail() {
    echo "FAIL $*"
    fails=$((fails + 1))
}

# expect STATUS NAME CMD...: run CMD (time-limited); check the status, and for a non-zero
# one that stderr is one line starting with "clipn ". STATUS "1+" is 1 with any stderr.
expect() {
    want=$1 name=$2 one_line=1
    shift 2
    [ "$want" = 0 ] && one_line=0
    [ "$want" = 1+ ] && { want=1 one_line=0; }
    n=$((n + 1))
    timeout 60 "$@" >"$T/out" 2>"$T/err"
    got=$?
    lines=$(wc -l <"$T/err")
    ok=1
    [ "$got" = "$want" ] || ok=0
    if [ $one_line = 1 ]; then
        [ "$lines" = 1 ] || ok=0
        grep -q '^clipn ' "$T/err" || ok=0
    fi
    if [ $ok = 1 ]; then
        echo "ok   $name: $(head -c 160 "$T/err" | tr '\n' ' ')"
    else
        fail "$name: status $got (want $want), $lines stderr lines:"
        head -c 600 "$T/err"
    fi
}
# err_has TEXT NAME: the last command's stderr contains TEXT
err_has() {
    grep -q -- "$1" "$T/err" || fail "$2: stderr lacks '$1': $(head -c 300 "$T/err")"
}
# no_temp NAME: no temporary file (.NAME.XXXXXX) left in $T/w
no_temp() {
    left=$(ls -A "$T/w" | grep '^\.' || true)
    [ -z "$left" ] || fail "$1: temporary files left: $left"
}

mkdir "$T/w"
cp "$MODEL" "$T/w/model.clipn"
printf 'cat\ndog\n' >"$T/w/classes.txt"
printf 'a photo of a {}.\n' >"$T/w/tmpl.txt"
"$CLIPN" head --model "$T/w/model.clipn" --classes "$T/w/classes.txt" --templates "$T/w/tmpl.txt" \
    --out "$T/w/h.heads" 2>/dev/null || fail "setup: head"
sum_model=$(cksum <"$T/w/model.clipn")
img="$IMAGES/edge_1x1.png"
cp "$img" "$T/w/img.png"
printf '%s\n%s\n' "$IMAGES/edge_1x1.png" "$IMAGES/edge_2x3.png" >"$T/w/id.txt"
printf '%s\n' "$IMAGES/edge_gray.png" "$IMAGES/edge_rgb.ppm" >"$T/w/ood.txt"

# ---- inputs are not outputs: refused with status 2 before any work, the input untouched
expect 2 "embed-text --out the model" "$CLIPN" embed-text --model "$T/w/model.clipn" \
    --out "$T/w/model.clipn" cat
err_has "same file as the input --model" "embed-text --out the model"
expect 2 "head --out the model" "$CLIPN" head --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --out "$T/w/model.clipn"
expect 2 "head --out the classes" "$CLIPN" head --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --out "$T/w/classes.txt"
expect 2 "head --out the templates" "$CLIPN" head --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --templates "$T/w/tmpl.txt" --out "$T/w/tmpl.txt"
ln -s model.clipn "$T/w/link.clipn"
ln "$T/w/model.clipn" "$T/w/hard.clipn"
expect 2 "head --out a symlink to the model" "$CLIPN" head --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --out "$T/w/link.clipn"
expect 2 "embed-text --out a hard link to the model" "$CLIPN" embed-text \
    --model "$T/w/model.clipn" --out "$T/w/hard.clipn" cat
expect 2 "eval --scores-csv the model" "$CLIPN" eval --model "$T/w/model.clipn" \
    --head "$T/w/h.heads" --id "$T/w/id.txt" --ood o="$T/w/ood.txt" --scores-csv "$T/w/model.clipn"
expect 2 "eval --plot the head file" "$CLIPN" eval --model "$T/w/model.clipn" \
    --head "$T/w/h.heads" --id "$T/w/id.txt" --ood o="$T/w/ood.txt" --plot "$T/w/h.heads"
expect 2 "eval --roc-csv an ID list" "$CLIPN" eval --model "$T/w/model.clipn" \
    --head "$T/w/h.heads" --id "$T/w/id.txt" --ood o="$T/w/ood.txt" --roc-csv "$T/w/id.txt"
printf '%s\n' "$T/w/img.png" >"$T/w/id_img.txt"
expect 2 "eval --scores-csv an image of the ID list" "$CLIPN" eval --model "$T/w/model.clipn" \
    --head "$T/w/h.heads" --id "$T/w/id_img.txt" --ood o="$T/w/ood.txt" --scores-csv "$T/w/img.png"
expect 2 "eval --scores-csv and --roc-csv the same file" "$CLIPN" eval \
    --model "$T/w/model.clipn" --head "$T/w/h.heads" --id "$T/w/id.txt" --ood o="$T/w/ood.txt" \
    --scores-csv "$T/w/x.csv" --roc-csv "$T/w/x.csv"
expect 2 "preprocess --out an input image" "$CLIPN" preprocess --size 32 --out "$T/w/img.png" \
    "$T/w/img.png"
expect 2 "embed-image --out the --pixels input" "$CLIPN" embed-image --model "$T/w/model.clipn" \
    --out "$T/w/h.heads" --pixels "$T/w/h.heads"
expect 2 "neg-labels --out the classes" "$CLIPN" neg-labels --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --nouns "$T/w/tmpl.txt" --adjectives "$T/w/tmpl.txt" \
    --out "$T/w/classes.txt"
expect 2 "neg-labels --nouns-out the model" "$CLIPN" neg-labels --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --nouns "$T/w/tmpl.txt" --adjectives "$T/w/tmpl.txt" \
    --out "$T/w/neg.txt" --nouns-out "$T/w/model.clipn"
expect 2 "embed-image --out the --list file" "$CLIPN" embed-image --model "$T/w/model.clipn" \
    --out "$T/w/id.txt" --list "$T/w/id.txt"
[ "$(cksum <"$T/w/model.clipn")" = "$sum_model" ] || fail "the model changed"
cmp -s "$img" "$T/w/img.png" || fail "the input image changed"
[ -L "$T/w/link.clipn" ] || fail "the symlink was replaced"

# ---- outputs checked before long work: a missing folder or a directory fails first
expect 1 "eval --plot in a missing folder, before any work" "$CLIPN" eval \
    --model "$T/nonexistent.clipn" --head "$T/w/h.heads" --id "$T/w/id.txt" \
    --ood o="$T/w/ood.txt" --plot "$T/nofolder/roc.svg"
err_has "roc.svg: folder" "eval --plot in a missing folder"
expect 1 "embed-text --out a directory, before the model load" "$CLIPN" embed-text \
    --model "$T/nonexistent.clipn" --out "$T/w" cat
err_has "Is a directory" "embed-text --out a directory"
expect 1 "head --out in a file, not a folder" "$CLIPN" head --model "$T/w/model.clipn" \
    --classes "$T/w/classes.txt" --out "$T/w/classes.txt/h.heads"

# ---- full disk (/dev/full, and a `c 1 7` node made here) and RLIMIT_FSIZE: exit 1 with
# the reason; the old file kept, no temporary left, the node not unlinked
# Outputs go to a full-disk node of our own: a writer that unlinks its target on failure
# (as clipn_heads_save once did) must not be able to remove the system's /dev/full.
if mknod "$T/full" c 1 7 2>/dev/null; then
    FULL=$T/full
else
    FULL=
    echo "skip: mknod not permitted here, the full-disk output cases are not run"
fi
if [ -n "$FULL" ]; then
    expect 1 "preprocess --out a full disk" "$CLIPN" preprocess --size 32 --out "$FULL" "$img"
    err_has "No space left on device" "preprocess --out a full disk"
    expect 1 "embed-text --out a full disk" "$CLIPN" embed-text --model "$T/w/model.clipn" \
        --out "$FULL" cat
    err_has "No space left on device" "embed-text --out a full disk"
    expect 1 "head --out a full disk" "$CLIPN" head --model "$T/w/model.clipn" \
        --classes "$T/w/classes.txt" --templates "$T/w/tmpl.txt" --out "$FULL"
    err_has "No space left on device" "head --out a full disk"
    expect 1+ "eval --scores-csv --plot on a full disk" "$CLIPN" eval --model "$T/w/model.clipn" \
        --head "$T/w/h.heads" --id "$T/w/id.txt" --ood o="$T/w/ood.txt" --scores-csv "$FULL"
    err_has "No space left on device" "eval --scores-csv on a full disk"
    [ -c "$FULL" ] || fail "the device node was removed or replaced"
fi
echo "old contents" >"$T/w/old.npy"
expect 1 "preprocess under ulimit -f 8 keeps the old file" sh -c \
    'ulimit -f 8 && exec "$0" preprocess --size 64 --out "$1" "$2"' "$CLIPN" "$T/w/old.npy" "$img"
err_has "File too large" "preprocess under ulimit -f"
[ "$(cat "$T/w/old.npy")" = "old contents" ] || fail "ulimit -f: the old file was changed"
no_temp "preprocess under ulimit -f"
expect 1+ "eval --scores-csv under ulimit -f 0 keeps the old file" sh -c \
    'ulimit -f 0 && exec "$0" eval --model "$1" --head "$2" --id "$3" --ood o="$4" --scores-csv "$5" --batch 1' \
    "$CLIPN" "$T/w/model.clipn" "$T/w/h.heads" "$T/w/id.txt" "$T/w/ood.txt" "$T/w/old.npy"
[ "$(cat "$T/w/old.npy")" = "old contents" ] || fail "eval ulimit -f: the old file was changed"
no_temp "eval under ulimit -f"
cp "$T/w/h.heads" "$T/w/h_old.heads"
expect 1 "head --out under ulimit -f 1 keeps the old heads" sh -c \
    'ulimit -f 1 && exec "$0" head --model "$1" --classes "$2" --templates "$3" --out "$4"' \
    "$CLIPN" "$T/w/model.clipn" "$T/w/classes.txt" "$T/w/tmpl.txt" "$T/w/h_old.heads"
err_has "File too large" "head under ulimit -f"
cmp -s "$T/w/h.heads" "$T/w/h_old.heads" || fail "head under ulimit -f: the old heads changed"
no_temp "head under ulimit -f"
expect 1 "info to a file under ulimit -f 1" sh -c \
    'ulimit -f 1 && exec "$0" info "$1" >"$2"' "$CLIPN" "$MODEL" "$T/w/info.json"
err_has "standard output: File too large" "info under ulimit -f"
rm -f "$T/w/info.json" "$T/w/h_old.heads"
# an existing output is replaced whole, keeping its mode; writing through a symlink
# replaces the file it points to and keeps the link
chmod 640 "$T/w/old.npy"
ln -s old.npy "$T/w/out_link.npy"
expect 0 "preprocess over an existing file, through a symlink" "$CLIPN" preprocess --size 32 \
    --out "$T/w/out_link.npy" "$img"
[ -L "$T/w/out_link.npy" ] || fail "symlink output: the link was replaced"
"$PY" -c "import sys; d=open(sys.argv[1],'rb').read(); sys.exit(0 if d[:6]==b'\x93NUMPY' and len(d)==128+3*32*32*4 else 1)" \
    "$T/w/old.npy" || fail "symlink output: the target is not the new .npy"
[ "$(stat -c %a "$T/w/old.npy")" = 640 ] || fail "replaced output lost its mode"
no_temp "preprocess over an existing file"

# ---- standard output: a full stdout is an error naming the reason, never exit 0
expect 1 "info > /dev/full" sh -c 'exec "$0" info "$1" >/dev/full' "$CLIPN" "$MODEL"
err_has "standard output: No space left on device" "info > /dev/full"
expect 1 "tokenize > /dev/full" sh -c 'exec "$0" tokenize --vocab "$1" cat >/dev/full' \
    "$CLIPN" "$VOCAB"
expect 1 "classify --json > /dev/full" sh -c \
    'exec "$0" classify --json --model "$1" --head "$2" "$3" "$3" >/dev/full' \
    "$CLIPN" "$MODEL" "$T/w/h.heads" "$img"
err_has "standard output: No space left on device" "classify --json > /dev/full"
expect 1 "eval --json > /dev/full" sh -c \
    'exec "$0" eval --json --model "$1" --head "$2" --id "$3" --ood o="$4" >/dev/full' \
    "$CLIPN" "$MODEL" "$T/w/h.heads" "$T/w/id.txt" "$T/w/ood.txt"
expect 1 "--help > /dev/full" sh -c 'exec "$0" --help >/dev/full' "$CLIPN"

# ---- bounded reads, no hang: /dev/zero and other devices are refused at once, a pipe is
# read as a stream under the cap, a FIFO with a writer works
expect 1 "embed-image --pixels /dev/zero" "$CLIPN" embed-image --model "$MODEL" --out "$T/x.npy" \
    --pixels /dev/zero
err_has "not a regular file" "--pixels /dev/zero"
expect 1 "head --classes /dev/zero" "$CLIPN" head --model "$MODEL" --classes /dev/zero \
    --out "$T/h2.heads"
expect 1 "tokenize --file /dev/zero" "$CLIPN" tokenize --vocab "$VOCAB" --file /dev/zero
expect 1 "embed-text --file a directory" "$CLIPN" embed-text --model "$MODEL" --out "$T/x.npy" \
    --file "$T/w"
expect 1 "classify --list /dev/zero" "$CLIPN" classify --model "$MODEL" --head "$T/w/h.heads" \
    --list /dev/zero
mkfifo "$T/fifo"
expect 1 "--pixels a FIFO (no writer): refused, no hang" "$CLIPN" embed-image --model "$MODEL" \
    --out "$T/x.npy" --pixels "$T/fifo"
(printf 'a cat\na dog\n' >"$T/fifo" &)
expect 0 "tokenize --file a FIFO with a writer" "$CLIPN" tokenize --vocab "$VOCAB" --file "$T/fifo"
[ "$(wc -l <"$T/out")" = 2 ] || fail "tokenize --file FIFO: $(wc -l <"$T/out") lines, want 2"
expect 1 "tokenize --file an endless pipe stops at the cap" sh -c \
    'yes cat | exec "$0" tokenize --vocab "$1" --file /dev/stdin' "$CLIPN" "$VOCAB"
err_has "more than the limit" "endless pipe"

# ---- partial results survive: what was scored is reported and written; exit status 1
printf '%s\n' "$T/missing1.png" "$T/missing2.png" >"$T/w/all_missing.txt"
expect 1+ "eval with one good and one all-missing OOD set" "$CLIPN" eval --json \
    --model "$MODEL" --head "$T/w/h.heads" --id "$T/w/id.txt" --ood good="$T/w/ood.txt" \
    --ood gone="$T/w/all_missing.txt" --scores-csv "$T/w/scores.csv" --plot "$T/w/roc.svg"
err_has "OOD set gone: no image could be scored" "eval partial"
"$PY" -c "
import json, sys
r = json.load(open(sys.argv[1]))
assert r['ood']['good']['msp']['auroc'] is not None, r
assert r['ood']['gone']['msp']['auroc'] is None, r
assert r['n_ood'] == {'good': 2, 'gone': 0} and r['n_failed'] == 2, r
" "$T/out" || fail "eval partial: the good set is not reported"
[ "$(wc -l <"$T/w/scores.csv")" = 5 ] || fail "eval partial: scores.csv has $(wc -l <"$T/w/scores.csv") lines, want 5"
grep -q '</svg>' "$T/w/roc.svg" || fail "eval partial: no plot"
expect 1+ "classify with a missing image still prints the others" "$CLIPN" classify --json \
    --model "$MODEL" --head "$T/w/h.heads" "$img" "$T/missing.png" "$IMAGES/edge_2x3.png"
[ "$(wc -l <"$T/out")" = 2 ] || fail "classify partial: $(wc -l <"$T/out") lines, want 2"
expect 1+ "eval with no scorable ID image still writes the OOD scores" "$CLIPN" eval \
    --model "$MODEL" --head "$T/w/h.heads" --id "$T/w/all_missing.txt" --ood good="$T/w/ood.txt" \
    --scores-csv "$T/w/scores2.csv"
[ "$(wc -l <"$T/w/scores2.csv")" = 3 ] || fail "eval without ID: scores2.csv not written"

# ---- JSON is always valid: control characters and invalid UTF-8 in class names and paths
printf 'c\033[31mat\001\ndo\377g\n\302\n' >"$T/w/nasty.txt"
cp "$img" "$T/w/$(printf 'im\033g\376.png')"
expect 0 "classify --json with control chars and invalid UTF-8" "$CLIPN" classify --json \
    --model "$MODEL" --classes "$T/w/nasty.txt" --templates "$T/w/tmpl.txt" --top 3 \
    "$T/w/$(printf 'im\033g\376.png')"
"$PY" -c "
import json, sys
r = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))
names = {t['class'] for t in r['top']}
assert names == {'c\x1b[31mat\x01', 'do\ufffdg', '\ufffd'}, names
assert r['image'].endswith('im\x1bg\ufffd.png'), r['image']
" "$T/out" || fail "classify --json: not valid JSON or names not escaped"
expect 0 "eval --json with an invalid UTF-8 set name" "$CLIPN" eval --json --model "$MODEL" \
    --head "$T/w/h.heads" --id "$T/w/id.txt" --ood "$(printf 'o\377\033')=$T/w/ood.txt"
"$PY" -c "
import json, sys
r = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))
assert list(r['ood']) == ['o\ufffd\x1b'], r['ood'].keys()
" "$T/out" || fail "eval --json: invalid JSON with a hostile set name"
cp "$MODEL" "$T/w/$(printf 'm\377\001.clipn')"
expect 0 "info on a file name with invalid UTF-8" "$CLIPN" info "$T/w/$(printf 'm\377\001.clipn')"
"$PY" -c "import json,sys; json.loads(open(sys.argv[1],'rb').read().decode('utf-8'))" "$T/out" ||
    fail "info: invalid JSON"

"$CLIPN" head --model "$MODEL" --classes "$T/w/nasty.txt" --templates "$T/w/tmpl.txt" \
    --out "$T/w/nasty.heads" 2>/dev/null || fail "head with nasty class names"
expect 0 "info --json on heads with control chars and invalid UTF-8" "$CLIPN" info --json \
    "$T/w/nasty.heads"
"$PY" -c "
import json, sys
r = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))
assert r['classes'] == ['c\x1b[31mat\x01', 'do\ufffdg', '\ufffd'], r['classes']
" "$T/out" || fail "info --json on heads: invalid JSON or names not escaped"

# ---- --top K is O(n log K) and exact: 3000 classes, --top 3000 equals the full sort
"$PY" -c "
for i in range(3000): print('class%d' % i)" >"$T/w/c3000.txt"
"$CLIPN" head --model "$MODEL" --classes "$T/w/c3000.txt" --templates "$T/w/tmpl.txt" \
    --out "$T/w/h3000.heads" 2>/dev/null || fail "head 3000"
expect 0 "classify --top 3000 of 3000 classes" "$CLIPN" classify --json --model "$MODEL" \
    --head "$T/w/h3000.heads" --top 3000 "$img" "$IMAGES/edge_gray.png"
cp "$T/out" "$T/top3000.json"
expect 0 "classify --top 7 of 3000 classes" "$CLIPN" classify --json --model "$MODEL" \
    --head "$T/w/h3000.heads" --top 7 "$img" "$IMAGES/edge_gray.png"
"$PY" -c "
import json, sys
full = [json.loads(l) for l in open(sys.argv[1])]
top7 = [json.loads(l) for l in open(sys.argv[2])]
for f, s in zip(full, top7):
    t = f['top']
    assert len(t) == 3000 and len({e['class'] for e in t}) == 3000
    key = [(-e['prob'], int(e['class'][5:])) for e in t]
    assert key == sorted(key), 'not sorted by prob desc, then class index'
    assert s['top'] == t[:7] and f['pred'] == t[0]['class']
" "$T/top3000.json" "$T/out" || fail "--top K order"

echo "cli safety: $n checks, $fails failed"
[ $fails = 0 ]
