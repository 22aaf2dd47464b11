/*
 * Kernel control: which ISA variant and GEMM backend run, the weight format new layers are
 * packed in, the process-wide thread count, and hooks for tests and benchmarks. lib/ calls
 * only clipn_kernels_init from here; the operations themselves are in kernels.h.
 * The environment sets the initial choice: CLIPN_ISA=portable|avx2|avx512|neon,
 * CLIPN_GEMM=native|openblas, CLIPN_WEIGHTS=fp32|bf16|int8 (docs/kernels.md, "Dispatch").
 */
#ifndef CLIPN_KERNELS_CONTROL_H
#define CLIPN_KERNELS_CONTROL_H

#include <stddef.h>

/* Select kernels for this CPU (idempotent, thread-safe). Returns the ISA name chosen. */
const char *clipn_kernels_init(void);
const char *clipn_kernels_isa(void);          /* "portable", "avx2", "avx512", "neon" */
const char *clipn_kernels_gemm_backend(void); /* "native" or "openblas" */
/* Why an environment override was not honoured ("" when it was, or none was given),
 * e.g. "CLIPN_ISA=avx512 not supported by this CPU; using avx2". */
const char *clipn_kernels_note(void);

/* 1 if this CPU (and build) can run the named ISA variant, else 0. */
int clipn_kernels_isa_available(const char *isa);
/* Force a variant at run time (tests, benchmarks). isa or gemm may be NULL to keep the
 * current choice. Returns 0, or -1 (nothing changed) if a name is unknown or unavailable.
 * Not to be called while other threads run kernels. */
int clipn_kernels_select(const char *isa, const char *gemm);
/* Weight format for layers prepared from now on: "fp32" (default) or "bf16" (AVX512_BF16
 * CPUs only: weights and activations rounded to bf16, products summed in fp32; about 3
 * significant digits, see docs/performance.md). Env CLIPN_WEIGHTS sets the initial value.
 * Returns 0, or -1 (nothing changed) if unknown or unsupported. Layers already prepared
 * keep their format; a BF16 layer under an ISA without BF16 runs OpenBLAS in fp32. */
int clipn_kernels_set_weights(const char *format);
const char *clipn_kernels_weights(void);
/* The default as CLIPN_WEIGHTS_FP32, _BF16 or _INT8 (also accepted: "int8"). */
int clipn_kernels_default_weights(void);
/* 1 if BF16 layers run BF16 here (AVX512_BF16), else they are prepared as fp32. */
int clipn_kernels_bf16_native(void);
/* The INT8 micro-kernel the selected ISA runs: "avx2", "neon-sdot" or "portable". */
const char *clipn_kernels_int8_kernel(void);
/* Choose again from CPUID and the environment, as at first use (tests). Same caveat. */
void clipn_kernels_reset_from_env(void);

/* Threads used by the kernels (one pool for the whole process; also sets OpenBLAS's
 * thread count). n <= 0 means all online cores. Safe to call at any time. */
void clipn_kernels_set_threads(int n);
int clipn_kernels_threads(void);

/* Vectorised erf of the selected ISA (what the GELU epilogue uses), exposed for tests. */
void clipn_erf(const float *x, float *y, size_t n);

#endif
