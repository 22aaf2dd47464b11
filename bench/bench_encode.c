/* Whole image tower: clipn_encode_image per image at batch 1 and 8 (wall time, best of N
 * rounds), its end-to-end GFLOP/s against bare OpenBLAS sgemm on the tower's linear shapes
 * timed in the same rounds (interleaved, so both see the same machine load), and resident
 * memory against the model file's size after encoding a batch of images, then again after
 * the 1000 ImageNet class names (data/imagenet_classes.txt, "a photo of a {}.") through
 * the text and the no-text tower: the token-embedding rows a varied prompt set touches
 * (BENCH_MEM_PROMPTS=N: the first N class names instead, 0 = skip this).
 *
 *   bench_encode [MODEL [ROUNDS]]   MODEL default $BENCH_WORK/vit-b-16.clipn
 *                                   (BENCH_WORK default build/bench-work), ROUNDS 5
 * Run from the repository root (for data/). The last line is "RESULT key=value ..." for
 * bench/run.sh and bench/precision.sh: rss_mb after the images, rss_all_mb after the text
 * too (0 when skipped). */
#include "clipn.h"
#include "kernels.h"
#include "kernels_control.h"
#include "bench_util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* kB value of a /proc/self/status line, -1 if absent */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    const size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void print_memory(const char *when, double file_mb)
{
    const long rss = status_kb("VmRSS"), hwm = status_kb("VmHWM");
    printf("memory %-22s VmRSS %7.1f MB (%.2fx file)  VmHWM %7.1f MB (%.2fx)  "
           "RssAnon %7.1f MB  RssFile %7.1f MB\n",
           when, rss / 1024.0, rss / 1024.0 / file_mb, hwm / 1024.0, hwm / 1024.0 / file_mb,
           status_kb("RssAnon") / 1024.0, status_kb("RssFile") / 1024.0);
}

/* The class prompts through the text and (if any) no-text tower, in batches of up to the
 * context's max_batch. 0 on success, -1 when data/ is not there or a call fails. */
static int encode_class_prompts(clipn_model *model, clipn_ctx *ctx, int limit)
{
    int n = 0;
    char **classes = read_lines("data/imagenet_classes.txt", &n);
    for (int i = limit; classes && i < n; i++)
        free(classes[i]);
    n = n < limit ? n : limit;
    clipn_tokenizer *tok = NULL;
    clipn_error err;
    const clipn_config *c = clipn_model_config(model);
    int32_t *ids = classes ? malloc((size_t)n * c->context_length * sizeof *ids) : NULL;
    float *out = classes ? malloc((size_t)n * c->embed_dim * sizeof *out) : NULL;
    int rc = ids && out && clipn_tokenizer_from_model(model, &tok, &err) == CLIPN_OK ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        char *text = NULL;
        rc = clipn_format_template("a photo of a {}.", classes[i], &text, &err) == CLIPN_OK &&
                     clipn_tokenize(tok, text, strlen(text), ids + (size_t)i * c->context_length,
                                    c->context_length, &err) == CLIPN_OK
                 ? 0
                 : -1;
        free(text);
    }
    if (rc == 0)
        rc = clipn_encode_text(ctx, ids, n, out, &err) == CLIPN_OK &&
                     (!c->has_no_tower ||
                      clipn_encode_no_text(ctx, ids, n, out, &err) == CLIPN_OK)
                 ? 0
                 : -1;
    if (classes && rc != 0)
        fprintf(stderr, "bench_encode: %s\n", err.message);
    for (int i = 0; classes && i < n; i++)
        free(classes[i]);
    free(classes);
    free(ids);
    free(out);
    clipn_tokenizer_free(tok);
    return rc;
}

/* FLOPs of one image through the tower: patch embedding, per layer the four linears and
 * attention (QK^T and PV: 4 L^2 W), the projection. 35.1 GFLOP for ViT-B-16. */
static double image_flops(const clipn_config *c)
{
    const double W = c->vision_width, M = c->vision_mlp_width, P = c->patch_size;
    const double G = c->image_size / c->patch_size, L = G * G + 1;
    const double per_layer = 2 * L * W * (3 * W + W + M + M) + 4 * L * L * W;
    return 2 * G * G * W * 3 * P * P + c->vision_layers * per_layer + 2 * W * c->embed_dim;
}

/* Bare sgemm over one image's (or batch's) linear shapes, m = tokens: seconds. */
typedef struct sgemm_bufs {
    float *x, *w, *y;
} sgemm_bufs;

static double sgemm_pass(const clipn_config *c, int m, const sgemm_bufs *b, double *flops)
{
    const int W = c->vision_width, M = c->vision_mlp_width;
    const int shape[4][2] = {{3 * W, W}, {W, W}, {M, W}, {W, M}}; /* n_out, n_in */
    double t = 0;
    *flops = 0;
    for (int s = 0; s < 4; s++) {
        const int n = shape[s][0], k = shape[s][1];
        const double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, b->x, k, b->w, k,
                    0.0f, b->y, n);
        t += now() - t0;
        *flops += 2.0 * m * n * k;
    }
    return t;
}

int main(int argc, char **argv)
{
    char def_path[4096];
    const char *work = getenv("BENCH_WORK") ? getenv("BENCH_WORK") : "build/bench-work";
    snprintf(def_path, sizeof def_path, "%s/vit-b-16.clipn", work);
    const char *path = argc > 1 && argv[1][0] ? argv[1] : def_path; /* "" = default */
    const int rounds = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 5;
    enum { BATCH = 8 };

    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "bench_encode: %s not found (bench/run.sh makes it)\n", path);
        return 1;
    }
    const double file_mb = st.st_size / 1048576.0;
    clipn_error err;
    clipn_model *model = NULL;
    double t0 = now();
    if (clipn_model_load(path, NULL, &model, &err) != CLIPN_OK) {
        fprintf(stderr, "bench_encode: %s\n", err.message);
        return 1;
    }
    const double load_s = now() - t0;
    const clipn_config *c = clipn_model_config(model);
    printf("model %s: %.1f MB, vision width %d, %d layers, image %d, loaded in %.2f s "
           "(gemm %s, isa %s, weights %s)\n",
           path, file_mb, c->vision_width, c->vision_layers, c->image_size, load_s,
           clipn_kernels_gemm_backend(), clipn_kernels_isa(), clipn_kernels_weights());
    print_memory("after load", file_mb);

    clipn_ctx *ctx = NULL;
    clipn_ctx_opts opts = {.max_batch = BATCH};
    const size_t per_image = 3 * (size_t)c->image_size * c->image_size;
    float *pixels = malloc(per_image * BATCH * sizeof(float));
    float *out = malloc((size_t)BATCH * c->embed_dim * sizeof(float));
    const int L = (c->image_size / c->patch_size) * (c->image_size / c->patch_size) + 1;
    const size_t mk = (size_t)L * BATCH * c->vision_mlp_width;
    const size_t nk = (size_t)c->vision_mlp_width * c->vision_width;
    sgemm_bufs sb = {malloc(mk * sizeof(float)), malloc(nk * sizeof(float)),
                     malloc(mk * sizeof(float))};
    if (!pixels || !out || !sb.x || !sb.w || !sb.y ||
        clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        fprintf(stderr, "bench_encode: out of memory or %s\n", err.message);
        return 1;
    }
    uint32_t rng = 1;
    for (size_t i = 0; i < per_image * BATCH; i++) {
        rng = rng * 1664525u + 1013904223u;
        pixels[i] = (float)((rng >> 8) * (1.0 / 16777216.0) * 4.0 - 2.0);
    }

    /* warm up: first-touch of the context scratch, thread pool start */
    if (clipn_encode_image(ctx, pixels, BATCH, out, &err) != CLIPN_OK) {
        fprintf(stderr, "bench_encode: %s\n", err.message);
        return 1;
    }
    print_memory("after a batch of 8", file_mb);
    const long rss_kb = status_kb("VmRSS"), hwm_kb = status_kb("VmHWM");
    long rss_all_kb = 0;
    const char *np_env = getenv("BENCH_MEM_PROMPTS");
    const int n_prompts = np_env ? atoi(np_env) : 1000;
    t0 = now();
    if (n_prompts > 0 && encode_class_prompts(model, ctx, n_prompts) == 0) {
        print_memory("after text + no-text", file_mb);
        printf("  (%d class prompts through both text towers in %.1f s)\n", n_prompts,
               now() - t0);
        rss_all_kb = status_kb("VmRSS");
    } else {
        printf("memory after text + no-text: skipped (BENCH_MEM_PROMPTS=0 or no "
               "data/imagenet_classes.txt here)\n");
    }
    /* the sgemm yardstick's 29 MB are touched only now: not the library's memory */
    for (size_t i = 0; i < mk; i++)
        sb.x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < nk; i++)
        sb.w[i] = (float)((i * 104729) % 1000) * 1e-4f - 0.05f;

    double best1 = 1e30, best8 = 1e30, best_s1 = 1e30, best_s8 = 1e30, f1 = 0, f8 = 0;
    for (int r = 0; r < rounds; r++) {
        t0 = now();
        clipn_encode_image(ctx, pixels, 1, out, &err);
        const double t1 = now() - t0;
        const double s1 = sgemm_pass(c, L, &sb, &f1);
        t0 = now();
        clipn_encode_image(ctx, pixels, BATCH, out, &err);
        const double t8 = (now() - t0) / BATCH;
        const double s8 = sgemm_pass(c, L * BATCH, &sb, &f8);
        best1 = t1 < best1 ? t1 : best1;
        best8 = t8 < best8 ? t8 : best8;
        best_s1 = s1 < best_s1 ? s1 : best_s1;
        best_s8 = s8 < best_s8 ? s8 : best_s8;
    }
    const double flops = image_flops(c);
    const double g1 = flops / best1 * 1e-9, g8 = flops / best8 * 1e-9;
    const double sg1 = f1 / best_s1 * 1e-9, sg8 = f8 / best_s8 * 1e-9;
    printf("%.2f GFLOP per image; best of %d rounds, %d threads:\n", flops * 1e-9, rounds,
           clipn_kernels_threads());
    printf("  batch 1: %7.1f ms/image  %6.1f GFLOP/s  sgemm %6.1f GFLOP/s  %5.1f%% of sgemm\n",
           best1 * 1e3, g1, sg1, 100 * g1 / sg1);
    printf("  batch 8: %7.1f ms/image  %6.1f GFLOP/s  sgemm %6.1f GFLOP/s  %5.1f%% of sgemm\n",
           best8 * 1e3, g8, sg8, 100 * g8 / sg8);
    printf("RESULT b1_ms=%.2f b8_ms=%.2f gflop=%.3f sgemm1=%.1f sgemm8=%.1f rss_mb=%.1f "
           "hwm_mb=%.1f file_mb=%.1f rss_all_mb=%.1f\n",
           best1 * 1e3, best8 * 1e3, flops * 1e-9, sg1, sg8, rss_kb / 1024.0, hwm_kb / 1024.0,
           file_mb, rss_all_kb / 1024.0);
    free(sb.x);
    free(sb.w);
    free(sb.y);
    free(pixels);
    free(out);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return 0;
}
