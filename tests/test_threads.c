/* One model shared by 4 threads, each with its own context: results bit-identical to a
 * single-threaded run. CLIPN_TEST_THREADS_MODEL=FILE runs it on a larger model (e.g.
 * tests/golden/work/small.clipn after make parity), where the kernels use the pool. */
#include "testutil.h"

#include <pthread.h>
#include <stdint.h>

#define TINY "tests/fixtures/model/tiny_clipn.safetensors"
#define N_THREADS 4
#define N_IMAGES 5
#define N_TEXTS 6
#define ROUNDS 3

static const clipn_model *model;
static float *pixels;
static int32_t *ids;
static size_t n_img_out, n_txt_out; /* floats of each result */

typedef struct result {
    float *image, *image_sized, *text, *no_text;
    int ok;
    char message[512];
} result;

static int result_alloc(result *r)
{
    memset(r, 0, sizeof *r);
    r->image = malloc(n_img_out * sizeof(float));
    r->image_sized = malloc(n_img_out * sizeof(float));
    r->text = malloc(n_txt_out * sizeof(float));
    r->no_text = malloc(n_txt_out * sizeof(float));
    return r->image && r->image_sized && r->text && r->no_text;
}

static void result_free(result *r)
{
    free(r->image), free(r->image_sized), free(r->text), free(r->no_text);
}

/* Everything the encoders do, with a fresh context (max_batch 2: chunking included). */
static void *encode_all(void *arg)
{
    result *r = arg;
    const clipn_config *c = clipn_model_config(model);
    clipn_ctx *ctx = NULL;
    clipn_error err = {0};
    clipn_ctx_opts opts = {.max_batch = 2};
    r->ok = 0;
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK)
        goto done;
    for (int round = 0; round < ROUNDS; round++) {
        const int sized = c->image_size - c->patch_size; /* interpolated positions */
        if (clipn_encode_image(ctx, pixels, N_IMAGES, r->image, &err) != CLIPN_OK ||
            clipn_encode_image_sized(ctx, pixels, 1, sized, r->image_sized, &err) != CLIPN_OK ||
            clipn_encode_text(ctx, ids, N_TEXTS, r->text, &err) != CLIPN_OK ||
            clipn_encode_no_text(ctx, ids, N_TEXTS, r->no_text, &err) != CLIPN_OK)
            goto done;
    }
    r->ok = 1;
done:
    memcpy(r->message, err.message, sizeof r->message);
    clipn_ctx_free(ctx);
    return NULL;
}

START_TEST(four_threads_match_one)
{
    clipn_error err;
    clipn_model *m = NULL;
    const char *path = getenv("CLIPN_TEST_THREADS_MODEL");
    if (!path || !*path)
        path = TINY;
    ck_assert_msg(clipn_model_load(path, NULL, &m, &err) == CLIPN_OK, "%s", err.message);
    model = m;
    const clipn_config *c = clipn_model_config(model);
    const size_t per = 3 * (size_t)c->image_size * c->image_size;
    const int C = c->context_length, V = c->vocab_size;
    n_img_out = (size_t)N_IMAGES * c->embed_dim;
    n_txt_out = (size_t)N_TEXTS * c->embed_dim;
    pixels = malloc(N_IMAGES * per * sizeof(float));
    ids = calloc((size_t)N_TEXTS * C, sizeof *ids);
    ck_assert(pixels && ids);
    uint32_t s = 12345;
    for (size_t i = 0; i < N_IMAGES * per; i++) {
        s = s * 1664525u + 1013904223u;
        pixels[i] = (float)(s >> 8) / (float)(1 << 22) - 2.0f;
    }
    for (int t = 0; t < N_TEXTS; t++) { /* lengths 1 .. 6*9 tokens */
        int32_t *row = ids + (size_t)t * C;
        const int len = 1 + 9 * t < C - 2 ? 1 + 9 * t : C - 2;
        row[0] = V - 2;
        for (int i = 1; i <= len; i++)
            row[i] = 1 + (t * 131 + i * 17) % (V - 3);
        row[len + 1] = V - 1;
    }

    result single, threaded[N_THREADS];
    ck_assert(result_alloc(&single));
    encode_all(&single);
    ck_assert_msg(single.ok, "%s", single.message);

    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        ck_assert(result_alloc(&threaded[t]));
        ck_assert_int_eq(pthread_create(&th[t], NULL, encode_all, &threaded[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++)
        ck_assert_int_eq(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < N_THREADS; t++) {
        ck_assert_msg(threaded[t].ok, "thread %d: %s", t, threaded[t].message);
        ck_assert_mem_eq(threaded[t].image, single.image, n_img_out * sizeof(float));
        ck_assert_mem_eq(threaded[t].image_sized, single.image_sized,
                         (size_t)c->embed_dim * sizeof(float));
        ck_assert_mem_eq(threaded[t].text, single.text, n_txt_out * sizeof(float));
        ck_assert_mem_eq(threaded[t].no_text, single.no_text, n_txt_out * sizeof(float));
        result_free(&threaded[t]);
    }
    result_free(&single);
    free(pixels);
    free(ids);
    clipn_model_free(m);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("shared model");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, four_threads_match_one);
    suite_add_tcase(s, tc);
    return s;
}
