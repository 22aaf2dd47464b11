/* clipn classify: zero-shot classes plus CLIPN's OOD verdicts for each image. */
#include "cli_heads.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn classify --model M (--classes FILE | --head H) [--templates FILE]\n"
            "                      [--no-templates FILE] [--top K] [--json] [--threads N] IMAGE...\n\n"
            "Classify each image among the classes and say whether CLIPN thinks it is\n"
            "out-of-distribution: CTW (the \"no\" prompt of the predicted class wins) and ATD\n"
            "(the implicit OOD class beats every known class).\n\n"
            "  --classes FILE   class names, one per line (heads built now, see `clipn head`)\n"
            "  --head H         heads saved by `clipn head` for this model\n"
            "  --templates FILE one template per line (default: the official CLIPN templates)\n"
            "  --top K          classes listed per image (default 5)\n"
            "  --json           one JSON object per image per line:\n"
            "                   {\"image\",\"pred\",\"top\":[{\"class\",\"prob\"}],\n"
            "                    \"scores\":{\"ctw\",\"atd\",\"msp\",\"maxlogit\",\"energy\",\"mcm\"},\n"
            "                    \"ood\":{\"ctw\":bool,\"atd\":bool}}  (null without a no tower)\n"
            "  --threads N      compute threads (default: all cores)\n"
            "An unreadable image is reported on stderr and skipped; the others are still\n"
            "classified and printed, and the exit status is then 1.\n");
}

static cJSON *number_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* p[a] ranks before p[b]: larger first, NaN last, ties by index (the order a stable
 * descending sort gives). */
static int ranks_before(const float *p, int a, int b)
{
    float x = isnan(p[a]) ? -INFINITY : p[a], y = isnan(p[b]) ? -INFINITY : p[b];
    return x > y || (x == y && a < b);
}

/* Sift down in a heap whose root is the worst-ranked of the k kept. */
static void sift_down(const float *p, int *h, int k, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && ranks_before(p, h[w], h[l]))
            w = l;
        if (r < k && ranks_before(p, h[w], h[r]))
            w = r;
        if (w == i)
            return;
        int t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Indices of the k best-ranked probabilities, best first: O(n log k) with a heap of the
 * k kept, then heap-sorted in place. */
static void top_k(const float *p, int n, int k, int *idx)
{
    for (int c = 0; c < k; c++)
        idx[c] = c;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(p, idx, k, i);
    for (int c = k; c < n; c++)
        if (ranks_before(p, c, idx[0])) {
            idx[0] = c;
            sift_down(p, idx, k, 0);
        }
    for (int end = k - 1; end > 0; end--) { /* the worst goes last each time */
        int t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(p, idx, end, 0);
    }
}

/* One JSON line per image; every string made valid UTF-8 and every allocation checked:
 * -1 when out of memory (nothing printed). */
static int print_json(const char *path, const clipn_heads *h, const float *probs,
                      const int *top, int k, const clipn_scores *s)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cli_json_add_string(o, "image", path);
    ok = ok && cli_json_add_string(o, "pred", h->class_names[s->pred]);
    cJSON *arr = ok ? cli_json_add_item(o, "top", cJSON_CreateArray()) : NULL;
    ok = ok && arr;
    for (int j = 0; ok && j < k; j++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            ok = 0;
            break;
        }
        ok = cli_json_add_string(e, "class", h->class_names[top[j]]) &&
             cli_json_add_item(e, "prob", cJSON_CreateNumber(probs[top[j]]));
    }
    cJSON *sc = ok ? cli_json_add_item(o, "scores", cJSON_CreateObject()) : NULL;
    ok = ok && sc;
    const double v[6] = {s->ctw, s->atd, s->msp, s->maxlogit, s->energy, s->mcm};
    static const char *const names[6] = {"ctw", "atd", "msp", "maxlogit", "energy", "mcm"};
    for (int j = 0; ok && j < 6; j++)
        ok = cli_json_add_item(sc, names[j], number_or_null(v[j])) != NULL;
    cJSON *ood = ok ? cli_json_add_item(o, "ood", cJSON_CreateObject()) : NULL;
    ok = ok && ood &&
         cli_json_add_item(ood, "ctw", h->no ? cJSON_CreateBool(s->ood_ctw) : cJSON_CreateNull()) &&
         cli_json_add_item(ood, "atd", h->no ? cJSON_CreateBool(s->ood_atd) : cJSON_CreateNull());
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return -1;
    puts(text);
    cJSON_free(text);
    return 0;
}

static void print_table(const char *path, const clipn_heads *h, const float *probs,
                        const int *top, int k, const clipn_scores *s)
{
    printf("%s\n", path);
    for (int j = 0; j < k; j++)
        printf("  %2d. %-40.40s %7.3f%%\n", j + 1, h->class_names[top[j]], 100.0 * probs[top[j]]);
    if (h->no) {
        printf("  CTW: %-18s (p_yes at \"%s\" = %.4f)\n", s->ood_ctw ? "OUT-OF-DISTRIBUTION" : "in-distribution",
               h->class_names[s->pred], s->ctw);
        printf("  ATD: %-18s (1 - ATD = %.4f)\n", s->ood_atd ? "OUT-OF-DISTRIBUTION" : "in-distribution",
               1.0 - s->atd);
    } else {
        printf("  CTW/ATD: n/a (the model has no \"no\" text tower)\n");
    }
    printf("  MSP %.4f  MaxLogit %.3f  Energy %.3f  MCM %.6f\n\n", s->msp, s->maxlogit,
           s->energy, s->mcm);
}

int cmd_classify(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL;
    cli_head_args a = {0};
    int top = 5, json = 0, threads = 0, n_images;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_HEAD_OPTIONS(a),
        CLI_INT("--top", &top, 1, 1000000),
        CLI_INT("--threads", &threads, 0, CLI_MAX_THREADS),
        CLI_FLAG("--json", &json),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_images);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (n_images == 0)
        return cli_fail(cmd, "no IMAGE given (see --help)"), 2;
    if (!a.head && !a.classes)
        return cli_fail(cmd, "--classes FILE or --head H is required (see --help)"), 2;
    char **images = argv + 1;
    clipn_model *model = cli_load_model(cmd, model_path);
    if (!model)
        return 1;
    int rc = 1, failed = 0;
    clipn_error err;
    clipn_ctx *ctx = NULL;
    clipn_ctx_opts opts = {.max_batch = 8, .threads = threads};
    clipn_heads *heads = NULL;
    float *pixels = NULL, *feat = NULL, *probs = NULL;
    int *top_idx = NULL;
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    if (!(heads = cli_get_heads(cmd, model, ctx, &a)))
        goto done;
    clipn_image_opts io;
    clipn_image_opts_from_model(model, &io);
    size_t S = (size_t)io.image_size, D = (size_t)heads->dim;
    if (top > heads->n_classes)
        top = heads->n_classes;
    pixels = malloc(3 * S * S * sizeof *pixels);
    feat = malloc(D * sizeof *feat);
    probs = malloc((size_t)heads->n_classes * sizeof *probs);
    top_idx = malloc((size_t)top * sizeof *top_idx);
    if (!pixels || !feat || !probs || !top_idx) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_images; i++) {
        clipn_scores s;
        if (clipn_preprocess_file(images[i], &io, pixels, &err) != CLIPN_OK) {
            cli_fail(cmd, "%s (skipped)", err.message); /* the message names the file */
            failed++;
            continue;
        }
        if (clipn_encode_image(ctx, pixels, 1, feat, &err) != CLIPN_OK ||
            clipn_score(heads, feat, probs, &s, &err) != CLIPN_OK) {
            cli_fail(cmd, "%s: %s (skipped)", images[i], err.message);
            failed++;
            continue;
        }
        top_k(probs, heads->n_classes, top, top_idx);
        if (json) {
            if (print_json(images[i], heads, probs, top_idx, top, &s)) {
                cli_fail(cmd, "out of memory");
                goto done;
            }
        } else {
            print_table(images[i], heads, probs, top_idx, top, &s);
        }
        if (fflush(stdout) != 0 || cli_stdout_failed())
            goto done; /* reported once, by main, with the reason */
    }
    rc = failed ? 1 : 0;
done:
    free(pixels);
    free(feat);
    free(probs);
    free(top_idx);
    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return rc;
}
