/*
 * Numeric kernels. One portable C version of each (kernels/kernels_portable.c, the
 * reference), plus ISA-specific versions (kernels/kernels_avx2.c, kernels_avx512.c; on
 * aarch64 kernels_neon.c) chosen once at run time by CPUID (kernels/dispatch.c). Set
 * CLIPN_ISA=portable|avx2|avx512|neon and CLIPN_GEMM=native|openblas to force a variant,
 * e.g. to test every variant against the same golden outputs. Kernels run on one
 * process-wide thread pool (kernels/threadpool.c). See docs/performance.md.
 */
#ifndef CLIPN_KERNELS_H
#define CLIPN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Weight formats a layer can be prepared as (clipn_linear.format). */
enum {
    CLIPN_WEIGHTS_DEFAULT = 0, /* the process default: clipn_kernels_weights() */
    CLIPN_WEIGHTS_FP32 = 1,
    CLIPN_WEIGHTS_BF16 = 2,    /* AVX512_BF16 CPUs; elsewhere prepared as fp32 */
    CLIPN_WEIGHTS_INT8 = 3     /* kernels/gemm_int8.h; every CPU */
};

/* A PyTorch Linear: y = x W^T + b, W [n_out, n_in] row-major. `packed` is filled by
 * clipn_linear_prepare with the layout the selected GEMM micro-kernel wants. */
typedef struct clipn_linear {
    int n_out, n_in;
    const float *weight;       /* [n_out, n_in] */
    const float *bias;         /* [n_out] or NULL */
    void *packed;              /* owned by the model; NULL = use weight directly */
    size_t packed_bytes;
    int format;                /* CLIPN_WEIGHTS_*: what to prepare */
    int int8_group;            /* INT8: k per scale group, 0 = default (64) */
} clipn_linear;

typedef enum clipn_epilogue {
    CLIPN_EPI_NONE = 0,        /* y = xW^T + b */
    CLIPN_EPI_GELU = 1,        /* y = gelu_erf(xW^T + b) */
    CLIPN_EPI_QUICKGELU = 2,   /* y = quickgelu(xW^T + b) */
    CLIPN_EPI_RESIDUAL = 3     /* y += xW^T + b  (y holds the residual stream) */
} clipn_epilogue;

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
/* What a prepared layer runs: CLIPN_WEIGHTS_FP32 (also: not packed, OpenBLAS), _BF16 or
 * _INT8. */
int clipn_linear_format(const clipn_linear *lin);
/* Choose again from CPUID and the environment, as at first use (tests). Same caveat. */
void clipn_kernels_reset_from_env(void);

/* Threads used by the kernels (one pool for the whole process; also sets OpenBLAS's
 * thread count). n <= 0 means all online cores. Safe to call at any time. */
void clipn_kernels_set_threads(int n);
int clipn_kernels_threads(void);

/* Vectorised erf of the selected ISA (what the GELU epilogue uses), exposed for tests. */
void clipn_erf(const float *x, float *y, size_t n);

/* Prepare (pack) a linear layer's weights once at load. Returns 0 on success, -1 on
 * allocation failure or n_out/n_in <= 0 or weight NULL. The packed buffer (a copy of the
 * weights in 64-wide panels; none with CLIPN_GEMM=openblas) is returned through lin->packed
 * and must be freed with clipn_linear_release. */
int clipn_linear_prepare(clipn_linear *lin);
void clipn_linear_release(clipn_linear *lin);

/* y[m, n_out] (op) x[m, n_in] W^T + b, as the epilogue says. x and y must not alias.
 * Uses the pool and per-thread activation blocks allocated once per thread (a thread that
 * could not get one uses a small stack block), so it does no per-call allocation and
 * cannot fail. Safe from many threads at once. */
void clipn_linear_forward(const clipn_linear *lin, const float *x, int m, float *y,
                          clipn_epilogue epi);

/* y = LayerNorm(x) * g + b over the last dim, rows independent. y may alias x. */
void clipn_layernorm(const float *x, float *y, int rows, int dim, const float *g,
                     const float *b, float eps);

void clipn_gelu_erf(float *x, size_t n);
void clipn_quickgelu(float *x, size_t n);

/* Multi-head self-attention core for one sequence (heads in parallel on the pool).
 * qkv: [L, 3*W] rows laid out q|k|v (output of in_proj); out: [L, W].
 * Scores scaled by head_dim^-0.5, causal: position i attends to j <= i.
 * scratch: at least clipn_attention_scratch_floats(L, W, heads) floats. */
size_t clipn_attention_scratch_floats(int L, int W, int heads);
void clipn_attention(const float *qkv, float *out, int L, int W, int heads, int causal,
                     float *scratch);

#endif
