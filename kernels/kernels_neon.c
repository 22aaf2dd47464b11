/* ARM NEON (AdvSIMD) kernels for aarch64, where AdvSIMD is part of the base ISA: no
 * special compiler flags and no run-time check. Built only when the compiler targets
 * aarch64 (Makefile); selected by default there (kernels/dispatch.c). */
#include "kernels_impl.h"

#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define VF float32x4_t
#define VI int32x4_t
#define VM uint32x4_t
#define V_SET1(x) vdupq_n_f32(x)
#define V_ADD vaddq_f32
#define V_SUB vsubq_f32
#define V_MUL vmulq_f32
#define V_DIV vdivq_f32
#define V_FMA(a, b, c) vfmaq_f32(c, a, b)               /* a*b + c, one rounding */
#define V_FMS(a, b, c) vfmaq_f32(vnegq_f32(c), a, b)    /* a*b - c, one rounding */
#define V_FNMA(a, b, c) vfmsq_f32(c, a, b)              /* c - a*b, one rounding */
#define V_MIN vminq_f32                                 /* NaN in either -> NaN */
#define V_MAX vmaxq_f32
#define V_ABS vabsq_f32
#define V_ROUND vrndnq_f32                              /* to nearest, ties to even */
#define V_CVT_I vcvtnq_s32_f32
#define V_I_SRAI1(x) vshrq_n_s32(x, 1)
#define V_I_SUB vsubq_s32
#define V_POW2I(e) vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(e, vdupq_n_s32(127)), 23))
#define V_GT vcgtq_f32                                  /* ordered: false on NaN */
#define V_LT vcltq_f32
#define V_GE vcgeq_f32
#define V_UNORD(a, b) vmvnq_u32(vandq_u32(vceqq_f32(a, a), vceqq_f32(b, b)))
#define V_SELECT(m, t, f) vbslq_f32(m, t, f)
#define V_COPYSIGN(mag, s) vbslq_f32(vdupq_n_u32(0x80000000u), s, mag)
#define VEC_FN(name) name##_neon

/* tails of 1-3 go through a zero-padded vector */
static inline float32x4_t load_tail(const float *p, size_t n)
{
    float t[4] = {0};
    memcpy(t, p, n * sizeof *t);
    return vld1q_f32(t);
}

static inline void store_tail(float *p, size_t n, float32x4_t v)
{
    float t[4];
    vst1q_f32(t, v);
    memcpy(p, t, n * sizeof *t);
}

#define V_LANES 4
#define V_LOADU vld1q_f32
#define V_STOREU vst1q_f32
#define V_LOAD_TAIL load_tail
#define V_STORE_TAIL store_tail
#include "vecmath.inc"
#include "elementwise.inc"

#define MR CLIPN_GEMM_MR
#define NR CLIPN_GEMM_NR

/* The 6 x 64 panel tile as four 6 x 16 strips: 24 q-register accumulators, 4 panel loads
 * and the 6 activations of step k (one q + one d register, used by lane) = 30 of the 32
 * vector registers. The 6 x kc activation micro-panel stays in L1 across the strips. */
/* row[j] += x_j * lane `lane` of av, j = 0..3 (also P V in the attention head below) */
#define FMA4(row, x0, x1, x2, x3, av, lane, lanefn)                                       \
    do {                                                                                  \
        (row)[0] = lanefn((row)[0], x0, av, lane);                                        \
        (row)[1] = lanefn((row)[1], x1, av, lane);                                        \
        (row)[2] = lanefn((row)[2], x2, av, lane);                                        \
        (row)[3] = lanefn((row)[3], x3, av, lane);                                        \
    } while (0)
#define ROW_FMA(i, av, lane, lanefn) FMA4(acc[i], b0, b1, b2, b3, av, lane, lanefn)
/* acc[0..rows)[0..4) = 0, fully unrolled so the accumulators stay in registers */
#define ZERO_ACC(acc, rows)                                                               \
    do {                                                                                  \
        _Pragma("GCC unroll 6") for (int i_ = 0; i_ < (rows); i_++)                       \
            _Pragma("GCC unroll 4") for (int j_ = 0; j_ < 4; j_++)                        \
                (acc)[i_][j_] = vdupq_n_f32(0.0f);                                        \
    } while (0)

static void gemm_ukernel_neon(int kc, const float *a, const float *b, float *c, size_t ldc,
                              const float *bias, int load_c)
{
    for (int s = 0; s < NR / 16; s++) {
        float32x4_t acc[MR][4];
        ZERO_ACC(acc, MR);
        const float *bs = b + 16 * s;
        for (int k = 0; k < kc; k++) {
            const float *bk = bs + (size_t)k * NR;
            const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4);
            const float32x4_t b2 = vld1q_f32(bk + 8), b3 = vld1q_f32(bk + 12);
            const float32x4_t a0123 = vld1q_f32(a + k * MR);
            const float32x2_t a45 = vld1_f32(a + k * MR + 4);
            ROW_FMA(0, a0123, 0, vfmaq_laneq_f32);
            ROW_FMA(1, a0123, 1, vfmaq_laneq_f32);
            ROW_FMA(2, a0123, 2, vfmaq_laneq_f32);
            ROW_FMA(3, a0123, 3, vfmaq_laneq_f32);
            ROW_FMA(4, a45, 0, vfmaq_lane_f32);
            ROW_FMA(5, a45, 1, vfmaq_lane_f32);
        }
        /* out: (acc + C) + bias; constant row indices (full unroll) keep acc in registers
         * through the k loop */
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
            store_row_neon(c + (size_t)i * ldc + 16 * s, acc[i], 4, bias ? bias + 16 * s : NULL,
                           load_c);
    }
}

/* Same scheme as the x86 versions: the mean summed in double (2 x 2 lanes), the variance
 * in float around it (16 lanes), the mean kept as float hi + lo for x - mean. */
static void layernorm_neon(const float *x, float *y, int rows, int dim, const float *g,
                           const float *b, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        float64x2_t d0 = vdupq_n_f64(0.0), d1 = d0;
        int i = 0;
        for (; i + 4 <= dim; i += 4) {
            const float32x4_t v = vld1q_f32(xr + i);
            d0 = vaddq_f64(d0, vcvt_f64_f32(vget_low_f32(v)));
            d1 = vaddq_f64(d1, vcvt_high_f64_f32(v));
        }
        double sum = vaddvq_f64(vaddq_f64(d0, d1));
        for (; i < dim; i++)
            sum += xr[i];
        const double mean = sum / dim;
        const float mean_hi = (float)mean, mean_lo = (float)(mean - mean_hi);
        const float32x4_t vm = vdupq_n_f32(mean_hi), vm_lo = vdupq_n_f32(mean_lo);
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (i = 0; i + 16 <= dim; i += 16) {
            const float32x4_t e0 = vsubq_f32(vsubq_f32(vld1q_f32(xr + i), vm), vm_lo);
            const float32x4_t e1 = vsubq_f32(vsubq_f32(vld1q_f32(xr + i + 4), vm), vm_lo);
            const float32x4_t e2 = vsubq_f32(vsubq_f32(vld1q_f32(xr + i + 8), vm), vm_lo);
            const float32x4_t e3 = vsubq_f32(vsubq_f32(vld1q_f32(xr + i + 12), vm), vm_lo);
            s0 = vfmaq_f32(s0, e0, e0);
            s1 = vfmaq_f32(s1, e1, e1);
            s2 = vfmaq_f32(s2, e2, e2);
            s3 = vfmaq_f32(s3, e3, e3);
        }
        for (; i + 4 <= dim; i += 4) {
            const float32x4_t e = vsubq_f32(vsubq_f32(vld1q_f32(xr + i), vm), vm_lo);
            s0 = vfmaq_f32(s0, e, e);
        }
        float sq = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
        for (; i < dim; i++) {
            const float e = (xr[i] - mean_hi) - mean_lo;
            sq = fmaf(e, e, sq);
        }
        const double var = sq / (double)dim;
        const float inv = (float)(1.0 / sqrt(var + eps));
        const float32x4_t vinv = vdupq_n_f32(inv);
        for (i = 0; i + 4 <= dim; i += 4) {
            float32x4_t v = vsubq_f32(vsubq_f32(vld1q_f32(xr + i), vm), vm_lo);
            v = vmulq_f32(v, vinv);
            vst1q_f32(yr + i, vfmaq_f32(vld1q_f32(b + i), v, vld1q_f32(g + i)));
        }
        for (; i < dim; i++)
            yr[i] = fmaf(((xr[i] - mean_hi) - mean_lo) * inv, g[i], b[i]);
    }
}

/* ---- attention: one head. K^T is copied once into scratch ([hd][lp], zero past L) so the
 * scores of 4 query rows x 16 keys take 4 loads of K^T and 4 lane-FMAs per row for each
 * step of d; P V then runs 4 rows x 16 channels per key. As the AVX-512 version, with
 * 4-lane vectors. */
#define AR CLIPN_ATTN_ROWS
_Static_assert(AR == 4, "P V reads the 4 rows' probabilities of a key as one q register");

static void attention_head_neon(const float *qkv, float *out, int L, int W, int hd, int h,
                                int causal, float *scratch)
{
    if (hd % 4 != 0 || hd > 256) {
        clipn_ops_portable.attention_head(qkv, out, L, W, hd, h, causal, scratch);
        return;
    }
    const clipn_head_qkv hv = clipn_head_view(qkv, W, hd, h);
    const size_t ld = hv.ld;
    const float *q = hv.q, *k = hv.k, *v = hv.v;
    const int lp = (L + 15) / 16 * 16; /* as clipn_attention_head_scratch sized it */
    float *kt = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *s = kt + (size_t)hd * lp;
    const float scale = 1.0f / sqrtf((float)hd);

    for (int j = 0; j < lp; j++)
        for (int d = 0; d < hd; d++)
            kt[(size_t)d * lp + j] = j < L ? k[(size_t)j * ld + d] : 0.0f;

    float qs[AR][256];
    for (int i0 = 0; i0 < L; i0 += AR) {
        const int rows = L - i0 < AR ? L - i0 : AR;
        const int n_keys = causal ? i0 + rows : L;
        for (int r = 0; r < AR; r++) {
            const float *qr = q + (size_t)(r < rows ? i0 + r : i0) * ld;
            for (int d = 0; d < hd; d++)
                qs[r][d] = qr[d] * scale; /* torch scales q before q k^T */
        }
        /* scores for keys [0, n_keys), in blocks of 16 (zero K^T columns pad the tail) */
        for (int j0 = 0; j0 < n_keys; j0 += 16) {
            /* constant indices everywhere (full unrolls): the 16 accumulators stay in
             * registers */
            float32x4_t acc[AR][4];
            ZERO_ACC(acc, AR);
            for (int d = 0; d < hd; d += 4) {
                const float32x4_t qv[AR] = {vld1q_f32(qs[0] + d), vld1q_f32(qs[1] + d),
                                            vld1q_f32(qs[2] + d), vld1q_f32(qs[3] + d)};
#define SCORE_STEP(lane)                                                                  \
    do {                                                                                  \
        const float *kd = kt + (size_t)(d + lane) * lp + j0;                              \
        const float32x4_t k0 = vld1q_f32(kd), k1 = vld1q_f32(kd + 4);                     \
        const float32x4_t k2 = vld1q_f32(kd + 8), k3 = vld1q_f32(kd + 12);                \
        _Pragma("GCC unroll 4") for (int r = 0; r < AR; r++) {                            \
            acc[r][0] = vfmaq_laneq_f32(acc[r][0], k0, qv[r], lane);                      \
            acc[r][1] = vfmaq_laneq_f32(acc[r][1], k1, qv[r], lane);                      \
            acc[r][2] = vfmaq_laneq_f32(acc[r][2], k2, qv[r], lane);                      \
            acc[r][3] = vfmaq_laneq_f32(acc[r][3], k3, qv[r], lane);                      \
        }                                                                                 \
    } while (0)
                SCORE_STEP(0);
                SCORE_STEP(1);
                SCORE_STEP(2);
                SCORE_STEP(3);
#undef SCORE_STEP
            }
#pragma GCC unroll 4
            for (int r = 0; r < AR; r++)
#pragma GCC unroll 4
                for (int cc = 0; cc < 4; cc++)
                    vst1q_f32(s + (size_t)r * lp + j0 + 4 * cc, acc[r][cc]);
        }
        /* stable softmax per row; keys a row may not see (causal) get probability 0, so
         * the P V loop below can run every row over the block's n_keys */
        float inv[AR];
        const int n_keys4 = (n_keys + 3) / 4 * 4; /* <= lp */
        for (int r = 0; r < rows; r++) {
            float *sr = s + (size_t)r * lp;
            const int nk = causal ? i0 + r + 1 : L;
            const int32x4_t lane_idx = {0, 1, 2, 3};
            float32x4_t vmax = vdupq_n_f32(-INFINITY);
            for (int j = 0; j < nk; j += 4) {
                const uint32x4_t live = vcltq_s32(vaddq_s32(lane_idx, vdupq_n_s32(j)),
                                                  vdupq_n_s32(nk));
                vmax = vmaxq_f32(vmax, vbslq_f32(live, vld1q_f32(sr + j), vdupq_n_f32(-INFINITY)));
            }
            const float32x4_t mx = vdupq_n_f32(vmaxvq_f32(vmax));
            float32x4_t vsum = vdupq_n_f32(0.0f);
            for (int j = 0; j < n_keys4; j += 4) {
                const uint32x4_t live = vcltq_s32(vaddq_s32(lane_idx, vdupq_n_s32(j)),
                                                  vdupq_n_s32(nk));
                const float32x4_t e = vbslq_f32(live, v_exp_neon(vsubq_f32(vld1q_f32(sr + j), mx)),
                                                vdupq_n_f32(0.0f));
                vsum = vaddq_f32(vsum, e);
                vst1q_f32(sr + j, e);
            }
            inv[r] = 1.0f / vaddvq_f32(vsum);
        }
        /* out rows = P V: 16 channels at a time (4 rows x 4 registers), then 4 at a time
         * for head sizes that are not a multiple of 16; loops over rows and channels are
         * fully unrolled so the accumulators stay in registers */
        int d0 = 0;
        for (; d0 + 16 <= hd; d0 += 16) {
            float32x4_t acc[AR][4];
            ZERO_ACC(acc, AR);
            for (int j = 0; j < n_keys; j++) {
                const float *vj = v + (size_t)j * ld + d0;
                const float32x4_t p = {s[j], s[lp + j], s[2 * (size_t)lp + j],
                                       s[3 * (size_t)lp + j]};
                const float32x4_t v0 = vld1q_f32(vj), v1 = vld1q_f32(vj + 4);
                const float32x4_t v2 = vld1q_f32(vj + 8), v3 = vld1q_f32(vj + 12);
#define PV_ROW(r) FMA4(acc[r], v0, v1, v2, v3, p, r, vfmaq_laneq_f32)
                PV_ROW(0);
                PV_ROW(1);
                PV_ROW(2);
                PV_ROW(3);
#undef PV_ROW
            }
#pragma GCC unroll 4
            for (int r = 0; r < AR; r++) {
                if (r >= rows)
                    break;
                float *o = out + (size_t)(i0 + r) * W + (size_t)h * hd + d0;
                const float32x4_t vi = vdupq_n_f32(inv[r]);
#pragma GCC unroll 4
                for (int cc = 0; cc < 4; cc++)
                    vst1q_f32(o + 4 * cc, vmulq_f32(acc[r][cc], vi));
            }
        }
        for (; d0 < hd; d0 += 4) {
            float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
            for (int j = 0; j < n_keys; j++) {
                const float32x4_t vv = vld1q_f32(v + (size_t)j * ld + d0);
                acc0 = vfmaq_n_f32(acc0, vv, s[j]);
                acc1 = vfmaq_n_f32(acc1, vv, s[lp + j]);
                acc2 = vfmaq_n_f32(acc2, vv, s[2 * (size_t)lp + j]);
                acc3 = vfmaq_n_f32(acc3, vv, s[3 * (size_t)lp + j]);
            }
            const float32x4_t accs[AR] = {acc0, acc1, acc2, acc3};
            for (int r = 0; r < rows; r++)
                vst1q_f32(out + (size_t)(i0 + r) * W + (size_t)h * hd + d0,
                          vmulq_f32(accs[r], vdupq_n_f32(inv[r])));
        }
    }
}

const clipn_kernel_ops clipn_ops_neon = {
    .isa = "neon",
    .gemm_ukernel = gemm_ukernel_neon,
    .activate = activate_neon,
    .layernorm = layernorm_neon,
    .gelu_erf = gelu_erf_neon,
    .quickgelu = quickgelu_neon,
    .erf = erf_neon,
    .attention_head = attention_head_neon,
};
