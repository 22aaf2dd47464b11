# libclipn build. Sources are found by wildcard, so a new module is just a new file:
#   lib/**/*.c, kernels/**/*.c    -> build/libclipn.a, build/libclipn.so (any depth)
#   kernels/*_avx2.c / *_avx512.c -> compiled with the matching -m flags only
#   kernels/*_amx.c               -> with AMX-BF16 + AVX-512 flags (x86_64 only)
#   kernels/*_neon.c              -> only when $(CC) targets aarch64 (make test-arm)
#   examples/cli/*.c              -> build/clipn (the CLI)
#   tests/test_*.c                -> build/tests/test_* (one Check suite per module)
#   bench/bench_*.c               -> build/bench/bench_*
CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
PYTHON_TORCH ?= /usr/bin/python3

PKGS      := openblas libcjson zlib libutf8proc libjpeg
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CHECK_LIBS := $(shell pkg-config --libs check)

OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# -fvisibility=hidden: libclipn.so exports only the CLIPN_API functions of include/clipn.h
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fvisibility=hidden -pthread -Iinclude -Ilib -Ikernels \
           -I/usr/include/stb $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lm -lpthread
LDFLAGS += $(EXTRA_LDFLAGS)

# the target's architecture, not the host's: right when cross-compiling (make test-arm)
ARCH := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
# every .c under DIR, at any depth (lib/ is split into folders by pipeline stage)
rwildcard   = $(foreach d,$(wildcard $(1:=/*)),$(call rwildcard,$(d),$(2)) $(filter $(2),$(d)))
LIB_SRC    := $(sort $(call rwildcard,lib,%.c))
KERN_SRC   := $(sort $(call rwildcard,kernels,%.c))
ifneq ($(ARCH),x86_64)
KERN_SRC   := $(filter-out %_avx2.c %_avx512.c %_amx.c,$(KERN_SRC))
endif
ifneq ($(ARCH),aarch64)
KERN_SRC   := $(filter-out %_neon.c,$(KERN_SRC))
endif
CLI_SRC    := $(wildcard examples/cli/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)
BENCH_SRC  := $(wildcard bench/bench_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(KERN_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: FORCE all test test-arm test-c test-exports test-cli test-fault test-py parity example-pkgconfig bench install clean deps demo test-asan e2e-scores methods-parity
all: $(BUILD)/libclipn.a $(BUILD)/libclipn.so $(BUILD)/clipn

$(BUILD)/obj/%_avx2.o: %_avx2.c $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -mavx2 -mfma -MMD -MP -c $< -o $@
$(BUILD)/obj/%_avx512.o: %_avx512.c $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -MMD -MP -c $< -o $@
$(BUILD)/obj/kernels/%_amx.o: kernels/%_amx.c $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -mamx-tile -mamx-bf16 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -MMD -MP -c $< -o $@
$(BUILD)/obj/%.o: %.c $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# objects are rebuilt when the flags change (e.g. a new -f option), not only their sources
$(BUILD)/cflags: FORCE
	@mkdir -p $(BUILD); echo '$(CC) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS)' > $@
FORCE:

$(BUILD)/libclipn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/libclipn.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libclipn.so.0 $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/clipn: $(CLI_OBJ) $(BUILD)/libclipn.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libclipn.a $(LDLIBS)
# test_alloc counts libclipn's allocations and thread starts through --wrap (private: not
# passed on to the libraries it depends on)
$(BUILD)/tests/test_alloc: private LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
    -Wl,--wrap=aligned_alloc,--wrap=posix_memalign,--wrap=pthread_create
$(BUILD)/tests/%: tests/%.c $(BUILD)/libclipn.a tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(BUILD)/libclipn.a $(CHECK_LIBS) $(LDLIBS)
# tests/test_faults.c fails allocations on purpose: the library's own calls reach it
# through --wrap (also under ASan, whose runtime owns malloc), libc's through malloc itself
$(BUILD)/tests/test_faults: private LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=posix_memalign,--wrap=aligned_alloc
$(BUILD)/bench/%: bench/%.c bench/bench_util.h $(BUILD)/libclipn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libclipn.a $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(MPI_OBJ:.o=.d)

# ---- clipn-mpi (docs/scale-out.md): the CLI's objects but its main.c, plus examples/mpi/*.c
# compiled and linked with mpicc. The library never links MPI. `make test` runs tests/mpi
# when mpicc is installed.
MPICC    ?= mpicc
MPI_SRC  := $(wildcard examples/mpi/*.c)
MPI_OBJ  := $(MPI_SRC:%.c=$(BUILD)/obj/%.o)
HAVE_MPI := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo yes)
.PHONY: mpi test-mpi
mpi: $(BUILD)/clipn-mpi
$(BUILD)/obj/examples/mpi/%.o: examples/mpi/%.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) -Iexamples/cli -MMD -MP -c $< -o $@
$(BUILD)/clipn-mpi: $(MPI_OBJ) $(filter-out %/main.o,$(CLI_OBJ)) $(BUILD)/libclipn.a
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
test-mpi: $(BUILD)/clipn $(BUILD)/clipn-mpi
	@sh tests/mpi/run.sh $(BUILD)

# ---- tests: C suites, converter unittest, golden parity against PyTorch
test: all test-c test-exports test-cli test-fault test-py parity example-pkgconfig e2e-scores \
      methods-parity $(if $(HAVE_MPI),test-mpi)
	@$(MAKE) --no-print-directory test-arm # after parity, even with -j: shares tests/golden/work
# run_suites(build dir, suites, runner prefix, extra env): each run gets a fresh TMPDIR for
# the suites' scratch files, and a file left in it fails the run.
define run_suites
	@set -e; tmp=$(abspath $(1))/test-tmp; rm -rf $$tmp; mkdir -p $$tmp; \
	for t in $(2); do echo "== $(strip $(3) $$t)"; TMPDIR=$$tmp CK_FORK=yes $(4) $(3) $$t; done; \
	left=$$(ls -A $$tmp); \
	if [ -n "$$left" ]; then echo "$@: the suites left files in $$tmp: $$left"; exit 1; fi; \
	rmdir $$tmp
endef
test-c: $(TESTS) $(BUILD)/clipn
	$(call run_suites,$(BUILD),$(TESTS),,)
# libclipn.so exports exactly the public header's functions (nm; well under a second)
test-exports: $(BUILD)/libclipn.so
	@sh tests/check_exports.sh $(BUILD)/libclipn.so include/clipn.h
# the CLI's exit status and one-line error on hostile files, its usability (image inputs,
# warnings, tables, ROC plot rendered by rsvg-convert) and its data-safety promises
# (atomic checked outputs, inputs never overwritten, bounded reads): tests/cli, about 6 s
test-cli: $(BUILD)/clipn $(BUILD)/tests/npy_dump
	@sh tests/cli/test_cli_errors.sh $(BUILD)/clipn
	@sh tests/cli/test_cli_ux.sh $(BUILD)/clipn
	@sh tests/cli/test_cli_safety.sh $(BUILD)/clipn
	@$(PYTHON_TORCH) tests/cli/test_npy_strict.py $(BUILD)/tests/npy_dump
# Allocation-failure loops, SQLite style (tests/fault/run_alloc_faults.sh): the CLI linked
# with every allocation wrapped (tests/fault/fault_alloc.c) runs each subcommand's workload
# failing allocation N = 1, 2, ...; each run must exit 1 with one line, or give the clean
# run's output. Part of make test (60 points per workload: ~900 runs, 17 s CPU) and of
# make test-asan (build/asan, 30 points: 457 runs, 77 s).
FAULT_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign \
              -Wl,--wrap=aligned_alloc,--wrap=strdup,--wrap=strndup
$(BUILD)/fault/clipn: $(CLI_OBJ) $(BUILD)/obj/tests/fault/fault_alloc.o $(BUILD)/libclipn.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(FAULT_WRAP) -o $@ $(CLI_OBJ) $(BUILD)/obj/tests/fault/fault_alloc.o \
	    $(BUILD)/libclipn.a $(LDLIBS)
test-fault: $(BUILD)/fault/clipn
	@FAULT_MAX_RUNS=$${FAULT_MAX_RUNS:-60} sh tests/fault/run_alloc_faults.sh $(BUILD)/fault/clipn
# the CLI's .npy reader on its own, for the numpy comparison (tests/cli/test_npy_strict.py)
$(BUILD)/tests/npy_dump: tests/cli/npy_dump.c $(filter-out %/main.o,$(CLI_OBJ)) $(BUILD)/libclipn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iexamples/cli $(LDFLAGS) -o $@ $< $(filter-out %/main.o,$(CLI_OBJ)) \
	    $(BUILD)/libclipn.a $(LDLIBS)
test-py:
	python3 -m unittest discover -s weights_tools/tests -t . -v
parity: all $(BUILD)/golden_parity
	@sh tests/golden/run_parity.sh $(PYTHON_TORCH) $(BUILD)/golden_parity
$(BUILD)/golden_parity: tests/golden/parity.c $(BUILD)/libclipn.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libclipn.a $(LDLIBS)
# examples/classify_one.c (the program docs/api.md shows, checked to be the same) against
# an installed copy, through pkg-config: shared (run with LD_LIBRARY_PATH), then
# `pkg-config --static` with libclipn.so installed next to the archive: the binary must not
# need libclipn.so, and runs after it is removed. About 2 s.
example-pkgconfig: all
	@set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	sed -n '/^```c classify_one.c$$/,/^```$$/p' docs/api.md | sed '1d;$$d' >$$d/doc.c; \
	cmp -s $$d/doc.c examples/classify_one.c || \
	    { echo "docs/api.md's program differs from examples/classify_one.c"; exit 1; }; \
	for kind in shared static; do \
	    $(MAKE) --no-print-directory -s install BUILD=$(BUILD) PREFIX=$$d/$$kind >/dev/null; \
	    export PKG_CONFIG_PATH=$$d/$$kind/lib/pkgconfig; \
	    if [ $$kind = static ]; then flags=--static; else flags=; fi; \
	    $(CC) -std=c11 -Wall -Wextra -Werror -o $$d/classify_one_$$kind examples/classify_one.c \
	        $$(pkg-config --cflags --libs $$flags clipn); \
	    echo "== classify_one ($$kind)"; \
	    if [ $$kind = static ]; then \
	        if readelf -d $$d/classify_one_static | grep -q 'NEEDED.*libclipn'; then \
	            echo "pkg-config --static linked libclipn.so: $$(pkg-config --static --libs clipn)"; \
	            exit 1; fi; \
	        rm -f $$d/$$kind/lib/libclipn.so*; \
	        env -u LD_LIBRARY_PATH $$d/classify_one_$$kind tests/fixtures/model/tiny_clipn.safetensors \
	            tests/fixtures/images/photo_chelsea_q80.jpg cat dog; \
	    else \
	        LD_LIBRARY_PATH=$$d/$$kind/lib $$d/classify_one_$$kind tests/fixtures/model/tiny_clipn.safetensors \
	            tests/fixtures/images/photo_chelsea_q80.jpg cat dog; \
	    fi; \
	done
# clipn head/classify/eval end to end against the official scoring + metric code in PyTorch.
e2e-scores: all
	@sh tests/golden/e2e_scores.sh $(PYTHON_TORCH) $(BUILD)
# GL-MCM and NegLabel against the official algorithms restated in PyTorch (~10 s)
methods-parity: all
	@sh tests/golden/methods_parity.sh $(PYTHON_TORCH) $(BUILD)

# ARM: library, CLI and Check suites cross-compiled for aarch64 (NEON kernels) into
# $(BUILD)-arm and run under qemu-user, then golden parity on the small models (the ViT-B
# ones take minutes each under emulation). The arm64 libraries are multiarch packages, so
# qemu needs no -L (scripts/install-deps.sh installs all of it; on an aarch64 host the
# binaries run natively). Cases tagged "slow" are left out: see tests/test_kernels.c.
ARM_CC    ?= aarch64-linux-gnu-gcc
ARM_BUILD ?= $(BUILD)-arm
ARM_PKG_CONFIG_LIBDIR ?= /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
QEMU_ARM  ?= $(if $(filter aarch64,$(shell uname -m)),,qemu-aarch64)
test-arm:
	PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=$(ARM_PKG_CONFIG_LIBDIR) $(MAKE) --no-print-directory \
	    CC=$(ARM_CC) BUILD=$(ARM_BUILD) all $(ARM_BUILD)/golden_parity \
	    $(patsubst $(BUILD)/%,$(ARM_BUILD)/%,$(TESTS))
	$(call run_suites,$(ARM_BUILD),$(patsubst $(BUILD)/%,$(ARM_BUILD)/%,$(TESTS)),$(QEMU_ARM),CK_TIMEOUT_MULTIPLIER=4 CK_EXCLUDE_TAGS=slow)
	@set -e; printf '#!/bin/sh\nexec $(QEMU_ARM) %s "$$@"\n' $(abspath $(ARM_BUILD))/golden_parity \
	    > $(ARM_BUILD)/golden_parity_qemu; \
	chmod +x $(ARM_BUILD)/golden_parity_qemu; \
	PARITY_MODELS="small small-quickgelu small-noprompt" PARITY_LOG=tests/golden/work/parity-arm.log \
	    sh tests/golden/run_parity.sh $(PYTHON_TORCH) $(ARM_BUILD)/golden_parity_qemu

# AddressSanitizer + UndefinedBehaviorSanitizer over every C suite, in its own build dir.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
test-asan:
	$(MAKE) BUILD=build/asan OPT=-O1 EXTRA_CFLAGS="$(SAN_FLAGS)" EXTRA_LDFLAGS="$(SAN_FLAGS)" \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    FAULT_MAX_RUNS=$(ASAN_FAULT_MAX_RUNS) test-c test-fault
# the allocation-failure loops under ASan sample fewer points per workload (each run is slower)
ASAN_FAULT_MAX_RUNS ?= 30

demo: all
	@sh scripts/demo.sh

bench: all $(BENCHES)
	@sh bench/run.sh

deps:
	sh scripts/install-deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/clipn.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libclipn.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libclipn.so $(DESTDIR)$(PREFIX)/lib/libclipn.so.0
	ln -sf libclipn.so.0 $(DESTDIR)$(PREFIX)/lib/libclipn.so
	install -m 755 $(BUILD)/clipn $(DESTDIR)$(PREFIX)/bin/
	for pc in clipn clipn-shared; do \
	    sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|0.1.0|g' -e 's|@REQUIRES@|$(PKGS)|g' \
	        $$pc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/$$pc.pc; \
	done

# the parity models (tests/golden/work, ~3.6 GB after make test) and the ARM build too
clean:
	rm -rf $(BUILD) $(ARM_BUILD) tests/golden/work

# ---- fuzzing: libFuzzer harnesses tests/fuzz/fuzz_<target>.c (clang, ASan + UBSan), built in
# build/fuzz; `make fuzz FUZZ_SECONDS=60` runs each for that long and fails on a finding.
# New corpus entries go to build/fuzz/corpus/<target>; the committed seeds stay as they are.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_NICE    ?= nice -n 19
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
                -fsanitize-ignorelist=tests/fuzz/ubsan_ignore.txt
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
.PHONY: fuzz fuzz-build
fuzz-build:
	$(MAKE) CC=$(FUZZ_CC) BUILD=build/fuzz OPT=-O1 \
	    EXTRA_CFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" build/fuzz/libclipn.a
	@set -e; for t in $(FUZZ_TARGETS); do \
	    extra=; [ $$t = npy ] && extra="-Iexamples/cli $(filter-out %/main.c,$(CLI_SRC))"; \
	    echo "$(FUZZ_CC) ... -o build/fuzz/fuzz_$$t"; \
	    $(FUZZ_CC) $(CFLAGS) -O1 $(FUZZ_SAN) -fsanitize=fuzzer -Itests/fuzz $$extra \
	        -o build/fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c build/fuzz/libclipn.a $(LDLIBS); \
	done
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/corpus/$$t; echo "== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
	    $(FUZZ_NICE) build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	        -timeout=10 -print_final_stats=1 -artifact_prefix=build/fuzz/fuzz_$$t- \
	        build/fuzz/corpus/$$t tests/fuzz/corpus/$$t; \
	done

# valgrind memcheck over every CLI subcommand on the tiny model (tests/cli/valgrind_workload.sh)
.PHONY: test-valgrind
test-valgrind: all
	@sh tests/cli/valgrind_workload.sh $(BUILD)/clipn

# ThreadSanitizer over the multi-threaded suites (tests/test_stress.c, tests/test_threads.c),
# in build/tsan. OpenBLAS, libjpeg and cJSON are not instrumented: their own races are not
# seen (docs/security.md).
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
.PHONY: test-tsan
test-tsan:
	$(MAKE) BUILD=build/tsan OPT=-O1 EXTRA_CFLAGS="$(TSAN_FLAGS)" EXTRA_LDFLAGS="$(TSAN_FLAGS)" \
	    build/tsan/tests/test_stress build/tsan/tests/test_threads
	@set -e; for t in test_stress test_threads; do echo "== build/tsan/tests/$$t"; \
	    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" CK_FORK=yes build/tsan/tests/$$t; done
