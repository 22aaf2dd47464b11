/* W8A16 INT8 micro-kernel, NEON (AdvSIMD, baseline on aarch64). Layouts:
 * kernels/gemm_int8.h. vld4 de-interleaves a quad of 8 outputs into the 4 k, each widened
 * to int16, and SMLAL by lane multiplies 4 outputs at one k by the row's activation at
 * that k into int32 lanes (output). Integer sums are exact, so the group sums equal the
 * portable kernel's; the fp32 flush is its fmaf. Tested under qemu-aarch64 (make test-arm). */
#include "gemm_int8.h"

#include <arm_neon.h>
#include <stdint.h>

#define MR CLIPN_Q8_MR
#define NR CLIPN_Q8_NR

void clipn_q16_ukernel_neon(int n_groups, int group, const int8_t *a8, const float *a_scale,
                            const int8_t *b, const float *b_scale, float *c, size_t ldc, int mr,
                            int nr, const float *bias, int load_c)
{
    const int gq = group / 4;
    const int16_t *a = (const int16_t *)(const void *)a8;
    for (int s = 0; s < NR / 8 && 8 * s < nr; s++) {
        float32x4_t f[MR][2];
        for (int i = 0; i < MR; i++)
            f[i][0] = f[i][1] = vdupq_n_f32(0.0f);
        for (int g = 0; g < n_groups; g++) {
            int32x4_t acc[MR][2];
            for (int i = 0; i < MR; i++)
                acc[i][0] = acc[i][1] = vdupq_n_s32(0);
            const int8_t *bq = b + (size_t)g * gq * NR * 4 + 32 * s;
            const int16_t *aq = a + (size_t)g * gq * MR * 4;
            for (int q = 0; q < gq; q++, bq += NR * 4, aq += MR * 4) {
                const int8x8x4_t w = vld4_s8(bq); /* w.val[t][o] = output o, k t */
                int16x8_t wk[4];
                for (int t = 0; t < 4; t++)
                    wk[t] = vmovl_s8(w.val[t]);
                for (int i = 0; i < MR; i++) {
                    const int16x4_t av = vld1_s16(aq + 4 * i);
                    acc[i][0] = vmlal_lane_s16(acc[i][0], vget_low_s16(wk[0]), av, 0);
                    acc[i][1] = vmlal_high_lane_s16(acc[i][1], wk[0], av, 0);
                    acc[i][0] = vmlal_lane_s16(acc[i][0], vget_low_s16(wk[1]), av, 1);
                    acc[i][1] = vmlal_high_lane_s16(acc[i][1], wk[1], av, 1);
                    acc[i][0] = vmlal_lane_s16(acc[i][0], vget_low_s16(wk[2]), av, 2);
                    acc[i][1] = vmlal_high_lane_s16(acc[i][1], wk[2], av, 2);
                    acc[i][0] = vmlal_lane_s16(acc[i][0], vget_low_s16(wk[3]), av, 3);
                    acc[i][1] = vmlal_high_lane_s16(acc[i][1], wk[3], av, 3);
                }
            }
            for (int i = 0; i < MR; i++) {
                const float as = a_scale[g * MR + i];
                for (int v = 0; v < 2; v++) {
                    const float32x4_t ws = vld1q_f32(b_scale + (size_t)g * NR + 8 * s + 4 * v);
                    f[i][v] = vfmaq_f32(f[i][v], vcvtq_f32_s32(acc[i][v]), vmulq_n_f32(ws, as));
                }
            }
        }
        for (int i = 0; i < mr; i++) {
            float *ci = c + (size_t)i * ldc + 8 * s;
            for (int v = 0; v < 2; v++) {
                float tmp[4];
                vst1q_f32(tmp, f[i][v]);
                for (int t = 0; t < 4; t++) {
                    const int j = 8 * s + 4 * v + t;
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
