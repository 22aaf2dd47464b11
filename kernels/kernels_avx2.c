/* AVX2 + FMA kernels. Compiled with -mavx2 -mfma; only called after CPUID said yes. */
#include "kernels_impl.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define VF __m256
#define VI __m256i
#define VM __m256
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_FMA _mm256_fmadd_ps
#define V_FMS _mm256_fmsub_ps
#define V_FNMA _mm256_fnmadd_ps
#define V_MIN _mm256_min_ps
#define V_MAX _mm256_max_ps
#define V_ABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define V_ROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_CVT_I _mm256_cvtps_epi32
#define V_I_SRAI1(x) _mm256_srai_epi32(x, 1)
#define V_I_SUB _mm256_sub_epi32
#define V_POW2I(e) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23))
#define V_GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define V_LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define V_GE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define V_UNORD(a, b) _mm256_cmp_ps(a, b, _CMP_UNORD_Q)
#define V_SELECT(m, t, f) _mm256_blendv_ps(f, t, m)
#define V_COPYSIGN(mag, s) _mm256_or_ps(mag, _mm256_and_ps(s, _mm256_set1_ps(-0.0f)))
#define VEC_FN(name) name##_avx2

static inline __m256i tail_mask(int n) /* lanes < n active, n clamped to [0, 8] */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define V_LANES 8
#define V_LOADU _mm256_loadu_ps
#define V_STOREU _mm256_storeu_ps
#define V_LOAD_TAIL(p, n) _mm256_maskload_ps(p, tail_mask((int)(n)))
#define V_STORE_TAIL(p, n, v) _mm256_maskstore_ps(p, tail_mask((int)(n)), v)
#include "vecmath.inc"
#include "elementwise.inc"

#define MR CLIPN_GEMM_MR
#define NR CLIPN_GEMM_NR

/* The 6 x 64 panel tile as four 6 x 16 strips (12 ymm accumulators each); the 6 x kc
 * activation micro-panel stays in L1 across the strips. `prefetch`: the first strip also
 * prefetches whole panel rows STREAM_PREFETCH bytes ahead (small-m driver, panels from
 * memory; the strips read one line of each 256-byte row, a pattern the hardware follows
 * less well). */
#ifndef STREAM_PREFETCH
#define STREAM_PREFETCH 2048 /* as kernels_avx512.c */
#endif
static inline __attribute__((always_inline)) void
gemm_tile_avx2(int kc, const float *a, const float *b, float *c, size_t ldc, const float *bias,
               int load_c, int prefetch)
{
    for (int s = 0; s < NR / 16; s++) {
        __m256 acc[MR][2];
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
            acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        const float *bs = b + 16 * s;
        for (int k = 0; k < kc; k++) {
            if (prefetch && s == 0) {
                const char *ahead = (const char *)(b + (size_t)k * NR) + STREAM_PREFETCH;
                _mm_prefetch(ahead, _MM_HINT_T0);
                _mm_prefetch(ahead + 64, _MM_HINT_T0);
                _mm_prefetch(ahead + 128, _MM_HINT_T0);
                _mm_prefetch(ahead + 192, _MM_HINT_T0);
            }
            const __m256 b0 = _mm256_load_ps(bs + (size_t)k * NR);
            const __m256 b1 = _mm256_load_ps(bs + (size_t)k * NR + 8);
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                const __m256 ai = _mm256_broadcast_ss(a + k * MR + i);
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
            store_row_avx2(c + (size_t)i * ldc + 16 * s, acc[i], 2, bias ? bias + 16 * s : NULL,
                           load_c);
    }
}

static void gemm_ukernel_avx2(int kc, const float *a, const float *b, float *c, size_t ldc,
                              const float *bias, int load_c)
{
    gemm_tile_avx2(kc, a, b, c, ldc, bias, load_c, 0);
}

static void gemm_ukernel_stream_avx2(int kc, const float *a, const float *b, float *c,
                                     size_t ldc, const float *bias, int load_c)
{
    gemm_tile_avx2(kc, a, b, c, ldc, bias, load_c, 1);
}

static float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Same scheme as the AVX-512 version: mean in double, variance in float (32 lanes). */
static void layernorm_avx2(const float *x, float *y, int rows, int dim, const float *g,
                           const float *b, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        __m256d d0 = _mm256_setzero_pd(), d1 = d0;
        int i = 0;
        for (; i < dim; i += 8) {
            const __m256 v = _mm256_maskload_ps(xr + i, tail_mask(dim - i));
            d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
        double part[4];
        _mm256_storeu_pd(part, _mm256_add_pd(d0, d1));
        const double mean = (part[0] + part[1] + part[2] + part[3]) / dim;
        const float mean_hi = (float)mean, mean_lo = (float)(mean - mean_hi);
        const __m256 vm = _mm256_set1_ps(mean_hi), vm_lo = _mm256_set1_ps(mean_lo);
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (i = 0; i + 32 <= dim; i += 32) {
            __m256 e0 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), vm), vm_lo);
            __m256 e1 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), vm), vm_lo);
            __m256 e2 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i + 16), vm), vm_lo);
            __m256 e3 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i + 24), vm), vm_lo);
            s0 = _mm256_fmadd_ps(e0, e0, s0);
            s1 = _mm256_fmadd_ps(e1, e1, s1);
            s2 = _mm256_fmadd_ps(e2, e2, s2);
            s3 = _mm256_fmadd_ps(e3, e3, s3);
        }
        for (; i < dim; i += 8) {
            const __m256i m = tail_mask(dim - i);
            __m256 e = _mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + i, m), vm), vm_lo);
            e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
            s0 = _mm256_fmadd_ps(e, e, s0);
        }
        const double var =
            hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) / (double)dim;
        const __m256 vinv = _mm256_set1_ps((float)(1.0 / sqrt(var + eps)));
        for (i = 0; i < dim; i += 8) {
            const __m256i m = tail_mask(dim - i);
            __m256 v = _mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + i, m), vm), vm_lo);
            v = _mm256_mul_ps(v, vinv);
            v = _mm256_fmadd_ps(v, _mm256_maskload_ps(g + i, m), _mm256_maskload_ps(b + i, m));
            _mm256_maskstore_ps(yr + i, m, v);
        }
    }
}

/* One head, CLIPN_ATTN_ROWS query rows at a time (the AVX-512 kernel's plan at 8 lanes):
 * scores S = (q scale) K^T against K transposed once into [hd][Lp] (zero columns pad Lp),
 * a stable softmax per row (keys a causal row may not see get probability 0), then P V
 * from a contiguous copy of V, 4 rows x 16 channels per key. 8 independent accumulators in
 * both products: the dot-product-per-key loop this replaces waited on FMA latency. */
#define AR CLIPN_ATTN_ROWS
static void attention_head_avx2(const float *qkv, float *out, int L, int W, int hd, int h,
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
    const __m256 vscale = _mm256_set1_ps(1.0f / sqrtf((float)hd));

    for (int j = 0; j < lp; j++) {
        const float *kj = k + (size_t)j * ld;
        for (int d = 0; d < hd; d++)
            kt[(size_t)d * lp + j] = j < L ? kj[d] : 0.0f;
    }
    for (int j = 0; j < L; j++)
        for (int d = 0; d < hd; d += 8)
            _mm256_store_ps(vc + (size_t)j * hd + d, _mm256_loadu_ps(v + (size_t)j * ld + d));

    _Alignas(32) float qs[AR][256];
    for (int i0 = 0; i0 < L; i0 += AR) {
        const int rows = L - i0 < AR ? L - i0 : AR;
        const int n_keys = causal ? i0 + rows : L;
        for (int r = 0; r < AR; r++) {
            const float *qr = q + (size_t)(r < rows ? i0 + r : i0) * ld;
            for (int d = 0; d < hd; d += 8) /* torch scales q before q k^T */
                _mm256_store_ps(qs[r] + d, _mm256_mul_ps(_mm256_loadu_ps(qr + d), vscale));
        }
        /* scores for keys [0, n_keys) in blocks of 16 */
        for (int j0 = 0; j0 < n_keys; j0 += 16) {
            __m256 acc[AR][2];
#pragma GCC unroll 4
            for (int r = 0; r < AR; r++)
                acc[r][0] = acc[r][1] = _mm256_setzero_ps();
            for (int d = 0; d < hd; d++) {
                const float *kd = kt + (size_t)d * lp + j0;
                const __m256 k0 = _mm256_load_ps(kd), k1 = _mm256_load_ps(kd + 8);
#pragma GCC unroll 4
                for (int r = 0; r < AR; r++) {
                    const __m256 qv = _mm256_broadcast_ss(qs[r] + d);
                    acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < AR; r++) {
                _mm256_store_ps(s + (size_t)r * lp + j0, acc[r][0]);
                _mm256_store_ps(s + (size_t)r * lp + j0 + 8, acc[r][1]);
            }
        }
        /* stable softmax per row over its nk keys; the rest of [0, n_keys) set to 0 */
        float inv[AR];
        for (int r = 0; r < rows; r++) {
            float *sr = s + (size_t)r * lp;
            const int nk = causal ? i0 + r + 1 : L;
            __m256 vmax = _mm256_set1_ps(-INFINITY);
            for (int j = 0; j < nk; j += 8)
                vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                                            _mm256_load_ps(sr + j),
                                                            _mm256_castsi256_ps(tail_mask(nk - j))));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            const __m256 mx = _mm256_set1_ps(_mm_cvtss_f32(m4));
            __m256 vsum = _mm256_setzero_ps();
            for (int j = 0; j < n_keys; j += 8) {
                const __m256 e = _mm256_and_ps(v_exp_avx2(_mm256_sub_ps(_mm256_load_ps(sr + j), mx)),
                                               _mm256_castsi256_ps(tail_mask(nk - j)));
                vsum = _mm256_add_ps(vsum, e);
                _mm256_store_ps(sr + j, e);
            }
            inv[r] = 1.0f / hsum(vsum);
        }
        /* out rows = P V, 16 channels at a time */
        for (int d0 = 0; d0 < hd; d0 += 16) {
            __m256 acc[AR][2];
#pragma GCC unroll 4
            for (int r = 0; r < AR; r++)
                acc[r][0] = acc[r][1] = _mm256_setzero_ps();
            for (int j = 0; j < n_keys; j++) {
                const float *vj = vc + (size_t)j * hd + d0;
                const __m256 v0 = _mm256_load_ps(vj), v1 = _mm256_load_ps(vj + 8);
#pragma GCC unroll 4
                for (int r = 0; r < AR; r++) {
                    const __m256 p = _mm256_broadcast_ss(s + (size_t)r * lp + j);
                    acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < AR; r++) {
                if (r >= rows)
                    break;
                float *o = out + (size_t)(i0 + r) * W + (size_t)h * hd + d0;
                const __m256 vi = _mm256_set1_ps(inv[r]);
                _mm256_storeu_ps(o, _mm256_mul_ps(acc[r][0], vi));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(acc[r][1], vi));
            }
        }
    }
}
#undef AR

/* ---- PIL's 8-bit resample passes (the portable ones: kernels_portable.c) */

/* The same sums with AVX2. Integer sums do not depend on order, so the result is
 * identical to the scalar code. The horizontal pass reads each output's window of
 * C * cnt interleaved bytes in 24-byte steps (24 is a multiple of C for C = 1..4, so
 * every lane of the 3 accumulators keeps one channel), against coefficients expanded to
 * one per byte and zero-padded (taps->spread, clipn_resample_spread). */
#define CHUNK 24

void clipn_resample_row_h_avx2(const uint8_t *src, size_t src_bytes, int C,
                               const clipn_resample_taps *taps, uint8_t *dst)
{
    const int32_t init = 1 << (CLIPN_RESAMPLE_BITS - 1);
    const int L = taps->spread_len;
    for (int j = 0; j < taps->n; j++) {
        int xmin = taps->bounds[2 * j], cnt = taps->bounds[2 * j + 1];
        size_t off = (size_t)xmin * C;
        int chunks = (C * cnt + CHUNK - 1) / CHUNK;
        if (off + (size_t)chunks * CHUNK > src_bytes) { /* window ends at the row's end */
            clipn_resample_one_h_portable(src, C, taps, j, dst);
            continue;
        }
        const uint8_t *p = src + off;
        const int32_t *k = taps->spread + (size_t)j * L;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0;
        for (int m = 0; m < chunks; m++, p += CHUNK, k += CHUNK) {
            __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
            __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
            __m256i v2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16)));
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(v0, _mm256_loadu_si256((const __m256i *)k)));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(v1, _mm256_loadu_si256((const __m256i *)(k + 8))));
            a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(v2, _mm256_loadu_si256((const __m256i *)(k + 16))));
        }
        /* lane i of accumulator a holds channel (8a + i) % C */
        int32_t l[CHUNK], s0 = init, s1 = init, s2 = init, s3 = init;
        uint8_t *d = dst + (size_t)j * C;
        if (C == 3) {
            _mm256_storeu_si256((__m256i *)l, a0);
            _mm256_storeu_si256((__m256i *)(l + 8), a1);
            _mm256_storeu_si256((__m256i *)(l + 16), a2);
            s0 += l[0] + l[3] + l[6] + l[9] + l[12] + l[15] + l[18] + l[21];
            s1 += l[1] + l[4] + l[7] + l[10] + l[13] + l[16] + l[19] + l[22];
            s2 += l[2] + l[5] + l[8] + l[11] + l[14] + l[17] + l[20] + l[23];
            d[0] = clipn_clip8(s0);
            d[1] = clipn_clip8(s1);
            d[2] = clipn_clip8(s2);
            continue;
        }
        /* C = 1, 2, 4 divide 8: the three accumulators share one lane layout */
        __m256i a = _mm256_add_epi32(_mm256_add_epi32(a0, a1), a2);
        __m128i q = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        _mm_storeu_si128((__m128i *)l, q); /* lane i: channel i % C */
        if (C == 4) {
            d[0] = clipn_clip8(s0 + l[0]);
            d[1] = clipn_clip8(s1 + l[1]);
            d[2] = clipn_clip8(s2 + l[2]);
            d[3] = clipn_clip8(s3 + l[3]);
        } else if (C == 2) {
            d[0] = clipn_clip8(s0 + l[0] + l[2]);
            d[1] = clipn_clip8(s1 + l[1] + l[3]);
        } else {
            d[0] = clipn_clip8(s0 + l[0] + l[1] + l[2] + l[3]);
        }
    }
}

void clipn_resample_row_v_avx2(const uint8_t *rows, size_t row_bytes, int first_row,
                               const int32_t *k, int cnt, int32_t *acc, uint8_t *dst)
{
    const int32_t init = 1 << (CLIPN_RESAMPLE_BITS - 1);
    const uint8_t *base = rows + (size_t)first_row * row_bytes;
    size_t x = 0;
    for (; x + 16 <= row_bytes; x += 16) {
        __m256i s0 = _mm256_set1_epi32(init), s1 = s0;
        const uint8_t *r = base + x;
        for (int t = 0; t < cnt; t++, r += row_bytes) {
            __m256i kt = _mm256_set1_epi32(k[t]);
            __m128i b = _mm_loadu_si128((const __m128i *)r);
            s0 = _mm256_add_epi32(s0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(b), kt));
            s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(
                                          _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), kt));
        }
        _mm256_storeu_si256((__m256i *)(acc + x), s0);
        _mm256_storeu_si256((__m256i *)(acc + x + 8), s1);
    }
    for (; x < row_bytes; x++) {
        int32_t ss = init;
        for (int t = 0; t < cnt; t++)
            ss += base[(size_t)t * row_bytes + x] * k[t];
        acc[x] = ss;
    }
    for (x = 0; x < row_bytes; x++)
        dst[x] = clipn_clip8(acc[x]);
}

/* rgbA2rgba / lA2la on 16 pixels' worth of bytes at a time: x * alpha (the alpha byte
 * times 255, which MULDIV255 maps to itself), + 128, ((t >> 8) + t) >> 8, all within
 * 16 bits without wrapping. SHUF replicates each pixel's alpha word, BLEND marks it. */
#define PREMULTIPLY_AVX2(fn, C, SHUF, BLEND)                                                   \
    static void fn(const uint8_t *src, int w, uint8_t *dst)                                   \
    {                                                                                         \
        const __m256i zero = _mm256_setzero_si256(), c128 = _mm256_set1_epi16(128);            \
        const __m256i c255 = _mm256_set1_epi16(255);                                          \
        size_t n = (size_t)w * C, i = 0;                                                      \
        for (; i + 32 <= n; i += 32) {                                                        \
            __m256i v = _mm256_loadu_si256((const __m256i *)(src + i));                       \
            __m256i half[2] = {_mm256_unpacklo_epi8(v, zero), _mm256_unpackhi_epi8(v, zero)}; \
            for (int k = 0; k < 2; k++) {                                                     \
                __m256i x = half[k];                                                          \
                __m256i a = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(x, SHUF), SHUF);    \
                a = _mm256_blend_epi16(a, c255, BLEND);                                       \
                __m256i t = _mm256_add_epi16(_mm256_mullo_epi16(x, a), c128);                 \
                half[k] = _mm256_srli_epi16(_mm256_add_epi16(_mm256_srli_epi16(t, 8), t), 8); \
            }                                                                                 \
            _mm256_storeu_si256((__m256i *)(dst + i), _mm256_packus_epi16(half[0], half[1])); \
        }                                                                                     \
        clipn_premultiply_row_portable(src + i, C, (int)((n - i) / C), dst + i);              \
    }
PREMULTIPLY_AVX2(premultiply_rgba_avx2, 4, 0xFF, 0x88)
PREMULTIPLY_AVX2(premultiply_la_avx2, 2, 0xF5, 0xAA)

void clipn_premultiply_row_avx2(const uint8_t *src, int C, int w, uint8_t *dst)
{
    if (C == 4)
        premultiply_rgba_avx2(src, w, dst);
    else if (C == 2)
        premultiply_la_avx2(src, w, dst);
    else
        clipn_premultiply_row_portable(src, C, w, dst);
}

const clipn_kernel_ops clipn_ops_avx2 = {
    .isa = "avx2",
    .gemm_ukernel = gemm_ukernel_avx2,
    .gemm_ukernel_stream = gemm_ukernel_stream_avx2,
    .activate = activate_avx2,
    .layernorm = layernorm_avx2,
    .gelu_erf = gelu_erf_avx2,
    .quickgelu = quickgelu_avx2,
    .erf = erf_avx2,
    .attention_head = attention_head_avx2,
    .resample_row_h = clipn_resample_row_h_avx2,
    .resample_row_v = clipn_resample_row_v_avx2,
    .premultiply_row = clipn_premultiply_row_avx2,
};
