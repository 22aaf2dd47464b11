/* Portable C kernels: the reference every ISA-specific version must match. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int clipn_linear_prepare(clipn_linear *lin)
{
    /* The OpenBLAS backend reads the weights in place. */
    lin->packed = NULL;
    lin->packed_bytes = 0;
    return 0;
}

void clipn_linear_release(clipn_linear *lin)
{
    free(lin->packed);
    lin->packed = NULL;
    lin->packed_bytes = 0;
}

void clipn_linear_forward(const clipn_linear *lin, const float *x, int m, float *y,
                          clipn_epilogue epi)
{
    const int n = lin->n_out, k = lin->n_in;
    if (m <= 0)
        return;
    float beta = 0.0f;
    if (epi == CLIPN_EPI_RESIDUAL) {
        beta = 1.0f; /* accumulate onto the residual stream held in y */
    }
    if (lin->bias) {
        if (epi == CLIPN_EPI_RESIDUAL) {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    y[(size_t)i * n + j] += lin->bias[j];
        } else {
            for (int i = 0; i < m; i++)
                memcpy(y + (size_t)i * n, lin->bias, sizeof(float) * (size_t)n);
            beta = 1.0f;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, lin->weight, k,
                beta, y, n);
    if (epi == CLIPN_EPI_GELU)
        clipn_gelu_erf(y, (size_t)m * n);
    else if (epi == CLIPN_EPI_QUICKGELU)
        clipn_quickgelu(y, (size_t)m * n);
}

void clipn_layernorm(const float *x, float *y, int rows, int dim, const float *g,
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
        const float fm = (float)mean;
        for (int i = 0; i < dim; i++)
            yr[i] = (xr[i] - fm) * inv * g[i] + b[i];
    }
}

void clipn_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void clipn_quickgelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

size_t clipn_attention_scratch_floats(int L, int W, int heads)
{
    (void)W;
    (void)heads;
    return (size_t)L; /* one row of scores at a time */
}

void clipn_attention(const float *qkv, float *out, int L, int W, int heads, int causal,
                     float *scratch)
{
    const int hd = W / heads;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t ld = (size_t)3 * W;
    for (int h = 0; h < heads; h++) {
        const float *q = qkv + (size_t)h * hd;
        const float *k = qkv + W + (size_t)h * hd;
        const float *v = qkv + 2 * (size_t)W + (size_t)h * hd;
        for (int i = 0; i < L; i++) {
            const int n_keys = causal ? i + 1 : L;
            float mx = -INFINITY;
            for (int j = 0; j < n_keys; j++) {
                float s = 0.0f;
                for (int d = 0; d < hd; d++)
                    s += q[(size_t)i * ld + d] * k[(size_t)j * ld + d];
                s *= scale;
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
}
