/* The one transformer: the pre-norm residual block and the layer loop (see transformer.h).
 * Towers differ only in their row plans. */
#include "nn/transformer.h"

#include <string.h>

clipn_epilogue clipn_mlp_epilogue(const clipn_config *c)
{
    return c->activation == CLIPN_ACT_QUICKGELU ? CLIPN_EPI_QUICKGELU : CLIPN_EPI_GELU;
}

void clipn_block_qkv(const clipn_ctx *ctx, const clipn_block *b, int W, const float *x,
                     int rows, float *h, float *qkv)
{
    clipn_layernorm(x, h, rows, W, b->ln_1_weight, b->ln_1_bias, ctx->model->config.ln_eps);
    clipn_linear_forward(&b->attn_in_proj, h, rows, qkv, CLIPN_EPI_NONE);
}

void clipn_block_attend(const clipn_ctx *ctx, const clipn_transformer *t,
                        const clipn_row_plan *plan, const float *qkv, float *out)
{
    if (plan->attend) {
        plan->attend(plan, t, qkv, out, ctx->attn);
        return;
    }
    const size_t W = (size_t)t->width;
    size_t row = 0;
    for (int s = 0; s < plan->n_seq; s++) { /* attention never crosses sequences */
        clipn_attention(qkv + row * 3 * W, out + row * W, plan->seq_len[s], (int)W, t->heads,
                        plan->causal, ctx->attn);
        row += (size_t)plan->seq_len[s];
    }
}

void clipn_block_out_proj(const clipn_block *b, const float *a, int rows, float *x)
{
    clipn_linear_forward(&b->attn_out_proj, a, rows, x, CLIPN_EPI_RESIDUAL);
}

void clipn_block_mlp(const clipn_ctx *ctx, const clipn_block *b, int W, float *x, int rows,
                     float *h, float *hidden)
{
    const clipn_config *c = &ctx->model->config;
    clipn_layernorm(x, h, rows, W, b->ln_2_weight, b->ln_2_bias, c->ln_eps);
    clipn_linear_forward(&b->mlp_c_fc, h, rows, hidden, clipn_mlp_epilogue(c));
    clipn_linear_forward(&b->mlp_c_proj, hidden, rows, x, CLIPN_EPI_RESIDUAL);
}

/* Row keep[u] -> row u. keep[] increases, so keep[u] >= u and no source is overwritten
 * before it is read. */
static void compact_rows(float *a, size_t W, const int *keep, int n_keep)
{
    for (int u = 0; u < n_keep; u++)
        if (keep[u] != u)
            memcpy(a + (size_t)u * W, a + (size_t)keep[u] * W, W * sizeof *a);
}

void clipn_transformer_layers(const clipn_ctx *ctx, const clipn_transformer *t, float *x,
                              const clipn_row_plan *plan, int first, int last)
{
    const int W = t->width;
    float *h = ctx->h, *big = ctx->big;
    for (int l = first; l < last; l++) {
        const clipn_block *b = &t->resblocks[l];
        clipn_block_qkv(ctx, b, W, x, plan->rows, h, big);
        clipn_block_attend(ctx, t, plan, big, h);
        int m = plan->rows;
        if (l == t->layers - 1 && plan->keep) {
            compact_rows(x, (size_t)W, plan->keep, plan->n_keep);
            compact_rows(h, (size_t)W, plan->keep, plan->n_keep);
            m = plan->n_keep;
        }
        clipn_block_out_proj(b, h, m, x);
        clipn_block_mlp(ctx, b, W, x, m, h, big);
    }
    if (t->layers == 0 && last == 0 && plan->keep)
        compact_rows(x, (size_t)W, plan->keep, plan->n_keep);
}

void clipn_transformer_forward(const clipn_ctx *ctx, const clipn_transformer *t, float *x,
                               const clipn_row_plan *plan)
{
    clipn_transformer_layers(ctx, t, x, plan, 0, t->layers);
}
