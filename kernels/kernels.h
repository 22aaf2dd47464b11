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
    int int8_act_bits;         /* INT8: activations as int8 (0 or 8) or int16 (16) */
} clipn_linear;

typedef enum clipn_epilogue {
    CLIPN_EPI_NONE = 0,        /* y = xW^T + b */
    CLIPN_EPI_GELU = 1,        /* y = gelu_erf(xW^T + b) */
    CLIPN_EPI_QUICKGELU = 2,   /* y = quickgelu(xW^T + b) */
    CLIPN_EPI_RESIDUAL = 3     /* y += xW^T + b  (y holds the residual stream) */
} clipn_epilogue;

/* Limit the calling thread's kernel calls to n threads (itself included; 0 = the
 * process-wide count, kernels_control.h). Returns the previous limit, to restore: a
 * context's threads option (lib/core/context.c). OpenBLAS keeps the process-wide count. */
int clipn_kernels_limit_threads(int n);
/* Allocate now what the kernels would otherwise allocate on first use: the pool workers
 * the calling thread's limit asks for, and every per-thread block (GEMM activations) of
 * the layers prepared so far, for those workers and the calling thread. clipn_ctx_new
 * calls it, so the encode calls after it allocate nothing. */
void clipn_kernels_warm(void);

/* Prepare (pack) a linear layer's weights once at load. Returns 0 on success, -1 on
 * allocation failure or n_out/n_in <= 0 or weight NULL. The packed buffer (a copy of the
 * weights in 64-wide panels; none with CLIPN_GEMM=openblas) is returned through lin->packed
 * and must be freed with clipn_linear_release. */
int clipn_linear_prepare(clipn_linear *lin);
void clipn_linear_release(clipn_linear *lin);
/* What a prepared layer runs: CLIPN_WEIGHTS_FP32 (also: not packed, OpenBLAS), _BF16 or
 * _INT8. */
int clipn_linear_format(const clipn_linear *lin);

/* For measuring (CLIPN_INT8_LAYERS=...=w8, lib/model/int8_layers.c): out[n_out, n_in] =
 * w rounded to the INT8 grid of clipn_linear_prepare (group 0 = the default), so a
 * fp32 layer on `out` carries the weight error of INT8 and none of the activations'. */
void clipn_int8_round_weights(const float *w, int n_out, int n_in, int group, float *out);
/* q[rows, k] int8 and scale[rows, ceil(k / group)] of w[rows, k] with the rounding of
 * clipn_linear_prepare, groups of exactly `group` along k (the converter's --dtype int8
 * layout: the loader quantizes embeddings it holds as an f32 copy with it). */
void clipn_int8_quantize_rows(const float *w, size_t rows, size_t k, size_t group, int8_t *q,
                              float *scale);

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

/* ---- PIL's 8-bit resample passes (lib/image/resample.c, docs/images.md). Fixed point with
 * CLIPN_RESAMPLE_BITS fraction bits and integer sums, so every ISA gives the same bytes;
 * CLIPN_ISA=portable runs the plain C ones. */
#define CLIPN_RESAMPLE_BITS 22

/* The taps of one axis: output j reads `count` inputs from `first` with coefficients
 * fixed[j * ksize ...]. `spread` is the same coefficients laid out for the SIMD passes,
 * filled by clipn_resample_spread. */
typedef struct clipn_resample_taps {
    int n, ksize;
    const int *bounds;         /* [n][2]: first, count */
    const int32_t *fixed;      /* [n][ksize] */
    const int32_t *spread;     /* [n][spread_len] */
    int spread_len;
} clipn_resample_taps;

/* Ints clipn_resample_spread writes per output for C channels and ksize taps (0 on
 * overflow): C * ksize rounded up to 24, each coefficient repeated per channel. */
int clipn_resample_spread_len(int C, int ksize);
void clipn_resample_spread(const int *bounds, const int32_t *fixed, int n, int ksize, int C,
                           int32_t *spread);
/* Horizontal pass: one row of C-channel pixels (src_bytes bytes) -> taps->n pixels. */
typedef void clipn_resample_row_h_fn(const uint8_t *src, size_t src_bytes, int C,
                                     const clipn_resample_taps *taps, uint8_t *dst);
/* Vertical pass, one output row: dst[x] = clip8(sum_t rows[(first_row + t) row_bytes + x]
 * k[t]), acc [row_bytes] scratch. */
typedef void clipn_resample_row_v_fn(const uint8_t *rows, size_t row_bytes, int first_row,
                                     const int32_t *k, int cnt, int32_t *acc, uint8_t *dst);
/* PIL's rgbA2rgba / lA2la (C = 4 or 2): colour channels times alpha / 255, rounded. */
typedef void clipn_premultiply_row_fn(const uint8_t *src, int C, int w, uint8_t *dst);
clipn_resample_row_h_fn clipn_resample_row_h;
clipn_resample_row_v_fn clipn_resample_row_v;
clipn_premultiply_row_fn clipn_premultiply_row;

#endif
