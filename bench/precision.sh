#!/bin/sh
# `make bench`, last part (issue 15): libclipn at fp32, bf16 and int8 side by side with
# PyTorch 2.x and ONNX Runtime as users install them (PyPI, into a venv under $BUILD, made
# at bench time; one line and skipped when PyPI is unreachable), each with its own INT8;
# then the drift table: each precision against fp32 on the parity models and the outlier
# stress model (tests/golden/make_checkpoint.py --ln-outliers), the ViT-B-16 int8 file
# against its f32 file, and the same models through the CLI on the e2e eval set (top-1,
# score and AUROC / FPR95 changes; bench/precision_e2e.py).
#   BUILD=build WORK=build/bench-work sh bench/precision.sh
#   BENCH_VENV=0     skip the PyTorch 2.x / ONNX Runtime venv
#   BENCH_DRIFT=0    skip the drift table (it makes 2 ViT-B-16 models + PyTorch references)
set -u
BUILD=${BUILD:-build}
WORK=${BENCH_WORK:-$BUILD/bench-work}
PY=${PYTHON_TORCH:-/usr/bin/python3}
TORCH_VERSION=${TORCH_VERSION:-2.5.1}
here=$(dirname "$0")
VENV=$BUILD/bench-venv
R=$WORK/precision_results.txt
export BENCH_WORK="$WORK"
mkdir -p "$WORK"
: >"$R"

venv_ok=0
if [ "${BENCH_VENV:-1}" != 0 ]; then
    if ! "$VENV/bin/python" -c "import torch, onnxruntime, onnx" 2>/dev/null; then
        echo "== installing torch==$TORCH_VERSION, onnxruntime and onnx from PyPI into $VENV"
        { python3 -m venv "$VENV" &&
          "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" onnxruntime onnx numpy; } \
            >"$VENV.log" 2>&1 || echo "== PyTorch 2.x / ONNX Runtime: skipped (pip failed or PyPI unreachable: $VENV.log)"
    fi
    "$VENV/bin/python" -c "import torch, onnxruntime, onnx" 2>/dev/null && venv_ok=1
else
    echo "== PyTorch 2.x / ONNX Runtime: skipped (BENCH_VENV=0)"
fi

if [ -f "$WORK/vit-b-16.clipn" ] && [ -x "$BUILD/bench/bench_encode" ]; then
    echo "== precision: image and text towers at fp32 / bf16 / int8, two interleaved rounds"
    for round in 1 2; do
        for w in fp32 bf16 int8; do
            # resident memory after the 1000 class prompts through both towers: round 1 only
            [ $round = 1 ] && mem_prompts=1000 || mem_prompts=0
            CLIPN_WEIGHTS=$w BENCH_MEM_PROMPTS=$mem_prompts "$BUILD/bench/bench_encode" \
                "$WORK/vit-b-16.clipn" 3 >"$WORK/prec_$w.txt" 2>&1
            line=$(grep '^RESULT' "$WORK/prec_$w.txt" | sed "s/^RESULT //")
            rm -f "$WORK/text_c.txt"
            CLIPN_WEIGHTS=$w "$BUILD/bench/bench_text" >"$WORK/prec_text_$w.txt" 2>&1
            t1=$(awk '$1 == "yes_b1" { print $2 }' "$WORK/text_c.txt" 2>/dev/null)
            t8=$(awk '$1 == "yes_batch_unshared" { print $2 }' "$WORK/text_c.txt" 2>/dev/null)
            echo "RESULT C_$w $line txt_b1_ms=${t1:-0} txt_b8_ms=${t8:-0}" | tee -a "$R"
            grep -i "note\|fall" "$WORK/prec_$w.txt" | head -2
        done
        if [ "$venv_ok" = 1 ] && [ -f "$WORK/vit-b-16.pt" ]; then
            "$VENV/bin/python" "$here/venv_bench.py" "$WORK/vit-b-16.pt" "$WORK/venv" 3 2>/dev/null |
                tee -a "$R.log" | grep '^RESULT' | tee -a "$R"
        fi
    done
    if [ -x "$BUILD/bench/bench_heads" ]; then
        for w in fp32 int8; do
            echo "-- heads slice, CLIPN_WEIGHTS=$w"
            CLIPN_WEIGHTS=$w "$BUILD/bench/bench_heads" | tail -2
        done
    fi
    # bests over the rounds; ratios against PyTorch fp32 of this run
    awk '
        { k = $2; for (i = 3; i <= NF; i++) { split($i, kv, "="); x = kv[2] + 0
              n = kv[1] == "b1_ms" ? "img_b1_ms" : kv[1] == "b8_ms" ? "img_b8_ms" : kv[1]
              if (n ~ /_ms$/) { if (!((k, n) in v) || x < v[k, n]) v[k, n] = x }
              else if (n != "rss_all_mb" || x > 0) v[k, n] = x }
          if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }
        END {
          t = "torch_fp32"
          printf "%-12s %10s %12s %10s %13s %9s %9s %9s %9s\n", "", "img b1 ms", "img b8 ms/im",
                 "txt b1 ms", "txt b8 ms/pr", "RSS/file", "RSS/file", "x torch", "x torch"
          printf "%-12s %10s %12s %10s %13s %9s %9s %9s %9s\n", "", "", "", "", "", "images",
                 "after all", "img b1", "img b8"
          for (j = 1; j <= nk; j++) { k = order[j]
              rs = (k, "rss_mb") in v ? sprintf("%.2f", v[k, "rss_mb"] / v[k, "file_mb"]) : "-"
              ra = "-"
              if ((k, "rss_all_mb") in v && v[k, "rss_all_mb"] > 0)
                  ra = sprintf("%.2f", v[k, "rss_all_mb"] / v[k, "file_mb"])
              r1 = ((t, "img_b1_ms") in v) ? sprintf("%.2f", v[t, "img_b1_ms"] / v[k, "img_b1_ms"]) : "-"
              r8 = ((t, "img_b8_ms") in v) ? sprintf("%.2f", v[t, "img_b8_ms"] / v[k, "img_b8_ms"]) : "-"
              printf "%-12s %10.1f %12.1f %10.2f %13.2f %9s %9s %9s %9s\n", k, v[k, "img_b1_ms"],
                     v[k, "img_b8_ms"], v[k, "txt_b1_ms"], v[k, "txt_b8_ms"], rs, ra, r1, r8 }
          if (("C_int8", "txt_b1_ms") in v && v["C_int8", "txt_b1_ms"] > 0)
              printf "C text batch 1: int8 %.2fx fp32\n", v["C_fp32", "txt_b1_ms"] / v["C_int8", "txt_b1_ms"] }
    ' "$R"
else
    echo "== precision: skipped (needs $WORK/vit-b-16.clipn and bench_encode)"
fi

# ---- drift: each model at bf16 and int8 against itself at fp32 (tests/golden/parity.c)
[ "${BENCH_DRIFT:-1}" != 0 ] || { echo "== drift: skipped (BENCH_DRIFT=0)"; exit 0; }
"$PY" -c "import torch" 2>/dev/null || { echo "== drift: skipped (no torch in $PY)"; exit 0; }
[ -x "$BUILD/golden_parity" ] || make -s "$BUILD/golden_parity" BUILD="$BUILD" >/dev/null
D=$WORK/drift
mkdir -p "$D"
G=tests/golden
PHOTOS="--photo tests/fixtures/images/photo_chelsea_q80.jpg --photo tests/fixtures/images/photo_coffee_q92_422.jpg"
echo "== drift vs fp32 (1 - min cosine over the parity images/prompts; top-1 changes; max |CTW|, |ATD| change; AUROC/FPR95 change on the half-ID/half-OOD parity split)"
# label preset checkpoint-flags min-cosine
models=""
for spec in "small small - 0.999" "vit-b-16 vit-b-16 - 0.999" "vit-b-16-outliers vit-b-16 --ln-outliers 0.99"; do
    # shellcheck disable=SC2086
    set -- $spec
    label=$1 preset=$2 flags=$3 mincos=$4
    [ "$flags" = - ] && flags=""
    if [ ! -f "$D/ref_$label/pixels.npy" ]; then
        # shellcheck disable=SC2086
        "$PY" $G/make_checkpoint.py --preset "$preset" --seed 5 $flags --out "$D/$label.pt" &&
        python3 -I -S weights_tools/clipn_convert.py -q "$D/$label.pt" "$D/$label.clipn" &&
        # shellcheck disable=SC2086
        "$PY" $G/reference_model.py "$D/$label.pt" "$D/ref_$label" --seed 5 $PHOTOS >/dev/null ||
            { echo "-- $label: could not be made, skipped"; continue; }
    fi
    for p in bf16 int8; do
        "$BUILD/golden_parity" --drift $p "$D/$label.clipn" "$D/ref_$label" "$label" "$mincos" 0.02 |
            grep -v 'tol 1e+09' | sed 's/(tol 1e+09)//'
    done
    models="$models $label"
    # the int8 file (clipn_convert.py --dtype int8; a few minutes for a ViT-B-16, kept)
    if [ "$label" = vit-b-16 ]; then
        if [ ! -f "$D/$label-int8.clipn" ] || [ "$D/$label.pt" -nt "$D/$label-int8.clipn" ]; then
            python3 -I -S weights_tools/clipn_convert.py -q --dtype int8 "$D/$label.pt" \
                "$D/$label-int8.clipn" || echo "-- $label int8 file: could not be made"
        fi
        [ -f "$D/$label-int8.clipn" ] &&
            "$BUILD/golden_parity" --drift-file "$D/$label-int8.clipn" "$D/$label.clipn" \
                "$D/ref_$label" "$label" "$mincos" 0.02 | grep -v 'tol 1e+09' | sed 's/(tol 1e+09)//'
    fi
done

# ---- the same models through the CLI on the e2e eval set (tests/golden/e2e_scores.sh's
# photos: 7 ID, 7 OOD), heads of 10 ImageNet classes x 7 official templates built at each
# precision: top-1 and score changes per image, AUROC / FPR95 change per score
E=$D/e2e
mkdir -p "$E"
I=tests/fixtures/images
for f in photo_astronaut_face.jpg photo_chelsea_q80.jpg photo_coffee_q92_422.jpg photo_china_q90.jpg \
         photo_motorcycle_square_q95.jpg photo_flower_q75_444.jpg photo_rocket_portrait.jpg; do
    echo "$I/$f"; done >"$E/id.txt"
for f in photo_brick_gray.jpg photo_gravel.bmp photo_grass_gray.png photo_moon_gray.png \
         photo_coins_gray.png photo_retina.jpg photo_ihc_q70.jpg; do echo "$I/$f"; done >"$E/ood.txt"
head -n 10 data/imagenet_classes.txt >"$E/classes.txt"
head -n 7 data/clipn_templates_official.txt >"$E/templates.txt"
echo "== drift on the e2e eval set (CLI; heads built at each precision)"
for label in ${models:-}; do
    M=$D/$label.clipn
    for p in fp32 bf16 int8; do
        W=$E/$label
        mkdir -p "$W"
        "$BUILD/clipn" head --model "$M" --precision $p --classes "$E/classes.txt" \
            --templates "$E/templates.txt" --out "$W/heads_$p.safetensors" 2>/dev/null &&
        "$BUILD/clipn" classify --json --top 1 --model "$M" --precision $p \
            --head "$W/heads_$p.safetensors" $(cat "$E/id.txt" "$E/ood.txt") \
            >"$W/classify_$p.jsonl" 2>/dev/null &&
        "$BUILD/clipn" eval --json --model "$M" --precision $p --head "$W/heads_$p.safetensors" \
            --id "$E/id.txt" --ood photos="$E/ood.txt" >"$W/eval_$p.json" 2>/dev/null ||
            { echo "-- $label $p: clipn failed"; continue; }
        [ $p = fp32 ] || python3 -I -S "$here/precision_e2e.py" "$label" $p "$W"
    done
done
