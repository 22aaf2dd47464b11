/* GL-MCM and NegLabel costs on ViT-B-16 (random weights, bench/run.sh makes the model):
 * 1. an image encode with and without GL-MCM's local features: clipn_encode_image vs
 *    clipn_encode_image_local on the same batch, alternated, best of ROUNDS each;
 * 2. NegLabel mining over Debian's full WordNet (/usr/share/wordnet, ~70k candidate
 *    prompts) against the 1000 ImageNet classes, as `clipn neg-labels` runs it, with a
 *    progress bar on stderr.
 *
 *   build/bench/bench_methods [MODEL]      (run from the repo root; MODEL as bench_heads.c)
 *   BENCH_METHODS_MINING=0 skips the mining. */
#include "clipn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define CLASSES "data/imagenet_classes.txt"
#define BATCH 8
#define ROUNDS 5

static double last_bar;

static int progress(void *user, size_t done, size_t total)
{
    (void)user;
    double t = now();
    if (!isatty(STDERR_FILENO) || (t - last_bar < 0.25 && done < total))
        return 0;
    last_bar = t;
    int w = (int)(40.0 * (double)done / (double)total);
    fprintf(stderr, "\r  mining [%.*s%*s] %zu/%zu prompts", w,
            "########################################", 40 - w, "", done, total);
    if (done == total)
        fputc('\n', stderr);
    return 0;
}

int main(int argc, char **argv)
{
    const char *work = getenv("BENCH_WORK") ? getenv("BENCH_WORK") : "build/bench-work";
    char default_model[1024];
    snprintf(default_model, sizeof default_model, "%s/vit-b-16.clipn", work);
    const char *model_path = argc > 1 ? argv[1]
                           : getenv("BENCH_MODEL") ? getenv("BENCH_MODEL") : default_model;
    FILE *probe = fopen(model_path, "rb");
    if (!probe) {
        printf("bench_methods: no model at %s, skipped (bench/run.sh creates a random "
               "ViT-B-16)\n", model_path);
        return 0;
    }
    fclose(probe);
    clipn_error err;
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    clipn_ctx_opts opts = {.max_batch = 32, .threads = 0};
    if (clipn_model_load(model_path, NULL, &model, &err) ||
        clipn_ctx_new(model, &opts, &ctx, &err)) {
        fprintf(stderr, "bench_methods: %s\n", err.message);
        return 1;
    }
    const clipn_config *c = clipn_model_config(model);
    const size_t S = (size_t)c->image_size, E = (size_t)c->embed_dim;
    const size_t P = (S / (size_t)c->patch_size) * (S / (size_t)c->patch_size);
    float *px = malloc(BATCH * 3 * S * S * sizeof *px), *g = malloc(BATCH * E * sizeof *g);
    float *l = malloc(BATCH * P * E * sizeof *l);
    if (!px || !g || !l)
        return 1;
    uint32_t s = 12345;
    for (size_t i = 0; i < BATCH * 3 * S * S; i++) {
        s = s * 1664525u + 1013904223u;
        px[i] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
    }
    /* warm-up (packs, page faults), then alternate the two calls */
    if (clipn_encode_image(ctx, px, BATCH, g, &err) ||
        clipn_encode_image_local(ctx, px, BATCH, g, l, &err)) {
        fprintf(stderr, "bench_methods: %s\n", err.message);
        return 1;
    }
    double best_plain = INFINITY, best_local = INFINITY;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        clipn_encode_image(ctx, px, BATCH, g, &err);
        double t1 = now();
        clipn_encode_image_local(ctx, px, BATCH, g, l, &err);
        double t2 = now();
        best_plain = t1 - t0 < best_plain ? t1 - t0 : best_plain;
        best_local = t2 - t1 < best_local ? t2 - t1 : best_local;
    }
    printf("GL-MCM: image encode batch %d, best of %d: %.1f ms/image plain, %.1f ms/image with "
           "local features (%+.1f%%)\n", BATCH, ROUNDS, 1e3 * best_plain / BATCH,
           1e3 * best_local / BATCH, 100.0 * (best_local / best_plain - 1.0));

    const char *mining = getenv("BENCH_METHODS_MINING");
    if (mining && !strcmp(mining, "0")) {
        printf("NegLabel mining: skipped (BENCH_METHODS_MINING=0)\n");
        return 0;
    }
    int n_classes = 0;
    char **classes = read_lines(CLASSES, &n_classes);
    clipn_word_lists *w = NULL;
    if (!classes || clipn_wordnet_read(NULL, &w, &err) != CLIPN_OK) {
        printf("NegLabel mining: skipped (%s)\n",
               classes ? err.message : "cannot read " CLASSES);
        return 0;
    }
    clipn_neg_labels *nl = NULL;
    double t0 = now();
    if (clipn_neg_labels_mine(ctx, (const char *const *)classes, n_classes,
                              (const char *const *)w->nouns, w->n_nouns,
                              (const char *const *)w->adjectives, w->n_adjectives, NULL,
                              progress, NULL, &nl, &err) != CLIPN_OK) {
        fprintf(stderr, "bench_methods: %s\n", err.message);
        return 1;
    }
    double t = now() - t0;
    const int prompts = n_classes + w->n_nouns + w->n_adjectives;
    printf("NegLabel mining: %d classes + %d nouns + %d adjectives from WordNet = %d prompts in "
           "%.1f s (%.2f ms/prompt), %d negatives selected\n", n_classes, w->n_nouns,
           w->n_adjectives, prompts, t, 1e3 * t / prompts, nl->n);
    clipn_neg_labels_free(nl);
    clipn_word_lists_free(w);
    free_lines(classes, n_classes);
    free(px);
    free(g);
    free(l);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return 0;
}
