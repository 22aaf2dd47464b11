/* clipn head: build the yes/no class heads once and save them (docs/head-format.md). */
#include "cli_heads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn head --model M --classes FILE [--templates FILE] [--no-templates FILE]\n"
            "                  [--negatives NEG.txt [--neg-groups N]] [--threads N] --out H\n\n"
            "Encode every template x class with both text towers and save the normalised\n"
            "class heads (heads.yes, heads.no) to H, a small safetensors file that records the\n"
            "class names, the templates and the model's fingerprint. `classify` and `eval`\n"
            "take --head H instead of --classes and refuse heads built from another model.\n\n"
            "  --classes FILE       one class name per line\n"
            "  --templates FILE     one template per line, \"{}\" = class name (default: the\n"
            "                       128 official CLIPN templates, embedded)\n"
            "  --no-templates FILE  templates for the no tower (default: the same)\n"
            "  --threads N          compute threads (default: all cores)\n"
            CLI_PRECISION_USAGE
            "  --yes-npy Y.npy      import heads computed elsewhere (e.g. by the official\n"
            "  --no-npy N.npy       PyTorch code): float32 [C, D] rows, re-normalised; no\n"
            "                       text is encoded and no templates are recorded\n"
            "  --negatives NEG.txt  NegLabel negative prompts, one per line, each encoded as\n"
            "                       given with the yes tower (e.g. from `clipn neg-labels`);\n"
            "                       classify and eval then report the neglabel score\n"
            "  --neg-groups N       groups the NegLabel score splits them into (default 100,\n"
            "                       at most the number of negatives; docs/methods.md)\n");
}

/* One [C, D] float32 .npy of head rows, checked against the class count and the model. */
static float *read_head_npy(const char *cmd, const char *path, int n_classes, int dim)
{
    float *data = NULL;
    int ndim = 0;
    size_t shape[8];
    if (cli_read_npy_f32(cmd, path, &data, &ndim, shape))
        return NULL;
    if (ndim != 2 || shape[0] != (size_t)n_classes || shape[1] != (size_t)dim) {
        cli_fail(cmd, "%s: expected shape [%d, %d] (classes x embed_dim)", path, n_classes, dim);
        free(data);
        return NULL;
    }
    for (size_t c = 0; c < shape[0]; c++) {
        double ss = 0;
        float *row = data + c * shape[1];
        for (size_t i = 0; i < shape[1]; i++)
            ss += (double)row[i] * row[i];
        if (!(ss > 0) || !isfinite(ss)) {
            cli_fail(cmd, "%s: row %zu is zero or not finite", path, c);
            free(data);
            return NULL;
        }
        for (size_t i = 0; i < shape[1]; i++)
            row[i] = (float)(row[i] / sqrt(ss));
    }
    return data;
}

static clipn_heads *import_heads(const char *cmd, const clipn_model *model, const char *classes,
                                 const char *yes_npy, const char *no_npy)
{
    const clipn_config *cfg = clipn_model_config(model);
    if (cfg->has_no_tower && !no_npy) {
        cli_fail(cmd, "--no-npy is required: the model has a no tower");
        return NULL;
    }
    char **names = NULL;
    int n = cli_read_classes(cmd, classes, &names);
    if (n <= 0)
        return NULL;
    clipn_heads *h = calloc(1, sizeof *h);
    if (h) {
        h->n_classes = n;
        h->dim = cfg->embed_dim;
        h->class_names = calloc((size_t)n, sizeof *h->class_names);
    }
    int ok = h && h->class_names;
    for (int c = 0; ok && c < n; c++)
        ok = (h->class_names[c] = strdup(names[c])) != NULL;
    free(names);
    if (!ok) {
        cli_fail(cmd, "out of memory");
        clipn_heads_free(h);
        return NULL;
    }
    h->yes = read_head_npy(cmd, yes_npy, n, cfg->embed_dim);
    if (h->yes && no_npy)
        h->no = read_head_npy(cmd, no_npy, n, cfg->embed_dim);
    if (!h->yes || (no_npy && !h->no)) {
        clipn_heads_free(h);
        return NULL;
    }
    return h;
}

typedef struct save_args {
    const char *cmd, *out;
    const clipn_model *model;
    const clipn_heads *heads;
    const char *const *tmpl, *const *no_tmpl;
    int n_tmpl, n_no;
} save_args;

/* clipn_heads_save into the temporary file cli_out_save_with renames into place. */
static int save_heads(const char *tmp, void *arg)
{
    const save_args *s = arg;
    clipn_error err;
    if (clipn_heads_save(tmp, s->model, s->heads, (const char *const *)s->heads->class_names,
                         s->tmpl, s->n_tmpl, s->no_tmpl, s->n_no, &err) == CLIPN_OK)
        return 0;
    size_t n = strlen(tmp); /* the message names our temporary: name the user's file */
    if (!strncmp(err.message, tmp, n))
        return cli_fail(s->cmd, "%s%s", s->out, err.message + n);
    return cli_fail_err(s->cmd, &err);
}

int cmd_head(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *out = NULL, *yes_npy = NULL, *no_npy = NULL;
    cli_head_args a = {0};
    const char *negatives = NULL;
    int threads = 0, neg_groups = 0;
    int n_extra;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_PRECISION_OPTION,
        CLI_HEAD_BUILD_OPTIONS(a),
        CLI_STRING("--out", &out),
        CLI_STRING("--yes-npy", &yes_npy),
        CLI_STRING("--no-npy", &no_npy),
        CLI_INT("--threads", &threads, 0, CLI_MAX_THREADS),
        CLI_STRING("--negatives", &negatives),
        CLI_INT("--neg-groups", &neg_groups, 1, CLIPN_MAX_NEGATIVES),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]),
                            usage, &n_extra);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (n_extra > 0)
        return cli_fail(cmd, "unexpected argument '%s' (see --help)", argv[1]), 2;
    if ((st = cli_require_model(cmd, model_path)))
        return st;
    if (!a.classes || !out)
        return cli_fail(cmd, "--classes FILE and --out H are required (see --help)"), 2;
    if (yes_npy && (a.templates || a.no_templates))
        return cli_fail(cmd, "--templates does nothing with --yes-npy (no text is encoded)"), 2;
    if (!yes_npy && no_npy)
        return cli_fail(cmd, "--no-npy needs --yes-npy"), 2;
    const cli_path outs[] = {{"--out", out}};
    const cli_path ins[] = {{"--model", model_path}, {"--classes", a.classes},
                            {"--templates", a.templates}, {"--no-templates", a.no_templates},
                            {"--yes-npy", yes_npy}, {"--no-npy", no_npy},
                            {"--negatives", negatives}};
    if ((st = cli_check_paths(cmd, outs, 1, ins, (int)(sizeof ins / sizeof ins[0]))))
        return st;
    clipn_model *model = cli_load_model(cmd, model_path);
    if (!model)
        return 1;
    int rc = 1;
    clipn_error err;
    clipn_ctx *ctx = NULL;
    clipn_ctx_opts opts = {.max_batch = 32, .threads = threads};
    clipn_heads *heads = NULL;
    char **tmpl_owned = NULL, **no_owned = NULL;
    const char *const *tmpl = NULL, *const *no_tmpl = NULL;
    int n_tmpl = 0, n_no = 0;
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    if (yes_npy) {
        if (!(heads = import_heads(cmd, model, a.classes, yes_npy, no_npy)))
            goto done;
        /* nothing was encoded: record no templates */
        if (negatives && cli_add_negatives(cmd, ctx, heads, negatives, neg_groups))
            goto done;
        save_args sa = {cmd, out, model, heads, NULL, NULL, 0, 0};
        if (cli_out_save_with(cmd, out, save_heads, &sa))
            goto done;
        fprintf(stderr, "clipn head: wrote %s (%d classes x %d dims, imported", out,
                heads->n_classes, heads->dim);
        if (heads->n_neg > 0)
            fprintf(stderr, ", %d negatives in %d groups", heads->n_neg, heads->neg_groups);
        fprintf(stderr, ")\n");
        rc = 0;
        goto done;
    }
    if (!(heads = cli_get_heads(cmd, model, ctx, &a)))
        goto done;
    if ((n_tmpl = cli_get_templates(cmd, a.templates, &tmpl, &tmpl_owned)) < 0)
        goto done;
    if (a.no_templates && (n_no = cli_get_templates(cmd, a.no_templates, &no_tmpl, &no_owned)) < 0)
        goto done;
    if (negatives && cli_add_negatives(cmd, ctx, heads, negatives, neg_groups))
        goto done;
    save_args sa = {cmd, out, model, heads, tmpl, no_tmpl, n_tmpl, n_no};
    if (cli_out_save_with(cmd, out, save_heads, &sa))
        goto done;
    char fp[17] = "";
    clipn_model_fingerprint(model, fp, NULL);
    fprintf(stderr, "clipn head: wrote %s (%d classes x %d dims, %s, model %s", out,
            heads->n_classes, heads->dim, heads->no ? "yes+no heads" : "yes head only", fp);
    if (heads->n_neg > 0)
        fprintf(stderr, ", %d negatives in %d groups", heads->n_neg, heads->neg_groups);
    fprintf(stderr, ")\n");
    rc = 0;
done:
    free(tmpl_owned);
    free(no_owned);
    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return rc;
}
