/* Prefix sharing in the text towers (lib/nn/text_tower.c): a batch whose prompts share leading
 * tokens computes those rows once. The result must equal running every prompt alone.
 *
 * Tolerance: exact (bit-identical). Every row of the native GEMM and of the attention
 * kernel is computed with the same operations in the same order whatever the number of
 * rows in the call, and a shared prompt's attention sees exactly the keys/values it would
 * see alone, so nothing may differ. Only an M-dependent GEMM (e.g. CLIPN_GEMM=openblas)
 * could change the last bits (measured: 1e-6 with OpenBLAS); then the check allows 1e-5. */
#include "testutil.h"

#include "internal.h"
#include "kernels_control.h"

#include <math.h>

#define TINY "tests/fixtures/model/tiny_clipn.safetensors" /* CLIPN with prompt_no, vocab 600 */
#define MAX_PROMPTS 64

static clipn_model *model;
static clipn_ctx *ctx;
static int C, E, SOT, EOT;

static void setup(void)
{
    clipn_error err;
    ck_assert_msg(clipn_model_load(TINY, NULL, &model, &err) == CLIPN_OK, "%s", err.message);
    clipn_ctx_opts opts = {.max_batch = 3, .threads = 2}; /* batches bigger than this grow it */
    ck_assert_msg(clipn_ctx_new(model, &opts, &ctx, &err) == CLIPN_OK, "%s", err.message);
    const clipn_config *c = clipn_model_config(model);
    C = c->context_length;
    E = c->embed_dim;
    SOT = c->sot_id;
    EOT = c->eot_id;
}

static void teardown(void)
{
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    ctx = NULL;
    model = NULL;
}

/* ids row from a token list (no SOT/EOT added), zero padded */
static void set_row(int32_t *ids, const int *tok, int n)
{
    memset(ids, 0, (size_t)C * sizeof *ids);
    for (int i = 0; i < n && i < C; i++)
        ids[i] = tok[i];
}

/* [SOT, body..., EOT] */
static void set_prompt(int32_t *ids, const int *body, int n)
{
    int tok[80];
    tok[0] = SOT;
    for (int i = 0; i < n; i++)
        tok[1 + i] = body[i];
    tok[1 + n] = EOT;
    set_row(ids, tok, n + 2);
}

static int exact(void)
{
    const char *gemm = clipn_kernels_gemm_backend();
    return !gemm || strcmp(gemm, "openblas") != 0;
}

/* The batch, shared and unshared, and the public API in chunks, against one at a time. */
static void check_batch(const int32_t *ids, int n)
{
    static float alone[MAX_PROMPTS * 64], batch[MAX_PROMPTS * 64];
    ck_assert(n <= MAX_PROMPTS && E <= 64);
    clipn_error err;
    for (int tower = 0; tower < 2; tower++) {
        for (int s = 0; s < n; s++)
            ck_assert_msg((tower ? clipn_encode_no_text : clipn_encode_text)(
                              ctx, ids + (size_t)s * C, 1, alone + (size_t)s * E, &err) ==
                              CLIPN_OK, "%s", err.message);
        for (int mode = 0; mode < 3; mode++) {
            clipn_status st;
            if (mode < 2)
                st = clipn_text_encode_batch(ctx, tower, ids, n, mode == 0, batch, &err);
            else /* public API: chunks of max_batch, each shared */
                st = (tower ? clipn_encode_no_text : clipn_encode_text)(ctx, ids, n, batch, &err);
            ck_assert_msg(st == CLIPN_OK, "%s", err.message);
            for (int s = 0; s < n; s++) {
                const float *a = alone + (size_t)s * E, *b = batch + (size_t)s * E;
                if (exact()) {
                    ck_assert_msg(!memcmp(a, b, (size_t)E * sizeof *a),
                                  "tower %d mode %d prompt %d differs from alone", tower, mode,
                                  s);
                } else {
                    for (int i = 0; i < E; i++)
                        ck_assert_float_eq_tol(b[i], a[i], 1e-5f * (1.0f + fabsf(a[i])));
                }
            }
        }
    }
}

START_TEST(all_share_one_prefix)
{
    int32_t ids[20 * 77];
    for (int s = 0; s < 20; s++) { /* "a photo of a" + a class of 1..4 tokens + "." */
        int body[10] = {10, 11, 12, 10};
        const int cls = 1 + s % 4;
        for (int i = 0; i < cls; i++)
            body[4 + i] = 100 + (s * 7 + i * 13) % 400;
        body[4 + cls] = 13;
        set_prompt(ids + s * C, body, 5 + cls);
    }
    check_batch(ids, 20);
}
END_TEST

START_TEST(none_share)
{
    int32_t ids[8 * 77];
    for (int s = 0; s < 8; s++) { /* different first tokens: not even SOT in common */
        const int tok[5] = {1 + s, 50 + s, 60, 70, EOT};
        set_row(ids + s * C, tok, 2 + s % 4);
        ids[s * C + 2 + s % 4] = EOT;
    }
    check_batch(ids, 8);
}
END_TEST

START_TEST(nested_prefixes)
{
    static const int bodies[7][6] = {
        {10, 11, 12, 13, 14, 15}, {10, 11, 12, 20}, {10, 11, 30}, {10, 11, 12, 13, 40},
        {10}, {10, 11, 12, 13, 14, 16}, {50, 11, 12}};
    static const int lens[7] = {6, 4, 3, 5, 1, 6, 3};
    int32_t ids[7 * 77];
    for (int s = 0; s < 7; s++)
        set_prompt(ids + s * C, bodies[s], lens[s]);
    check_batch(ids, 7);
}
END_TEST

START_TEST(identical_prompts)
{
    int32_t ids[9 * 77];
    const int a[3] = {10, 11, 12}, b[2] = {10, 99};
    for (int s = 0; s < 9; s++)
        if (s % 3 == 1)
            set_prompt(ids + s * C, b, 2);
        else
            set_prompt(ids + s * C, a, 3);
    check_batch(ids, 9);
}
END_TEST

START_TEST(prompt_is_prefix_of_another)
{
    /* raw ids: pooling stops at the first largest id, so [5 10] is a prompt of 2 positions
       and [5 10 20 7] one of 3 that runs through the same first two rows */
    int32_t ids[4 * 77];
    const int p0[2] = {5, 10}, p1[4] = {5, 10, 20, 7}, p2[3] = {5, 10, 9}, p3[4] = {5, 10, 20,
                                                                                     30};
    set_row(ids, p0, 2);
    set_row(ids + C, p1, 4);
    set_row(ids + 2 * C, p2, 3);
    set_row(ids + 3 * C, p3, 4);
    check_batch(ids, 4);
}
END_TEST

START_TEST(full_length_and_single)
{
    int32_t ids[5 * 77];
    int body[75];
    for (int s = 0; s < 5; s++) { /* 77 positions, truncated EOT last, shared up to s*10 */
        for (int i = 0; i < 75; i++)
            body[i] = i < s * 10 ? 100 + i : 200 + s + i;
        set_prompt(ids + s * C, body, 75);
    }
    check_batch(ids, 5);
    check_batch(ids + 2 * C, 1);
}
END_TEST

START_TEST(bad_arguments)
{
    clipn_error err;
    int32_t ids[77] = {0};
    float out[64];
    ck_assert_int_eq(clipn_text_encode_batch(ctx, 0, ids, 0, 1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_text_encode_batch(NULL, 0, ids, 1, 1, out, &err),
                     CLIPN_E_INVALID_ARG);
    ids[3] = 600; /* = vocab_size */
    ck_assert_int_eq(clipn_text_encode_batch(ctx, 1, ids, 1, 1, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "ids[0][3]"));
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("text_prefix");
    TCase *tc = tcase_create("prefix_sharing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, all_share_one_prefix);
    tcase_add_test(tc, none_share);
    tcase_add_test(tc, nested_prefixes);
    tcase_add_test(tc, identical_prompts);
    tcase_add_test(tc, prompt_is_prefix_of_another);
    tcase_add_test(tc, full_length_and_single);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}
