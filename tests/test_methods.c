/* GL-MCM local features and NegLabel: the WordNet reader on its fixture, the grouped score
 * against the formula, mining against a direct computation, heads with negatives in head
 * files (and old files still loading). Parity with the official algorithms in PyTorch is
 * `make methods-parity`. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define TINY "tests/fixtures/model/tiny_clipn.safetensors"
#define WORDNET FIXTURE("wordnet")

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

static void fill(float *x, size_t n, unsigned seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
    }
}

static void unit_rows(float *x, int rows, int dim)
{
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)x[r * dim + i] * x[r * dim + i];
        for (int i = 0; i < dim; i++)
            x[r * dim + i] = (float)(x[r * dim + i] / sqrt(ss));
    }
}

/* ------------------------------------------------------------------ WordNet */

START_TEST(test_wordnet_fixture)
{
    /* the fixture's lines by the rules: noun.animal (05) and noun.food (13) dropped,
       first lemma, lower case, '_' -> ' ', markers removed, duplicates ("bank") once,
       "red" a noun only */
    static const char *const nouns[] = {
        "organism", "cell", "feeling", "time", "philippine sea", "blade", "spat",
        "streptomycin", "tape deck", "white house", "red", "federal bureau of investigation",
        "bank", "drafter", "gravedigger", "wolf boy", "grappelli", "sweet pepperbush",
        "granadilla", "tagasaste", "basidium", "weekend", "rag day", "common year", "over"};
    static const char *const adjs[] = {
        "defunct", "edged", "proper", "analogical", "bare", "single", "out", "tonal",
        "wheeled", "french", "most-favored-nation", "abolitionary", "mercerized", "sanitized",
        "squashed"};
    clipn_word_lists *w = NULL;
    clipn_error err;
    ck_assert_msg(clipn_wordnet_read(WORDNET, &w, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_int_eq(w->n_nouns, (int)(sizeof nouns / sizeof *nouns));
    ck_assert_int_eq(w->n_adjectives, (int)(sizeof adjs / sizeof *adjs));
    for (int i = 0; i < w->n_nouns; i++)
        ck_assert_str_eq(w->nouns[i], nouns[i]);
    for (int i = 0; i < w->n_adjectives; i++)
        ck_assert_str_eq(w->adjectives[i], adjs[i]);
    clipn_word_lists_free(w);
}
END_TEST

START_TEST(test_wordnet_refuses)
{
    clipn_word_lists *w = (clipn_word_lists *)1;
    clipn_error err;
    ck_assert_int_eq(clipn_wordnet_read(FIXTURE("no_such_dir"), &w, &err), CLIPN_E_IO);
    ck_assert_ptr_null(w);
    /* a directory whose data.noun is not WordNet */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/clipn_wn_%ld", test_tmp_dir(), (long)getpid());
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/data.noun", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("  1 header\nthis is not a data line\n", f);
    fclose(f);
    ck_assert_int_eq(clipn_wordnet_read(dir, &w, &err), CLIPN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.message, "data.noun:2"));
    unlink(path);
    /* a FIFO as data.noun: refused at once (fopen blocked forever waiting for a writer) */
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    alarm(10);
    clipn_status st = clipn_wordnet_read(dir, &w, &err);
    alarm(0);
    unlink(path);
    ck_assert_int_eq(st, CLIPN_E_IO);
    ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));
    rmdir(dir);
}
END_TEST

/* ------------------------------------------------------------------ the grouped score */

/* Hand-sized heads: 3 classes, 7 negatives, dim 4. */
static clipn_heads *small_heads(int groups)
{
    enum { C = 3, N = 7, D = 4 };
    clipn_heads *h = calloc(1, sizeof *h);
    h->n_classes = C;
    h->dim = D;
    h->yes = malloc(C * D * sizeof(float));
    h->neg = malloc(N * D * sizeof(float));
    h->neg_prompts = calloc(N, sizeof(char *));
    fill(h->yes, C * D, 1);
    fill(h->neg, N * D, 2);
    unit_rows(h->yes, C, D);
    unit_rows(h->neg, N, D);
    for (int j = 0; j < N; j++) {
        char b[32];
        snprintf(b, sizeof b, "the nice word%d", j);
        h->neg_prompts[j] = strdup(b);
    }
    h->n_neg = N;
    h->neg_groups = groups;
    return h;
}

/* The documented formula: drop the last n % G, negative j in group j % G, mean over groups
 * of the ID softmax mass over [ID, group], all logits 100 cos. */
static double expected_neglabel(const clipn_heads *h, const float *f)
{
    const int C = h->n_classes, D = h->dim, G = h->neg_groups, used = h->n_neg - h->n_neg % G;
    double nf = 0, pos[8], neg[8];
    for (int i = 0; i < D; i++)
        nf += (double)f[i] * f[i];
    nf = sqrt(nf);
    for (int c = 0; c < C; c++) {
        double d = 0;
        for (int i = 0; i < D; i++)
            d += (double)f[i] * h->yes[c * D + i];
        pos[c] = 100 * d / nf;
    }
    for (int j = 0; j < used; j++) {
        double d = 0;
        for (int i = 0; i < D; i++)
            d += (double)f[i] * h->neg[j * D + i];
        neg[j] = 100 * d / nf;
    }
    double total = 0;
    for (int g = 0; g < G; g++) {
        double sp = 0, sn = 0;
        for (int c = 0; c < C; c++)
            sp += exp(pos[c]);
        for (int j = g; j < used; j += G)
            sn += exp(neg[j]);
        total += sp / (sp + sn);
    }
    return total / G;
}

START_TEST(test_neglabel_grouping)
{
    float f[4];
    clipn_error err;
    for (int groups = 1; groups <= 7; groups++) {
        clipn_heads *h = small_heads(groups);
        for (unsigned seed = 10; seed < 14; seed++) {
            fill(f, 4, seed);
            for (int i = 0; i < 4; i++) /* keep logits in exp's range for the plain formula */
                f[i] *= 0.05f;
            clipn_scores s;
            ck_assert_int_eq(clipn_score(h, f, NULL, &s, &err), CLIPN_OK);
            double want = expected_neglabel(h, f);
            ck_assert_msg(fabs(s.neglabel - want) < 1e-6, "groups %d: %.9g vs %.9g", groups,
                          s.neglabel, want);
            ck_assert(isnan(s.glmcm)); /* no local features given */
        }
        clipn_heads_free(h);
    }
    /* without negatives neglabel is NaN */
    clipn_heads *h = small_heads(1);
    free(h->neg);
    for (int j = 0; j < h->n_neg; j++)
        free(h->neg_prompts[j]);
    free(h->neg_prompts);
    h->neg = NULL;
    h->neg_prompts = NULL;
    h->n_neg = h->neg_groups = 0;
    clipn_scores s;
    ck_assert_int_eq(clipn_score(h, f, NULL, &s, &err), CLIPN_OK);
    ck_assert(isnan(s.neglabel));
    clipn_heads_free(h);
}
END_TEST

/* ------------------------------------------------------------------ local features */

START_TEST(test_local_features)
{
    load_tiny();
    const clipn_config *c = clipn_model_config(model);
    const int n = 5, S = c->image_size, E = c->embed_dim;
    const int P = (S / c->patch_size) * (S / c->patch_size);
    float *px = malloc((size_t)n * 3 * S * S * sizeof *px);
    float *g = malloc((size_t)n * E * sizeof *g), *g_ref = malloc((size_t)n * E * sizeof *g);
    float *l = malloc((size_t)n * P * E * sizeof *l), *l1 = malloc((size_t)P * E * sizeof *l);
    fill(px, (size_t)n * 3 * S * S, 3);
    clipn_error err;
    /* max_batch 2: 5 images in 2 + 2 + 1; the global features are clipn_encode_image's */
    ck_assert_int_eq(clipn_encode_image_local(ctx, px, n, g, l, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_image(ctx, px, n, g_ref, &err), CLIPN_OK);
    for (int i = 0; i < n * E; i++)
        ck_assert_msg(fabsf(g[i] - g_ref[i]) <= 1e-5f * (1 + fabsf(g_ref[i])), "global %d", i);
    /* one image alone gives the same local rows */
    float g1[64];
    ck_assert_int_eq(clipn_encode_image_local(ctx, px + 4 * 3 * S * S, 1, g1, l1, &err), CLIPN_OK);
    for (int i = 0; i < P * E; i++)
        ck_assert_msg(fabsf(l1[i] - l[4 * P * E + i]) <= 1e-5f * (1 + fabsf(l1[i])), "local %d", i);
    /* GL-MCM = MCM + the best local MCM, so it exceeds MCM by at least 1 / C */
    clipn_heads *h = NULL;
    const char *classes[] = {"tench", "goldfish", "shark"}, *tmpl[] = {"a photo of a {}."};
    ck_assert_int_eq(clipn_heads_build(ctx, classes, 3, tmpl, 1, NULL, 0, NULL, NULL, &h, &err),
                     CLIPN_OK);
    clipn_scores s;
    ck_assert_int_eq(clipn_score_image(h, g, l, P, NULL, &s, &err), CLIPN_OK);
    ck_assert(s.glmcm >= s.mcm + 1.0f / 3 - 1e-6f && s.glmcm <= s.mcm + 1.0f + 1e-6f);
    ck_assert_int_eq(clipn_score_image(h, g, l, 0, NULL, &s, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image_local(ctx, px, 0, g, l, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_encode_image_local(ctx, px, 1, g, NULL, &err), CLIPN_E_INVALID_ARG);
    clipn_heads_free(h);
    free(px);
    free(g);
    free(g_ref);
    free(l);
    free(l1);
    unload();
}
END_TEST

/* ------------------------------------------------------------------ mining */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void encode_unit(const char *text, float *out, clipn_tokenizer *tok)
{
    clipn_error err;
    int32_t ids[77];
    ck_assert_int_eq(clipn_tokenize(tok, text, strlen(text), ids, 77, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 1, out, &err), CLIPN_OK);
    unit_rows(out, 1, clipn_model_config(model)->embed_dim);
}

static int cancel_at_once(void *user, size_t done, size_t total)
{
    (void)user;
    (void)done;
    (void)total;
    return 1;
}

START_TEST(test_mining)
{
    load_tiny();
    const char *classes[] = {"tench", "goldfish", "great white shark", "tiger shark", "hen"};
    clipn_word_lists *w = NULL;
    clipn_error err;
    ck_assert_int_eq(clipn_wordnet_read(WORDNET, &w, &err), CLIPN_OK);
    clipn_neg_opts o;
    clipn_neg_opts_default(&o);
    ck_assert(o.fraction == 0.15 && o.percentile == 0.95);
    o.fraction = 0.4;
    clipn_neg_labels *nl = NULL;
    ck_assert_msg(clipn_neg_labels_mine(ctx, classes, 5, (const char *const *)w->nouns,
                                        w->n_nouns, (const char *const *)w->adjectives,
                                        w->n_adjectives, &o, NULL, NULL, &nl, &err) == CLIPN_OK,
                  "%s", err.message);
    ck_assert_int_eq(nl->n_nouns, (int)(w->n_nouns * 0.4));
    ck_assert_int_eq(nl->n, (int)(w->n_nouns * 0.4) + (int)(w->n_adjectives * 0.4));
    /* each selected prompt's quantile, recomputed here one prompt at a time, and the order */
    clipn_tokenizer *tok = NULL;
    ck_assert_int_eq(clipn_tokenizer_from_model(model, &tok, &err), CLIPN_OK);
    const int E = clipn_model_config(model)->embed_dim;
    float id[5][64], f[64], cos[5];
    for (int c = 0; c < 5; c++) {
        char b[64];
        snprintf(b, sizeof b, "the nice %s", classes[c]);
        encode_unit(b, id[c], tok);
    }
    for (int j = 0; j < nl->n; j++) {
        ck_assert(j < nl->n_nouns ? !strncmp(nl->prompts[j], "the nice ", 9)
                                  : !strncmp(nl->prompts[j], "This is a ", 10));
        encode_unit(nl->prompts[j], f, tok);
        for (int c = 0; c < 5; c++) {
            double d = 0;
            for (int i = 0; i < E; i++)
                d += (double)f[i] * id[c][i];
            cos[c] = (float)d;
        }
        qsort(cos, 5, sizeof *cos, cmp_float);
        const double pos = 0.95 * 4, q = cos[3] + (pos - 3) * (cos[4] - cos[3]);
        ck_assert_msg(fabs(q - nl->quantile[j]) < 1e-5, "%s: %g vs %g", nl->prompts[j], q,
                      nl->quantile[j]);
        if (j > 0 && j != nl->n_nouns)
            ck_assert(nl->quantile[j] >= nl->quantile[j - 1]);
    }
    /* cancel from the progress callback */
    clipn_neg_labels *none = NULL;
    ck_assert_int_eq(clipn_neg_labels_mine(ctx, classes, 5, (const char *const *)w->nouns,
                                           w->n_nouns, NULL, 0, &o, cancel_at_once, NULL, &none,
                                           &err),
                     CLIPN_E_CANCELLED);
    ck_assert_ptr_null(none);
    o.fraction = 0;
    ck_assert_int_eq(clipn_neg_labels_mine(ctx, classes, 5, (const char *const *)w->nouns,
                                           w->n_nouns, NULL, 0, &o, NULL, NULL, &none, &err),
                     CLIPN_E_INVALID_ARG);
    clipn_tokenizer_free(tok);
    clipn_neg_labels_free(nl);
    clipn_word_lists_free(w);
    unload();
}
END_TEST

/* ------------------------------------------------------------------ head files */

START_TEST(test_heads_with_negatives_file)
{
    load_tiny();
    clipn_error err;
    const char *classes[] = {"tench", "goldfish", "shark"}, *tmpl[] = {"the nice {}"};
    const char *negs[] = {"the nice cell", "the nice time", "This is a red photo",
                          "the nice weekend", "This is a tonal photo"};
    clipn_heads *h = NULL, *back = NULL;
    ck_assert_int_eq(clipn_heads_build(ctx, classes, 3, tmpl, 1, NULL, 0, NULL, NULL, &h, &err),
                     CLIPN_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/clipn_test_neg_%ld.safetensors", test_tmp_dir(),
             (long)getpid());
    /* without negatives: a version-1 file, as before; loads with n_neg 0 */
    ck_assert_int_eq(clipn_heads_save(path, model, h, classes, tmpl, 1, NULL, 0, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_heads_load(path, model, &back, &err), CLIPN_OK);
    ck_assert_int_eq(back->n_neg, 0);
    ck_assert_ptr_null(back->neg);
    clipn_heads_free(back);

    ck_assert_int_eq(clipn_heads_add_negatives(ctx, h, negs, 5, 6, NULL, NULL, &err),
                     CLIPN_E_INVALID_ARG); /* more groups than negatives */
    ck_assert_int_eq(clipn_heads_add_negatives(ctx, h, negs, 5, 0, NULL, NULL, &err), CLIPN_OK);
    ck_assert_int_eq(h->neg_groups, 5); /* default: min(100, n) */
    ck_assert_int_eq(clipn_heads_add_negatives(ctx, h, negs, 5, 2, NULL, NULL, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_heads_save(path, model, h, classes, tmpl, 1, NULL, 0, &err), CLIPN_OK);
    ck_assert_msg(clipn_heads_load(path, model, &back, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_int_eq(back->n_neg, 5);
    ck_assert_int_eq(back->neg_groups, 2);
    ck_assert_mem_eq(back->neg, h->neg, 5 * (size_t)h->dim * sizeof(float));
    for (int j = 0; j < 5; j++)
        ck_assert_str_eq(back->neg_prompts[j], negs[j]);
    float f[64];
    fill(f, (size_t)h->dim, 9);
    clipn_scores a, b;
    ck_assert_int_eq(clipn_score(h, f, NULL, &a, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_score(back, f, NULL, &b, &err), CLIPN_OK);
    ck_assert(a.neglabel == b.neglabel && a.neglabel > 0 && a.neglabel < 1);
    clipn_heads_free(back);

    /* a version-1 header with heads.neg is refused (negatives need version 2) */
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf, fp);
    char *v = memmem(buf, got, "\"version\":\"2\"", 13);
    ck_assert_ptr_nonnull(v);
    fseek(fp, (long)(v - buf) + 11, SEEK_SET);
    fputc('1', fp);
    fclose(fp);
    ck_assert_int_eq(clipn_heads_load(path, model, &back, &err), CLIPN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.message, "heads.neg"));
    unlink(path);
    clipn_heads_free(h);
    unload();
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("methods");
    TCase *tc = tcase_create("neglabel");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_wordnet_fixture);
    tcase_add_test(tc, test_wordnet_refuses);
    tcase_add_test(tc, test_neglabel_grouping);
    tcase_add_test(tc, test_mining);
    tcase_add_test(tc, test_heads_with_negatives_file);
    suite_add_tcase(s, tc);
    TCase *gl = tcase_create("glmcm");
    tcase_set_timeout(gl, 60);
    tcase_add_test(gl, test_local_features);
    suite_add_tcase(s, gl);
    return s;
}
