/* INT8 linear layers (kernels/gemm_int8.c): weights quantized at load, activations per
 * call, products summed exactly in int32 per K group, groups summed in fp32.
 *
 * Scheme (docs/performance.md, "INT8"): symmetric int8 in [-127, 127]; one fp32 scale per
 * (output channel, group of `group` consecutive k) for the weights and per (row, group) for
 * the activations, scale = max |v| / 127 over the group. y = sum_g sa[g] * sw[g] * sum_k
 * qa qw. Grouping along K keeps a few huge activation channels (the outlier features of
 * real CLIP ViTs) from flattening every other channel of the row.
 *
 * Packed weights (after the 64-byte header of kernels/gemm.c): ceil(n_out / NR) panels,
 * each [n_groups][NR] fp32 scales then [k_pad / 4][NR][4] int8 (4 consecutive k of one
 * output side by side), zero past n_out and k; k_pad = n_groups * group.
 *
 * Activations, packed per call into MR-row micro-panels: [k_pad / 4][2][MR][4] int8 (the
 * values, then their absolute values, for the AVX2 sign trick) and [n_groups][MR] fp32
 * scales. Every variant (portable, avx2, neon) reads the same layouts and sums in the same
 * order, so all give the same result (tests/test_int8.c).
 *
 * Two activation widths over the same weight panels, chosen per layer at prepare
 * (clipn_linear.int8_act_bits, recorded in the packed header): W8A8 as above, and W8A16,
 * activations as int16 (layout below), which removes the activation half of the error at
 * the same multiply count on AVX2 (vpmaddwd: 16 products per instruction) but 6-10% more
 * time. A model loaded at INT8 runs W8A16 (lib/model/int8_layers.c, docs/performance.md
 * "INT8"). */
#ifndef CLIPN_GEMM_INT8_H
#define CLIPN_GEMM_INT8_H

#include "kernels_impl.h"

#define CLIPN_PACK_INT8 0x38544e49u /* "INT8", first word of the packed buffer */
#define CLIPN_Q8_MR 4
#define CLIPN_Q8_NR CLIPN_GEMM_NR
#define CLIPN_Q8_MIN_GROUP 16   /* group sizes: multiples of this */
#define CLIPN_Q8_DEFAULT_GROUP 64

/* C[mr, nr] (ldc) = (load_c ? C : 0) + bias + A B over n_groups groups of `group` k:
 * a: micro-panel from the slice's first quad, a_scale [n_groups][MR]; b: the panel's quads
 * from the slice's first, b_scale [n_groups][NR] from the slice's first group. Per element:
 * f = 0; per group f = fmaf((float)isum, a_scale * b_scale, f); then f + bias, then + C. */
typedef void (*clipn_q8_ukernel_fn)(int n_groups, int group, const int8_t *a,
                                    const float *a_scale, const int8_t *b, const float *b_scale,
                                    float *c, size_t ldc, int mr, int nr, const float *bias,
                                    int load_c);

/* rows [0, rows) of x (leading dim ldx; columns [0, k_valid) valid, zero after) ->
 * micro-panels of MR rows over kc columns (whole groups), one after the other: data
 * [kc/4][2][MR][4] (kc * 2 * MR bytes) and scales [kc/group][MR]. Rows past `rows` up to
 * the next multiple of MR are zero. */
typedef void (*clipn_q8_quantize_fn)(const float *x, size_t ldx, int rows, int k_valid, int kc,
                                     int group, int8_t *dst, float *scales);
void clipn_q8_quantize_portable(const float *x, size_t ldx, int rows, int k_valid, int kc,
                                int group, int8_t *dst, float *scales);

void clipn_q8_ukernel_portable(int n_groups, int group, const int8_t *a, const float *a_scale,
                               const int8_t *b, const float *b_scale, float *c, size_t ldc,
                               int mr, int nr, const float *bias, int load_c);
/* W8A16 (lin->int8_act_bits = 16): the same weight panels against activations quantized
 * to int16 in [-qmax, qmax], qmax = clipn_q16_qmax(group) (32767 up to group 512, less
 * above so that a group's int32 sum cannot overflow), scale = max |v| / qmax per (row,
 * group). Micro-panels of MR rows: [kc / 4][MR][4] int16 (kc * 2 * MR bytes, as the int8
 * ones) and [n_groups][MR] fp32 scales. Same kernel signature and sum order: per group an
 * exact int32 sum, then f = fmaf((float)isum, a_scale * b_scale, f). */
int clipn_q16_qmax(int group);
void clipn_q16_quantize_portable(const float *x, size_t ldx, int rows, int k_valid, int kc,
                                 int group, int8_t *dst, float *scales);
void clipn_q16_ukernel_portable(int n_groups, int group, const int8_t *a, const float *a_scale,
                                const int8_t *b, const float *b_scale, float *c, size_t ldc,
                                int mr, int nr, const float *bias, int load_c);
#if defined(__x86_64__)
void clipn_q16_quantize_avx2(const float *x, size_t ldx, int rows, int k_valid, int kc,
                             int group, int8_t *dst, float *scales);
void clipn_q16_ukernel_avx2(int n_groups, int group, const int8_t *a, const float *a_scale,
                            const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                            int nr, const float *bias, int load_c);
#endif
#if defined(__aarch64__)
void clipn_q16_ukernel_neon(int n_groups, int group, const int8_t *a, const float *a_scale,
                            const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                            int nr, const float *bias, int load_c);
#endif

#if defined(__x86_64__)
void clipn_q8_quantize_avx2(const float *x, size_t ldx, int rows, int k_valid, int kc,
                            int group, int8_t *dst, float *scales);
void clipn_q8_ukernel_avx2(int n_groups, int group, const int8_t *a, const float *a_scale,
                           const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                           int nr, const float *bias, int load_c);
#endif
#if defined(__aarch64__)
int clipn_q8_neon_dotprod(void); /* the CPU has SDOT (FEAT_DotProd) */
void clipn_q8_ukernel_neon(int n_groups, int group, const int8_t *a, const float *a_scale,
                           const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                           int nr, const float *bias, int load_c);
#endif

/* Pack lin->weight as INT8 (group: a multiple of CLIPN_Q8_MIN_GROUP, or 0 = the default).
 * Returns 0 or -1 (allocation, bad shape). */
int clipn_int8_prepare(clipn_linear *lin, int group);
/* The forward pass of a layer packed by clipn_int8_prepare. */
void clipn_int8_forward(const clipn_linear *lin, const float *x, int m, float *y,
                        clipn_epilogue epi);

#endif
