/* Allocation-failure loops over the library's file and formatting paths, SQLite style: for
 * N = 1, 2, ... the N-th allocation of a workload fails, and the workload must either
 * return an error with a message or give exactly the clean run's result; N grows until a
 * run completes without reaching N. Allocations are counted by replacing malloc, calloc,
 * realloc and the aligned allocators in this test binary, which glibc supports and which
 * also catches the C library's own allocations (vsnprintf's, cJSON's, zlib's): that is
 * how clipn_config_to_json was found dropping text. Under ASan/UBSan (make test-asan)
 * only the library's own allocations are failed (through -Wl,--wrap), and LeakSanitizer
 * checks the error paths free everything.
 * Each workload's counts are printed; the whole suite takes a few seconds. */
#include "testutil.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#define TINY_MODEL FIXTURE("model/tiny_clipn.safetensors")
#define VOCAB "weights_tools/bpe_simple_vocab_16e6.txt.gz"

static long armed, seen, fail_at; /* counting while armed; fail the fail_at-th */

static int should_fail(void)
{
    if (!__atomic_load_n(&armed, __ATOMIC_RELAXED))
        return 0;
    if (__atomic_add_fetch(&seen, 1, __ATOMIC_RELAXED) != fail_at)
        return 0;
    errno = ENOMEM; /* as malloc does */
    return 1;
}

/* The library's (and this file's) calls, through -Wl,--wrap (Makefile). */
void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
char *__real_strdup(const char *);
int __real_posix_memalign(void **, size_t, size_t);
void *__real_aligned_alloc(size_t, size_t);
#ifndef UNDER_SANITIZER
/* Without a sanitizer, malloc itself is replaced below and counts every allocation, the
 * C library's and the shared libraries' included: the wrappers only forward. */
void *__wrap_malloc(size_t n) { return __real_malloc(n); }
void *__wrap_calloc(size_t a, size_t b) { return __real_calloc(a, b); }
void *__wrap_realloc(void *p, size_t n) { return __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return __real_strdup(s); }
int __wrap_posix_memalign(void **o, size_t a, size_t n) { return __real_posix_memalign(o, a, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return __real_aligned_alloc(a, n); }

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

/* exported (the build uses -fvisibility=hidden), so that the shared libraries' calls,
 * libc's own included, come here too */
#define EXPORT __attribute__((visibility("default")))
EXPORT void *malloc(size_t n) { return should_fail() ? NULL : __libc_malloc(n); }
EXPORT void *calloc(size_t a, size_t b) { return should_fail() ? NULL : __libc_calloc(a, b); }
EXPORT void *realloc(void *p, size_t n) { return should_fail() ? NULL : __libc_realloc(p, n); }
EXPORT void free(void *p) { __libc_free(p); }
EXPORT void *memalign(size_t a, size_t n) { return should_fail() ? NULL : __libc_memalign(a, n); }
EXPORT void *aligned_alloc(size_t a, size_t n)
{
    return should_fail() ? NULL : __libc_memalign(a, n);
}
EXPORT int posix_memalign(void **out, size_t a, size_t n)
{
    if (should_fail())
        return ENOMEM;
    void *p = __libc_memalign(a, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
#else
/* Under ASan/UBSan the runtime owns malloc: only the library's own allocations (and
 * stb_image's, compiled into it) are failed, and LeakSanitizer checks that every error
 * path frees what it allocated. */
void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t a, size_t b) { return should_fail() ? NULL : __real_calloc(a, b); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }
int __wrap_posix_memalign(void **o, size_t a, size_t n)
{
    return should_fail() ? ENOMEM : __real_posix_memalign(o, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    return should_fail() ? NULL : __real_aligned_alloc(a, n);
}
#endif

/* One workload: run(user, err) returns a status; on success check(user) compares with the
 * clean run and cleanup(user) releases what it made. */
typedef struct workload {
    const char *name;
    clipn_status (*run)(void *user, clipn_error *err);
    void (*check)(void *user);   /* the result equals the clean run's */
    void (*cleanup)(void *user); /* after every run, success or not */
    void *user;
} workload;

static void fault_loop(const workload *w)
{
    clipn_error err;
    /* the clean run, counted */
    __atomic_store_n(&seen, 0, __ATOMIC_RELAXED);
    fail_at = -1;
    armed = 1;
    clipn_status st = w->run(w->user, &err);
    armed = 0;
    ck_assert_msg(st == CLIPN_OK, "%s: clean run failed: %s", w->name, err.message);
    long total = seen;
    w->check(w->user);
    w->cleanup(w->user);
    int nomem = 0, other = 0, ok = 0;
    for (long n = 1; n <= total; n++) {
        memset(&err, 0, sizeof err);
        __atomic_store_n(&seen, 0, __ATOMIC_RELAXED);
        fail_at = n;
        armed = 1;
        st = w->run(w->user, &err);
        armed = 0;
        if (st == CLIPN_OK) {
            w->check(w->user); /* the failure was absorbed: the result must be intact */
            ok++;
        } else {
            ck_assert_msg(err.code == st && err.message[0], "%s: allocation %ld failed, "
                          "status %s without a message", w->name, n, clipn_status_name(st));
            if (st == CLIPN_E_NOMEM)
                nomem++;
            else
                other++;
            /* reported as what it is: not as a corrupt file or an I/O error */
            ck_assert_msg(st == CLIPN_E_NOMEM, "%s: allocation %ld failed -> %s: %s", w->name,
                          n, clipn_status_name(st), err.message);
        }
        w->cleanup(w->user);
    }
    printf("  %-28s %4ld allocations: %d CLIPN_E_NOMEM, %d other errors, %d absorbed\n",
           w->name, total, nomem, other, ok);
}

/* ------------------------------------------------------------------ workloads */

static clipn_model *shared_model; /* loaded outside the loops */

static clipn_model *load_shared(void)
{
    clipn_error err;
    ck_assert_int_eq(clipn_model_load(TINY_MODEL, NULL, &shared_model, &err), CLIPN_OK);
    return shared_model;
}

/* clipn_config_to_json + clipn_model_fingerprint */
/* (No ck_assert while armed: Check allocates to record each one, and exits when it cannot.) */
typedef struct fmt_job {
    char json[4096], want_json[4096], fp[17], want_fp[17];
    int partial;
} fmt_job;

static clipn_status run_format(void *u, clipn_error *err)
{
    fmt_job *j = u;
    size_t n = clipn_config_to_json(clipn_model_config(shared_model), j->json, sizeof j->json);
    j->partial |= strlen(j->json) != n; /* never a partial text */
    if (n == 0)
        return clipn_fail(err, CLIPN_E_NOMEM, "clipn_config_to_json failed");
    return clipn_model_fingerprint(shared_model, j->fp, err);
}
static void check_format(void *u)
{
    fmt_job *j = u;
    ck_assert(!j->partial);
    ck_assert_str_eq(j->json, j->want_json);
    ck_assert_str_eq(j->fp, j->want_fp);
}
static void no_cleanup(void *u) { (void)u; }

START_TEST(faults_config_json_and_fingerprint)
{
    load_shared();
    static fmt_job j;
    clipn_error err;
    ck_assert_uint_gt(clipn_config_to_json(clipn_model_config(shared_model), j.want_json,
                                           sizeof j.want_json), 0);
    ck_assert_int_eq(clipn_model_fingerprint(shared_model, j.want_fp, &err), CLIPN_OK);
    workload w = {"config json + fingerprint", run_format, check_format, no_cleanup, &j};
    fault_loop(&w);
    clipn_model_free(shared_model);
}
END_TEST

/* clipn_model_load */
typedef struct load_job {
    const char *path;
    clipn_precision precision;
    clipn_model *m;
    char want_json[4096], want_fp[17];
} load_job;

static clipn_status run_load(void *u, clipn_error *err)
{
    load_job *j = u;
    const clipn_load_opts o = {.precision = j->precision};
    return clipn_model_load(j->path, &o, &j->m, err);
}
static void check_load(void *u)
{
    load_job *j = u;
    char json[4096], fp[17];
    clipn_error err;
    ck_assert_uint_gt(clipn_config_to_json(clipn_model_config(j->m), json, sizeof json), 0);
    ck_assert_str_eq(json, j->want_json);
    ck_assert_int_eq(clipn_model_fingerprint(j->m, fp, &err), CLIPN_OK);
    ck_assert_str_eq(fp, j->want_fp);
}
static void cleanup_load(void *u)
{
    load_job *j = u;
    clipn_model_free(j->m);
    j->m = NULL;
}

START_TEST(faults_model_load)
{
    /* f32; an int8 file (I8 weights dequantized, then quantized per model at load; I8
       token embeddings in place); an int8 file with F16 token embeddings and the f32 file
       at INT8 (embeddings quantized at load) */
    static const struct {
        const char *path, *what;
        clipn_precision precision;
    } files[] = {
        {TINY_MODEL, "clipn_model_load", CLIPN_PRECISION_DEFAULT},
        {FIXTURE("model/tiny_clipn_int8.safetensors"), "clipn_model_load (int8)",
         CLIPN_PRECISION_DEFAULT},
        {FIXTURE("model/tiny_clipn_int8_f16emb.safetensors"),
         "clipn_model_load (int8, F16 embeddings)", CLIPN_PRECISION_DEFAULT},
        {TINY_MODEL, "clipn_model_load (f32 at INT8)", CLIPN_PRECISION_INT8},
    };
    static load_job j;
    clipn_error err;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        j.path = files[i].path;
        j.precision = files[i].precision;
        ck_assert_int_eq(run_load(&j, &err), CLIPN_OK);
        clipn_config_to_json(clipn_model_config(j.m), j.want_json, sizeof j.want_json);
        ck_assert_int_eq(clipn_model_fingerprint(j.m, j.want_fp, &err), CLIPN_OK);
        cleanup_load(&j);
        workload w = {files[i].what, run_load, check_load, cleanup_load, &j};
        fault_loop(&w);
    }
}
END_TEST

/* clipn_heads_save then clipn_heads_load, over an existing file that a failed save must
 * leave as it was */
typedef struct heads_job {
    char dir[256], path[300];
    clipn_heads heads, *back;
    float *yes, *no;
    int wrong_file; /* a failed save changed the file, or a successful one did not */
} heads_job;

static const char OLD_CONTENT[] = "the previous file";
static const char *const H_CLASSES[] = {"cat", "dog \"x\""};
static const char *const H_TEMPLATES[] = {"a photo of a {}.", "{}"};

static void write_old(const char *path)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(OLD_CONTENT, 1, sizeof OLD_CONTENT, f), sizeof OLD_CONTENT);
    ck_assert_int_eq(fclose(f), 0);
}

static int is_old(const char *path)
{
    long keep = armed; /* the test's own reading is not under test */
    armed = 0;
    char buf[64] = {0};
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    armed = keep;
    return n == sizeof OLD_CONTENT && memcmp(buf, OLD_CONTENT, n) == 0;
}

static clipn_status run_heads(void *u, clipn_error *err)
{
    heads_job *j = u;
    clipn_status st = clipn_heads_save(j->path, shared_model, &j->heads, H_CLASSES,
                                       H_TEMPLATES, 2, NULL, 0, err);
    int old = is_old(j->path);
    j->wrong_file |= st == CLIPN_OK ? old : !old; /* checked in cleanup, unarmed */
    if (st != CLIPN_OK)
        return st;
    return clipn_heads_load(j->path, shared_model, &j->back, err);
}
static void check_heads(void *u)
{
    heads_job *j = u;
    size_t n = (size_t)j->heads.n_classes * (size_t)j->heads.dim * sizeof(float);
    ck_assert_int_eq(j->back->n_classes, 2);
    ck_assert_mem_eq(j->back->yes, j->yes, n);
    ck_assert_mem_eq(j->back->no, j->no, n);
    ck_assert_str_eq(j->back->class_names[1], H_CLASSES[1]);
}
static void cleanup_heads(void *u)
{
    heads_job *j = u;
    ck_assert_msg(!j->wrong_file, "a failed save changed the file, or a successful one "
                  "did not");
    clipn_heads_free(j->back);
    j->back = NULL;
    write_old(j->path);
    /* nothing but the target in the folder: no temporary file left behind */
    char probe[400];
    snprintf(probe, sizeof probe, "ls -A '%s' | wc -l", j->dir);
    FILE *p = popen(probe, "r");
    ck_assert_ptr_nonnull(p);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    ck_assert_int_eq(n, 1);
}

START_TEST(faults_heads_save_and_load)
{
    load_shared();
    static heads_job j;
    snprintf(j.dir, sizeof j.dir, "%s/clipn_faults_%ld", test_tmp_dir(), (long)getpid());
    ck_assert_int_eq(mkdir(j.dir, 0700), 0);
    snprintf(j.path, sizeof j.path, "%s/heads.safetensors", j.dir);
    int D = clipn_model_config(shared_model)->embed_dim;
    j.yes = calloc(2 * (size_t)D, sizeof(float));
    j.no = calloc(2 * (size_t)D, sizeof(float));
    j.yes[0] = j.yes[D + 1] = j.no[2] = j.no[D + 3] = 1.0f;
    j.heads = (clipn_heads){.n_classes = 2, .dim = D, .yes = j.yes, .no = j.no};
    write_old(j.path);
    workload w = {"clipn_heads_save + load", run_heads, check_heads, cleanup_heads, &j};
    fault_loop(&w);
    unlink(j.path);
    rmdir(j.dir);
    free(j.yes);
    free(j.no);
    clipn_model_free(shared_model);
}
END_TEST

/* clipn_preprocess_file on one file of each decoder */
typedef struct image_job {
    const char *path;
    float out[3 * 32 * 32], want[3 * 32 * 32];
} image_job;

static clipn_status run_image(void *u, clipn_error *err)
{
    image_job *j = u;
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    o.image_size = 32;
    return clipn_preprocess_file(j->path, &o, j->out, err);
}
static void check_image(void *u)
{
    image_job *j = u;
    ck_assert_mem_eq(j->out, j->want, sizeof j->out);
}

START_TEST(faults_preprocess_file)
{
    static const char *const files[] = {FIXTURE("images/photo_chelsea_q80.jpg"),
                                        FIXTURE("images/edge_palette.png"),
                                        FIXTURE("images/edge_rgb_top_down.bmp"),
                                        FIXTURE("images/edge_palette_trns.gif")};
    static image_job j;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        j.path = files[i];
        clipn_error err;
        ck_assert_int_eq(run_image(&j, &err), CLIPN_OK);
        memcpy(j.want, j.out, sizeof j.want);
        workload w = {strrchr(files[i], '/') + 1, run_image, check_image, no_cleanup, &j};
        fault_loop(&w);
    }
}
END_TEST

/* clipn_tokenizer_from_file (gzip) then one text */
typedef struct tok_job {
    clipn_tokenizer *tok;
    int32_t ids[77], want[77];
} tok_job;

static clipn_status run_tok(void *u, clipn_error *err)
{
    tok_job *j = u;
    clipn_status st = clipn_tokenizer_from_file(VOCAB, &j->tok, err);
    if (st != CLIPN_OK)
        return st;
    static const char text[] = "A photo of a caf\xc3\xa9 &amp; a dog, don't!";
    return clipn_tokenize(j->tok, text, sizeof text - 1, j->ids, 77, err);
}
static void check_tok(void *u)
{
    tok_job *j = u;
    ck_assert_mem_eq(j->ids, j->want, sizeof j->ids);
}
static void cleanup_tok(void *u)
{
    tok_job *j = u;
    clipn_tokenizer_free(j->tok);
    j->tok = NULL;
}

START_TEST(faults_tokenizer_from_file)
{
    static tok_job j;
    clipn_error err;
    ck_assert_int_eq(run_tok(&j, &err), CLIPN_OK);
    memcpy(j.want, j.ids, sizeof j.want);
    cleanup_tok(&j);
    workload w = {"clipn_tokenizer_from_file", run_tok, check_tok, cleanup_tok, &j};
    fault_loop(&w);
}
END_TEST
/* clipn_ctx_new + clipn_heads_build on the tiny model */
typedef struct build_job {
    clipn_ctx *ctx;
    clipn_heads *h, *want;
} build_job;

static clipn_status run_build(void *u, clipn_error *err)
{
    build_job *j = u;
    clipn_ctx_opts o = {.max_batch = 2, .threads = 1};
    clipn_status st = clipn_ctx_new(shared_model, &o, &j->ctx, err);
    if (st != CLIPN_OK)
        return st;
    return clipn_heads_build(j->ctx, H_CLASSES, 2, H_TEMPLATES, 2, NULL, 0, NULL, NULL, &j->h,
                             err);
}
static void check_build(void *u)
{
    build_job *j = u;
    size_t n = (size_t)j->want->n_classes * (size_t)j->want->dim * sizeof(float);
    ck_assert_mem_eq(j->h->yes, j->want->yes, n);
    ck_assert_mem_eq(j->h->no, j->want->no, n);
}
static void cleanup_build(void *u)
{
    build_job *j = u;
    clipn_heads_free(j->h);
    clipn_ctx_free(j->ctx);
    j->h = NULL;
    j->ctx = NULL;
}

START_TEST(faults_heads_build)
{
    load_shared();
    static build_job j;
    clipn_error err;
    ck_assert_int_eq(run_build(&j, &err), CLIPN_OK);
    j.want = j.h;
    j.h = NULL;
    clipn_ctx_free(j.ctx);
    j.ctx = NULL;
    workload w = {"ctx_new + clipn_heads_build", run_build, check_build, cleanup_build, &j};
    fault_loop(&w);
    clipn_heads_free(j.want);
    clipn_model_free(shared_model);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("allocation_failures");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, faults_config_json_and_fingerprint);
    tcase_add_test(tc, faults_heads_save_and_load);
    tcase_add_test(tc, faults_preprocess_file);
    tcase_add_test(tc, faults_tokenizer_from_file);
    tcase_add_test(tc, faults_heads_build);
    /* ~1600 model loads: seconds natively, too long under qemu (make test-arm) */
    TCase *slow = tcase_create("allocation_failures_model_load");
    tcase_set_tags(slow, "slow");
    tcase_set_timeout(slow, 300);
    tcase_add_test(slow, faults_model_load);
    suite_add_tcase(s, slow);
    suite_add_tcase(s, tc);
    return s;
}
