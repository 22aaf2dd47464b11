/* clipn eval: AUROC and FPR95 of every score on ID vs OOD image sets, as the official
 * zero_shot_infer.py reports them, plus ID accuracy, CSVs and an SVG ROC plot.
 * Images are encoded through the CLI backend (cli_backend.h). */
#include "cli_backend.h"
#include "cli_heads.h"
#include "cli_plot.h"
#include "cli_text.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OOD 32
#define N_SCORES 8
static const char *score_names[N_SCORES] = {"ctw",    "atd", "msp",   "maxlogit",
                                            "energy", "mcm", "glmcm", "neglabel"};
#define SCORE_NEGLABEL 7
/* CTW/ATD need no heads, NegLabel heads with negatives; the rest are always there. */
static int score_available(int s, int has_no, int has_neg)
{
    return s < 2 ? has_no : s == SCORE_NEGLABEL ? has_neg : 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn eval --model M (--classes F | --head H) --id LIST --ood NAME=LIST\n"
            "                  [--ood NAME=LIST ...] [--templates F] [--no-templates F]\n"
            "                  [--json] [--fpr95 interp|nearest] [--scores-csv F]\n"
            "                  [--roc-csv F] [--plot F.svg] [--batch N] [--threads N]\n\n"
            "Score every image and report, per OOD set and per score (ctw, atd, msp, maxlogit,\n"
            "energy, mcm, glmcm, neglabel; higher = more in-distribution; neglabel needs heads\n"
            "with negatives, see `clipn head --negatives`), AUROC and FPR at 95%% TPR as fractions,\n"
            "with ID as the positive class, exactly as the official CLIPN evaluation.\n\n"
            "  LIST               a folder (searched recursively for images, sorted by path)\n"
            "                     or a text file of image paths (\"-\" = stdin), one per line,\n"
            "                     optionally \"path,label\"\n"
            "  --id LIST          in-distribution images; ID accuracy is reported for images\n"
            "                     whose label (\"path,label\" or the parent folder's name)\n"
            "                     is a class name\n"
            "  --ood NAME=LIST    an OOD set (repeatable, up to %d)\n"
            "  --fpr95 interp     official CLIPN: interp1d(tpr, fpr)(0.95) on sklearn's\n"
            "                     roc_curve (default)\n"
            "  --fpr95 nearest    MCM / Outlier Exposure: FPR at the threshold whose TPR is\n"
            "                     nearest 0.95\n"
            "  --json             one JSON object: {\"ood\": {NAME: {SCORE: {\"auroc\",\n"
            "                     \"fpr95\"}}}, \"fpr95_convention\", \"id_accuracy\", \"n_id\", ...}\n"
            "  --scores-csv F     per-image scores (image,set,label,pred,ctw,...)\n"
            "  --roc-csv F        ROC points (set,score,threshold,fpr,tpr)\n"
            "  --plot F.svg       ROC curves, one panel per OOD set\n"
            "  --batch N          images per encoder call (default 16)\n"
            CLI_PRECISION_USAGE
            "Unreadable images are reported on stderr and skipped.\n",
            MAX_OOD);
}

/* ------------------------------------------------------------------ results */

typedef struct image_result {
    int ok, pred, set;  /* set 0 = ID, 1.. = OOD */
    float score[N_SCORES];
} image_result;

typedef struct eval_set {
    const char *name;
    cli_image_list list;
    size_t first;       /* index of its first image in the flat list */
} eval_set;

/* ------------------------------------------------------------------ scoring */

typedef struct pipeline {
    const char *cmd;
    char **paths;       /* flat list */
    size_t n_images;
    image_result *res;
    const clipn_heads *heads;
    int n_local;        /* GL-MCM local features per image, after the global feature */
} pipeline;

/* Scores one image as the backend delivers it (in order); unreadable ones are skipped. */
static int score_image(void *user, size_t i, const float *feat, const char *error)
{
    pipeline *p = user;
    clipn_scores s;
    clipn_error err;
    image_result *r = &p->res[i];
    if (!feat) {
        cli_fail(p->cmd, "%s (skipped)", error); /* it names the file */
    } else if (clipn_score_image(p->heads, feat, feat + p->heads->dim, p->n_local, NULL, &s,
                                 &err) != CLIPN_OK) {
        cli_fail(p->cmd, "%s: %s (skipped)", p->paths[i], err.message);
    } else {
        float v[N_SCORES] = {s.ctw, s.atd, s.msp, s.maxlogit, s.energy, s.mcm, s.glmcm,
                             s.neglabel};
        memcpy(r->score, v, sizeof v);
        r->pred = s.pred;
        r->ok = 1;
    }
    cli_progress("images", i + 1, p->n_images);
    return 0;
}

/* ------------------------------------------------------------------ outputs */

static void csv_field(FILE *f, const char *s)
{
    if (!s)
        return;
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int write_scores_csv(const char *cmd, const char *path, const pipeline *p,
                            const eval_set *sets, char **labels, const clipn_heads *heads)
{
    cli_out *o = cli_out_open(cmd, path);
    if (!o)
        return 1;
    FILE *f = cli_out_file(o);
    fprintf(f, "image,set,label,pred,ctw,atd,msp,maxlogit,energy,mcm,glmcm,neglabel\n");
    for (size_t i = 0; i < p->n_images; i++) {
        const image_result *r = &p->res[i];
        if (!r->ok)
            continue;
        csv_field(f, p->paths[i]);
        fputc(',', f);
        csv_field(f, r->set == 0 ? "id" : sets[r->set].name);
        fputc(',', f);
        csv_field(f, labels[i]);
        fputc(',', f);
        csv_field(f, heads->class_names[r->pred]);
        for (int s = 0; s < N_SCORES; s++) {
            if (isfinite(r->score[s]))
                fprintf(f, ",%.9g", r->score[s]);
            else
                fputc(',', f);
        }
        fputc('\n', f);
    }
    return cli_out_close(o);
}

/* Scores of one set for one score kind, from the successfully scored images. */
static size_t gather(const pipeline *p, int set, int score, float *out)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_images; i++)
        if (p->res[i].ok && p->res[i].set == set)
            out[n++] = p->res[i].score[score];
    return n;
}

typedef struct metric {
    double auroc, fpr95;
    int valid;
} metric;

static int write_plots(const char *cmd, const char *svg_path, const char *roc_csv,
                       const pipeline *p, const eval_set *sets, int n_sets, int has_no,
                       metric m[][N_SCORES], float *buf_id, float *buf_ood, const char *conv)
{
    FILE *svg = NULL, *csv = NULL;
    cli_out *svg_out = NULL, *csv_out = NULL;
    if (svg_path && !(svg_out = cli_out_open(cmd, svg_path)))
        return 1;
    if (roc_csv && !(csv_out = cli_out_open(cmd, roc_csv))) {
        cli_out_discard(svg_out);
        return 1;
    }
    svg = svg_out ? cli_out_file(svg_out) : NULL;
    csv = csv_out ? cli_out_file(csv_out) : NULL;
    if (csv)
        fprintf(csv, "set,score,threshold,fpr,tpr\n");
    cli_roc_plot plot;
    if (svg)
        cli_plot_begin(&plot, svg, n_sets - 1, N_SCORES, conv);
    int rc = 0;
    for (int o = 1; o < n_sets && !rc; o++) {
        if (svg)
            cli_plot_panel(&plot, sets[o].name);
        for (int s = 0; s < N_SCORES; s++) {
            if (!score_available(s, has_no, p->heads->n_neg > 0))
                continue;
            size_t ni = gather(p, 0, s, buf_id), no = gather(p, o, s, buf_ood);
            if (!ni || !no)
                continue;
            clipn_roc roc;
            clipn_error err;
            if (clipn_roc_curve(buf_id, ni, buf_ood, no, &roc, &err) != CLIPN_OK) {
                rc = cli_fail(cmd, "%s", err.message);
                break;
            }
            for (size_t k = 0; csv && k < roc.n; k++) {
                csv_field(csv, sets[o].name);
                fprintf(csv, ",%s,%.9g,%.17g,%.17g\n", score_names[s], (double)roc.threshold[k],
                        roc.fpr[k], roc.tpr[k]);
            }
            if (svg)
                cli_plot_curve(&plot, s, score_names[s], roc.fpr, roc.tpr, roc.n, m[o][s].auroc,
                               m[o][s].fpr95);
            clipn_roc_free(&roc);
        }
    }
    if (svg)
        cli_plot_end(&plot);
    if (rc) { /* out of memory: what was written is incomplete, keep the old files */
        cli_out_discard(svg_out);
        cli_out_discard(csv_out);
        return rc;
    }
    if (svg_out)
        rc |= cli_out_close(svg_out);
    if (csv_out)
        rc |= cli_out_close(csv_out);
    return rc;
}

static cJSON *num_or_null(double v, int valid)
{
    return valid && isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static int cmp_label(const void *a, const void *b, void *labels)
{
    char **l = labels;
    return strcmp(l[*(const size_t *)a], l[*(const size_t *)b]);
}

/* A label that names no class (a typo, or a folder that is not a class) leaves its images
 * out of the accuracy: say so, one line per label with its count. */
static void warn_unmatched_labels(const char *cmd, const clipn_heads *heads,
                                  const image_result *res, char **labels, size_t n_images)
{
    size_t n = 0, *idx = malloc((n_images ? n_images : 1) * sizeof *idx);
    if (!idx) { /* cannot list them by label: still say that some match no class */
        for (size_t i = 0; i < n_images; i++)
            n += res[i].set == 0 && res[i].ok && labels[i] && cli_class_index(heads, labels[i]) < 0;
        if (n)
            fprintf(stderr, "clipn %s: warning: %zu ID image%s with labels that match no class "
                    "(out of memory listing them): not counted in the accuracy\n", cmd, n,
                    n == 1 ? "" : "s");
        return;
    }
    for (size_t i = 0; i < n_images; i++)
        if (res[i].set == 0 && res[i].ok && labels[i] && cli_class_index(heads, labels[i]) < 0)
            idx[n++] = i;
    qsort_r(idx, n, sizeof *idx, cmp_label, labels);
    size_t shown = 0, distinct = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && !strcmp(labels[idx[i]], labels[idx[j]]); j++)
            ;
        distinct++;
        if (shown < 20) {
            shown++;
            fprintf(stderr, "clipn %s: warning: label '", cmd);
            cli_print_text(stderr, labels[idx[i]]);
            fprintf(stderr, "' (%zu ID image%s) matches no class: not counted in the accuracy\n",
                    j - i, j - i == 1 ? "" : "s");
        }
    }
    if (distinct > shown)
        fprintf(stderr, "clipn %s: warning: ... and %zu more labels that match no class\n", cmd,
                distinct - 20);
    free(idx);
}

/* ------------------------------------------------------------------ main */

/* --ood NAME=LIST, repeatable: sets[1..] in the order given. */
typedef struct ood_list {
    eval_set *sets;
    const char **specs;
    int n_sets; /* sets[0] is the ID set */
} ood_list;

static int parse_ood(void *dest, const char *cmd, char *v)
{
    ood_list *l = dest;
    char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1])
        return cli_fail(cmd, "--ood needs NAME=LIST, got '%s'", v), 2;
    if (l->n_sets > MAX_OOD)
        return cli_fail(cmd, "at most %d --ood sets", MAX_OOD), 2;
    *eq = '\0'; /* argv is writable: v becomes NAME */
    for (int t = 0; t < l->n_sets; t++)
        if (!strcmp(l->sets[t].name, v))
            return cli_fail(cmd, "--ood name '%s' is %s", v,
                            t ? "given twice" : "reserved for the ID set"),
                   2;
    l->specs[l->n_sets] = eq + 1;
    l->sets[l->n_sets++].name = v;
    return 0;
}

static int parse_fpr95(void *dest, const char *cmd, char *v)
{
    clipn_fpr95_mode *mode = dest;
    if (!strcmp(v, "interp"))
        *mode = CLIPN_FPR95_INTERP;
    else if (!strcmp(v, "nearest"))
        *mode = CLIPN_FPR95_NEAREST;
    else
        return cli_fail(cmd, "--fpr95 is interp or nearest, not '%s'", v), 2;
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *id_spec = NULL, *scores_csv = NULL;
    const char *roc_csv = NULL, *plot = NULL;
    cli_head_args a = {0};
    int json = 0, threads = 0, batch_size = 16;
    clipn_fpr95_mode mode = CLIPN_FPR95_INTERP;
    eval_set sets[MAX_OOD + 1];
    const char *ood_specs[MAX_OOD + 1];
    memset(sets, 0, sizeof sets);
    sets[0].name = "id";
    ood_list ood = {sets, ood_specs, 1};
    int n_extra;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_PRECISION_OPTION,
        CLI_HEAD_OPTIONS(a),
        CLI_STRING("--id", &id_spec),
        CLI_CUSTOM("--ood", &ood, parse_ood),
        CLI_CUSTOM("--fpr95", &mode, parse_fpr95),
        CLI_STRING("--scores-csv", &scores_csv),
        CLI_STRING("--roc-csv", &roc_csv),
        CLI_STRING("--plot", &plot),
        CLI_INT("--threads", &threads, 0, CLI_MAX_THREADS),
        CLI_INT("--batch", &batch_size, 1, 4096),
        CLI_FLAG("--json", &json),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]),
                            usage, &n_extra);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (n_extra > 0)
        return cli_fail(cmd, "unexpected argument '%s' (see --help)", argv[1]), 2;
    const int n_sets = ood.n_sets;
    if (!id_spec || n_sets < 2)
        return cli_fail(cmd,
                        "--id LIST and at least one --ood NAME=LIST are required (see --help)"),
               2;
    if ((st = cli_require_model(cmd, model_path)) || (st = cli_head_args_check(cmd, &a)))
        return st;
    ood_specs[0] = id_spec;
    int n_stdin = 0;
    for (int s = 0; s < n_sets; s++)
        n_stdin += !strcmp(ood_specs[s], "-");
    if (n_stdin > 1)
        return cli_fail(cmd, "only one LIST can be '-' (standard input)"), 2;

    /* Outputs checked and every list read before the (slow) model load, so a typo or an
     * unwritable output fails fast, and no input is ever overwritten. */
    const cli_path outs[] = {{"--scores-csv", scores_csv}, {"--roc-csv", roc_csv},
                             {"--plot", plot}};
    cli_path ins[5 + MAX_OOD + 1] = {{"--model", model_path}, {"--head", a.head},
                                    {"--classes", a.classes}, {"--templates", a.templates},
                                    {"--no-templates", a.no_templates}};
    int n_ins = 5;
    for (int s = 0; s < n_sets; s++)
        ins[n_ins++] = (cli_path){s ? "--ood" : "--id", ood_specs[s]};
    if ((st = cli_check_paths(cmd, outs, 3, ins, n_ins)))
        return st;
    size_t n_images = 0;
    int rc = 1;
    for (int s = 0; s < n_sets; s++) {
        if (cli_inputs_add_spec(cmd, ood_specs[s], CLI_LABELS, &sets[s].list) < 0 ||
            (st = cli_check_paths_list(cmd, outs, 3, "image", sets[s].list.paths,
                                       sets[s].list.n))) {
            for (int t = 0; t <= s; t++)
                cli_image_list_free(&sets[t].list);
            return st ? st : 1;
        }
        sets[s].first = n_images;
        n_images += sets[s].list.n;
    }
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    clipn_heads *heads = NULL;
    pipeline p;
    memset(&p, 0, sizeof p);
    char **paths = calloc(n_images, sizeof *paths), **labels = calloc(n_images, sizeof *labels);
    image_result *res = calloc(n_images, sizeof *res);
    float *buf_id = malloc(n_images * sizeof(float));
    float *buf_ood = malloc(n_images * sizeof(float));
    metric (*m)[N_SCORES] = calloc((size_t)n_sets, sizeof *m);
    if (!paths || !labels || !res || !buf_id || !buf_ood || !m) {
        cli_fail(cmd, "out of memory for %zu images", n_images);
        goto done;
    }
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < sets[s].list.n; i++) {
            paths[sets[s].first + i] = sets[s].list.paths[i];
            labels[sets[s].first + i] = sets[s].list.labels[i];
            res[sets[s].first + i].set = s;
        }
    if (!(model = cli_load_model(cmd, model_path)))
        goto done;
    clipn_error err;
    clipn_ctx_opts opts = {.max_batch = batch_size, .threads = threads};
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    if (!(heads = cli_get_heads(cmd, model, ctx, &a)))
        goto done;

    /* ---- score every image */
    p.cmd = cmd;
    p.paths = paths;
    p.n_images = n_images;
    p.res = res;
    p.heads = heads;
    {
        const clipn_config *mc = clipn_model_config(model);
        p.n_local = (mc->image_size / mc->patch_size) * (mc->image_size / mc->patch_size);
    }
    const cli_image_job job = {.cmd = cmd, .model = model, .ctx = ctx, .paths = paths,
                               .n = n_images, .batch = batch_size, .encoder = CLI_ENC_LOCAL,
                               .on_image = score_image, .user = &p};
    int bad = cli_backend_active->encode_images(&job);
    cli_progress_end();
    if (bad)
        goto done;

    /* ---- metrics. A set none of whose images could be scored is reported and skipped;
     * the others are still reported and every output still written (exit status 1). */
    int has_no = heads->no != NULL, skipped = 0;
    size_t n_ok[MAX_OOD + 1] = {0};
    for (size_t i = 0; i < n_images; i++)
        n_ok[res[i].set] += res[i].ok;
    if (!n_ok[0]) {
        cli_fail(cmd, "%s: no ID image could be scored: no metrics", id_spec);
        skipped = 1;
    }
    for (int o = 1; o < n_sets && n_ok[0]; o++) {
        if (!n_ok[o]) {
            cli_fail(cmd, "OOD set %s: no image could be scored (skipped)", sets[o].name);
            skipped = 1;
            continue;
        }
        for (int s = 0; s < N_SCORES; s++) {
            if (!score_available(s, has_no, heads->n_neg > 0))
                continue;
            size_t ni = gather(&p, 0, s, buf_id), no = gather(&p, o, s, buf_ood);
            if (clipn_auroc(buf_id, ni, buf_ood, no, &m[o][s].auroc, &err) != CLIPN_OK ||
                clipn_fpr95(buf_id, ni, buf_ood, no, mode, &m[o][s].fpr95, &err) != CLIPN_OK) {
                cli_fail(cmd, "%s / %s: %s", sets[o].name, score_names[s], err.message);
                skipped = 1;
                continue;
            }
            m[o][s].valid = 1;
        }
    }
    size_t labelled = 0, correct = 0;
    for (size_t i = 0; i < n_images; i++) {
        if (res[i].set != 0 || !res[i].ok)
            continue;
        int c = cli_class_index(heads, labels[i]);
        if (c >= 0) {
            labelled++;
            correct += res[i].pred == c;
        }
    }
    warn_unmatched_labels(cmd, heads, res, labels, n_images);
    double acc = labelled ? (double)correct / (double)labelled : NAN;
    size_t n_failed = n_images;
    for (int s = 0; s < n_sets; s++)
        n_failed -= n_ok[s];
    const char *conv = mode == CLIPN_FPR95_INTERP ? "interp" : "nearest";
    const char *conv_long =
        mode == CLIPN_FPR95_INTERP
            ? "interp (official CLIPN: interp1d(tpr, fpr)(0.95) on sklearn roc_curve)"
            : "nearest (MCM / Outlier Exposure: FPR at the TPR nearest 0.95)";
    int out_failed = 0;

    /* ---- report */
    if (!n_ok[0]) {
        /* nothing to report: only the per-image scores are written */
    } else if (json) {
        cJSON *root = cJSON_CreateObject(), *ood = cJSON_CreateObject(), *n_ood = cJSON_CreateObject();
        int bad = !root || !ood || !n_ood;
        if (bad) {
            cJSON_Delete(ood);
            cJSON_Delete(n_ood);
        } else {
            bad |= !cli_json_add_item(root, "ood", ood);
            for (int o = 1; o < n_sets; o++) {
                cJSON *set = cli_json_add_item(ood, sets[o].name, cJSON_CreateObject());
                bad |= !set;
                for (int s = 0; set && s < N_SCORES; s++) {
                    cJSON *e = cJSON_AddObjectToObject(set, score_names[s]);
                    bad |= !e || !cli_json_add_item(e, "auroc", num_or_null(m[o][s].auroc, m[o][s].valid)) ||
                           !cli_json_add_item(e, "fpr95", num_or_null(m[o][s].fpr95, m[o][s].valid));
                }
                bad |= !cli_json_add_item(n_ood, sets[o].name, cJSON_CreateNumber((double)n_ok[o]));
            }
            bad |= !cJSON_AddStringToObject(root, "fpr95_convention", conv);
            bad |= !cli_json_add_item(root, "id_accuracy", num_or_null(acc, labelled > 0));
            bad |= !cJSON_AddNumberToObject(root, "n_id", (double)n_ok[0]);
            bad |= !cJSON_AddNumberToObject(root, "n_id_labelled", (double)labelled);
            bad |= !cli_json_add_item(root, "n_ood", n_ood);
            bad |= !cJSON_AddNumberToObject(root, "n_failed", (double)n_failed);
            bad |= !cJSON_AddBoolToObject(root, "has_no_tower", has_no);
        }
        char *text = bad ? NULL : cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        if (!text) {
            cli_fail(cmd, "out of memory");
            goto done;
        }
        puts(text);
        cJSON_free(text);
    } else {
        printf("ID: %zu images", n_ok[0]);
        if (labelled)
            printf(", accuracy %.4f on %zu labelled", acc, labelled);
        if (n_failed)
            printf(", %zu unreadable images skipped", n_failed);
        printf("\nFPR95 convention: %s\n", conv_long);
        printf("AUROC and FPR95 as fractions; ID = positive; higher score = more ID.\n\n");
        /* columns by display width: the set names may be any UTF-8 */
        int name_w = 12;
        for (int o = 1; o < n_sets; o++) {
            int w = cli_text_width(sets[o].name);
            name_w = w > name_w ? (w < 32 ? w : 32) : name_w;
        }
        cli_print_cell(stdout, "OOD set", name_w);
        printf(" %-9s %8s %8s\n", "score", "AUROC", "FPR95");
        for (int o = 1; o < n_sets; o++)
            for (int s = 0; s < N_SCORES; s++) {
                cli_print_cell(stdout, sets[o].name, name_w);
                if (m[o][s].valid)
                    printf(" %-9s %8.4f %8.4f\n", score_names[s], m[o][s].auroc,
                           m[o][s].fpr95);
                else
                    printf(" %-9s %8s %8s  (%s)\n", score_names[s], "n/a", "n/a",
                           !n_ok[o] ? "no image could be scored"
                           : s < 2  ? "model has no no tower"
                                    : "heads carry no negatives: clipn head --negatives");
            }
        for (int o = 1; o < n_sets; o++) {
            cli_print_text(stdout, sets[o].name);
            printf(": %zu images\n", n_ok[o]);
        }
    }
    /* every output is attempted, whatever happened to the others */
    if (scores_csv && write_scores_csv(cmd, scores_csv, &p, sets, labels, heads))
        out_failed = 1;
    if (n_ok[0] && (plot || roc_csv) &&
        write_plots(cmd, plot, roc_csv, &p, sets, n_sets, has_no, m, buf_id, buf_ood,
                    conv_long))
        out_failed = 1;
    if (out_failed || skipped || n_failed)
        goto done;
    rc = 0;
done:
    free(buf_id);
    free(buf_ood);
    free(m);
    free(paths);
    free(labels);
    free(res);
    for (int s = 0; s < n_sets; s++)
        cli_image_list_free(&sets[s].list);
    clipn_heads_free(heads);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return rc;
}
