/* INT8 micro-kernel, NEON with SDOT (FEAT_DotProd, Armv8.2+; compiled for it with a target
 * attribute and selected only when HWCAP says the CPU has it, else the portable kernel).
 * One SDOT by lane: 4 outputs x 4 k of the weight panel against 4 k of one row, int32.
 * The 4 x 64 tile runs as four 4 x 16 strips (16 int32 accumulators), flushed into fp32 at
 * each group end in the portable kernel's fmaf order. Tested under qemu-aarch64 -cpu max
 * (make test-arm). */
#include "gemm_int8.h"

#include <arm_neon.h>
#include <stdint.h>
#include <sys/auxv.h>

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

#define MR CLIPN_Q8_MR
#define NR CLIPN_Q8_NR

int clipn_q8_neon_dotprod(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}

__attribute__((target("arch=armv8.2-a+dotprod"))) void
clipn_q8_ukernel_neon(int n_groups, int group, const int8_t *a, const float *a_scale,
                      const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                      int nr, const float *bias, int load_c)
{
    const int gq = group / 4;
    for (int s = 0; s < NR / 16 && 16 * s < nr; s++) {
        float32x4_t f[MR][4];
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < 4; v++)
                f[i][v] = vdupq_n_f32(0.0f);
        for (int g = 0; g < n_groups; g++) {
            int32x4_t acc[MR][4];
            for (int i = 0; i < MR; i++)
                for (int v = 0; v < 4; v++)
                    acc[i][v] = vdupq_n_s32(0);
            const int8_t *bq = b + (size_t)g * gq * NR * 4 + 64 * s;
            const int8_t *aq = a + (size_t)g * gq * 2 * MR * 4;
            for (int q = 0; q < gq; q++, bq += NR * 4, aq += 2 * MR * 4) {
                const int8x16_t av = vld1q_s8(aq); /* 4 rows x 4 k */
                int8x16_t bv[4];
                for (int v = 0; v < 4; v++)
                    bv[v] = vld1q_s8(bq + 16 * v); /* 4 outputs x 4 k */
                for (int v = 0; v < 4; v++) {
                    acc[0][v] = vdotq_laneq_s32(acc[0][v], bv[v], av, 0);
                    acc[1][v] = vdotq_laneq_s32(acc[1][v], bv[v], av, 1);
                    acc[2][v] = vdotq_laneq_s32(acc[2][v], bv[v], av, 2);
                    acc[3][v] = vdotq_laneq_s32(acc[3][v], bv[v], av, 3);
                }
            }
            for (int i = 0; i < MR; i++) {
                const float as = a_scale[g * MR + i];
                for (int v = 0; v < 4; v++) {
                    const float32x4_t ws = vld1q_f32(b_scale + (size_t)g * NR + 16 * s + 4 * v);
                    f[i][v] = vfmaq_f32(f[i][v], vcvtq_f32_s32(acc[i][v]), vmulq_n_f32(ws, as));
                }
            }
        }
        for (int i = 0; i < mr; i++) {
            float *ci = c + (size_t)i * ldc + 16 * s;
            for (int v = 0; v < 4; v++) {
                float tmp[4];
                vst1q_f32(tmp, f[i][v]);
                for (int t = 0; t < 4; t++) {
                    const int j = 16 * s + 4 * v + t;
                    if (j >= nr)
                        break;
                    float r = tmp[t];
                    if (bias)
                        r += bias[j];
                    if (load_c)
                        r += ci[4 * v + t];
                    ci[4 * v + t] = r;
                }
            }
        }
    }
}
