/* The official open_clip validation transform (Resize(S, BICUBIC) -> CenterCrop(S) ->
 * convert('RGB') -> ToTensor -> Normalize) on PIL 9.4 / torchvision 0.14 semantics.
 * Decoding: decode.c. Resize + crop + RGB: resample.c. */
#include "image_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE_SIZE 8192 /* output side; far above any CLIP model */

void clipn_image_opts_default(clipn_image_opts *o)
{
    if (!o)
        return;
    o->image_size = 224;
    o->mean[0] = 0.48145466f;
    o->mean[1] = 0.4578275f;
    o->mean[2] = 0.40821073f;
    o->std[0] = 0.26862954f;
    o->std[1] = 0.26130258f;
    o->std[2] = 0.27577711f;
    o->max_pixels = CLIPN_DEFAULT_MAX_PIXELS;
}

void clipn_image_opts_from_model(const clipn_model *m, clipn_image_opts *o)
{
    clipn_image_opts_default(o);
    if (!m || !o)
        return;
    o->image_size = m->config.image_size;
    for (int i = 0; i < 3; i++) {
        o->mean[i] = m->config.image_mean[i];
        o->std[i] = m->config.image_std[i];
    }
}

/* 0 means the default, as in clipn_load_opts. */
static uint64_t max_pixels(const clipn_image_opts *o)
{
    return o->max_pixels ? o->max_pixels : CLIPN_DEFAULT_MAX_PIXELS;
}

static clipn_status check_opts(const clipn_image_opts *o, const float *out, const char *name,
                               clipn_error *err)
{
    if (!o || !out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: NULL opts or output", name);
    if (o->image_size <= 0 || o->image_size > MAX_IMAGE_SIZE)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: image_size %d out of range 1..%d",
                          name, o->image_size, MAX_IMAGE_SIZE);
    for (int c = 0; c < 3; c++)
        if (!(o->std[c] != 0.0f))
            return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: std[%d] must be non-zero", name, c);
    return CLIPN_OK;
}

/* ToTensor (x / 255 in float32) then Normalize ((x - mean) / std in float32), in
 * torchvision's order, tabulated per 8-bit level; output CHW. */
static void normalize_rgb(const uint8_t *rgb, int S, const clipn_image_opts *o, float *out)
{
    float table[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            x = x - o->mean[c];
            table[c][v] = x / o->std[c];
        }
    const size_t n = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        float *dst = out + (size_t)c * n;
        for (size_t i = 0; i < n; i++)
            dst[i] = table[c][rgb[3 * i + c]];
    }
}

static clipn_status finish(const clipn_image *im, const clipn_image_opts *o, float *out,
                           const char *name, clipn_error *err)
{
    const int S = o->image_size;
    uint8_t *rgb = malloc((size_t)S * S * 3);
    if (!rgb)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", name);
    clipn_status st = clipn_image_resize_crop_rgb(im, S, rgb, name, err);
    if (st == CLIPN_OK)
        normalize_rgb(rgb, S, o, out);
    free(rgb);
    return st;
}

clipn_status clipn_preprocess_memory_ex(const void *data, size_t len, const char *name,
                                        const clipn_image_opts *o, int jpeg_with_stb,
                                        float *out, clipn_error *err)
{
    if (!name)
        name = "<memory>";
    clipn_status st = check_opts(o, out, name, err);
    if (st != CLIPN_OK)
        return st;
    if (!data && len)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: NULL data", name);
    clipn_image im;
    st = clipn_image_decode(data, len, name, max_pixels(o), jpeg_with_stb, &im, err);
    if (st != CLIPN_OK)
        return st;
    st = finish(&im, o, out, name, err);
    clipn_image_release(&im);
    return st;
}

clipn_status clipn_preprocess_memory(const void *data, size_t len, const clipn_image_opts *o,
                                     float *out, clipn_error *err)
{
    return clipn_preprocess_memory_ex(data, len, "<memory>", o, 0, out, err);
}

clipn_status clipn_preprocess_file(const char *path, const clipn_image_opts *o, float *out,
                                   clipn_error *err)
{
    if (!path)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "NULL image path");
    clipn_status st = check_opts(o, out, path, err);
    if (st != CLIPN_OK)
        return st;
    uint8_t *data = NULL;
    size_t len = 0;
    st = clipn_read_file(path, CLIPN_MAX_IMAGE_FILE_BYTES, &data, &len, err);
    if (st != CLIPN_OK)
        return st;
    st = clipn_preprocess_memory_ex(data, len, path, o, 0, out, err);
    free(data);
    return st;
}

clipn_status clipn_preprocess_pixels(const uint8_t *pixels, int width, int height, int channels,
                                     size_t stride, const clipn_image_opts *o, float *out,
                                     clipn_error *err)
{
    const char *name = "<pixels>";
    clipn_status st = check_opts(o, out, name, err);
    if (st != CLIPN_OK)
        return st;
    if (!pixels || width <= 0 || height <= 0 || channels < 1 || channels > 4)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: bad pixels, size %dx%d or channels %d",
                          name, width, height, channels);
    if ((uint64_t)width * (uint64_t)height > max_pixels(o))
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: %dx%d image exceeds the limit of %llu pixels",
                          name, width, height, (unsigned long long)max_pixels(o));
    size_t row = (size_t)width * (size_t)channels;
    if (stride == 0)
        stride = row;
    if (stride < row)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: stride %zu < width * channels %zu",
                          name, stride, row);
    static const clipn_pil_mode modes[5] = {PIL_MODE_L, PIL_MODE_L, PIL_MODE_LA, PIL_MODE_RGB,
                                            PIL_MODE_RGBA};
    clipn_image im = {0};
    im.width = width;
    im.height = height;
    im.channels = channels;
    im.mode = modes[channels];
    im.borrowed = pixels;
    im.stride = stride;
    return finish(&im, o, out, name, err);
}
