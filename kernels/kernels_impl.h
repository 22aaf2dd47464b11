/* Internal to kernels/: the per-ISA function table, the GEMM packing layout and the
 * thread pool. Nothing here is visible to lib/. */
#ifndef CLIPN_KERNELS_IMPL_H
#define CLIPN_KERNELS_IMPL_H

#include "kernels.h"
#include "kernels_control.h"
#include "threadpool.h"

#include <stdint.h>
#include <string.h>

/* Packed weights: ceil(n_out / NR) panels, each [n_in][NR] (K-contiguous rows of NR
 * outputs), zero-padded past n_out. Every ISA reads the same layout, so a model packed once
 * can be run by any variant. Activations are packed per call into MR-row micro-panels
 * [kc][MR], zero-padded past m. */
#define CLIPN_GEMM_NR 64
#define CLIPN_GEMM_MR 6

/* fp32 -> bf16, round to nearest even; NaN stays NaN (quieted). Shared by the BF16
 * packers of kernels/gemm.c and kernels/gemm_amx.c. */
static inline uint16_t clipn_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

enum { CLIPN_ACT_NONE = 0, CLIPN_ACT_GELU_ERF = 1, CLIPN_ACT_QUICK = 2 };

/* The activation a GEMM epilogue asks the driver to apply after the last K slice. */
static inline int clipn_epilogue_act(clipn_epilogue epi)
{
    return epi == CLIPN_EPI_GELU ? CLIPN_ACT_GELU_ERF
         : epi == CLIPN_EPI_QUICKGELU ? CLIPN_ACT_QUICK : CLIPN_ACT_NONE;
}

/* ---- The micro-kernel contract (docs/kernels.md). One call computes one full tile:
 *
 *   C[MR][NR] (row stride ldc) = A B + (load_c ? C : 0) + (bias ? bias[NR] : 0)
 *
 *   a: one packed activation micro-panel, [kc][MR] floats (k-major: MR values per k),
 *      64-byte aligned; b: kc rows of one weight panel, [kc][NR] floats, 64-byte aligned.
 *   The tile is always whole: the driver (kernels/gemm.c) handles every edge by running
 *   the kernel on a local MR x NR tile and copying the valid corner, and zero-pads A past
 *   m and B past n_out. So a kernel has no mr/nr, no masks, no tail loops.
 *   Order of the epilogue: acc = sum over k of a*b (k ascending within the slice, in any
 *   fixed association the ISA likes), then acc + C (when load_c), then + bias: the driver
 *   relies on it to give the same bits for a row whatever m is. load_c is set on every K
 *   slice after the first (C holds the partial sum) and for the residual epilogue (C holds
 *   the residual stream); bias is non-NULL only on the first slice. The activation
 *   (GELU/QuickGELU) is not the kernel's: the driver applies ops.activate to each finished
 *   block.
 * The BF16 kernel has the same contract with kp = ceil(kc / 2) k-pairs:
 *   a [kp][MR] u32 (two bf16: k even in the low half), b [kp][NR][2] bf16. */
typedef void (*clipn_gemm_ukernel_fn)(int kc, const float *a, const float *b, float *c,
                                      size_t ldc, const float *bias, int load_c);
typedef void (*clipn_gemm_ukernel_bf16_fn)(int kp, const uint32_t *a, const uint16_t *b,
                                           float *c, size_t ldc, const float *bias,
                                           int load_c);

typedef struct clipn_kernel_ops {
    const char *isa;
    clipn_gemm_ukernel_fn gemm_ukernel;
    /* Optional (NULL: gemm_ukernel): the same tile, same sums in the same order, also
     * prefetching the weight panel ahead; the small-m driver streams panels from memory. */
    clipn_gemm_ukernel_fn gemm_ukernel_stream;
    /* Same tile with BF16 inputs and fp32 accumulation (NULL where the ISA has none). */
    clipn_gemm_ukernel_bf16_fn gemm_ukernel_bf16;
    /* GELU / QuickGELU over a [rows, cols] block (ldc), run by the GEMM driver on each
     * block of C it just finished while the block is still in cache. (Applying it inside
     * the micro-kernel measured 25% slower: 24 live accumulators plus the erf code.) */
    void (*activate)(float *c, size_t ldc, int rows, int cols, int act);
    void (*layernorm)(const float *x, float *y, int rows, int dim, const float *g,
                      const float *b, float eps);
    void (*gelu_erf)(float *x, size_t n);
    void (*quickgelu)(float *x, size_t n);
    void (*erf)(const float *x, float *y, size_t n);
    /* one head of attention; scratch has clipn_attention_head_scratch(L, hd) floats */
    void (*attention_head)(const float *qkv, float *out, int L, int W, int hd, int h,
                           int causal, float *scratch);
    /* the image resampler's passes (kernels.h); NULL: the portable ones */
    clipn_resample_row_h_fn *resample_row_h;
    clipn_resample_row_v_fn *resample_row_v;
    clipn_premultiply_row_fn *premultiply_row;
} clipn_kernel_ops;

/* PIL's clip8: floor(ss / 2^CLIPN_RESAMPLE_BITS) clamped to 0..255. */
static inline uint8_t clipn_clip8(int32_t ss)
{
    if (ss < 0)
        return 0;
    ss >>= CLIPN_RESAMPLE_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

/* MULDIV255 of PIL's ImagingUtils.h: a * b / 255 rounded, as PIL computes it. */
static inline unsigned clipn_muldiv255(unsigned a, unsigned b)
{
    unsigned t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* The portable passes, for the ISA versions' edge cases */
void clipn_resample_one_h_portable(const uint8_t *src, int C, const clipn_resample_taps *taps,
                                   int j, uint8_t *dst);
clipn_premultiply_row_fn clipn_premultiply_row_portable;
#if defined(__x86_64__)
/* kernels/kernels_avx2.c's passes, also in the AVX-512 table (AVX-512 CPUs have AVX2) */
clipn_resample_row_h_fn clipn_resample_row_h_avx2;
clipn_resample_row_v_fn clipn_resample_row_v_avx2;
clipn_premultiply_row_fn clipn_premultiply_row_avx2;
#endif

extern const clipn_kernel_ops clipn_ops_portable;
#if defined(__x86_64__)
extern const clipn_kernel_ops clipn_ops_avx2;
extern const clipn_kernel_ops clipn_ops_avx512;
#endif
#if defined(__aarch64__)
extern const clipn_kernel_ops clipn_ops_neon; /* kernels/kernels_neon.c */
#endif

/* The selected table (initialises on first use). */
const clipn_kernel_ops *clipn_kernels_ops(void);
int clipn_kernels_use_openblas(void);

/* ---- OpenBLAS backend (kernels/gemm_openblas.c) */
/* y (op)= x W^T + b with cblas_sgemm on lin->weight, then ops' activation. */
void clipn_openblas_forward(const clipn_linear *lin, const float *x, int m, float *y,
                            clipn_epilogue epi, const clipn_kernel_ops *ops);
/* Give OpenBLAS the pool's thread count if it does not have it yet (before any sgemm). */
void clipn_openblas_sync_threads(void);
int clipn_kernels_weights_bf16(void); /* pack new layers as BF16 */

/* This thread's GEMM activation block (GEMM_MC x GEMM_KC floats, 64-byte aligned),
 * allocated on the thread's first call (pool workers: when they start) and freed when it
 * exits; NULL if that failed. */
float *clipn_gemm_thread_scratch(void);

/* One head's q, k and v columns in the [L, 3W] qkv rows (row stride ld = 3W). */
typedef struct clipn_head_qkv {
    const float *q, *k, *v;
    size_t ld;
} clipn_head_qkv;

static inline clipn_head_qkv clipn_head_view(const float *qkv, int W, int hd, int h)
{
    const size_t off = (size_t)h * hd;
    return (clipn_head_qkv){qkv + off, qkv + W + off, qkv + 2 * (size_t)W + off, 3 * (size_t)W};
}

/* Scratch floats for one head: scores block plus K^T, 64-byte alignment slack included. */
size_t clipn_attention_head_scratch(int L, int hd);
#define CLIPN_ATTN_ROWS 4 /* query rows scored at once */

#endif
