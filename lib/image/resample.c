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

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL's coefficients are computed without fused multiply-add */
#endif

#define PRECISION_BITS CLIPN_RESAMPLE_BITS /* PIL's fixed point for 8-bit images: 32 - 8 - 2 */

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

/* ---- 8 bits per channel: ImagingResampleHorizontal_8bpc / Vertical_8bpc. The passes are
 * kernels (kernels/: portable C, AVX2 where the CPU has it, chosen with the other kernels
 * and by CLIPN_ISA); integer sums, so every variant gives the same bytes. */

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
    int32_t *acc = NULL, *spread = NULL;
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
    clipn_resample_taps taps = {.n = S, .ksize = hx.ksize, .bounds = hx.bounds,
                                .fixed = hx.fixed};
    if (need_h) {
        taps.spread_len = clipn_resample_spread_len(C, hx.ksize);
        spread = taps.spread_len ? malloc((size_t)S * (size_t)taps.spread_len * sizeof *spread)
                                 : NULL;
        if (!spread) {
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for resize", name);
            goto out;
        }
        clipn_resample_spread(hx.bounds, hx.fixed, S, hx.ksize, C, spread);
        taps.spread = spread;
    }
    /* horizontal pass first (or the crop columns as they are), as PIL does */
    for (int y = r0; y < r1; y++) {
        const uint8_t *src;
        if ((st = clipn_image_row(im, y, &src, name, err)) != CLIPN_OK)
            goto out;
        if (premultiply) {
            clipn_premultiply_row(src, C, w, rowbuf);
            src = rowbuf;
        }
        uint8_t *dst = tmp + (size_t)(y - r0) * row_bytes;
        if (!need_h)
            memcpy(dst, src + (size_t)left * C, row_bytes);
        else
            clipn_resample_row_h(src, (size_t)w * C, C, &taps, dst);
    }
    if (need_v) {
        for (int i = 0; i < S; i++) {
            const uint8_t *first = tmp;
            int row = vy.bounds[2 * i] - r0, cnt = vy.bounds[2 * i + 1];
            const int32_t *k = &vy.fixed[(size_t)i * vy.ksize];
            uint8_t *dst = out + (size_t)i * row_bytes;
            clipn_resample_row_v(first, row_bytes, row, k, cnt, acc, dst);
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
    free(spread);
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
