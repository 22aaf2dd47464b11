#!/bin/sh
# `make bench`: kernel GFLOP/s vs this machine's OpenBLAS, then whatever other benches are
# built (encode, tokenizer, image), then PyTorch on the same shapes when torch imports.
#   BUILD=build-x sh bench/run.sh      (default build)
#   BENCH_THREADS=1 sh bench/run.sh    (default: all cores)
#   PYTHON_TORCH=/usr/bin/python3      (interpreter with torch; skipped if it has none)
set -e
BUILD=${BUILD:-build}
THREADS=${BENCH_THREADS:-0}
PY=${PYTHON_TORCH:-/usr/bin/python3}
here=$(dirname "$0")

echo "== bench_kernels (threads: ${THREADS:-all}; 0 = all cores)"
"$BUILD/bench/bench_kernels" "$THREADS"

# bench_encode (image tower end to end) runs at the end, next to PyTorch: see below.
for b in "$BUILD"/bench/bench_*; do
    case "$b" in
    */bench_kernels | */bench_encode | */bench_text | */bench_heads | */bench_methods) ;; # below
    *) [ -x "$b" ] && { echo "== $(basename "$b")"; "$b"; } ;;
    esac
done

if "$PY" -c "import torch" 2>/dev/null; then
    echo "== PyTorch side by side ($PY)"
    "$PY" "$here/torch_kernels.py" "$THREADS"
else
    echo "== PyTorch: not importable with $PY, skipped"
fi

# Text towers and ImageNet-1K class heads (textspeed): a random ViT-B-16 CLIPN model made
# once in $BUILD/bench-work when torch imports, then per-prompt encode times, PyTorch on the
# same prompts (ratios), and a 1000 x 8 x 2 slice of the heads workload, extrapolated.
WORK="$BUILD/bench-work"
mkdir -p "$WORK"
if [ ! -f "$WORK/vit-b-16.clipn" ] && "$PY" -c "import torch" 2>/dev/null; then
    echo "== making a random ViT-B-16 CLIPN model in $WORK (once)"
    "$PY" tests/golden/make_checkpoint.py --preset vit-b-16 --seed 1 --format clipn \
        --out "$WORK/vit-b-16.pt"
    python3 -I -S weights_tools/clipn_convert.py "$WORK/vit-b-16.pt" "$WORK/vit-b-16.clipn"
fi
export BENCH_WORK="$WORK"
rm -f "$WORK/text_c.txt"
if [ -x "$BUILD/bench/bench_text" ]; then
    echo "== bench_text"
    "$BUILD/bench/bench_text"
fi
if [ -f "$WORK/text_c.txt" ] && [ -f "$WORK/vit-b-16.pt" ] && "$PY" -c "import torch" 2>/dev/null
then
    echo "== PyTorch text towers, same prompts ($PY)"
    "$PY" "$here/torch_text.py" "$WORK/vit-b-16.pt" "$WORK"
fi
if [ -x "$BUILD/bench/bench_heads" ]; then
    echo "== bench_heads"
    "$BUILD/bench/bench_heads"
fi
# GL-MCM's cost on an image encode and NegLabel mining over the full WordNet (ViT-B-16)
if [ -x "$BUILD/bench/bench_methods" ]; then
    echo "== bench_methods"
    "$BUILD/bench/bench_methods"
fi

# ONNX Runtime side by side (issue 7): onnxruntime-node from npm, installed here at bench time
# into $BUILD/ort (its install script is skipped: it would fetch GPU bits), the three towers
# exported from the same checkpoint by bench/ort_export.py, and bench/ort_bench.js run in
# the image loop below on the same pixels and token ids as C, outputs checked first.
# BENCH_ORT=0 skips it; any missing piece prints one line and the rest of the bench goes on.
ORT_VERSION=${ORT_VERSION:-1.30.0}
ORT_DIR="$BUILD/ort"
ORT_MOD="$ORT_DIR/node_modules/onnxruntime-node"
OW="$WORK/ort"
have_ort=0
ort_skip() { echo "== ONNX Runtime: skipped ($1)"; }
ort_setup() {
    [ "${BENCH_ORT:-1}" != 0 ] || { ort_skip "BENCH_ORT=0"; return; }
    command -v node >/dev/null 2>&1 || { ort_skip "node not found"; return; }
    [ -x "$BUILD/bench/bench_encode" ] && [ -f "$WORK/vit-b-16.clipn" ] && [ -f "$WORK/vit-b-16.pt" ] &&
        "$PY" -c "import torch" 2>/dev/null ||
        { ort_skip "needs bench_encode, the bench model and torch to export from"; return; }
    mkdir -p "$ORT_DIR" "$OW"
    if ! grep -q "\"version\": \"$ORT_VERSION\"" "$ORT_MOD/package.json" 2>/dev/null; then
        command -v npm >/dev/null 2>&1 || { ort_skip "npm not found"; return; }
        echo "== installing onnxruntime-node@$ORT_VERSION into $ORT_DIR (npm, scripts off)"
        npm install --ignore-scripts --no-save --no-audit --no-fund --prefix "$ORT_DIR" \
            "onnxruntime-node@$ORT_VERSION" >"$ORT_DIR/npm.log" 2>&1 ||
            { ort_skip "npm install failed: $(grep -v 'complete log' "$ORT_DIR/npm.log" | head -n 2 | tr '\n' ' ')"; return; }
    fi
    node -e 'require(require("path").resolve(process.argv[1]))' "$ORT_MOD" >"$ORT_DIR/load.log" 2>&1 ||
        { ort_skip "onnxruntime-node does not load: $(head -n 1 "$ORT_DIR/load.log")"; return; }
    # Inputs for both sides: 8 photos preprocessed by C, the first 64 prompts of bench_text
    # (template 0 x the first 64 ImageNet classes) plus 2 prompts cut at 77 tokens; C's
    # features of them. ids77.txt: 64 prompts of 77 tokens for C's like-for-like text timing.
    M="$WORK/vit-b-16.clipn"
    tmpl=$(sed -n 1p data/clipn_templates_official.txt)
    head -n 64 data/imagenet_classes.txt |
        awk -v t="$tmpl" '{ i = index(t, "{}"); print substr(t, 1, i - 1) $0 substr(t, i + 2) }' >"$OW/texts.txt"
    for w in "a small grey cat sitting on a red chair," "many birds flying over the sea at dawn;"; do
        awk -v w="$w" 'BEGIN { s = "a long caption:"; for (i = 0; i < 12; i++) s = s " " w; print s }'
    done >>"$OW/texts.txt"
    head -n 64 data/imagenet_classes.txt |
        awk '{ s = $0; for (i = 0; i < 12; i++) s = s " sitting on a red chair next to a window,"; print s }' >"$OW/texts77.txt"
    { "$BUILD/clipn" preprocess --model "$M" --out "$OW/pixels.npy" $(ls tests/fixtures/images/photo_*.jpg | head -n 8) &&
      "$BUILD/clipn" embed-image --model "$M" --pixels "$OW/pixels.npy" --out "$OW/c_image.npy" &&
      "$BUILD/clipn" tokenize --model "$M" --file "$OW/texts.txt" >"$OW/ids.txt" &&
      "$BUILD/clipn" tokenize --model "$M" --file "$OW/texts77.txt" >"$OW/ids77.txt" &&
      "$BUILD/clipn" embed-text --model "$M" --file "$OW/texts.txt" --out "$OW/c_yes.npy" &&
      "$BUILD/clipn" embed-text --no --model "$M" --file "$OW/texts.txt" --out "$OW/c_no.npy"; } ||
        { ort_skip "clipn could not make the inputs"; return; }
    # export again whenever the checkpoint, the inputs or the exporting code changed
    stamp=$(cat "$WORK/vit-b-16.pt" "$OW/pixels.npy" "$OW/ids.txt" "$here/ort_export.py" \
                tests/golden/reference_model.py | md5sum)
    if [ "$(cat "$OW/export.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$OW/text_no.onnx" ]; then
        echo "== exporting the towers to ONNX ($OW)"
        rm -f "$OW/export.stamp"
        "$PY" "$here/ort_export.py" "$WORK/vit-b-16.pt" "$OW" --pixels "$OW/pixels.npy" \
            --ids "$OW/ids.txt" >"$OW/export.log" 2>&1 ||
            { ort_skip "ort_export.py failed: $(tail -n 1 "$OW/export.log")"; return; }
        grep -v -i warn "$OW/export.log" || true
        echo "$stamp" >"$OW/export.stamp"
    fi
    have_ort=1
}
ort_run() { # KEY THREADS [ARGS]: one ort_bench.js run, its RESULT line kept under KEY
    key=$1 threads=$2
    shift 2
    ids_arg=
    [ -f "$WORK/text_ids.i32" ] && ids_arg="--text-ids $WORK/text_ids.i32"
    if node "$here/ort_bench.js" --ort "$ORT_MOD" --dir "$OW" --threads "$threads" --rounds 3 \
        $ids_arg "$@" >"$OW/run.txt" 2>&1; then
        cat "$OW/run.txt"
        grep '^RESULT' "$OW/run.txt" | sed "s/^RESULT/$key/" >>"$WORK/encode_results.txt"
    else
        cat "$OW/run.txt"
        echo "== ONNX Runtime: ort_bench.js failed (above); no ONNX Runtime numbers"
        have_ort=0
    fi
}

# Image tower end to end (perf): bench_encode and bench/torch_encode.py on the same random
# ViT-B-16, alternated BENCH_ENCODE_RUNS times (machine load hits both alike), best of each
# kept; then the C side once more with CLIPN_GEMM=openblas for its memory. Ratios = torch/C.
# ONNX Runtime (2 threads) and C's text tower at 77 positions run in the same loop; ORT on
# 1 thread once after it, with its memory after a batch of 32.
if [ -x "$BUILD/bench/bench_encode" ] && [ -f "$WORK/vit-b-16.clipn" ]; then
    ort_setup
    echo "== bench_encode vs PyTorch image tower (alternated ${BENCH_ENCODE_RUNS:-3}x)"
    have_torch=0
    [ -f "$WORK/vit-b-16.pt" ] && "$PY" -c "import torch" 2>/dev/null && have_torch=1
    : >"$WORK/encode_results.txt"
    i=0
    while [ "$i" -lt "${BENCH_ENCODE_RUNS:-3}" ]; do
        # memory after 1000 prompts through both text towers: first alternation only
        [ "$i" = 0 ] && mem_prompts=1000 || mem_prompts=0
        BENCH_MEM_PROMPTS=$mem_prompts "$BUILD/bench/bench_encode" "$WORK/vit-b-16.clipn" 3 |
            tee "$WORK/encode_c.txt"
        grep '^RESULT' "$WORK/encode_c.txt" | sed 's/^RESULT/C/' >>"$WORK/encode_results.txt"
        if [ "$have_torch" = 1 ]; then
            "$PY" "$here/torch_encode.py" "$WORK/vit-b-16.pt" 3 | tee "$WORK/encode_torch.txt"
            grep '^RESULT' "$WORK/encode_torch.txt" | sed 's/^RESULT/T/' >>"$WORK/encode_results.txt"
        fi
        # BF16 weights (AMX when the CPU has it): same model, same run, vs the same PyTorch
        CLIPN_WEIGHTS=bf16 BENCH_MEM_PROMPTS=0 "$BUILD/bench/bench_encode" "$WORK/vit-b-16.clipn" 3 \
            >"$WORK/encode_bf16.txt"
        grep '^RESULT' "$WORK/encode_bf16.txt" | sed 's/^RESULT/B/' >>"$WORK/encode_results.txt"
        if [ "$have_ort" = 1 ]; then
            ort_run O 2
            # C's (through libclipn.so) and PyTorch's text tower on 77-token prompts
            "$PY" "$here/ort_text77.py" "$BUILD/libclipn.so" "$WORK/vit-b-16.clipn" "$OW/ids77.txt" 3 \
                --torch "$WORK/vit-b-16.pt" >"$OW/c77.txt" || echo "-- text at 77 positions: ort_text77.py failed"
            cat "$OW/c77.txt"
            grep '^X ' "$OW/c77.txt" >>"$WORK/encode_results.txt" || true
        fi
        i=$((i + 1))
    done
    echo "-- CLIPN_GEMM=openblas (memory: nothing packed, the mapping is the weight store)"
    CLIPN_GEMM=openblas BENCH_MEM_PROMPTS=0 "$BUILD/bench/bench_encode" "$WORK/vit-b-16.clipn" 1 |
        grep -E '^memory|batch' || true
    awk '
        { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[$1, kv[1]] = kv[2] }
          k = $1; b1 = v[k, "b1_ms"] + 0; b8 = v[k, "b8_ms"] + 0
          if (!(k in best1) || b1 < best1[k]) best1[k] = b1
          if (!(k in best8) || b8 < best8[k]) best8[k] = b8
          if (k != "C" && k != "T") next
          if (k == "C") { if (v[k, "sgemm1"] > s1) s1 = v[k, "sgemm1"]; if (v[k, "sgemm8"] > s8) s8 = v[k, "sgemm8"]
                          gf = v[k, "gflop"]; rss = v[k, "rss_mb"]; hwm = v[k, "hwm_mb"]; file = v[k, "file_mb"] }
          else { trss = v[k, "rss_mb"]; thwm = v[k, "hwm_mb"] } }
        END {
          printf "image encode, best of the runs: C b1 %.1f ms, b8 %.1f ms/image", best1["C"], best8["C"]
          if ("T" in best1) printf "; PyTorch b1 %.1f ms, b8 %.1f ms/image", best1["T"], best8["T"]
          printf "\n"
          if ("T" in best1) printf "speed-up vs PyTorch: batch 1 %.2fx, batch 8 %.2fx\n", best1["T"] / best1["C"], best8["T"] / best8["C"]
          if (("T" in best1) && ("B" in best1)) printf "BF16 weights (CLIPN_WEIGHTS=bf16): b1 %.1f ms, b8 %.1f ms/image; speed-up vs PyTorch fp32: batch 1 %.2fx, batch 8 %.2fx\n", best1["B"], best8["B"], best1["T"] / best1["B"], best8["T"] / best8["B"]
          g1 = gf / best1["C"] * 1e3; g8 = gf / best8["C"] * 1e3
          printf "C end to end %.1f GFLOP/image: batch 1 %.1f GFLOP/s = %.0f%% of sgemm %.1f, batch 8 %.1f GFLOP/s = %.0f%% of sgemm %.1f (bests of all runs)\n", gf, g1, 100 * g1 / s1, s1, g8, 100 * g8 / s8, s8
          printf "resident after a batch: C %.0f MB (%.2fx the %.0f MB file, peak %.2fx)", rss, rss / file, file, hwm / file
          if ("T" in best1) printf "; PyTorch %.0f MB (%.2fx, peak %.2fx)", trss, trss / file, thwm / file
          printf "\n" }' "$WORK/encode_results.txt"
    if [ "$have_ort" = 1 ]; then
        echo "-- ONNX Runtime on 1 thread (once), memory after a batch of 32"
        ort_run P 1 --batch32
    fi
    # C vs ONNX Runtime (its better thread setting per figure) vs PyTorch, all from this run
    if grep -q '^[OP] ' "$WORK/encode_results.txt"; then
        echo "== C vs ONNX Runtime $ORT_VERSION vs PyTorch (this run, bests; ratios > 1: C faster/smaller)"
        touch "$WORK/text_c.txt"
        awk '
            FILENAME == ARGV[1] { tc[$1] = $2; next }
            { k = $1; for (i = 2; i <= NF; i++) { split($i, kv, "="); x = kv[2] + 0
                  if (!((k, kv[1]) in v) || x < v[k, kv[1]]) v[k, kv[1]] = x      # best = smallest
                  if (!((k, kv[1]) in hi) || x > hi[k, kv[1]]) hi[k, kv[1]] = x } }
            function ort(key) {   # the better of 2 threads (O) and 1 thread (P); sets othr
                othr = 2
                if (!(("O", key) in v) || (("P", key) in v && v["P", key] < v["O", key])) { othr = 1; return v["P", key] }
                return v["O", key] }
            END {
                file = v["C", "file_mb"]; gf = v["C", "gflop"]
                for (b = 1; b <= 8; b += 7) {
                    c = v["C", "b" b "_ms"]; o = ort("b" b "_ms"); t = v["T", "b" b "_ms"]
                    printf "image encode batch %d, ms/image: C %.1f | ORT %.1f (%d thr; 2 thr %.1f, 1 thr %.1f)", b, c, o, othr, v["O", "b" b "_ms"], v["P", "b" b "_ms"]
                    if (t) printf " | PyTorch %.1f", t
                    printf " -> C vs ORT %.2fx", o / c
                    if (t) printf ", ORT vs PyTorch %.2fx", t / o
                    s = hi["C", "sgemm" b]
                    printf "\n    end to end %.1f GFLOP/image: C %.0f%%, ORT %.0f%% of sgemm %.1f GFLOP/s\n", gf, 100 * gf / c * 1e3 / s, 100 * gf / o * 1e3 / s, s }
                o = ort("txt64_ms"); c77 = v["X", "c77_ms"]
                printf "text, one tower, per prompt, 77 positions, batch 64: ORT %.2f ms (%d thr)", o, othr
                if (c77) printf " | C %.2f ms (77-token prompts) -> C vs ORT %.2fx", c77, o / c77
                if (v["X", "t77_ms"]) printf " | PyTorch %.2f ms -> ORT vs PyTorch %.2fx", v["X", "t77_ms"], v["X", "t77_ms"] / o
                printf "\n"
                o1 = ort("txt1_ms"); c1 = v["X", "c77b1_ms"]
                printf "text, batch 1, 77 positions: ORT %.2f ms/prompt (%d thr)", o1, othr
                if (c1) printf " | C %.2f ms -> C vs ORT %.2fx", c1, o1 / c1
                if (v["X", "t77b1_ms"]) printf " | PyTorch %.2f ms -> ORT vs PyTorch %.2fx", v["X", "t77b1_ms"], v["X", "t77b1_ms"] / o1
                printf "\n"
                if (tc["yes_b1"]) {
                    printf "text, real ImageNet prompts (C runs only real positions, ORT all 77; not like for like): C batch 1 %.2f ms vs ORT %.2f -> %.1fx", tc["yes_b1"], o1, o1 / tc["yes_b1"]
                    if (tc["yes_batch_shared"]) printf "; C batch %d %.2f ms (prefix sharing) vs ORT batch 64 %.2f -> %.1fx", tc["n"], tc["yes_batch_shared"], o, o / tc["yes_batch_shared"]
                    printf "\n" }
                printf "resident, MB (the model file is %.0f MB): ORT %.0f after load (%.2fx; node alone %.0f), %.0f after a batch of 8 (%.2fx), %.0f after a batch of 32 (%.2fx) | C %.0f after a batch of 8 (%.2fx) -> ORT/C %.2fx\n", file, hi["O", "rss_load_mb"], hi["O", "rss_load_mb"] / file, v["O", "rss_base_mb"], hi["O", "rss_mb"], hi["O", "rss_mb"] / file, hi["P", "rss32_mb"], hi["P", "rss32_mb"] / file, hi["C", "rss_mb"], hi["C", "rss_mb"] / file, hi["O", "rss_mb"] / hi["C", "rss_mb"]
                printf "outputs: ORT vs C max relative difference per vector: image %.2e, text (both towers) %.2e\n", hi["O", "img_rel"], hi["O", "txt_rel"] }' \
            "$WORK/text_c.txt" "$WORK/encode_results.txt"
    fi
fi

# Precision (issue 15): fp32 / bf16 / int8 next to PyTorch 2.x and ONNX Runtime from PyPI
# (with their own INT8), and the drift table. It replaces the npm ONNX Runtime bench above,
# which now skips itself where npm is not installed.
BUILD="$BUILD" BENCH_WORK="$WORK" PYTHON_TORCH="$PY" sh "$here/precision.sh"
