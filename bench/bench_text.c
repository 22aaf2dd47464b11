/* Per-prompt text encode time at real lengths: the 1000 ImageNet class names formatted with
 * one official template, through both towers,
 *   - batch 1 (one clipn_encode_text call per prompt),
 *   - one batch of all 1000 classes, with and without prefix sharing (lib/nn/text_tower.c).
 * Writes the ids it used and its numbers to $BENCH_WORK (default build/bench-work) so that
 * bench/torch_text.py can run the same prompts in PyTorch and print the ratios.
 *
 *   build/bench/bench_text [MODEL [TEMPLATE_INDEX]]   (run from the repo root)
 * MODEL defaults to $BENCH_MODEL, else $BENCH_WORK/vit-b-16.clipn (bench/run.sh makes it).
 * BENCH_TEXT_B1_ONLY=1: batch 1 only, best of 3 passes (quick runs; torch_text.py then
 * times batch 1 only too). BENCH_THREADS: kernel threads (default: all cores). */
#include "internal.h"
#include "kernels_control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define CLASSES "data/imagenet_classes.txt"
#define TEMPLATES "data/clipn_templates_official.txt"
#define N_SINGLE 100 /* prompts timed one at a time */

/* Rows a prefix-sharing batch computes: sum of lengths minus prefixes shared with the
 * lexicographic predecessor (what lib/nn/text_tower.c does). */
static const int32_t *sort_ids;
static int sort_C;
static int cmp_rows(const void *a, const void *b)
{
    const int32_t *x = sort_ids + (size_t)*(const int *)a * sort_C;
    const int32_t *y = sort_ids + (size_t)*(const int *)b * sort_C;
    for (int p = 0; p < sort_C; p++)
        if (x[p] != y[p])
            return x[p] < y[p] ? -1 : 1;
    return 0;
}

static void count_rows(const int32_t *ids, int n, int C, long *all, long *shared)
{
    int *order = malloc((size_t)n * sizeof *order);
    if (!order)
        return;
    for (int i = 0; i < n; i++)
        order[i] = i;
    sort_ids = ids;
    sort_C = C;
    qsort(order, (size_t)n, sizeof *order, cmp_rows);
    *all = *shared = 0;
    for (int k = 0; k < n; k++) {
        const int32_t *t = ids + (size_t)order[k] * C;
        const int len = clipn_text_pool_index(t, C) + 1, *prev = k ? &order[k - 1] : NULL;
        int common = 0;
        if (prev) {
            const int32_t *u = ids + (size_t)*prev * C;
            const int plen = clipn_text_pool_index(u, C) + 1;
            while (common < len && common < plen && u[common] == t[common])
                common++;
        }
        *all += len;
        *shared += len - common;
    }
    free(order);
}

typedef clipn_status (*encode_fn)(clipn_ctx *, const int32_t *, int, float *, clipn_error *);

int main(int argc, char **argv)
{
    const char *work = getenv("BENCH_WORK") ? getenv("BENCH_WORK") : "build/bench-work";
    char default_model[1024];
    snprintf(default_model, sizeof default_model, "%s/vit-b-16.clipn", work);
    const char *model_path = argc > 1 ? argv[1]
                           : getenv("BENCH_MODEL") ? getenv("BENCH_MODEL") : default_model;
    const int tmpl_index = argc > 2 ? atoi(argv[2]) : 0;
    const int b1_only = getenv("BENCH_TEXT_B1_ONLY") && atoi(getenv("BENCH_TEXT_B1_ONLY"));
    FILE *probe = fopen(model_path, "rb");
    if (!probe) {
        printf("bench_text: no model at %s, skipped (bench/run.sh creates a random ViT-B-16)\n",
               model_path);
        return 0;
    }
    fclose(probe);

    int n_classes = 0, n_templates = 0;
    char **classes = read_lines(CLASSES, &n_classes);
    char **templates = read_lines(TEMPLATES, &n_templates);
    if (!classes || !templates || tmpl_index < 0 || tmpl_index >= n_templates) {
        fprintf(stderr, "bench_text: cannot read %s / %s (template %d)\n", CLASSES, TEMPLATES,
                tmpl_index);
        return 1;
    }
    clipn_error err;
    /* BENCH_THREADS: kernel threads (default: all cores) */
    clipn_ctx_opts opts = {.threads = getenv("BENCH_THREADS") ? atoi(getenv("BENCH_THREADS")) : 0};
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    clipn_tokenizer *tok = NULL;
    if (clipn_model_load(model_path, NULL, &model, &err) ||
        clipn_ctx_new(model, &opts, &ctx, &err) || clipn_tokenizer_from_model(model, &tok, &err)) {
        fprintf(stderr, "bench_text: %s\n", err.message);
        return 1;
    }
    const clipn_config *cfg = clipn_model_config(model);
    const int C = cfg->context_length, E = cfg->embed_dim, n = n_classes;
    int32_t *ids = malloc((size_t)n * C * sizeof *ids);
    float *out = malloc((size_t)n * E * sizeof *out);
    if (!ids || !out)
        return 1;
    for (int c = 0; c < n; c++) {
        char *text = NULL;
        if (clipn_format_template(templates[tmpl_index], classes[c], &text, &err) ||
            clipn_tokenize(tok, text, strlen(text), ids + (size_t)c * C, C, &err)) {
            fprintf(stderr, "bench_text: %s\n", err.message);
            return 1;
        }
        free(text);
    }
    long rows_all = 0, rows_shared = 0;
    count_rows(ids, n, C, &rows_all, &rows_shared);
    printf("text towers: %s (width %d, %d layers), threads %d, kernels %s/%s\n", model_path,
           cfg->text_width, cfg->text_layers, clipn_kernels_threads(), clipn_kernels_isa(),
           clipn_kernels_gemm_backend());
    printf("prompts: %d classes x template %d %s: %.2f positions/prompt run alone, "
           "%.2f with prefix sharing (PyTorch runs %d)\n",
           n, tmpl_index, templates[tmpl_index], (double)rows_all / n, (double)rows_shared / n,
           C);

    /* ms per prompt: [tower][0 batch 1, 1 batch n shared, 2 batch n unshared] */
    double ms[2][3];
    static const char *tower_name[2] = {"yes", "no"};
    const int towers = cfg->has_no_tower ? 2 : 1;
    for (int tw = 0; tw < towers; tw++) {
        encode_fn encode = tw ? clipn_encode_no_text : clipn_encode_text;
        for (int i = 0; i < 5; i++) /* warm up */
            encode(ctx, ids + (size_t)i * C, 1, out, &err);
        ms[tw][0] = 1e30;
        for (int pass = 0; pass < (b1_only ? 3 : 1); pass++) {
            double t0 = now();
            for (int i = 0; i < N_SINGLE; i++)
                if (encode(ctx, ids + (size_t)i * C, 1, out + (size_t)i * E, &err)) {
                    fprintf(stderr, "bench_text: %s\n", err.message);
                    return 1;
                }
            const double t = 1e3 * (now() - t0) / N_SINGLE;
            ms[tw][0] = t < ms[tw][0] ? t : ms[tw][0];
        }
        if (b1_only) {
            printf("  %-3s tower: batch 1 %.3f ms/prompt (best of 3 passes)\n", tower_name[tw],
                   ms[tw][0]);
            continue;
        }
        for (int share = 1; share >= 0; share--) {
            double best = 1e30;
            for (int rep = 0; rep < 2; rep++) {
                const double t0 = now();
                if (clipn_text_encode_batch(ctx, tw, ids, n, share, out, &err)) {
                    fprintf(stderr, "bench_text: %s\n", err.message);
                    return 1;
                }
                const double dt = now() - t0;
                best = dt < best ? dt : best;
            }
            ms[tw][share ? 1 : 2] = 1e3 * best / n;
        }
        printf("  %-3s tower: batch 1 %.3f ms/prompt | batch %d: %.3f ms/prompt shared, "
               "%.3f unshared (sharing %.2fx)\n",
               tower_name[tw], ms[tw][0], n, ms[tw][1], ms[tw][2], ms[tw][2] / ms[tw][1]);
    }

    /* for bench/torch_text.py: the ids and the C numbers */
    char path[1100];
    snprintf(path, sizeof path, "%s/text_ids.i32", work);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(ids, sizeof *ids, (size_t)n * C, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/text_c.txt", work);
        if ((f = fopen(path, "w"))) {
            fprintf(f, "n %d\ncontext %d\n", n, C);
            for (int tw = 0; tw < towers; tw++) {
                fprintf(f, "%s_b1 %.6f\n", tower_name[tw], ms[tw][0]);
                if (!b1_only)
                    fprintf(f, "%s_batch_shared %.6f\n%s_batch_unshared %.6f\n",
                            tower_name[tw], ms[tw][1], tower_name[tw], ms[tw][2]);
            }
            fclose(f);
        }
    }

    free(ids);
    free(out);
    clipn_tokenizer_free(tok);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    for (int i = 0; i < n_classes; i++)
        free(classes[i]);
    for (int i = 0; i < n_templates; i++)
        free(templates[i]);
    free(classes);
    free(templates);
    return 0;
}
