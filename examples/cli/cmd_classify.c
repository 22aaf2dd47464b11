/* clipn classify: zero-shot classes plus CLIPN's OOD verdicts for each image. */
#include "cli_backend.h"
#include "cli_heads.h"
#include "cli_text.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn classify --model M (--classes FILE | --head H) [--templates FILE]\n"
            "                      [--no-templates FILE] [--top K] [--json] [--threads N]\n"
            "                      (IMAGE... | --list FILE)\n\n"
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
            "                              \"glmcm\",\"neglabel\"},  (neglabel: null unless the\n"
            "                    heads carry negatives, see `clipn head --negatives`)\n"
            "                    \"ood\":{\"ctw\":bool,\"atd\":bool}}  (null without a no tower)\n"
            "  --threads N      compute threads (default: all cores)\n"
            CLI_PRECISION_USAGE
            CLI_INPUTS_HELP
            "Images are reported in that order. An unreadable image is reported on stderr and\n"
            "skipped; the others are still classified and printed, and the exit status is\n"
            "then 1.\n");
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
    const double v[8] = {s->ctw,    s->atd,    s->msp,   s->maxlogit,
                         s->energy, s->mcm,    s->glmcm, s->neglabel};
    static const char *const names[8] = {"ctw", "atd",    "msp",   "maxlogit",
                                         "energy", "mcm", "glmcm", "neglabel"};
    for (int j = 0; ok && j < 8; j++)
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

/* max_c p_c * p_yes_c, what ATD compares p_ood = 1 - atd with (the official formulas:
 * p_yes_c = sigmoid(logits_c - logits_no_c), logits = 100 cos). */
static double best_known(const clipn_heads *h, const float *feat, const float *probs)
{
    double nn = 0, best = 0;
    for (int i = 0; i < h->dim; i++)
        nn += (double)feat[i] * feat[i];
    nn = nn > 1e-24 ? sqrt(nn) : 1e-12;
    for (int c = 0; c < h->n_classes; c++) {
        double y = 0, n = 0;
        for (int i = 0; i < h->dim; i++) {
            y += (double)feat[i] * h->yes[(size_t)c * h->dim + i];
            n += (double)feat[i] * h->no[(size_t)c * h->dim + i];
        }
        double d = CLIPN_LOGIT_SCALE * (y - n) / nn;
        double p_yes = d >= 0 ? 1 / (1 + exp(-d)) : exp(d) / (1 + exp(d));
        double v = probs[c] * p_yes;
        best = v > best ? v : best;
    }
    return best;
}

/* The class column: as wide as the widest class name, 12 to 60 display columns (one
 * heads per run: computed once). */
static int name_column(const clipn_heads *h)
{
    static const clipn_heads *done;
    static int width;
    if (done != h) {
        width = 12;
        for (int c = 0; c < h->n_classes && width < 60; c++) {
            int w = cli_text_width(h->class_names[c]);
            width = w > width ? (w < 60 ? w : 60) : width;
        }
        done = h;
    }
    return width;
}

/* Class names in one column (wider names cut with an ellipsis), control characters shown
 * as escapes; each verdict with the values it compared. */
static void print_table(const char *path, const clipn_heads *h, const float *feat,
                        const float *probs, const int *top, int k, const clipn_scores *s)
{
    cli_print_text(stdout, path);
    putchar('\n');
    for (int j = 0; j < k; j++) {
        printf("  %2d. ", j + 1);
        cli_print_cell(stdout, h->class_names[top[j]], name_column(h));
        printf(" %7.3f%%\n", 100.0 * probs[top[j]]);
    }
    if (h->no) {
        char name[256];
        cli_text_fit_middle(h->class_names[s->pred], 60, name, sizeof name);
        double p_no = 1.0 - (double)s->ctw, p_ood = 1.0 - (double)s->atd;
        printf("  CTW: %-19s p_no %.4g %s 0.5 at \"%s\"\n",
               s->ood_ctw ? "OUT-OF-DISTRIBUTION" : "in-distribution", p_no,
               s->ood_ctw ? ">" : "<=", name);
        printf("  ATD: %-19s p_ood %.4g %s %.4g = max_c p_c * p_yes_c\n",
               s->ood_atd ? "OUT-OF-DISTRIBUTION" : "in-distribution", p_ood,
               s->ood_atd ? ">" : "<=", best_known(h, feat, probs));
    } else {
        printf("  CTW/ATD: n/a (the model has no \"no\" text tower)\n");
    }
    printf("  MSP %.4f  MaxLogit %.3f  Energy %.3f  MCM %.6f  GL-MCM %.6f", s->msp, s->maxlogit,
           s->energy, s->mcm, s->glmcm);
    if (h->n_neg > 0)
        printf("  NegLabel %.4f", s->neglabel);
    printf("  (higher = more in-distribution)\n\n");
}

/* Scores and prints one image as the backend delivers it, in input order. */
typedef struct classify_out {
    const char *cmd;
    char **images;
    const clipn_heads *heads;
    float *probs;
    int *top_idx;
    int top, json, failed;
    int n_local; /* GL-MCM local features per image, after the global feature */
} classify_out;

static int classify_one(void *user, size_t i, const float *feat, const char *error)
{
    classify_out *o = user;
    clipn_scores s;
    clipn_error err;
    if (!feat) {
        cli_fail(o->cmd, "%s (skipped)", error); /* the message names the file */
        o->failed++;
        return 0;
    }
    if (clipn_score_image(o->heads, feat, feat + o->heads->dim, o->n_local, o->probs, &s,
                          &err) != CLIPN_OK) {
        cli_fail(o->cmd, "%s: %s (skipped)", o->images[i], err.message);
        o->failed++;
        return 0;
    }
    top_k(o->probs, o->heads->n_classes, o->top, o->top_idx);
    if (o->json) {
        if (print_json(o->images[i], o->heads, o->probs, o->top_idx, o->top, &s))
            return cli_fail(o->cmd, "out of memory");
    } else {
        print_table(o->images[i], o->heads, feat, o->probs, o->top_idx, o->top, &s);
    }
    if (fflush(stdout) != 0 || cli_stdout_failed())
        return 1; /* stop: main reports the write error once, with its reason */
    return 0;
}

int cmd_classify(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL;
    cli_head_args a = {0};
    const char *list_file = NULL;
    int top = 5, json = 0, threads = 0, n_pos;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_PRECISION_OPTION,
        CLI_HEAD_OPTIONS(a),
        CLI_INT("--top", &top, 1, 1000000),
        CLI_INT("--threads", &threads, 0, CLI_MAX_THREADS),
        CLI_FLAG("--json", &json),
        CLI_LIST_OPTION(list_file),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_pos);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if ((st = cli_require_model(cmd, model_path)) || (st = cli_head_args_check(cmd, &a)))
        return st;
    cli_image_list inputs;
    if ((st = cli_inputs_gather(cmd, argv + 1, n_pos, list_file, CLI_NO_LABELS, &inputs)))
        return st;
    char **images = inputs.paths;
    size_t n_images = inputs.n;
    clipn_model *model = cli_load_model(cmd, model_path);
    if (!model) {
        cli_image_list_free(&inputs);
        return 1;
    }
    int rc = 1;
    clipn_error err;
    clipn_ctx *ctx = NULL;
    clipn_ctx_opts opts = {.max_batch = 8, .threads = threads};
    clipn_heads *heads = NULL;
    float *probs = NULL;
    int *top_idx = NULL;
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    if (!(heads = cli_get_heads(cmd, model, ctx, &a)))
        goto done;
    if (top > heads->n_classes)
        top = heads->n_classes;
    probs = malloc((size_t)heads->n_classes * sizeof *probs);
    top_idx = malloc((size_t)top * sizeof *top_idx);
    if (!probs || !top_idx) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    const clipn_config *mc = clipn_model_config(model);
    classify_out out = {cmd, images, heads, probs, top_idx, top, json, 0,
                        (mc->image_size / mc->patch_size) * (mc->image_size / mc->patch_size)};
    const cli_image_job job = {.cmd = cmd, .model = model, .ctx = ctx, .paths = images,
                               .n = n_images, .batch = opts.max_batch,
                               .encoder = CLI_ENC_LOCAL, .on_image = classify_one,
                               .user = &out};
    if (cli_backend_active->encode_images(&job))
        goto done;
    rc = out.failed ? 1 : 0;
done:
    free(probs);
    free(top_idx);
    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    cli_image_list_free(&inputs);
    return rc;
}
