#!/bin/sh
# Every CLI subcommand on the tiny fixture model under valgrind memcheck: any invalid
# access or definite/indirect leak fails (exit 9). Run from the repo root:
#   sh tests/cli/valgrind_workload.sh build/clipn
CLIPN=${1:-build/clipn}
MODEL=tests/fixtures/model/tiny_clipn.safetensors
IMG=tests/fixtures/images
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=9
    --suppressions=tests/cli/valgrind.supp"
printf 'cat\ndog\ngoldfish\n' >"$T/classes.txt"
printf 'a photo of a {}.\na blurry photo of a {}.\n' >"$T/templates.txt"
printf '%s\n' "$IMG/photo_chelsea_q80.jpg" "$IMG/edge_1x1.png" >"$T/id.txt"
printf '%s\n' "$IMG/photo_coffee_wide.jpg" "$IMG/edge_gray.gif" >"$T/ood.txt"
fails=0
# run NAME CMD... (expects status 0); WANT=1 run ... for an error path
run() {
    name=$1
    shift
    $VG "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ $got = "${WANT:-0}" ]; then
        echo "ok   $name"
    else
        echo "FAIL $name (status $got)"
        head -c 3000 "$T/err"
        fails=$((fails + 1))
    fi
}
run info $CLIPN info $MODEL
run tokenize $CLIPN tokenize --model $MODEL "a photo of a cat" "caf\303\251 &amp; \377"
run preprocess $CLIPN preprocess --model $MODEL --out "$T/px.npy" $IMG/photo_chelsea_q80.jpg \
    $IMG/edge_palette.png
run embed-image $CLIPN embed-image --model $MODEL --out "$T/img.npy" $IMG/photo_chelsea_q80.jpg \
    $IMG/edge_rgba.png
run "embed-image --pixels" $CLIPN embed-image --model $MODEL --out "$T/img2.npy" --pixels "$T/px.npy"
run embed-text $CLIPN embed-text --model $MODEL --out "$T/txt.npy" "a photo of a cat" "a dog"
run "embed-text --no" $CLIPN embed-text --no --model $MODEL --out "$T/txt.npy" "a photo of a cat"
run head $CLIPN head --model $MODEL --classes "$T/classes.txt" --templates "$T/templates.txt" \
    --out "$T/h.heads"
run "classify --json" $CLIPN classify --model $MODEL --head "$T/h.heads" --json \
    $IMG/photo_chelsea_q80.jpg $IMG/edge_gray.png
run "classify --classes" $CLIPN classify --model $MODEL --classes "$T/classes.txt" \
    --templates "$T/templates.txt" --top 2 $IMG/photo_chelsea_q80.jpg
run eval $CLIPN eval --model $MODEL --head "$T/h.heads" --id "$T/id.txt" --ood "o=$T/ood.txt" \
    --json --roc-csv "$T/roc.csv" --scores-csv "$T/s.csv"
mkdir -p "$T/imgs/a"
cp $IMG/edge_gray.png "$T/imgs/a/" && cp $IMG/edge_rgb.bmp "$T/imgs/"
run "classify a folder" $CLIPN classify --model $MODEL --head "$T/h.heads" --top 2 "$T/imgs"
run "info heads --model" $CLIPN info "$T/h.heads" --model $MODEL --json
printf '%s\n' $IMG/photo_chelsea_q80.jpg | $VG $CLIPN preprocess --size 32 --out "$T/l.npy" --list - \
    >/dev/null 2>"$T/err" || { echo "FAIL preprocess --list -"; head -c 3000 "$T/err"; fails=$((fails + 1)); }
# error paths free what they allocated too
WANT=1 run "classify, bad image" $CLIPN classify --model $MODEL --head "$T/h.heads" \
    $IMG/bad_truncated.jpg
WANT=1 run "damaged model" $CLIPN embed-text --model tests/fixtures/images/edge_rgb.ppm \
    --out "$T/x.npy" cat
head -c 1100000 /dev/zero | tr '\0' a >"$T/big.txt"
WANT=1 run "text over 1 MiB" $CLIPN tokenize --model $MODEL --file "$T/big.txt"
echo "valgrind: $fails failed"
[ $fails = 0 ]
