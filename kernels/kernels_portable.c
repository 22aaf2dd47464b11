/* Portable C kernels: the reference every ISA-specific version must match. Written for
 * clarity; libm's erff/expf and double accumulation where it matters. */
#include "kernels_impl.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static float act_scalar(float v, int act)
{
    if (act == CLIPN_ACT_GELU_ERF)
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (act == CLIPN_ACT_QUICK)
        return v / (1.0f + expf(-1.702f * v));
    return v;
}

static void gemm_ukernel_portable(int kc, const float *a, const float *b, float *c, size_t ldc,
                                  const float *bias, int load_c)
{
    float acc[CLIPN_GEMM_MR][CLIPN_GEMM_NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < CLIPN_GEMM_MR; i++)
            for (int j = 0; j < CLIPN_GEMM_NR; j++)
                acc[i][j] += a[k * CLIPN_GEMM_MR + i] * b[k * CLIPN_GEMM_NR + j];
    for (int i = 0; i < CLIPN_GEMM_MR; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < CLIPN_GEMM_NR; j++) {
            float v = acc[i][j];
            if (load_c)
                v += ci[j];
            if (bias)
                v += bias[j];
            ci[j] = v;
        }
    }
}

static void activate_portable(float *c, size_t ldc, int rows, int cols, int act)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            c[(size_t)i * ldc + j] = act_scalar(c[(size_t)i * ldc + j], act);
}

static void layernorm_portable(const float *x, float *y, int rows, int dim, const float *g,
                               const float *b, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        /* two-pass mean/variance in double: matches torch's fp32 result to rounding */
        double mean = 0.0;
        for (int i = 0; i < dim; i++)
            mean += xr[i];
        mean /= dim;
        double var = 0.0;
        for (int i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        var /= dim;
        const float inv = (float)(1.0 / sqrt(var + eps));
        /* the mean as float hi + lo: x - mean keeps full precision when |mean| >> |x - mean| */
        const float fm = (float)mean, fm_lo = (float)(mean - fm);
        for (int i = 0; i < dim; i++)
            yr[i] = ((xr[i] - fm) - fm_lo) * inv * g[i] + b[i];
    }
}

static void gelu_erf_portable(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = act_scalar(x[i], CLIPN_ACT_GELU_ERF);
}

static void quickgelu_portable(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = act_scalar(x[i], CLIPN_ACT_QUICK);
}

static void erf_portable(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = erff(x[i]);
}

/* One head, one query row at a time; scratch holds one row of scores. */
static void attention_head_portable(const float *qkv, float *out, int L, int W, int hd, int h,
                                    int causal, float *scratch)
{
    const float scale = 1.0f / sqrtf((float)hd);
    const clipn_head_qkv hv = clipn_head_view(qkv, W, hd, h);
    const size_t ld = hv.ld;
    const float *q = hv.q, *k = hv.k, *v = hv.v;
    for (int i = 0; i < L; i++) {
        const int n_keys = causal ? i + 1 : L;
        float mx = -INFINITY;
        for (int j = 0; j < n_keys; j++) {
            float s = 0.0f;
            for (int d = 0; d < hd; d++)
                s += q[(size_t)i * ld + d] * scale * k[(size_t)j * ld + d];
            scratch[j] = s;
            if (s > mx)
                mx = s;
        }
        float sum = 0.0f;
        for (int j = 0; j < n_keys; j++) {
            scratch[j] = expf(scratch[j] - mx);
            sum += scratch[j];
        }
        const float inv = 1.0f / sum;
        float *o = out + (size_t)i * W + (size_t)h * hd;
        for (int d = 0; d < hd; d++)
            o[d] = 0.0f;
        for (int j = 0; j < n_keys; j++) {
            const float p = scratch[j] * inv;
            for (int d = 0; d < hd; d++)
                o[d] += p * v[(size_t)j * ld + d];
        }
    }
}

/* ---- PIL's 8-bit resample passes (ImagingResampleHorizontal_8bpc / Vertical_8bpc) */

void clipn_resample_one_h_portable(const uint8_t *src, int C, const clipn_resample_taps *taps,
                                   int j, uint8_t *dst)
{
    const int32_t init = 1 << (CLIPN_RESAMPLE_BITS - 1);
    const int xmin = taps->bounds[2 * j], cnt = taps->bounds[2 * j + 1];
    const int32_t *k = &taps->fixed[(size_t)j * taps->ksize];
    const uint8_t *p = src + (size_t)xmin * C;
    int32_t ss[4] = {init, init, init, init};
    for (int t = 0; t < cnt; t++)
        for (int c = 0; c < C; c++)
            ss[c] += p[t * C + c] * k[t];
    for (int c = 0; c < C; c++)
        dst[(size_t)j * C + c] = clipn_clip8(ss[c]);
}

static void resample_row_h_portable(const uint8_t *src, size_t src_bytes, int C,
                                    const clipn_resample_taps *taps, uint8_t *dst)
{
    (void)src_bytes;
    for (int j = 0; j < taps->n; j++)
        clipn_resample_one_h_portable(src, C, taps, j, dst);
}

/* accumulated row by row so the inner loop runs over contiguous bytes */
static void resample_row_v_portable(const uint8_t *rows, size_t row_bytes, int first_row,
                                    const int32_t *k, int cnt, int32_t *acc, uint8_t *dst)
{
    const int32_t init = 1 << (CLIPN_RESAMPLE_BITS - 1);
    for (size_t x = 0; x < row_bytes; x++)
        acc[x] = init;
    for (int t = 0; t < cnt; t++) {
        const uint8_t *r = rows + (size_t)(first_row + t) * row_bytes;
        int32_t kt = k[t];
        for (size_t x = 0; x < row_bytes; x++)
            acc[x] += r[x] * kt;
    }
    for (size_t x = 0; x < row_bytes; x++)
        dst[x] = clipn_clip8(acc[x]);
}

/* rgbA2rgba / lA2la: PIL resizes RGBA and LA premultiplied. */
void clipn_premultiply_row_portable(const uint8_t *src, int C, int w, uint8_t *dst)
{
    for (int x = 0; x < w; x++, src += C, dst += C) {
        unsigned alpha = src[C - 1];
        for (int c = 0; c < C - 1; c++)
            dst[c] = (uint8_t)clipn_muldiv255(src[c], alpha);
        dst[C - 1] = (uint8_t)alpha;
    }
}

const clipn_kernel_ops clipn_ops_portable = {
    .isa = "portable",
    .gemm_ukernel = gemm_ukernel_portable,
    .activate = activate_portable,
    .layernorm = layernorm_portable,
    .gelu_erf = gelu_erf_portable,
    .quickgelu = quickgelu_portable,
    .erf = erf_portable,
    .attention_head = attention_head_portable,
    .resample_row_h = resample_row_h_portable,
    .resample_row_v = resample_row_v_portable,
    .premultiply_row = clipn_premultiply_row_portable,
};
