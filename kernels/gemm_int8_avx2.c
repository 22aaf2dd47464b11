/* INT8 micro-kernel, AVX2 (compiled with -mavx2 -mfma; selected only after CPUID said so).
 *
 * vpmaddubsw multiplies unsigned by signed bytes, so the sign of the activation is moved
 * onto the weight (the trick ggml's AVX2 dot products use): |a| * sign(w, a) = a * w. The
 * pair sums are at most 2 * 127 * 127 = 32258, no int16 saturation; vpmaddwd by ones
 * widens them to the int32 sum of 4 products. |a| comes packed next to a (gemm_int8.h).
 * The 4 x 64 tile runs as four 4 x 16 strips: 8 int32 accumulators, flushed into fp32 at
 * each group end (the same fmaf order as the portable kernel). */
#include "gemm_int8.h"

#include <immintrin.h>
#include <stdint.h>

#define MR CLIPN_Q8_MR
#define NR CLIPN_Q8_NR

static inline __m256i tail_mask(int n) /* lanes < n active, n clamped to [0, 8] */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One 4 x 16 strip over one group (gq quads): 8 int32 accumulators -> out[MR][16]. In
 * assembly because GCC spilled the accumulators (it hoisted every row's broadcasts); the
 * 16 ymm registers: acc 0-7, weights 8-9, a 10, |a| 11, products 12-13, int16 ones 14. */
#define ROW(off, acc0, acc1)                                                                 \
    "vpbroadcastd " #off "(%[a]), %%ymm10\n\t"                                              \
    "vpbroadcastd 16+" #off "(%[a]), %%ymm11\n\t"                                           \
    "vpsignb %%ymm10, %%ymm8, %%ymm12\n\t"                                                 \
    "vpsignb %%ymm10, %%ymm9, %%ymm13\n\t"                                                 \
    "vpmaddubsw %%ymm12, %%ymm11, %%ymm12\n\t"                                             \
    "vpmaddubsw %%ymm13, %%ymm11, %%ymm13\n\t"                                             \
    "vpmaddwd %%ymm14, %%ymm12, %%ymm12\n\t"                                               \
    "vpmaddwd %%ymm14, %%ymm13, %%ymm13\n\t"                                               \
    "vpaddd %%ymm12, %%" #acc0 ", %%" #acc0 "\n\t"                                         \
    "vpaddd %%ymm13, %%" #acc1 ", %%" #acc1 "\n\t"

static inline void strip_group(const int8_t *a, const int8_t *b, int gq, int32_t out[MR][16])
{
    __asm__ volatile(
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        "vpcmpeqw %%ymm14, %%ymm14, %%ymm14\n\t"
        "vpsrlw $15, %%ymm14, %%ymm14\n\t"
        "1:\n\t"
        "vmovdqa (%[b]), %%ymm8\n\t"
        "vmovdqa 32(%[b]), %%ymm9\n\t"
        ROW(0, ymm0, ymm1) ROW(4, ymm2, ymm3) ROW(8, ymm4, ymm5) ROW(12, ymm6, ymm7)
        "add $256, %[b]\n\t"
        "add $32, %[a]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vmovdqu %%ymm0, (%[o])\n\t"
        "vmovdqu %%ymm1, 32(%[o])\n\t"
        "vmovdqu %%ymm2, 64(%[o])\n\t"
        "vmovdqu %%ymm3, 96(%[o])\n\t"
        "vmovdqu %%ymm4, 128(%[o])\n\t"
        "vmovdqu %%ymm5, 160(%[o])\n\t"
        "vmovdqu %%ymm6, 192(%[o])\n\t"
        "vmovdqu %%ymm7, 224(%[o])\n\t"
        : [a] "+r"(a), [b] "+r"(b), [n] "+r"(gq)
        : [o] "r"(out)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14");
}
#undef ROW

void clipn_q8_ukernel_avx2(int n_groups, int group, const int8_t *a, const float *a_scale,
                           const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                           int nr, const float *bias, int load_c)
{
    const int gq = group / 4; /* >= 4: groups are multiples of 16 */
    for (int s = 0; s < NR / 16 && 16 * s < nr; s++) {
        /* fp32 sums in memory (L1): registers are for the int32 accumulators */
        _Alignas(32) float f[MR][16] = {{0}};
        for (int g = 0; g < n_groups; g++) {
            _Alignas(32) int32_t acc[MR][16];
            strip_group(a + (size_t)g * gq * 2 * MR * 4, b + (size_t)g * gq * NR * 4 + 64 * s,
                        gq, acc);
        const __m256 ws0 = _mm256_loadu_ps(b_scale + (size_t)g * NR + 16 * s);
            const __m256 ws1 = _mm256_loadu_ps(b_scale + (size_t)g * NR + 16 * s + 8);
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++) {
                const __m256 as = _mm256_set1_ps(a_scale[g * MR + i]);
                const __m256i a0 = _mm256_load_si256((const __m256i *)acc[i]);
                const __m256i a1 = _mm256_load_si256((const __m256i *)(acc[i] + 8));
                _mm256_store_ps(f[i], _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0),
                                                      _mm256_mul_ps(as, ws0), _mm256_load_ps(f[i])));
                _mm256_store_ps(f[i] + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1),
                                                          _mm256_mul_ps(as, ws1),
                                                          _mm256_load_ps(f[i] + 8)));
            }
        }
        const __m256i mask[2] = {tail_mask(nr - 16 * s), tail_mask(nr - 16 * s - 8)};
        __m256 bv[2];
        for (int j = 0; j < 2; j++)
            bv[j] = bias ? _mm256_maskload_ps(bias + 16 * s + 8 * j, mask[j]) : _mm256_setzero_ps();
        for (int i = 0; i < mr; i++) {
            float *ci = c + (size_t)i * ldc + 16 * s;
            for (int j = 0; j < 2; j++) {
                __m256 v = _mm256_load_ps(f[i] + 8 * j);
                if (bias)
                    v = _mm256_add_ps(v, bv[j]);
                if (load_c)
                    v = _mm256_add_ps(v, _mm256_maskload_ps(ci + 8 * j, mask[j]));
                _mm256_maskstore_ps(ci + 8 * j, mask[j], v);
            }
        }
    }
}

/* The portable quantizer's bytes (gemm_int8.c), four rows at a time: 8 k of 4 rows ->
 * vcvtps2dq (nearest even) -> two packs -> lane 0 is quad q [MR][4], lane 1 quad q + 1. */
void clipn_q8_quantize_avx2(const float *x, size_t ldx, int rows, int k_valid, int kc,
                            int group, int8_t *dst, float *scales)
{
    const int ng = kc / group;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i m127 = _mm256_set1_epi8(-127);
    for (int i0 = 0; i0 < rows; i0 += MR) {
        const float *xr[MR];
        int live[MR];
        for (int i = 0; i < MR; i++) {
            live[i] = i0 + i < rows;
            xr[i] = x + (size_t)(live[i] ? i0 + i : i0) * ldx;
        }
        for (int g = 0; g < ng; g++) {
            const int k0 = g * group;
            __m256 inv[MR];
            for (int i = 0; i < MR; i++) {
                __m256 mx = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
                for (int k = k0; k < k0 + group && k < k_valid; k += 8) {
                    const __m256 v = _mm256_andnot_ps(
                        sign, _mm256_maskload_ps(xr[i] + k, tail_mask(k_valid - k)));
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                    mx = _mm256_max_ps(mx, v);
                }
                __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
                m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
                m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
                float amax = live[i] ? _mm_cvtss_f32(m4) : 0.0f;
                if (live[i] && _mm256_movemask_ps(nan))
                    amax = __builtin_nanf("");
                scales[g * MR + i] = amax / 127.0f;
                inv[i] = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            }
            for (int k = k0; k < k0 + group; k += 8) {
                __m256i q[MR];
                for (int i = 0; i < MR; i++) {
                    const __m256 v = _mm256_maskload_ps(xr[i] + k, tail_mask(k_valid - k));
                    /* clamp before rounding, as the portable quant(); NaN -> 0 */
                    __m256 r = _mm256_mul_ps(v, inv[i]);
                    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));
                    r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)),
                                      _mm256_set1_ps(127.0f));
                    q[i] = _mm256_cvtps_epi32(r);
                }
                __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                               _mm256_packs_epi32(q[2], q[3]));
                p = _mm256_max_epi8(p, m127);
                const __m256i pa = _mm256_abs_epi8(p);
                int8_t *d = dst + (size_t)(k / 4) * 2 * MR * 4;
                _mm_storeu_si128((__m128i *)d, _mm256_castsi256_si128(p));
                _mm_storeu_si128((__m128i *)(d + 16), _mm256_castsi256_si128(pa));
                _mm_storeu_si128((__m128i *)(d + 32), _mm256_extracti128_si256(p, 1));
                _mm_storeu_si128((__m128i *)(d + 48), _mm256_extracti128_si256(pa, 1));
            }
        }
        dst += (size_t)kc * 2 * MR;
        scales += (size_t)ng * MR;
    }
}
