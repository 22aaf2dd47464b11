/* The text towers (CLIP.encode_text, mode "yes" and "no"):
 * token_embedding[ids] + positional_embedding (+ mean of prompt_no) -> causal transformer
 * -> ln_final at the argmax(ids) row -> @ text_projection.
 *
 * Attention is causal, so a position's hidden state depends only on the tokens at or before
 * it, in every layer:
 * - each prompt runs only its first eot+1 positions (rows after the pooled one never
 *   influence it);
 * - prompts of a batch that start with the same tokens share those rows: the batch is a
 *   trie of token prefixes and every distinct prefix row is computed once ("a photo of a"
 *   once for 1000 class names). prompt_no_mean depends on the position only, so the no
 *   tower shares prefixes too. Identical prompts share every row.
 * Execution stays layer-major, so each GEMM sees all distinct rows of the batch at once.
 * A prompt's attention runs over its whole path (shared prefix rows gathered next to its
 * own rows), which is exactly the input it would have alone; only the rows it owns are
 * kept. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
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

void clipn_token_embedding_row(const clipn_text_tower *t, int id, int W, float *dst)
{
    const size_t w = (size_t)W;
    if (!t->token_embedding_q) {
        memcpy(dst, t->token_embedding + (size_t)id * w, w * sizeof *dst);
        return;
    }
    const size_t g = (size_t)t->token_embedding_group, groups = (w + g - 1) / g;
    const int8_t *q = t->token_embedding_q + (size_t)id * w;
    const float *scale = t->token_embedding_scale + (size_t)id * groups;
    for (size_t i = 0; i < w; i++)
        dst[i] = (float)q[i] * scale[i / g];
}

/* Embedding rows looked up between two hand-backs of their pages: bounds what a varied
 * prompt set keeps resident (~54 KB per row on the reference kernel, 2 x 14 MB) while
 * frequent tokens refault once per 256 rows instead of once per call. */
#define EMBED_DROP_ROWS 256

/* One prompt of a batch, sorted by token sequence so that prompts sharing a prefix are
 * neighbours (the longest prefix a prompt shares with any earlier one is the one it shares
 * with its predecessor). */
typedef struct text_prompt {
    const int32_t *tok;
    int len;     /* positions run: pool index + 1 */
    int index;   /* position in the caller's batch */
    int shared;  /* leading positions whose rows belong to an earlier prompt */
    int *path;   /* [len] row of each position */
    int feature; /* row of its projected feature (identical prompts share one) */
} text_prompt;

static int compare_prompts(const void *pa, const void *pb)
{
    const text_prompt *a = pa, *b = pb;
    const int n = a->len < b->len ? a->len : b->len;
    for (int p = 0; p < n; p++)
        if (a->tok[p] != b->tok[p])
            return a->tok[p] < b->tok[p] ? -1 : 1;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index; /* deterministic order */
}

/* Bottom-up merge sort of pr[0, n) with tmp[n] (qsort may allocate, and encode calls
 * must not). compare_prompts is a total order, so the result is qsort's. */
static void sort_prompts(text_prompt *pr, text_prompt *tmp, int n)
{
    text_prompt *src = pr, *dst = tmp;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            const int mid = lo + width < n ? lo + width : n;
            const int hi = lo + 2 * width < n ? lo + 2 * width : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = compare_prompts(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        text_prompt *t = src;
        src = dst;
        dst = t;
    }
    if (src != pr)
        memcpy(pr, src, (size_t)n * sizeof *pr);
}

/* Sort the prompts and give every distinct (prefix, position) a row; returns the row
 * count. share = 0 gives each prompt its own rows (for benchmarks and tests). */
static int plan_rows(text_prompt *pr, text_prompt *tmp, int n, int share)
{
    if (share)
        sort_prompts(pr, tmp, n);
    int rows = 0;
    for (int k = 0; k < n; k++) {
        int shared = 0;
        if (share && k > 0) {
            const text_prompt *prev = &pr[k - 1];
            const int lim = prev->len < pr[k].len ? prev->len : pr[k].len;
            while (shared < lim && prev->tok[shared] == pr[k].tok[shared])
                shared++;
            memcpy(pr[k].path, prev->path, (size_t)shared * sizeof *pr[k].path);
        }
        pr[k].shared = shared;
        for (int p = shared; p < pr[k].len; p++)
            pr[k].path[p] = rows++;
    }
    return rows;
}

/* The text tower's attention (clipn_row_plan.attend): a prompt attends over its whole
 * path, shared prefix rows gathered next to its own rows, and keeps only the rows it owns.
 * qkv_path [C, 3W] and out_path [C, W] hold one prompt's gathered path. */
typedef struct text_paths {
    const text_prompt *pr;
    int n;
    float *qkv_path, *out_path;
} text_paths;

static void attend_paths(const clipn_row_plan *plan, const clipn_transformer *t,
                         const float *qkv, float *out, float *attn_scratch)
{
    const text_paths *tp = plan->user;
    const size_t W = (size_t)t->width;
    for (int k = 0; k < tp->n; k++) {
        const text_prompt *q = &tp->pr[k];
        if (q->shared == q->len)
            continue; /* identical to its predecessor: owns no row */
        if (q->shared == 0) { /* rows are contiguous: attend in place */
            const size_t r0 = (size_t)q->path[0];
            clipn_attention(qkv + r0 * 3 * W, out + r0 * W, q->len, (int)W, t->heads, 1,
                            attn_scratch);
            continue;
        }
        for (int p = 0; p < q->len; p++)
            memcpy(tp->qkv_path + (size_t)p * 3 * W, qkv + (size_t)q->path[p] * 3 * W,
                   3 * W * sizeof *qkv);
        clipn_attention(tp->qkv_path, tp->out_path, q->len, (int)W, t->heads, 1, attn_scratch);
        memcpy(out + (size_t)q->path[q->shared] * W, tp->out_path + (size_t)q->shared * W,
               (size_t)(q->len - q->shared) * W * sizeof *out); /* own rows: contiguous */
    }
}

int clipn_text_need(const clipn_model *m, size_t n, size_t rows, clipn_scratch_sizes *need)
{
    const clipn_config *c = &m->config;
    const size_t W = (size_t)c->text_width, C = (size_t)c->context_length;
    const size_t E = (size_t)c->embed_dim, M = (size_t)c->text_mlp_width;
    int ok = 1;
    /* big holds qkv [rows, 3W] with one gathered path [C, 3W] + [C, W] after it, the MLP
       hidden [rows, M], and at the end the projected features [n, E]. */
    const size_t wide = M > 3 * W ? M : 3 * W;
    const size_t qkv_floats = clipn_mul_size(rows, 3 * W, &ok);
    const size_t path_floats = clipn_mul_size(C, 4 * W, &ok);
    size_t big = clipn_mul_size(rows, wide, &ok);
    if (qkv_floats > SIZE_MAX - path_floats)
        ok = 0;
    else if (qkv_floats + path_floats > big)
        big = qkv_floats + path_floats;
    const size_t out_floats = clipn_mul_size(n, E, &ok);
    if (out_floats > big)
        big = out_floats;
    const size_t attn = clipn_attention_scratch_floats((int)C, (int)W, c->text_heads);
    const size_t x = clipn_mul_size(rows, W, &ok), pooled = clipn_mul_size(n, W, &ok);
    if (!ok || !attn || rows > INT32_MAX)
        return 0;
    if (x > need->x)
        need->x = x;
    if (big > need->big)
        need->big = big;
    if (attn > need->attn)
        need->attn = attn;
    if (pooled > need->pooled)
        need->pooled = pooled;
    return 1;
}

clipn_status clipn_text_plan_reserve(clipn_ctx *ctx, int n, clipn_error *err)
{
    if (n <= ctx->text_cap)
        return CLIPN_OK;
    const size_t C = (size_t)ctx->model->config.context_length;
    int ok = 1;
    const size_t path_ints = clipn_mul_size((size_t)n, C, &ok);
    if (!ok || path_ints > INT32_MAX)
        return clipn_fail(err, CLIPN_E_LIMIT, "text: %d prompts x %zu positions is too many",
                          n, C);
    text_prompt *pr = malloc(2 * (size_t)n * sizeof *pr); /* prompts + the sort's buffer */
    int *paths = malloc(path_ints * sizeof *paths);
    int *ends = malloc((size_t)n * sizeof *ends);
    if (!pr || !paths || !ends) {
        free(pr);
        free(paths);
        free(ends);
        return clipn_fail(err, CLIPN_E_NOMEM, "text: out of memory planning %d prompts", n);
    }
    free(ctx->text_prompts);
    free(ctx->text_paths);
    free(ctx->text_ends);
    ctx->text_prompts = pr;
    ctx->text_paths = paths;
    ctx->text_ends = ends;
    ctx->text_cap = n;
    return CLIPN_OK;
}

/* n prompts of validated ids -> out [n, E], as one shared batch. Up to the context's
 * max_batch it allocates nothing (clipn_ctx_new sized everything for that). */
static clipn_status text_forward(clipn_ctx *ctx, const clipn_text_tower *tw, const int32_t *ids,
                                 int n, int share, float *out, clipn_error *err)
{
    const clipn_config *c = &ctx->model->config;
    const size_t W = (size_t)c->text_width, C = (size_t)c->context_length;
    const size_t E = (size_t)c->embed_dim;
    clipn_status st = clipn_text_plan_reserve(ctx, n, err);
    if (st != CLIPN_OK)
        return st;
    text_prompt *pr = ctx->text_prompts;
    int *paths = ctx->text_paths;
    int *ends = ctx->text_ends; /* distinct pooled rows */
    for (int s = 0; s < n; s++) {
        pr[s].tok = ids + (size_t)s * C;
        pr[s].len = clipn_text_pool_index(pr[s].tok, (int)C) + 1;
        pr[s].index = s;
        pr[s].path = paths + (size_t)s * C;
    }
    const size_t rows = (size_t)plan_rows(pr, pr + n, n, share);
    /* distinct pooled rows in sorted order, increasing (identical prompts are neighbours
       and share one) */
    int distinct = 0;
    for (int k = 0; k < n; k++) {
        const int end = pr[k].path[pr[k].len - 1];
        if (k == 0 || end != ends[distinct - 1])
            ends[distinct++] = end;
        pr[k].feature = distinct - 1;
    }

    clipn_scratch_sizes need = {0};
    if (!clipn_text_need(ctx->model, (size_t)n, rows, &need))
        return clipn_fail(err, CLIPN_E_LIMIT, "text: scratch for %zu rows overflows", rows);
    if ((st = clipn_ctx_reserve(ctx, &need, err)) != CLIPN_OK) /* no-op up to max_batch */
        return st;
    const size_t qkv_floats = rows * 3 * W;

    float *x = ctx->x;
    for (int k = 0; k < n; k++)
        for (int p = pr[k].shared; p < pr[k].len; p++) {
            const float *pe = tw->positional_embedding + (size_t)p * W;
            float *dst = x + (size_t)pr[k].path[p] * W;
            clipn_token_embedding_row(tw, pr[k].tok[p], (int)W, dst);
            for (size_t i = 0; i < W; i++)
                dst[i] += pe[i];
            if (tw->prompt_no_mean) {
                const float *pm = tw->prompt_no_mean + (size_t)p * W;
                for (size_t i = 0; i < W; i++)
                    dst[i] += pm[i];
            }
        }
    /* rows read from the mapping (f32 or int8 in place) fault in whole page-cache folios:
       hand them back every EMBED_DROP_ROWS rows (lib/model/model.h, clipn_model_drop_mapped;
       each call would refault the common tokens every time, ~11 us per row) */
    ctx->text_rows_mapped += (int)(rows < EMBED_DROP_ROWS ? rows : EMBED_DROP_ROWS);
    if (ctx->text_rows_mapped >= EMBED_DROP_ROWS) {
        const size_t V = (size_t)c->vocab_size;
        ctx->text_rows_mapped = 0;
        clipn_model_drop_mapped(ctx->model, ctx->model->text.token_embedding_q
                                              ? (const void *)ctx->model->text.token_embedding_q
                                              : (const void *)ctx->model->text.token_embedding,
                                V * W * (ctx->model->text.token_embedding_q ? 1 : sizeof(float)));
        clipn_model_drop_mapped(ctx->model, ctx->model->text_no.token_embedding_q
                                              ? (const void *)ctx->model->text_no.token_embedding_q
                                              : (const void *)ctx->model->text_no.token_embedding,
                                V * W * (ctx->model->text_no.token_embedding_q ? 1 : sizeof(float)));
    }
    /* the last layer runs out_proj and the MLP on the distinct pooled rows only */
    float *qkv_path = ctx->big + qkv_floats;
    text_paths paths_user = {pr, n, qkv_path, qkv_path + C * 3 * W};
    const clipn_row_plan plan = {.rows = (int)rows, .causal = 1, .attend = attend_paths,
                                 .user = &paths_user, .keep = ends, .n_keep = distinct};
    clipn_transformer_forward(ctx, &tw->transformer, x, &plan);

    /* the pooled rows are now x[0, distinct) */
    clipn_layernorm(x, ctx->pooled, distinct, (int)W, tw->ln_final_weight, tw->ln_final_bias,
                    c->ln_eps);
    float *features = ctx->big;
    clipn_linear_forward(&tw->text_projection_t, ctx->pooled, distinct, features,
                         CLIPN_EPI_NONE);
    for (int k = 0; k < n; k++)
        memcpy(out + (size_t)pr[k].index * E, features + (size_t)pr[k].feature * E,
               E * sizeof *out);
    return CLIPN_OK;
}

static clipn_status check_ids(const clipn_ctx *ctx, const int32_t *ids, int n, const char *fn,
                              clipn_error *err)
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
    return CLIPN_OK;
}

static clipn_status encode(clipn_ctx *ctx, const clipn_text_tower *tw, const int32_t *ids,
                           int n, float *out, const char *fn, clipn_error *err)
{
    const clipn_config *c = &ctx->model->config;
    clipn_status st = check_ids(ctx, ids, n, fn, err);
    const int saved = clipn_ctx_enter(ctx);
    for (int done = 0; st == CLIPN_OK && done < n; done += ctx->max_batch) {
        const int k = n - done < ctx->max_batch ? n - done : ctx->max_batch;
        st = text_forward(ctx, tw, ids + (size_t)done * c->context_length, k, 1,
                          out + (size_t)done * c->embed_dim, err);
    }
    clipn_ctx_leave(saved);
    return st;
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

static clipn_status check_no_tower(const clipn_ctx *ctx, const char *fn, clipn_error *err)
{
    if (!ctx->model->config.has_no_tower)
        return clipn_fail(err, CLIPN_E_UNSUPPORTED,
                          "%s: this model has no \"no\" text tower (a plain CLIP checkpoint); "
                          "only MCM-style scores are available", fn);
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
    if (s == CLIPN_OK)
        s = check_no_tower(ctx, fn, err);
    if (s != CLIPN_OK)
        return s;
    return encode(ctx, &ctx->model->text_no, ids, n, out, fn, err);
}

clipn_status clipn_text_encode_batch(clipn_ctx *ctx, int no_tower, const int32_t *ids, int n,
                                     int share, float *out, clipn_error *err)
{
    static const char fn[] = "clipn_text_encode_batch";
    clipn_status s = check_args(ctx, ids, n, out, fn, err);
    if (s == CLIPN_OK && no_tower)
        s = check_no_tower(ctx, fn, err);
    if (s == CLIPN_OK)
        s = check_ids(ctx, ids, n, fn, err);
    if (s != CLIPN_OK)
        return s;
    const int saved = clipn_ctx_enter(ctx);
    s = text_forward(ctx, no_tower ? &ctx->model->text_no : &ctx->model->text, ids, n, share,
                     out, err);
    clipn_ctx_leave(saved);
    return s;
}
