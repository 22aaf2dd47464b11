/* NegLabel (Jiang et al., ICLR 2024; official tmlr-group/NegLabel,
 * mmcls/models/classifiers/multi_modal.py and mmcls/models/ood/clip_ood.py): negative
 * labels mined far from the ID classes, and the grouped score. See docs/methods.md. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEG_BATCH 1024 /* prompts per text batch: shared prefixes computed once per batch */

void clipn_neg_opts_default(clipn_neg_opts *opts)
{
    if (!opts)
        return;
    opts->fraction = 0.15;
    opts->percentile = 0.95;
    opts->id_template = "the nice {}";
    opts->noun_template = "the nice {}";
    opts->adj_template = "This is a {} photo";
}

static void free_strings(char **s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void clipn_heads_free_negatives(clipn_heads *heads)
{
    free(heads->neg);
    free_strings(heads->neg_prompts, heads->n_neg);
    heads->neg = NULL;
    heads->neg_prompts = NULL;
    heads->n_neg = 0;
    heads->neg_groups = 0;
}

void clipn_neg_labels_free(clipn_neg_labels *labels)
{
    if (!labels)
        return;
    free_strings(labels->prompts, labels->n);
    free(labels->quantile);
    free(labels);
}

/* ------------------------------------------------------------------ encoding */

typedef struct text_job {
    clipn_ctx *ctx;
    clipn_tokenizer *tok;
    int C, D;
    int32_t *ids;           /* [NEG_BATCH, C] */
    clipn_progress_fn progress;
    void *user;
    size_t done, total;
} text_job;

static clipn_status job_open(text_job *job, clipn_ctx *ctx, clipn_progress_fn progress,
                             void *user, size_t total, clipn_error *err)
{
    memset(job, 0, sizeof *job);
    job->ctx = ctx;
    job->C = ctx->model->config.context_length;
    job->D = ctx->model->config.embed_dim;
    job->progress = progress;
    job->user = user;
    job->total = total;
    job->ids = malloc((size_t)NEG_BATCH * job->C * sizeof *job->ids);
    if (!job->ids)
        return clipn_fail(err, CLIPN_E_NOMEM, "NegLabel: out of memory");
    return clipn_tokenizer_from_model(ctx->model, &job->tok, err);
}

static void job_close(text_job *job)
{
    clipn_tokenizer_free(job->tok);
    free(job->ids);
}

static void normalize(float *x, int D)
{
    double ss = 0.0;
    for (int i = 0; i < D; i++)
        ss += (double)x[i] * x[i];
    double norm = sqrt(ss);
    if (norm < 1e-12)
        norm = 1e-12;
    for (int i = 0; i < D; i++)
        x[i] = (float)(x[i] / norm);
}

/* texts[0..n) (n <= NEG_BATCH), each tmpl.format(text) (tmpl NULL: as given), through the
 * yes tower into out [n, D], L2-normalised. */
static clipn_status encode_batch(text_job *job, const char *tmpl, const char *const *texts,
                                 int n, float *out, clipn_error *err)
{
    for (int i = 0; i < n; i++) {
        char *formatted = NULL;
        const char *t = texts[i];
        clipn_status st;
        if (tmpl) {
            if ((st = clipn_format_template(tmpl, texts[i], &formatted, err)) != CLIPN_OK)
                return st;
            t = formatted;
        }
        st = clipn_tokenize(job->tok, t, strlen(t), job->ids + (size_t)i * job->C, job->C, err);
        free(formatted);
        if (st != CLIPN_OK)
            return st;
    }
    clipn_status st = clipn_text_encode_batch(job->ctx, 0, job->ids, n, 1, out, err);
    if (st != CLIPN_OK)
        return st;
    for (int i = 0; i < n; i++)
        normalize(out + (size_t)i * job->D, job->D);
    job->done += (size_t)n;
    if (job->progress && job->progress(job->user, job->done, job->total))
        return clipn_fail(err, CLIPN_E_CANCELLED, "NegLabel: cancelled");
    return CLIPN_OK;
}

static clipn_status check_list(const char *what, const char *const *s, int n, int max_n,
                               int may_be_empty, clipn_error *err)
{
    if (n < 0 || (n > 0 && !s) || (!may_be_empty && n == 0))
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "NegLabel: no %s given", what);
    if (n > max_n)
        return clipn_fail(err, CLIPN_E_LIMIT, "NegLabel: %d %s, more than the limit of %d", n,
                          what, max_n);
    for (int i = 0; i < n; i++)
        if (!s[i])
            return clipn_fail(err, CLIPN_E_INVALID_ARG, "NegLabel: %s %d is NULL", what, i);
    return CLIPN_OK;
}

/* ------------------------------------------------------------------ negatives in heads */

clipn_status clipn_heads_add_negatives(clipn_ctx *ctx, clipn_heads *heads,
                                       const char *const *prompts, int n, int groups,
                                       clipn_progress_fn progress, void *user, clipn_error *err)
{
    if (!ctx || !heads || !heads->yes)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_add_negatives: ctx and heads "
                          "are required");
    clipn_status st = check_list("negative prompts", prompts, n, CLIPN_MAX_NEGATIVES, 0, err);
    if (st != CLIPN_OK)
        return st;
    if (groups == 0)
        groups = n < CLIPN_NEG_DEFAULT_GROUPS ? n : CLIPN_NEG_DEFAULT_GROUPS;
    if (groups < 1 || groups > n)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_add_negatives: %d groups for "
                          "%d negatives (need 1..%d)", groups, n, n);
    if (heads->dim != ctx->model->config.embed_dim)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_add_negatives: heads have dim "
                          "%d, the model %d", heads->dim, ctx->model->config.embed_dim);
    const size_t D = (size_t)heads->dim;
    float *neg = malloc((size_t)n * D * sizeof *neg);
    char **names = calloc((size_t)n, sizeof *names);
    text_job job;
    int opened = 0;
    if (!neg || !names) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "clipn_heads_add_negatives: out of memory for %d "
                        "negatives", n);
        goto fail;
    }
    for (int i = 0; i < n; i++)
        if (!(names[i] = strdup(prompts[i]))) {
            st = clipn_fail(err, CLIPN_E_NOMEM, "clipn_heads_add_negatives: out of memory");
            goto fail;
        }
    opened = 1;
    if ((st = job_open(&job, ctx, progress, user, (size_t)n, err)) != CLIPN_OK)
        goto fail;
    for (int i = 0; i < n; i += NEG_BATCH) {
        const int k = n - i < NEG_BATCH ? n - i : NEG_BATCH;
        if ((st = encode_batch(&job, NULL, prompts + i, k, neg + (size_t)i * D, err)) != CLIPN_OK)
            goto fail;
    }
    job_close(&job);
    clipn_heads_free_negatives(heads);
    heads->n_neg = n;
    heads->neg_groups = groups;
    heads->neg = neg;
    heads->neg_prompts = names;
    return CLIPN_OK;
fail:
    if (opened)
        job_close(&job);
    free(neg);
    free_strings(names, n);
    return st;
}

/* The official grouping (clip_ood.py ScalableClassifier.grouping), deterministic: the last
 * n_neg % groups negatives are dropped (as the official code drops them before its random
 * permutation), negative j goes to group j % groups (so every group takes nouns and
 * adjectives from the whole similarity range), and the score is the mean over groups of
 * the ID labels' softmax mass over [ID logits, the group's logits]. All logits are 100 cos
 * (temperature 0.01, the official t = 1 on logit scale 100). */
clipn_status clipn_neglabel_score(const clipn_heads *heads, const float *feature,
                                  const double *logits, double max_logit, double scale,
                                  double *scratch, double *out, clipn_error *err)
{
    const int C = heads->n_classes, D = heads->dim, G = heads->neg_groups;
    if (G < 1 || G > heads->n_neg || !heads->neg)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_score: heads have %d negatives in "
                          "%d groups", heads->n_neg, G);
    const int used = heads->n_neg - heads->n_neg % G;
    double *neg = scratch, *group = scratch + used;
    for (int g = 0; g < G; g++)
        group[g] = 0.0;
    double m = max_logit;
    for (int j = 0; j < used; j++) {
        const float *row = heads->neg + (size_t)j * D;
        double d = 0.0;
        for (int i = 0; i < D; i++)
            d += (double)feature[i] * row[i];
        neg[j] = scale * d;
        if (neg[j] > m)
            m = neg[j];
    }
    double pos = 0.0;
    for (int c = 0; c < C; c++)
        pos += exp(logits[c] - m);
    for (int j = 0; j < used; j++)
        group[j % G] += exp(neg[j] - m);
    double sum = 0.0;
    for (int g = 0; g < G; g++)
        sum += pos / (pos + group[g]);
    *out = sum / G;
    return CLIPN_OK;
}

/* ------------------------------------------------------------------ mining */

static void swap_f(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest of v[0..n) (v reordered), Hoare quickselect. */
static float select_kth(float *v, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j)
                swap_f(&v[i++], &v[j--]);
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* torch.quantile(v, q) with linear interpolation (v reordered), in float32 as torch:
 * rank = q * (n - 1), then lerp between the order statistics around it. */
static float quantile(float *v, int n, double q)
{
    const float pos = (float)q * (float)(n - 1);
    const int lo = (int)floorf(pos), hi = lo + 1 < n ? lo + 1 : lo;
    const float a = select_kth(v, n, lo);
    float b = a;
    if (hi != lo) { /* after selecting lo, v[lo+1..] are >= a: the next order statistic */
        b = v[hi];
        for (int i = hi + 1; i < n; i++)
            if (v[i] < b)
                b = v[i];
    }
    const float t = pos - (float)lo;
    return t < 0.5f ? a + t * (b - a) : b - (b - a) * (1.0f - t); /* torch.lerp */
}

typedef struct ranked {
    float q;
    int index;
} ranked;

static int by_quantile(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->q != b->q)
        return a->q < b->q ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

typedef struct word_ref {
    const char *word;
    int index;
} word_ref;

static int by_word(const void *pa, const void *pb)
{
    const word_ref *a = pa, *b = pb;
    const int c = strcmp(a->word, b->word);
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

/* Quantiles of candidates[0..n) formatted with tmpl against the ID features (a [C, D]
 * layer), into q[n]. The candidates run in sorted order, so that words with a common
 * beginning ("national park", "national monument") fall in one batch and the text tower
 * computes their shared token rows once; the quantiles go back to input order. */
static clipn_status score_candidates(text_job *job, const clipn_linear *id, const char *tmpl,
                                     const char *const *words, int n, double percentile,
                                     float *feats, float *cos, float *q, clipn_error *err)
{
    const int C = id->n_out;
    word_ref *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    const char **batch = malloc((size_t)NEG_BATCH * sizeof *batch);
    clipn_status st = CLIPN_OK;
    if (!order || !batch) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "NegLabel: out of memory");
        n = 0;
    }
    for (int i = 0; i < n; i++)
        order[i] = (word_ref){words[i], i};
    if (n > 0)
        qsort(order, (size_t)n, sizeof *order, by_word);
    for (int i = 0; i < n && st == CLIPN_OK; i += NEG_BATCH) {
        const int k = n - i < NEG_BATCH ? n - i : NEG_BATCH;
        for (int r = 0; r < k; r++)
            batch[r] = order[i + r].word;
        if ((st = encode_batch(job, tmpl, batch, k, feats, err)) != CLIPN_OK)
            break;
        clipn_linear_forward(id, feats, k, cos, CLIPN_EPI_NONE);
        for (int r = 0; r < k; r++)
            q[order[i + r].index] = quantile(cos + (size_t)r * C, C, percentile);
    }
    free(order);
    free(batch);
    return st;
}

/* The first int(fraction * n) of words by ascending quantile, into labels from slot at. */
static clipn_status keep_lowest(const char *tmpl, const char *const *words, const float *q,
                                int n, int keep, clipn_neg_labels *labels, int at,
                                clipn_error *err)
{
    ranked *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r)
        return clipn_fail(err, CLIPN_E_NOMEM, "NegLabel: out of memory");
    for (int i = 0; i < n; i++)
        r[i] = (ranked){q[i], i};
    qsort(r, (size_t)n, sizeof *r, by_quantile);
    clipn_status st = CLIPN_OK;
    for (int i = 0; i < keep && st == CLIPN_OK; i++) {
        st = clipn_format_template(tmpl, words[r[i].index], &labels->prompts[at + i], err);
        labels->quantile[at + i] = r[i].q;
    }
    free(r);
    return st;
}

clipn_status clipn_neg_labels_mine(clipn_ctx *ctx, const char *const *classes, int n_classes,
                                   const char *const *nouns, int n_nouns,
                                   const char *const *adjectives, int n_adjectives,
                                   const clipn_neg_opts *opts, clipn_progress_fn progress,
                                   void *user, clipn_neg_labels **out, clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_neg_labels_mine: out is NULL");
    *out = NULL;
    if (!ctx)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_neg_labels_mine: ctx is NULL");
    clipn_neg_opts o;
    clipn_neg_opts_default(&o);
    if (opts)
        o = *opts;
    clipn_status st;
    if ((st = check_list("class names", classes, n_classes, CLIPN_MAX_CLASSES, 0, err)) ||
        (st = check_list("nouns", nouns, n_nouns, 10 * CLIPN_MAX_NEGATIVES, 1, err)) ||
        (st = check_list("adjectives", adjectives, n_adjectives, 10 * CLIPN_MAX_NEGATIVES, 1,
                         err)))
        return st;
    if (n_nouns + n_adjectives == 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "NegLabel: no candidate words given");
    if (!(o.fraction > 0 && o.fraction <= 1) || !(o.percentile >= 0 && o.percentile <= 1))
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "NegLabel: fraction %g must be in (0, 1] "
                          "and percentile %g in [0, 1]", o.fraction, o.percentile);
    if (!o.id_template || !o.noun_template || !o.adj_template)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "NegLabel: a template is NULL");
    const char *tmpls[3] = {o.id_template, o.noun_template, o.adj_template};
    for (int t = 0; t < 3; t++) { /* refuse a bad template before encoding anything */
        char *s = NULL;
        if ((st = clipn_format_template(tmpls[t], "x", &s, err)) != CLIPN_OK)
            return st;
        free(s);
    }
    /* int(len * fraction) as the official code (Python float product, truncated) */
    const int keep_n = (int)((double)n_nouns * o.fraction);
    const int keep_a = (int)((double)n_adjectives * o.fraction);
    const size_t D = (size_t)ctx->model->config.embed_dim;
    const int C = n_classes;
    float *id_feats = malloc((size_t)C * D * sizeof *id_feats);
    float *feats = malloc((size_t)NEG_BATCH * D * sizeof *feats);
    float *cos = malloc((size_t)NEG_BATCH * C * sizeof *cos);
    float *q = malloc((size_t)(n_nouns + n_adjectives) * sizeof *q);
    clipn_neg_labels *labels = calloc(1, sizeof *labels);
    if (labels) {
        labels->prompts = calloc((size_t)(keep_n + keep_a) + 1, sizeof *labels->prompts);
        labels->quantile = calloc((size_t)(keep_n + keep_a) + 1, sizeof *labels->quantile);
    }
    text_job job;
    int opened = 0, saved = 0;
    if (!id_feats || !feats || !cos || !q || !labels || !labels->prompts || !labels->quantile) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "NegLabel: out of memory for %d classes", C);
        goto done;
    }
    labels->n = keep_n + keep_a;
    labels->n_nouns = keep_n;
    opened = 1;
    saved = clipn_ctx_enter(ctx); /* the ctx's thread limit for the GEMMs here too */
    st = job_open(&job, ctx, progress, user,
                  (size_t)C + (size_t)n_nouns + (size_t)n_adjectives, err);
    for (int i = 0; st == CLIPN_OK && i < C; i += NEG_BATCH) {
        const int k = C - i < NEG_BATCH ? C - i : NEG_BATCH;
        st = encode_batch(&job, o.id_template, classes + i, k, id_feats + (size_t)i * D, err);
    }
    const clipn_linear id = {.n_out = C, .n_in = (int)D, .weight = id_feats};
    if (st == CLIPN_OK)
        st = score_candidates(&job, &id, o.noun_template, nouns, n_nouns, o.percentile, feats,
                              cos, q, err);
    if (st == CLIPN_OK)
        st = score_candidates(&job, &id, o.adj_template, adjectives, n_adjectives,
                              o.percentile, feats, cos, q + n_nouns, err);
    if (st == CLIPN_OK)
        st = keep_lowest(o.noun_template, nouns, q, n_nouns, keep_n, labels, 0, err);
    if (st == CLIPN_OK)
        st = keep_lowest(o.adj_template, adjectives, q + n_nouns, n_adjectives, keep_a, labels,
                         keep_n, err);
done:
    if (opened) {
        job_close(&job);
        clipn_ctx_leave(saved);
    }
    free(id_feats);
    free(feats);
    free(cos);
    free(q);
    if (st != CLIPN_OK) {
        clipn_neg_labels_free(labels);
        return st;
    }
    *out = labels;
    return CLIPN_OK;
}
