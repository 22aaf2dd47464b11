/* Image preprocessing against the official transform (PIL 9.4 + torchvision 0.14).
 * Fixtures and references: tests/image_ref/make_refs.py. ref/manifest.txt lists
 *   ok NAME MODE WxH HASH    HASH = FNV-1a 64 of the official 224x224x3 uint8 crop
 *   size NAME S HASH         the same at another output size
 *   bad NAME ...             files that must be refused
 * and ref/NAME.png holds the whole crop for the edge cases (compared level by level). */
#include "testutil.h"
#include "image/image_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR "tests/fixtures/images/"
#define MAX_LINES 128

typedef struct manifest_line {
    char kind[8], name[96], mode[8], extra[32];
    unsigned long long hash;
} manifest_line;

static int read_manifest(manifest_line *lines)
{
    FILE *f = fopen(DIR "ref/manifest.txt", "r");
    ck_assert_msg(f != NULL, "missing " DIR "ref/manifest.txt");
    int n = 0;
    char buf[512];
    while (n < MAX_LINES && fgets(buf, sizeof buf, f)) {
        manifest_line *l = &lines[n];
        memset(l, 0, sizeof *l);
        if (sscanf(buf, "%7s %95s", l->kind, l->name) != 2)
            continue;
        if (!strcmp(l->kind, "ok"))
            ck_assert_int_eq(sscanf(buf, "%*s %*s %7s %31s %llx", l->mode, l->extra, &l->hash), 3);
        else if (!strcmp(l->kind, "size"))
            ck_assert_int_eq(sscanf(buf, "%*s %*s %31s %llx", l->extra, &l->hash), 2);
        n++;
    }
    fclose(f);
    ck_assert_int_gt(n, 40);
    return n;
}

/* ToTensor + Normalize of every level, as torchvision computed it: [3][256]. */
static void read_normalize_table(float table[3][256])
{
    FILE *f = fopen(DIR "ref/normalize.f32", "rb");
    ck_assert_msg(f != NULL, "missing normalize.f32");
    ck_assert_int_eq(fread(table, sizeof(float), 3 * 256, f), 3 * 256);
    fclose(f);
}

static float *preprocess(const char *path, int S, clipn_status *st, clipn_error *err)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    o.image_size = S;
    float *out = malloc(sizeof(float) * 3 * S * S);
    ck_assert_ptr_nonnull(out);
    *st = clipn_preprocess_file(path, &o, out, err);
    return out;
}

/* Map normalised values back to 8-bit levels (HWC) through the reference table; -1 when a
 * value is not exactly one of torchvision's. */
static int to_levels(const float *chw, int S, const float table[3][256], uint8_t *hwc)
{
    int exact = 1;
    const size_t n = (size_t)S * S;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < n; i++) {
            float v = chw[(size_t)c * n + i];
            int lo = 0, hi = 255;
            while (lo < hi) { /* first level with table >= v (the table increases) */
                int mid = (lo + hi) / 2;
                if (table[c][mid] < v)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (table[c][lo] != v)
                exact = 0;
            hwc[i * 3 + c] = (uint8_t)lo;
        }
    return exact;
}

static unsigned long long fnv1a64(const uint8_t *p, size_t n)
{
    unsigned long long h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

START_TEST(test_normalize_matches_torchvision)
{
    float table[3][256];
    read_normalize_table(table);
    /* a 224x224 image holds every level in every channel; no resize at 224 */
    enum { S = 224 };
    uint8_t *px = malloc(S * S * 3);
    float *out = malloc(sizeof(float) * 3 * S * S);
    ck_assert(px && out);
    for (int i = 0; i < S * S; i++)
        for (int c = 0; c < 3; c++)
            px[i * 3 + c] = (uint8_t)((i * (c + 1)) & 255);
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    clipn_error err;
    ck_assert_int_eq(clipn_preprocess_pixels(px, S, S, 3, 0, &o, out, &err), CLIPN_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S * S; i++)
            ck_assert_msg(memcmp(&out[c * S * S + i], &table[c][px[i * 3 + c]], 4) == 0,
                          "channel %d level %d: %.9g != %.9g", c, px[i * 3 + c],
                          out[c * S * S + i], table[c][px[i * 3 + c]]);
    free(px);
    free(out);
}
END_TEST

/* Every fixture against the official transform: the crop's hash must match (bit-exact);
 * where the whole reference is committed, also report max difference and identical
 * fraction and hold them to the target (<= 1 level, >= 99.9% identical). */
START_TEST(test_fixtures_match_official_transform)
{
    static manifest_line lines[MAX_LINES];
    int n = read_manifest(lines);
    float table[3][256];
    read_normalize_table(table);
    const int S = 224;
    uint8_t *levels = malloc((size_t)S * S * 3);
    ck_assert_ptr_nonnull(levels);
    int checked = 0, mismatched = 0;
    for (int li = 0; li < n; li++) {
        const manifest_line *l = &lines[li];
        if (strcmp(l->kind, "ok") != 0)
            continue;
        char path[256], ref_path[256];
        snprintf(path, sizeof path, DIR "%s", l->name);
        snprintf(ref_path, sizeof ref_path, DIR "ref/%s.png", l->name);
        clipn_status st;
        clipn_error err;
        float *out = preprocess(path, S, &st, &err);
        ck_assert_msg(st == CLIPN_OK, "%s: %s", l->name, err.message);
        int exact = to_levels(out, S, table, levels);
        unsigned long long h = fnv1a64(levels, (size_t)S * S * 3);
        FILE *rf = fopen(ref_path, "rb");
        if (rf) {
            fclose(rf);
            float *ref = preprocess(ref_path, S, &st, &err); /* 224x224: no resize */
            ck_assert_msg(st == CLIPN_OK, "%s: %s", ref_path, err.message);
            double max_levels = 0;
            size_t same = 0, total = (size_t)3 * S * S;
            for (size_t i = 0; i < total; i++) {
                int c = (int)(i / ((size_t)S * S));
                double d = fabs((double)out[i] - ref[i]) / (table[c][1] - table[c][0]);
                if (d > max_levels)
                    max_levels = d;
                same += out[i] == ref[i];
            }
            printf("  %-36s %-5s %-10s max %.3f levels, identical %.4f%%\n", l->name, l->mode,
                   l->extra, max_levels, 100.0 * same / total);
            ck_assert_msg(max_levels <= 1.0001, "%s: %.3f levels off", l->name, max_levels);
            ck_assert_msg(same >= total * 0.999, "%s: only %.4f%% identical", l->name,
                          100.0 * same / total);
            free(ref);
        } else {
            printf("  %-36s %-5s %-10s %s\n", l->name, l->mode, l->extra,
                   exact && h == l->hash ? "bit-exact (hash)" : "HASH MISMATCH");
        }
        if (!(exact && h == l->hash))
            mismatched++;
        ck_assert_msg(exact, "%s: values that are no 8-bit level", l->name);
        ck_assert_msg(h == l->hash, "%s: crop hash %016llx != reference %016llx", l->name, h,
                      l->hash);
        checked++;
        free(out);
    }
    printf("  %d images checked, %d not bit-exact\n", checked, mismatched);
    ck_assert_int_ge(checked, 40);
    free(levels);
}
END_TEST

START_TEST(test_other_output_sizes)
{
    static manifest_line lines[MAX_LINES];
    int n = read_manifest(lines), checked = 0;
    float table[3][256];
    read_normalize_table(table);
    for (int li = 0; li < n; li++) {
        const manifest_line *l = &lines[li];
        if (strcmp(l->kind, "size") != 0)
            continue;
        int S = atoi(l->extra);
        char path[256];
        snprintf(path, sizeof path, DIR "%s", l->name);
        clipn_status st;
        clipn_error err;
        float *out = preprocess(path, S, &st, &err);
        ck_assert_msg(st == CLIPN_OK, "%s: %s", l->name, err.message);
        uint8_t *levels = malloc((size_t)S * S * 3);
        ck_assert_ptr_nonnull(levels);
        ck_assert(to_levels(out, S, table, levels));
        ck_assert_msg(fnv1a64(levels, (size_t)S * S * 3) == l->hash, "%s at size %d differs",
                      l->name, S);
        free(levels);
        free(out);
        checked++;
    }
    ck_assert_int_ge(checked, 5);
}
END_TEST

static void expect_refused(const char *name, clipn_status want)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s", name);
    clipn_status st;
    clipn_error err;
    memset(&err, 0, sizeof err);
    float *out = preprocess(path, 224, &st, &err);
    printf("  %-30s %s: %s\n", name, clipn_status_name(st), err.message);
    ck_assert_msg(st == want, "%s: got %s, want %s", name, clipn_status_name(st),
                  clipn_status_name(want));
    ck_assert_int_eq(err.code, st);
    ck_assert_msg(strstr(err.message, name) != NULL, "message does not name the file: %s",
                  err.message);
    free(out);
}

START_TEST(test_bad_files_refused)
{
    expect_refused("bad_empty.jpg", CLIPN_E_FORMAT);
    expect_refused("bad_truncated.jpg", CLIPN_E_FORMAT);
    expect_refused("bad_truncated.png", CLIPN_E_FORMAT);
    expect_refused("bad_corrupt.jpg", CLIPN_E_FORMAT);
    expect_refused("bad_text.png", CLIPN_E_UNSUPPORTED);
    expect_refused("bad_huge_100000x100000.png", CLIPN_E_LIMIT);
    expect_refused("does_not_exist.png", CLIPN_E_IO);
}
END_TEST

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

START_TEST(test_limits_and_truncation_sweep)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    ck_assert_ptr_nonnull(out);
    clipn_error err;
    /* max_pixels is checked from the header */
    o.max_pixels = 480 * 320 - 1;
    ck_assert_int_eq(clipn_preprocess_file(DIR "photo_china_q90.jpg", &o, out, &err),
                     CLIPN_E_LIMIT);
    o.max_pixels = 480 * 320;
    ck_assert_int_eq(clipn_preprocess_file(DIR "photo_china_q90.jpg", &o, out, &err), CLIPN_OK);
    o.max_pixels = 100;
    ck_assert_int_eq(clipn_preprocess_file(DIR "edge_palette.gif", &o, out, &err), CLIPN_E_LIMIT);
    clipn_image_opts_default(&o);
    /* every prefix of a few files fails cleanly or succeeds; never crashes */
    const char *files[] = {DIR "edge_palette.png", DIR "photo_china_progressive.jpg",
                           DIR "edge_palette.gif", DIR "edge_rgb.bmp", DIR "edge_rgb_rle.tga",
                           DIR "edge_gray.pgm"};
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        size_t len;
        uint8_t *data = read_all(files[fi], &len);
        int refused = 0;
        for (size_t cut = 0; cut < len; cut += 1 + len / 97) {
            clipn_status st = clipn_preprocess_memory(data, cut, &o, out, &err);
            refused += st != CLIPN_OK;
            if (st != CLIPN_OK)
                ck_assert_msg(strstr(err.message, "<memory>") != NULL, "%s", err.message);
        }
        ck_assert_msg(refused > 0, "%s: no truncation refused", files[fi]);
        free(data);
    }
    free(out);
}
END_TEST

/* Truncations PIL still accepts (it stops after the image data) give the full result. */
START_TEST(test_tail_truncations_pil_accepts)
{
    static const struct { const char *file; size_t cut; } cases[] = {
        {DIR "edge_gray.png", 12},  /* no IEND */
        {DIR "edge_gray.png", 8},   /* inside IEND */
        {DIR "edge_gray.png", 14},  /* inside the last IDAT's CRC */
        {DIR "edge_palette.gif", 1}, /* no trailer */
        {DIR "edge_palette.gif", 2}, /* no block terminator */
        {DIR "edge_rgb.bmp", 2},    /* last row's padding */
    };
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    const size_t n = 3 * 224 * 224;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    ck_assert(a && b);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *data = read_all(cases[i].file, &len);
        clipn_error err;
        ck_assert_int_eq(clipn_preprocess_memory(data, len, &o, a, &err), CLIPN_OK);
        ck_assert_msg(clipn_preprocess_memory(data, len - cases[i].cut, &o, b, &err) == CLIPN_OK,
                      "%s minus %zu bytes: %s", cases[i].file, cases[i].cut, err.message);
        ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
        /* ... but not one cut inside the pixel data */
        ck_assert_int_ne(clipn_preprocess_memory(data, len - 40, &o, b, &err), CLIPN_OK);
        free(data);
    }
    free(a);
    free(b);
}
END_TEST

START_TEST(test_memory_and_pixels_apis_agree)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    const size_t n = 3 * 224 * 224;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    ck_assert(a && b);
    clipn_error err;
    /* the file and memory entry points */
    size_t len;
    uint8_t *data = read_all(DIR "edge_rgb.ppm", &len);
    ck_assert_int_eq(clipn_preprocess_file(DIR "edge_rgb.ppm", &o, a, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_preprocess_memory(data, len, &o, b, &err), CLIPN_OK);
    ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
    /* the raw P6 pixels through clipn_preprocess_pixels, tight and with a stride */
    int w = 150, h = 100;
    const uint8_t *px = data + len - (size_t)w * h * 3;
    ck_assert(memcmp(data, "P6", 2) == 0);
    ck_assert_int_eq(clipn_preprocess_pixels(px, w, h, 3, 0, &o, b, &err), CLIPN_OK);
    ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
    size_t stride = (size_t)w * 3 + 7;
    uint8_t *padded = calloc((size_t)h, stride);
    ck_assert_ptr_nonnull(padded);
    for (int y = 0; y < h; y++)
        memcpy(padded + y * stride, px + (size_t)y * w * 3, (size_t)w * 3);
    memset(b, 0, sizeof(float) * n);
    ck_assert_int_eq(clipn_preprocess_pixels(padded, w, h, 3, stride, &o, b, &err), CLIPN_OK);
    ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
    /* gray pixels equal the gray file */
    free(data);
    data = read_all(DIR "edge_gray.pgm", &len);
    ck_assert_int_eq(clipn_preprocess_file(DIR "edge_gray.pgm", &o, a, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_preprocess_pixels(data + len - 150 * 150, 150, 150, 1, 0, &o, b, &err),
                     CLIPN_OK);
    ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
    free(padded);
    free(data);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    float out[3 * 4 * 4];
    uint8_t px[16] = {0};
    clipn_error err;
    ck_assert_int_eq(clipn_preprocess_pixels(NULL, 2, 2, 3, 0, &o, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_preprocess_pixels(px, 0, 2, 3, 0, &o, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 5, 0, &o, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 3, 2, &o, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 3, 0, NULL, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_preprocess_file(NULL, &o, out, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_preprocess_memory(NULL, 10, &o, out, &err), CLIPN_E_INVALID_ARG);
    o.image_size = 0;
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 3, 0, &o, out, &err), CLIPN_E_INVALID_ARG);
    o.image_size = 4;
    o.std[1] = 0;
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 3, 0, &o, out, &err), CLIPN_E_INVALID_ARG);
    clipn_image_opts_default(&o);
    o.image_size = 4;
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 4, 0, &o, out, NULL), CLIPN_OK);
    o.max_pixels = 3;
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 4, 0, &o, out, &err), CLIPN_E_LIMIT);
    /* an image so elongated that the long side after resizing overflows int */
    clipn_image_opts_default(&o);
    o.image_size = 8192;
    uint8_t *line = calloc(300000, 1);
    ck_assert_ptr_nonnull(line);
    float *big = malloc(sizeof(float) * 3 * 8192 * 8192);
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(clipn_preprocess_pixels(line, 300000, 1, 1, 0, &o, big, &err), CLIPN_E_LIMIT);
    free(big);
    free(line);
}
END_TEST

/* Only regular files are read: a FIFO blocked forever in open(), /dev/zero read on. */
START_TEST(test_special_files_refused)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    o.image_size = 8;
    float out[3 * 8 * 8];
    clipn_error err;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/clipn_image_fifo_%ld.png", test_tmp_dir(), (long)getpid());
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10); /* a regression blocks: fail instead of hanging */
    clipn_status st = clipn_preprocess_file(fifo, &o, out, &err);
    alarm(0);
    unlink(fifo);
    ck_assert_int_eq(st, CLIPN_E_IO);
    ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));
    ck_assert_int_eq(clipn_preprocess_file("/dev/zero", &o, out, &err), CLIPN_E_IO);
    ck_assert_int_eq(clipn_preprocess_file(DIR, &o, out, &err), CLIPN_E_IO);
}
END_TEST

/* max_pixels = 0 means the default, as 0 does in clipn_load_opts (it refused every image). */
START_TEST(test_max_pixels_zero_is_default)
{
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    o.image_size = 8;
    o.max_pixels = 0;
    float a[3 * 8 * 8], b[3 * 8 * 8];
    uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    clipn_error err;
    ck_assert_int_eq(clipn_preprocess_file(DIR "edge_2x3.png", &o, a, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_preprocess_pixels(px, 2, 2, 3, 0, &o, b, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_preprocess_file(DIR "bad_huge_100000x100000.png", &o, a, &err),
                     CLIPN_E_LIMIT);
    o.max_pixels = CLIPN_DEFAULT_MAX_PIXELS;
    ck_assert_int_eq(clipn_preprocess_file(DIR "edge_2x3.png", &o, b, &err), CLIPN_OK);
    ck_assert_mem_eq(a, b, sizeof a);
}
END_TEST

/* Preprocessing shares nothing between calls: threads give the serial results. */
static const char *const thread_files[] = {
    DIR "photo_china_q90.jpg", DIR "photo_china_progressive.jpg", DIR "edge_rgba.png",
    DIR "edge_palette_trns.gif", DIR "edge_gray16.png", DIR "edge_cmyk.jpg",
    DIR "bad_truncated.jpg", DIR "bad_corrupt.jpg"};
enum { N_THREAD_FILES = sizeof thread_files / sizeof thread_files[0], N_THREADS = 4 };

typedef struct thread_job {
    int offset;
    float *out[N_THREAD_FILES];
    clipn_status st[N_THREAD_FILES];
} thread_job;

static void *thread_run(void *arg)
{
    thread_job *job = arg;
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < N_THREAD_FILES; k++) {
            int i = (k + job->offset) % N_THREAD_FILES;
            clipn_error err;
            job->st[i] = clipn_preprocess_file(thread_files[i], &o, job->out[i], &err);
        }
    return NULL;
}

START_TEST(test_threads_match_serial)
{
    static thread_job jobs[N_THREADS + 1];
    const size_t n = 3 * 224 * 224;
    for (int t = 0; t <= N_THREADS; t++) {
        jobs[t].offset = t;
        for (int i = 0; i < N_THREAD_FILES; i++)
            ck_assert_ptr_nonnull(jobs[t].out[i] = calloc(n, sizeof(float)));
    }
    thread_run(&jobs[N_THREADS]); /* serial reference */
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, thread_run, &jobs[t]), 0);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t <= N_THREADS; t++)
        for (int i = 0; i < N_THREAD_FILES; i++) {
            ck_assert_int_eq(jobs[t].st[i], jobs[N_THREADS].st[i]);
            ck_assert(memcmp(jobs[t].out[i], jobs[N_THREADS].out[i], n * sizeof(float)) == 0);
            free(jobs[t].out[i]);
        }
    ck_assert_int_eq(jobs[N_THREADS].st[0], CLIPN_OK);
    ck_assert_int_eq(jobs[N_THREADS].st[N_THREAD_FILES - 1], CLIPN_E_FORMAT);
}
END_TEST

/* Not an assertion of quality: stb_image's JPEG decoder measured against the reference
 * (why libjpeg-turbo is used; docs/images.md). It must still decode every photo. */
START_TEST(test_measure_stb_jpeg)
{
    static manifest_line lines[MAX_LINES];
    int n = read_manifest(lines);
    float table[3][256];
    read_normalize_table(table);
    const int S = 224;
    clipn_image_opts o;
    clipn_image_opts_default(&o);
    float *a = malloc(sizeof(float) * 3 * S * S), *b = malloc(sizeof(float) * 3 * S * S);
    ck_assert(a && b);
    double worst = 0;
    size_t same_all = 0, total_all = 0;
    for (int li = 0; li < n; li++) {
        const manifest_line *l = &lines[li];
        size_t nl = strlen(l->name);
        if (strcmp(l->kind, "ok") != 0 || nl < 4 || strcmp(l->name + nl - 4, ".jpg") != 0 ||
            !strcmp(l->mode, "CMYK"))
            continue;
        char path[256];
        snprintf(path, sizeof path, DIR "%s", l->name);
        size_t len;
        uint8_t *data = read_all(path, &len);
        clipn_error err;
        ck_assert_int_eq(clipn_preprocess_memory_ex(data, len, l->name, &o, 0, a, &err), CLIPN_OK);
        ck_assert_msg(clipn_preprocess_memory_ex(data, len, l->name, &o, 1, b, &err) == CLIPN_OK,
                      "%s", err.message);
        double max_levels = 0;
        size_t same = 0, total = (size_t)3 * S * S;
        for (size_t i = 0; i < total; i++) {
            int c = (int)(i / ((size_t)S * S));
            double d = fabs((double)a[i] - b[i]) / (table[c][1] - table[c][0]);
            if (d > max_levels)
                max_levels = d;
            same += a[i] == b[i];
        }
        printf("  stb_image JPEG %-34s max %5.2f levels, identical %8.4f%%\n", l->name,
               max_levels, 100.0 * same / total);
        worst = fmax(worst, max_levels);
        same_all += same;
        total_all += total;
        free(data);
    }
    printf("  stb_image JPEG overall: max %.2f levels, identical %.4f%%\n", worst,
           100.0 * same_all / total_all);
    ck_assert_int_gt(total_all, 0);
    free(a);
    free(b);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_normalize_matches_torchvision);
    tcase_add_test(tc, test_fixtures_match_official_transform);
    tcase_add_test(tc, test_other_output_sizes);
    tcase_add_test(tc, test_bad_files_refused);
    tcase_add_test(tc, test_limits_and_truncation_sweep);
    tcase_add_test(tc, test_tail_truncations_pil_accepts);
    tcase_add_test(tc, test_memory_and_pixels_apis_agree);
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_special_files_refused);
    tcase_add_test(tc, test_max_pixels_zero_is_default);
    tcase_add_test(tc, test_threads_match_serial);
    tcase_add_test(tc, test_measure_stb_jpeg);
    suite_add_tcase(s, tc);
    return s;
}
