#!/bin/sh
# The CLI's error contract on hostile input: exit status 1 and exactly one line on stderr
# ("clipn <cmd>: <reason>"), never a crash or a hang. Run from the repo root:
#   sh tests/cli/test_cli_errors.sh build/clipn
CLIPN=${1:-build/clipn}
MODEL=tests/fixtures/model/tiny_clipn.safetensors
MICRO=tests/fuzz/corpus/model_load/micro_clipn.clipn
VOCAB=weights_tools/bpe_simple_vocab_16e6.txt.gz
IMAGES=tests/fixtures/images
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 n=0

# expect STATUS NAME CMD...: run CMD (time-limited), check the status and, for status 1, that
# stderr is one line starting with "clipn ". Status 2U is a usage error held to the same
# one-line rule (status 2); plain 2 may print the usage text.
expect() {
    want=$1 name=$2 one_line=0
    shift 2
    [ "$want" = 1 ] && one_line=1
    [ "$want" = 2U ] && { want=2 one_line=1; }
    n=$((n + 1))
    timeout 120 "$@" >"$T/out" 2>"$T/err"
    got=$?
    lines=$(wc -l <"$T/err")
    ok=1
    [ "$got" = "$want" ] || ok=0
    if [ $one_line = 1 ]; then
        [ "$lines" = 1 ] || ok=0
        grep -q '^clipn ' "$T/err" || ok=0
    fi
    if [ $ok = 1 ]; then
        echo "ok   $name: $(head -c 160 "$T/err")"
    else
        echo "FAIL $name: status $got (want $want), $lines stderr lines:"
        head -c 600 "$T/err"
        fails=$((fails + 1))
    fi
}

# ---- model files
: >"$T/empty.clipn"
head -c 5 "$MICRO" >"$T/trunc_len.clipn"
head -c 3000 "$MICRO" >"$T/trunc_header.clipn"
size=$(wc -c <"$MICRO")
head -c $((size - 100)) "$MICRO" >"$T/trunc_data.clipn"
# same-length edits of the JSON header: a wrong dtype, a shape that does not match the bytes
sed '0,/"F16"/s//"I16"/' "$MICRO" >"$T/wrong_dtype.clipn"
sed '0,/"shape":\[8\]/s//"shape":[9]/' "$MICRO" >"$T/mis_sized.clipn"
sed '0,/"shape":\[8\]/s//"shape":[4]/' "$MICRO" >"$T/mis_sized_small.clipn"
cp "$VOCAB" "$T/garbage.clipn"
for f in empty trunc_len trunc_header trunc_data wrong_dtype mis_sized mis_sized_small garbage; do
    cmp -s "$MICRO" "$T/$f.clipn" && { echo "FAIL $f: the damage did not apply"; fails=$((fails + 1)); }
    expect 1 "info $f model" "$CLIPN" info "$T/$f.clipn"
    expect 1 "embed-text $f model" "$CLIPN" embed-text --model "$T/$f.clipn" --out "$T/x.npy" cat
done
expect 1 "missing model" "$CLIPN" info "$T/nonexistent.clipn"
expect 1 "directory as model" "$CLIPN" info "$T"
expect 0 "micro model is fine" "$CLIPN" info "$MICRO"

# ---- images
for f in bad_empty.jpg bad_truncated.jpg bad_truncated.png bad_text.png bad_corrupt.jpg \
         bad_huge_100000x100000.png; do
    expect 1 "preprocess $f" "$CLIPN" preprocess --size 32 --out "$T/x.npy" "$IMAGES/$f"
    expect 1 "embed-image $f" "$CLIPN" embed-image --model "$MODEL" --out "$T/x.npy" "$IMAGES/$f"
done
expect 1 "a model file as image" "$CLIPN" preprocess --size 32 --out "$T/x.npy" "$MICRO"
"$CLIPN" preprocess --size 32 --out "$T/x.npy" "$IMAGES/bad_huge_100000x100000.png" 2>"$T/err"
grep -q 'exceeds the limit' "$T/err" || { echo "FAIL huge image: no limit message"; fails=$((fails + 1)); }

# ---- text: invalid UTF-8 is decoded as errors='replace' (valid); > 1 MiB is a limit error
printf 'a \377\376 photo \303( of \355\240\200 a cat\n' >"$T/bad_utf8.txt"
expect 0 "tokenize invalid UTF-8" "$CLIPN" tokenize --vocab "$VOCAB" --file "$T/bad_utf8.txt"
expect 0 "embed-text invalid UTF-8" "$CLIPN" embed-text --model "$MODEL" --out "$T/x.npy" \
    --file "$T/bad_utf8.txt"
# 1 MiB exactly (1048576 bytes, no newline) works; one byte more is refused
head -c 1048576 /dev/zero | tr '\0' 'a' >"$T/mib.txt"
expect 0 "tokenize 1 MiB text" "$CLIPN" tokenize --vocab "$VOCAB" --file "$T/mib.txt"
printf 'b' >>"$T/mib.txt"
expect 1 "tokenize 1 MiB + 1 text" "$CLIPN" tokenize --vocab "$VOCAB" --file "$T/mib.txt"
expect 1 "embed-text 1 MiB + 1 text" "$CLIPN" embed-text --model "$MODEL" --out "$T/x.npy" \
    --file "$T/mib.txt"

# ---- .npy and head files
printf 'not an npy file' >"$T/bad.npy"
expect 1 "embed-image --pixels garbage" "$CLIPN" embed-image --model "$MODEL" --out "$T/x.npy" \
    --pixels "$T/bad.npy"
printf 'cat\ndog\n' >"$T/classes.txt"
expect 1 "head --yes-npy garbage" "$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" \
    --yes-npy "$T/bad.npy" --no-npy "$T/bad.npy" --out "$T/h.heads"
expect 1 "classify with a model as head" "$CLIPN" classify --model "$MODEL" --head "$MICRO" \
    "$IMAGES/edge_1x1.png"
expect 1 "classify with a foreign head" "$CLIPN" classify --model "$MODEL" \
    --head tests/fuzz/corpus/heads_load/heads_3x4.safetensors "$IMAGES/edge_1x1.png"

# ---- out of memory: scratch for 4096 images does not fit in 300 MB of address space.
# (Not below ~250 MB: OpenBLAS's worker threads map 128 MB each at start and retry forever
# when that fails, hanging the exit; docs/security.md.)
expect 1 "embed-image --batch 4096 under ulimit -v 300 MB" sh -c \
    'ulimit -v 300000 && exec "$0" embed-image --model "$1" --batch 4096 --out "$2" "$3"' \
    "$CLIPN" "$MODEL" "$T/x.npy" "$IMAGES/edge_1x1.png"

# ...and with OPENBLAS_NUM_THREADS=1 a small job runs in 150 MB: the library starts no
# OpenBLAS workers of its own while only the native GEMM runs (kernels/dispatch.c).
expect 0 "embed-image under ulimit -v 150 MB, OPENBLAS_NUM_THREADS=1" sh -c \
    'ulimit -v 150000 && OPENBLAS_NUM_THREADS=1 exec "$0" embed-image --model "$1" --out "$2" "$3"' \
    "$CLIPN" "$MODEL" "$T/x.npy" "$IMAGES/edge_1x1.png"

# ---- usage errors: every subcommand parses options with the one table-driven parser
# (examples/cli/cli_util.c): unknown option, missing value, bad value -> status 2, one line.
for c in info tokenize preprocess embed-image embed-text head classify eval; do
    expect 0 "$c --help" "$CLIPN" $c --help
    expect 2U "$c unknown option" "$CLIPN" $c --bogus
done
expect 2U "missing value" "$CLIPN" embed-text --model "$MODEL" --out
expect 2U "--batch 0" "$CLIPN" embed-image --model "$MODEL" --out "$T/x.npy" --batch 0 x.png
expect 2U "--batch not a number" "$CLIPN" embed-text --model "$MODEL" --out "$T/x.npy" --batch 8x a
expect 2U "--threads -1" "$CLIPN" head --model "$MODEL" --classes "$T/classes.txt" --out "$T/h" \
    --threads -1
expect 2U "--top 0" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt" --top 0 \
    "$IMAGES/edge_1x1.png"
expect 2U "--fpr95 bad" "$CLIPN" eval --model "$MODEL" --fpr95 median
expect 2U "--ood without =" "$CLIPN" eval --model "$MODEL" --ood textures
expect 2U "--ood named id" "$CLIPN" eval --model "$MODEL" --ood id=x.txt
expect 2U "--ood twice" "$CLIPN" eval --model "$MODEL" --ood a=x.txt --ood a=y.txt
expect 2U "eval positional" "$CLIPN" eval --model "$MODEL" stray
expect 2U "head positional" "$CLIPN" head --model "$MODEL" stray
expect 2U "info two models" "$CLIPN" info "$MODEL" "$MODEL"
expect 2U "classify without images" "$CLIPN" classify --model "$MODEL" --classes "$T/classes.txt"
# "--" ends the options: a text that looks like an option is tokenized
expect 0 "tokenize -- --json" "$CLIPN" tokenize --vocab "$VOCAB" -- --json
grep -q '^49406 ' "$T/out" || { echo "FAIL tokenize --: no ids printed"; fails=$((fails + 1)); }
# options after positionals still count
expect 0 "embed-text option after text" "$CLIPN" embed-text "a photo" --model "$MODEL" \
    --out "$T/x.npy"

echo "cli errors: $n checks, $fails failed"
[ $fails = 0 ]
