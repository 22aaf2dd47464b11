/* clipn eval: AUROC and FPR95 of every score on ID vs OOD image sets, as the official
 * zero_shot_infer.py reports them, plus ID accuracy, CSVs and an SVG ROC plot.
 * A producer thread decodes and preprocesses the next batch while this one is encoded. */
#include "cli_heads.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OOD 32
#define N_SCORES 6
static const char *score_names[N_SCORES] = {"ctw", "atd", "msp", "maxlogit", "energy", "mcm"};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn eval --model M (--classes F | --head H) --id LIST --ood NAME=LIST\n"
            "                  [--ood NAME=LIST ...] [--templates F] [--no-templates F]\n"
            "                  [--json] [--fpr95 interp|nearest] [--scores-csv F]\n"
            "                  [--roc-csv F] [--plot F.svg] [--batch N] [--threads N]\n\n"
            "Score every image and report, per OOD set and per score (ctw, atd, msp, maxlogit,\n"
            "energy, mcm; higher = more in-distribution), AUROC and FPR at 95%% TPR as fractions,\n"
            "with ID as the positive class, exactly as the official CLIPN evaluation.\n\n"
            "  LIST               a folder (searched recursively for images) or a text file\n"
            "                     of image paths, one per line, optionally \"path,label\"\n"
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

/* ------------------------------------------------------------------ producer/consumer */

typedef struct batch {
    float *pixels;      /* [B, 3, S, S] */
    size_t *index;      /* [B] flat image index of each row */
    int n;
    int full;
} batch;

typedef struct pipeline {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch slot[2];
    int producer_done, stop;
    const char *cmd;
    char **paths;       /* flat list */
    size_t n_images;
    image_result *res;
    clipn_image_opts io;
    int batch_size;
    size_t n_failed;
} pipeline;

static void *producer(void *arg)
{
    pipeline *p = arg;
    size_t per_image = 3 * (size_t)p->io.image_size * (size_t)p->io.image_size;
    size_t next = 0;
    for (int k = 0; next < p->n_images; k ^= 1) {
        batch *b = &p->slot[k];
        pthread_mutex_lock(&p->mu);
        while (b->full && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        b->n = 0;
        while (b->n < p->batch_size && next < p->n_images) {
            clipn_error err;
            size_t i = next++;
            if (clipn_preprocess_file(p->paths[i], &p->io, b->pixels + (size_t)b->n * per_image,
                                      &err) != CLIPN_OK) {
                cli_fail(p->cmd, "%s (skipped)", err.message); /* it names the file */
                pthread_mutex_lock(&p->mu);
                p->n_failed++;
                pthread_mutex_unlock(&p->mu);
                continue;
            }
            b->index[b->n++] = i;
        }
        pthread_mutex_lock(&p->mu);
        b->full = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->producer_done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Encodes and scores every batch the producer hands over. Returns 0 or 1 (printed). */
static int consume(pipeline *p, clipn_ctx *ctx, const clipn_heads *heads, float *feats)
{
    size_t done = 0;
    for (int k = 0;; k ^= 1) {
        batch *b = &p->slot[k];
        pthread_mutex_lock(&p->mu);
        while (!b->full && !p->producer_done)
            pthread_cond_wait(&p->cv, &p->mu);
        int have = b->full;
        pthread_mutex_unlock(&p->mu);
        if (!have)
            return 0;
        clipn_error err;
        if (b->n > 0 && clipn_encode_image(ctx, b->pixels, b->n, feats, &err) != CLIPN_OK) {
            cli_fail(p->cmd, "encoding images: %s", err.message);
            return 1;
        }
        for (int j = 0; j < b->n; j++) {
            clipn_scores s;
            image_result *r = &p->res[b->index[j]];
            if (clipn_score(heads, feats + (size_t)j * heads->dim, NULL, &s, &err) != CLIPN_OK) {
                cli_fail(p->cmd, "%s: %s (skipped)", p->paths[b->index[j]], err.message);
                continue;
            }
            float v[N_SCORES] = {s.ctw, s.atd, s.msp, s.maxlogit, s.energy, s.mcm};
            memcpy(r->score, v, sizeof v);
            r->pred = s.pred;
            r->ok = 1;
        }
        if (b->n > 0)
            done = b->index[b->n - 1] + 1;
        cli_progress("images", done, p->n_images);
        pthread_mutex_lock(&p->mu);
        b->full = 0;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ------------------------------------------------------------------ ROC points for output */

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Full ROC curve (one point per distinct threshold, starting at (0,0)); 0 or -1 (no mem). */
static int roc_points(const float *id, size_t n_id, const float *ood, size_t n_ood,
                      double **fpr, double **tpr, float **thr, size_t *n)
{
    float *a = malloc(n_id * sizeof *a), *b = malloc(n_ood * sizeof *b);
    *fpr = malloc((n_id + n_ood + 1) * sizeof **fpr);
    *tpr = malloc((n_id + n_ood + 1) * sizeof **tpr);
    *thr = malloc((n_id + n_ood + 1) * sizeof **thr);
    if (!a || !b || !*fpr || !*tpr || !*thr) {
        free(a);
        free(b);
        free(*fpr);
        free(*tpr);
        free(*thr);
        return -1;
    }
    memcpy(a, id, n_id * sizeof *a);
    memcpy(b, ood, n_ood * sizeof *b);
    qsort(a, n_id, sizeof *a, cmp_desc);
    qsort(b, n_ood, sizeof *b, cmp_desc);
    size_t i = 0, j = 0, k = 0;
    (*fpr)[k] = (*tpr)[k] = 0;
    (*thr)[k++] = INFINITY;
    while (i < n_id || j < n_ood) {
        float t = (j >= n_ood || (i < n_id && a[i] >= b[j])) ? a[i] : b[j];
        while (i < n_id && a[i] == t)
            i++;
        while (j < n_ood && b[j] == t)
            j++;
        (*fpr)[k] = (double)j / (double)n_ood;
        (*tpr)[k] = (double)i / (double)n_id;
        (*thr)[k++] = t;
    }
    free(a);
    free(b);
    *n = k;
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
    fprintf(f, "image,set,label,pred,ctw,atd,msp,maxlogit,energy,mcm\n");
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

static const char *colors[N_SCORES] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd",
                                       "#8c564b"};

typedef struct metric {
    double auroc, fpr95;
    int valid;
} metric;

static int write_plots(const char *cmd, const char *svg_path, const char *roc_csv,
                       const pipeline *p, const eval_set *sets, int n_sets, int has_no,
                       metric m[][N_SCORES], float *buf_id, float *buf_ood)
{
    FILE *svg = NULL, *csv = NULL;
    cli_out *svg_out = NULL, *csv_out = NULL;
    /* one panel per OOD set: the plot square, then the legend below it */
    const int panel = 380, margin = 50, size = panel - 2 * margin;
    const int height = margin + size + 50 + 14 * N_SCORES + 10;
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
    if (svg) {
        fprintf(svg,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                "font-family=\"sans-serif\" font-size=\"11\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                panel * (n_sets - 1), height);
    }
    int rc = 0;
    for (int o = 1; o < n_sets && !rc; o++) {
        int x0 = (o - 1) * panel + margin, y0 = margin;
        if (svg) {
            fprintf(svg, "<g>\n<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">"
                         "ROC: ID vs %s</text>\n", x0, y0 - 20, sets[o].name);
            fprintf(svg, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                         "stroke=\"black\"/>\n", x0, y0, size, size);
            fprintf(svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" "
                         "stroke-dasharray=\"4 3\"/>\n", x0, y0 + size, x0 + size, y0);
            for (int t = 0; t <= 4; t++) {
                double v = t / 4.0;
                fprintf(svg, "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\">%.2g</text>\n",
                        x0 + v * size, y0 + size + 14, v);
                fprintf(svg, "<text x=\"%d\" y=\"%g\" text-anchor=\"end\">%.2g</text>\n",
                        x0 - 4, y0 + size - v * size + 4, v);
            }
            fprintf(svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">FPR (OOD accepted)</text>\n",
                    x0 + size / 2, y0 + size + 30);
            fprintf(svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 "
                         "%d %d)\">TPR (ID accepted)</text>\n",
                    x0 - 32, y0 + size / 2, x0 - 32, y0 + size / 2);
            fprintf(svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ccc\"/>\n", x0,
                    y0 + (int)(0.05 * size), x0 + size, y0 + (int)(0.05 * size));
        }
        int legend = 0;
        for (int s = 0; s < N_SCORES; s++) {
            if (s < 2 && !has_no)
                continue;
            size_t ni = gather(p, 0, s, buf_id), no = gather(p, o, s, buf_ood);
            if (!ni || !no)
                continue;
            double *fpr, *tpr;
            float *thr;
            size_t n;
            if (roc_points(buf_id, ni, buf_ood, no, &fpr, &tpr, &thr, &n)) {
                rc = cli_fail(cmd, "out of memory");
                break;
            }
            for (size_t k = 0; csv && k < n; k++) {
                csv_field(csv, sets[o].name);
                fprintf(csv, ",%s,%.9g,%.17g,%.17g\n", score_names[s], (double)thr[k], fpr[k],
                        tpr[k]);
            }
            if (svg) {
                fprintf(svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                        colors[s]);
                for (size_t k = 0; k < n; k++)
                    fprintf(svg, "%.1f,%.1f ", x0 + fpr[k] * size, y0 + size - tpr[k] * size);
                fprintf(svg, "\"/>\n");
                int ly = y0 + size + 56 + 14 * legend;
                fprintf(svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                             "stroke-width=\"2\"/>\n", x0, ly - 4, x0 + 18, ly - 4, colors[s]);
                fprintf(svg, "<text x=\"%d\" y=\"%d\">%-8s AUROC %.4f  FPR95 %.4f</text>\n",
                        x0 + 24, ly, score_names[s], m[o][s].auroc, m[o][s].fpr95);
                legend++;
            }
            free(fpr);
            free(tpr);
            free(thr);
        }
        if (svg)
            fprintf(svg, "</g>\n");
    }
    if (svg)
        fprintf(svg, "</svg>\n");
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
    if (!a.head && !a.classes)
        return cli_fail(cmd, "--classes FILE or --head H is required (see --help)"), 2;
    ood_specs[0] = id_spec;

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
        if (cli_image_list_read(cmd, ood_specs[s], &sets[s].list) < 0 ||
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
    float *feats = NULL, *buf_id = malloc(n_images * sizeof(float));
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
    p.batch_size = batch_size;
    clipn_image_opts_from_model(model, &p.io);
    size_t per_image = 3 * (size_t)p.io.image_size * (size_t)p.io.image_size;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        p.slot[k].pixels = malloc((size_t)batch_size * per_image * sizeof(float));
        p.slot[k].index = malloc((size_t)batch_size * sizeof(size_t));
        ok = ok && p.slot[k].pixels && p.slot[k].index;
    }
    feats = malloc((size_t)batch_size * (size_t)heads->dim * sizeof *feats);
    pthread_t thread;
    if (!ok || !feats) {
        cli_fail(cmd, "out of memory for batches of %d images", batch_size);
    } else if (pthread_create(&thread, NULL, producer, &p) != 0) {
        cli_fail(cmd, "cannot start the decoding thread");
    } else {
        int bad = consume(&p, ctx, heads, feats);
        pthread_mutex_lock(&p.mu);
        p.stop = 1;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
        pthread_join(thread, NULL);
        cli_progress_end();
        ok = !bad;
    }
    for (int k = 0; k < 2; k++) {
        free(p.slot[k].pixels);
        free(p.slot[k].index);
    }
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    if (!ok || !feats)
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
            if (s < 2 && !has_no)
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
    double acc = labelled ? (double)correct / (double)labelled : NAN;
    size_t n_failed = n_images;
    for (int s = 0; s < n_sets; s++)
        n_failed -= n_ok[s];
    const char *conv = mode == CLIPN_FPR95_INTERP ? "interp" : "nearest";
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
        printf("\nFPR95 convention: %s\n",
               mode == CLIPN_FPR95_INTERP
                   ? "interp (official CLIPN: interp1d(tpr, fpr)(0.95) on sklearn roc_curve)"
                   : "nearest (MCM / Outlier Exposure: FPR at the TPR nearest 0.95)");
        printf("AUROC and FPR95 as fractions; ID = positive; higher score = more ID.\n\n");
        printf("%-16s %-9s %8s %8s\n", "OOD set", "score", "AUROC", "FPR95");
        for (int o = 1; o < n_sets; o++)
            for (int s = 0; s < N_SCORES; s++) {
                if (m[o][s].valid)
                    printf("%-16.16s %-9s %8.4f %8.4f\n", sets[o].name, score_names[s],
                           m[o][s].auroc, m[o][s].fpr95);
                else
                    printf("%-16.16s %-9s %8s %8s  (%s)\n", sets[o].name, score_names[s],
                           "n/a", "n/a",
                           !n_ok[o]              ? "no image could be scored"
                           : s < 2 && !has_no    ? "model has no no tower"
                                                 : "not computable");
            }
        for (int o = 1; o < n_sets; o++)
            printf("%s: %zu images\n", sets[o].name, n_ok[o]);
    }
    /* every output is attempted, whatever happened to the others */
    if (scores_csv && write_scores_csv(cmd, scores_csv, &p, sets, labels, heads))
        out_failed = 1;
    if (n_ok[0] && (plot || roc_csv) &&
        write_plots(cmd, plot, roc_csv, &p, sets, n_sets, has_no, m, buf_id, buf_ood))
        out_failed = 1;
    if (out_failed || skipped || n_failed)
        goto done;
    rc = 0;
done:
    free(feats);
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
