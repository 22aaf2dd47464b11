/* The towers and the encode API: pooling, position interpolation, argument checks,
 * chunking and causal truncation. Accuracy against PyTorch is `make parity`. */
#include "testutil.h"

#include "internal.h"

#include <math.h>

#define TINY "tests/fixtures/model/tiny_clipn.safetensors"        /* CLIPN with prompt_no */
#define TINY_PLAIN "tests/fixtures/model/tiny_openclip.safetensors" /* plain CLIP: no "no" tower */

static clipn_model *model;
static clipn_ctx *ctx;

static void load_tiny(void)
{
    clipn_error err;
    ck_assert_msg(clipn_model_load(TINY, NULL, &model, &err) == CLIPN_OK, "%s", err.message);
    clipn_ctx_opts opts = {.max_batch = 2, .threads = 1};
    ck_assert_msg(clipn_ctx_new(model, &opts, &ctx, &err) == CLIPN_OK, "%s", err.message);
}

static void unload(void)
{
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    ctx = NULL;
    model = NULL;
}

/* deterministic pseudo-random floats in [-1, 1) */
static void fill(float *x, size_t n, unsigned seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
    }
}

/* [sot, body..., eot] padded with pad (0) */
static void prompt(int32_t *ids, int C, int V, int n_body, unsigned seed)
{
    memset(ids, 0, (size_t)C * sizeof *ids);
    ids[0] = V - 2;
    for (int i = 0; i < n_body; i++)
        ids[1 + i] = 1 + (int32_t)((seed * 7919u + (unsigned)i * 104729u) % (unsigned)(V - 3));
    ids[1 + n_body] = V - 1;
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / s;
}

START_TEST(pool_index_is_first_largest_id)
{
    const int32_t a[8] = {49406, 320, 49407, 11, 49407, 0, 0, 0};
    ck_assert_int_eq(clipn_text_pool_index(a, 8), 2);
    const int32_t zeros[4] = {0, 0, 0, 0};
    ck_assert_int_eq(clipn_text_pool_index(zeros, 4), 0);
    const int32_t last[4] = {5, 1, 2, 9};
    ck_assert_int_eq(clipn_text_pool_index(last, 4), 3);
}
END_TEST

START_TEST(bicubic_same_size_is_identity)
{
    float in[5 * 5 * 3], out[5 * 5 * 3];
    fill(in, 75, 3);
    clipn_bicubic_grid(in, 5, out, 5, 3);
    ck_assert_mem_eq(in, out, sizeof in);
}
END_TEST

START_TEST(bicubic_matches_torch)
{
    /* F.interpolate(x, size, mode='bicubic', align_corners=False), torch 1.13 */
    const float in[9] = {0, 1, 5, 2, 3, -1, 4, 0.5f, 2};
    const float up[25] = {
        -0.2879998981952667f, -0.14729462563991547f, 0.8080004453659058f, 3.798016309738159f,
        6.033729076385498f, 0.5048971176147461f, 1.109713077545166f, 1.9560000896453857f,
        2.3573272228240967f, 2.5039989948272705f, 1.9040005207061768f, 2.675999641418457f, 3.0f,
        0.6240001916885376f, -1.3839998245239258f, 3.536384344100952f, 2.774567127227783f,
        1.6140000820159912f, 0.7471932768821716f, 0.2878414988517761f, 4.5694732666015625f,
        2.5203676223754883f, 0.2600003480911255f, 1.2180330753326416f, 2.4826884269714355f};
    const float down[4] = {0.5751113891601562f, 3.1240768432617188f, 3.0561676025390625f,
                           1.0283660888671875f};
    float out[25];
    clipn_bicubic_grid(in, 3, out, 5, 1);
    for (int i = 0; i < 25; i++)
        ck_assert_float_eq_tol(out[i], up[i], 1e-5f);
    clipn_bicubic_grid(in, 3, out, 2, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(out[i], down[i], 1e-5f);
}
END_TEST

START_TEST(sized_at_native_size_equals_encode_image)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    const size_t per = 3 * (size_t)c->image_size * c->image_size;
    float *px = malloc(3 * per * sizeof(float));
    float *a = malloc(3 * (size_t)c->embed_dim * sizeof(float));
    float *b = malloc(3 * (size_t)c->embed_dim * sizeof(float));
    ck_assert(px && a && b);
    fill(px, 3 * per, 1);
    clipn_error err;
    ck_assert_int_eq(clipn_encode_image(ctx, px, 3, a, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 3, c->image_size, b, &err), CLIPN_OK);
    ck_assert_mem_eq(a, b, 3 * (size_t)c->embed_dim * sizeof(float));
    free(px), free(a), free(b);
    unload();
}
END_TEST

START_TEST(batched_images_match_one_at_a_time)
{
    load_tiny(); /* max_batch 2: 5 images run as 2 + 2 + 1 */
    const clipn_config *c = clipn_model_config(model);
    const size_t per = 3 * (size_t)c->image_size * c->image_size, E = (size_t)c->embed_dim;
    float *px = malloc(5 * per * sizeof(float)), *all = malloc(5 * E * sizeof(float));
    float one[64];
    ck_assert(px && all && E <= 64);
    fill(px, 5 * per, 2);
    clipn_error err;
    ck_assert_int_eq(clipn_encode_image(ctx, px, 5, all, &err), CLIPN_OK);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(clipn_encode_image(ctx, px + i * per, 1, one, &err), CLIPN_OK);
        ck_assert_double_le(max_rel(one, all + i * E, E), 1e-5);
    }
    free(px), free(all);
    unload();
}
END_TEST

START_TEST(sized_other_sizes_run_and_grow)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    const int P = c->patch_size, E = c->embed_dim;
    /* larger than the scratch was sized for: the context grows once */
    const int big = c->image_size * 3;
    const size_t per = 3 * (size_t)big * big;
    float *px = malloc(3 * per * sizeof(float)), *out = malloc(3 * (size_t)E * sizeof(float));
    float one[64];
    ck_assert(px && out && E <= 64);
    fill(px, 3 * per, 4);
    clipn_error err;
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 3, big, out, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px + 2 * per, 1, big, one, &err), CLIPN_OK);
    ck_assert_double_le(max_rel(one, out + 2 * E, (size_t)E), 1e-5);
    for (int i = 0; i < 3 * E; i++)
        ck_assert(isfinite(out[i]));
    /* smaller, then back: the cached position table follows the size */
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 1, P, out, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px + 2 * per, 1, big, out, &err), CLIPN_OK);
    ck_assert_mem_eq(out, one, (size_t)E * sizeof(float));
    free(px), free(out);
    unload();
}
END_TEST

START_TEST(sized_rejects_bad_sizes)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    float px[3], out[64];
    clipn_error err;
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 1, c->patch_size + 1, out, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "multiple of patch_size"));
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 1, 0, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 1, -c->patch_size, out, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 1, c->patch_size * 1000, out, &err),
                     CLIPN_E_LIMIT);
    unload();
}
END_TEST

START_TEST(text_after_eot_is_ignored)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    const int C = c->context_length, V = c->vocab_size, E = c->embed_dim;
    int32_t *ids = malloc(2 * (size_t)C * sizeof *ids);
    float out[2 * 64];
    ck_assert(ids && E <= 64);
    prompt(ids, C, V, 5, 9);
    memcpy(ids + C, ids, (size_t)C * sizeof *ids);
    for (int p = 7; p < C; p++) /* garbage after the eot (position 6) */
        ids[C + p] = (int32_t)(p * 31 % (V - 1));
    clipn_error err;
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 2, out, &err), CLIPN_OK);
    ck_assert_mem_eq(out, out + E, (size_t)E * sizeof(float));
    ck_assert_int_eq(clipn_encode_no_text(ctx, ids, 2, out, &err), CLIPN_OK);
    ck_assert_mem_eq(out, out + E, (size_t)E * sizeof(float));
    free(ids);
    unload();
}
END_TEST

START_TEST(text_batches_of_mixed_lengths_match_singles)
{
    load_tiny(); /* max_batch 2: 5 prompts of different lengths in chunks */
    const clipn_config *c = clipn_model_config(model);
    const int C = c->context_length, V = c->vocab_size, E = c->embed_dim;
    int32_t *ids = malloc(5 * (size_t)C * sizeof *ids);
    float all[5 * 64], one[64];
    ck_assert(ids && E <= 64);
    const int lens[5] = {0, 12, 3, C - 2, 7};
    for (int i = 0; i < 5; i++)
        prompt(ids + i * C, C, V, lens[i], (unsigned)i + 1);
    clipn_error err;
    for (int tower = 0; tower < 2; tower++) {
        clipn_status (*enc)(clipn_ctx *, const int32_t *, int, float *, clipn_error *) =
            tower ? clipn_encode_no_text : clipn_encode_text;
        ck_assert_int_eq(enc(ctx, ids, 5, all, &err), CLIPN_OK);
        for (int i = 0; i < 5; i++) {
            ck_assert_int_eq(enc(ctx, ids + i * C, 1, one, &err), CLIPN_OK);
            ck_assert_double_le(max_rel(one, all + i * E, (size_t)E), 1e-5);
        }
    }
    /* the two towers differ */
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 1, all, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_no_text(ctx, ids, 1, one, &err), CLIPN_OK);
    ck_assert_double_gt(max_rel(one, all, (size_t)E), 1e-2);
    free(ids);
    unload();
}
END_TEST

START_TEST(invalid_ids_are_named)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    const int C = c->context_length, V = c->vocab_size;
    int32_t *ids = malloc(2 * (size_t)C * sizeof *ids);
    float out[2 * 64];
    ck_assert(ids);
    prompt(ids, C, V, 4, 1);
    prompt(ids + C, C, V, 4, 2);
    clipn_error err;
    ids[C + 3] = V;
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 2, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(err.code, CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "ids[1][3]"));
    ids[C + 3] = -1;
    ck_assert_int_eq(clipn_encode_no_text(ctx, ids, 2, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "ids[1][3] = -1"));
    ids[C + 3] = V - 1; /* the largest valid id */
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 2, out, &err), CLIPN_OK);
    free(ids);
    unload();
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    const size_t per = 3 * (size_t)c->image_size * c->image_size;
    float *px = calloc(per, sizeof(float)), out[64];
    int32_t ids[128] = {0};
    ck_assert(px && c->context_length <= 128);
    clipn_error err;
    ck_assert_int_eq(clipn_encode_image(ctx, px, 0, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image(ctx, px, -1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image(NULL, px, 1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image(ctx, NULL, 1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image(ctx, px, 1, NULL, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image_sized(ctx, px, 0, c->image_size, out, NULL),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 0, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_text(ctx, NULL, 1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_no_text(NULL, ids, 1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_no_text(ctx, ids, 1, NULL, NULL), CLIPN_E_INVALID_ARG);

    clipn_ctx *other = (clipn_ctx *)1;
    ck_assert_int_eq(clipn_ctx_new(NULL, NULL, &other, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_null(other);
    clipn_ctx_opts bad = {.max_batch = -3};
    ck_assert_int_eq(clipn_ctx_new(model, &bad, &other, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "max_batch"));
    bad.max_batch = 1;
    bad.threads = -1;
    ck_assert_int_eq(clipn_ctx_new(model, &bad, &other, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_ctx_new(model, NULL, NULL, &err), CLIPN_E_INVALID_ARG);
    /* default options */
    ck_assert_int_eq(clipn_ctx_new(model, NULL, &other, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_image(other, px, 1, out, &err), CLIPN_OK);
    clipn_ctx_free(other);
    clipn_ctx_free(NULL);
    free(px);
    unload();
}
END_TEST

START_TEST(model_without_no_tower)
{
    clipn_error err;
    clipn_model *m = NULL;
    clipn_ctx *cx = NULL;
    ck_assert_msg(clipn_model_load(TINY_PLAIN, NULL, &m, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_int_eq(clipn_model_config(m)->has_no_tower, 0);
    ck_assert_int_eq(clipn_ctx_new(m, NULL, &cx, &err), CLIPN_OK);
    const int C = clipn_model_config(m)->context_length, V = clipn_model_config(m)->vocab_size;
    int32_t ids[128];
    float out[64];
    ck_assert(C <= 128);
    prompt(ids, C, V, 3, 5);
    ck_assert_int_eq(clipn_encode_text(cx, ids, 1, out, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_no_text(cx, ids, 1, out, &err), CLIPN_E_UNSUPPORTED);
    ck_assert_int_eq(err.code, CLIPN_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.message, "no \"no\" text tower"));
    clipn_ctx_free(cx);
    clipn_model_free(m);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("towers");
    TCase *unit = tcase_create("unit");
    tcase_add_test(unit, pool_index_is_first_largest_id);
    tcase_add_test(unit, bicubic_same_size_is_identity);
    tcase_add_test(unit, bicubic_matches_torch);
    suite_add_tcase(s, unit);
    TCase *enc = tcase_create("encode");
    tcase_set_timeout(enc, 60);
    tcase_add_test(enc, sized_at_native_size_equals_encode_image);
    tcase_add_test(enc, batched_images_match_one_at_a_time);
    tcase_add_test(enc, sized_other_sizes_run_and_grow);
    tcase_add_test(enc, sized_rejects_bad_sizes);
    tcase_add_test(enc, text_after_eot_is_ignored);
    tcase_add_test(enc, text_batches_of_mixed_lengths_match_singles);
    tcase_add_test(enc, invalid_ids_are_named);
    tcase_add_test(enc, bad_arguments_are_refused);
    tcase_add_test(enc, model_without_no_tower);
    suite_add_tcase(s, enc);
    return s;
}
