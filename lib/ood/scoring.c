/* Class heads and CLIPN scores (official src/classification.py, src/zero_shot_infer.py).
 *
 * Heads: yes_c = normalize(sum_t normalize(encode_text(t.format(c)))), summed in float32 in
 * template order exactly like the official `text_yes_ttl += text_yes_i`; no_c the same with
 * the no tower. Scores: computed in double from the float32 feature and heads. */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ template formatting */

/* Appends n bytes to a growing buffer; 0 on success. */
static int buf_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (n > SIZE_MAX - *len - 1)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < *len + n + 1) {
            if (nc > SIZE_MAX / 2)
                return -1;
            nc *= 2;
        }
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

clipn_status clipn_format_template(const char *tmpl, const char *name, char **out,
                                   clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_format_template: out is NULL");
    *out = NULL;
    if (!tmpl || !name)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_format_template: NULL argument");
    char *buf = NULL;
    size_t len = 0, cap = 0, name_len = strlen(name);
    int numbering = 0; /* 0 none yet, 1 automatic "{}", 2 manual "{0}" (Python refuses mixes) */
    const char *why = NULL;
    for (const char *p = tmpl; *p && !why;) {
        if (p[0] == '{' && p[1] == '{') {
            if (buf_put(&buf, &len, &cap, "{", 1))
                goto nomem;
            p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            if (buf_put(&buf, &len, &cap, "}", 1))
                goto nomem;
            p += 2;
        } else if (p[0] == '}') {
            why = "single '}' encountered";
        } else if (p[0] == '{') {
            const char *end = strchr(p, '}');
            if (!end) {
                why = "'{' without a matching '}'";
                break;
            }
            size_t n = (size_t)(end - p - 1);
            const char *field = p + 1;
            int kind = 0;
            if (n == 0 || (n == 2 && !memcmp(field, "!s", 2)))
                kind = 1;
            else if ((n == 1 && field[0] == '0') || (n == 3 && !memcmp(field, "0!s", 3)))
                kind = 2;
            if (!kind)
                why = "only {} or {0} (the class name) may appear; use {{ and }} for braces";
            else if (numbering && numbering != kind)
                why = "mixes automatic {} and manual {0} field numbering";
            else if (kind == 1 && numbering == 1)
                why = "has two {} fields but there is only one class name (use {0} twice)";
            else if (buf_put(&buf, &len, &cap, name, name_len))
                goto nomem;
            numbering = kind;
            p = end + 1;
        } else {
            size_t n = strcspn(p, "{}");
            if (buf_put(&buf, &len, &cap, p, n))
                goto nomem;
            p += n;
        }
    }
    if (why) {
        free(buf);
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "template \"%.200s\": %s", tmpl, why);
    }
    if (!buf && buf_put(&buf, &len, &cap, "", 0))
        goto nomem;
    *out = buf;
    return CLIPN_OK;
nomem:
    free(buf);
    return clipn_fail(err, CLIPN_E_NOMEM, "template \"%.200s\": out of memory", tmpl);
}

/* ------------------------------------------------------------------ heads */

void clipn_heads_free(clipn_heads *heads)
{
    if (!heads)
        return;
    if (heads->class_names)
        for (int c = 0; c < heads->n_classes; c++)
            free(heads->class_names[c]);
    free(heads->class_names);
    free(heads->yes);
    free(heads->no);
    clipn_heads_free_negatives(heads);
    free(heads);
}

/* F.normalize: x / max(||x||, 1e-12), the norm in double. */
static void normalize_row(float *x, int dim)
{
    double ss = 0.0;
    for (int i = 0; i < dim; i++)
        ss += (double)x[i] * x[i];
    double norm = sqrt(ss);
    if (norm < 1e-12)
        norm = 1e-12;
    for (int i = 0; i < dim; i++)
        x[i] = (float)(x[i] / norm);
}

/* Prompts per text batch: all the classes of a template together, so the template's
 * words before the class name are computed once per batch (lib/nn/text_tower.c shares prefixes)
 * and the GEMMs see thousands of rows. The ctx scratch grows to fit it, once. */
#define HEADS_BATCH 1024

typedef struct head_job {
    clipn_ctx *ctx;
    clipn_tokenizer *tok;
    int context_length, dim, batch;
    int report_every;   /* progress granularity: the ctx's max_batch, as before */
    int32_t *ids;       /* [batch, context_length] */
    float *features;    /* [batch, dim] */
    clipn_progress_fn progress;
    void *user;
    size_t done, total; /* text encodes over both towers */
} head_job;

/* sums[c] = sum over templates (in order) of normalize(encode(t.format(c))); prompts run
 * template-major (k = t * n_classes + c) in full batches, as the official loop does. */
static clipn_status build_one_head(head_job *job, int no_tower, const char *tower,
                                   const char *const *classes, int n_classes,
                                   const char *const *templates, int n_templates, float *sums,
                                   clipn_error *err)
{
    size_t n_prompts = (size_t)n_classes * (size_t)n_templates, reported = 0;
    memset(sums, 0, (size_t)n_classes * job->dim * sizeof *sums);
    for (size_t k0 = 0; k0 < n_prompts; k0 += (size_t)job->batch) {
        int n = (int)((n_prompts - k0 < (size_t)job->batch) ? n_prompts - k0 : (size_t)job->batch);
        for (int b = 0; b < n; b++) {
            size_t k = k0 + (size_t)b;
            const char *tmpl = templates[k / (size_t)n_classes];
            const char *name = classes[k % (size_t)n_classes];
            char *text = NULL;
            clipn_status st = clipn_format_template(tmpl, name, &text, err);
            if (st != CLIPN_OK)
                return st;
            st = clipn_tokenize(job->tok, text, strlen(text),
                                job->ids + (size_t)b * job->context_length, job->context_length,
                                err);
            free(text);
            if (st != CLIPN_OK)
                return st;
        }
        clipn_status st = clipn_text_encode_batch(job->ctx, no_tower, job->ids, n, 1,
                                                  job->features, err);
        if (st != CLIPN_OK)
            return st;
        for (int b = 0; b < n; b++) {
            size_t c = (k0 + (size_t)b) % (size_t)n_classes;
            float *f = job->features + (size_t)b * job->dim, *sum = sums + c * job->dim;
            normalize_row(f, job->dim);
            for (int i = 0; i < job->dim; i++)
                sum[i] += f[i];
        }
        /* report in steps of max_batch prompts (what a caller sizing its ctx expects);
           a partial step waits for the next batch unless the tower is finished */
        const size_t step = (size_t)job->report_every, end = k0 + (size_t)n;
        while (reported < end && (end - reported >= step || end == n_prompts)) {
            const size_t k = end - reported < step ? end - reported : step;
            reported += k;
            job->done += k;
            if (job->progress && job->progress(job->user, job->done, job->total))
                return clipn_fail(err, CLIPN_E_CANCELLED,
                                  "heads: cancelled during the %s tower", tower);
        }
    }
    for (int c = 0; c < n_classes; c++)
        normalize_row(sums + (size_t)c * job->dim, job->dim);
    return CLIPN_OK;
}

static clipn_status check_strings(const char *what, const char *const *s, int n, int max_n,
                                  clipn_error *err)
{
    if (n <= 0 || !s)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "heads: no %s given", what);
    if (n > max_n) /* checked before touching s[]: n may be garbage */
        return clipn_fail(err, CLIPN_E_LIMIT, "heads: %d %s, more than the limit of %d", n,
                          what, max_n);
    for (int i = 0; i < n; i++)
        if (!s[i])
            return clipn_fail(err, CLIPN_E_INVALID_ARG, "heads: %s %d is NULL", what, i);
    return CLIPN_OK;
}

clipn_status clipn_heads_build(clipn_ctx *ctx, const char *const *classes, int n_classes,
                               const char *const *templates, int n_templates,
                               const char *const *no_templates, int n_no_templates,
                               clipn_progress_fn progress, void *user, clipn_heads **out,
                               clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_build: out is NULL");
    *out = NULL;
    if (!ctx || !ctx->model)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_build: ctx is NULL");
    if (!no_templates) {
        no_templates = templates;
        n_no_templates = n_templates;
    }
    clipn_status st;
    if ((st = check_strings("class names", classes, n_classes, CLIPN_MAX_CLASSES, err)) ||
        (st = check_strings("templates", templates, n_templates, CLIPN_MAX_TEMPLATES, err)) ||
        (st = check_strings("no templates", no_templates, n_no_templates, CLIPN_MAX_TEMPLATES,
                            err)))
        return st;
    /* Refuse a bad template before encoding anything. */
    for (int t = 0; t < n_templates + n_no_templates; t++) {
        const char *tmpl = t < n_templates ? templates[t] : no_templates[t - n_templates];
        char *text = NULL;
        if ((st = clipn_format_template(tmpl, "x", &text, err)) != CLIPN_OK)
            return st;
        free(text);
    }
    const clipn_config *cfg = &ctx->model->config;
    int has_no = cfg->has_no_tower;
    size_t dim = (size_t)cfg->embed_dim, C = (size_t)n_classes;
    if (cfg->embed_dim <= 0 || cfg->context_length <= 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "heads: model config has no embed_dim");
    if (C > SIZE_MAX / sizeof(float) / dim / 2)
        return clipn_fail(err, CLIPN_E_LIMIT, "heads: %d classes x %zu dims is too large",
                          n_classes, dim);

    head_job job = {.ctx = ctx, .context_length = cfg->context_length, .dim = cfg->embed_dim,
                    .batch = ctx->max_batch > HEADS_BATCH ? ctx->max_batch : HEADS_BATCH,
                    .report_every = ctx->max_batch > 0 ? ctx->max_batch : 8,
                    .progress = progress,
                    .user = user};
    job.total = C * (size_t)n_templates + (has_no ? C * (size_t)n_no_templates : 0);
    if (n_classes <= job.batch) /* whole templates per batch: one prefix set each */
        job.batch = n_classes * (job.batch / n_classes);
    clipn_heads *h = calloc(1, sizeof *h);
    job.ids = malloc((size_t)job.batch * (size_t)job.context_length * sizeof *job.ids);
    job.features = malloc((size_t)job.batch * dim * sizeof *job.features);
    if (h) {
        h->n_classes = n_classes;
        h->dim = cfg->embed_dim;
        h->yes = malloc(C * dim * sizeof *h->yes);
        h->no = has_no ? malloc(C * dim * sizeof *h->no) : NULL;
    }
    if (!h || !job.ids || !job.features || !h->yes || (has_no && !h->no)) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "heads: out of memory for %d classes", n_classes);
        goto done;
    }
    if ((st = clipn_tokenizer_from_model(ctx->model, &job.tok, err)) != CLIPN_OK)
        goto done;
    st = build_one_head(&job, 0, "yes", classes, n_classes, templates,
                        n_templates, h->yes, err);
    if (st == CLIPN_OK && has_no)
        st = build_one_head(&job, 1, "no", classes, n_classes, no_templates,
                            n_no_templates, h->no, err);
done:
    clipn_tokenizer_free(job.tok);
    free(job.ids);
    free(job.features);
    if (st != CLIPN_OK) {
        clipn_heads_free(h);
        return st;
    }
    *out = h;
    return CLIPN_OK;
}

/* ------------------------------------------------------------------ scores */

/* softmax([a, b])[0] = sigmoid(a - b), without overflow for either sign. */
static double sigmoid(double d)
{
    if (d >= 0)
        return 1.0 / (1.0 + exp(-d));
    double e = exp(d);
    return e / (1.0 + e);
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

clipn_status clipn_score(const clipn_heads *heads, const float *feature, float *probs,
                         clipn_scores *out, clipn_error *err)
{
    return clipn_score_image(heads, feature, NULL, 0, probs, out, err);
}

clipn_status clipn_score_image(const clipn_heads *heads, const float *feature,
                               const float *local, int n_local, float *probs,
                               clipn_scores *out, clipn_error *err)
{
    if (local && n_local < 1)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_score_image: n_local = %d", n_local);
    if (!heads || !feature || !out || !heads->yes || heads->n_classes <= 0 || heads->dim <= 0)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_score: NULL or empty argument");
    int C = heads->n_classes, D = heads->dim;
    double norm = sqrt(dot(feature, feature, D));
    if (!isfinite(norm))
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_score: feature is not finite");
    if (norm < 1e-12)
        norm = 1e-12;
    double scale = CLIPN_LOGIT_SCALE / norm;

    /* one per-thread block, grown on a thread's first call (and for larger heads): logits
       [C] doubles, NegLabel's [n_neg + groups] doubles, GL-MCM's [n_local, D + C] floats */
    const size_t n_logits = (size_t)C;
    const size_t n_neg = heads->n_neg > 0 ? (size_t)heads->n_neg + (size_t)heads->neg_groups : 0;
    int ok = 1;
    const size_t local_floats =
        local ? clipn_mul_size((size_t)n_local, (size_t)D + (size_t)C, &ok) : 0;
    const size_t doubles = n_logits + n_neg;
    size_t bytes = clipn_mul_size(doubles, sizeof(double), &ok);
    const size_t local_bytes = clipn_mul_size(local_floats, sizeof(float), &ok);
    if (!ok || bytes > SIZE_MAX - local_bytes)
        return clipn_fail(err, CLIPN_E_LIMIT, "clipn_score: scratch size overflows");
    bytes += local_bytes;
    double *logits = clipn_thread_scratch(bytes);
    if (!logits)
        return clipn_fail(err, CLIPN_E_NOMEM, "clipn_score: out of memory for %d classes", C);
    int pred = 0;
    double max_logit = -INFINITY;
    for (int c = 0; c < C; c++) {
        logits[c] = scale * dot(feature, heads->yes + (size_t)c * D, D);
        if (logits[c] > max_logit) {
            max_logit = logits[c];
            pred = c;
        }
    }
    /* softmax(cos / T) with T = 1 is softmax(logits / 100); its max is at pred too. */
    double sum_exp = 0.0, sum_exp_cos = 0.0, max_cos = max_logit / CLIPN_LOGIT_SCALE;
    for (int c = 0; c < C; c++) {
        sum_exp += exp(logits[c] - max_logit);
        sum_exp_cos += exp(logits[c] / CLIPN_LOGIT_SCALE - max_cos);
    }
    double atd = 0.0, max_p_yes_p = 0.0, ctw = NAN, p_no_pred = NAN;
    for (int c = 0; c < C; c++) {
        double l = logits[c], p = exp(l - max_logit) / sum_exp;
        if (probs)
            probs[c] = (float)p;
        if (heads->no) {
            double l_no = scale * dot(feature, heads->no + (size_t)c * D, D);
            double p_yes = sigmoid(l - l_no);
            atd += p_yes * p;
            if (p_yes * p > max_p_yes_p)
                max_p_yes_p = p_yes * p;
            if (c == pred) {
                ctw = p_yes;
                p_no_pred = sigmoid(l_no - l);
            }
        }
    }
    double glmcm_local = NAN, neglabel = NAN;
    clipn_status st = CLIPN_OK;
    if (local)
        st = clipn_glmcm_local(heads, local, n_local, (float *)(logits + doubles),
                               &glmcm_local, err);
    if (st == CLIPN_OK && heads->n_neg > 0)
        st = clipn_neglabel_score(heads, feature, logits, max_logit, scale, logits + n_logits,
                                  &neglabel, err);
    if (st != CLIPN_OK)
        return st;
    out->glmcm = (float)(1.0 / sum_exp_cos + glmcm_local);
    out->neglabel = (float)neglabel;
    out->pred = pred;
    out->msp = (float)(1.0 / sum_exp);
    out->maxlogit = (float)max_logit;
    out->energy = (float)(max_logit + log(sum_exp));
    out->mcm = (float)(1.0 / sum_exp_cos);
    if (heads->no) {
        out->ctw = (float)ctw;
        out->atd = (float)atd;
        out->ood_ctw = p_no_pred > 0.5;
        out->ood_atd = 1.0 - atd > max_p_yes_p;
    } else {
        out->ctw = out->atd = NAN;
        out->ood_ctw = out->ood_atd = 0;
    }
    return CLIPN_OK;
}
