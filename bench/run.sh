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
    */bench_kernels | */bench_encode) ;;
    *) [ -x "$b" ] && { echo "== $(basename "$b")"; "$b"; } ;;
    esac
done

if "$PY" -c "import torch" 2>/dev/null; then
    echo "== PyTorch side by side ($PY)"
    "$PY" "$here/torch_kernels.py" "$THREADS"
else
    echo "== PyTorch: not importable with $PY, skipped"
fi
