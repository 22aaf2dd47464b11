/* ImageNet-1K class heads: time a slice of the full workload (1000 classes x 128 official
 * templates x 2 towers = 256,000 text encodes) through clipn_heads_build, as `clipn head`
 * runs it (ctx max_batch 32, all cores), and extrapolate to the full workload.
 *
 *   build/bench/bench_heads [MODEL [N_TEMPLATES]]   (run from the repo root)
 * The slice: N_TEMPLATES (default 8) templates spread evenly over the official file, so
 * their lengths are representative. MODEL as bench_text.c. */
#include "clipn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define CLASSES "data/imagenet_classes.txt"
#define TEMPLATES "data/clipn_templates_official.txt"

int main(int argc, char **argv)
{
    const char *work = getenv("BENCH_WORK") ? getenv("BENCH_WORK") : "build/bench-work";
    char default_model[1024];
    snprintf(default_model, sizeof default_model, "%s/vit-b-16.clipn", work);
    const char *model_path = argc > 1 ? argv[1]
                           : getenv("BENCH_MODEL") ? getenv("BENCH_MODEL") : default_model;
    int n_slice = argc > 2 ? atoi(argv[2]) : 8;
    FILE *probe = fopen(model_path, "rb");
    if (!probe) {
        printf("bench_heads: no model at %s, skipped (bench/run.sh creates a random ViT-B-16)\n",
               model_path);
        return 0;
    }
    fclose(probe);

    int n_classes = 0, n_templates = 0;
    char **classes = read_lines(CLASSES, &n_classes);
    char **templates = read_lines(TEMPLATES, &n_templates);
    if (!classes || !templates || n_slice < 1 || n_slice > n_templates) {
        fprintf(stderr, "bench_heads: cannot read %s / %s, or bad slice %d\n", CLASSES,
                TEMPLATES, n_slice);
        return 1;
    }
    const char **slice = malloc((size_t)n_slice * sizeof *slice);
    if (!slice)
        return 1;
    for (int i = 0; i < n_slice; i++)
        slice[i] = templates[(size_t)i * (size_t)n_templates / (size_t)n_slice];

    clipn_error err;
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    clipn_ctx_opts opts = {.max_batch = 32, .threads = 0}; /* as `clipn head` */
    clipn_heads *heads = NULL;
    if (clipn_model_load(model_path, NULL, &model, &err) ||
        clipn_ctx_new(model, &opts, &ctx, &err)) {
        fprintf(stderr, "bench_heads: %s\n", err.message);
        return 1;
    }
    const int towers = clipn_model_config(model)->has_no_tower ? 2 : 1;
    const double t0 = now();
    if (clipn_heads_build(ctx, (const char *const *)classes, n_classes, slice, n_slice, NULL, 0,
                          NULL, NULL, &heads, &err)) {
        fprintf(stderr, "bench_heads: %s\n", err.message);
        return 1;
    }
    const double dt = now() - t0;
    const double encodes = (double)n_classes * n_slice * towers;
    const double full = (double)n_classes * n_templates * towers;
    printf("heads: %s, %d classes x %d templates (every %dth official line) x %d towers = "
           "%.0f text encodes in %.2f s = %.1f prompts/s\n",
           model_path, n_classes, n_slice, n_templates / n_slice, towers, encodes, dt,
           encodes / dt);
    printf("  EXTRAPOLATION (not measured): full ImageNet-1K heads, %d classes x %d templates x "
           "%d towers = %.0f encodes at this rate: %.1f min\n",
           n_classes, n_templates, towers, full, full / (encodes / dt) / 60.0);

    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    free(slice);
    free_lines(classes, n_classes);
    free_lines(templates, n_templates);
    return 0;
}
