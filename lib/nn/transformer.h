/* The pre-norm residual block and the layer loop, shared by the image tower and both text
 * towers (lib/nn/transformer.c). A tower supplies its embeddings in x and a row plan saying
 * which rows attend to which; the block is the same for everyone:
 *
 *   h = ln_1(x); qkv = in_proj(h)                 clipn_block_qkv
 *   h = attention(qkv) per the plan               clipn_block_attend
 *   x += out_proj(h)                              clipn_block_out_proj
 *   x += c_proj(act(c_fc(ln_2(x))))               clipn_block_mlp
 *
 * The sub-steps are exposed so that a variant of one block (e.g. GL-MCM's value path on the
 * last image block: v = x + out_proj(v-part of qkv); v += mlp(ln_2(v))) is a few calls,
 * not a fourth copy of the block. Private to lib/. */
#ifndef CLIPN_NN_TRANSFORMER_H
#define CLIPN_NN_TRANSFORMER_H

#include "internal.h"

/* Which rows attend to which, and which rows the last layer must produce. */
typedef struct clipn_row_plan {
    int rows;                  /* rows of x the layers run over */
    int causal;                /* position i attends to j <= i */
    /* Attention groups: n_seq sequences of seq_len[s] contiguous rows, stacked ... */
    int n_seq;
    const int *seq_len;
    /* ... or, when attend is set, the tower's own routine (the text tower's shared
     * prefixes): qkv [rows, 3W] -> out [rows, W]. */
    void (*attend)(const struct clipn_row_plan *plan, const clipn_transformer *t,
                   const float *qkv, float *out, float *attn_scratch);
    void *user;                /* for attend */
    /* The last layer needs every row's keys and values but only these rows' outputs:
     * keep[u] (increasing) is moved to row u and only those n_keep rows go through
     * out_proj and the MLP (also with 0 layers). keep = NULL: every row. */
    const int *keep;
    int n_keep;
} clipn_row_plan;

/* GELU or QuickGELU as the model's config says, as a GEMM epilogue. */
clipn_epilogue clipn_mlp_epilogue(const clipn_config *c);

/* h = ln_1(x) [rows, W]; qkv = in_proj(h) [rows, 3W] (q | k | v per row). */
void clipn_block_qkv(const clipn_ctx *ctx, const clipn_block *b, int W, const float *x,
                     int rows, float *h, float *qkv);
/* out [plan->rows, W] = multi-head attention of qkv per the plan (scratch: ctx->attn). */
void clipn_block_attend(const clipn_ctx *ctx, const clipn_transformer *t,
                        const clipn_row_plan *plan, const float *qkv, float *out);
/* x [rows, W] += out_proj(a) */
void clipn_block_out_proj(const clipn_block *b, const float *a, int rows, float *x);
/* x [rows, W] += c_proj(act(c_fc(ln_2(x)))); h [rows, W] and hidden [rows, mlp_width] are
 * scratch. */
void clipn_block_mlp(const clipn_ctx *ctx, const clipn_block *b, int W, float *x, int rows,
                     float *h, float *hidden);

/* Layers [first, last) of t over x [plan->rows, W], in place; scratch ctx->h and ctx->big
 * (qkv, then the MLP hidden). When last == t->layers the plan's keep compaction is applied
 * in the last layer, so x then holds plan->n_keep rows. */
void clipn_transformer_layers(const clipn_ctx *ctx, const clipn_transformer *t, float *x,
                              const clipn_row_plan *plan, int first, int last);
/* All layers: clipn_transformer_layers(ctx, t, x, plan, 0, t->layers). */
void clipn_transformer_forward(const clipn_ctx *ctx, const clipn_transformer *t, float *x,
                               const clipn_row_plan *plan);

#endif
