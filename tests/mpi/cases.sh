#!/bin/sh
# The workload tests/mpi/run.sh compares: every distributed subcommand, its stdout, stderr,
# exit status and output files, written to OUT/<case>.{out,err,rc} and OUT/<case>.<file>.
#   sh tests/mpi/cases.sh OUT RUNNER...     e.g. RUNNER = build/clipn, or mpirun ... clipn-mpi
# Run from the repo root. STATE_OPT (optional) is put in front of every command's options.
set -u
OUT=$1
shift
M=tests/fixtures/model/tiny_clipn.safetensors
I=tests/fixtures/images
W=$OUT/work
mkdir -p "$W"
printf 'cat\ndog\nastronaut\ncoffee\nflower\nrocket\nmotorcycle\nmoon\nbrick\n' > "$W/classes.txt"
head -n 5 data/clipn_templates_official.txt > "$W/templates.txt"
printf 'a photo of a cat\nan astronaut\nsomething else entirely\nx\n%s\n' \
    "a long prompt that goes on and on about a tench in a pond near the old mill" > "$W/texts.txt"
GOOD="$I/photo_astronaut_face.jpg $I/photo_chelsea_q80.jpg $I/photo_coffee_q92_422.jpg
      $I/photo_china_q90.jpg $I/photo_motorcycle_square_q95.jpg $I/photo_flower_q75_444.jpg
      $I/photo_rocket_portrait.jpg $I/edge_1x1.png $I/edge_40x1500.jpg"
OODS="$I/photo_brick_gray.jpg $I/photo_gravel.bmp $I/photo_grass_gray.png $I/photo_moon_gray.png
      $I/photo_coins_gray.png $I/edge_gray.gif"
for f in $GOOD $I/bad_truncated.jpg $I/bad_text.png; do echo "$f"; done > "$W/id.txt"
echo "$I/photo_chelsea_q80.jpg,cat" >> "$W/id.txt"
for f in $OODS $I/bad_empty.jpg; do echo "$f"; done > "$W/ood.txt"
# a text over the tokenizer's 1 MiB limit in the middle: the first failing text is reported
{ head -n 3 "$W/texts.txt"; head -c 1100000 /dev/zero | tr '\0' a; echo; cat "$W/texts.txt"; } \
    > "$W/texts_bad.txt"

# case NAME CMD ARGS...: the runner's output of one subcommand
case_() {
    name=$1
    shift
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
    echo $? >"$OUT/$name.rc"
}
# shellcheck disable=SC2086
{
case_ head "$@" head ${STATE_OPT:-} --model $M --classes "$W/classes.txt" \
    --templates "$W/templates.txt" --threads 1 --out "$OUT/head.safetensors"
case_ classify "$@" classify ${STATE_OPT:-} --model $M --head "$OUT/head.safetensors" \
    --threads 1 --top 3 $GOOD $I/bad_truncated.jpg $OODS $I/bad_text.png
case_ classify_json "$@" classify ${STATE_OPT:-} --json --model $M --classes "$W/classes.txt" \
    --templates "$W/templates.txt" --threads 1 $GOOD $I/bad_empty.jpg $OODS
case_ eval "$@" eval ${STATE_OPT:-} --model $M --head "$OUT/head.safetensors" --threads 1 \
    --batch 3 --id "$W/id.txt" --ood photos="$W/ood.txt" --ood again="$W/ood.txt" \
    --scores-csv "$OUT/eval.scores.csv" --roc-csv "$OUT/eval.roc.csv"
case_ eval_json "$@" eval ${STATE_OPT:-} --json --model $M --classes "$W/classes.txt" \
    --templates "$W/templates.txt" --no-templates "$W/templates.txt" --threads 1 \
    --id "$W/id.txt" --ood photos="$W/ood.txt" --fpr95 nearest
case_ embed_image "$@" embed-image ${STATE_OPT:-} --model $M --batch 2 \
    --out "$OUT/embed_image.npy" $GOOD $OODS
case_ embed_image_bad "$@" embed-image ${STATE_OPT:-} --model $M \
    --out "$OUT/embed_image_bad.npy" $GOOD $I/bad_truncated.jpg $OODS
case_ embed_text "$@" embed-text ${STATE_OPT:-} --model $M --file "$W/texts.txt" \
    --out "$OUT/embed_text.npy"
case_ embed_text_bad "$@" embed-text ${STATE_OPT:-} --model $M --file "$W/texts_bad.txt" \
    --out "$OUT/embed_text_bad.npy"
case_ embed_text_no "$@" embed-text ${STATE_OPT:-} --no --model $M --batch 2 \
    --out "$OUT/embed_text_no.npy" "a photo of a dog" "no dog" "a"
}
rm -rf "$W"
