/* The allocation and threads contracts of include/clipn.h ("Contexts: memory and threads").
 *
 * This binary is linked with -Wl,--wrap for malloc, calloc, realloc, aligned_alloc,
 * posix_memalign and pthread_create (Makefile), so every such call made by libclipn.a's
 * objects (and by this file) reaches the counters below; the libraries libclipn uses
 * (OpenBLAS, libjpeg, cJSON) are not counted. Counting is on only around the calls under
 * test, from every thread (pool workers included). */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "../kernels/kernels_control.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

static atomic_int counting;
static atomic_long allocs, threads_started;

static void count(void)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocs, 1);
}

void *__wrap_malloc(size_t n) { count(); return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { count(); return __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { count(); return __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { count(); return __real_aligned_alloc(align, n); }
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    count();
    return __real_posix_memalign(p, align, n);
}
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    atomic_fetch_add(&threads_started, 1);
    return __real_pthread_create(t, a, fn, arg);
}

/* Inside a counted region nothing may call Check (every ck_assert sends a message, which
 * allocates): failures are collected in `failed` and asserted after count_end. */
static int failed;

static long workers_started(void) { return atomic_load(&threads_started); }

static void count_begin(void)
{
    failed = 0;
    atomic_store(&allocs, 0);
    atomic_store(&counting, 1);
}

static long count_end(void)
{
    atomic_store(&counting, 0);
    return atomic_load(&allocs);
}

#define TINY "tests/fixtures/model/tiny_clipn.safetensors"
/* fp32, and INT8 weights (their own kernels and per-thread blocks) */
static const char *const MODELS[] = {TINY, "tests/fixtures/model/tiny_clipn_int8.safetensors"};

static clipn_model *model;
static clipn_ctx *ctx;
static const clipn_config *cfg;

static void open_model_ctx(const char *path, int max_batch, int threads)
{
    clipn_error err;
    ck_assert_msg(clipn_model_load(path, NULL, &model, &err) == CLIPN_OK, "%s", err.message);
    clipn_ctx_opts opts = {.max_batch = max_batch, .threads = threads};
    ck_assert_msg(clipn_ctx_new(model, &opts, &ctx, &err) == CLIPN_OK, "%s", err.message);
    cfg = clipn_model_config(model);
}

static void open_ctx(int max_batch, int threads) { open_model_ctx(TINY, max_batch, threads); }

static void close_ctx(void)
{
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    ctx = NULL;
    model = NULL;
}

static float *pixels(int n, int size)
{
    const size_t len = (size_t)n * 3 * size * size;
    float *p = malloc(len * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    return p;
}

/* n prompts sharing "a photo of a" (prefix sharing at work), one duplicate */
static int32_t *prompts(clipn_tokenizer *tok, int n)
{
    int32_t *ids = malloc((size_t)n * cfg->context_length * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    static const char *const names[] = {"cat", "dog", "cat", "tabby cat", "goldfish", "owl"};
    for (int i = 0; i < n; i++) {
        char text[64];
        snprintf(text, sizeof text, "a photo of a %s.", names[i % 6]);
        clipn_error err;
        ck_assert_msg(clipn_tokenize(tok, text, strlen(text), ids + (size_t)i * cfg->context_length,
                                     cfg->context_length, &err) == CLIPN_OK, "%s", err.message);
    }
    return ids;
}

START_TEST(encode_calls_allocate_nothing_after_ctx_new)
{
    open_model_ctx(MODELS[_i], 3, 0);
    clipn_error err;
    clipn_tokenizer *tok;
    ck_assert_int_eq(clipn_tokenizer_from_model(model, &tok, &err), CLIPN_OK);
    const int n_img = 7, n_txt = 8; /* more than max_batch: chunked */
    float *px = pixels(n_img, cfg->image_size);
    int32_t *ids = prompts(tok, n_txt);
    float *out = malloc((size_t)(n_txt > n_img ? n_txt : n_img) * cfg->embed_dim * sizeof *out);
    ck_assert_ptr_nonnull(out);

    count_begin(); /* from the first call on */
    for (int round = 0; round < 2; round++) {
        failed |= clipn_encode_image(ctx, px, n_img, out, &err) != CLIPN_OK;
        failed |= clipn_encode_image(ctx, px, 1, out, &err) != CLIPN_OK;
        failed |= clipn_encode_text(ctx, ids, n_txt, out, &err) != CLIPN_OK;
        failed |= clipn_encode_text(ctx, ids, 1, out, &err) != CLIPN_OK;
        failed |= clipn_encode_no_text(ctx, ids, n_txt, out, &err) != CLIPN_OK;
        /* at the native size, clipn_encode_image_sized is clipn_encode_image */
        failed |= clipn_encode_image_sized(ctx, px, 2, cfg->image_size, out, &err) != CLIPN_OK;
    }
    ck_assert_int_eq(count_end(), 0);
    ck_assert_int_eq(failed, 0);

    free(px);
    free(ids);
    free(out);
    clipn_tokenizer_free(tok);
    close_ctx();
}
END_TEST

/* The documented exceptions allocate on their first call only. */
START_TEST(sized_and_local_allocate_on_first_call_only)
{
    open_ctx(2, 0);
    clipn_error err;
    const int size = 2 * cfg->image_size;
    const int patches = (cfg->image_size / cfg->patch_size) * (cfg->image_size / cfg->patch_size);
    float *big = pixels(3, size), *px = pixels(3, cfg->image_size);
    float *out = malloc(3 * (size_t)cfg->embed_dim * sizeof *out);
    float *local = malloc(3 * (size_t)patches * cfg->embed_dim * sizeof *local);
    ck_assert(out && local);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, big, 3, size, out, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_image_local(ctx, px, 3, out, local, &err), CLIPN_OK);
    count_begin();
    failed |= clipn_encode_image_sized(ctx, big, 3, size, out, &err) != CLIPN_OK;
    failed |= clipn_encode_image_local(ctx, px, 3, out, local, &err) != CLIPN_OK;
    failed |= clipn_encode_image(ctx, px, 2, out, &err) != CLIPN_OK;
    ck_assert_int_eq(count_end(), 0);
    ck_assert_int_eq(failed, 0);
    free(big);
    free(px);
    free(out);
    free(local);
    close_ctx();
}
END_TEST

START_TEST(score_calls_allocate_nothing_after_a_threads_first)
{
    open_ctx(4, 0);
    clipn_error err;
    static const char *const classes[] = {"cat", "dog", "owl"};
    static const char *const templates[] = {"a photo of a {}.", "a drawing of a {}."};
    static const char *const negatives[] = {"a photo of a car.", "a photo of a tree.",
                                            "a photo of a boat.", "a photo of a lamp."};
    clipn_heads *heads;
    ck_assert_msg(clipn_heads_build(ctx, classes, 3, templates, 2, templates, 2, NULL, NULL,
                                    &heads, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_msg(clipn_heads_add_negatives(ctx, heads, negatives, 4, 2, NULL, NULL, &err) ==
                  CLIPN_OK, "%s", err.message);
    const int patches = (cfg->image_size / cfg->patch_size) * (cfg->image_size / cfg->patch_size);
    float *px = pixels(1, cfg->image_size);
    float *feature = malloc((size_t)cfg->embed_dim * sizeof *feature);
    float *local = malloc((size_t)patches * cfg->embed_dim * sizeof *local);
    ck_assert(feature && local);
    ck_assert_int_eq(clipn_encode_image_local(ctx, px, 1, feature, local, &err), CLIPN_OK);
    float probs[3];
    clipn_scores sc;
    /* the first call grows this thread's scratch */
    ck_assert_int_eq(clipn_score_image(heads, feature, local, patches, probs, &sc, &err),
                     CLIPN_OK);
    count_begin();
    for (int i = 0; i < 3; i++) {
        failed |= clipn_score(heads, feature, probs, &sc, &err) != CLIPN_OK;
        failed |= clipn_score_image(heads, feature, local, patches, probs, &sc, &err) !=
                  CLIPN_OK;
    }
    ck_assert_int_eq(count_end(), 0);
    ck_assert_int_eq(failed, 0);
    ck_assert(!isnan(sc.neglabel) && !isnan(sc.glmcm) && !isnan(sc.ctw));
    clipn_heads_free(heads);
    free(px);
    free(feature);
    free(local);
    close_ctx();
}
END_TEST

/* threads = n: the context's calls use n threads (pool workers started for it at
 * clipn_ctx_new, none later), and the process-wide count is left alone. */
START_TEST(ctx_threads_means_this_context)
{
    const char *fork_env = getenv("CK_FORK");
    if (fork_env && strcmp(fork_env, "no") == 0)
        return; /* counts pool workers from a fresh process */
    const int before = clipn_kernels_threads();
    atomic_store(&threads_started, 0);
    open_ctx(2, 1);
    ck_assert_int_eq(workers_started(), 0); /* one thread: no worker */
    ck_assert_int_eq(clipn_kernels_threads(), before);
    clipn_error err;
    float *px = pixels(2, cfg->image_size);
    float out[2 * 64];
    ck_assert_int_le(cfg->embed_dim, 64);
    ck_assert_int_eq(clipn_encode_image(ctx, px, 2, out, &err), CLIPN_OK);
    ck_assert_int_eq(workers_started(), 0);
    clipn_ctx_free(ctx);

    clipn_ctx_opts opts = {.max_batch = 2, .threads = 3}; /* more than the pool's count */
    ck_assert_int_eq(clipn_ctx_new(model, &opts, &ctx, &err), CLIPN_OK);
    ck_assert_int_eq(workers_started(), 2); /* 2 workers + the caller */
    ck_assert_int_eq(clipn_encode_image(ctx, px, 2, out, &err), CLIPN_OK);
    ck_assert_int_eq(workers_started(), 2);
    ck_assert_int_eq(clipn_kernels_threads(), before);
    free(px);
    close_ctx();
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, encode_calls_allocate_nothing_after_ctx_new, 0, 2);
    tcase_add_test(tc, sized_and_local_allocate_on_first_call_only);
    tcase_add_test(tc, score_calls_allocate_nothing_after_a_threads_first);
    tcase_add_test(tc, ctx_threads_means_this_context);
    suite_add_tcase(s, tc);
    return s;
}
