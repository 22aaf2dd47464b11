/* OOD metrics: AUROC and FPR at 95% TPR, bit-compatible with the Python code the
 * papers ran (ID = positive class, higher score = more ID).
 *
 * Both start from sklearn's `_binary_clf_curve`: sort scores descending, one ROC point per
 * distinct score value (ties enter together), tps/fps = cumulative ID/OOD counts. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct roc_curve {
    double *tps, *fps;   /* cumulative counts at each distinct threshold, descending */
    float *thr;          /* the thresholds (only when asked for: roc_build's want_thr) */
    size_t n;            /* number of distinct thresholds */
    double n_pos, n_neg; /* = tps[n-1], fps[n-1] */
} roc_curve;

static int cmp_float_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static clipn_status check_scores(const char *what, const float *s, size_t n, clipn_error *err)
{
    if (n == 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "metrics: the %s score set is empty", what);
    if (!s)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "metrics: %s scores are NULL", what);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s[i]))
            return clipn_fail(err, CLIPN_E_INVALID_ARG,
                              "metrics: %s score %zu is not finite (%g)", what, i, (double)s[i]);
    return CLIPN_OK;
}

static void roc_free(roc_curve *c)
{
    free(c->tps);
    free(c->fps);
    free(c->thr);
    c->tps = c->fps = NULL;
    c->thr = NULL;
}

/* The full curve (every distinct threshold, no dropping). Sorting copies of the two sets
 * and merging them gives the same groups as sklearn's argsort over the concatenation. */
static clipn_status roc_build(const float *id, size_t n_id, const float *ood, size_t n_ood,
                              int want_thr, roc_curve *c, clipn_error *err)
{
    clipn_status st;
    c->tps = c->fps = NULL;
    c->thr = NULL;
    c->n = 0;
    if ((st = check_scores("ID", id, n_id, err)) != CLIPN_OK ||
        (st = check_scores("OOD", ood, n_ood, err)) != CLIPN_OK)
        return st;
    size_t n = n_id + n_ood;
    if (n < n_id || n > SIZE_MAX / sizeof(double) || n > ((size_t)1 << 52))
        return clipn_fail(err, CLIPN_E_LIMIT, "metrics: too many scores (%zu + %zu)", n_id, n_ood);
    float *a = malloc(n_id * sizeof *a), *b = malloc(n_ood * sizeof *b);
    c->tps = malloc(n * sizeof *c->tps);
    c->fps = malloc(n * sizeof *c->fps);
    c->thr = want_thr ? malloc(n * sizeof *c->thr) : NULL;
    if (!a || !b || !c->tps || !c->fps || (want_thr && !c->thr)) {
        free(a);
        free(b);
        roc_free(c);
        return clipn_fail(err, CLIPN_E_NOMEM, "metrics: out of memory for %zu scores", n);
    }
    memcpy(a, id, n_id * sizeof *a);
    memcpy(b, ood, n_ood * sizeof *b);
    qsort(a, n_id, sizeof *a, cmp_float_desc);
    qsort(b, n_ood, sizeof *b, cmp_float_desc);
    size_t i = 0, j = 0;
    while (i < n_id || j < n_ood) {
        /* the next threshold is the larger head; -0.0 == 0.0 as in np.diff */
        float t = (j >= n_ood || (i < n_id && a[i] >= b[j])) ? a[i] : b[j];
        while (i < n_id && a[i] == t)
            i++;
        while (j < n_ood && b[j] == t)
            j++;
        c->tps[c->n] = (double)i;
        c->fps[c->n] = (double)j;
        if (c->thr)
            c->thr[c->n] = t;
        c->n++;
    }
    free(a);
    free(b);
    c->n_pos = (double)n_id;
    c->n_neg = (double)n_ood;
    return CLIPN_OK;
}

/* roc_curve(drop_intermediate=True): keep the ends and every point where the second
 * difference of fps or tps is non-zero (drops collinear interior points, which changes
 * which two points the FPR95 interpolation sees), then prepend (0, 0). */
static clipn_status roc_drop_intermediate(roc_curve *c, clipn_error *err)
{
    size_t n = c->n, k = 0;
    double *t = malloc((n + 1) * sizeof *t), *f = malloc((n + 1) * sizeof *f);
    if (!t || !f) {
        free(t);
        free(f);
        return clipn_fail(err, CLIPN_E_NOMEM, "metrics: out of memory");
    }
    t[k] = 0.0;
    f[k] = 0.0;
    k++;
    for (size_t i = 0; i < n; i++) {
        int keep = n <= 2 || i == 0 || i == n - 1 ||
                   c->fps[i - 1] - 2.0 * c->fps[i] + c->fps[i + 1] != 0.0 ||
                   c->tps[i - 1] - 2.0 * c->tps[i] + c->tps[i + 1] != 0.0;
        if (keep) {
            t[k] = c->tps[i];
            f[k] = c->fps[i];
            k++;
        }
    }
    roc_free(c);
    c->tps = t;
    c->fps = f;
    c->n = k;
    return CLIPN_OK;
}

clipn_status clipn_auroc(const float *id_scores, size_t n_id, const float *ood_scores,
                         size_t n_ood, double *auroc, clipn_error *err)
{
    if (!auroc)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_auroc: auroc is NULL");
    roc_curve c;
    clipn_status st = roc_build(id_scores, n_id, ood_scores, n_ood, 0, &c, err);
    if (st != CLIPN_OK)
        return st;
    /* Trapezoid over the ROC points in count space: twice the Mann-Whitney U with ties
     * counting 1/2. Each term is an exact integer in double for n < 2^26 per set; the
     * only rounding is in the sum and the final division. */
    double area2 = 0.0, pt = 0.0, pf = 0.0;
    for (size_t i = 0; i < c.n; i++) {
        area2 += (c.fps[i] - pf) * (c.tps[i] + pt);
        pt = c.tps[i];
        pf = c.fps[i];
    }
    *auroc = area2 / (2.0 * c.n_pos * c.n_neg);
    roc_free(&c);
    return CLIPN_OK;
}

/* numpy.interp(0.95, tpr, fpr), which scipy's interp1d(kind='linear') delegates to for
 * float64 data: j = the LAST index with tpr[j] <= x; exact hit -> fpr[j]; otherwise the
 * line through j and j + 1 evaluated as slope * (x - x_j) + y_j. With repeated tpr values
 * this takes the last point of a horizontal run, not the first. */
static double fpr95_interp(const roc_curve *c)
{
    const double x = 0.95;
    size_t n = c->n, j = 0;
    while (j + 1 < n && c->tps[j + 1] / c->n_pos <= x)
        j++;
    double xj = c->tps[j] / c->n_pos, yj = c->fps[j] / c->n_neg;
    if (j == n - 1 || xj == x)
        return yj;
    double xk = c->tps[j + 1] / c->n_pos, yk = c->fps[j + 1] / c->n_neg;
    double slope = (yk - yj) / (xk - xj);
    return slope * (x - xj) + yj;
}

/* Outlier Exposure's fpr_and_fdr_at_recall (copied by MCM and its successors), on the full
 * curve: among the thresholds up to the first one reaching recall 1, the point whose
 * recall is nearest to 0.95 (|recall - 0.95| in double), ties going to the lower
 * threshold; FPR = fps there / n_neg. */
static double fpr95_nearest(const roc_curve *c)
{
    size_t last = 0;
    while (c->tps[last] < c->n_pos)
        last++;
    size_t best = last;
    double best_d = fabs(c->tps[last] / c->n_pos - 0.95);
    for (size_t i = last; i-- > 0;) {
        double d = fabs(c->tps[i] / c->n_pos - 0.95);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return c->fps[best] / c->n_neg;
}

clipn_status clipn_fpr95(const float *id_scores, size_t n_id, const float *ood_scores,
                         size_t n_ood, clipn_fpr95_mode mode, double *fpr, clipn_error *err)
{
    if (!fpr)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_fpr95: fpr is NULL");
    if (mode != CLIPN_FPR95_INTERP && mode != CLIPN_FPR95_NEAREST)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_fpr95: unknown mode %d", (int)mode);
    roc_curve c;
    clipn_status st = roc_build(id_scores, n_id, ood_scores, n_ood, 0, &c, err);
    if (st != CLIPN_OK)
        return st;
    if (mode == CLIPN_FPR95_NEAREST) {
        *fpr = fpr95_nearest(&c);
    } else {
        st = roc_drop_intermediate(&c, err);
        if (st == CLIPN_OK)
            *fpr = fpr95_interp(&c);
    }
    roc_free(&c);
    return st;
}

clipn_status clipn_roc_curve(const float *id_scores, size_t n_id, const float *ood_scores,
                             size_t n_ood, clipn_roc *out, clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_roc_curve: out is NULL");
    memset(out, 0, sizeof *out);
    roc_curve c;
    clipn_status st = roc_build(id_scores, n_id, ood_scores, n_ood, 1, &c, err);
    if (st != CLIPN_OK)
        return st;
    const size_t n = c.n + 1; /* (0, 0) at +inf first */
    out->threshold = malloc(n * sizeof *out->threshold);
    out->fpr = malloc(n * sizeof *out->fpr);
    out->tpr = malloc(n * sizeof *out->tpr);
    if (!out->threshold || !out->fpr || !out->tpr) {
        roc_free(&c);
        clipn_roc_free(out);
        return clipn_fail(err, CLIPN_E_NOMEM, "clipn_roc_curve: out of memory for %zu points",
                          n);
    }
    out->threshold[0] = INFINITY;
    out->fpr[0] = out->tpr[0] = 0.0;
    for (size_t i = 0; i < c.n; i++) {
        out->threshold[i + 1] = c.thr[i];
        out->fpr[i + 1] = c.fps[i] / c.n_neg;
        out->tpr[i + 1] = c.tps[i] / c.n_pos;
    }
    out->n = n;
    roc_free(&c);
    return CLIPN_OK;
}

void clipn_roc_free(clipn_roc *roc)
{
    if (!roc)
        return;
    free(roc->threshold);
    free(roc->fpr);
    free(roc->tpr);
    memset(roc, 0, sizeof *roc);
}
