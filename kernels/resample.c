/* The image resampler's entry points (kernels.h): the coefficient layout of the SIMD
 * horizontal pass, and the passes forwarded to the selected ISA (portable where the ISA
 * has none). */
#include "kernels_impl.h"

#include <limits.h>

#define SPREAD_CHUNK 24 /* a multiple of C = 1..4: every SIMD lane keeps one channel */

int clipn_resample_spread_len(int C, int ksize)
{
    if (C < 1 || C > 4 || ksize < 1 || ksize > (INT_MAX - SPREAD_CHUNK) / C)
        return 0;
    return (C * ksize + SPREAD_CHUNK - 1) / SPREAD_CHUNK * SPREAD_CHUNK;
}

void clipn_resample_spread(const int *bounds, const int32_t *fixed, int n, int ksize, int C,
                           int32_t *spread)
{
    const int L = clipn_resample_spread_len(C, ksize);
    for (int j = 0; j < n; j++) {
        const int32_t *k = fixed + (size_t)j * ksize;
        int32_t *e = spread + (size_t)j * L;
        const int cnt = bounds[2 * j + 1];
        for (int t = 0; t < cnt; t++)
            for (int c = 0; c < C; c++)
                e[t * C + c] = k[t];
        for (int i = cnt * C; i < L; i++)
            e[i] = 0;
    }
}

void clipn_resample_row_h(const uint8_t *src, size_t src_bytes, int C,
                          const clipn_resample_taps *taps, uint8_t *dst)
{
    const clipn_kernel_ops *ops = clipn_kernels_ops();
    (ops->resample_row_h ? ops->resample_row_h : clipn_ops_portable.resample_row_h)(
        src, src_bytes, C, taps, dst);
}

void clipn_resample_row_v(const uint8_t *rows, size_t row_bytes, int first_row,
                          const int32_t *k, int cnt, int32_t *acc, uint8_t *dst)
{
    const clipn_kernel_ops *ops = clipn_kernels_ops();
    (ops->resample_row_v ? ops->resample_row_v : clipn_ops_portable.resample_row_v)(
        rows, row_bytes, first_row, k, cnt, acc, dst);
}

void clipn_premultiply_row(const uint8_t *src, int C, int w, uint8_t *dst)
{
    const clipn_kernel_ops *ops = clipn_kernels_ops();
    (ops->premultiply_row ? ops->premultiply_row : clipn_ops_portable.premultiply_row)(
        src, C, w, dst);
}
