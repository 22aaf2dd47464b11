#!/bin/sh
# Golden parity of libclipn against an independent PyTorch reference (make parity).
#
#   sh tests/golden/run_parity.sh PYTHON PARITY_BINARY
#
# For each model below: a seeded random checkpoint (make_checkpoint.py; kept in
# tests/golden/work/ and reused while preset, seed, flags and make_checkpoint.py are
# unchanged), converted with weights_tools/clipn_convert.py, run through
# reference_model.py (PyTorch) and through the C parity program (public API), which prints
# one PASS/FAIL row per quantity.
# Needs torch, sklearn and scipy in PYTHON: without them this FAILS (it never skips).
# The small models also run at INT8 against themselves at fp32 (parity --drift), and their
# int8 files against the f32 ones (parity --drift-file).
# PARITY_MODELS="small ..." runs only those labels; PARITY_LOG names the table file
# (make test-arm: the small models under qemu, into parity-arm.log).
set -u
PY=${1:?usage: run_parity.sh PYTHON PARITY_BINARY}
PARITY=${2:?usage: run_parity.sh PYTHON PARITY_BINARY}
G=tests/golden
WORK=$G/work
SEED=5
PHOTOS="--photo tests/fixtures/images/photo_chelsea_q80.jpg --photo tests/fixtures/images/photo_coffee_q92_422.jpg"

if ! "$PY" -c 'import torch, sklearn, scipy, numpy' 2>/dev/null; then
    echo "parity: FAIL: $PY cannot import torch, sklearn, scipy and numpy" \
         "(Debian: apt-get install python3-torch python3-sklearn python3-scipy python3-numpy)"
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$WORK" || exit 1
LOG=${PARITY_LOG:-$WORK/parity.log}
: > "$LOG"

# label preset checkpoint-flags converter/reference-flags
run_model() {
    label=$1 preset=$2 ckflags=$3 actflags=$4
    ckpt=$WORK/$preset$(echo "$ckflags" | tr -d ' ').pt
    stamp="$preset seed=$SEED $ckflags $(cksum < $G/make_checkpoint.py)"
    if [ ! -f "$ckpt" ] || [ "$(cat "$ckpt.stamp" 2>/dev/null)" != "$stamp" ]; then
        # shellcheck disable=SC2086
        "$PY" $G/make_checkpoint.py --preset "$preset" --seed $SEED $ckflags --out "$ckpt" \
            || return 1
        echo "$stamp" > "$ckpt.stamp"
    fi
    # shellcheck disable=SC2086
    python3 -I -S weights_tools/clipn_convert.py -q $actflags "$ckpt" "$WORK/$label.clipn" \
        || return 1
    # shellcheck disable=SC2086
    "$PY" $G/reference_model.py "$ckpt" "$WORK/ref_$label" --seed $SEED $actflags $PHOTOS \
        || return 1
    "$PARITY" "$WORK/$label.clipn" "$WORK/ref_$label" "$label" || return 1
    # INT8 drift against fp32 on the small models (cheap; the ViT-B ones are in make bench):
    # min feature cosine 0.999; CTW/ATD of these random models move up to ~0.07 (tol 0.1);
    # the same for the int8 file (clipn_convert.py --dtype int8) against the f32 one
    case $label in
    small*)
        "$PARITY" --drift int8 "$WORK/$label.clipn" "$WORK/ref_$label" "$label" 0.999 0.1 &&
        # shellcheck disable=SC2086
        python3 -I -S weights_tools/clipn_convert.py -q --dtype int8 $actflags "$ckpt" \
            "$WORK/$label-int8.clipn" &&
        "$PARITY" --drift-file "$WORK/$label-int8.clipn" "$WORK/$label.clipn" \
            "$WORK/ref_$label" "$label" 0.999 0.1 ;;
    esac
}

start=$(date +%s)
for spec in "vit-b-16 vit-b-16 - -" "vit-b-32 vit-b-32 - -" "small small - -" \
            "small-quickgelu small - --quickgelu" "small-noprompt small --no-prompt -"; do
    # shellcheck disable=SC2086
    set -- $spec
    case " ${PARITY_MODELS:-$1} " in *" $1 "*) ;; *) continue ;; esac
    ck=$3 act=$4
    [ "$ck" = - ] && ck=""
    [ "$act" = - ] && act=""
    echo "== parity: $1"
    run_model "$1" "$2" "$ck" "$act" > "$WORK/$1.out" 2>&1
    status=$?
    cat "$WORK/$1.out"
    grep '^PASS\|^FAIL' "$WORK/$1.out" >> "$LOG"
    # a failure outside the table (generation, conversion, a C error) counts as one
    if [ $status -ne 0 ] && ! grep -q '^FAIL' "$WORK/$1.out"; then
        echo "FAIL  $1 exited with status $status (see messages above)" | tee -a "$LOG"
    fi
done
passed=$(grep -c '^PASS' "$LOG")
failed=$(grep -c '^FAIL' "$LOG")
echo "parity: $(( $(date +%s) - start )) s; table in $LOG"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
