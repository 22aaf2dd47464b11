/* Golden parity: libclipn (public API only) against the PyTorch reference's outputs.
 *
 *     parity MODEL REFDIR LABEL
 *
 * REFDIR is what tests/golden/reference_model.py wrote. `parity --drift P ...` compares
 * the model at precision P with itself at fp32 instead, `parity --drift-file OTHER ...`
 * another file (the int8 conversion) at its own precision with it (see drift_main). Prints one table row per quantity,
 * "PASS" or "FAIL" first, and exits 1 if any failed.
 *
 * Errors: features use max over vectors of max_i |c_i - r_i| / max_i |r_i| (tolerance 1e-4);
 * scores max over images of |c - r| / max(1, |r|) (1e-3); predictions and decisions must be
 * identical; AUROC / FPR95 (fractions) absolute difference (1e-3). */
#include "clipn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEATURE_TOL 1e-4
#define SCORE_TOL 1e-3

static int n_failed;
static const char *label;

/* ---- minimal .npy reader: little-endian <f4 / <i4 / <f8, C order */
typedef struct npy {
    void *data;
    int ndim;
    size_t shape[4], count;
} npy;

static int npy_load(const char *dir, const char *name, const char *descr, npy *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "parity: cannot open %s\n", path);
        return -1;
    }
    unsigned char pre[10];
    char header[1024];
    int rc = -1;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        goto done;
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] != 1 || hlen >= sizeof header || fread(header, 1, hlen, f) != hlen)
        goto done;
    header[hlen] = 0;
    char want[32];
    snprintf(want, sizeof want, "'descr': '%s'", descr);
    if (!strstr(header, want) || !strstr(header, "'fortran_order': False"))
        goto done;
    const char *p = strstr(header, "'shape': (");
    if (!p)
        goto done;
    p += strlen("'shape': (");
    out->count = 1;
    while (*p && *p != ')' && out->ndim < 4) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p)
            break;
        out->shape[out->ndim++] = v;
        out->count *= v;
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    const size_t size = descr[2] == '8' ? 8 : 4;
    out->data = malloc(out->count * size + 1);
    if (out->data && fread(out->data, size, out->count, f) == out->count)
        rc = 0;
done:
    fclose(f);
    if (rc != 0) {
        free(out->data);
        out->data = NULL;
        fprintf(stderr, "parity: %s is not a C-order %s .npy\n", path, descr);
    }
    return rc;
}

/* ---- comparisons, one table row each */
static void row(const char *what, double err, double tol, const char *unit)
{
    const int ok = err <= tol; /* NaN fails */
    n_failed += !ok;
    printf("%s  %-16s %-26s %-14s %.3e  (tol %.0e)\n", ok ? "PASS" : "FAIL", label, what, unit,
           err, tol);
}

static double feature_err(const float *c, const float *r, size_t n, size_t dim)
{
    double worst = 0;
    for (size_t v = 0; v < n; v++) {
        double diff = 0, scale = 0;
        for (size_t i = 0; i < dim; i++) {
            diff = fmax(diff, fabs((double)c[v * dim + i] - r[v * dim + i]));
            scale = fmax(scale, fabs((double)r[v * dim + i]));
        }
        const double e = diff / scale;
        worst = isnan(e) || e > worst ? e : worst;
    }
    return worst;
}

static void compare_features(const char *what, const float *c, const npy *ref)
{
    row(what, feature_err(c, ref->data, ref->shape[0], ref->shape[1]), FEATURE_TOL, "rel/vector");
}

static void normalize(float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    const float inv = (float)(1.0 / fmax(sqrt(s), 1e-12));
    for (int i = 0; i < dim; i++)
        v[i] *= inv;
}

/* scores of every image against heads, compared with ref [N, 9]; fills ours [N, 9] */
static int compare_scores(const char *what, const clipn_heads *heads, const float *feats,
                          int n, int dim, const npy *ref, float *ours)
{
    static const char *const names[9] = {"pred", "ctw", "atd", "msp", "maxlogit",
                                         "energy", "mcm", "ood_ctw", "ood_atd"};
    clipn_error err;
    for (int i = 0; i < n; i++) {
        clipn_scores s;
        if (clipn_score(heads, feats + (size_t)i * dim, NULL, &s, &err) != CLIPN_OK) {
            fprintf(stderr, "parity: clipn_score: %s\n", err.message);
            return -1;
        }
        const float v[9] = {(float)s.pred, s.ctw, s.atd, s.msp, s.maxlogit, s.energy, s.mcm,
                            (float)s.ood_ctw, (float)s.ood_atd};
        memcpy(ours + (size_t)i * 9, v, sizeof v);
    }
    const float *r = ref->data;
    for (int col = 0; col < 9; col++) {
        const int exact = col == 0 || col >= 7;
        double worst = 0;
        for (int i = 0; i < n; i++) {
            const double a = ours[(size_t)i * 9 + col], b = r[(size_t)i * 9 + col];
            const double e = exact ? (a != b) : fabs(a - b) / fmax(1.0, fabs(b));
            worst = isnan(e) || e > worst ? e : worst;
        }
        char name[64];
        snprintf(name, sizeof name, "%s %s", what, names[col]);
        row(name, worst, exact ? 0.0 : SCORE_TOL, exact ? "mismatches" : "rel (floor 1)");
    }
    return 0;
}

/* yes/no heads [n_c, E] (zeroed by the caller) as merge_yes_no_feature, from head ids
 * [n_t, n_c, C]; out is [n_c, E] scratch */
static clipn_status build_heads(clipn_ctx *ctx, const npy *hids, int E, int C, float *out,
                                float *yes, float *no, clipn_error *err)
{
    const int n_t = (int)hids->shape[0], n_c = (int)hids->shape[1];
    for (int tower = 0; tower < 2; tower++)
        for (int t = 0; t < n_t; t++) {
            const int32_t *tid = (const int32_t *)hids->data + (size_t)t * n_c * C;
            clipn_status s = tower ? clipn_encode_no_text(ctx, tid, n_c, out, err)
                                   : clipn_encode_text(ctx, tid, n_c, out, err);
            if (s != CLIPN_OK)
                return s;
            for (int c = 0; c < n_c; c++) {
                normalize(out + (size_t)c * E, E);
                for (int i = 0; i < E; i++)
                    (tower ? no : yes)[(size_t)c * E + i] += out[(size_t)c * E + i];
            }
        }
    for (int c = 0; c < n_c; c++) {
        normalize(yes + (size_t)c * E, E);
        normalize(no + (size_t)c * E, E);
    }
    return CLIPN_OK;
}

/* ---- drift: the model at another precision against itself at fp32, same inputs.
 *
 *     parity --drift PRECISION MODEL REFDIR LABEL [MIN_COS [MAX_SCORE_CHANGE]]
 *
 * Rows: 1 - min cosine of the image / text / no-text features (tol 1 - MIN_COS, default
 * 0.999); top-1 changes with the real heads (tol 0) and the synthetic ones (reported);
 * largest |CTW| / |ATD| change (tol MAX_SCORE_CHANGE, default 0.02); CTW / ATD AUROC and
 * FPR95 change on the half-ID / half-OOD split of the parity images (reported). Each
 * model builds its own heads, as a user would. */
typedef struct drift_run {
    clipn_model *model;
    clipn_ctx *ctx;
    float *img, *txt, *notxt, *yes, *no, *scores, *syn_scores; /* scores [n_img, 3] */
} drift_run;

static double min_cosine(const float *a, const float *b, size_t n, int dim)
{
    double worst = 1;
    for (size_t v = 0; v < n; v++) {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < dim; i++) {
            const double x = a[v * dim + i], y = b[v * dim + i];
            ab += x * y, aa += x * x, bb += y * y;
        }
        const double c = ab / sqrt(aa * bb);
        worst = isnan(c) || c < worst ? c : worst;
    }
    return worst;
}

static int drift_side(const char *path, clipn_precision p, const npy *px, const npy *ids,
                      const npy *hids, const npy *hy, const npy *hn, drift_run *r)
{
    clipn_error err;
    clipn_load_opts lo = {.precision = p};
    clipn_ctx_opts co = {.max_batch = 8};
    if (clipn_model_load(path, &lo, &r->model, &err) != CLIPN_OK ||
        clipn_ctx_new(r->model, &co, &r->ctx, &err) != CLIPN_OK) {
        fprintf(stderr, "parity --drift: %s\n", err.message);
        return -1;
    }
    const clipn_config *cfg = clipn_model_config(r->model);
    const int E = cfg->embed_dim, C = cfg->context_length;
    const int n_img = (int)px->shape[0], n_txt = (int)ids->shape[0], n_c = (int)hids->shape[1];
    r->img = malloc(sizeof(float) * n_img * E);
    r->txt = malloc(sizeof(float) * n_txt * E);
    r->notxt = malloc(sizeof(float) * n_txt * E);
    r->yes = calloc((size_t)n_c * E, sizeof(float));
    r->no = calloc((size_t)n_c * E, sizeof(float));
    r->scores = malloc(sizeof(float) * n_img * 3);
    r->syn_scores = malloc(sizeof(float) * n_img * 3);
    float *out = malloc(sizeof(float) * (n_c > n_txt ? n_c : n_txt) * E);
    if (!r->img || !r->txt || !r->notxt || !r->yes || !r->no || !r->scores || !r->syn_scores ||
        !out || clipn_encode_image(r->ctx, px->data, n_img, r->img, &err) != CLIPN_OK ||
        clipn_encode_text(r->ctx, ids->data, n_txt, r->txt, &err) != CLIPN_OK ||
        clipn_encode_no_text(r->ctx, ids->data, n_txt, r->notxt, &err) != CLIPN_OK ||
        build_heads(r->ctx, hids, E, C, out, r->yes, r->no, &err) != CLIPN_OK) {
        fprintf(stderr, "parity --drift: %s\n", err.message);
        free(out);
        return -1;
    }
    free(out);
    const clipn_heads heads = {.n_classes = n_c, .dim = E, .yes = r->yes, .no = r->no};
    const clipn_heads syn = {.n_classes = (int)hy->shape[0], .dim = E, .yes = hy->data,
                             .no = hn->data};
    for (int i = 0; i < n_img; i++) {
        clipn_scores s;
        for (int k = 0; k < 2; k++) {
            if (clipn_score(k ? &syn : &heads, r->img + (size_t)i * E, NULL, &s, &err) != CLIPN_OK) {
                fprintf(stderr, "parity --drift: %s\n", err.message);
                return -1;
            }
            float *d = (k ? r->syn_scores : r->scores) + 3 * i;
            d[0] = (float)s.pred, d[1] = s.ctw, d[2] = s.atd;
        }
    }
    return 0;
}

static void drift_free(drift_run *r)
{
    free(r->img), free(r->txt), free(r->notxt), free(r->yes), free(r->no);
    free(r->scores), free(r->syn_scores);
    clipn_ctx_free(r->ctx);
    clipn_model_free(r->model);
}

static double metric(const float *scores, int n, int col, int fpr)
{
    const int half = n / 2;
    float id_s[64], ood_s[64];
    for (int i = 0; i < n && i < 128; i++)
        (i < half ? id_s : ood_s)[i < half ? i : i - half] = scores[3 * i + col];
    double v = NAN;
    if (fpr)
        clipn_fpr95(id_s, (size_t)half, ood_s, (size_t)(n - half), CLIPN_FPR95_INTERP, &v, NULL);
    else
        clipn_auroc(id_s, (size_t)half, ood_s, (size_t)(n - half), &v, NULL);
    return v;
}

/* --drift-file OTHER MODEL ...: OTHER (e.g. the int8 file converted from MODEL) at its own
 * precision against MODEL at fp32, with the same rows. */
static int drift_main(int argc, char **argv)
{
    const int from_file = strcmp(argv[1], "--drift-file") == 0;
    if (argc < 6 || argc > 8) {
        fprintf(stderr, "usage: parity --drift fp32|bf16|int8 MODEL REFDIR LABEL [MIN_COS "
                        "[MAX_SCORE_CHANGE]]\n"
                        "       parity --drift-file OTHER MODEL REFDIR LABEL [MIN_COS "
                        "[MAX_SCORE_CHANGE]]\n");
        return 2;
    }
    const char *pname = argv[2], *path = argv[3], *dir = argv[4];
    const char *run_path = from_file ? argv[2] : path;
    label = argv[5];
    const double min_cos = argc > 6 ? atof(argv[6]) : 0.999;
    const double max_change = argc > 7 ? atof(argv[7]) : 0.02;
    clipn_precision p = CLIPN_PRECISION_DEFAULT;
    for (int k = 1; k <= 3 && !from_file; k++)
        if (strcmp(pname, clipn_precision_name((clipn_precision)k)) == 0)
            p = (clipn_precision)k;
    if (p == CLIPN_PRECISION_DEFAULT && !from_file) {
        fprintf(stderr, "parity --drift: unknown precision '%s'\n", pname);
        return 2;
    }
    npy px = {0}, ids = {0}, hids = {0}, hy = {0}, hn = {0};
    drift_run base = {0}, run = {0};
    int rc = 1;
    if (npy_load(dir, "pixels", "<f4", &px) || npy_load(dir, "ids", "<i4", &ids) ||
        npy_load(dir, "head_ids", "<i4", &hids) || npy_load(dir, "heads_syn_yes", "<f4", &hy) ||
        npy_load(dir, "heads_syn_no", "<f4", &hn) || px.shape[0] > 128)
        goto done;
    if (drift_side(path, CLIPN_PRECISION_FP32, &px, &ids, &hids, &hy, &hn, &base) ||
        drift_side(run_path, p, &px, &ids, &hids, &hy, &hn, &run))
        goto done;
    char file_name[32];
    if (from_file) { /* rows read "int8 file ..." */
        snprintf(file_name, sizeof file_name, "%s file",
                 clipn_precision_name(clipn_model_precision(run.model)));
        pname = file_name;
    } else if (clipn_model_precision(run.model) != p) {
        printf("note  %-16s %s\n", label, clipn_model_precision_note(run.model));
    }
    const int E = clipn_model_config(base.model)->embed_dim;
    const int n_img = (int)px.shape[0], n_txt = (int)ids.shape[0];
    char what[64];
    const double cos_tol = 1 - min_cos;
    snprintf(what, sizeof what, "%s image features", pname);
    row(what, 1 - min_cosine(base.img, run.img, (size_t)n_img, E), cos_tol, "1 - min cos");
    snprintf(what, sizeof what, "%s text features", pname);
    row(what, 1 - min_cosine(base.txt, run.txt, (size_t)n_txt, E), cos_tol, "1 - min cos");
    snprintf(what, sizeof what, "%s no-text features", pname);
    row(what, 1 - min_cosine(base.notxt, run.notxt, (size_t)n_txt, E), cos_tol, "1 - min cos");
    for (int k = 0; k < 2; k++) {
        const float *a = k ? base.syn_scores : base.scores, *b = k ? run.syn_scores : run.scores;
        int flips = 0;
        double dctw = 0, datd = 0;
        for (int i = 0; i < n_img; i++) {
            flips += a[3 * i] != b[3 * i];
            dctw = fmax(dctw, fabs(a[3 * i + 1] - b[3 * i + 1]));
            datd = fmax(datd, fabs(a[3 * i + 2] - b[3 * i + 2]));
        }
        const char *h = k ? "syn heads" : "heads";
        snprintf(what, sizeof what, "%s top-1 changes, %s", pname, h);
        row(what, flips, k ? 1e9 : 0, "of images");
        snprintf(what, sizeof what, "%s CTW change, %s", pname, h);
        row(what, dctw, max_change, "max abs");
        snprintf(what, sizeof what, "%s ATD change, %s", pname, h);
        row(what, datd, max_change, "max abs");
    }
    static const char *const mname[4] = {"CTW AUROC", "CTW FPR95", "ATD AUROC", "ATD FPR95"};
    for (int m = 0; m < 4; m++) {
        const int col = 1 + m / 2, fpr = m % 2;
        snprintf(what, sizeof what, "%s %s change", pname, mname[m]);
        row(what, fabs(metric(base.syn_scores, n_img, col, fpr) -
                       metric(run.syn_scores, n_img, col, fpr)), 1e9, "abs (syn split)");
    }
    rc = n_failed ? 1 : 0;
done:
    drift_free(&base);
    drift_free(&run);
    free(px.data), free(ids.data), free(hids.data), free(hy.data), free(hn.data);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--drift") == 0 || strcmp(argv[1], "--drift-file") == 0))
        return drift_main(argc, argv);
    if (argc != 4) {
        fprintf(stderr, "usage: parity MODEL REFDIR LABEL\n       parity --drift ...\n");
        return 2;
    }
    const char *dir = argv[2];
    label = argv[3];
    clipn_error err;
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    if (clipn_model_load(argv[1], NULL, &model, &err) != CLIPN_OK) {
        fprintf(stderr, "parity: %s\n", err.message);
        return 1;
    }
    const clipn_config *cfg = clipn_model_config(model);
    const int E = cfg->embed_dim, C = cfg->context_length;
    /* max_batch 3: 8 images and 9 prompts also exercise the chunking */
    clipn_ctx_opts opts = {.max_batch = 3, .threads = 0};
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        fprintf(stderr, "parity: %s\n", err.message);
        clipn_model_free(model);
        return 1;
    }
    int rc = 1;
    npy px = {0}, ref = {0}, ids = {0}, hids = {0}, hy = {0}, hn = {0}, sc = {0}, met = {0};
    float *out = NULL, *feats = NULL, *ours = NULL, *yes = NULL, *no = NULL;

    /* image features, native size */
    if (npy_load(dir, "pixels", "<f4", &px) || npy_load(dir, "image_features", "<f4", &ref))
        goto done;
    const int n_img = (int)px.shape[0];
    feats = malloc((size_t)n_img * E * sizeof(float));
    if (!feats || clipn_encode_image(ctx, px.data, n_img, feats, &err) != CLIPN_OK)
        goto fail;
    compare_features("image features", feats, &ref);

    /* other sizes: interpolated positions */
    static const char *const sized[2] = {"up", "down"};
    for (int k = 0; k < 2; k++) {
        char pname[64], fname[64], what[64];
        snprintf(pname, sizeof pname, "pixels_%s", sized[k]);
        snprintf(fname, sizeof fname, "image_features_%s", sized[k]);
        free(px.data);
        free(ref.data);
        if (npy_load(dir, pname, "<f4", &px) || npy_load(dir, fname, "<f4", &ref))
            goto done;
        free(out);
        out = malloc((size_t)px.shape[0] * E * sizeof(float));
        if (!out || clipn_encode_image_sized(ctx, px.data, (int)px.shape[0], (int)px.shape[2],
                                             out, &err) != CLIPN_OK)
            goto fail;
        snprintf(what, sizeof what, "image features %zux%zu", px.shape[2], px.shape[3]);
        compare_features(what, out, &ref);
    }

    /* text towers */
    if (npy_load(dir, "ids", "<i4", &ids))
        goto done;
    const int n_txt = (int)ids.shape[0];
    free(out);
    out = malloc((size_t)n_txt * E * sizeof(float));
    free(ref.data);
    if (!out || npy_load(dir, "text_features", "<f4", &ref))
        goto done;
    if (clipn_encode_text(ctx, ids.data, n_txt, out, &err) != CLIPN_OK)
        goto fail;
    compare_features("text features", out, &ref);
    if (!cfg->has_no_tower) {
        rc = 0;
        goto done;
    }
    free(ref.data);
    if (npy_load(dir, "no_text_features", "<f4", &ref))
        goto done;
    if (clipn_encode_no_text(ctx, ids.data, n_txt, out, &err) != CLIPN_OK)
        goto fail;
    compare_features("no-text features", out, &ref);

    /* class heads as merge_yes_no_feature, from the C towers */
    if (npy_load(dir, "head_ids", "<i4", &hids) || npy_load(dir, "heads_yes", "<f4", &hy) ||
        npy_load(dir, "heads_no", "<f4", &hn))
        goto done;
    const int n_c = (int)hids.shape[1];
    yes = calloc((size_t)n_c * E, sizeof(float));
    no = calloc((size_t)n_c * E, sizeof(float));
    free(out);
    out = malloc((size_t)n_c * E * sizeof(float));
    if (!yes || !no || !out)
        goto done;
    if (build_heads(ctx, &hids, E, C, out, yes, no, &err) != CLIPN_OK)
        goto fail;
    compare_features("class heads yes", yes, &hy);
    compare_features("class heads no", no, &hn);

    ours = malloc((size_t)n_img * 9 * sizeof(float));
    if (!ours || npy_load(dir, "scores", "<f4", &sc))
        goto done;
    clipn_heads heads = {.n_classes = n_c, .dim = E, .yes = yes, .no = no};
    if (compare_scores("scores", &heads, feats, n_img, E, &sc, ours))
        goto done;

    /* synthetic heads (mid-range probabilities) and the metrics on those scores */
    free(hy.data);
    free(hn.data);
    free(sc.data);
    sc.data = NULL;
    if (npy_load(dir, "heads_syn_yes", "<f4", &hy) || npy_load(dir, "heads_syn_no", "<f4", &hn) ||
        npy_load(dir, "scores_syn", "<f4", &sc) || npy_load(dir, "metrics", "<f8", &met))
        goto done;
    clipn_heads syn = {.n_classes = (int)hy.shape[0], .dim = E, .yes = hy.data, .no = hn.data};
    if (compare_scores("syn scores", &syn, feats, n_img, E, &sc, ours))
        goto done;
    static const int metric_col[5] = {3, 4, 5, 1, 2};
    static const char *const metric_name[5] = {"MSP", "MaxLogit", "Energy", "CTW", "ATD"};
    const int half = n_img / 2;
    float id_s[64], ood_s[64];
    if (n_img > 128)
        goto done;
    for (int m = 0; m < 5; m++) {
        for (int i = 0; i < n_img; i++)
            (i < half ? id_s : ood_s)[i < half ? i : i - half] = ours[(size_t)i * 9 + metric_col[m]];
        double auroc, fpr;
        if (clipn_auroc(id_s, (size_t)half, ood_s, (size_t)(n_img - half), &auroc, &err) ||
            clipn_fpr95(id_s, (size_t)half, ood_s, (size_t)(n_img - half), CLIPN_FPR95_INTERP,
                        &fpr, &err))
            goto fail;
        const double *r = (const double *)met.data + 2 * m;
        char name[64];
        snprintf(name, sizeof name, "%s AUROC", metric_name[m]);
        row(name, fabs(auroc - r[0]), SCORE_TOL, "abs");
        snprintf(name, sizeof name, "%s FPR95", metric_name[m]);
        row(name, fabs(fpr - r[1]), SCORE_TOL, "abs");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "parity: %s: %s\n", clipn_status_name(err.code), err.message);
done:
    free(px.data), free(ref.data), free(ids.data), free(hids.data), free(hy.data);
    free(hn.data), free(sc.data), free(met.data);
    free(out), free(feats), free(ours), free(yes), free(no);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    if (rc == 0 && n_failed)
        rc = 1;
    return rc;
}
