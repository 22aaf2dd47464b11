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

# Encoders (towers engineer): run if built; it reads its own arguments / env.
if [ -x "$BUILD/bench/bench_encode" ]; then
    echo "== bench_encode"
    "$BUILD/bench/bench_encode"
fi
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
