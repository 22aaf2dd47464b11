/* W8A16 INT8 micro-kernel and int16 activation quantizer, AVX2 (compiled with -mavx2
 * -mfma; selected only after CPUID said so). Layouts: kernels/gemm_int8.h.
 *
 * The int8 weights are sign-extended to int16 as they are loaded (vpmovsxbw: 4 outputs x 4
 * k), the row's 4 int16 activations of the quad broadcast to every output, and vpmaddwd
 * sums pairs of products into int32: lane (output, k pair). The 4 x 64 tile runs as eight
 * 4 x 8 strips of 8 accumulators; at each group end vphaddd adds the two k pairs of an
 * output (integer sums are exact, so any association gives the portable kernel's int32),
 * then the same fmaf as the portable kernel. vpmaddwd does 16 products per instruction,
 * as vpmaddubsw + vpmaddwd do for 32: the multiply pipes see the same load as W8A8. */
#include "gemm_int8_avx2.h"

#include <stdint.h>

#define MR CLIPN_Q8_MR
#define NR CLIPN_Q8_NR

/* One 4 x 8 strip over all groups, in assembly (GCC spilled and shuffled the accumulators
 * of the C version): per group, gq quads into 8 int32 accumulators (acc 2i, 2i + 1 = row
 * i's k pairs of outputs 0-3 and 4-7), then the group's flush in place: vphaddd + vpermq
 * -> the 8 outputs' int32 sums, f[i] = fma(float(sum), a_scale[i] * b_scale[j], f[i]) (the
 * portable kernel's order), f[MR][8] in L1. The weights are prefetched 16 quads ahead.
 * ymm: acc 0-7, weights 8-9, activation 10, products 11-12; at the flush 8-10 are scratch. */
#define ROW(off, acc0, acc1)                                                                 \
    "vpbroadcastq " #off "(%[a]), %%ymm10\n\t"                                              \
    "vpmaddwd %%ymm10, %%ymm8, %%ymm11\n\t"                                                \
    "vpmaddwd %%ymm10, %%ymm9, %%ymm12\n\t"                                                \
    "vpaddd %%ymm11, %%" #acc0 ", %%" #acc0 "\n\t"                                         \
    "vpaddd %%ymm12, %%" #acc1 ", %%" #acc1 "\n\t"
#define FLUSH(i, acc0, acc1)                                                                 \
    "vphaddd %%" #acc1 ", %%" #acc0 ", %%ymm8\n\t"                                         \
    "vpermq $0xD8, %%ymm8, %%ymm8\n\t"                                                     \
    "vcvtdq2ps %%ymm8, %%ymm8\n\t"                                                         \
    "vbroadcastss 4*" #i "(%[as]), %%ymm9\n\t"                                              \
    "vmulps %%ymm10, %%ymm9, %%ymm9\n\t"                                                   \
    "vfmadd213ps 32*" #i "(%[f]), %%ymm9, %%ymm8\n\t"                                      \
    "vmovaps %%ymm8, 32*" #i "(%[f])\n\t"

static inline void strip16(const int16_t *a, const float *as, const int8_t *b, const float *bs,
                           int n_groups, int gq, float f[MR][8])
{
    long n;
    __asm__ volatile(
        "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
        "vmovaps %%ymm0, (%[f])\n\t" "vmovaps %%ymm0, 32(%[f])\n\t"
        "vmovaps %%ymm0, 64(%[f])\n\t" "vmovaps %%ymm0, 96(%[f])\n\t"
        "2:\n\t"
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        "mov %[gq], %[n]\n\t"
        "1:\n\t"
        "prefetcht0 " Q8_PF_STR "(%[b])\n\t"
        "vpmovsxbw (%[b]), %%ymm8\n\t"
        "vpmovsxbw 16(%[b]), %%ymm9\n\t"
        ROW(0, ymm0, ymm1) ROW(8, ymm2, ymm3) ROW(16, ymm4, ymm5) ROW(24, ymm6, ymm7)
        "add $256, %[b]\n\t"
        "add $32, %[a]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vmovups (%[bs]), %%ymm10\n\t"
        FLUSH(0, ymm0, ymm1) FLUSH(1, ymm2, ymm3) FLUSH(2, ymm4, ymm5) FLUSH(3, ymm6, ymm7)
        "add $16, %[as]\n\t"
        "add $256, %[bs]\n\t"
        "dec %[g]\n\t"
        "jnz 2b\n\t"
        : [a] "+r"(a), [b] "+r"(b), [as] "+r"(as), [bs] "+r"(bs), [g] "+r"(n_groups),
          [n] "=&r"(n)
        : [f] "r"(f), [gq] "r"((long)gq)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12");
}
#undef ROW
#undef FLUSH

void clipn_q16_ukernel_avx2(int n_groups, int group, const int8_t *a8, const float *a_scale,
                            const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                            int nr, const float *bias, int load_c)
{
    const int gq = group / 4; /* >= 4: groups are multiples of 16 */
    const int16_t *a = (const int16_t *)(const void *)a8;
    for (int s = 0; s < NR / 8 && 8 * s < nr; s++) {
        _Alignas(32) float f[MR][8];
        strip16(a, a_scale, b + 32 * s, b_scale + 8 * s, n_groups, gq, f);
        store_strip(&f[0][0], 8, 1, c + 8 * s, ldc, mr, nr - 8 * s, bias ? bias + 8 * s : NULL,
                    load_c);
    }
}

/* The portable int16 quantizer's values (gemm_int8.c), four rows at a time: 8 k of 4 rows
 * -> vcvtps2dq (nearest even) -> vpackssdw -> quads q and q + 1 of the 4 rows. */
void clipn_q16_quantize_avx2(const float *x, size_t ldx, int rows, int k_valid, int kc,
                             int group, int8_t *dst8, float *scales)
{
    const int ng = kc / group;
    const float qmax = (float)clipn_q16_qmax(group);
    const __m256 hi = _mm256_set1_ps(qmax), lo = _mm256_set1_ps(-qmax);
    int16_t *dst = (int16_t *)(void *)dst8;
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
                const int kend = k0 + group < k_valid ? k0 + group : k_valid;
                const float amax = live[i] ? group_absmax(xr[i], k0, kend) : 0.0f;
                scales[g * MR + i] = amax / qmax;
                inv[i] = _mm256_set1_ps(amax > 0.0f ? qmax / amax : 0.0f);
            }
            for (int k = k0; k < k0 + group; k += 8) {
                __m256i q[MR];
                for (int i = 0; i < MR; i++) {
                    const __m256 v = !live[i]         ? _mm256_setzero_ps()
                                     : k + 8 <= k_valid ? _mm256_loadu_ps(xr[i] + k)
                                                        : _mm256_maskload_ps(xr[i] + k, tail_mask(k_valid - k));
                    __m256 r = _mm256_mul_ps(v, inv[i]);
                    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN -> 0 */
                    r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
                    q[i] = _mm256_cvtps_epi32(r);
                }
                const __m256i p01 = _mm256_packs_epi32(q[0], q[1]); /* [r0 k0-3, r1 k0-3 | k4-7] */
                const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
                int16_t *d = dst + (size_t)(k / 4) * MR * 4;
                _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(p01, p23, 0x20));
                _mm256_storeu_si256((__m256i *)(d + MR * 4),
                                    _mm256_permute2x128_si256(p01, p23, 0x31));
            }
        }
        dst += (size_t)kc * MR;
        scales += (size_t)ng * MR;
    }
}
