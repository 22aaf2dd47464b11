/* The image tower (open_clip VisualTransformer):
 * patches -> conv1 as a linear -> [class_embedding; patches] + positional_embedding -> ln_pre
 * -> transformer -> ln_post(token 0) -> @ proj. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest grid clipn_encode_image_sized accepts (16384 patches, e.g. 2048 px at patch 16). */
#define MAX_SIZED_GRID 128

/* PyTorch's cubic convolution kernel, a = -0.75: weights of taps -1, 0, +1, +2 around t. */
static void cubic_weights(float t, float w[4])
{
    const float A = -0.75f;
    float x = t + 1.0f; /* |x| in [1, 2] */
    w[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    x = t; /* [0, 1] */
    w[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    w[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 2.0f - t;
    w[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

/* Source index (floor) and tap weights for output position o (align_corners=False: the
 * source coordinate is scale * (o + 0.5) - 0.5, not clamped for cubic). */
static int cubic_source(int o, float scale, float w[4])
{
    const float real = scale * ((float)o + 0.5f) - 0.5f;
    const float base = floorf(real);
    cubic_weights(real - base, w);
    return (int)base;
}

static int clampi(int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; }

void clipn_bicubic_grid(const float *in, int g_in, float *out, int g_out, int W)
{
    enum { CHUNK = 64 };
    const float scale = (float)g_in / (float)g_out;
    for (int oy = 0; oy < g_out; oy++) {
        float wy[4], wx[4];
        const int iy = cubic_source(oy, scale, wy);
        for (int ox = 0; ox < g_out; ox++) {
            const int ix = cubic_source(ox, scale, wx);
            float *dst = out + ((size_t)oy * g_out + ox) * W;
            for (int c0 = 0; c0 < W; c0 += CHUNK) {
                const int nc = W - c0 < CHUNK ? W - c0 : CHUNK;
                /* torch order: interpolate along x in each of the 4 rows, then along y */
                for (int j = 0; j < 4; j++) {
                    const float *row = in + (size_t)clampi(iy - 1 + j, g_in - 1) * g_in * W;
                    float t[CHUNK];
                    for (int c = 0; c < nc; c++)
                        t[c] = row[(size_t)clampi(ix - 1, g_in - 1) * W + c0 + c] * wx[0];
                    for (int i = 1; i < 4; i++) {
                        const float *src = row + (size_t)clampi(ix - 1 + i, g_in - 1) * W + c0;
                        for (int c = 0; c < nc; c++)
                            t[c] += src[c] * wx[i];
                    }
                    for (int c = 0; c < nc; c++)
                        dst[c0 + c] = j == 0 ? t[c] * wy[0] : dst[c0 + c] + t[c] * wy[j];
                }
            }
        }
    }
}

/* Patch embedding, class token, positions and ln_pre of n images into ctx->x. */
size_t clipn_vision_embed(clipn_ctx *ctx, const float *pixels, int n, int size, const float *pos)
{
    const clipn_config *c = &ctx->model->config;
    const clipn_visual *v = &ctx->model->visual;
    const int P = c->patch_size, W = c->vision_width, G = size / P;
    const size_t GG = (size_t)G * G, T = GG + 1, patch_len = 3 * (size_t)P * P;
    float *patches = ctx->big, *x = ctx->x, *emb = ctx->h;

    /* im2col: one row per patch, columns in conv1's (channel, ky, kx) order */
    for (int i = 0; i < n; i++) {
        const float *img = pixels + (size_t)i * 3 * size * size;
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                float *row = patches + ((size_t)i * GG + (size_t)gy * G + gx) * patch_len;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < P; ky++)
                        memcpy(row + ((size_t)ch * P + ky) * P,
                               img + ((size_t)ch * size + (size_t)gy * P + ky) * size +
                                   (size_t)gx * P,
                               (size_t)P * sizeof(float));
            }
    }
    clipn_linear_forward(&v->patch_embed, patches, (int)(n * GG), emb, CLIPN_EPI_NONE);

    for (int i = 0; i < n; i++) {
        float *seq = x + (size_t)i * T * W;
        for (int k = 0; k < W; k++)
            seq[k] = v->class_embedding[k] + pos[k];
        for (size_t p = 0; p < GG; p++) {
            const float *e = emb + ((size_t)i * GG + p) * W, *pe = pos + (p + 1) * W;
            float *dst = seq + (p + 1) * W;
            for (int k = 0; k < W; k++)
                dst[k] = e[k] + pe[k];
        }
        ctx->seq_len[i] = (int)T;
    }
    clipn_layernorm(x, x, (int)(n * T), W, v->ln_pre_weight, v->ln_pre_bias, c->ln_eps);
    return T;
}

/* ln_post of each image's class token (row i * T of ctx->x) @ proj -> out [n, E]. */
void clipn_vision_pool(clipn_ctx *ctx, int n, size_t T, float *out)
{
    const clipn_config *c = &ctx->model->config;
    const clipn_visual *v = &ctx->model->visual;
    const size_t W = (size_t)c->vision_width;
    for (int i = 0; i < n; i++)
        clipn_layernorm(ctx->x + (size_t)i * T * W, ctx->pooled + (size_t)i * W, 1, (int)W,
                        v->ln_post_weight, v->ln_post_bias, c->ln_eps);
    clipn_linear_forward(&v->proj_t, ctx->pooled, n, out, CLIPN_EPI_NONE);
}

/* n images [n, 3, size, size] -> out [n, E]. pos: [(size/P)^2 + 1, W]. Scratch must fit.
 * Only the class tokens are pooled, so the last block runs out_proj and the MLP on those
 * n rows (keys and values still come from every row): 1/T of that block's work. */
static void vision_forward(clipn_ctx *ctx, const float *pixels, int n, int size,
                           const float *pos, float *out)
{
    const size_t T = clipn_vision_embed(ctx, pixels, n, size, pos);
    for (int i = 0; i < n; i++)
        ctx->class_rows[i] = (int)(i * T);
    const clipn_row_plan plan = {.rows = (int)(n * T), .n_seq = n, .seq_len = ctx->seq_len,
                                 .keep = ctx->class_rows, .n_keep = n};
    clipn_transformer_forward(ctx, &ctx->model->visual.transformer, ctx->x, &plan);
    clipn_vision_pool(ctx, n, 1, out); /* class rows now 0..n-1 */
}

static int fits(const clipn_scratch_sizes *need, const clipn_scratch_sizes *cap)
{
    return need->x <= cap->x && need->big <= cap->big && need->attn <= cap->attn &&
           need->pooled <= cap->pooled;
}

static clipn_status check_args(clipn_ctx *ctx, const float *pixels, int n, const float *out,
                               const char *fn, clipn_error *err)
{
    if (!ctx || !pixels || !out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: ctx, pixels and out are required", fn);
    if (n < 1)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: n = %d, need at least 1 image", fn, n);
    return CLIPN_OK;
}

clipn_status clipn_encode_image(clipn_ctx *ctx, const float *pixels, int n, float *out,
                                clipn_error *err)
{
    clipn_status s = check_args(ctx, pixels, n, out, "clipn_encode_image", err);
    if (s != CLIPN_OK)
        return s;
    const clipn_config *c = &ctx->model->config;
    const size_t per_image = 3 * (size_t)c->image_size * c->image_size;
    const int saved = clipn_ctx_enter(ctx);
    for (int done = 0; done < n; done += ctx->max_batch) {
        const int k = n - done < ctx->max_batch ? n - done : ctx->max_batch;
        vision_forward(ctx, pixels + (size_t)done * per_image, k, c->image_size,
                       ctx->model->visual.positional_embedding,
                       out + (size_t)done * c->embed_dim);
    }
    clipn_ctx_leave(saved);
    return CLIPN_OK;
}

clipn_status clipn_encode_image_sized(clipn_ctx *ctx, const float *pixels, int n, int size,
                                      float *out, clipn_error *err)
{
    static const char fn[] = "clipn_encode_image_sized";
    clipn_status s = check_args(ctx, pixels, n, out, fn, err);
    if (s != CLIPN_OK)
        return s;
    const clipn_config *c = &ctx->model->config;
    if (size == c->image_size)
        return clipn_encode_image(ctx, pixels, n, out, err);
    const int P = c->patch_size, W = c->vision_width;
    if (size < P || size % P != 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG,
                          "%s: size %d is not a positive multiple of patch_size %d", fn, size, P);
    const int G = size / P, G0 = c->image_size / P;
    if (G > MAX_SIZED_GRID)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: size %d gives a %dx%d patch grid, more than "
                          "%dx%d", fn, size, G, G, MAX_SIZED_GRID, MAX_SIZED_GRID);

    /* position table: class row unchanged, the grid resized bicubically (cached per size) */
    const size_t pos_floats = ((size_t)G * G + 1) * W;
    if (ctx->pos_sized_size != size) {
        if (pos_floats > ctx->pos_sized_floats) {
            float *p = realloc(ctx->pos_sized, pos_floats * sizeof(float));
            if (!p)
                return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", fn);
            ctx->pos_sized = p;
            ctx->pos_sized_floats = pos_floats;
        }
        const float *pos0 = ctx->model->visual.positional_embedding;
        memcpy(ctx->pos_sized, pos0, (size_t)W * sizeof(float));
        clipn_bicubic_grid(pos0 + W, G0, ctx->pos_sized + W, G, W);
        ctx->pos_sized_size = size;
    }

    /* as many images per forward as the scratch holds; grow it if not even one fits */
    clipn_scratch_sizes need = {0};
    if (!clipn_vision_need(ctx->model, 1, size, &need))
        return clipn_fail(err, CLIPN_E_LIMIT, "%s: scratch size overflows", fn);
    if (!fits(&need, &ctx->cap) && (s = clipn_ctx_reserve(ctx, &need, err)) != CLIPN_OK)
        return s;
    int batch = n < ctx->max_batch ? n : ctx->max_batch;
    for (; batch > 1; batch--) {
        clipn_scratch_sizes nb = {0};
        if (clipn_vision_need(ctx->model, (size_t)batch, size, &nb) && fits(&nb, &ctx->cap))
            break;
    }
    const size_t per_image = 3 * (size_t)size * size;
    const int saved = clipn_ctx_enter(ctx);
    for (int done = 0; done < n; done += batch) {
        const int k = n - done < batch ? n - done : batch;
        vision_forward(ctx, pixels + (size_t)done * per_image, k, size, ctx->pos_sized,
                       out + (size_t)done * c->embed_dim);
    }
    clipn_ctx_leave(saved);
    return CLIPN_OK;
}
