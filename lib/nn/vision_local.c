/* GL-MCM local features (Miyai et al. 2023, official AtsuMiyai/GL-MCM clip/model.py).
 *
 * GL-MCM takes its local features from the value path of the last image block, a path
 * without attention: with x the input of the last block,
 *     v = out_proj(V(ln_1(x))) + x,   v = v + mlp(ln_2(v)),   local = ln_post(v) @ proj
 * where V is the value third of in_proj. Every row is computed alone (no token mixing),
 * so only the patch rows are run. The global feature comes from the same forward, so
 * both cost one tower pass plus V, out_proj and the MLP of one block on the patch rows. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

void clipn_vision_local_free(clipn_ctx *ctx)
{
    free(ctx->local_x);
    ctx->local_x = NULL;
    ctx->local_x_floats = 0;
    if (ctx->local_value_ready)
        clipn_linear_release(&ctx->local_value);
    ctx->local_value_ready = 0;
}

/* The last block's value rows of in_proj ([2W, 3W) of [3W, W]) as a layer of their own,
 * packed once per ctx for the kernels. */
static clipn_status prepare_value_layer(clipn_ctx *ctx, const clipn_block *last, int W,
                                        clipn_error *err)
{
    if (ctx->local_value_ready)
        return CLIPN_OK;
    const clipn_linear *in = &last->attn_in_proj;
    clipn_linear *v = &ctx->local_value;
    memset(v, 0, sizeof *v);
    v->n_out = W;
    v->n_in = W;
    v->weight = in->weight + 2 * (size_t)W * W;
    v->bias = in->bias ? in->bias + 2 * (size_t)W : NULL;
    if (clipn_linear_prepare(v) != 0)
        return clipn_fail(err, CLIPN_E_NOMEM, "clipn_encode_image_local: out of memory "
                          "packing the value layer");
    ctx->local_value_ready = 1;
    return CLIPN_OK;
}

/* x [rows, W] (patch rows of the last block's input) -> ln_post(value path(x)) in ctx->h. */
static void value_path(clipn_ctx *ctx, const clipn_block *b, float *x, int rows)
{
    const clipn_config *c = &ctx->model->config;
    const clipn_visual *vis = &ctx->model->visual;
    const int W = c->vision_width;
    const clipn_epilogue act =
        c->activation == CLIPN_ACT_QUICKGELU ? CLIPN_EPI_QUICKGELU : CLIPN_EPI_GELU;
    float *h = ctx->h, *big = ctx->big;
    clipn_layernorm(x, h, rows, W, b->ln_1_weight, b->ln_1_bias, c->ln_eps);
    clipn_linear_forward(&ctx->local_value, h, rows, big, CLIPN_EPI_NONE);
    clipn_linear_forward(&b->attn_out_proj, big, rows, x, CLIPN_EPI_RESIDUAL);
    clipn_layernorm(x, h, rows, W, b->ln_2_weight, b->ln_2_bias, c->ln_eps);
    clipn_linear_forward(&b->mlp_c_fc, h, rows, big, act);
    clipn_linear_forward(&b->mlp_c_proj, big, rows, x, CLIPN_EPI_RESIDUAL);
    clipn_layernorm(x, h, rows, W, vis->ln_post_weight, vis->ln_post_bias, c->ln_eps);
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
    const clipn_block *last = &vis->transformer.resblocks[L - 1];
    clipn_status st = prepare_value_layer(ctx, last, W, err);
    if (st != CLIPN_OK)
        return st;
    const size_t need = (size_t)ctx->max_batch * GG * (size_t)W;
    if (ctx->local_x_floats < need) {
        float *p = realloc(ctx->local_x, need * sizeof *p);
        if (!p)
            return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for %zu floats", fn, need);
        ctx->local_x = p;
        ctx->local_x_floats = need;
    }
    /* the blocks before the last, then the last (its input kept for the value path) */
    clipn_transformer first = vis->transformer, final = vis->transformer;
    first.layers = L - 1;
    final.resblocks += L - 1;
    final.layers = 1;
    const size_t per_image = 3 * (size_t)S * S, E = (size_t)c->embed_dim;
    for (int done = 0; done < n; done += ctx->max_batch) {
        const int k = n - done < ctx->max_batch ? n - done : ctx->max_batch;
        clipn_vision_embed(ctx, pixels + (size_t)done * per_image, k, S,
                           vis->positional_embedding);
        clipn_transformer_forward(ctx, &first, ctx->x, k, ctx->seq_len, 0);
        for (int i = 0; i < k; i++) /* patch rows only: row 0 of each image is the class */
            memcpy(ctx->local_x + (size_t)i * GG * W, ctx->x + ((size_t)i * T + 1) * W,
                   GG * (size_t)W * sizeof(float));
        clipn_transformer_forward(ctx, &final, ctx->x, k, ctx->seq_len, 0);
        clipn_vision_pool(ctx, k, T, global + (size_t)done * E);
        value_path(ctx, last, ctx->local_x, (int)(k * GG));
        clipn_linear_forward(&vis->proj_t, ctx->h, (int)(k * GG), local + (size_t)done * GG * E,
                             CLIPN_EPI_NONE);
    }
    return CLIPN_OK;
}
