/* AUROC and FPR95 against sklearn/scipy values (tests/scoring_ref/make_metrics_fixture.py). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

#define CASES FIXTURE("scoring/metrics_cases.txt")

typedef struct metric_case {
    char name[64];
    size_t n_id, n_ood;
    double auroc, fpr_interp, fpr_nearest;
    float *scores; /* ID then OOD */
} metric_case;

/* Reads the next case; 0 at end of file. */
static int read_case(FILE *f, metric_case *c)
{
    if (fscanf(f, " case %63s %zu %zu %lf %lf %lf", c->name, &c->n_id, &c->n_ood, &c->auroc,
               &c->fpr_interp, &c->fpr_nearest) != 6)
        return 0;
    size_t n = c->n_id + c->n_ood;
    c->scores = malloc(n * sizeof *c->scores);
    ck_assert_ptr_nonnull(c->scores);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(fscanf(f, " %f", &c->scores[i]), 1);
    return 1;
}

static void assert_rel(const char *name, const char *what, double got, double want)
{
    double tol = 1e-12 * fmax(fabs(want), 1e-300);
    ck_assert_msg(fabs(got - want) <= tol || (got == 0.0 && want == 0.0),
                  "%s %s: got %.17g want %.17g", name, what, got, want);
}

START_TEST(test_against_sklearn)
{
    FILE *f = fopen(CASES, "r");
    ck_assert_msg(f != NULL, "cannot open %s", CASES);
    metric_case c;
    int n_cases = 0;
    while (read_case(f, &c)) {
        const float *id = c.scores, *ood = c.scores + c.n_id;
        double auroc = -1, fi = -1, fn = -1;
        clipn_error err;
        ck_assert_int_eq(clipn_auroc(id, c.n_id, ood, c.n_ood, &auroc, &err), CLIPN_OK);
        ck_assert_int_eq(clipn_fpr95(id, c.n_id, ood, c.n_ood, CLIPN_FPR95_INTERP, &fi, &err),
                         CLIPN_OK);
        ck_assert_int_eq(clipn_fpr95(id, c.n_id, ood, c.n_ood, CLIPN_FPR95_NEAREST, &fn, &err),
                         CLIPN_OK);
        assert_rel(c.name, "auroc", auroc, c.auroc);
        assert_rel(c.name, "fpr95 interp", fi, c.fpr_interp);
        assert_rel(c.name, "fpr95 nearest", fn, c.fpr_nearest);
        free(c.scores);
        n_cases++;
    }
    fclose(f);
    ck_assert_int_ge(n_cases, 15);
}
END_TEST

/* The order of the inputs must not matter (only the sort does). */
START_TEST(test_permutation_invariant)
{
    float id[] = {0.9f, 0.1f, 0.5f, 0.5f, 0.7f}, ood[] = {0.5f, 0.2f, 0.05f, 0.8f};
    float id2[] = {0.5f, 0.7f, 0.1f, 0.9f, 0.5f}, ood2[] = {0.8f, 0.05f, 0.5f, 0.2f};
    double a, b;
    ck_assert_int_eq(clipn_auroc(id, 5, ood, 4, &a, NULL), CLIPN_OK);
    ck_assert_int_eq(clipn_auroc(id2, 5, ood2, 4, &b, NULL), CLIPN_OK);
    ck_assert(a == b);
    /* by hand: pairs (id > ood) + 0.5 (id == ood) over 20 */
    ck_assert_double_eq_tol(a, (12.0 + 2 * 0.5) / 20.0, 1e-15);
}
END_TEST

/* Large sets with many ties: AUROC = Mann-Whitney U from average ranks (an independent
 * formula), computed in long double. */
typedef struct labelled {
    float s;
    int id;
} labelled;

static int cmp_labelled(const void *a, const void *b)
{
    float x = ((const labelled *)a)->s, y = ((const labelled *)b)->s;
    return (x > y) - (x < y);
}

START_TEST(test_large_rank_sum)
{
    size_t n_id = 300000, n_ood = 200000, n = n_id + n_ood;
    float *id = malloc(n_id * sizeof *id), *ood = malloc(n_ood * sizeof *ood);
    labelled *all = malloc(n * sizeof *all);
    unsigned state = 12345;
    for (size_t i = 0; i < n; i++) {
        state = state * 1103515245u + 12345u;
        float v = (float)((state >> 8) % 5000) / 7.0f + (i < n_id ? 40.0f : 0.0f);
        if (i < n_id)
            id[i] = v;
        else
            ood[i - n_id] = v;
        all[i] = (labelled){v, i < n_id};
    }
    qsort(all, n, sizeof *all, cmp_labelled);
    long double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && all[j].s == all[i].s)
            j++;
        long double avg = ((long double)i + 1 + (long double)j) / 2; /* ranks i+1 .. j */
        for (size_t k = i; k < j; k++)
            if (all[k].id)
                rank_sum += avg;
        i = j;
    }
    long double u = rank_sum - (long double)n_id * (n_id + 1) / 2;
    double want = (double)(u / ((long double)n_id * n_ood)), got;
    ck_assert_int_eq(clipn_auroc(id, n_id, ood, n_ood, &got, NULL), CLIPN_OK);
    ck_assert_msg(fabs(got - want) <= 1e-12 * want, "got %.17g want %.17g", got, want);
    double f;
    ck_assert_int_eq(clipn_fpr95(id, n_id, ood, n_ood, CLIPN_FPR95_INTERP, &f, NULL), CLIPN_OK);
    ck_assert(f > 0 && f < 1);
    free(id);
    free(ood);
    free(all);
}
END_TEST

/* clipn_roc_curve: sklearn's roc_curve(drop_intermediate=False) on a small set with ties,
 * written out by hand, and the trapezoid of a larger curve equal to clipn_auroc. */
START_TEST(test_roc_curve)
{
    const float id[] = {0.9f, 0.8f, 0.8f, 0.3f};
    const float ood[] = {0.8f, 0.5f, 0.1f};
    clipn_roc roc;
    clipn_error err;
    ck_assert_int_eq(clipn_roc_curve(id, 4, ood, 3, &roc, &err), CLIPN_OK);
    /* thresholds inf, 0.9, 0.8 (2 ID + 1 OOD together), 0.5, 0.3, 0.1 */
    const float thr[] = {INFINITY, 0.9f, 0.8f, 0.5f, 0.3f, 0.1f};
    const double tpr[] = {0, 0.25, 0.75, 0.75, 1, 1}, fpr[] = {0, 0, 1.0 / 3, 2.0 / 3, 2.0 / 3, 1};
    ck_assert_uint_eq(roc.n, 6);
    for (size_t k = 0; k < roc.n; k++) {
        ck_assert_float_eq(roc.threshold[k], thr[k]);
        ck_assert_double_eq_tol(roc.tpr[k], tpr[k], 1e-15);
        ck_assert_double_eq_tol(roc.fpr[k], fpr[k], 1e-15);
    }
    clipn_roc_free(&roc);
    ck_assert_ptr_null(roc.fpr);
    clipn_roc_free(&roc); /* twice: no-op */

    enum { N = 500 };
    float a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = (float)((i * 37) % 101) / 50.0f; /* ties across and within the sets */
        b[i] = (float)((i * 53) % 97) / 60.0f;
    }
    ck_assert_int_eq(clipn_roc_curve(a, N, b, N, &roc, &err), CLIPN_OK);
    double area = 0;
    for (size_t k = 1; k < roc.n; k++)
        area += (roc.fpr[k] - roc.fpr[k - 1]) * (roc.tpr[k] + roc.tpr[k - 1]) / 2;
    double auroc;
    ck_assert_int_eq(clipn_auroc(a, N, b, N, &auroc, &err), CLIPN_OK);
    ck_assert_double_eq_tol(area, auroc, 1e-12);
    ck_assert_double_eq(roc.fpr[roc.n - 1], 1.0);
    ck_assert_double_eq(roc.tpr[roc.n - 1], 1.0);
    clipn_roc_free(&roc);

    const float bad[] = {0.5f, NAN};
    ck_assert_int_eq(clipn_roc_curve(bad, 2, ood, 3, &roc, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_null(roc.fpr);
    ck_assert_int_eq(clipn_roc_curve(id, 4, ood, 3, NULL, &err), CLIPN_E_INVALID_ARG);
}
END_TEST

START_TEST(test_refuses_bad_input)
{
    float ok[] = {0.1f, 0.2f}, bad[] = {0.1f, NAN}, inf[] = {INFINITY, 0.f};
    double r = 42;
    clipn_error err;
    ck_assert_int_eq(clipn_auroc(ok, 2, bad, 2, &r, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "not finite"));
    ck_assert_int_eq(clipn_auroc(inf, 2, ok, 2, &r, &err), CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_auroc(ok, 0, ok, 2, &r, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err.message, "empty"));
    ck_assert_int_eq(clipn_fpr95(ok, 2, ok, 0, CLIPN_FPR95_INTERP, &r, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_fpr95(NULL, 2, ok, 2, CLIPN_FPR95_INTERP, &r, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_fpr95(ok, 2, ok, 2, (clipn_fpr95_mode)7, &r, &err),
                     CLIPN_E_INVALID_ARG);
    ck_assert_int_eq(clipn_auroc(ok, 2, ok, 2, NULL, &err), CLIPN_E_INVALID_ARG);
    ck_assert(r == 42);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_against_sklearn);
    tcase_add_test(tc, test_permutation_invariant);
    tcase_add_test(tc, test_large_rank_sum);
    tcase_add_test(tc, test_refuses_bad_input);
    tcase_add_test(tc, test_roc_curve);
    suite_add_tcase(s, tc);
    return s;
}
