#!/bin/sh
# The main job, end to end, on a RANDOM-WEIGHT model (no real CLIPN weights exist here):
# make a checkpoint in the official CLIPN training format, convert it without PyTorch,
# inspect it, build yes/no class heads, classify images and run an OOD evaluation.
set -eu
cd "$(dirname "$0")/.."
PY_TORCH=${PY_TORCH:-/usr/bin/python3}
W=build/demo
mkdir -p "$W"
banner() { printf '\n== %s\n' "$*"; }

cat <<'MSG'
######################################################################################
#  DEMO ON RANDOM WEIGHTS. The checkpoint below is generated with seeded random       #
#  weights in the official CLIPN structure. Predictions and OOD verdicts are          #
#  meaningless; this shows the pipeline working. Real weights: docs/converting.md.    #
######################################################################################
MSG

if [ ! -f "$W/clipn_small.pt" ]; then
    banner "1. a CLIPN training checkpoint (small config, random weights) via PyTorch"
    "$PY_TORCH" tests/golden/make_checkpoint.py --preset small --seed 1 --format clipn \
        --out "$W/clipn_small.pt"
fi
banner "2. convert it with the standard library only: python3 -I -S weights_tools/clipn_convert.py"
python3 -I -S weights_tools/clipn_convert.py "$W/clipn_small.pt" "$W/clipn_small.safetensors"

banner "3. clipn info"
build/clipn info "$W/clipn_small.safetensors"

printf 'golden retriever\ntabby cat\nred fox\nespresso\nteapot\n' > "$W/classes.txt"
banner "4. class heads for $(wc -l < "$W/classes.txt") classes x 128 official templates x 2 towers"
build/clipn head --model "$W/clipn_small.safetensors" --classes "$W/classes.txt" \
    --out "$W/heads.safetensors"

IMGS=tests/fixtures/images
ls $IMGS/photo_*.jpg $IMGS/photo_*.png > "$W/id.txt"
ls $IMGS/edge_*.png $IMGS/edge_*.jpg > "$W/ood.txt"
banner "5. clipn classify (table, then --json)"
set -- $IMGS/photo_chelsea_q80.jpg $IMGS/photo_coffee_q92_422.jpg $IMGS/photo_rocket_portrait.jpg
build/clipn classify --model "$W/clipn_small.safetensors" --head "$W/heads.safetensors" --top 3 "$@"
build/clipn classify --model "$W/clipn_small.safetensors" --head "$W/heads.safetensors" --top 2 --json "$1"

banner "6. clipn eval: OOD metrics (ID = $(wc -l < "$W/id.txt") photos, OOD = $(wc -l < "$W/ood.txt") synthetic edge-case images)"
build/clipn eval --model "$W/clipn_small.safetensors" --head "$W/heads.safetensors" \
    --id "$W/id.txt" --ood edge="$W/ood.txt" --plot "$W/roc.svg"
echo "ROC plot: $W/roc.svg"
echo
echo "RANDOM WEIGHTS: the numbers above measure nothing about CLIPN; they show the pipeline runs."
