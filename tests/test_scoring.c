/* CLIPN scores against the official formulas (tests/scoring_ref/make_scores_fixture.py),
 * template formatting, head files (round trip, damage, model fingerprint). */
#include "testutil.h"
#include "internal.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCORES FIXTURE("scoring/scores_cases.txt")

/* ------------------------------------------------------------------ scores */

typedef struct expected {
    int pred, ood_ctw, ood_atd;
    double v[6]; /* ctw atd msp maxlogit energy mcm */
} expected;

static void assert_close(int img, const char *what, double got, double want, double abs_tol)
{
    double tol = 1e-5 * fabs(want) + abs_tol;
    ck_assert_msg(fabs(got - want) <= tol, "image %d %s: got %.9g want %.9g", img, what, got,
                  want);
}

static void run_scores(int with_no)
{
    FILE *f = fopen(SCORES, "r");
    ck_assert_msg(f != NULL, "cannot open %s", SCORES);
    int C, D, N;
    ck_assert_int_eq(fscanf(f, "%d %d %d", &C, &D, &N), 3);
    clipn_heads heads = {.n_classes = C, .dim = D};
    heads.yes = malloc(sizeof(float) * C * D);
    float *no = malloc(sizeof(float) * C * D), *feat = malloc(sizeof(float) * D);
    float *probs = malloc(sizeof(float) * C);
    double *want_probs = malloc(sizeof(double) * C);
    for (int i = 0; i < C * D; i++)
        ck_assert_int_eq(fscanf(f, "%f", &heads.yes[i]), 1);
    for (int i = 0; i < C * D; i++)
        ck_assert_int_eq(fscanf(f, "%f", &no[i]), 1);
    heads.no = with_no ? no : NULL;
    static const char *names[6] = {"ctw", "atd", "msp", "maxlogit", "energy", "mcm"};
    int n_ood_ctw = 0;
    for (int img = 0; img < N; img++) {
        expected e;
        for (int i = 0; i < D; i++)
            ck_assert_int_eq(fscanf(f, "%f", &feat[i]), 1);
        ck_assert_int_eq(fscanf(f, "%d", &e.pred), 1);
        for (int k = 0; k < 6; k++)
            ck_assert_int_eq(fscanf(f, "%lf", &e.v[k]), 1);
        ck_assert_int_eq(fscanf(f, "%d %d", &e.ood_ctw, &e.ood_atd), 2);
        for (int c = 0; c < C; c++)
            ck_assert_int_eq(fscanf(f, "%lf", &want_probs[c]), 1);
        clipn_scores s;
        clipn_error err;
        ck_assert_int_eq(clipn_score(&heads, feat, probs, &s, &err), CLIPN_OK);
        ck_assert_int_eq(s.pred, e.pred);
        double got[6] = {s.ctw, s.atd, s.msp, s.maxlogit, s.energy, s.mcm};
        for (int k = with_no ? 0 : 2; k < 6; k++)
            assert_close(img, names[k], got[k], e.v[k], 1e-37);
        for (int c = 0; c < C; c++)
            assert_close(img, "prob", probs[c], want_probs[c], 1e-12);
        if (with_no) {
            ck_assert_int_eq(s.ood_ctw, e.ood_ctw);
            ck_assert_int_eq(s.ood_atd, e.ood_atd);
            n_ood_ctw += s.ood_ctw;
        } else {
            ck_assert(isnan(s.ctw) && isnan(s.atd));
            ck_assert_int_eq(s.ood_ctw, 0);
        }
    }
    if (with_no)
        ck_assert_int_gt(n_ood_ctw, 0); /* the fixture exercises both verdicts */
    fclose(f);
    free(heads.yes);
    free(no);
    free(feat);
    free(probs);
    free(want_probs);
}

START_TEST(test_scores_official) { run_scores(1); }
END_TEST

START_TEST(test_scores_without_no_tower) { run_scores(0); }
END_TEST

START_TEST(test_score_refuses)
{
    float yes[4] = {1, 0, 0, 1}, feat[2] = {NAN, 1};
    clipn_heads h = {.n_classes = 2, .dim = 2, .yes = yes};
    clipn_scores s;
    clipn_error err;
    ck_assert_int_eq(clipn_score(&h, feat, NULL, &s, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_score(NULL, feat, NULL, &s, &err), CLIPN_E_INVALID_ARG);
    /* a zero feature is normalised with eps as F.normalize does: uniform probabilities */
    float zero[2] = {0, 0}, probs[2];
    ck_assert_int_eq(clipn_score(&h, zero, probs, &s, &err), CLIPN_OK);
    ck_assert_float_eq(probs[0], 0.5f);
    ck_assert_int_eq(s.pred, 0);
}
END_TEST

/* ------------------------------------------------------------------ templates */

static void expect_format(const char *tmpl, const char *want)
{
    char *got = NULL;
    clipn_error err;
    ck_assert_msg(clipn_format_template(tmpl, "goldfish", &got, &err) == CLIPN_OK, "%s: %s",
                  tmpl, err.message);
    ck_assert_str_eq(got, want);
    free(got);
}

static void expect_refused(const char *tmpl)
{
    char *got = (char *)1;
    clipn_error err;
    ck_assert_msg(clipn_format_template(tmpl, "goldfish", &got, &err) == CLIPN_E_INVALID_ARG,
                  "accepted %s", tmpl);
    ck_assert_ptr_null(got);
    ck_assert_msg(strstr(err.message, tmpl) != NULL, "message does not quote: %s", err.message);
}

START_TEST(test_templates)
{
    /* the official lines keep their quote marks (and sometimes a trailing comma) */
    expect_format("'a bad photo of a {}.'", "'a bad photo of a goldfish.'");
    expect_format("'a photo of a {}.',", "'a photo of a goldfish.',");
    expect_format("a {0} and another {0}", "a goldfish and another goldfish");
    expect_format("{!s}", "goldfish");
    expect_format("{{literal}} {}", "{literal} goldfish");
    expect_format("}}{{", "}{");
    expect_format("no field at all", "no field at all");
    expect_format("", "");
    expect_refused("a {} {}");
    expect_refused("a {} {0}");
    expect_refused("a {1}");
    expect_refused("a {name}");
    expect_refused("a {:>10}");
    expect_refused("a {0!r}");
    expect_refused("unclosed {");
    expect_refused("single } brace");
}
END_TEST

/* ------------------------------------------------------------------ head files */

enum { E = 4, W = 3 };

/* A model with only what the fingerprint reads: config and projections. */
typedef struct fake_model {
    clipn_model m;
    float visual_proj[W * E], text_proj[W * E], text_proj_no[W * E];
} fake_model;

static void fake_model_init(fake_model *f)
{
    memset(f, 0, sizeof *f);
    f->m.config.format_version = 1;
    f->m.config.embed_dim = E;
    f->m.config.vision_width = W;
    f->m.config.text_width = W;
    f->m.config.has_no_tower = 1;
    for (int i = 0; i < W * E; i++) {
        f->visual_proj[i] = (float)i;
        f->text_proj[i] = (float)(2 * i);
        f->text_proj_no[i] = (float)(3 * i);
    }
    f->m.visual.proj = f->visual_proj;
    f->m.text.text_projection = f->text_proj;
    f->m.text_no.text_projection = f->text_proj_no;
}

static const char *classes[3] = {"tench", "goldfish", "great \"white\" shark"};
static const char *templates[2] = {"'a photo of a {}.'", "'a {} in the wild.'"};

static clipn_heads *make_heads(void)
{
    clipn_heads *h = calloc(1, sizeof *h);
    h->n_classes = 3;
    h->dim = E;
    h->yes = malloc(sizeof(float) * 3 * E);
    h->no = malloc(sizeof(float) * 3 * E);
    for (int i = 0; i < 3 * E; i++) {
        h->yes[i] = 0.5f * (float)((i % 3) - 1);
        h->no[i] = 0.25f * (float)(i % 5);
    }
    for (int c = 0; c < 3; c++) /* head rows are unit vectors */
        for (float *x = h->yes; x; x = x == h->yes ? h->no : NULL) {
            double ss = 0;
            for (int d = 0; d < E; d++)
                ss += (double)x[c * E + d] * x[c * E + d];
            for (int d = 0; d < E; d++)
                x[c * E + d] = (float)(x[c * E + d] / sqrt(ss));
        }
    return h;
}

/* Caller-owned buffer: a shared static ring was overwritten by nested calls, so a test
 * unlinked another test's path and left its own file behind. */
static const char *tmp_path(char buf[static 256], const char *tag)
{
    snprintf(buf, 256, "%s/clipn_test_heads_%ld_%s.safetensors", test_tmp_dir(),
             (long)getpid(), tag);
    return buf;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    fclose(f);
}

START_TEST(test_head_round_trip)
{
    fake_model fm;
    fake_model_init(&fm);
    clipn_heads *h = make_heads(), *back = NULL;
    clipn_error err;
    char path_buf[256];
    const char *path = tmp_path(path_buf, "rt");
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    ck_assert_msg(clipn_heads_load(path, &fm.m, &back, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_int_eq(back->n_classes, 3);
    ck_assert_int_eq(back->dim, E);
    ck_assert_mem_eq(back->yes, h->yes, sizeof(float) * 3 * E);
    ck_assert_mem_eq(back->no, h->no, sizeof(float) * 3 * E);
    for (int c = 0; c < 3; c++)
        ck_assert_str_eq(back->class_names[c], classes[c]);
    clipn_heads_free(back);

    /* heads without a no tower */
    free(h->no);
    h->no = NULL;
    fm.m.config.has_no_tower = 0;
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_OK);
    ck_assert_ptr_null(back->no);
    clipn_heads_free(back);
    clipn_heads_free(h);
    unlink(path);
}
END_TEST

START_TEST(test_head_other_model_refused)
{
    fake_model fm;
    fake_model_init(&fm);
    clipn_heads *h = make_heads(), *back = NULL;
    clipn_error err;
    char path_buf[256];
    const char *path = tmp_path(path_buf, "fp");
    char fp1[17], fp2[17];
    ck_assert_int_eq(clipn_model_fingerprint(&fm.m, fp1, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    fm.text_proj_no[5] += 1e-6f; /* a fine-tune of the same architecture */
    ck_assert_int_eq(clipn_model_fingerprint(&fm.m, fp2, &err), CLIPN_OK);
    ck_assert_str_ne(fp1, fp2);
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_null(back);
    ck_assert_ptr_nonnull(strstr(err.message, "another model"));
    /* no model given: no check */
    ck_assert_int_eq(clipn_heads_load(path, NULL, &back, &err), CLIPN_OK);
    clipn_heads_free(back);
    clipn_heads_free(h);
    unlink(path);
}
END_TEST

/* Replace the first occurrence of `from` in the file's bytes by `to` (same length). */
static void patch_and_expect_refusal(const unsigned char *orig, size_t len, const char *from,
                                     const char *to, fake_model *fm)
{
    unsigned char *b = malloc(len);
    memcpy(b, orig, len);
    size_t n = strlen(from);
    ck_assert_uint_eq(n, strlen(to));
    unsigned char *hit = memmem(b, len, from, n);
    ck_assert_msg(hit != NULL, "%s not in file", from);
    memcpy(hit, to, n);
    char path_buf[256];
    const char *path = tmp_path(path_buf, "patched");
    spit(path, b, len);
    clipn_heads *h = NULL;
    clipn_error err;
    clipn_status st = clipn_heads_load(path, &fm->m, &h, &err);
    ck_assert_msg(st != CLIPN_OK, "accepted a file with %s -> %s", from, to);
    ck_assert_ptr_null(h);
    ck_assert_ptr_nonnull(strstr(err.message, path));
    unlink(path);
    free(b);
}

START_TEST(test_head_damaged_refused)
{
    fake_model fm;
    fake_model_init(&fm);
    clipn_heads *h = make_heads(), *back = NULL;
    clipn_error err;
    char path_buf[256];
    const char *path = tmp_path(path_buf, "dmg");
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    size_t len;
    unsigned char *orig = slurp(path, &len);

    /* every truncation */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 7)) {
        spit(path, orig, cut);
        ck_assert_msg(clipn_heads_load(path, &fm.m, &back, &err) != CLIPN_OK, "cut %zu", cut);
        ck_assert_ptr_null(back);
    }
    /* header length beyond the file, and absurd */
    unsigned char *b = malloc(len);
    memcpy(b, orig, len);
    b[0] = 0xff;
    b[1] = 0xff;
    spit(path, b, len);
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_E_FORMAT);
    b[7] = 0x80;
    spit(path, b, len);
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_E_FORMAT);
    free(b);

    patch_and_expect_refusal(orig, len, "libclipn-heads", "libclipn-model", &fm);
    patch_and_expect_refusal(orig, len, "\"version\":\"1\"", "\"version\":\"9\"", &fm);
    patch_and_expect_refusal(orig, len, "\"F32\"", "\"F16\"", &fm);
    patch_and_expect_refusal(orig, len, "[3,4]", "[4,3]", &fm); /* same bytes, wrong classes */
    patch_and_expect_refusal(orig, len, "[3,4]", "[2,4]", &fm); /* offsets no longer match */
    patch_and_expect_refusal(orig, len, "[0,48]", "[4,52]", &fm); /* overlaps heads.no */
    patch_and_expect_refusal(orig, len, "heads.no", "heads.xx", &fm);
    patch_and_expect_refusal(orig, len, "[\\\"tench", "[1\\\"ench", &fm); /* bad class list */
    /* a key twice (cJSON's lookups take the first; other readers the last), and a class
       list of more values than classes */
    patch_and_expect_refusal(orig, len, "\"prompts_fingerprint\"", "\"model_fingerprint\"  ",
                             &fm);
    patch_and_expect_refusal(orig, len, "[\\\"tench\\\",", "[1,1,1,1,1,", &fm);

    /* a NaN in the data */
    b = malloc(len);
    memcpy(b, orig, len);
    float nan = NAN;
    memcpy(b + len - 4, &nan, 4);
    spit(path, b, len);
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.message, "non-finite"));
    free(b);

    /* single byte flips anywhere never crash (run under ASan in make test-asan) */
    b = malloc(len);
    for (size_t i = 0; i < len; i += 3) {
        memcpy(b, orig, len);
        b[i] ^= 0x5a;
        spit(path, b, len);
        if (clipn_heads_load(path, &fm.m, &back, &err) == CLIPN_OK)
            clipn_heads_free(back);
    }
    free(b);

    ck_assert_int_eq(clipn_heads_load("/nonexistent/heads.safetensors", NULL, &back, &err),
                     CLIPN_E_IO);
    ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/heads.safetensors"));
    free(orig);
    clipn_heads_free(h);
    unlink(path);
}
END_TEST

/* clipn_heads_save writes a temporary file beside the target and renames it into place:
 * a failed save leaves what was there, removes only its own temporary file, and never
 * replaces something that is not a regular file. */
static size_t count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

START_TEST(test_head_save_atomic)
{
    fake_model fm;
    fake_model_init(&fm);
    clipn_heads *h = make_heads(), *back = NULL;
    clipn_error err;
    char dir[256], path[300], link[300], fifo[300];
    snprintf(dir, sizeof dir, "%s/clipn_heads_atomic_%ld", test_tmp_dir(), (long)getpid());
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/heads.safetensors", dir);
    const char old[] = "precious data, not a head file";
    spit(path, old, sizeof old);

    /* a write that fails half way (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG): old file kept,
       no temporary file left (before: the target was truncated, then unlinked) */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit keep, small = {.rlim_cur = 64, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &keep), 0);
    small.rlim_max = keep.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_E_IO);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &keep), 0);
    ck_assert_ptr_nonnull(strstr(err.message, path));
    size_t len;
    unsigned char *now = slurp(path, &len);
    ck_assert_uint_eq(len, sizeof old);
    ck_assert_mem_eq(now, old, sizeof old);
    free(now);
    ck_assert_uint_eq(count_dir_entries(dir), 1);

    /* success replaces it */
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_OK);
    clipn_heads_free(back);
    ck_assert_uint_eq(count_dir_entries(dir), 1);

    /* through a symlink: the file it points to is replaced, the link stays a link */
    snprintf(link, sizeof link, "%s/link.safetensors", dir);
    ck_assert_int_eq(symlink("heads.safetensors", link), 0);
    spit(path, old, sizeof old);
    ck_assert_int_eq(clipn_heads_save(link, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    struct stat st;
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_OK);
    clipn_heads_free(back);
    ck_assert_uint_eq(count_dir_entries(dir), 2);

    /* not a regular file (a FIFO here; a device node alike): refused, left in place */
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(clipn_heads_save(fifo, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_E_IO);
    ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));
    ck_assert_int_eq(lstat(fifo, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    /* and heads are never read from one (it would block forever) */
    ck_assert_int_eq(clipn_heads_load(fifo, NULL, &back, &err), CLIPN_E_IO);
    ck_assert_ptr_null(back);
    ck_assert_int_eq(clipn_heads_save("/dev/null", &fm.m, h, classes, templates, 2, NULL, 0,
                                      &err),
                     CLIPN_E_IO);
    ck_assert_int_eq(lstat("/dev/null", &st), 0);
    ck_assert(S_ISCHR(st.st_mode));
    /* a missing folder */
    char missing[320];
    snprintf(missing, sizeof missing, "%s/no/such/dir/h.safetensors", dir);
    ck_assert_int_eq(clipn_heads_save(missing, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_E_IO);
    ck_assert_uint_eq(count_dir_entries(dir), 3);

    unlink(fifo);
    unlink(link);
    unlink(path);
    rmdir(dir);
    clipn_heads_free(h);
}
END_TEST

/* `clipn head --out <the model>` left a 3 KB file where the model was (and died of SIGBUS
 * reading the mapping it had truncated). */
START_TEST(test_head_save_refuses_model_file)
{
    char path[256];
    snprintf(path, sizeof path, "%s/clipn_model_%ld.safetensors", test_tmp_dir(),
             (long)getpid());
    size_t len;
    unsigned char *model_bytes = slurp(FIXTURE("model/tiny_clipn.safetensors"), &len);
    spit(path, model_bytes, len);
    clipn_model *m = NULL;
    clipn_error err;
    ck_assert_int_eq(clipn_model_load(path, NULL, &m, &err), CLIPN_OK);
    clipn_heads *h = calloc(1, sizeof *h);
    h->n_classes = 1;
    h->dim = clipn_model_config(m)->embed_dim;
    h->yes = calloc((size_t)h->dim, sizeof(float));
    h->no = calloc((size_t)h->dim, sizeof(float));
    h->yes[0] = h->no[1] = 1.0f;
    const char *one[] = {"cat"};
    ck_assert_int_eq(clipn_heads_save(path, m, h, one, NULL, 0, NULL, 0, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "model file"));
    size_t len2;
    unsigned char *after = slurp(path, &len2);
    ck_assert_uint_eq(len2, len);
    ck_assert_mem_eq(after, model_bytes, len);
    free(after);
    clipn_heads_free(h);
    clipn_model_free(m);
    free(model_bytes);
    unlink(path);
}
END_TEST

START_TEST(test_head_save_refuses_null_entries)
{
    fake_model fm;
    fake_model_init(&fm);
    clipn_heads *h = make_heads();
    clipn_error err;
    char path_buf[256];
    const char *path = tmp_path(path_buf, "null");
    const char *bad_classes[3] = {"a", NULL, "c"};
    const char *bad_templates[2] = {"{}", NULL};
    /* before: strlen(NULL) in the prompts fingerprint (SIGSEGV) */
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, bad_classes, templates, 2, NULL, 0, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, bad_templates, 2, NULL, 0, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "templates entry 1 is NULL"));
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, bad_templates, 2,
                                      &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, -1, &err),
                     CLIPN_OK); /* no_templates NULL: the count is not read */
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, templates, -1,
                                      &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(access(path, F_OK), 0);
    unlink(path);
    clipn_heads_free(h);
}
END_TEST

/* Heads with a zero, non-finite or unnormalised row are refused on save and on load. */
START_TEST(test_head_rows_must_be_unit)
{
    fake_model fm;
    fake_model_init(&fm);
    clipn_heads *h = make_heads(), *back = NULL;
    clipn_error err;
    char path_buf[256];
    const char *path = tmp_path(path_buf, "rows");
    float *rows[2] = {h->yes, h->no};
    for (int k = 0; k < 2; k++) {
        float keep[E];
        memcpy(keep, rows[k] + E, sizeof keep);
        memset(rows[k] + E, 0, sizeof keep);
        ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                         CLIPN_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.message, "row 1 is zero"));
        rows[k][E] = NAN;
        ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                         CLIPN_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.message, "non-finite"));
        memcpy(rows[k] + E, keep, sizeof keep);
        rows[k][E + 3] += 0.1f;
        ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                         CLIPN_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.message, "unit"));
        memcpy(rows[k] + E, keep, sizeof keep);
    }
    ck_assert_int_eq(clipn_heads_save(path, &fm.m, h, classes, templates, 2, NULL, 0, &err),
                     CLIPN_OK);
    /* on load: the same file with a row of heads.no scaled, then zeroed */
    size_t len;
    unsigned char *orig = slurp(path, &len);
    unsigned char *b = malloc(len);
    for (int zero = 0; zero < 2; zero++) {
        memcpy(b, orig, len);
        float *last = (float *)(void *)(b + len - sizeof(float) * E);
        for (int d = 0; d < E; d++) {
            float v;
            memcpy(&v, &last[d], 4);
            v = zero ? 0.0f : v * 0.9f;
            memcpy(&last[d], &v, 4);
        }
        spit(path, b, len);
        ck_assert_int_eq(clipn_heads_load(path, &fm.m, &back, &err), CLIPN_E_FORMAT);
        ck_assert_ptr_null(back);
        ck_assert_ptr_nonnull(strstr(err.message, zero ? "heads.no row 2 is zero"
                                                       : "heads.no row 2 has norm"));
    }
    free(b);
    free(orig);
    unlink(path);
    clipn_heads_free(h);
}
END_TEST

/* ------------------------------------------------------------------ heads on a real model */

#define TINY_MODEL FIXTURE("model/tiny_clipn.safetensors")
#define TINY_PLAIN FIXTURE("model/tiny_openclip_f16.safetensors")

typedef struct progress_log {
    int calls, cancel_at;
    size_t last_done, last_total;
} progress_log;

static int log_progress(void *user, size_t done, size_t total)
{
    progress_log *l = user;
    l->calls++;
    ck_assert_uint_gt(done, l->last_done);
    l->last_done = done;
    l->last_total = total;
    return l->cancel_at && l->calls >= l->cancel_at;
}

/* yes_c by hand through the public API, one prompt per encode, float32 sum in template
 * order as the official code; heads_build batches across classes and templates. */
static void expected_head(clipn_ctx *ctx, const clipn_model *m, int no, const char *cls,
                          const char *const *tmpl, int n_tmpl, float *out)
{
    const clipn_config *cfg = clipn_model_config(m);
    int E = cfg->embed_dim, L = cfg->context_length;
    int32_t *ids = malloc(sizeof(int32_t) * L);
    float *f = malloc(sizeof(float) * E);
    clipn_tokenizer *tok;
    clipn_error err;
    ck_assert_int_eq(clipn_tokenizer_from_model(m, &tok, &err), CLIPN_OK);
    memset(out, 0, sizeof(float) * E);
    for (int t = 0; t < n_tmpl; t++) {
        char *text;
        ck_assert_int_eq(clipn_format_template(tmpl[t], cls, &text, &err), CLIPN_OK);
        ck_assert_int_eq(clipn_tokenize(tok, text, strlen(text), ids, L, &err), CLIPN_OK);
        free(text);
        ck_assert_int_eq((no ? clipn_encode_no_text : clipn_encode_text)(ctx, ids, 1, f, &err),
                         CLIPN_OK);
        double ss = 0;
        for (int i = 0; i < E; i++)
            ss += (double)f[i] * f[i];
        for (int i = 0; i < E; i++)
            out[i] += (float)(f[i] / sqrt(ss));
    }
    double ss = 0;
    for (int i = 0; i < E; i++)
        ss += (double)out[i] * out[i];
    for (int i = 0; i < E; i++)
        out[i] = (float)(out[i] / sqrt(ss));
    clipn_tokenizer_free(tok);
    free(ids);
    free(f);
}

START_TEST(test_heads_build_tiny_model)
{
    clipn_model *m = NULL;
    clipn_ctx *ctx = NULL;
    clipn_error err;
    ck_assert_msg(clipn_model_load(TINY_MODEL, NULL, &m, &err) == CLIPN_OK, "%s", err.message);
    clipn_ctx_opts opts = {.max_batch = 5, .threads = 1}; /* batches straddle templates */
    ck_assert_int_eq(clipn_ctx_new(m, &opts, &ctx, &err), CLIPN_OK);
    static const char *cls[4] = {"tench", "goldfish", "great white shark", "tiger shark"};
    static const char *yes_t[3] = {"'a photo of a {}.'", "'a {} in the wild.'", "{0}, a {0}"};
    static const char *no_t[2] = {"'a photo of no {}.'", "'not a {}.'"};
    progress_log log = {0};
    clipn_heads *h = NULL;
    ck_assert_msg(clipn_heads_build(ctx, cls, 4, yes_t, 3, no_t, 2, log_progress, &log, &h,
                                    &err) == CLIPN_OK, "%s", err.message);
    ck_assert_uint_eq(log.last_total, 4 * 3 + 4 * 2);
    ck_assert_uint_eq(log.last_done, log.last_total);
    ck_assert_int_eq(log.calls, 3 + 2); /* ceil(12/5) yes batches + ceil(8/5) no batches */
    int E = clipn_model_config(m)->embed_dim;
    ck_assert_int_eq(h->dim, E);
    ck_assert_ptr_nonnull(h->no);
    float *want = malloc(sizeof(float) * E);
    for (int c = 0; c < 4; c++) {
        expected_head(ctx, m, 0, cls[c], yes_t, 3, want);
        for (int i = 0; i < E; i++)
            ck_assert_float_eq_tol(h->yes[c * E + i], want[i], 2e-5f);
        expected_head(ctx, m, 1, cls[c], no_t, 2, want);
        for (int i = 0; i < E; i++)
            ck_assert_float_eq_tol(h->no[c * E + i], want[i], 2e-5f);
    }
    /* different classes give different heads */
    ck_assert(memcmp(h->yes, h->yes + E, sizeof(float) * E) != 0);
    clipn_heads_free(h);

    /* cancellation after the first batch */
    progress_log stop = {.cancel_at = 1};
    h = (clipn_heads *)1;
    ck_assert_int_eq(clipn_heads_build(ctx, cls, 4, yes_t, 3, NULL, 0, log_progress, &stop, &h,
                                       &err), CLIPN_E_CANCELLED);
    ck_assert_ptr_null(h);
    ck_assert_int_eq(stop.calls, 1);

    /* a malformed template is refused before anything is encoded */
    static const char *bad_t[2] = {"'a photo of a {}.'", "'a {} and a {}'"};
    progress_log none = {0};
    ck_assert_int_eq(clipn_heads_build(ctx, cls, 4, bad_t, 2, NULL, 0, log_progress, &none, &h,
                                       &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(none.calls, 0);
    ck_assert_ptr_nonnull(strstr(err.message, "'a {} and a {}'"));
    ck_assert_int_eq(clipn_heads_build(ctx, cls, 0, yes_t, 3, NULL, 0, NULL, NULL, &h, &err),
                     CLIPN_E_INVALID_ARG);
    free(want);
    clipn_ctx_free(ctx);
    clipn_model_free(m);
}
END_TEST

START_TEST(test_heads_build_plain_clip)
{
    clipn_model *m = NULL;
    clipn_ctx *ctx = NULL;
    clipn_error err;
    ck_assert_msg(clipn_model_load(TINY_PLAIN, NULL, &m, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_int_eq(clipn_ctx_new(m, NULL, &ctx, &err), CLIPN_OK);
    static const char *cls[2] = {"cat", "dog"}, *t[1] = {"a photo of a {}."};
    clipn_heads *h = NULL;
    ck_assert_int_eq(clipn_heads_build(ctx, cls, 2, t, 1, NULL, 0, NULL, NULL, &h, &err),
                     CLIPN_OK);
    ck_assert_ptr_null(h->no); /* no "no" tower: CTW/ATD unavailable */
    int E = h->dim;
    float *feat = calloc((size_t)E, sizeof(float));
    memcpy(feat, h->yes + E, sizeof(float) * E); /* the dog head itself */
    clipn_scores s;
    ck_assert_int_eq(clipn_score(h, feat, NULL, &s, &err), CLIPN_OK);
    ck_assert_int_eq(s.pred, 1);
    ck_assert(isnan(s.ctw) && isnan(s.atd));
    ck_assert(s.msp > 0.5f);
    free(feat);
    clipn_heads_free(h);
    clipn_ctx_free(ctx);
    clipn_model_free(m);
}
END_TEST

/* The embedded template tables equal the data/ files line for line (CR/LF stripped). */
static void check_table(clipn_template_set which, const char *path)
{
    const char *const *t = NULL;
    int n = clipn_official_templates(which, &t);
    ck_assert_int_eq(n, 128);
    ck_assert_ptr_nonnull(t);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[256];
    int k = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        ck_assert_int_lt(k, n);
        ck_assert_str_eq(t[k], line);
        ck_assert_ptr_nonnull(strstr(t[k], "{}"));
        k++;
    }
    fclose(f);
    ck_assert_int_eq(k, n);
}

START_TEST(test_official_templates)
{
    check_table(CLIPN_TEMPLATES_OFFICIAL, "data/clipn_templates_official.txt");
    check_table(CLIPN_TEMPLATES_NO_HANDCRAFTED, "data/clipn_templates_no_handcrafted.txt");
    const char *const *t = (const char *const *)1;
    ck_assert_int_eq(clipn_official_templates((clipn_template_set)7, &t), 0);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(clipn_official_templates(CLIPN_TEMPLATES_OFFICIAL, NULL), 128);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("scoring");
    TCase *tc = tcase_create("scores");
    tcase_add_test(tc, test_scores_official);
    tcase_add_test(tc, test_scores_without_no_tower);
    tcase_add_test(tc, test_score_refuses);
    tcase_add_test(tc, test_templates);
    tcase_add_test(tc, test_official_templates);
    suite_add_tcase(s, tc);
    TCase *hf = tcase_create("head_file");
    tcase_set_timeout(hf, 60);
    tcase_add_test(hf, test_head_round_trip);
    tcase_add_test(hf, test_head_other_model_refused);
    tcase_add_test(hf, test_head_damaged_refused);
    tcase_add_test(hf, test_head_save_atomic);
    tcase_add_test(hf, test_head_save_refuses_model_file);
    tcase_add_test(hf, test_head_save_refuses_null_entries);
    tcase_add_test(hf, test_head_rows_must_be_unit);
    suite_add_tcase(s, hf);
    TCase *hb = tcase_create("heads_build");
    tcase_set_timeout(hb, 60);
    tcase_add_test(hb, test_heads_build_tiny_model);
    tcase_add_test(hb, test_heads_build_plain_clip);
    suite_add_tcase(s, hb);
    return s;
}
