/* The text towers (CLIP.encode_text, mode "yes" and "no"):
 * token_embedding[ids] + positional_embedding (+ mean of prompt_no) -> causal transformer
 * -> ln_final at the argmax(ids) row -> @ text_projection.
 *
 * Attention is causal, so the rows after a prompt's pooled (EOT) position never influence
 * it: each prompt runs only its first eot+1 positions, stacked without padding. */
#include "internal.h"

#include <string.h>

/* The official pooling: first position holding the largest id. */
int clipn_text_pool_index(const int32_t *ids, int context_length)
{
    int best = 0;
    for (int p = 1; p < context_length; p++)
        if (ids[p] > ids[best])
            best = p;
    return best;
}

/* n <= max_batch prompts of validated ids -> out [n, E]. */
static void text_forward(clipn_ctx *ctx, const clipn_text_tower *tw, const int32_t *ids, int n,
                         float *out)
{
    const clipn_config *c = &ctx->model->config;
    const int W = c->text_width, C = c->context_length;
    float *x = ctx->x;

    size_t row = 0;
    for (int s = 0; s < n; s++) {
        const int32_t *tok = ids + (size_t)s * C;
        const int len = clipn_text_pool_index(tok, C) + 1;
        for (int p = 0; p < len; p++, row++) {
            const float *te = tw->token_embedding + (size_t)tok[p] * W;
            const float *pe = tw->positional_embedding + (size_t)p * W;
            float *dst = x + row * W;
            for (int k = 0; k < W; k++)
                dst[k] = te[k] + pe[k];
            if (tw->prompt_no_mean) {
                const float *pm = tw->prompt_no_mean + (size_t)p * W;
                for (int k = 0; k < W; k++)
                    dst[k] += pm[k];
            }
        }
        ctx->seq_len[s] = len;
    }
    clipn_transformer_forward(ctx, &tw->transformer, x, n, ctx->seq_len, 1);

    row = 0;
    for (int s = 0; s < n; s++) { /* ln_final only on the pooled row (the last one run) */
        row += (size_t)ctx->seq_len[s];
        clipn_layernorm(x + (row - 1) * W, ctx->pooled + (size_t)s * W, 1, W,
                        tw->ln_final_weight, tw->ln_final_bias, c->ln_eps);
    }
    clipn_linear_forward(&tw->text_projection_t, ctx->pooled, n, out, CLIPN_EPI_NONE);
}

static clipn_status encode(clipn_ctx *ctx, const clipn_text_tower *tw, const int32_t *ids,
                           int n, float *out, const char *fn, clipn_error *err)
{
    const clipn_config *c = &ctx->model->config;
    const int C = c->context_length;
    for (int s = 0; s < n; s++)
        for (int p = 0; p < C; p++) {
            const int32_t id = ids[(size_t)s * C + p];
            if (id < 0 || id >= c->vocab_size)
                return clipn_fail(err, CLIPN_E_INVALID_ARG,
                                  "%s: ids[%d][%d] = %d is not in [0, %d)", fn, s, p, (int)id,
                                  c->vocab_size);
        }
    for (int done = 0; done < n; done += ctx->max_batch) {
        const int k = n - done < ctx->max_batch ? n - done : ctx->max_batch;
        text_forward(ctx, tw, ids + (size_t)done * C, k, out + (size_t)done * c->embed_dim);
    }
    return CLIPN_OK;
}

static clipn_status check_args(clipn_ctx *ctx, const int32_t *ids, int n, const float *out,
                               const char *fn, clipn_error *err)
{
    if (!ctx || !ids || !out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: ctx, ids and out are required", fn);
    if (n < 1)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: n = %d, need at least 1 prompt", fn, n);
    return CLIPN_OK;
}

clipn_status clipn_encode_text(clipn_ctx *ctx, const int32_t *ids, int n, float *out,
                               clipn_error *err)
{
    static const char fn[] = "clipn_encode_text";
    clipn_status s = check_args(ctx, ids, n, out, fn, err);
    if (s != CLIPN_OK)
        return s;
    return encode(ctx, &ctx->model->text, ids, n, out, fn, err);
}

clipn_status clipn_encode_no_text(clipn_ctx *ctx, const int32_t *ids, int n, float *out,
                                  clipn_error *err)
{
    static const char fn[] = "clipn_encode_no_text";
    clipn_status s = check_args(ctx, ids, n, out, fn, err);
    if (s != CLIPN_OK)
        return s;
    if (!ctx->model->config.has_no_tower)
        return clipn_fail(err, CLIPN_E_UNSUPPORTED,
                          "%s: this model has no \"no\" text tower (a plain CLIP checkpoint); "
                          "only MCM-style scores are available", fn);
    return encode(ctx, &ctx->model->text_no, ids, n, out, fn, err);
}
