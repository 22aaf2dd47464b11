/* The distributed cli_backend of clipn-mpi.
 *
 * A map step (encode images, build head rows, encode texts) is cut into chunks of
 * consecutive inputs; the chunking depends only on the inputs and --chunk, never on the
 * number of ranks. Rank 0 sends every worker a job header (model path and fingerprint,
 * threads, templates...), then hands out chunks on request: a chunk message carries the
 * chunk's input names (paths, class names, texts), never pixels; the worker reads its
 * inputs itself and answers with the chunk's rows, which is also its next request. Rank 0
 * computes chunks too (with its own --threads) and delivers results to the subcommand in
 * input order, so what it prints and writes is what `clipn` would. A rank's chunk result
 * is the same bytes whichever rank computes it (rows do not depend on batch composition).
 *
 * Rank 0 talks MPI from one dispatcher thread only (MPI_THREAD_SERIALIZED), polling with
 * MPI_Iprobe and short sleeps so that waiting costs no core. */
#include "mpi_map.h"

#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TAG_JOB = 1, TAG_CHUNK, TAG_QUIT, TAG_READY, TAG_RESULT, TAG_FAIL };
enum { KIND_IMAGES = 0, KIND_HEADS, KIND_TEXTS };
static const char *const kind_names[] = {"images", "heads", "texts"};
/* inputs per chunk: enough work per message, many chunks per rank for balance, and at most
 * about CHUNK_BYTES of results (GL-MCM's local features are 197 rows per ViT-B-16 image) */
static const long default_chunk[] = {256, 32, 256};
#define CHUNK_BYTES (32l << 20)
#define WINDOW_BYTES (1l << 30) /* results rank 0 holds out of order, at most about */

/* ------------------------------------------------------------------ byte buffers */

void mbuf_put(mbuf *b, const void *data, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->n, data, len);
    b->n += len;
}

void mbuf_i64(mbuf *b, int64_t v)
{
    mbuf_put(b, &v, sizeof v);
}

void mbuf_str(mbuf *b, const char *s)
{
    mbuf_put(b, s, strlen(s) + 1);
}

void mbuf_free(mbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

const void *mread_bytes(mread *r, size_t len)
{
    if (r->bad || len > r->n - r->off) {
        r->bad = 1;
        return NULL;
    }
    const void *p = r->p + r->off;
    r->off += len;
    return p;
}

int64_t mread_i64(mread *r)
{
    int64_t v = 0;
    const void *p = mread_bytes(r, sizeof v);
    if (p)
        memcpy(&v, p, sizeof v);
    return v;
}

const char *mread_str(mread *r)
{
    const char *s = r->bad ? NULL : memchr(r->p + r->off, '\0', r->n - r->off);
    if (!s) {
        r->bad = 1;
        return "";
    }
    const char *start = r->p + r->off;
    r->off += (size_t)(s - start) + 1;
    return start;
}

/* ------------------------------------------------------------------ job header */

typedef struct job_header {
    int64_t id, kind;
    const char *cmd, *model_path, *fingerprint;
    int64_t threads, precision, batch, encoder, no_tower;
    int64_t n_tmpl, n_no; /* n_no < 0: the no tower uses the yes templates */
    const char **tmpl, **no_tmpl;
} job_header;

static void pack_strings(mbuf *b, const char *const *s, int64_t n)
{
    mbuf_i64(b, n);
    for (int64_t i = 0; i < n; i++)
        mbuf_str(b, s[i]);
}

/* n strings into a malloc'd array pointing into r's bytes; NULL when bad. */
static const char **read_strings(mread *r, int64_t *n)
{
    *n = mread_i64(r);
    if (r->bad || *n < 0 || (uint64_t)*n > r->n - r->off) {
        r->bad = 1;
        return NULL;
    }
    const char **s = malloc(((size_t)*n + 1) * sizeof *s);
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    for (int64_t i = 0; i < *n; i++)
        s[i] = mread_str(r);
    if (r->bad) {
        free(s);
        return NULL;
    }
    return s;
}

static void pack_header(mbuf *b, const job_header *h)
{
    mbuf_i64(b, h->id);
    mbuf_i64(b, h->kind);
    mbuf_str(b, h->cmd);
    mbuf_str(b, h->model_path);
    mbuf_str(b, h->fingerprint);
    mbuf_i64(b, h->threads);
    mbuf_i64(b, h->precision);
    mbuf_i64(b, h->batch);
    mbuf_i64(b, h->encoder);
    mbuf_i64(b, h->no_tower);
    pack_strings(b, h->tmpl, h->n_tmpl);
    if (h->n_no < 0)
        mbuf_i64(b, -1);
    else
        pack_strings(b, h->no_tmpl, h->n_no);
}

static void header_free(job_header *h)
{
    free(h->tmpl);
    free(h->no_tmpl);
    memset(h, 0, sizeof *h);
}

static int parse_header(mread *r, job_header *h)
{
    memset(h, 0, sizeof *h);
    h->id = mread_i64(r);
    h->kind = mread_i64(r);
    h->cmd = mread_str(r);
    h->model_path = mread_str(r);
    h->fingerprint = mread_str(r);
    h->threads = mread_i64(r);
    h->precision = mread_i64(r);
    h->batch = mread_i64(r);
    h->encoder = mread_i64(r);
    h->no_tower = mread_i64(r);
    h->tmpl = read_strings(r, &h->n_tmpl);
    size_t at = r->off;
    if (!r->bad && mread_i64(r) < 0) {
        h->n_no = -1;
    } else if (!r->bad) {
        r->off = at;
        h->no_tmpl = read_strings(r, &h->n_no);
    }
    if (r->bad || h->kind < 0 || h->kind > KIND_TEXTS || h->encoder < 0 ||
        h->encoder >= CLI_N_ENCODERS || h->batch < 1 || h->batch > 4096) {
        header_free(h);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ one chunk, any rank */

typedef struct env {
    const clipn_model *model;
    clipn_ctx *ctx;
    clipn_tokenizer *tok;
} env;

typedef struct image_rows {
    float *rows;
    unsigned char *ok;
    mbuf errors;
    size_t F;
} image_rows;

static int keep_image(void *user, size_t i, const float *out, const char *error)
{
    image_rows *r = user;
    if (out) {
        memcpy(r->rows + i * r->F, out, r->F * sizeof *out);
        r->ok[i] = 1;
    } else {
        mbuf_str(&r->errors, error);
    }
    return 0;
}

/* Result layouts (floats first, so they stay 4-byte aligned):
 *   images: status, count, F, rows [count x F], ok [count bytes], one error per failure
 *   heads:  status, count, D, has_no, yes [count x D], no [count x D], message
 *   texts:  status, count, D, rows [count x D], message
 * status 0 = ok; for images 1 = the encoder failed (that rank printed why). */
static int compute_chunk(const job_header *h, const env *e, const char *const *items,
                         int64_t count, mbuf *out)
{
    const size_t n = (size_t)count;
    if (h->kind == KIND_IMAGES) {
        image_rows r = {0};
        r.F = cli_image_encoders[h->encoder].out_floats(e->model);
        r.rows = calloc(n * r.F + 1, sizeof *r.rows);
        r.ok = calloc(n + 1, 1);
        if (!r.rows || !r.ok) {
            free(r.rows);
            free(r.ok);
            return -1;
        }
        const cli_image_job job = {.cmd = h->cmd, .model = e->model, .ctx = e->ctx,
                                   .paths = (char *const *)items, .n = n,
                                   .batch = (int)h->batch, .encoder = (int)h->encoder,
                                   .on_image = keep_image, .user = &r};
        int st = cli_encode_images_local(&job);
        mbuf_i64(out, st);
        mbuf_i64(out, count);
        mbuf_i64(out, (int64_t)r.F);
        mbuf_put(out, r.rows, n * r.F * sizeof *r.rows);
        mbuf_put(out, r.ok, n);
        mbuf_put(out, r.errors.p, r.errors.n);
        free(r.rows);
        free(r.ok);
        int oom = r.errors.oom;
        mbuf_free(&r.errors);
        return oom || out->oom ? -1 : 0;
    }
    clipn_error err = {0};
    clipn_status st;
    if (h->kind == KIND_HEADS) {
        clipn_heads *heads = NULL;
        st = clipn_heads_build(e->ctx, items, (int)count, h->tmpl, (int)h->n_tmpl,
                               h->n_no < 0 ? NULL : h->no_tmpl, h->n_no < 0 ? 0 : (int)h->n_no,
                               NULL, NULL, &heads, &err);
        const size_t D = heads ? (size_t)heads->dim : 0;
        mbuf_i64(out, st);
        mbuf_i64(out, count);
        mbuf_i64(out, (int64_t)D);
        mbuf_i64(out, heads && heads->no);
        if (heads) {
            mbuf_put(out, heads->yes, n * D * sizeof(float));
            if (heads->no)
                mbuf_put(out, heads->no, n * D * sizeof(float));
        }
        clipn_heads_free(heads);
    } else {
        const size_t D = (size_t)clipn_model_config(e->model)->embed_dim;
        float *rows = malloc((n * D + 1) * sizeof *rows);
        if (!rows)
            return -1;
        st = cli_encode_texts_local(e->model, e->ctx, e->tok, (int)h->no_tower,
                                    (char *const *)items, (int)count, rows, &err);
        mbuf_i64(out, st);
        mbuf_i64(out, count);
        mbuf_i64(out, (int64_t)D);
        if (st == CLIPN_OK)
            mbuf_put(out, rows, n * D * sizeof *rows);
        free(rows);
    }
    mbuf_str(out, st == CLIPN_OK ? "" : err.message);
    return out->oom ? -1 : 0;
}

/* ------------------------------------------------------------------ MPI with sleeps */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap(void)
{
    struct timespec ts = {0, 500000}; /* 0.5 ms: a waiting rank costs no core */
    nanosleep(&ts, NULL);
}

/* Seconds rank 0 waits on one transfer before it ends the job (--timeout; 0 = no limit): a
 * rank that stopped in the middle of a large message must not hang the dispatcher. */
static long transfer_timeout;

static void complete(MPI_Request *req, int peer)
{
    const double t0 = now_s();
    for (int done = 0;;) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        nap();
        if (transfer_timeout > 0 && now_s() - t0 > (double)transfer_timeout) {
            fprintf(stderr, "clipn-mpi: rank %d stopped in the middle of a message for %ld s "
                            "(--timeout): stopping the job\n", peer, transfer_timeout);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
}

/* The next message from source (or any), received whole: 1, or 0 when wait is 0 and
 * there is none. *buf is malloc'd (NUL-terminated past len). */
static int recv_msg(int source, int wait, int *from, int *tag, char **buf, int *len)
{
    int flag = 0;
    MPI_Status st;
    MPI_Message msg;
    for (;;) {
        MPI_Improbe(source, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &msg, &st);
        if (flag || !wait)
            break;
        nap();
    }
    if (!flag)
        return 0;
    MPI_Get_count(&st, MPI_BYTE, len);
    *buf = malloc((size_t)*len + 1);
    if (!*buf) {
        fprintf(stderr, "clipn-mpi: out of memory for a message of %d bytes\n", *len);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Request req;
    MPI_Imrecv(*buf, *len, MPI_BYTE, &msg, &req);
    complete(&req, st.MPI_SOURCE);
    (*buf)[*len] = '\0';
    *from = st.MPI_SOURCE;
    *tag = st.MPI_TAG;
    return 1;
}

static void send_msg(int to, int tag, const void *data, size_t len)
{
    if (len > 0x7fffffff) {
        fprintf(stderr, "clipn-mpi: a message of %zu bytes is too large: use a smaller --chunk\n",
                len);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Request req;
    MPI_Isend(data, (int)len, MPI_BYTE, to, tag, MPI_COMM_WORLD, &req);
    complete(&req, to);
}

/* ------------------------------------------------------------------ rank 0 */

static mpi_settings settings;
static int n_ranks = 1, job_seq;
static int64_t next_job_id = 1;

typedef enum { C_TODO, C_RUNNING, C_DONE, C_SAVED, C_DELIVERED } chunk_state;

typedef struct chunk {
    chunk_state st;
    int rank;
    double t0;
    mbuf result;
} chunk;

typedef struct master master;
/* Hands one finished chunk to the subcommand: 0, or non-zero to stop. */
typedef int (*deliver_fn)(master *m, size_t c, mread *result);

struct master {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_header h;
    mbuf header;
    char *const *items;
    size_t n_items, per_chunk, n_chunks, delivered, window;
    chunk *c;
    int stop, dispatcher_running;
    uint64_t key;
    env e0;
    deliver_fn deliver;
    void *user;
    size_t from_state, computed;
};

static void pack_chunk(const master *m, size_t c, mbuf *b)
{
    size_t lo = c * m->per_chunk, hi = lo + m->per_chunk < m->n_items ? lo + m->per_chunk : m->n_items;
    mbuf_i64(b, m->h.id);
    mbuf_i64(b, (int64_t)c);
    pack_strings(b, (const char *const *)m->items + lo, (int64_t)(hi - lo));
}

/* Lowest chunk to do, within the delivery window: index, -1 none left, -2 wait. Locked. */
static long claim(master *m, int rank)
{
    if (m->stop)
        return -1;
    size_t c = m->delivered;
    while (c < m->n_chunks && m->c[c].st != C_TODO)
        c++;
    if (c == m->n_chunks)
        return -1;
    if (rank > 0 && c >= m->delivered + m->window)
        return -2;
    m->c[c].st = C_RUNNING;
    m->c[c].rank = rank;
    m->c[c].t0 = now_s();
    return (long)c;
}

/* A result that arrived: saved when --state is on, then handed to the main thread. */
static void store_result(master *m, size_t c, mbuf *res)
{
    mread r = {res->p, res->n, 0, 0};
    int64_t status = mread_i64(&r);
    if (settings.state_dir && status == 0 && state_save(m->key, c, res->p, res->n))
        status = 1; /* printed; the job stops below */
    pthread_mutex_lock(&m->mu);
    m->c[c].result = *res;
    m->c[c].st = C_DONE;
    if (status != 0 && m->h.kind == KIND_IMAGES)
        m->stop = 1;
    m->computed++;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    memset(res, 0, sizeof *res);
}

/* --timeout: a rank holding a chunk too long ends the job, named. Checked only when every
 * message that arrived has been received (a result waiting in the queue is not late). */
static void check_timeouts(master *m)
{
    if (settings.timeout <= 0)
        return;
    double t = now_s();
    pthread_mutex_lock(&m->mu);
    for (size_t c = m->delivered; c < m->n_chunks; c++)
        if (m->c[c].st == C_RUNNING && m->c[c].rank > 0 &&
            t - m->c[c].t0 > (double)settings.timeout) {
            fprintf(stderr, "clipn-mpi: rank %d has not returned chunk %zu of the %s in %ld s "
                            "(--timeout): stopping the job\n",
                    m->c[c].rank, c, kind_names[m->h.kind], settings.timeout);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    pthread_mutex_unlock(&m->mu);
}

static void *dispatcher(void *arg)
{
    master *m = arg;
    transfer_timeout = settings.timeout;
    const int n_workers = n_ranks - 1;
    int *waiting = calloc((size_t)n_ranks, sizeof *waiting), told = 0;
    if (!waiting) {
        fprintf(stderr, "clipn-mpi: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int r = 1; r < n_ranks; r++)
        send_msg(r, TAG_JOB, m->header.p, m->header.n);
    while (told < n_workers) {
        int from, tag, len;
        char *buf;
        if (recv_msg(MPI_ANY_SOURCE, 0, &from, &tag, &buf, &len)) {
            mread r = {buf, (size_t)len, 0, 0};
            int64_t id = mread_i64(&r);
            if (tag == TAG_FAIL) {
                fprintf(stderr, "clipn-mpi: rank %d: %s\n", from, buf);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            if (id != m->h.id || (tag != TAG_READY && tag != TAG_RESULT)) {
                fprintf(stderr, "clipn-mpi: rank %d sent an unexpected message (tag %d)\n",
                        from, tag);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            if (tag == TAG_RESULT) {
                int64_t c = mread_i64(&r);
                pthread_mutex_lock(&m->mu);
                int expected = !r.bad && c >= 0 && (size_t)c < m->n_chunks &&
                               m->c[c].st == C_RUNNING && m->c[c].rank == from;
                pthread_mutex_unlock(&m->mu);
                if (!expected) {
                    fprintf(stderr, "clipn-mpi: rank %d sent a result for chunk %lld it was "
                                    "not given\n", from, (long long)c);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
                mbuf res = {0};
                mbuf_put(&res, buf + r.off, (size_t)len - r.off);
                if (res.oom) {
                    fprintf(stderr, "clipn-mpi: out of memory for a result\n");
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
                store_result(m, (size_t)c, &res);
            }
            free(buf);
            waiting[from] = 1;
            continue; /* drain what arrived before handing out more */
        }
        for (int r = 1; r < n_ranks; r++) {
            if (!waiting[r])
                continue;
            pthread_mutex_lock(&m->mu);
            long c = claim(m, r);
            pthread_mutex_unlock(&m->mu);
            if (c == -2)
                continue;
            mbuf b = {0};
            if (c >= 0) {
                pack_chunk(m, (size_t)c, &b);
            } else {
                mbuf_i64(&b, m->h.id);
                mbuf_i64(&b, -1);
                told++;
            }
            if (b.oom) {
                fprintf(stderr, "clipn-mpi: out of memory\n");
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            send_msg(r, TAG_CHUNK, b.p, b.n);
            mbuf_free(&b);
            waiting[r] = 0;
        }
        check_timeouts(m);
        nap();
    }
    transfer_timeout = 0;
    free(waiting);
    return NULL;
}

/* Rank 0 computes chunk c itself (locked on entry and exit). */
static void compute_here(master *m, size_t c)
{
    pthread_mutex_unlock(&m->mu);
    mbuf payload = {0}, res = {0};
    pack_chunk(m, c, &payload);
    mread r = {payload.p, payload.n, 0, 0};
    mread_i64(&r);
    mread_i64(&r);
    int64_t count;
    const char **items = read_strings(&r, &count);
    if (payload.oom || !items || compute_chunk(&m->h, &m->e0, items, count, &res)) {
        fprintf(stderr, "clipn-mpi: out of memory for chunk %zu\n", c);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    free(items);
    mbuf_free(&payload);
    store_result(m, c, &res);
    pthread_mutex_lock(&m->mu);
}

static uint64_t hash_i64(uint64_t h, int64_t v)
{
    return fnv1a(h, &v, sizeof v);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    return fnv1a(h, s, strlen(s) + 1);
}

/* Runs one map step: every chunk computed somewhere (or read from --state) and delivered
 * in order. Returns 0, or non-zero when a delivery stopped it. */
static int run_job(master *m)
{
    job_header *h = &m->h;
    h->id = next_job_id++;
    h->cmd = settings.cmd;
    h->threads = settings.threads;
    h->precision = cli_precision;
    char fp[17] = "";
    clipn_model_fingerprint(cli_backend_model, fp, NULL);
    h->fingerprint = fp;
    h->model_path = cli_backend_model_path ? cli_backend_model_path : "";
    const clipn_config *cfg = clipn_model_config(cli_backend_model);
    size_t item_bytes = (size_t)cfg->embed_dim * sizeof(float) * (h->kind == KIND_HEADS ? 2 : 1);
    if (h->kind == KIND_IMAGES)
        item_bytes = cli_image_encoders[h->encoder].out_floats(m->e0.model) * sizeof(float);
    long per = default_chunk[h->kind];
    while (per > 8 && (size_t)per * item_bytes > (size_t)CHUNK_BYTES)
        per /= 2;
    if (settings.chunk > 0)
        per = settings.chunk;
    m->per_chunk = (size_t)per;
    m->n_chunks = (m->n_items + m->per_chunk - 1) / m->per_chunk;
    size_t window = WINDOW_BYTES / ((size_t)per * item_bytes + 1);
    if (window > 4 * (size_t)n_ranks + 8)
        window = 4 * (size_t)n_ranks + 8;
    m->window = window > (size_t)n_ranks + 2 ? window : (size_t)n_ranks + 2;
    /* the key: what the chunks' bytes depend on (not threads, batch or the ranks) */
    uint64_t k = hash_i64(FNV_OFFSET, h->kind);
    k = hash_str(k, fp);
    k = hash_i64(hash_i64(hash_i64(k, h->encoder), h->no_tower), h->precision);
    k = hash_i64(k, h->n_tmpl);
    for (int64_t t = 0; t < h->n_tmpl; t++)
        k = hash_str(k, h->tmpl[t]);
    k = hash_i64(k, h->n_no);
    for (int64_t t = 0; t < h->n_no; t++)
        k = hash_str(k, h->no_tmpl[t]);
    k = hash_i64(hash_i64(k, per), (int64_t)m->n_items);
    for (size_t i = 0; i < m->n_items; i++)
        k = hash_str(k, m->items[i]);
    m->key = k;
    pack_header(&m->header, h);
    m->c = calloc(m->n_chunks + 1, sizeof *m->c);
    if (!m->c || m->header.oom) {
        fprintf(stderr, "clipn-mpi: out of memory for %zu chunks\n", m->n_chunks);
        return 1;
    }
    int seq = job_seq++;
    if (settings.state_dir) {
        if (state_job(seq, kind_names[h->kind], m->key, m->n_chunks)) {
            mpi_backend_finish();
            MPI_Finalize();
            exit(1);
        }
        unsigned char *have = calloc(m->n_chunks + 1, 1);
        if (!have) {
            fprintf(stderr, "clipn-mpi: out of memory for %zu chunks\n", m->n_chunks);
            return 1;
        }
        m->from_state = state_scan(m->key, m->n_chunks, have);
        for (size_t c = 0; c < m->n_chunks; c++)
            if (have[c])
                m->c[c].st = C_SAVED;
        free(have);
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    pthread_t thread;
    const int here = settings.rank0_works || n_ranks == 1;
    if (n_ranks > 1 && m->from_state < m->n_chunks) {
        if (pthread_create(&thread, NULL, dispatcher, m) != 0) {
            fprintf(stderr, "clipn-mpi: cannot start the dispatcher thread\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        m->dispatcher_running = 1;
    }
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    while (m->delivered < m->n_chunks && !rc) {
        chunk *c = &m->c[m->delivered];
        if (c->st == C_SAVED) {
            pthread_mutex_unlock(&m->mu);
            mbuf res = {0};
            int damaged = state_load(m->key, m->delivered, &res);
            pthread_mutex_lock(&m->mu);
            if (damaged) {
                m->from_state--;
                c->st = C_RUNNING;
                c->rank = 0;
                compute_here(m, m->delivered);
            } else {
                c->result = res;
                c->st = C_DONE;
            }
            continue;
        }
        if (c->st == C_DONE) {
            mbuf res = c->result;
            memset(&c->result, 0, sizeof c->result);
            c->st = C_DELIVERED;
            size_t at = m->delivered++;
            pthread_mutex_unlock(&m->mu);
            mread r = {res.p, res.n, 0, 0};
            rc = m->deliver(m, at, &r);
            mbuf_free(&res);
            pthread_mutex_lock(&m->mu);
            if (rc)
                m->stop = 1;
            continue;
        }
        long todo = here ? claim(m, 0) : -1;
        if (todo >= 0)
            compute_here(m, (size_t)todo);
        else
            pthread_cond_wait(&m->cv, &m->mu);
    }
    m->stop = 1;
    pthread_mutex_unlock(&m->mu);
    if (m->dispatcher_running)
        pthread_join(thread, NULL);
    if (settings.state_dir)
        fprintf(stderr, "clipn-mpi: %s: %zu chunks, %zu read from --state %s, %zu computed\n",
                kind_names[h->kind], m->n_chunks, m->from_state, settings.state_dir,
                m->computed);
    for (size_t c = 0; c < m->n_chunks; c++)
        mbuf_free(&m->c[c].result);
    free(m->c);
    mbuf_free(&m->header);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    return rc;
}

/* ---- images */

static int deliver_images(master *m, size_t c, mread *r)
{
    const cli_image_job *job = m->user;
    int64_t status = mread_i64(r), count = mread_i64(r), F = mread_i64(r);
    if (status != 0)
        return 1; /* the encoder failed on the rank that ran it, which said why */
    const float *rows = mread_bytes(r, (size_t)count * (size_t)F * sizeof(float));
    const unsigned char *ok = mread_bytes(r, (size_t)count);
    const size_t lo = c * m->per_chunk;
    if (r->bad || count < 0 || (size_t)count > m->per_chunk || !rows)
        return fprintf(stderr, "clipn-mpi: chunk %zu of the images is malformed\n", c), 1;
    for (int64_t j = 0; j < count; j++) {
        const char *error = ok[j] ? NULL : mread_str(r);
        if (r->bad)
            return fprintf(stderr, "clipn-mpi: chunk %zu of the images is malformed\n", c), 1;
        if (job->on_image(job->user, lo + (size_t)j, ok[j] ? rows + (size_t)j * (size_t)F : NULL,
                          error))
            return 1;
    }
    return 0;
}

static int mpi_encode_images(const cli_image_job *job)
{
    if (job->n == 0)
        return 0;
    master m;
    memset(&m, 0, sizeof m);
    m.h.kind = KIND_IMAGES;
    m.h.batch = job->batch > 0 ? job->batch : 1;
    m.h.encoder = job->encoder;
    m.items = job->paths;
    m.n_items = job->n;
    m.e0 = (env){job->model, job->ctx, NULL};
    m.deliver = deliver_images;
    m.user = (void *)job;
    return run_job(&m);
}

/* ---- heads */

typedef struct heads_out {
    clipn_heads *h;
    clipn_error err;
    clipn_status st;
    int n_classes;
    size_t done, total;
    clipn_progress_fn progress;
    void *user;
} heads_out;

static int deliver_heads(master *m, size_t c, mread *r)
{
    heads_out *o = m->user;
    int64_t status = mread_i64(r), count = mread_i64(r), D = mread_i64(r), has_no = mread_i64(r);
    const size_t lo = c * m->per_chunk, n = (size_t)count;
    if (!r->bad && status != CLIPN_OK) { /* no rows: the message follows */
        o->st = (clipn_status)status;
        o->err.code = o->st;
        snprintf(o->err.message, sizeof o->err.message, "%s", mread_str(r));
        return 1;
    }
    const float *yes = mread_bytes(r, n * (size_t)D * sizeof(float));
    const float *no = has_no ? mread_bytes(r, n * (size_t)D * sizeof(float)) : NULL;
    if (r->bad || D <= 0 || n > m->per_chunk || lo + n > (size_t)o->n_classes) {
        o->st = CLIPN_E_INTERNAL;
        o->err.code = o->st;
        snprintf(o->err.message, sizeof o->err.message, "heads: chunk %zu is malformed", c);
        return 1;
    }
    if (!o->h) {
        o->h = calloc(1, sizeof *o->h);
        if (o->h) {
            o->h->n_classes = o->n_classes;
            o->h->dim = (int)D;
            o->h->yes = malloc((size_t)o->n_classes * (size_t)D * sizeof(float));
            o->h->no = has_no ? malloc((size_t)o->n_classes * (size_t)D * sizeof(float)) : NULL;
        }
        if (!o->h || !o->h->yes || (has_no && !o->h->no)) {
            o->st = CLIPN_E_NOMEM;
            o->err.code = o->st;
            snprintf(o->err.message, sizeof o->err.message,
                     "heads: out of memory for %d classes", o->n_classes);
            return 1;
        }
    }
    memcpy(o->h->yes + lo * (size_t)D, yes, n * (size_t)D * sizeof(float));
    if (no && o->h->no)
        memcpy(o->h->no + lo * (size_t)D, no, n * (size_t)D * sizeof(float));
    o->done += n;
    if (o->progress && o->progress(o->user, o->done * (o->total / (size_t)o->n_classes), o->total)) {
        o->st = CLIPN_E_CANCELLED;
        o->err.code = o->st;
        snprintf(o->err.message, sizeof o->err.message, "heads: cancelled");
        return 1;
    }
    return 0;
}

/* Arguments clipn_heads_build refuses before encoding anything: left to it, so the
 * message is its own. */
static int heads_args_bad(const char *const *classes, int n_classes,
                          const char *const *templates, int n_templates,
                          const char *const *no_templates, int n_no)
{
    if (!classes || n_classes <= 0 || n_classes > CLIPN_MAX_CLASSES || !templates ||
        n_templates <= 0 || n_templates > CLIPN_MAX_TEMPLATES)
        return 1;
    if (no_templates && (n_no <= 0 || n_no > CLIPN_MAX_TEMPLATES))
        return 1;
    for (int i = 0; i < n_classes; i++)
        if (!classes[i])
            return 1;
    for (int t = 0; t < n_templates + (no_templates ? n_no : 0); t++) {
        const char *tmpl = t < n_templates ? templates[t] : no_templates[t - n_templates];
        char *text = NULL;
        if (!tmpl || clipn_format_template(tmpl, "x", &text, NULL) != CLIPN_OK)
            return 1;
        free(text);
    }
    return 0;
}

static clipn_status mpi_build_heads(clipn_ctx *ctx, const char *const *classes, int n_classes,
                                    const char *const *templates, int n_templates,
                                    const char *const *no_templates, int n_no,
                                    clipn_progress_fn progress, void *user, clipn_heads **out,
                                    clipn_error *err)
{
    if (!out || !ctx || !cli_backend_model ||
        heads_args_bad(classes, n_classes, templates, n_templates, no_templates, n_no))
        return clipn_heads_build(ctx, classes, n_classes, templates, n_templates, no_templates,
                                 n_no, progress, user, out, err);
    *out = NULL;
    const int has_no = clipn_model_config(cli_backend_model)->has_no_tower;
    heads_out o = {.n_classes = n_classes, .progress = progress, .user = user};
    o.total = (size_t)n_classes * ((size_t)n_templates +
                                   (has_no ? (size_t)(no_templates ? n_no : n_templates) : 0));
    master m;
    memset(&m, 0, sizeof m);
    m.h.kind = KIND_HEADS;
    m.h.batch = 32;
    m.h.tmpl = (const char **)templates;
    m.h.n_tmpl = n_templates;
    m.h.no_tmpl = (const char **)no_templates;
    m.h.n_no = no_templates ? n_no : -1;
    m.items = (char *const *)classes;
    m.n_items = (size_t)n_classes;
    m.e0 = (env){cli_backend_model, ctx, NULL};
    m.deliver = deliver_heads;
    m.user = &o;
    if (run_job(&m) && o.st == CLIPN_OK) {
        o.st = CLIPN_E_INTERNAL;
        snprintf(o.err.message, sizeof o.err.message, "heads: the job stopped");
    }
    if (o.st != CLIPN_OK) {
        clipn_heads_free(o.h);
        if (err) {
            err->code = o.st;
            memcpy(err->message, o.err.message, sizeof err->message);
        }
        return o.st;
    }
    *out = o.h;
    return CLIPN_OK;
}

/* ---- texts */

typedef struct texts_out {
    float *out;
    clipn_error err;
    clipn_status st;
} texts_out;

static int deliver_texts(master *m, size_t c, mread *r)
{
    texts_out *o = m->user;
    int64_t status = mread_i64(r), count = mread_i64(r), D = mread_i64(r);
    const size_t lo = c * m->per_chunk, n = (size_t)count;
    const float *rows = status == CLIPN_OK ? mread_bytes(r, n * (size_t)D * sizeof(float)) : NULL;
    const char *msg = mread_str(r);
    if (r->bad || n > m->per_chunk || (status == CLIPN_OK && !rows)) {
        o->st = CLIPN_E_INTERNAL;
        snprintf(o->err.message, sizeof o->err.message, "texts: chunk %zu is malformed", c);
        return 1;
    }
    if (status != CLIPN_OK) {
        o->st = (clipn_status)status;
        snprintf(o->err.message, sizeof o->err.message, "%s", msg);
        return 1;
    }
    memcpy(o->out + lo * (size_t)D, rows, n * (size_t)D * sizeof(float));
    return 0;
}

static clipn_status mpi_encode_texts(const clipn_model *model, clipn_ctx *ctx,
                                     clipn_tokenizer *tok, int no_tower, char *const *texts,
                                     int n, float *out, clipn_error *err)
{
    if (n <= 0)
        return CLIPN_OK;
    texts_out o = {.out = out};
    master m;
    memset(&m, 0, sizeof m);
    m.h.kind = KIND_TEXTS;
    m.h.batch = 32;
    m.h.no_tower = no_tower;
    m.items = texts;
    m.n_items = (size_t)n;
    m.e0 = (env){model, ctx, tok};
    m.deliver = deliver_texts;
    m.user = &o;
    if (run_job(&m) && o.st == CLIPN_OK) {
        o.st = CLIPN_E_INTERNAL;
        snprintf(o.err.message, sizeof o.err.message, "texts: the job stopped");
    }
    if (o.st != CLIPN_OK && err) {
        err->code = o.st;
        memcpy(err->message, o.err.message, sizeof err->message);
    }
    return o.st;
}

static const cli_backend mpi_backend = {
    .encode_images = mpi_encode_images,
    .build_heads = mpi_build_heads,
    .encode_texts = mpi_encode_texts,
};

void mpi_backend_install(const mpi_settings *s, int ranks)
{
    settings = *s;
    n_ranks = ranks;
    cli_backend_active = &mpi_backend;
}

void mpi_backend_finish(void)
{
    for (int r = 1; r < n_ranks; r++)
        send_msg(r, TAG_QUIT, NULL, 0);
}

/* ------------------------------------------------------------------ ranks > 0 */

static void send_fail(const char *fmt, const char *a, const char *b)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, a, b);
    send_msg(0, TAG_FAIL, msg, strlen(msg) + 1);
}

int mpi_worker_main(int rank)
{
    (void)rank;
    clipn_model *model = NULL;
    char *model_path = NULL;
    clipn_ctx *ctx = NULL;
    clipn_tokenizer *tok = NULL;
    int64_t ctx_threads = -1, ctx_batch = -1, model_precision = -1;
    job_header h = {0};
    char *header_bytes = NULL;
    int ready = 0;
    for (;;) {
        int from, tag, len;
        char *buf;
        recv_msg(0, 1, &from, &tag, &buf, &len);
        if (tag == TAG_QUIT) {
            free(buf);
            break;
        }
        mread r = {buf, (size_t)len, 0, 0};
        if (tag == TAG_JOB) {
            header_free(&h);
            free(header_bytes);
            header_bytes = buf;
            ready = 0;
            clipn_error err;
            if (parse_header(&r, &h)) {
                send_fail("a malformed job header%s%s", "", "");
                continue;
            }
            if (!model || strcmp(model_path, h.model_path) || model_precision != h.precision) {
                clipn_tokenizer_free(tok);
                clipn_ctx_free(ctx);
                clipn_model_free(model);
                free(model_path);
                tok = NULL;
                ctx = NULL;
                model = NULL;
                ctx_threads = -1;
                const clipn_load_opts opts = {.precision = (clipn_precision)h.precision};
                model_precision = h.precision;
                if (!(model_path = strdup(h.model_path)) ||
                    clipn_model_load(h.model_path, &opts, &model, &err) != CLIPN_OK) {
                    send_fail("%s%s", model_path ? err.message : "out of memory", "");
                    free(model_path);
                    model_path = NULL;
                    continue;
                }
            }
            char fp[17] = "";
            clipn_model_fingerprint(model, fp, NULL);
            if (strcmp(fp, h.fingerprint)) {
                send_fail("%s is another model here than on rank 0 (fingerprint %s)",
                          h.model_path, fp);
                continue;
            }
            if (!ctx || ctx_threads != h.threads || ctx_batch < h.batch) {
                clipn_ctx_free(ctx);
                ctx = NULL;
                clipn_ctx_opts opts = {.max_batch = (int)h.batch, .threads = (int)h.threads};
                if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
                    send_fail("%s%s", err.message, "");
                    continue;
                }
                ctx_threads = h.threads;
                ctx_batch = h.batch;
            }
            if (h.kind == KIND_TEXTS && !tok &&
                clipn_tokenizer_from_model(model, &tok, &err) != CLIPN_OK) {
                send_fail("%s%s", err.message, "");
                continue;
            }
            ready = 1;
            mbuf b = {0};
            mbuf_i64(&b, h.id);
            send_msg(0, TAG_READY, b.p, b.n);
            mbuf_free(&b);
            continue;
        }
        if (tag != TAG_CHUNK || !ready) {
            free(buf);
            continue;
        }
        int64_t id = mread_i64(&r), c = mread_i64(&r);
        if (r.bad || id != h.id || c < 0) {
            free(buf);
            continue; /* -1: this job has no more chunks */
        }
        int64_t count;
        const char **items = read_strings(&r, &count);
        mbuf out = {0};
        mbuf_i64(&out, h.id);
        mbuf_i64(&out, c);
        env e = {model, ctx, tok};
        if (!items || compute_chunk(&h, &e, items, count, &out)) {
            send_fail("out of memory for chunk %s%s", "", "");
        } else {
            send_msg(0, TAG_RESULT, out.p, out.n);
        }
        free(items);
        mbuf_free(&out);
        free(buf);
    }
    header_free(&h);
    free(header_bytes);
    clipn_tokenizer_free(tok);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    free(model_path);
    return 0;
}
