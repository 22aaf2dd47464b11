/* Inference contexts: the scratch arena, allocated once per context and sized for
 * max_batch images or prompts (the transformer itself: lib/nn/transformer.c). */
#include "internal.h"
#include "kernels_control.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_BATCH 8
#define MAX_MAX_BATCH 4096
#define ALIGN_FLOATS 16 /* 64-byte alignment of every sub-buffer */

/* a * b, or 0 with *ok cleared on overflow (so a chain of products needs one check). */
size_t clipn_mul_size(size_t a, size_t b, int *ok)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) {
        *ok = 0;
        return 0;
    }
    return r;
}

static size_t add_aligned(size_t total, size_t n, int *ok)
{
    size_t r, padded;
    if (__builtin_add_overflow(n, (size_t)ALIGN_FLOATS - 1, &padded) ||
        __builtin_add_overflow(total, padded / ALIGN_FLOATS * ALIGN_FLOATS, &r)) {
        *ok = 0;
        return 0;
    }
    return r;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Carve the arena into its buffers (sizes already validated). */
static void arena_layout(clipn_ctx *ctx)
{
    float *p = ctx->scratch;
    int ok = 1;
    size_t off = 0;
    ctx->x = p + off;
    off = add_aligned(off, ctx->cap.x, &ok);
    ctx->h = p + off;
    off = add_aligned(off, ctx->cap.x, &ok);
    ctx->big = p + off;
    off = add_aligned(off, ctx->cap.big, &ok);
    ctx->attn = p + off;
    off = add_aligned(off, ctx->cap.attn, &ok);
    ctx->pooled = p + off;
}

clipn_status clipn_ctx_reserve(clipn_ctx *ctx, const clipn_scratch_sizes *need,
                               clipn_error *err)
{
    if (need->x <= ctx->cap.x && need->big <= ctx->cap.big && need->attn <= ctx->cap.attn &&
        need->pooled <= ctx->cap.pooled && ctx->scratch)
        return CLIPN_OK;
    clipn_scratch_sizes cap = {
        .x = max_size(need->x, ctx->cap.x), .big = max_size(need->big, ctx->cap.big),
        .attn = max_size(need->attn, ctx->cap.attn),
        .pooled = max_size(need->pooled, ctx->cap.pooled),
    };
    int ok = 1;
    size_t total = 0;
    total = add_aligned(total, cap.x, &ok);   /* x: residual stream */
    total = add_aligned(total, cap.x, &ok);   /* h: normalised rows / attention output */
    total = add_aligned(total, cap.big, &ok); /* big: qkv, mlp hidden, patches */
    total = add_aligned(total, cap.attn, &ok);
    total = add_aligned(total, cap.pooled, &ok);
    size_t bytes = clipn_mul_size(total, sizeof(float), &ok);
    if (!ok || total == 0)
        return clipn_fail(err, CLIPN_E_LIMIT, "scratch size overflows size_t");
    float *p = aligned_alloc(64, bytes); /* total is a multiple of 16 floats */
    if (!p)
        return clipn_fail(err, CLIPN_E_NOMEM, "cannot allocate %zu bytes of scratch", bytes);
    free(ctx->scratch);
    ctx->scratch = p;
    ctx->scratch_floats = total;
    ctx->cap = cap;
    arena_layout(ctx);
    return CLIPN_OK;
}

/* Scratch for n sequences of L tokens through a transformer of width W, hidden M. */
static int transformer_need(size_t n, size_t L, const clipn_transformer *t,
                            clipn_scratch_sizes *need)
{
    int ok = 1;
    const size_t rows = clipn_mul_size(n, L, &ok);
    if (rows > INT32_MAX) /* the kernels count rows in int */
        ok = 0;
    const size_t wide = max_size(3 * (size_t)t->width, (size_t)t->mlp_width);
    need->x = max_size(need->x, clipn_mul_size(rows, (size_t)t->width, &ok));
    need->big = max_size(need->big, clipn_mul_size(rows, wide, &ok));
    size_t attn = clipn_attention_scratch_floats((int)L, t->width, t->heads);
    if (attn == 0)
        ok = 0;
    need->attn = max_size(need->attn, attn);
    need->pooled = max_size(need->pooled, clipn_mul_size(n, (size_t)t->width, &ok));
    return ok;
}

int clipn_vision_need(const clipn_model *m, size_t n, int size, clipn_scratch_sizes *need)
{
    const clipn_config *c = &m->config;
    const size_t grid = (size_t)(size / c->patch_size);
    const size_t patch_len = 3 * (size_t)c->patch_size * (size_t)c->patch_size;
    int ok = 1;
    const size_t tokens = clipn_mul_size(grid, grid, &ok) + 1;
    if (!ok || tokens > INT32_MAX)
        return 0;
    const size_t patch_floats =
        clipn_mul_size(clipn_mul_size(n, tokens - 1, &ok), patch_len, &ok);
    need->big = max_size(need->big, patch_floats);
    return transformer_need(n, tokens, &m->visual.transformer, need) && ok;
}

clipn_status clipn_ctx_new(const clipn_model *model, const clipn_ctx_opts *opts,
                           clipn_ctx **out, clipn_error *err)
{
    if (out)
        *out = NULL;
    if (!model || !out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_ctx_new: model and out are required");
    const int max_batch = opts && opts->max_batch ? opts->max_batch : DEFAULT_MAX_BATCH;
    if (max_batch < 1)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_ctx_new: max_batch %d < 1", max_batch);
    if (max_batch > MAX_MAX_BATCH)
        return clipn_fail(err, CLIPN_E_LIMIT, "clipn_ctx_new: max_batch %d exceeds the limit %d",
                          max_batch, MAX_MAX_BATCH);
    if (opts && opts->threads < 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_ctx_new: threads %d < 0",
                          opts->threads);
    clipn_kernels_init();

    const clipn_config *c = &model->config;
    clipn_scratch_sizes need = {0};
    int ok = clipn_vision_need(model, (size_t)max_batch, c->image_size, &need);
    ok = ok && clipn_text_need(model, (size_t)max_batch,
                               (size_t)max_batch * (size_t)c->context_length, &need);
    if (!ok)
        return clipn_fail(err, CLIPN_E_LIMIT, "clipn_ctx_new: scratch for max_batch %d "
                          "overflows", max_batch);

    clipn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return clipn_fail(err, CLIPN_E_NOMEM, "clipn_ctx_new: out of memory");
    ctx->model = model;
    ctx->max_batch = max_batch;
    ctx->threads = opts ? opts->threads : 0;
    ctx->seq_len = calloc((size_t)max_batch, sizeof *ctx->seq_len);
    ctx->class_rows = calloc((size_t)max_batch, sizeof *ctx->class_rows);
    clipn_status s = ctx->seq_len && ctx->class_rows
                         ? clipn_ctx_reserve(ctx, &need, err)
                         : clipn_fail(err, CLIPN_E_NOMEM, "clipn_ctx_new: out of memory");
    if (s == CLIPN_OK)
        s = clipn_text_plan_reserve(ctx, max_batch, err);
    if (s == CLIPN_OK) { /* pool workers and per-thread GEMM blocks now, not in an encode */
        const int saved = clipn_ctx_enter(ctx);
        clipn_kernels_warm();
        clipn_ctx_leave(saved);
    }
    if (s != CLIPN_OK) {
        clipn_ctx_free(ctx);
        return s;
    }
    *out = ctx;
    return CLIPN_OK;
}

const clipn_model *clipn_ctx_model(const clipn_ctx *ctx) { return ctx ? ctx->model : NULL; }

void clipn_ctx_free(clipn_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->tokenizer)
        clipn_tokenizer_free(ctx->tokenizer);
    free(ctx->scratch);
    free(ctx->pos_sized);
    clipn_vision_local_free(ctx);
    free(ctx->seq_len);
    free(ctx->class_rows);
    free(ctx->text_prompts);
    free(ctx->text_paths);
    free(ctx->text_ends);
    free(ctx);
}

int clipn_ctx_enter(const clipn_ctx *ctx) { return clipn_kernels_limit_threads(ctx->threads); }
void clipn_ctx_leave(int saved) { clipn_kernels_limit_threads(saved); }

/* ---- per-thread scratch for clipn_score* (no context): one block per thread */
typedef struct thread_block {
    size_t bytes;
    _Alignas(64) unsigned char data[];
} thread_block;

static pthread_key_t block_key;
static int block_key_ok;
static pthread_once_t block_once = PTHREAD_ONCE_INIT;

static void make_block_key(void) { block_key_ok = pthread_key_create(&block_key, free) == 0; }

void *clipn_thread_scratch(size_t bytes)
{
    pthread_once(&block_once, make_block_key);
    if (!block_key_ok)
        return NULL;
    thread_block *b = pthread_getspecific(block_key);
    if (b && b->bytes >= bytes)
        return b->data;
    const size_t round = (bytes + 63) / 64 * 64;
    if (round < bytes || round > SIZE_MAX - sizeof *b - 64)
        return NULL;
    thread_block *nb = aligned_alloc(64, (sizeof *nb + round + 63) / 64 * 64);
    if (!nb || pthread_setspecific(block_key, nb) != 0) {
        free(nb);
        return NULL;
    }
    free(b);
    nb->bytes = round;
    return nb->data;
}
