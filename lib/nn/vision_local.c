/* GL-MCM local features (Miyai et al. 2023, official AtsuMiyai/GL-MCM clip/model.py).
 *
 * GL-MCM takes its local features from the value path of the last image block, a path
 * without attention: with x the input of the last block,
 *     v = x + out_proj(V(ln_1(x))),   v += mlp(ln_2(v)),   local = ln_post(v) @ proj
 * where V(ln_1(x)) is the value third of the block's qkv. Rows are independent there, so
 * only the patch rows are run. The global feature needs the last block's output on the
 * class rows only, so there out_proj and the MLP run on one row per image: the value path
 * on the patch rows replaces the normal block's work on them, and both features together
 * cost about one ordinary encode (plus the local projection). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

void clipn_vision_local_free(clipn_ctx *ctx)
{
    free(ctx->local_x);
    ctx->local_x = NULL;
    ctx->local_x_floats = 0;
}

/* Last block of k images of T tokens (x [k*T, W] its input): the class rows' output into
 * x rows 0..k-1, and the patch rows' value path ln_post(v) into ctx->h [k*(T-1), W]. */
static void last_block(clipn_ctx *ctx, const clipn_transformer *t, const clipn_block *b,
                       int k, size_t T)
{
    const clipn_config *c = &ctx->model->config;
    const clipn_visual *vis = &ctx->model->visual;
    const size_t W = (size_t)c->vision_width, GG = T - 1;
    const int rows = (int)(k * T), patches = (int)(k * GG);
    float *x = ctx->x, *h = ctx->h, *qkv = ctx->big;
    float *v = ctx->local_x, *vx = ctx->local_x + (size_t)patches * W;

    clipn_block_qkv(ctx, b, (int)W, x, rows, h, qkv);
    for (int i = 0; i < k; i++) /* patch rows: V(ln_1(x)) and x */
        for (size_t p = 0; p < GG; p++) {
            const size_t r = (size_t)i * T + 1 + p, o = (size_t)i * GG + p;
            memcpy(v + o * W, qkv + r * 3 * W + 2 * W, W * sizeof *v);
            memcpy(vx + o * W, x + r * W, W * sizeof *vx);
        }
    const clipn_row_plan plan = {.rows = rows, .n_seq = k, .seq_len = ctx->seq_len};
    clipn_block_attend(ctx, t, &plan, qkv, h);
    for (int i = 1; i < k; i++) { /* class rows to the front (row i*T -> i, i*T > i) */
        memcpy(x + (size_t)i * W, x + (size_t)i * T * W, W * sizeof *x);
        memcpy(h + (size_t)i * W, h + (size_t)i * T * W, W * sizeof *h);
    }
    clipn_block_out_proj(b, h, k, x);
    clipn_block_mlp(ctx, b, (int)W, x, k, h, qkv);

    clipn_block_out_proj(b, v, patches, vx); /* vx = x + out_proj(V) */
    clipn_block_mlp(ctx, b, (int)W, vx, patches, h, qkv);
    clipn_layernorm(vx, h, patches, (int)W, vis->ln_post_weight, vis->ln_post_bias, c->ln_eps);
}

clipn_status clipn_encode_image_local(clipn_ctx *ctx, const float *pixels, int n,
                                      float *global, float *local, clipn_error *err)
{
    static const char fn[] = "clipn_encode_image_local";
    if (!ctx || !pixels || !global || !local)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: ctx, pixels, global and local are "
                          "required", fn);
    if (n < 1)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: n = %d, need at least 1 image", fn, n);
    const clipn_config *c = &ctx->model->config;
    const clipn_visual *vis = &ctx->model->visual;
    const int W = c->vision_width, L = vis->transformer.layers, S = c->image_size;
    const size_t G = (size_t)(S / c->patch_size), GG = G * G, T = GG + 1;
    const size_t need = 2 * (size_t)ctx->max_batch * GG * (size_t)W;
    if (ctx->local_x_floats < need) {
        float *p = realloc(ctx->local_x, need * sizeof *p);
        if (!p)
            return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for %zu floats", fn, need);
        ctx->local_x = p;
        ctx->local_x_floats = need;
    }
    const size_t per_image = 3 * (size_t)S * S, E = (size_t)c->embed_dim;
    const int saved = clipn_ctx_enter(ctx);
    for (int done = 0; done < n; done += ctx->max_batch) {
        const int k = n - done < ctx->max_batch ? n - done : ctx->max_batch;
        clipn_vision_embed(ctx, pixels + (size_t)done * per_image, k, S,
                           vis->positional_embedding);
        const clipn_row_plan plan = {.rows = (int)(k * T), .n_seq = k, .seq_len = ctx->seq_len};
        clipn_transformer_layers(ctx, &vis->transformer, ctx->x, &plan, 0, L - 1);
        last_block(ctx, &vis->transformer, &vis->transformer.resblocks[L - 1], k, T);
        clipn_linear_forward(&vis->proj_t, ctx->h, (int)(k * GG), local + (size_t)done * GG * E,
                             CLIPN_EPI_NONE);
        clipn_vision_pool(ctx, k, 1, global + (size_t)done * E); /* class rows now 0..k-1 */
    }
    clipn_ctx_leave(saved);
    return CLIPN_OK;
}
