/* INT8 micro-kernel, AVX2 (compiled with -mavx2 -mfma; selected only after CPUID said so).
 *
 * vpmaddubsw multiplies unsigned by signed bytes, so the sign of the activation is moved
 * onto the weight (the trick ggml's AVX2 dot products use): |a| * sign(w, a) = a * w. The
 * pair sums are at most 2 * 127 * 127 = 32258, no int16 saturation; vpmaddwd by ones
 * widens them to the int32 sum of 4 products. |a| comes packed next to a (gemm_int8.h).
 * The 4 x 64 tile runs as four 4 x 16 strips: 8 int32 accumulators, flushed into fp32 at
 * each group end (the same fmaf order as the portable kernel). */
#include "gemm_int8_avx2.h"

#include <stdint.h>

#define MR CLIPN_Q8_MR
#define NR CLIPN_Q8_NR

/* One 4 x 16 strip over all groups, in assembly (GCC spilled the accumulators of the C
 * version): per group, gq quads into 8 int32 accumulators, then the group's flush in place:
 * f[i] = fma(float(acc), a_scale[i] * b_scale[j], f[i]), the portable kernel's order, with
 * the fp32 sums f[MR][16] in L1 (registers are for the accumulators). Registers: acc 0-7,
 * weights 8-9 (scales at the flush), a 10, |a| 11, products 12-13, int16 ones 14. */
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

/* row i's flush: scales a_scale[i] * b_scale[16 columns] (ymm8-9), then into f[i] */
#define FLUSH(i, acc0, acc1)                                                                 \
    "vbroadcastss 4*" #i "(%[as]), %%ymm10\n\t"                                             \
    "vmulps %%ymm8, %%ymm10, %%ymm12\n\t"                                                  \
    "vmulps %%ymm9, %%ymm10, %%ymm13\n\t"                                                  \
    "vcvtdq2ps %%" #acc0 ", %%" #acc0 "\n\t"                                               \
    "vcvtdq2ps %%" #acc1 ", %%" #acc1 "\n\t"                                               \
    "vfmadd213ps 64*" #i "(%[f]), %%ymm12, %%" #acc0 "\n\t"                                \
    "vfmadd213ps 64*" #i "+32(%[f]), %%ymm13, %%" #acc1 "\n\t"                             \
    "vmovaps %%" #acc0 ", 64*" #i "(%[f])\n\t"                                             \
    "vmovaps %%" #acc1 ", 64*" #i "+32(%[f])\n\t"

static inline void strip(const int8_t *a, const float *as, const int8_t *b, const float *bs,
                         int n_groups, int gq, float f[MR][16])
{
    long n;
    __asm__ volatile(
        "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
        "vmovaps %%ymm0, (%[f])\n\t" "vmovaps %%ymm0, 32(%[f])\n\t"
        "vmovaps %%ymm0, 64(%[f])\n\t" "vmovaps %%ymm0, 96(%[f])\n\t"
        "vmovaps %%ymm0, 128(%[f])\n\t" "vmovaps %%ymm0, 160(%[f])\n\t"
        "vmovaps %%ymm0, 192(%[f])\n\t" "vmovaps %%ymm0, 224(%[f])\n\t"
        "vpcmpeqw %%ymm14, %%ymm14, %%ymm14\n\t"
        "vpsrlw $15, %%ymm14, %%ymm14\n\t"
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
        "vmovdqa (%[b]), %%ymm8\n\t"
        "vmovdqa 32(%[b]), %%ymm9\n\t"
        ROW(0, ymm0, ymm1) ROW(4, ymm2, ymm3) ROW(8, ymm4, ymm5) ROW(12, ymm6, ymm7)
        "add $256, %[b]\n\t"
        "add $32, %[a]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vmovups (%[bs]), %%ymm8\n\t"
        "vmovups 32(%[bs]), %%ymm9\n\t"
        FLUSH(0, ymm0, ymm1) FLUSH(1, ymm2, ymm3) FLUSH(2, ymm4, ymm5) FLUSH(3, ymm6, ymm7)
        "add $16, %[as]\n\t"
        "add $256, %[bs]\n\t"
        "dec %[g]\n\t"
        "jnz 2b\n\t"
        : [a] "+r"(a), [b] "+r"(b), [as] "+r"(as), [bs] "+r"(bs), [g] "+r"(n_groups),
          [n] "=&r"(n)
        : [f] "r"(f), [gq] "r"((long)gq)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14");
}
#undef ROW
#undef FLUSH

void clipn_q8_ukernel_avx2(int n_groups, int group, const int8_t *a, const float *a_scale,
                           const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                           int nr, const float *bias, int load_c)
{
    const int gq = group / 4; /* >= 4: groups are multiples of 16 */
    for (int s = 0; s < NR / 16 && 16 * s < nr; s++) {
        _Alignas(32) float f[MR][16];
        strip(a, a_scale, b + 64 * s, b_scale + 16 * s, n_groups, gq, f);
        store_strip(&f[0][0], 16, 2, c + 16 * s, ldc, mr, nr - 16 * s, bias ? bias + 16 * s : NULL,
                    load_c);
    }
}

/* The portable quantizer's bytes (gemm_int8.c), four rows at a time: 8 k of 4 rows ->
 * vcvtps2dq (nearest even) -> two packs -> lane 0 is quad q [MR][4], lane 1 quad q + 1.
 * Loads are masked only where a group runs past k_valid. */
void clipn_q8_quantize_avx2(const float *x, size_t ldx, int rows, int k_valid, int kc,
                            int group, int8_t *dst, float *scales)
{
    const int ng = kc / group;
    const __m256i m127 = _mm256_set1_epi8(-127);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (int i0 = 0; i0 < rows; i0 += MR) {
        const float *xr[MR];
        int live[MR];
        for (int i = 0; i < MR; i++) {
            live[i] = i0 + i < rows;
            xr[i] = x + (size_t)(live[i] ? i0 + i : i0) * ldx;
        }
        for (int g = 0; g < ng; g++) {
            const int k0 = g * group, kend = k0 + group < k_valid ? k0 + group : k_valid;
            __m256 inv[MR];
            for (int i = 0; i < MR; i++) {
                const float amax = live[i] ? group_absmax(xr[i], k0, kend) : 0.0f;
                scales[g * MR + i] = amax / 127.0f;
                inv[i] = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            }
            for (int k = k0; k < k0 + group; k += 8) {
                __m256i q[MR];
                for (int i = 0; i < MR; i++) {
                    /* clamp before rounding, as the portable quant(); NaN -> 0 */
                    __m256 r = _mm256_mul_ps(load8(xr[i], k, k_valid), inv[i]);
                    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));
                    r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
                    q[i] = _mm256_cvtps_epi32(r);
                }
                __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                               _mm256_packs_epi32(q[2], q[3]));
                p = _mm256_max_epi8(p, m127);
                const __m256i pa = _mm256_abs_epi8(p);
                /* lane 0 -> quad k/4, lane 1 -> quad k/4 + 1: each [2][MR][4] (values, |values|) */
                int8_t *d = dst + (size_t)(k / 4) * 2 * MR * 4;
                _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(p, pa, 0x20));
                _mm256_storeu_si256((__m256i *)(d + 32), _mm256_permute2x128_si256(p, pa, 0x31));
            }
        }
        dst += (size_t)kc * 2 * MR;
        scales += (size_t)ng * MR;
    }
}
