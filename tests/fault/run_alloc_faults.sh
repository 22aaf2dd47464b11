#!/bin/sh
# Allocation-failure loops, SQLite style, over one workload per subcommand: the fault build
# of the CLI (tests/fault/fault_alloc.c) is run with allocation N failing, for N = 1, 2, ...
# up to the number of allocations the clean run makes. Each run must either
#   - exit 1 (or 2) with exactly one line on stderr, "clipn <cmd>: ...", leaving no
#     temporary file behind, or
#   - exit 0 with stdout and every output file identical to the clean run's.
# A crash, a sanitizer report (make test-asan runs this under ASan + UBSan, leaks included),
# a hang, a second stderr line or a different output fails the loop.
# Workloads with more allocations than FAULT_MAX_RUNS (default 300; make test: 60) are sampled with a stride (said in
# the output): N = 1, 1 + s, 1 + 2s, ..., and the last one.
#   sh tests/fault/run_alloc_faults.sh build/fault/clipn
# FAULT_ONLY="head eval" runs only those workloads; FAULT_MAX_RUNS=100000 runs every N.
CLIPN=$(cd "$(dirname "${1:-build/fault/clipn}")" && pwd)/$(basename "${1:-build/fault/clipn}")
MAX_RUNS=${FAULT_MAX_RUNS:-300}
MODEL=$(pwd)/tests/fixtures/model/tiny_clipn.safetensors
IMAGES=$(pwd)/tests/fixtures/images
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OPENBLAS_NUM_THREADS=1 CLIPN_THREADS=1
fails=0 total_runs=0

# fixtures
printf 'cat\ndog\nbird\n' >"$T/classes.txt"
printf 'a photo of a {}.\nart of the {}.\n' >"$T/tmpl.txt"
printf '%s\n%s\n' "$IMAGES/edge_1x1.png" "$IMAGES/edge_2x3.png" >"$T/id.txt"
printf '%s\n%s\n' "$IMAGES/edge_gray.png" "$IMAGES/edge_rgb.ppm" >"$T/ood.txt"
printf '%s,cat\n%s,kat\n' "$IMAGES/edge_1x1.png" "$IMAGES/edge_2x3.png" >"$T/id_labels.txt"
"$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" --templates "$T/tmpl.txt" \
    --out "$T/h.heads" 2>/dev/null || { echo "FAIL setup: head"; exit 1; }
"$CLIPN" preprocess --size 32 --out "$T/px.npy" "$IMAGES/edge_1x1.png" 2>/dev/null ||
    { echo "FAIL setup: preprocess"; exit 1; }
printf 'the nice cell\nthe nice time\nThis is a red photo\n' >"$T/neg.txt"
"$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" --templates "$T/tmpl.txt" \
    --negatives "$T/neg.txt" --neg-groups 2 --out "$T/hn.heads" 2>/dev/null ||
    { echo "FAIL setup: head --negatives"; exit 1; }

# run_one DIR N CMD...: run in DIR (outputs in DIR/out), allocation N failing
run_one() {
    dir=$1 nth=$2
    shift 2
    rm -rf "$dir/out"
    mkdir "$dir/out"
    for f in $outs; do echo old >"$dir/out/$f"; done
    (cd "$dir/out" && CLIPN_FAULT_ALLOC=$nth CLIPN_FAULT_COUNT_FILE=$dir/count \
        timeout 60 "$CLIPN" "$@" >"$dir/stdout" 2>"$dir/stderr")
    echo $? >"$dir/rc"
}

# workload NAME "OUTPUT FILES" CMD...: outputs are file names written in the run's folder
workload() {
    name=$1 outs=$2
    shift 2
    case " ${FAULT_ONLY:-$name} " in *" $name "*) ;; *) return ;; esac
    W=$T/w_$name
    mkdir -p "$W/clean"
    run_one "$W" 0 "$@"
    if [ "$(cat "$W/rc")" != 0 ]; then
        echo "FAIL $name: the clean run failed: $(head -c 300 "$W/stderr")"
        fails=$((fails + 1))
        return
    fi
    n_alloc=$(cat "$W/count")
    cp "$W/stdout" "$W/clean/stdout"
    cp "$W/stderr" "$W/clean/stderr"
    for f in $outs; do cp "$W/out/$f" "$W/clean/$f"; done
    stride=$(( (n_alloc + MAX_RUNS - 1) / MAX_RUNS ))
    [ $stride -lt 1 ] && stride=1
    runs=0 failed_runs=0 clean_exits=0 bad=0
    nth=1
    while [ $nth -le "$n_alloc" ]; do
        run_one "$W" $nth "$@"
        rc=$(cat "$W/rc")
        runs=$((runs + 1))
        why=
        if [ "$rc" = 0 ]; then
            clean_exits=$((clean_exits + 1))
            cmp -s "$W/stdout" "$W/clean/stdout" || why="exit 0 with a different stdout"
            for f in $outs; do
                cmp -s "$W/out/$f" "$W/clean/$f" || why="exit 0 with a different $f"
            done
            # a warning is part of the result: it may be shortened, never dropped
            if grep -q 'warning:' "$W/clean/stderr" && ! grep -q 'warning:' "$W/stderr"; then
                why="exit 0 without the clean run's warning"
            fi
        elif [ "$rc" = 1 ] || [ "$rc" = 2 ]; then
            failed_runs=$((failed_runs + 1))
            # one error line; the clean run's warnings may stand beside it
            errs=$(grep -v '^clipn [a-z-]*: warning: ' "$W/stderr" | wc -l)
            [ "$errs" = 1 ] && grep -v '^clipn [a-z-]*: warning: ' "$W/stderr" | grep -q '^clipn ' ||
                why="exit $rc with $errs stderr lines besides warnings"
            left=$(ls -A "$W/out" | grep '^\.' || true)
            [ -z "$left" ] || why="temporary files left: $left"
        else
            why="exit status $rc (crash, sanitizer or timeout)"
        fi
        if [ -n "$why" ]; then
            bad=$((bad + 1))
            if [ $bad -le 3 ]; then
                echo "FAIL $name, allocation $nth of $n_alloc: $why"
                head -c 1500 "$W/stderr"
            fi
        fi
        if [ $nth -lt "$n_alloc" ] && [ $((nth + stride)) -gt "$n_alloc" ]; then
            nth=$n_alloc
        else
            nth=$((nth + stride))
        fi
    done
    total_runs=$((total_runs + runs))
    [ $bad -gt 0 ] && fails=$((fails + 1))
    echo "$( [ $bad = 0 ] && echo 'ok  ' || echo 'FAIL') $name: $n_alloc allocations, $runs runs" \
        "(stride $stride): $failed_runs failed cleanly, $clean_exits gave the clean output," \
        "$bad bad"
}

M=$MODEL
workload info "" info "$M"
workload info-heads "" info --json --model "$M" "$T/h.heads"
workload tokenize "" tokenize --model "$M" "a photo of a cat" "a dog"
workload preprocess "p.npy" preprocess --size 32 --out p.npy "$IMAGES/edge_1x1.png" \
    "$IMAGES/edge_gray.png"
workload embed-image "f.npy" embed-image --model "$M" --out f.npy "$IMAGES/edge_1x1.png"
workload embed-image-pixels "f.npy" embed-image --model "$M" --out f.npy --pixels "$T/px.npy"
workload embed-text "t.npy" embed-text --model "$M" --out t.npy "a cat" "a dog"
workload head "h.heads" head --model "$M" --classes "$T/classes.txt" --templates "$T/tmpl.txt" \
    --threads 1 --out h.heads
workload classify-json "" classify --json --threads 1 --model "$M" --head "$T/h.heads" \
    "$IMAGES/edge_1x1.png" "$IMAGES/edge_gray.png"
workload classify-classes "" classify --threads 1 --model "$M" --classes "$T/classes.txt" \
    --templates "$T/tmpl.txt" --top 2 "$IMAGES/edge_1x1.png"
workload eval "s.csv r.csv p.svg" eval --json --threads 1 --batch 2 --model "$M" \
    --head "$T/h.heads" --id "$T/id.txt" --ood o="$T/ood.txt" --scores-csv s.csv \
    --roc-csv r.csv --plot p.svg
workload head-negatives "h.heads" head --model "$M" --classes "$T/classes.txt" \
    --templates "$T/tmpl.txt" --negatives "$T/neg.txt" --neg-groups 2 --threads 1 --out h.heads
workload neg-labels "n.txt" neg-labels --model "$M" --classes "$T/classes.txt" --threads 1 \
    --wordnet "$(pwd)/tests/fixtures/wordnet" --fraction 0.3 --out n.txt
workload classify-neglabel "" classify --json --threads 1 --model "$M" --head "$T/hn.heads" \
    "$IMAGES/edge_1x1.png"
workload eval-table "" eval --threads 1 --model "$M" --head "$T/h.heads" --id "$T/id.txt" \
    --ood o="$T/ood.txt"

workload eval-unmatched-label "" eval --threads 1 --model "$M" --head "$T/h.heads" \
    --id "$T/id_labels.txt" --ood o="$T/ood.txt"

echo "alloc faults: $total_runs runs, $fails workloads failed"
[ $fails = 0 ]
