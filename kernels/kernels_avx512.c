/* AVX-512 kernels (F/BW/DQ/VL + FMA). Compiled with -mavx512*; only called after CPUID
 * said yes (kernels/dispatch.c). */
#include "kernels_impl.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define VF __m512
#define VI __m512i
#define VM __mmask16
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_FMA _mm512_fmadd_ps               /* a*b + c */
#define V_FMS _mm512_fmsub_ps               /* a*b - c */
#define V_FNMA _mm512_fnmadd_ps             /* c - a*b */
#define V_MIN _mm512_min_ps                 /* NaN in either -> second operand */
#define V_MAX _mm512_max_ps
#define V_ABS _mm512_abs_ps
#define V_ROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_CVT_I _mm512_cvtps_epi32
#define V_I_SRAI1(x) _mm512_srai_epi32(x, 1)
#define V_I_SUB _mm512_sub_epi32
#define V_POW2I(e) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(127)), 23))
#define V_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define V_LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define V_GE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define V_UNORD(a, b) _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q)
#define V_SELECT(m, t, f) _mm512_mask_blend_ps(m, f, t)
#define V_COPYSIGN(mag, s) _mm512_or_ps(mag, _mm512_and_ps(s, _mm512_set1_ps(-0.0f)))
#define VEC_FN(name) name##_avx512

static inline __mmask16 tail_mask(int n) /* first n lanes, n in [0, 16] */
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

#define V_LANES 16
#define V_LOADU _mm512_loadu_ps
#define V_STOREU _mm512_storeu_ps
#define V_LOAD_TAIL(p, n) _mm512_maskz_loadu_ps(tail_mask((int)(n)), p)
#define V_STORE_TAIL(p, n, v) _mm512_mask_storeu_ps(p, tail_mask((int)(n)), v)
#include "vecmath.inc"
#include "elementwise.inc"

#define MR CLIPN_GEMM_MR
#define NR CLIPN_GEMM_NR

/* Write a 6 x 64 accumulator tile to C, adding the residual already in C (load_c) and the
 * bias. Shared by the fp32 and BF16 micro-kernels; always inlined so the accumulators stay
 * in registers. */
static inline __attribute__((always_inline)) void
store_tile_avx512(__m512 acc[MR][4], float *c, size_t ldc, const float *bias, int load_c)
{
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        store_row_avx512(c + (size_t)i * ldc, acc[i], 4, bias, load_c);
}

static inline __attribute__((always_inline)) void zero_tile_avx512(__m512 acc[MR][4])
{
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[i][j] = _mm512_setzero_ps();
}

/* 6 x 64 tile: 24 zmm accumulators; per k, 4 panel loads and 6 broadcasts feed 24 FMAs.
 * Bias and residual are added on the way out. `prefetch`: also prefetch the panel
 * STREAM_PREFETCH bytes ahead (the small-m driver, which streams panels from memory). */
#ifndef STREAM_PREFETCH
#define STREAM_PREFETCH 2048 /* 1-8 KiB tried: 2 KiB 4-6% ahead of 4 KiB, 8 KiB worst */
#endif
static inline __attribute__((always_inline)) void
gemm_tile_avx512(int kc, const float *a, const float *b, float *c, size_t ldc,
                 const float *bias, int load_c, int prefetch)
{
    __m512 acc[MR][4];
    zero_tile_avx512(acc);
    for (int k = 0; k < kc; k++) {
        if (prefetch) {
            const char *ahead = (const char *)(b + (size_t)k * NR) + STREAM_PREFETCH;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            _mm_prefetch(ahead + 128, _MM_HINT_T0);
            _mm_prefetch(ahead + 192, _MM_HINT_T0);
        }
        const __m512 b0 = _mm512_load_ps(b + (size_t)k * NR);
        const __m512 b1 = _mm512_load_ps(b + (size_t)k * NR + 16);
        const __m512 b2 = _mm512_load_ps(b + (size_t)k * NR + 32);
        const __m512 b3 = _mm512_load_ps(b + (size_t)k * NR + 48);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[k * MR + i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(ai, b3, acc[i][3]);
        }
    }
    store_tile_avx512(acc, c, ldc, bias, load_c);
}

static void gemm_ukernel_avx512(int kc, const float *a, const float *b, float *c, size_t ldc,
                                const float *bias, int load_c)
{
    gemm_tile_avx512(kc, a, b, c, ldc, bias, load_c, 0);
}

static void gemm_ukernel_stream_avx512(int kc, const float *a, const float *b, float *c,
                                       size_t ldc, const float *bias, int load_c)
{
    gemm_tile_avx512(kc, a, b, c, ldc, bias, load_c, 1);
}

/* The same 6 x 64 tile from BF16 pairs: vdpbf16ps adds a.lo*b.lo + a.hi*b.hi into each
 * fp32 lane, so one instruction covers two steps of k. */
static void gemm_ukernel_bf16_avx512(int kp, const uint32_t *a, const uint16_t *b, float *c,
                                     size_t ldc, const float *bias, int load_c)
{
    __m512 acc[MR][4];
    zero_tile_avx512(acc);
    for (int k = 0; k < kp; k++) {
        const uint16_t *bk = b + (size_t)k * 2 * NR;
        const __m512bh b0 = (__m512bh)_mm512_load_si512(bk);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(bk + 32);
        const __m512bh b2 = (__m512bh)_mm512_load_si512(bk + 64);
        const __m512bh b3 = (__m512bh)_mm512_load_si512(bk + 96);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[k * MR + i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], ai, b2);
            acc[i][3] = _mm512_dpbf16_ps(acc[i][3], ai, b3);
        }
    }
    store_tile_avx512(acc, c, ldc, bias, load_c);
}

/* Two passes: the mean summed in double (8 lanes x 2), the variance in float around it
 * (64 lanes), the mean kept as float hi + lo for x - mean. Within ~1e-7 relative of a
 * double computation for the dims CLIP uses. */
static void layernorm_avx512(const float *x, float *y, int rows, int dim, const float *g,
                             const float *b, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        __m512d d0 = _mm512_setzero_pd(), d1 = d0;
        int i = 0;
        for (; i < dim; i += 16) {
            const __m512 v = _mm512_maskz_loadu_ps(tail_mask(dim - i), xr + i);
            d0 = _mm512_add_pd(d0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            d1 = _mm512_add_pd(d1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
                                       _mm512_castps_pd(v), 1))));
        }
        const double mean = _mm512_reduce_add_pd(_mm512_add_pd(d0, d1)) / dim;
        const float mean_hi = (float)mean, mean_lo = (float)(mean - mean_hi);
        const __m512 vm = _mm512_set1_ps(mean_hi), vm_lo = _mm512_set1_ps(mean_lo);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (i = 0; i + 64 <= dim; i += 64) {
            __m512 e0 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i), vm), vm_lo);
            __m512 e1 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i + 16), vm), vm_lo);
            __m512 e2 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i + 32), vm), vm_lo);
            __m512 e3 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i + 48), vm), vm_lo);
            s0 = _mm512_fmadd_ps(e0, e0, s0);
            s1 = _mm512_fmadd_ps(e1, e1, s1);
            s2 = _mm512_fmadd_ps(e2, e2, s2);
            s3 = _mm512_fmadd_ps(e3, e3, s3);
        }
        for (; i < dim; i += 16) {
            const __mmask16 m = tail_mask(dim - i);
            __m512 e = _mm512_maskz_sub_ps(m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), vm),
                                           vm_lo);
            s0 = _mm512_fmadd_ps(e, e, s0);
        }
        const double var = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1),
                                                              _mm512_add_ps(s2, s3))) / dim;
        const __m512 vinv = _mm512_set1_ps((float)(1.0 / sqrt(var + eps)));
        for (i = 0; i < dim; i += 16) {
            const __mmask16 m = tail_mask(dim - i);
            __m512 v = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), vm), vm_lo);
            v = _mm512_mul_ps(v, vinv);
            v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, b + i));
            _mm512_mask_storeu_ps(yr + i, m, v);
        }
    }
}

/* One head. K^T is copied once into scratch ([hd][lp], zero past L) so scores for 4 query
 * rows x 64 keys are 4 broadcasts + 4 loads per 16 FMAs per step of d; the 4 x L score
 * block is the only L-sized intermediate besides a contiguous copy of V. P V then runs
 * 4 rows x 64 channels per key. */
#define AR CLIPN_ATTN_ROWS
static void attention_head_avx512(const float *qkv, float *out, int L, int W, int hd, int h,
                                  int causal, float *scratch)
{
    if (hd % 16 != 0 || hd > 256) {
        clipn_ops_portable.attention_head(qkv, out, L, W, hd, h, causal, scratch);
        return;
    }
    const clipn_head_qkv hv = clipn_head_view(qkv, W, hd, h);
    const size_t ld = hv.ld;
    const float *q = hv.q, *k = hv.k, *v = hv.v;
    const int lp = (L + 15) / 16 * 16;
    float *kt = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *s = kt + (size_t)hd * lp;
    float *vc = s + (size_t)AR * lp; /* V rows [L][hd], contiguous */
    const float scale = 1.0f / sqrtf((float)hd);
    const __m512 vscale = _mm512_set1_ps(scale);

    /* K^T by gathers of 16 keys (the scalar transpose was ~10% of the head); V copied so
     * P V streams it from one block: rows 3W floats apart fall on a few L1 sets only */
    if ((size_t)lp * ld <= INT32_MAX) {
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int j0 = 0; j0 < lp; j0 += 16) {
            const __m512i idx = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(j0)),
                                                   _mm512_set1_epi32((int)ld));
            const __mmask16 m = tail_mask(L - j0);
            for (int d = 0; d < hd; d++)
                _mm512_store_ps(kt + (size_t)d * lp + j0,
                                _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, k + d, 4));
        }
    } else {
        for (int j = 0; j < lp; j++)
            for (int d = 0; d < hd; d++)
                kt[(size_t)d * lp + j] = j < L ? k[(size_t)j * ld + d] : 0.0f;
    }
    for (int j = 0; j < L; j++)
        for (int d = 0; d < hd; d += 16)
            _mm512_store_ps(vc + (size_t)j * hd + d, _mm512_loadu_ps(v + (size_t)j * ld + d));

    float qs[AR][256];
    for (int i0 = 0; i0 < L; i0 += AR) {
        const int rows = L - i0 < AR ? L - i0 : AR;
        const int n_keys = causal ? i0 + rows : L;
        for (int r = 0; r < AR; r++) {
            const float *qr = q + (size_t)(r < rows ? i0 + r : i0) * ld;
            for (int d = 0; d < hd; d += 16) /* torch scales q before q k^T */
                _mm512_storeu_ps(qs[r] + d, _mm512_mul_ps(_mm512_loadu_ps(qr + d), vscale));
        }
        /* scores for keys [0, n_keys): 4 rows x 64 keys per step of d, 16 independent
         * accumulators (4 would leave the FMA units waiting on latency), then blocks of 16
         * (zero K^T columns pad the tail) */
        int j0 = 0;
        for (; j0 + 64 <= lp && j0 < n_keys; j0 += 64) {
            __m512 acc[AR][4];
#pragma GCC unroll 8
            for (int r = 0; r < AR; r++)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    acc[r][c] = _mm512_setzero_ps();
            for (int d = 0; d < hd; d++) {
                const float *kd = kt + (size_t)d * lp + j0;
                const __m512 k0 = _mm512_load_ps(kd), k1 = _mm512_load_ps(kd + 16);
                const __m512 k2 = _mm512_load_ps(kd + 32), k3 = _mm512_load_ps(kd + 48);
#pragma GCC unroll 4
                for (int r = 0; r < AR; r++) {
                    const __m512 qv = _mm512_set1_ps(qs[r][d]);
                    acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
                    acc[r][2] = _mm512_fmadd_ps(qv, k2, acc[r][2]);
                    acc[r][3] = _mm512_fmadd_ps(qv, k3, acc[r][3]);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < AR; r++)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    _mm512_store_ps(s + (size_t)r * lp + j0 + 16 * c, acc[r][c]);
        }
        for (; j0 < n_keys; j0 += 16) {
            __m512 acc[AR];
            for (int r = 0; r < AR; r++)
                acc[r] = _mm512_setzero_ps();
            for (int d = 0; d < hd; d++) {
                const __m512 kv = _mm512_load_ps(kt + (size_t)d * lp + j0);
#pragma GCC unroll 4
                for (int r = 0; r < AR; r++)
                    acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(qs[r][d]), kv, acc[r]);
            }
            for (int r = 0; r < AR; r++)
                _mm512_store_ps(s + (size_t)r * lp + j0, acc[r]);
        }
        /* stable softmax per row; masked keys get probability 0 */
        float inv[AR];
        for (int r = 0; r < rows; r++) {
            float *sr = s + (size_t)r * lp;
            const int nk = causal ? i0 + r + 1 : L;
            __m512 vmax = _mm512_set1_ps(-INFINITY);
            for (int j = 0; j < nk; j += 16)
                vmax = _mm512_mask_max_ps(vmax, tail_mask(nk - j), vmax, _mm512_loadu_ps(sr + j));
            const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
            __m512 vsum = _mm512_setzero_ps();
            for (int j = 0; j < n_keys; j += 16) {
                const __mmask16 m = tail_mask(nk - j);
                const __m512 e = _mm512_maskz_mov_ps(m, v_exp_avx512(
                                                           _mm512_sub_ps(_mm512_load_ps(sr + j), mx)));
                vsum = _mm512_add_ps(vsum, e);
                _mm512_store_ps(sr + j, e);
            }
            inv[r] = 1.0f / _mm512_reduce_add_ps(vsum);
        }
        /* out rows = P V, 64 channels at a time (chunks past hd masked to zero); every
         * loop over the 4 x 4 accumulators is unrolled so they stay in registers */
        for (int d0 = 0; d0 < hd; d0 += 64) {
            __mmask16 cm[4];
            __m512 acc[AR][4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                cm[c] = tail_mask(hd - d0 - 16 * c);
#pragma GCC unroll 8
                for (int r = 0; r < AR; r++)
                    acc[r][c] = _mm512_setzero_ps();
            }
            for (int j = 0; j < n_keys; j++) {
                const float *vj = vc + (size_t)j * hd + d0;
                const __m512 v0 = _mm512_maskz_load_ps(cm[0], vj);
                const __m512 v1 = _mm512_maskz_load_ps(cm[1], vj + 16);
                const __m512 v2 = _mm512_maskz_load_ps(cm[2], vj + 32);
                const __m512 v3 = _mm512_maskz_load_ps(cm[3], vj + 48);
#pragma GCC unroll 8
                for (int r = 0; r < AR; r++) {
                    const __m512 p = _mm512_set1_ps(s[(size_t)r * lp + j]);
                    acc[r][0] = _mm512_fmadd_ps(p, v0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(p, v1, acc[r][1]);
                    acc[r][2] = _mm512_fmadd_ps(p, v2, acc[r][2]);
                    acc[r][3] = _mm512_fmadd_ps(p, v3, acc[r][3]);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < AR; r++) {
                if (r >= rows)
                    break;
                float *o = out + (size_t)(i0 + r) * W + (size_t)h * hd + d0;
                const __m512 vi = _mm512_set1_ps(inv[r]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    _mm512_mask_storeu_ps(o + 16 * c, cm[c], _mm512_mul_ps(acc[r][c], vi));
            }
        }
    }
}

const clipn_kernel_ops clipn_ops_avx512 = {
    .isa = "avx512",
    .gemm_ukernel = gemm_ukernel_avx512,
    .gemm_ukernel_stream = gemm_ukernel_stream_avx512,
    .gemm_ukernel_bf16 = gemm_ukernel_bf16_avx512,
    .activate = activate_avx512,
    .layernorm = layernorm_avx512,
    .gelu_erf = gelu_erf_avx512,
    .quickgelu = quickgelu_avx512,
    .erf = erf_avx512,
    .attention_head = attention_head_avx512,
    .resample_row_h = clipn_resample_row_h_avx2, /* integer passes: AVX2's (kernels_avx2.c) */
    .resample_row_v = clipn_resample_row_v_avx2,
    .premultiply_row = clipn_premultiply_row_avx2,
};
