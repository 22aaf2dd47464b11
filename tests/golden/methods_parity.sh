#!/bin/sh
# GL-MCM and NegLabel in libclipn against the official algorithms restated in PyTorch
# (tests/golden/ref_methods.py) on the tiny CLIPN fixture (official structure, random
# weights): local features, GL-MCM and NegLabel scores through `clipn classify --json`,
# the NegLabel selection of `clipn neg-labels`, the WordNet reader on a small fixture,
# and eval's metrics and scores CSV. About 10 s.
#   sh tests/golden/methods_parity.sh [PYTHON] [BUILD_DIR]     (from the repo root)
set -eu
PY=${1:-/usr/bin/python3}
B=${2:-build}
T=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
I=tests/fixtures/images
WN=tests/fixtures/wordnet
G=tests/golden
PHOTOS="$I/photo_chelsea_q80.jpg $I/photo_coffee_q92_422.jpg $I/photo_astronaut_face.jpg
        $I/photo_brick_gray.jpg $I/photo_gravel.bmp $I/photo_moon_gray.png"
$PY weights_tools/clipn_convert.py -q tests/fixtures/ckpt/tiny_clipn.pt "$T/model.clipn"
M="$T/model.clipn"
printf 'tench\ngoldfish\ngreat white shark\ntiger shark\nhammerhead shark\nelectric ray\nstingray\ncock\nhen\nostrich\n' \
    > "$T/id_classes.txt"

# NegLabel mining over the WordNet fixture, and the reference's own reading of it
$PY $G/ref_methods.py words $WN "$T/id_classes.txt" "$T"
for part in id noun adj; do
    $B/clipn tokenize --model "$M" --file "$T/${part}_prompts.txt" > "$T/${part}_prompt_ids.txt"
done
$B/clipn neg-labels --model "$M" --classes "$T/id_classes.txt" --wordnet $WN --fraction 0.4 \
    --out "$T/neg.txt" --nouns-out "$T/cli_nouns.txt" --adjectives-out "$T/cli_adjectives.txt"
$B/clipn tokenize --model "$M" --file "$T/neg.txt" > "$T/neg_ids.txt"

# images: the CLI's own preprocessing feeds both sides
# shellcheck disable=SC2086
$B/clipn preprocess --model "$M" --out "$T/pixels.npy" $PHOTOS
$PY $G/ref_methods.py make tests/fixtures/ckpt/tiny_clipn.pt "$T"
$B/clipn embed-image --model "$M" --pixels "$T/pixels.npy" --out "$T/global.npy" \
    --local-out "$T/local.npy"
echo 'the nice {}' > "$T/templates.txt"
for g in 4 1; do
    $B/clipn head --model "$M" --classes "$T/id_classes.txt" --templates "$T/templates.txt" \
        --negatives "$T/neg.txt" --neg-groups $g --out "$T/heads$g.safetensors" 2> /dev/null
done
# shellcheck disable=SC2086
$B/clipn classify --json --model "$M" --head "$T/heads4.safetensors" $PHOTOS > "$T/classify.jsonl"
# shellcheck disable=SC2086
$B/clipn classify --json --model "$M" --head "$T/heads1.safetensors" $PHOTOS > "$T/classify1.jsonl"
echo "$PHOTOS" | tr ' ' '\n' | grep . | head -n 3 > "$T/id.txt"
echo "$PHOTOS" | tr ' ' '\n' | grep . | tail -n 3 > "$T/ood.txt"
$B/clipn eval --json --model "$M" --head "$T/heads4.safetensors" --id "$T/id.txt" \
    --ood photos="$T/ood.txt" --scores-csv "$T/scores.csv" > "$T/eval.json"
$PY $G/ref_methods.py check "$T"
