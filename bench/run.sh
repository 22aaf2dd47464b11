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
    */bench_kernels | */bench_encode | */bench_text | */bench_heads) ;; # text/heads: below
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

# Image tower end to end (perf): bench_encode and bench/torch_encode.py on the same random
# ViT-B-16, alternated BENCH_ENCODE_RUNS times (machine load hits both alike), best of each
# kept; then the C side once more with CLIPN_GEMM=openblas for its memory. Ratios = torch/C.
if [ -x "$BUILD/bench/bench_encode" ] && [ -f "$WORK/vit-b-16.clipn" ]; then
    echo "== bench_encode vs PyTorch image tower (alternated ${BENCH_ENCODE_RUNS:-3}x)"
    have_torch=0
    [ -f "$WORK/vit-b-16.pt" ] && "$PY" -c "import torch" 2>/dev/null && have_torch=1
    : >"$WORK/encode_results.txt"
    i=0
    while [ "$i" -lt "${BENCH_ENCODE_RUNS:-3}" ]; do
        "$BUILD/bench/bench_encode" "$WORK/vit-b-16.clipn" 3 | tee "$WORK/encode_c.txt"
        grep '^RESULT' "$WORK/encode_c.txt" | sed 's/^RESULT/C/' >>"$WORK/encode_results.txt"
        if [ "$have_torch" = 1 ]; then
            "$PY" "$here/torch_encode.py" "$WORK/vit-b-16.pt" 3 | tee "$WORK/encode_torch.txt"
            grep '^RESULT' "$WORK/encode_torch.txt" | sed 's/^RESULT/T/' >>"$WORK/encode_results.txt"
        fi
        # BF16 weights (AMX when the CPU has it): same model, same run, vs the same PyTorch
        CLIPN_WEIGHTS=bf16 "$BUILD/bench/bench_encode" "$WORK/vit-b-16.clipn" 3 >"$WORK/encode_bf16.txt"
        grep '^RESULT' "$WORK/encode_bf16.txt" | sed 's/^RESULT/B/' >>"$WORK/encode_results.txt"
        i=$((i + 1))
    done
    echo "-- CLIPN_GEMM=openblas (memory: nothing packed, the mapping is the weight store)"
    CLIPN_GEMM=openblas "$BUILD/bench/bench_encode" "$WORK/vit-b-16.clipn" 1 |
        grep -E '^memory|batch' || true
    awk '
        { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[$1, kv[1]] = kv[2] }
          k = $1; b1 = v[k, "b1_ms"] + 0; b8 = v[k, "b8_ms"] + 0
          if (!(k in best1) || b1 < best1[k]) best1[k] = b1
          if (!(k in best8) || b8 < best8[k]) best8[k] = b8
          if (k == "B") next
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
fi
