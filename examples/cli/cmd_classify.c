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
            "                    \"scores\":{\"ctw\",\"atd\",\"msp\",\"maxlogit\",\"energy\",\"mcm\",\n"
            "                              \"glmcm\",\"neglabel\"},\n"
            "                    \"ood\":{\"ctw\":bool,\"atd\":bool}}  (ctw, atd, ood: null without\n"
            "                   a no tower; neglabel: null unless the heads carry negatives,\n"
            "                   see `clipn head --negatives`)\n"
            "  --threads N      compute threads (default: all cores)\n"
            "An unreadable image is reported on stderr and skipped; the exit status is then 1.\n");
}

static cJSON *number_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* Indices of the k largest probabilities, descending (k is small: selection). */
static void top_k(const float *p, int n, int k, int *idx)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < n; c++) {
            int used = 0;
            for (int u = 0; u < j; u++)
                used |= idx[u] == c;
            if (!used && (best < 0 || p[c] > p[best]))
                best = c;
        }
        idx[j] = best;
    }
}

static int print_json(const char *path, const clipn_heads *h, const float *probs,
                      const int *top, int k, const clipn_scores *s)
{
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *sc = cJSON_CreateObject();
    cJSON *ood = cJSON_CreateObject();
    if (!o || !arr || !sc || !ood) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        cJSON_Delete(sc);
        cJSON_Delete(ood);
        return -1;
    }
    cJSON_AddStringToObject(o, "image", path);
    cJSON_AddStringToObject(o, "pred", h->class_names[s->pred]);
    for (int j = 0; j < k; j++) {
        cJSON *e = cJSON_CreateObject();
        if (!e)
            break;
        cJSON_AddStringToObject(e, "class", h->class_names[top[j]]);
        cJSON_AddItemToObject(e, "prob", cJSON_CreateNumber(probs[top[j]]));
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddItemToObject(o, "top", arr);
    cJSON_AddItemToObject(sc, "ctw", number_or_null(s->ctw));
    cJSON_AddItemToObject(sc, "atd", number_or_null(s->atd));
    cJSON_AddItemToObject(sc, "msp", number_or_null(s->msp));
    cJSON_AddItemToObject(sc, "maxlogit", number_or_null(s->maxlogit));
    cJSON_AddItemToObject(sc, "energy", number_or_null(s->energy));
    cJSON_AddItemToObject(sc, "mcm", number_or_null(s->mcm));
    cJSON_AddItemToObject(sc, "glmcm", number_or_null(s->glmcm));
    cJSON_AddItemToObject(sc, "neglabel", number_or_null(s->neglabel));
    cJSON_AddItemToObject(o, "scores", sc);
    cJSON_AddItemToObject(ood, "ctw", h->no ? cJSON_CreateBool(s->ood_ctw) : cJSON_CreateNull());
    cJSON_AddItemToObject(ood, "atd", h->no ? cJSON_CreateBool(s->ood_atd) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "ood", ood);
    char *text = cJSON_PrintUnformatted(o);
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
    printf("  MSP %.4f  MaxLogit %.3f  Energy %.3f  MCM %.6f  GL-MCM %.6f", s->msp, s->maxlogit,
           s->energy, s->mcm, s->glmcm);
    if (h->n_neg > 0)
        printf("  NegLabel %.4f", s->neglabel);
    printf("\n\n");
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
    float *pixels = NULL, *feat = NULL, *probs = NULL, *local = NULL;
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
    const clipn_config *mc = clipn_model_config(model);
    const int n_local = (mc->image_size / mc->patch_size) * (mc->image_size / mc->patch_size);
    local = malloc((size_t)n_local * D * sizeof *local);
    probs = malloc((size_t)heads->n_classes * sizeof *probs);
    top_idx = malloc((size_t)top * sizeof *top_idx);
    if (!pixels || !feat || !probs || !top_idx || !local) {
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
        if (clipn_encode_image_local(ctx, pixels, 1, feat, local, &err) != CLIPN_OK ||
            clipn_score_image(heads, feat, local, n_local, probs, &s, &err) != CLIPN_OK) {
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
        fflush(stdout);
    }
    rc = failed ? 1 : 0;
done:
    free(pixels);
    free(feat);
    free(local);
    free(probs);
    free(top_idx);
    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return rc;
}
