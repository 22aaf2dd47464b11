/*
 * Numeric kernels: the operations lib/ calls. One portable C version of each
 * (kernels/kernels_portable.c, the reference), plus ISA-specific versions
 * (kernels/kernels_avx2.c, kernels_avx512.c; on aarch64 kernels_neon.c) chosen once at run
 * time by CPUID (kernels/dispatch.c); every operation here initialises the selection on
 * first use. Choosing a variant, the thread count and the test hooks are in
 * kernels_control.h. Kernels run on one process-wide thread pool (kernels/threadpool.c).
 * See docs/kernels.md.
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

/* Prepare (pack) a linear layer's weights once at load. Returns 0 on success, -1 on
 * allocation failure or n_out/n_in <= 0 or weight NULL. The packed buffer (a copy of the
 * weights in 64-wide panels; none with CLIPN_GEMM=openblas) is returned through lin->packed
 * and must be freed with clipn_linear_release. */
int clipn_linear_prepare(clipn_linear *lin);
void clipn_linear_release(clipn_linear *lin);
/* What a prepared layer runs: CLIPN_WEIGHTS_FP32 (also: not packed, OpenBLAS), _BF16 or
 * _INT8. */
int clipn_linear_format(const clipn_linear *lin);

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
