#!/bin/sh
# clipn-mpi against clipn (make test-mpi, about a minute on 2 cores):
#  - every distributed subcommand (tests/mpi/cases.sh) byte-identical to build/clipn, stdout,
#    stderr, status and files, with 1, 2 and 3 ranks (and rank 0 only dispatching);
#  - a worker killed mid-run ends the job non-zero within 30 s naming the rank; the same
#    command run again with --state redoes only the chunks not recorded and writes the
#    output of an uninterrupted run; the same for the whole job killed (SIGTERM to mpirun);
#  - a stopped (hung) worker ends the job through --timeout, naming the rank;
#  - a state directory from another command or other inputs is refused.
#   sh tests/mpi/run.sh [BUILD_DIR]      (from the repo root)
set -u
B=${1:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # mpirun refuses root otherwise
# -q: no "N processes returned a non-zero exit code" banner, so stderr compares with clipn's
# (one machine: shared memory only, without the cross-process copy containers often forbid)
MPIRUN="mpirun --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
fails=0 n=0
pass() { n=$((n + 1)); echo "ok   $*"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "FAIL $*"; }

# compare REF GOT LABEL: every file of a cases.sh run (its own OUT path replaced in text)
compare() {
    bad=0
    for f in "$1"/*; do
        b=${f##*/}
        case $b in
        *.out | *.err) sed "s#$1#OUT#g" "$f" >"$T/a"; sed "s#$2#OUT#g" "$2/$b" >"$T/b" 2>/dev/null ;;
        *) cp "$f" "$T/a"; cp "$2/$b" "$T/b" 2>/dev/null || : >"$T/b" ;;
        esac
        if ! cmp -s "$T/a" "$T/b"; then
            fail "$3: $b differs from clipn's"
            diff "$T/a" "$T/b" | head -n 6
            bad=1
        fi
    done
    [ $bad = 1 ] || pass "$3: $(ls "$1" | wc -l) outputs identical to clipn's"
}

sh tests/mpi/cases.sh "$T/ref" "$B/clipn"
for np in 1 2 3; do
    STATE_OPT="--chunk 2" sh tests/mpi/cases.sh "$T/np$np" $MPIRUN -q -np $np "$B/clipn-mpi"
    compare "$T/ref" "$T/np$np" "-np $np --chunk 2"
done
STATE_OPT="--chunk 3 --no-rank0-work" sh tests/mpi/cases.sh "$T/np2w" $MPIRUN -q -np 2 "$B/clipn-mpi"
compare "$T/ref" "$T/np2w" "-np 2 --chunk 3 --no-rank0-work"

# ---- a model of real widths (other GEMM tiles than the tiny fixture's), when given:
# MPI_MODEL=tests/golden/work/small.clipn sh tests/mpi/run.sh (not in make test: parity may
# be rewriting that file at the same time)
S=${MPI_MODEL:-}
if [ -n "$S" ]; then
    ls tests/fixtures/images/photo_* >"$T/photos.txt"
    head -n 7 data/imagenet_classes.txt >"$T/c7.txt"
    head -n 6 data/clipn_templates_official.txt >"$T/t6.txt"
    "$B/clipn" embed-image --model $S --list "$T/photos.txt" --out "$T/e1.npy"
    $MPIRUN -q -np 2 "$B/clipn-mpi" embed-image --chunk 3 --model $S --list "$T/photos.txt" \
        --out "$T/e2.npy"
    "$B/clipn" head --model $S --classes "$T/c7.txt" --templates "$T/t6.txt" --out "$T/h1" 2>/dev/null
    $MPIRUN -q -np 3 "$B/clipn-mpi" head --chunk 2 --model $S --classes "$T/c7.txt" \
        --templates "$T/t6.txt" --out "$T/h2" 2>/dev/null
    cmp -s "$T/e1.npy" "$T/e2.npy" && cmp -s "$T/h1" "$T/h2" &&
        pass "$S: embed-image (-np 2, chunks of 3) and head (-np 3, chunks of 2) identical" ||
        fail "$S: embed-image or head differs from clipn's"
else
    echo "skip a model of real widths (set MPI_MODEL=FILE)"
fi

# ---- a longer eval (2200 images, 138 chunks of 16) for the faults
M=tests/fixtures/model/tiny_clipn.safetensors
printf 'cat\ndog\nastronaut\ncoffee\nflower\n' >"$T/classes.txt"
for i in $(seq 100); do ls tests/fixtures/images/photo_*; done >"$T/all.txt"
head -n 1100 "$T/all.txt" >"$T/id.txt"
tail -n +1101 "$T/all.txt" >"$T/ood.txt"
echo tests/fixtures/images/bad_truncated.jpg >>"$T/ood.txt"
EVAL="eval --model $M --classes $T/classes.txt --threads 1 --id $T/id.txt --ood o=$T/ood.txt"
# shellcheck disable=SC2086
"$B/clipn" $EVAL --scores-csv "$T/ref.csv" >"$T/ref.txt" 2>"$T/ref.err"
ref_st=$?

# rank_pid MPIRUN_PID RANK: the pid of that rank among mpirun's children
rank_pid() {
    for c in $(pgrep -P "$1"); do
        tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$c"
    done
}
# wait_chunks DIR N: until DIR holds N chunk files (0), or 60 s (1)
wait_chunks() {
    i=0
    while [ "$(ls "$1" 2>/dev/null | grep -c '\.chunk$')" -lt "$2" ]; do
        i=$((i + 1))
        [ $i -gt 600 ] && return 1
        sleep 0.1
    done
}
# wait_exit PID LIMIT: waits for PID (killed after LIMIT s); sets st (its status, or "hang")
# and secs (how long it took after the fault). Not in $(...): only this shell can wait.
wait_exit() {
    rm -f "$T/hung"
    (sleep "$2"; kill -0 "$1" 2>/dev/null && touch "$T/hung" && kill -9 "$1") &
    w=$!
    t0=$(date +%s)
    wait "$1"
    st=$?
    kill $w 2>/dev/null
    [ -f "$T/hung" ] && st=hang
    secs=$(($(date +%s) - t0))
}
# resumed LABEL DIR NP: run the eval again with --state DIR; its output must be clipn's, and
# it must have read back every chunk recorded before it (and computed only the others)
resumed() {
    recorded=$(ls "$2" | grep -c '\.chunk$')
    # shellcheck disable=SC2086
    $MPIRUN -q -np "$3" "$B/clipn-mpi" $EVAL --state "$2" --chunk 16 --scores-csv "$T/got.csv" \
        >"$T/got.txt" 2>"$T/got.err"
    st=$?
    grep -v '^clipn-mpi: ' "$T/got.err" >"$T/got.err.clipn"
    line=$(grep '^clipn-mpi: images' "$T/got.err")
    # "images: 138 chunks, R read from --state DIR, C computed"; the heads chunk is one more file
    read_back=$(echo "$line" | sed -n 's/.* chunks, \([0-9]*\) read from.*/\1/p')
    computed=$(echo "$line" | sed -n 's/.*, \([0-9]*\) computed$/\1/p')
    total=$(echo "$line" | sed -n 's/^clipn-mpi: images: \([0-9]*\) chunks.*/\1/p')
    if [ "$read_back" != $((recorded - 1)) ] || [ $((read_back + computed)) != "$total" ] ||
        [ "$read_back" = 0 ]; then
        fail "$1: $((recorded - 1)) image chunks were recorded, the resumed run: $line"
    fi
    if [ $st = $ref_st ] && cmp -s "$T/ref.txt" "$T/got.txt" && cmp -s "$T/ref.csv" "$T/got.csv" &&
        cmp -s "$T/ref.err" "$T/got.err.clipn"; then
        pass "$1 resumed with -np $3: output identical to clipn's; $(grep '^clipn-mpi: images' "$T/got.err" | sed 's/^clipn-mpi: //')"
    else
        fail "$1 resumed with -np $3: status $st (clipn: $ref_st) or output differs"
        head -n 5 "$T/got.err"
    fi
}

# a worker killed mid-run
# shellcheck disable=SC2086
$MPIRUN -np 3 "$B/clipn-mpi" $EVAL --state "$T/s1" --chunk 16 >/dev/null 2>"$T/k1.err" &
P=$!
if wait_chunks "$T/s1" 12; then
    kill -9 "$(rank_pid $P 2)"
    wait_exit $P 30
    if [ "$st" != hang ] && [ "$st" != 0 ] && grep -q 'rank 2' "$T/k1.err"; then
        pass "worker rank 2 killed: job ended with status $st in $secs s: $(grep 'rank 2' "$T/k1.err" | head -n 1)"
    else
        fail "worker rank 2 killed: status $st after $secs s"
        cat "$T/k1.err"
    fi
    resumed "killed rank" "$T/s1" 2
else
    fail "killed rank: the job never recorded 12 chunks"
    kill -9 $P
fi

# the whole job killed (SIGTERM to mpirun), then run again with another rank count
# shellcheck disable=SC2086
$MPIRUN -np 2 "$B/clipn-mpi" $EVAL --state "$T/s2" --chunk 16 >/dev/null 2>"$T/k2.err" &
P=$!
if wait_chunks "$T/s2" 12; then
    kill -TERM $P
    wait_exit $P 30
    [ "$st" != hang ] && [ "$st" != 0 ] && pass "job killed: mpirun ended with status $st in $secs s" ||
        fail "job killed: status $st after $secs s"
    resumed "killed job" "$T/s2" 3
else
    fail "killed job: the job never recorded 12 chunks"
    kill -9 $P
fi

# a hung worker (SIGSTOP): --timeout ends the job and names the rank
# shellcheck disable=SC2086
$MPIRUN -np 3 "$B/clipn-mpi" $EVAL --timeout 3 --state "$T/s3" --chunk 16 >/dev/null 2>"$T/k3.err" &
P=$!
if wait_chunks "$T/s3" 12; then
    kill -STOP "$(rank_pid $P 1)"
    wait_exit $P 30
    if [ "$st" != hang ] && [ "$st" != 0 ] && grep -q 'rank 1 .*(--timeout)' "$T/k3.err"; then
        pass "worker rank 1 stopped: ended with status $st in $secs s: $(grep 'rank 1' "$T/k3.err" | head -n 1)"
    else
        fail "worker rank 1 stopped: status $st after $secs s"
        cat "$T/k3.err"
    fi
else
    fail "hung rank: the job never recorded 12 chunks"
    kill -9 $P
fi

# a state directory is bound to its command and inputs
$MPIRUN -q -np 1 "$B/clipn-mpi" classify --state "$T/s1" --model $M --classes "$T/classes.txt" \
    tests/fixtures/images/photo_chelsea_q80.jpg >/dev/null 2>"$T/r.err"
st=$?
[ $st = 1 ] && grep -q 'made by `clipn-mpi eval`' "$T/r.err" &&
    pass "state dir of eval refused by classify: $(cat "$T/r.err")" ||
    { fail "state dir of eval not refused by classify (status $st)"; cat "$T/r.err"; }
# shellcheck disable=SC2086
$MPIRUN -q -np 1 "$B/clipn-mpi" $EVAL --state "$T/s1" --chunk 8 >/dev/null 2>"$T/r.err"
st=$?
[ $st = 1 ] && grep -q 'made from other inputs' "$T/r.err" &&
    pass "state dir refused for another chunking: $(grep inputs "$T/r.err")" ||
    { fail "state dir not refused for other inputs (status $st)"; cat "$T/r.err"; }

echo "mpi: $n checks, $fails failed"
[ $fails = 0 ]
