/* Pieces both AVX2 INT8 kernel files share (gemm_int8_avx2.c: W8A8, gemm_int8_a16_avx2.c:
 * W8A16): include only from files compiled with -mavx2 -mfma. */
#ifndef CLIPN_GEMM_INT8_AVX2_H
#define CLIPN_GEMM_INT8_AVX2_H

#include "gemm_int8.h"

#include <immintrin.h>
#include <math.h>

/* Bytes ahead in a strip's weights that the strip loops prefetch: 16 quads (5-10% on the
 * image shapes). As a string for the assembly. */
#ifndef Q8_PF
#define Q8_PF 4096
#endif
#define Q8_STR2(x) #x
#define Q8_STR(x) Q8_STR2(x)
#define Q8_PF_STR Q8_STR(Q8_PF)

static inline __m256i tail_mask(int n) /* lanes < n active, n clamped to [0, 8] */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 floats from p + k, masked only where they run past k_valid */
static inline __m256 load8(const float *p, int k, int k_valid)
{
    return k + 8 <= k_valid ? _mm256_loadu_ps(p + k) : _mm256_maskload_ps(p + k, tail_mask(k_valid - k));
}

/* max |x[k]| over [k0, kend) (0 when empty), NaN if any is NaN: the quantizers' group scale */
static inline float group_absmax(const float *x, int k0, int kend)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx0 = _mm256_setzero_ps(), mx1 = mx0, nan = mx0;
    int k = k0;
    for (; k + 16 <= kend; k += 16) { /* unmasked, two chains */
        const __m256 v0 = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k));
        const __m256 v1 = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k + 8));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v0, v1, _CMP_UNORD_Q));
        mx0 = _mm256_max_ps(mx0, v0);
        mx1 = _mm256_max_ps(mx1, v1);
    }
    for (; k < kend; k += 8) {
        const __m256 v = _mm256_andnot_ps(sign, load8(x, k, kend));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        mx0 = _mm256_max_ps(mx0, v);
    }
    const __m256 mx = _mm256_max_ps(mx0, mx1);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm256_movemask_ps(nan) ? NAN : _mm_cvtss_f32(m4);
}

/* A strip's fp32 sums f [mr rows, ldf apart] -> C [mr rows, ldc apart]: `chunks` x 8
 * columns of which nr are valid; + bias (NULL: none), then + C when load_c (the portable
 * kernel's order). */
static inline void store_strip(const float *f, size_t ldf, int chunks, float *c, size_t ldc,
                               int mr, int nr, const float *bias, int load_c)
{
    for (int j = 0; j < chunks; j++) {
        const __m256i mask = tail_mask(nr - 8 * j);
        const __m256 bv = bias ? _mm256_maskload_ps(bias + 8 * j, mask) : _mm256_setzero_ps();
        for (int i = 0; i < mr; i++) {
            float *ci = c + (size_t)i * ldc + 8 * j;
            __m256 v = _mm256_load_ps(f + (size_t)i * ldf + 8 * j);
            if (bias)
                v = _mm256_add_ps(v, bv);
            if (load_c)
                v = _mm256_add_ps(v, _mm256_maskload_ps(ci, mask));
            _mm256_maskstore_ps(ci, mask, v);
        }
    }
}

#endif
