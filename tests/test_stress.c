/* Many threads, one shared model: contexts created and freed over and over, images and
 * texts encoded, heads built and scored, while other threads load and free models and
 * head files (cJSON parsing in parallel: lib/core/json.c). Results must equal a single-threaded
 * run. Run under ThreadSanitizer by `make test-tsan`; also part of the normal suite. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define TINY "tests/fixtures/model/tiny_clipn.safetensors"
#define MICRO "tests/fuzz/corpus/model_load/micro_clipn.clipn"
#define HEADS "tests/fuzz/corpus/heads_load/heads_3x4.safetensors"
#define IMAGE FIXTURE("images/photo_chelsea_q80.jpg")
#define N_WORKERS 6
#define N_LOADERS 2
#define ROUNDS 4
#define MAX_DIM 64

static const clipn_model *model;
static const char *const classes[] = {"cat", "dog", "goldfish"};
static const char *const templates[] = {"a photo of a {}.", "a {} in the wild."};
static float want_image[MAX_DIM], want_text[MAX_DIM];
static clipn_scores want_scores;

typedef struct worker {
    int id;
    int ok;
    char message[600];
} worker;

/* One round's work on a fresh context; 0 on success, message in w on failure. */
static int one_round(worker *w, float *image, float *text, clipn_scores *scores)
{
    clipn_error err = {0};
    clipn_ctx *ctx = NULL;
    clipn_tokenizer *tok = NULL;
    clipn_heads *heads = NULL;
    const clipn_config *cfg = clipn_model_config(model);
    size_t S = (size_t)cfg->image_size;
    float *px = malloc(3 * S * S * sizeof *px);
    int32_t *ids = malloc((size_t)cfg->context_length * sizeof *ids);
    clipn_image_opts io;
    clipn_image_opts_from_model(model, &io);
    clipn_ctx_opts co = {.max_batch = 1 + w->id % 3, .threads = w->id % 2 ? 1 : 0};
    int rc = -1;
    if (!px || !ids)
        goto done;
    if (clipn_ctx_new(model, &co, &ctx, &err) || clipn_preprocess_file(IMAGE, &io, px, &err) ||
        clipn_encode_image(ctx, px, 1, image, &err) ||
        clipn_tokenizer_from_model(model, &tok, &err) ||
        clipn_tokenize(tok, "a photo of a cat.", 17, ids, cfg->context_length, &err) ||
        clipn_encode_text(ctx, ids, 1, text, &err) ||
        clipn_heads_build(ctx, classes, 3, templates, 2, NULL, 0, NULL, NULL, &heads, &err) ||
        clipn_score(heads, image, NULL, scores, &err))
        goto done;
    rc = 0;
done:
    if (rc)
        snprintf(w->message, sizeof w->message, "worker %d: %s", w->id,
                 err.message[0] ? err.message : "out of memory");
    clipn_heads_free(heads);
    clipn_tokenizer_free(tok);
    clipn_ctx_free(ctx);
    free(px);
    free(ids);
    return rc;
}

static void *work(void *arg)
{
    worker *w = arg;
    float image[MAX_DIM], text[MAX_DIM];
    clipn_scores scores;
    w->ok = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (one_round(w, image, text, &scores))
            return NULL;
        int dim = clipn_model_config(model)->embed_dim;
        if (memcmp(image, want_image, (size_t)dim * sizeof *image) ||
            memcmp(text, want_text, (size_t)dim * sizeof *text) ||
            scores.pred != want_scores.pred || scores.ctw != want_scores.ctw) {
            snprintf(w->message, sizeof w->message, "worker %d: round %d differs", w->id, r);
            return NULL;
        }
    }
    w->ok = 1;
    return NULL;
}

/* Load and free models and head files, the two JSON parsers, in parallel with the rest. */
static void *load(void *arg)
{
    worker *w = arg;
    w->ok = 0;
    for (int r = 0; r < ROUNDS * 4; r++) {
        clipn_model *m = NULL;
        clipn_heads *h = NULL;
        clipn_error err;
        const char *path = r % 2 ? MICRO : TINY;
        if (clipn_model_load(path, NULL, &m, &err) || clipn_heads_load(HEADS, NULL, &h, &err)) {
            snprintf(w->message, sizeof w->message, "loader %d: %s", w->id, err.message);
            clipn_model_free(m);
            return NULL;
        }
        /* a refused file parses (and fails) in parallel too */
        clipn_model *bad = NULL;
        if (clipn_model_load(HEADS, NULL, &bad, &err) == CLIPN_OK) {
            snprintf(w->message, sizeof w->message, "loader %d: head file loaded as model", w->id);
            clipn_model_free(bad);
            return NULL;
        }
        clipn_heads_free(h);
        clipn_model_free(m);
    }
    w->ok = 1;
    return NULL;
}

START_TEST(shared_model_many_contexts)
{
    clipn_model *m = NULL;
    clipn_error err;
    ck_assert_int_eq(clipn_model_load(TINY, NULL, &m, &err), CLIPN_OK);
    model = m;
    ck_assert_int_le(clipn_model_config(m)->embed_dim, MAX_DIM);
    worker ref = {.id = 0};
    ck_assert_msg(one_round(&ref, want_image, want_text, &want_scores) == 0, "%s", ref.message);

    pthread_t th[N_WORKERS + N_LOADERS];
    worker w[N_WORKERS + N_LOADERS];
    for (int i = 0; i < N_WORKERS + N_LOADERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, i < N_WORKERS ? work : load, &w[i]), 0);
    }
    for (int i = 0; i < N_WORKERS + N_LOADERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_WORKERS + N_LOADERS; i++)
        ck_assert_msg(w[i].ok, "%s", w[i].message);
    clipn_model_free(m);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = tcase_create("stress");
    tcase_set_timeout(tc, 600); /* ThreadSanitizer is slow */
    tcase_add_test(tc, shared_model_many_contexts);
    suite_add_tcase(s, tc);
    return s;
}
