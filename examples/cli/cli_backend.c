/* The CLI's map steps in this process (see cli_backend.h). Images go through a two-slot
 * pipeline: a producer thread decodes and preprocesses the next batch while this thread
 * encodes the current one. */
#include "cli_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_backend_model_path;
const clipn_model *cli_backend_model;

/* ------------------------------------------------------------------ encoders */

static size_t feature_floats(const clipn_model *model)
{
    return (size_t)clipn_model_config(model)->embed_dim;
}

static size_t patches(const clipn_model *model)
{
    const clipn_config *c = clipn_model_config(model);
    return (size_t)(c->image_size / c->patch_size) * (size_t)(c->image_size / c->patch_size);
}

static size_t local_floats(const clipn_model *model)
{
    return (1 + patches(model)) * feature_floats(model);
}

/* Per image: the global feature then its local features (one row of out_floats). */
static clipn_status encode_local(clipn_ctx *ctx, const float *pixels, int n, float *out,
                                 clipn_error *err)
{
    const clipn_model *model = clipn_ctx_model(ctx);
    const size_t E = feature_floats(model), P = patches(model);
    float *global = malloc((size_t)n * E * sizeof *global);
    float *local = malloc((size_t)n * P * E * sizeof *local);
    clipn_status st = !global || !local
                          ? (err ? (err->code = CLIPN_E_NOMEM,
                                    snprintf(err->message, sizeof err->message,
                                             "out of memory for local features"),
                                    CLIPN_E_NOMEM)
                                 : CLIPN_E_NOMEM)
                          : clipn_encode_image_local(ctx, pixels, n, global, local, err);
    for (int i = 0; st == CLIPN_OK && i < n; i++) {
        memcpy(out + (size_t)i * (1 + P) * E, global + (size_t)i * E, E * sizeof *out);
        memcpy(out + ((size_t)i * (1 + P) + 1) * E, local + (size_t)i * P * E,
               P * E * sizeof *out);
    }
    free(global);
    free(local);
    return st;
}

const cli_image_encoder cli_image_encoders[CLI_N_ENCODERS] = {
    [CLI_ENC_FEATURE] = {"feature", feature_floats, clipn_encode_image},
    [CLI_ENC_LOCAL] = {"feature+local", local_floats, encode_local},
};

/* ------------------------------------------------------------------ images */

/* A slot holds the consecutive images [lo, hi): row[j] is the pixel row of image lo + j, or
 * -1 when it could not be read (msg[j] says why). At most `batch` rows and `cap` images. */
typedef struct slot {
    float *pixels;
    int *row;
    char (*msg)[sizeof ((clipn_error *)0)->message];
    size_t lo, hi;
    int n_rows, full;
} slot;

typedef struct pipeline {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot slot[2];
    int producer_done, stop, batch, cap;
    const cli_image_job *job;
    clipn_image_opts io;
} pipeline;

static void *producer(void *arg)
{
    pipeline *p = arg;
    const size_t per_image = 3 * (size_t)p->io.image_size * (size_t)p->io.image_size;
    size_t next = 0;
    for (int k = 0; next < p->job->n; k ^= 1) {
        slot *b = &p->slot[k];
        pthread_mutex_lock(&p->mu);
        while (b->full && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        b->lo = next;
        b->n_rows = 0;
        while (b->n_rows < p->batch && next < p->job->n && next - b->lo < (size_t)p->cap) {
            clipn_error err;
            int j = (int)(next - b->lo);
            if (clipn_preprocess_file(p->job->paths[next], &p->io,
                                      b->pixels + (size_t)b->n_rows * per_image,
                                      &err) != CLIPN_OK) {
                b->row[j] = -1;
                memcpy(b->msg[j], err.message, sizeof b->msg[j]); /* it names the file */
            } else {
                b->row[j] = b->n_rows++;
            }
            next++;
        }
        b->hi = next;
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

/* Encodes every slot the producer fills and reports its images in order. 0 or 1. */
static int consume(pipeline *p, const cli_image_encoder *enc, size_t F, float *out)
{
    const cli_image_job *job = p->job;
    for (int k = 0;; k ^= 1) {
        slot *b = &p->slot[k];
        pthread_mutex_lock(&p->mu);
        while (!b->full && !p->producer_done)
            pthread_cond_wait(&p->cv, &p->mu);
        int have = b->full;
        pthread_mutex_unlock(&p->mu);
        if (!have)
            return 0;
        clipn_error err;
        if (b->n_rows > 0 && enc->encode(job->ctx, b->pixels, b->n_rows, out, &err) != CLIPN_OK)
            return cli_fail(job->cmd, "encoding images: %s", err.message);
        for (size_t i = b->lo; i < b->hi; i++) {
            int j = (int)(i - b->lo), r = b->row[j];
            if (job->on_image(job->user, i, r >= 0 ? out + (size_t)r * F : NULL,
                              r >= 0 ? NULL : b->msg[j]))
                return 1;
        }
        pthread_mutex_lock(&p->mu);
        b->full = 0;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

int cli_encode_images_local(const cli_image_job *job)
{
    if (job->n == 0)
        return 0;
    if (job->encoder < 0 || job->encoder >= CLI_N_ENCODERS)
        return cli_fail(job->cmd, "internal: no image encoder %d", job->encoder);
    const cli_image_encoder *enc = &cli_image_encoders[job->encoder];
    const size_t F = enc->out_floats(job->model);
    pipeline p;
    memset(&p, 0, sizeof p);
    p.job = job;
    p.batch = job->batch > 0 ? job->batch : 1;
    p.cap = 4 * p.batch; /* unreadable images in a row do not grow a slot without bound */
    clipn_image_opts_from_model(job->model, &p.io);
    const size_t per_image = 3 * (size_t)p.io.image_size * (size_t)p.io.image_size;
    int ok = 1, rc = 1;
    for (int k = 0; k < 2; k++) {
        p.slot[k].pixels = malloc((size_t)p.batch * per_image * sizeof(float));
        p.slot[k].row = malloc((size_t)p.cap * sizeof *p.slot[k].row);
        p.slot[k].msg = malloc((size_t)p.cap * sizeof *p.slot[k].msg);
        ok = ok && p.slot[k].pixels && p.slot[k].row && p.slot[k].msg;
    }
    float *out = malloc((size_t)p.batch * F * sizeof *out);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t thread;
    if (!ok || !out) {
        cli_fail(job->cmd, "out of memory for batches of %d images", p.batch);
    } else if (pthread_create(&thread, NULL, producer, &p) != 0) {
        cli_fail(job->cmd, "cannot start the decoding thread");
    } else {
        rc = consume(&p, enc, F, out);
        pthread_mutex_lock(&p.mu);
        p.stop = 1;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
        pthread_join(thread, NULL);
    }
    for (int k = 0; k < 2; k++) {
        free(p.slot[k].pixels);
        free(p.slot[k].row);
        free(p.slot[k].msg);
    }
    free(out);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    return rc;
}

/* ------------------------------------------------------------------ texts */

clipn_status cli_encode_texts_local(const clipn_model *model, clipn_ctx *ctx,
                                    clipn_tokenizer *tok, int no_tower,
                                    char *const *texts, int n, float *out, clipn_error *err)
{
    if (n <= 0)
        return CLIPN_OK;
    const size_t C = (size_t)clipn_model_config(model)->context_length;
    int32_t *ids = malloc((size_t)n * C * sizeof *ids);
    if (!ids) {
        if (err) {
            err->code = CLIPN_E_NOMEM;
            snprintf(err->message, sizeof err->message, "out of memory for %d texts", n);
        }
        return CLIPN_E_NOMEM;
    }
    clipn_status st = CLIPN_OK;
    for (int i = 0; i < n && st == CLIPN_OK; i++)
        st = clipn_tokenize(tok, texts[i], strlen(texts[i]), ids + (size_t)i * C, (int)C, err);
    if (st == CLIPN_OK)
        st = (no_tower ? clipn_encode_no_text : clipn_encode_text)(ctx, ids, n, out, err);
    free(ids);
    return st;
}

/* ------------------------------------------------------------------ the table */

const cli_backend cli_backend_local = {
    .encode_images = cli_encode_images_local,
    .build_heads = clipn_heads_build,
    .encode_texts = cli_encode_texts_local,
};
const cli_backend *cli_backend_active = &cli_backend_local;
