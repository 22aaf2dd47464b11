/* PIL 9.4's resize (src/libImaging/Resample.c, Geometry.c ImagingScaleAffine), reproduced
 * bit for bit, fused with torchvision's Resize(S) + CenterCrop(S) and PIL's convert('RGB').
 *
 * Only the output pixels inside the centre crop are computed. Every output pixel of PIL's
 * separable resample depends only on its own coefficients and on the rows/columns they
 * cover, so restricting the passes to the crop window gives the same bytes.
 */
#include "image_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(CLIPN_IMAGE_NO_SIMD)
#include <immintrin.h>
#define CLIPN_IMAGE_AVX2 1 /* compiled for AVX2 per function, chosen at run time */
#endif

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL's coefficients are computed without fused multiply-add */
#endif

#define PRECISION_BITS (32 - 8 - 2) /* PIL's fixed point for 8-bit images */

/* PIL's bicubic_filter, a = -0.5, same expression order. */
static double bicubic_filter(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* PIL's clip8 lookup: floor(ss / 2^22) clamped to 0..255. */
static inline uint8_t clip8(int32_t ss)
{
    if (ss < 0)
        return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

/* MULDIV255 of ImagingUtils.h: a * b / 255 rounded, as PIL computes it. */
static inline unsigned muldiv255(unsigned a, unsigned b)
{
    unsigned t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static inline uint8_t clip8_int(int v) { return v <= 0 ? 0 : v < 256 ? (uint8_t)v : 255; }

/* Coefficients of one axis for the outputs [first, first + n) of an in_size -> out_size
 * resample (precompute_coeffs with box (0, in_size)). */
typedef struct resample_axis {
    int ksize;
    int *bounds;      /* [n][2]: first input index, number of taps */
    double *weights;  /* [n][ksize], normalised to sum 1 */
    int32_t *fixed;   /* [n][ksize] in 1 << PRECISION_BITS (normalize_coeffs_8bpc) */
} resample_axis;

static void axis_free(resample_axis *ax)
{
    free(ax->bounds);
    free(ax->weights);
    free(ax->fixed);
    memset(ax, 0, sizeof *ax);
}

static clipn_status axis_init(resample_axis *ax, int in_size, int out_size, int first, int n,
                              const char *name, clipn_error *err)
{
    memset(ax, 0, sizeof *ax);
    /* PIL keeps the box in float: in1 - in0 is a float subtraction. */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale; /* BICUBIC support 2, widened when shrinking */
    double ksize_d = ceil(support) * 2 + 1;
    if (ksize_d > (double)(INT_MAX / 2))
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: resize filter too large", name);
    int ksize = (int)ksize_d;
    if ((size_t)n > SIZE_MAX / sizeof(double) / (size_t)ksize)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: resize coefficient table too large", name);
    ax->ksize = ksize;
    ax->bounds = malloc((size_t)n * 2 * sizeof(int));
    ax->weights = calloc((size_t)n * (size_t)ksize, sizeof(double));
    ax->fixed = calloc((size_t)n * (size_t)ksize, sizeof(int32_t));
    if (!ax->bounds || !ax->weights || !ax->fixed) {
        axis_free(ax);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for resize coefficients", name);
    }
    for (int i = 0; i < n; i++) {
        int xx = first + i;
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = &ax->weights[(size_t)i * ksize];
        for (int x = 0; x < xmax; x++) {
            double w = bicubic_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        int32_t *kf = &ax->fixed[(size_t)i * ksize];
        for (int x = 0; x < xmax; x++)
            kf[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                             : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        ax->bounds[2 * i] = xmin;
        ax->bounds[2 * i + 1] = xmax;
    }
    return CLIPN_OK;
}

/* ImagingScaleAffine's source index table for NEAREST (used for 'P' and '1' images): the
 * position is accumulated in double from output 0, so it is walked from 0 as PIL does.
 * -1 marks an output PIL leaves at its fill value 0. */
static int *nearest_table(int in_size, int out_size, int first, int n)
{
    int *tab = malloc((size_t)n * sizeof(int));
    if (!tab)
        return NULL;
    float in0 = 0.0f, in1 = (float)in_size;
    double step = (double)(in1 - in0) / out_size;
    double pos = 0.0 + step * 0.5;
    for (int x = 0; x < first + n; x++) {
        int xin = pos < 0.0 ? -1 : (int)pos; /* COORD() */
        if (x >= first)
            tab[x - first] = (xin >= 0 && xin < in_size) ? xin : -1;
        pos += step;
    }
    return tab;
}

/* ---- 8 bits per channel: ImagingResampleHorizontal_8bpc / Vertical_8bpc */

/* Output j of a horizontal pass over one row of C-channel pixels. */
static inline void horizontal_8bpc_one(const uint8_t *src, int C, const resample_axis *ax, int j,
                                       uint8_t *dst)
{
    const int32_t init = 1 << (PRECISION_BITS - 1);
    int xmin = ax->bounds[2 * j], cnt = ax->bounds[2 * j + 1];
    const int32_t *k = &ax->fixed[(size_t)j * ax->ksize];
    const uint8_t *p = src + (size_t)xmin * C;
    int32_t ss[4] = {init, init, init, init};
    for (int t = 0; t < cnt; t++)
        for (int c = 0; c < C; c++)
            ss[c] += p[t * C + c] * k[t];
    for (int c = 0; c < C; c++)
        dst[(size_t)j * C + c] = clip8(ss[c]);
}

static void horizontal_8bpc(const uint8_t *src, int C, const resample_axis *ax, int n,
                            uint8_t *dst)
{
    for (int j = 0; j < n; j++)
        horizontal_8bpc_one(src, C, ax, j, dst);
}

/* One output row of the vertical pass, accumulated row by row so the inner loop runs
 * over contiguous bytes. */
static void vertical_8bpc_row(const uint8_t *rows, size_t row_bytes, int first_row,
                              const int32_t *k, int cnt, int32_t *acc, uint8_t *dst)
{
    const int32_t init = 1 << (PRECISION_BITS - 1);
    for (size_t x = 0; x < row_bytes; x++)
        acc[x] = init;
    for (int t = 0; t < cnt; t++) {
        const uint8_t *r = rows + (size_t)(first_row + t) * row_bytes;
        int32_t kt = k[t];
        for (size_t x = 0; x < row_bytes; x++)
            acc[x] += r[x] * kt;
    }
    for (size_t x = 0; x < row_bytes; x++)
        dst[x] = clip8(acc[x]);
}

/* rgbA2rgba / lA2la: PIL resizes RGBA and LA premultiplied. */
static void premultiply_row(const uint8_t *src, int C, int w, uint8_t *dst)
{
    for (int x = 0; x < w; x++, src += C, dst += C) {
        unsigned alpha = src[C - 1];
        for (int c = 0; c < C - 1; c++)
            dst[c] = (uint8_t)muldiv255(src[c], alpha);
        dst[C - 1] = (uint8_t)alpha;
    }
}

#ifdef CLIPN_IMAGE_AVX2
/* The same sums with AVX2. Integer sums do not depend on order, so the result is
 * identical to the scalar code. The horizontal pass reads each output's window of
 * C * cnt interleaved bytes in 24-byte steps (24 is a multiple of C for C = 1..4, so
 * every lane of the 3 accumulators keeps one channel), against coefficients expanded to
 * one per byte and zero-padded (kexp, 24-byte multiples). */
#define CHUNK 24

static int have_avx2(void) { return __builtin_cpu_supports("avx2") ? 1 : 0; }

__attribute__((target("avx2"))) static void
horizontal_8bpc_avx2(const uint8_t *src, size_t src_bytes, int C, const resample_axis *ax,
                     const int32_t *kexp, int L, int n, uint8_t *dst)
{
    const int32_t init = 1 << (PRECISION_BITS - 1);
    for (int j = 0; j < n; j++) {
        int xmin = ax->bounds[2 * j], cnt = ax->bounds[2 * j + 1];
        size_t off = (size_t)xmin * C;
        int chunks = (C * cnt + CHUNK - 1) / CHUNK;
        if (off + (size_t)chunks * CHUNK > src_bytes) { /* window ends at the row's end */
            horizontal_8bpc_one(src, C, ax, j, dst);
            continue;
        }
        const uint8_t *p = src + off;
        const int32_t *k = kexp + (size_t)j * L;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0;
        for (int m = 0; m < chunks; m++, p += CHUNK, k += CHUNK) {
            __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
            __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
            __m256i v2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16)));
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(v0, _mm256_loadu_si256((const __m256i *)k)));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(v1, _mm256_loadu_si256((const __m256i *)(k + 8))));
            a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(v2, _mm256_loadu_si256((const __m256i *)(k + 16))));
        }
        /* lane i of accumulator a holds channel (8a + i) % C */
        int32_t l[CHUNK], s0 = init, s1 = init, s2 = init, s3 = init;
        uint8_t *d = dst + (size_t)j * C;
        if (C == 3) {
            _mm256_storeu_si256((__m256i *)l, a0);
            _mm256_storeu_si256((__m256i *)(l + 8), a1);
            _mm256_storeu_si256((__m256i *)(l + 16), a2);
            s0 += l[0] + l[3] + l[6] + l[9] + l[12] + l[15] + l[18] + l[21];
            s1 += l[1] + l[4] + l[7] + l[10] + l[13] + l[16] + l[19] + l[22];
            s2 += l[2] + l[5] + l[8] + l[11] + l[14] + l[17] + l[20] + l[23];
            d[0] = clip8(s0);
            d[1] = clip8(s1);
            d[2] = clip8(s2);
            continue;
        }
        /* C = 1, 2, 4 divide 8: the three accumulators share one lane layout */
        __m256i a = _mm256_add_epi32(_mm256_add_epi32(a0, a1), a2);
        __m128i q = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        _mm_storeu_si128((__m128i *)l, q); /* lane i: channel i % C */
        if (C == 4) {
            d[0] = clip8(s0 + l[0]);
            d[1] = clip8(s1 + l[1]);
            d[2] = clip8(s2 + l[2]);
            d[3] = clip8(s3 + l[3]);
        } else if (C == 2) {
            d[0] = clip8(s0 + l[0] + l[2]);
            d[1] = clip8(s1 + l[1] + l[3]);
        } else {
            d[0] = clip8(s0 + l[0] + l[1] + l[2] + l[3]);
        }
    }
}

__attribute__((target("avx2"))) static void
vertical_8bpc_row_avx2(const uint8_t *rows, size_t row_bytes, int first_row, const int32_t *k,
                       int cnt, int32_t *acc, uint8_t *dst)
{
    const int32_t init = 1 << (PRECISION_BITS - 1);
    const uint8_t *base = rows + (size_t)first_row * row_bytes;
    size_t x = 0;
    for (; x + 16 <= row_bytes; x += 16) {
        __m256i s0 = _mm256_set1_epi32(init), s1 = s0;
        const uint8_t *r = base + x;
        for (int t = 0; t < cnt; t++, r += row_bytes) {
            __m256i kt = _mm256_set1_epi32(k[t]);
            __m128i b = _mm_loadu_si128((const __m128i *)r);
            s0 = _mm256_add_epi32(s0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(b), kt));
            s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(
                                          _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), kt));
        }
        _mm256_storeu_si256((__m256i *)(acc + x), s0);
        _mm256_storeu_si256((__m256i *)(acc + x + 8), s1);
    }
    for (; x < row_bytes; x++) {
        int32_t ss = init;
        for (int t = 0; t < cnt; t++)
            ss += base[(size_t)t * row_bytes + x] * k[t];
        acc[x] = ss;
    }
    for (x = 0; x < row_bytes; x++)
        dst[x] = clip8(acc[x]);
}

/* rgbA2rgba / lA2la on 16 pixels' worth of bytes at a time: x * alpha (the alpha byte
 * times 255, which MULDIV255 maps to itself), + 128, ((t >> 8) + t) >> 8, all within
 * 16 bits without wrapping. SHUF replicates each pixel's alpha word, BLEND marks it. */
#define PREMULTIPLY_AVX2(fn, C, SHUF, BLEND)                                                   \
    __attribute__((target("avx2"))) static void fn(const uint8_t *src, int w, uint8_t *dst)   \
    {                                                                                         \
        const __m256i zero = _mm256_setzero_si256(), c128 = _mm256_set1_epi16(128);            \
        const __m256i c255 = _mm256_set1_epi16(255);                                          \
        size_t n = (size_t)w * C, i = 0;                                                      \
        for (; i + 32 <= n; i += 32) {                                                        \
            __m256i v = _mm256_loadu_si256((const __m256i *)(src + i));                       \
            __m256i half[2] = {_mm256_unpacklo_epi8(v, zero), _mm256_unpackhi_epi8(v, zero)}; \
            for (int k = 0; k < 2; k++) {                                                     \
                __m256i x = half[k];                                                          \
                __m256i a = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(x, SHUF), SHUF);    \
                a = _mm256_blend_epi16(a, c255, BLEND);                                       \
                __m256i t = _mm256_add_epi16(_mm256_mullo_epi16(x, a), c128);                 \
                half[k] = _mm256_srli_epi16(_mm256_add_epi16(_mm256_srli_epi16(t, 8), t), 8); \
            }                                                                                 \
            _mm256_storeu_si256((__m256i *)(dst + i), _mm256_packus_epi16(half[0], half[1])); \
        }                                                                                     \
        premultiply_row(src + i, C, (int)((n - i) / C), dst + i);                             \
    }
PREMULTIPLY_AVX2(premultiply_rgba_avx2, 4, 0xFF, 0x88)
PREMULTIPLY_AVX2(premultiply_la_avx2, 2, 0xF5, 0xAA)

/* kexp for horizontal_8bpc_avx2: [n][L] with L = C * ksize rounded up to CHUNK. */
static int32_t *expand_coeffs(const resample_axis *ax, int n, int C, int *L_out)
{
    int L = (C * ax->ksize + CHUNK - 1) / CHUNK * CHUNK;
    int32_t *kexp = calloc((size_t)n * (size_t)L, sizeof(int32_t));
    if (!kexp)
        return NULL;
    for (int j = 0; j < n; j++) {
        const int32_t *k = &ax->fixed[(size_t)j * ax->ksize];
        int32_t *e = kexp + (size_t)j * L;
        for (int t = 0; t < ax->bounds[2 * j + 1]; t++)
            for (int c = 0; c < C; c++)
                e[t * C + c] = k[t];
    }
    *L_out = L;
    return kexp;
}
#endif

/* rgba2rgbA / la2lA. */
static void unpremultiply(uint8_t *px, int C, size_t n)
{
    for (size_t i = 0; i < n; i++, px += C) {
        unsigned alpha = px[C - 1];
        if (alpha == 255 || alpha == 0)
            continue;
        for (int c = 0; c < C - 1; c++)
            px[c] = clip8_int((int)(255 * px[c] / alpha));
    }
}

/* Rows [*r0, *r1) of the input a vertical pass over the crop needs. */
static void rows_needed(const resample_axis *vy, int need_v, int top, int S, int *r0, int *r1)
{
    if (need_v) {
        *r0 = vy->bounds[0];
        *r1 = vy->bounds[2 * (S - 1)] + vy->bounds[2 * (S - 1) + 1];
    } else {
        *r0 = top;
        *r1 = top + S;
    }
}

static clipn_status resize_crop_8bpc(const clipn_image *im, int new_w, int new_h, int left,
                                     int top, int S, uint8_t *out, const char *name,
                                     clipn_error *err)
{
    const int C = im->channels, w = im->width, h = im->height;
    const int premultiply = im->mode == PIL_MODE_LA || im->mode == PIL_MODE_RGBA;
    const int need_h = new_w != w, need_v = new_h != h;
    resample_axis hx = {0}, vy = {0};
    uint8_t *tmp = NULL, *rowbuf = NULL;
    int32_t *acc = NULL, *kexp = NULL;
    clipn_status st = CLIPN_OK;

    if (need_h && (st = axis_init(&hx, w, new_w, left, S, name, err)) != CLIPN_OK)
        goto out;
    if (need_v && (st = axis_init(&vy, h, new_h, top, S, name, err)) != CLIPN_OK)
        goto out;
    int r0, r1;
    rows_needed(&vy, need_v, top, S, &r0, &r1);
    const size_t row_bytes = (size_t)S * C;
    tmp = malloc((size_t)(r1 - r0) * row_bytes);
    acc = malloc(row_bytes * sizeof(int32_t));
    rowbuf = premultiply ? malloc((size_t)w * C) : NULL;
    if (!tmp || !acc || (premultiply && !rowbuf)) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for resize", name);
        goto out;
    }
    int simd = 0, L = 0;
    (void)simd;
    (void)L;
#ifdef CLIPN_IMAGE_AVX2
    if (have_avx2()) {
        simd = 1;
        if (need_h && !(kexp = expand_coeffs(&hx, S, C, &L))) {
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for resize", name);
            goto out;
        }
    }
#endif
    /* horizontal pass first (or the crop columns as they are), as PIL does */
    for (int y = r0; y < r1; y++) {
        const uint8_t *src;
        if ((st = clipn_image_row(im, y, &src, name, err)) != CLIPN_OK)
            goto out;
        if (premultiply) {
#ifdef CLIPN_IMAGE_AVX2
            if (simd && C == 4)
                premultiply_rgba_avx2(src, w, rowbuf);
            else if (simd && C == 2)
                premultiply_la_avx2(src, w, rowbuf);
            else
#endif
                premultiply_row(src, C, w, rowbuf);
            src = rowbuf;
        }
        uint8_t *dst = tmp + (size_t)(y - r0) * row_bytes;
        if (!need_h)
            memcpy(dst, src + (size_t)left * C, row_bytes);
#ifdef CLIPN_IMAGE_AVX2
        else if (simd)
            horizontal_8bpc_avx2(src, (size_t)w * C, C, &hx, kexp, L, S, dst);
#endif
        else
            horizontal_8bpc(src, C, &hx, S, dst);
    }
    if (need_v) {
        for (int i = 0; i < S; i++) {
            const uint8_t *first = tmp;
            int row = vy.bounds[2 * i] - r0, cnt = vy.bounds[2 * i + 1];
            const int32_t *k = &vy.fixed[(size_t)i * vy.ksize];
            uint8_t *dst = out + (size_t)i * row_bytes;
#ifdef CLIPN_IMAGE_AVX2
            if (simd) {
                vertical_8bpc_row_avx2(first, row_bytes, row, k, cnt, acc, dst);
                continue;
            }
#endif
            vertical_8bpc_row(first, row_bytes, row, k, cnt, acc, dst);
        }
    } else {
        memcpy(out, tmp, (size_t)S * row_bytes);
    }
    if (premultiply)
        unpremultiply(out, C, (size_t)S * S);
out:
    axis_free(&hx);
    axis_free(&vy);
    free(tmp);
    free(acc);
    free(kexp);
    free(rowbuf);
    return st;
}

/* ---- 32-bit int ('I', 16-bit PNGs): ImagingResample*_32bpc, double accumulation */

static inline int32_t round_up(double f) { return (int32_t)(f >= 0.0 ? f + 0.5F : f - 0.5F); }

static clipn_status resize_crop_i32(const clipn_image *im, int new_w, int new_h, int left,
                                    int top, int S, int32_t *out, const char *name,
                                    clipn_error *err)
{
    const int w = im->width, h = im->height;
    const int need_h = new_w != w, need_v = new_h != h;
    resample_axis hx = {0}, vy = {0};
    int32_t *tmp = NULL;
    clipn_status st = CLIPN_OK;

    if (need_h && (st = axis_init(&hx, w, new_w, left, S, name, err)) != CLIPN_OK)
        goto out;
    if (need_v && (st = axis_init(&vy, h, new_h, top, S, name, err)) != CLIPN_OK)
        goto out;
    int r0, r1;
    rows_needed(&vy, need_v, top, S, &r0, &r1);
    tmp = malloc((size_t)(r1 - r0) * S * sizeof(int32_t));
    if (!tmp) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for resize", name);
        goto out;
    }
    for (int y = r0; y < r1; y++) {
        const int32_t *src = im->pixels_i32 + (size_t)y * w;
        int32_t *dst = tmp + (size_t)(y - r0) * S;
        for (int j = 0; j < S; j++) {
            if (!need_h) {
                dst[j] = src[left + j];
                continue;
            }
            int xmin = hx.bounds[2 * j], cnt = hx.bounds[2 * j + 1];
            const double *k = &hx.weights[(size_t)j * hx.ksize];
            double ss = 0.0;
            for (int t = 0; t < cnt; t++)
                ss += src[xmin + t] * k[t];
            dst[j] = round_up(ss);
        }
    }
    for (int i = 0; i < S; i++) {
        for (int j = 0; j < S; j++) {
            if (!need_v) {
                out[(size_t)i * S + j] = tmp[(size_t)i * S + j];
                continue;
            }
            int ymin = vy.bounds[2 * i] - r0, cnt = vy.bounds[2 * i + 1];
            const double *k = &vy.weights[(size_t)i * vy.ksize];
            double ss = 0.0;
            for (int t = 0; t < cnt; t++)
                ss += tmp[(size_t)(ymin + t) * S + j] * k[t];
            out[(size_t)i * S + j] = round_up(ss);
        }
    }
out:
    axis_free(&hx);
    axis_free(&vy);
    free(tmp);
    return st;
}

/* ---- NEAREST ('P', '1') */

static clipn_status resize_crop_nearest(const clipn_image *im, int new_w, int new_h, int left,
                                        int top, int S, uint8_t *out, const char *name,
                                        clipn_error *err)
{
    const int C = im->channels;
    int *xs = nearest_table(im->width, new_w, left, S);
    int *ys = nearest_table(im->height, new_h, top, S);
    if (!xs || !ys) {
        free(xs);
        free(ys);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for resize", name);
    }
    for (int i = 0; i < S; i++) {
        uint8_t *dst = out + (size_t)i * S * C;
        const uint8_t *src = NULL;
        clipn_status st = ys[i] >= 0 ? clipn_image_row(im, ys[i], &src, name, err) : CLIPN_OK;
        if (st != CLIPN_OK) {
            free(xs);
            free(ys);
            return st;
        }
        for (int j = 0; j < S; j++) {
            if (src && xs[j] >= 0)
                memcpy(dst + (size_t)j * C, src + (size_t)xs[j] * C, (size_t)C);
            else
                memset(dst + (size_t)j * C, 0, (size_t)C);
        }
    }
    free(xs);
    free(ys);
    return CLIPN_OK;
}

/* ---- RGB conversion (PIL Convert.c) */

static void to_rgb(const uint8_t *px, clipn_pil_mode mode, size_t n, uint8_t *rgb)
{
    for (size_t i = 0; i < n; i++, rgb += 3) {
        switch (mode) {
        case PIL_MODE_L:
        case PIL_MODE_1:
            rgb[0] = rgb[1] = rgb[2] = px[i];
            break;
        case PIL_MODE_LA:
            rgb[0] = rgb[1] = rgb[2] = px[2 * i];
            break;
        case PIL_MODE_RGB:
        case PIL_MODE_P:
            memcpy(rgb, px + 3 * i, 3);
            break;
        case PIL_MODE_RGBA:
            memcpy(rgb, px + 4 * i, 3);
            break;
        case PIL_MODE_CMYK: { /* cmyk2rgb */
            const uint8_t *p = px + 4 * i;
            int nk = 255 - p[3];
            for (int c = 0; c < 3; c++)
                rgb[c] = clip8_int(nk - (int)muldiv255(p[c], (unsigned)nk));
            break;
        }
        case PIL_MODE_I:
            break;
        }
    }
}

/* Python's round() on (d / 2.0) for d >= 0: halves go to the even neighbour. */
static int center_offset(int d)
{
    int k = d / 2;
    return (d % 2 != 0 && k % 2 != 0) ? k + 1 : k;
}

clipn_status clipn_image_resize_crop_rgb(const clipn_image *im, int S, uint8_t *rgb,
                                         const char *name, clipn_error *err)
{
    const int w = im->width, h = im->height;
    if (w <= 0 || h <= 0 || S <= 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: empty image or output size", name);
    /* torchvision _compute_resized_output_size: int(S * long / short) in double */
    const int short_side = w <= h ? w : h, long_side = w <= h ? h : w;
    double new_long_d = (double)((int64_t)S * long_side) / (double)short_side;
    if (new_long_d >= (double)INT_MAX)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: %dx%d image is too elongated to resize",
                          name, w, h);
    const int new_long = (int)new_long_d;
    const int new_w = w <= h ? S : new_long, new_h = w <= h ? new_long : S;
    const int left = center_offset(new_w - S), top = center_offset(new_h - S);
    const size_t n = (size_t)S * S;
    clipn_status st = CLIPN_OK;

    if (im->mode == PIL_MODE_I) {
        int32_t *crop = malloc(n * sizeof(int32_t));
        if (!crop)
            return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
        if (new_w == w && new_h == h) {
            for (int i = 0; i < S; i++)
                memcpy(crop + (size_t)i * S, im->pixels_i32 + (size_t)(top + i) * w + left,
                       (size_t)S * sizeof(int32_t));
        } else {
            st = resize_crop_i32(im, new_w, new_h, left, top, S, crop, name, err);
        }
        if (st == CLIPN_OK)
            for (size_t i = 0; i < n; i++) /* i2rgb */
                rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] =
                    crop[i] <= 0 ? 0 : crop[i] >= 255 ? 255 : (uint8_t)crop[i];
        free(crop);
        return st;
    }

    const int C = im->channels;
    uint8_t *crop = malloc(n * C);
    if (!crop)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
    if (new_w == w && new_h == h) { /* Image.resize returns a copy: no premultiply trip */
        for (int i = 0; i < S && st == CLIPN_OK; i++) {
            const uint8_t *src;
            st = clipn_image_row(im, top + i, &src, name, err);
            if (st == CLIPN_OK)
                memcpy(crop + (size_t)i * S * C, src + (size_t)left * C, (size_t)S * C);
        }
    } else if (im->mode == PIL_MODE_P || im->mode == PIL_MODE_1) {
        st = resize_crop_nearest(im, new_w, new_h, left, top, S, crop, name, err);
    } else {
        st = resize_crop_8bpc(im, new_w, new_h, left, top, S, crop, name, err);
    }
    if (st == CLIPN_OK)
        st = clipn_image_finish(im, name, err);
    if (st == CLIPN_OK)
        to_rgb(crop, im->mode, n, rgb);
    free(crop);
    return st;
}
