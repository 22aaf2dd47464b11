#!/bin/sh
# End-to-end: `clipn head/classify/eval` on the tiny converted CLIPN fixture and real photos
# against the official scoring and metric code run in PyTorch (tests/golden/ref_scores.py).
#   sh tests/golden/e2e_scores.sh [PYTHON] [BUILD_DIR]     (from the repo root)
set -eu
PY=${1:-/usr/bin/python3}
B=${2:-build}
T=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
I=tests/fixtures/images
$PY weights_tools/clipn_convert.py -q --heads-vision 1 --heads-text 1 \
    tests/fixtures/ckpt/tiny_clipn.pt "$T/model.clipn"
$PY tests/golden/ref_scores.py make tests/fixtures/ckpt/tiny_clipn.pt "$T" \
    --id $I/photo_astronaut_face.jpg $I/photo_chelsea_q80.jpg $I/photo_coffee_q92_422.jpg \
         $I/photo_china_q90.jpg $I/photo_motorcycle_square_q95.jpg $I/photo_flower_q75_444.jpg \
         $I/photo_rocket_portrait.jpg $I/bad_truncated.jpg \
    --ood $I/photo_brick_gray.jpg $I/photo_gravel.bmp $I/photo_grass_gray.png \
          $I/photo_moon_gray.png $I/photo_coins_gray.png $I/photo_retina.jpg $I/photo_ihc_q70.jpg
$B/clipn head --model "$T/model.clipn" --classes "$T/classes.txt" \
    --yes-npy "$T/heads_yes.npy" --no-npy "$T/heads_no.npy" --out "$T/heads.safetensors"
# classify skips the unreadable image and exits 1 for it; the rest must be there
$B/clipn classify --json --top 4 --model "$T/model.clipn" --head "$T/heads.safetensors" \
    $(cat "$T/id.txt" "$T/ood.txt") > "$T/classify.jsonl" || true
# eval likewise: it reports and writes everything else, then exits 1 for the skipped image
rc=0
$B/clipn eval --json --model "$T/model.clipn" --head "$T/heads.safetensors" \
    --id "$T/id.txt" --ood photos="$T/ood.txt" --scores-csv "$T/scores.csv" > "$T/eval.json" \
    2> "$T/eval.err" || rc=$?
if [ $rc != 1 ] || ! grep -q 'bad_truncated.jpg.*(skipped)' "$T/eval.err"; then
    echo "e2e: eval should skip bad_truncated.jpg and exit 1, got $rc:"; cat "$T/eval.err"; exit 1
fi
$PY tests/golden/ref_scores.py check "$T"

# Heads from text: `clipn head` against merge_yes_no_feature on the reference model.
printf 'tench\ngoldfish\ngreat white shark\ntiger shark\nhammerhead shark\n' > "$T/text_classes.txt"
head -n 7 data/clipn_templates_official.txt > "$T/text_templates.txt"
$B/clipn head --model "$T/model.clipn" --classes "$T/text_classes.txt" \
    --templates "$T/text_templates.txt" --out "$T/heads_text.safetensors"
$PY tests/golden/ref_scores.py prompts "$T"
$B/clipn tokenize --model "$T/model.clipn" --file "$T/prompts.txt" > "$T/prompt_ids.txt"
$PY tests/golden/ref_scores.py heads tests/fixtures/ckpt/tiny_clipn.pt "$T"
