/* INT8 linear layers: weight quantization and packing at load, the GEMM driver (activation
 * quantization per call, threads over weight panels), and the portable reference micro-
 * kernel every other variant is tested against. Layouts and scheme: kernels/gemm_int8.h.
 *
 * Loop nest per thread, as the fp32 driver (kernels/gemm.c): the thread owns a contiguous
 * range of 64-wide weight panels; for each K slice (whole groups, <= Q8_KC), for each
 * block of <= Q8_MC rows (quantized into the thread's block), for each panel, for each 4
 * rows: micro-kernel. Few rows (a batch-1 text prompt): the caller quantizes all of x once
 * and each thread streams its panels front to back, whole K at a time. */
#include "gemm_int8.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define Q8_HEADER 64 /* same header size as kernels/gemm.c: {magic, group, k_pad, n_groups} */
#define Q8_KC 1024   /* k per slice (rounded down to whole groups) */
#ifndef Q8_MC
#define Q8_MC 128    /* rows per block at most (the blocks of a call are balanced) */
#endif
#define Q8_MAX_GROUP Q8_KC
#define Q8_SMALL_M 24
#define Q8_MAX2(a, b) ((a) > (b) ? (a) : (b))
/* per-thread block: Q8_MC x Q8_KC, or all of a small-m x (k_pad <= 4096) */
#define Q8_SCRATCH_DATA Q8_MAX2((size_t)Q8_SMALL_M * 4096 * 2, (size_t)Q8_MC * Q8_KC * 2)
#define Q8_SCRATCH_SCALES                                                                    \
    Q8_MAX2((size_t)Q8_SMALL_M * 4096 / CLIPN_Q8_MIN_GROUP, (size_t)Q8_MC * Q8_KC / CLIPN_Q8_MIN_GROUP)
#define PARALLEL_MIN_MACS (1 << 21)
#define PARALLEL_MIN_WEIGHTS (1 << 18)

typedef struct q8_header {
    uint32_t magic, group, k_pad, n_groups, act_bits; /* act_bits: 8 or 16 (W8A16) */
} q8_header;

static size_t panel_bytes(const q8_header *h)
{
    return (size_t)h->n_groups * CLIPN_Q8_NR * sizeof(float) + (size_t)h->k_pad * CLIPN_Q8_NR;
}

/* Round to nearest even into [-127, 127], as vcvtps2dq does under the default rounding
 * mode (the AVX2 quantizer): adding and subtracting 1.5 * 2^23 rounds |r| < 2^22 exactly. */
static inline int8_t quant(float v, float inv)
{
    float r = v * inv;
    if (r != r)
        return 0; /* NaN (or inf * 0): the row's scale is NaN already */
    r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
    volatile float big = r + 0x1.8p23f; /* volatile: no reassociation, whatever the flags */
    return (int8_t)(int)(big - 0x1.8p23f);
}

/* max |v| of n values; NaN if any is NaN (so a NaN input gives a NaN output, as fp32) */
static float absmax(const float *v, int n, size_t stride)
{
    float amax = 0.0f;
    int nan = 0;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(v[(size_t)i * stride]);
        nan |= a != a;
        amax = a > amax ? a : amax;
    }
    return nan ? NAN : amax;
}

/* ---- per-thread blocks, allocated on a thread's first INT8 call (pool workers: when they
 * start, once a layer was prepared), freed at its exit */
static pthread_key_t scratch_key;
static int scratch_key_ok;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static unsigned char *thread_scratch(void);
static void worker_start(void) { thread_scratch(); } /* pool workers: when they start */

static void make_scratch_key(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, free) == 0;
    clipn_pool_on_worker_start(worker_start);
}

static unsigned char *thread_scratch(void)
{
    pthread_once(&scratch_once, make_scratch_key);
    if (!scratch_key_ok)
        return NULL;
    unsigned char *buf = pthread_getspecific(scratch_key);
    if (!buf) {
        buf = aligned_alloc(64, Q8_SCRATCH_DATA + Q8_SCRATCH_SCALES * sizeof(float));
        if (buf && pthread_setspecific(scratch_key, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

static int default_group(int group)
{
    if (group == 0) {
        /* CLIPN_INT8_GROUP: another default, to measure the trade-off (docs/performance.md) */
        const char *env = getenv("CLIPN_INT8_GROUP");
        group = env && *env ? atoi(env) : CLIPN_Q8_DEFAULT_GROUP;
    }
    return group;
}

void clipn_int8_round_weights(const float *w, int n_out, int n_in, int group, float *out)
{
    group = default_group(group);
    if (group < CLIPN_Q8_MIN_GROUP || group % CLIPN_Q8_MIN_GROUP != 0 || group > Q8_MAX_GROUP)
        group = CLIPN_Q8_DEFAULT_GROUP;
    const size_t k = (size_t)n_in;
    const size_t g = k < (size_t)group
                         ? (k + CLIPN_Q8_MIN_GROUP - 1) / CLIPN_Q8_MIN_GROUP * CLIPN_Q8_MIN_GROUP
                         : (size_t)group;
    for (size_t row = 0; row < (size_t)n_out; row++)
        for (size_t k0 = 0; k0 < k; k0 += g) {
            const size_t k1 = k0 + g < k ? k0 + g : k;
            const float amax = absmax(w + row * k + k0, (int)(k1 - k0), 1);
            const float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (size_t kk = k0; kk < k1; kk++)
                out[row * k + kk] = (float)quant(w[row * k + kk], inv) * scale;
        }
}

void clipn_int8_quantize_rows(const float *w, size_t rows, size_t k, size_t group, int8_t *q,
                              float *scale)
{
    const size_t groups = (k + group - 1) / group;
    for (size_t r = 0; r < rows; r++)
        for (size_t k0 = 0; k0 < k; k0 += group) {
            const float *x = w + r * k;
            const size_t k1 = k0 + group < k ? k0 + group : k;
            const float amax = absmax(x + k0, (int)(k1 - k0), 1);
            scale[r * groups + k0 / group] = amax / 127.0f;
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (size_t kk = k0; kk < k1; kk++)
                q[r * k + kk] = quant(x[kk], inv);
        }
}

int clipn_int8_prepare(clipn_linear *lin, int group)
{
    pthread_once(&scratch_once, make_scratch_key); /* before the pool's first worker */
    lin->packed = NULL;
    lin->packed_bytes = 0;
    group = default_group(group);
    if (!lin->weight || lin->n_out <= 0 || lin->n_in <= 0 || group < CLIPN_Q8_MIN_GROUP ||
        group % CLIPN_Q8_MIN_GROUP != 0 || group > Q8_MAX_GROUP)
        return -1;
    const size_t n = (size_t)lin->n_out, k = (size_t)lin->n_in;
    /* a layer narrower than the group: one group of k rounded up (no wasted padding) */
    const size_t g = k < (size_t)group
                         ? (k + CLIPN_Q8_MIN_GROUP - 1) / CLIPN_Q8_MIN_GROUP * CLIPN_Q8_MIN_GROUP
                         : (size_t)group;
    const size_t n_groups = (k + g - 1) / g, k_pad = n_groups * g;
    const size_t panels = (n + CLIPN_Q8_NR - 1) / CLIPN_Q8_NR;
    if (lin->int8_act_bits != 0 && lin->int8_act_bits != 8 && lin->int8_act_bits != 16)
        return -1;
    q8_header h = {CLIPN_PACK_INT8, (uint32_t)g, (uint32_t)k_pad, (uint32_t)n_groups,
                   lin->int8_act_bits == 16 ? 16u : 8u};
    const size_t pb = panel_bytes(&h);
    if (k_pad > UINT32_MAX || panels > (SIZE_MAX - Q8_HEADER) / pb)
        return -1;
    const size_t bytes = Q8_HEADER + panels * pb;
    unsigned char *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!buf)
        return -1;
#ifdef MADV_HUGEPAGE
    const uintptr_t page = 4096, lo = ((uintptr_t)buf + page - 1) & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)buf + bytes) & ~(page - 1);
    if (hi > lo + (2u << 20))
        madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* only a hint, as kernels/gemm.c */
#endif
    memset(buf, 0, Q8_HEADER);
    memcpy(buf, &h, sizeof h);
    for (size_t p = 0; p < panels; p++) {
        float *scales = (float *)(buf + Q8_HEADER + p * pb);
        int8_t *quads = (int8_t *)(scales + n_groups * CLIPN_Q8_NR);
        for (size_t j = 0; j < CLIPN_Q8_NR; j++) {
            const size_t row = p * CLIPN_Q8_NR + j;
            const float *w = lin->weight + row * k;
            for (size_t gi = 0; gi < n_groups; gi++) {
                const size_t k0 = gi * g, k1 = k0 + g < k ? k0 + g : k;
                const float amax = row < n ? absmax(w + k0, (int)(k1 - k0), 1) : 0.0f;
                scales[gi * CLIPN_Q8_NR + j] = amax / 127.0f;
                const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
                for (size_t kk = k0; kk < k0 + g; kk++)
                    quads[(kk / 4) * CLIPN_Q8_NR * 4 + j * 4 + kk % 4] =
                        row < n && kk < k ? quant(w[kk], inv) : 0;
            }
        }
    }
    lin->packed = buf;
    lin->packed_bytes = bytes;
    return 0;
}

/* the reference activation quantizer (layout: gemm_int8.h) */
void clipn_q8_quantize_portable(const float *x, size_t ldx, int rows, int k_valid, int kc,
                                int group, int8_t *dst, float *scales)
{
    const int ng = kc / group;
    for (int i0 = 0; i0 < rows; i0 += CLIPN_Q8_MR) {
        for (int i = 0; i < CLIPN_Q8_MR; i++) {
            const int live = i0 + i < rows;
            const float *xr = x + (size_t)(i0 + i) * ldx;
            for (int g = 0; g < ng; g++) {
                const int k0 = g * group;
                const int k1 = k0 + group < k_valid ? k0 + group : k_valid;
                const float amax = live && k1 > k0 ? absmax(xr + k0, k1 - k0, 1) : 0.0f;
                scales[g * CLIPN_Q8_MR + i] = amax / 127.0f;
                const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
                for (int kk = k0; kk < k0 + group; kk++) {
                    const int8_t q = live && kk < k1 ? quant(xr[kk], inv) : 0;
                    int8_t *d = dst + (size_t)(kk / 4) * 2 * CLIPN_Q8_MR * 4 + i * 4 + kk % 4;
                    d[0] = q;
                    d[CLIPN_Q8_MR * 4] = (int8_t)(q < 0 ? -q : q);
                }
            }
        }
        dst += (size_t)kc * 2 * CLIPN_Q8_MR;
        scales += (size_t)ng * CLIPN_Q8_MR;
    }
}

/* The reference tile of both widths: a is int8 micro-panels [q][2][MR][4] (W8A8: values
 * then |values|) or int16 [q][MR][4] (W8A16); exact int32 per group, then fmaf per group. */
static inline void ukernel_ref(int wide, int n_groups, int group, const int8_t *a,
                               const float *a_scale, const int8_t *b, const float *b_scale,
                               float *c, size_t ldc, int mr, int nr, const float *bias,
                               int load_c)
{
    const int gq = group / 4;
    const int16_t *a16 = (const int16_t *)(const void *)a;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float f = 0.0f;
            for (int g = 0; g < n_groups; g++) {
                int32_t s = 0;
                for (int q = g * gq; q < (g + 1) * gq; q++) {
                    const int8_t *bq = b + (size_t)q * CLIPN_Q8_NR * 4 + j * 4;
                    for (int t = 0; t < 4; t++)
                        s += (wide ? a16[(size_t)q * CLIPN_Q8_MR * 4 + i * 4 + t]
                                   : a[(size_t)q * 2 * CLIPN_Q8_MR * 4 + i * 4 + t]) * bq[t];
                }
                f = fmaf((float)s, a_scale[g * CLIPN_Q8_MR + i] * b_scale[g * CLIPN_Q8_NR + j], f);
            }
            if (bias)
                f += bias[j];
            if (load_c)
                f += c[(size_t)i * ldc + j];
            c[(size_t)i * ldc + j] = f;
        }
}

void clipn_q8_ukernel_portable(int n_groups, int group, const int8_t *a, const float *a_scale,
                               const int8_t *b, const float *b_scale, float *c, size_t ldc,
                               int mr, int nr, const float *bias, int load_c)
{
    ukernel_ref(0, n_groups, group, a, a_scale, b, b_scale, c, ldc, mr, nr, bias, load_c);
}

int clipn_q16_qmax(int group)
{
    const long q = 2147483647L / ((long)group * 127);
    return q < 32767 ? (int)q : 32767;
}

/* round to nearest even into [-qmax, qmax] (|r| < 2^22: the 1.5 * 2^23 trick is exact) */
static inline int16_t quant16(float v, float inv, float qmax)
{
    float r = v * inv;
    if (r != r)
        return 0;
    r = r > qmax ? qmax : r < -qmax ? -qmax : r;
    volatile float big = r + 0x1.8p23f;
    return (int16_t)(int)(big - 0x1.8p23f);
}

/* the reference int16 activation quantizer (layout: gemm_int8.h, W8A16) */
void clipn_q16_quantize_portable(const float *x, size_t ldx, int rows, int k_valid, int kc,
                                 int group, int8_t *dst8, float *scales)
{
    const int ng = kc / group;
    const float qmax = (float)clipn_q16_qmax(group);
    int16_t *dst = (int16_t *)(void *)dst8;
    for (int i0 = 0; i0 < rows; i0 += CLIPN_Q8_MR) {
        for (int i = 0; i < CLIPN_Q8_MR; i++) {
            const int live = i0 + i < rows;
            const float *xr = x + (size_t)(i0 + i) * ldx;
            for (int g = 0; g < ng; g++) {
                const int k0 = g * group;
                const int k1 = k0 + group < k_valid ? k0 + group : k_valid;
                const float amax = live && k1 > k0 ? absmax(xr + k0, k1 - k0, 1) : 0.0f;
                scales[g * CLIPN_Q8_MR + i] = amax / qmax;
                const float inv = amax > 0.0f ? qmax / amax : 0.0f;
                for (int kk = k0; kk < k0 + group; kk++)
                    dst[(size_t)(kk / 4) * CLIPN_Q8_MR * 4 + i * 4 + kk % 4] =
                        live && kk < k1 ? quant16(xr[kk], inv, qmax) : 0;
            }
        }
        dst += (size_t)kc * CLIPN_Q8_MR;
        scales += (size_t)ng * CLIPN_Q8_MR;
    }
}

void clipn_q16_ukernel_portable(int n_groups, int group, const int8_t *a8, const float *a_scale,
                                const int8_t *b, const float *b_scale, float *c, size_t ldc,
                                int mr, int nr, const float *bias, int load_c)
{
    ukernel_ref(1, n_groups, group, a8, a_scale, b, b_scale, c, ldc, mr, nr, bias, load_c);
}

typedef struct q8_job {
    const clipn_linear *lin;
    q8_header h;
    const unsigned char *panels; /* first panel */
    size_t panel_bytes;
    const float *x;
    float *y;
    int m, act, residual, n_panels, n_tasks, kc_max, mc_max;
    clipn_q8_quantize_fn quantize;
    const int8_t *adata;          /* small m: all of x quantized by the caller, else NULL */
    const float *ascale;
    clipn_q8_ukernel_fn ukernel;
    const clipn_kernel_ops *ops;
} q8_job;

/* one panel p against `rows` quantized rows over K slice [pc, pc + kc) */
static void run_panel(const q8_job *job, int p, int pc, int kc, const int8_t *a,
                      const float *as, int rows, float *c, int first)
{
    const clipn_linear *lin = job->lin;
    const int n = lin->n_out, group = (int)job->h.group, ng = kc / group;
    const int j0 = p * CLIPN_Q8_NR, nr = n - j0 < CLIPN_Q8_NR ? n - j0 : CLIPN_Q8_NR;
    const unsigned char *base = job->panels + (size_t)p * job->panel_bytes;
    const float *bs = (const float *)base + (size_t)(pc / group) * CLIPN_Q8_NR;
    const int8_t *b = (const int8_t *)(base + (size_t)job->h.n_groups * CLIPN_Q8_NR * sizeof(float)) +
                      (size_t)pc * CLIPN_Q8_NR;
    const float *bias = first && lin->bias ? lin->bias + j0 : NULL;
    const int load_c = !first || job->residual;
    for (int ir = 0; ir < rows; ir += CLIPN_Q8_MR) {
        const int mr = rows - ir < CLIPN_Q8_MR ? rows - ir : CLIPN_Q8_MR;
        job->ukernel(ng, group, a + (size_t)(ir / CLIPN_Q8_MR) * kc * 2 * CLIPN_Q8_MR,
                     as + (size_t)(ir / CLIPN_Q8_MR) * ng * CLIPN_Q8_MR, b, bs,
                     c + (size_t)ir * n + j0, (size_t)n, mr, nr, bias, load_c);
    }
}

static void q8_task(void *arg, int t)
{
    const q8_job *job = arg;
    const int n = job->lin->n_out, k = job->lin->n_in, k_pad = (int)job->h.k_pad;
    const int p0 = (int)((long long)job->n_panels * t / job->n_tasks);
    const int p1 = (int)((long long)job->n_panels * (t + 1) / job->n_tasks);
    /* without a block (allocation failed): one micro-panel on the stack, same sums */
    _Alignas(64) int8_t one_data[CLIPN_Q8_MR * Q8_KC * 2];
    float one_scales[CLIPN_Q8_MR * Q8_KC / CLIPN_Q8_MIN_GROUP];
    unsigned char *block = thread_scratch();
    int8_t *adata = block ? (int8_t *)block : one_data;
    float *ascale = block ? (float *)(block + Q8_SCRATCH_DATA) : one_scales;
    const int mc_max = block ? job->mc_max : CLIPN_Q8_MR;
    for (int pc = 0; pc < k_pad; pc += job->kc_max) {
        const int kc = k_pad - pc < job->kc_max ? k_pad - pc : job->kc_max;
        const int first = pc == 0, last = pc + kc == k_pad;
        for (int ic = 0; ic < job->m; ic += mc_max) {
            const int mc = job->m - ic < mc_max ? job->m - ic : mc_max;
            job->quantize(job->x + (size_t)ic * k + pc, (size_t)k, mc, k - pc, kc,
                          (int)job->h.group, adata, ascale);
            for (int p = p0; p < p1; p++) {
                float *c = job->y + (size_t)ic * n;
                run_panel(job, p, pc, kc, adata, ascale, mc, c, first);
                if (last && job->act != CLIPN_ACT_NONE) {
                    const int j0 = p * CLIPN_Q8_NR;
                    job->ops->activate(c + j0, (size_t)n, mc,
                                       n - j0 < CLIPN_Q8_NR ? n - j0 : CLIPN_Q8_NR, job->act);
                }
            }
        }
    }
}

/* Small m: x quantized once by the caller, slice by slice as the large-m driver cuts K
 * (slice pc at pc * m_pad * 2 bytes, its scales at pc / group * m_pad), so a row sums the
 * same products in the same order whatever m is. */
static void quantize_all_slices(const q8_job *job, int m_pad, int8_t *adata, float *ascale)
{
    const int k = job->lin->n_in, k_pad = (int)job->h.k_pad, group = (int)job->h.group;
    for (int pc = 0; pc < k_pad; pc += job->kc_max) {
        const int kc = k_pad - pc < job->kc_max ? k_pad - pc : job->kc_max;
        job->quantize(job->x + pc, (size_t)k, job->m, k - pc, kc, group,
                      adata + (size_t)pc * m_pad * 2, ascale + (size_t)(pc / group) * m_pad);
    }
}

static void q8_small_m_task(void *arg, int t)
{
    const q8_job *job = arg;
    const int n = job->lin->n_out, k_pad = (int)job->h.k_pad, group = (int)job->h.group;
    const int m_pad = (job->m + CLIPN_Q8_MR - 1) / CLIPN_Q8_MR * CLIPN_Q8_MR;
    const int p0 = (int)((long long)job->n_panels * t / job->n_tasks);
    const int p1 = (int)((long long)job->n_panels * (t + 1) / job->n_tasks);
    for (int p = p0; p < p1; p++) {
        for (int pc = 0; pc < k_pad; pc += job->kc_max) {
            const int kc = k_pad - pc < job->kc_max ? k_pad - pc : job->kc_max;
            run_panel(job, p, pc, kc, job->adata + (size_t)pc * m_pad * 2,
                      job->ascale + (size_t)(pc / group) * m_pad, job->m, job->y, pc == 0);
        }
        if (job->act != CLIPN_ACT_NONE) {
            const int j0 = p * CLIPN_Q8_NR;
            job->ops->activate(job->y + j0, (size_t)n, job->m,
                               n - j0 < CLIPN_Q8_NR ? n - j0 : CLIPN_Q8_NR, job->act);
        }
    }
}

static clipn_q8_ukernel_fn pick_ukernel_a16(const clipn_kernel_ops *ops)
{
#if defined(__x86_64__)
    if (ops == &clipn_ops_avx2 || ops == &clipn_ops_avx512)
        return clipn_q16_ukernel_avx2;
#endif
#if defined(__aarch64__)
    if (ops == &clipn_ops_neon)
        return clipn_q16_ukernel_neon; /* AdvSIMD baseline: no SDOT needed */
#endif
    (void)ops;
    return clipn_q16_ukernel_portable;
}

static clipn_q8_ukernel_fn pick_ukernel(const clipn_kernel_ops *ops)
{
#if defined(__x86_64__)
    if (ops == &clipn_ops_avx2 || ops == &clipn_ops_avx512)
        return clipn_q8_ukernel_avx2; /* AVX-512 CPUs run the AVX2 kernel: no VNNI one yet */
#endif
#if defined(__aarch64__)
    if (ops == &clipn_ops_neon && clipn_q8_neon_dotprod())
        return clipn_q8_ukernel_neon;
#endif
    (void)ops;
    return clipn_q8_ukernel_portable;
}

/* What a model loaded at INT8 runs (W8A16, lib/model/int8_layers.c), then the W8A8 kernel
 * the same CPU would use for layers asked for it (CLIPN_INT8_LAYERS=...=w8a8). */
const char *clipn_kernels_int8_kernel(void)
{
    const clipn_kernel_ops *ops = clipn_kernels_ops();
    const clipn_q8_ukernel_fn f16 = pick_ukernel_a16(ops), f8 = pick_ukernel(ops);
    (void)f16;
    (void)f8;
#if defined(__x86_64__)
    if (f16 == clipn_q16_ukernel_avx2)
        return f8 == clipn_q8_ukernel_avx2 ? "avx2 w8a16 (w8a8: avx2)" : "avx2 w8a16";
#endif
#if defined(__aarch64__)
    if (f16 == clipn_q16_ukernel_neon)
        return f8 == clipn_q8_ukernel_neon ? "neon w8a16 (w8a8: neon-sdot)"
                                           : "neon w8a16 (w8a8: portable)";
#endif
    return "portable w8a16";
}

void clipn_int8_forward(const clipn_linear *lin, const float *x, int m, float *y,
                        clipn_epilogue epi)
{
    if (m <= 0)
        return;
    const clipn_kernel_ops *ops = clipn_kernels_ops();
    q8_job job = {
        .lin = lin, .x = x, .y = y, .m = m,
        .act = clipn_epilogue_act(epi),
        .residual = epi == CLIPN_EPI_RESIDUAL,
        .n_panels = (lin->n_out + CLIPN_Q8_NR - 1) / CLIPN_Q8_NR,
        .ukernel = pick_ukernel(ops),
        .quantize = clipn_q8_quantize_portable,
        .ops = ops,
    };
#if defined(__x86_64__)
    if (job.ukernel == clipn_q8_ukernel_avx2)
        job.quantize = clipn_q8_quantize_avx2; /* the same bytes, 20x faster */
#endif
    memcpy(&job.h, lin->packed, sizeof job.h);
    if (job.h.act_bits == 16) {
        job.ukernel = pick_ukernel_a16(ops);
        job.quantize = clipn_q16_quantize_portable;
#if defined(__x86_64__)
        if (job.ukernel == clipn_q16_ukernel_avx2)
            job.quantize = clipn_q16_quantize_avx2;
#endif
    }
    job.panels = (const unsigned char *)lin->packed + Q8_HEADER;
    job.panel_bytes = panel_bytes(&job.h);
    const int group = (int)job.h.group, k_pad = (int)job.h.k_pad;
    job.kc_max = Q8_KC / group * group;
    if (job.kc_max > k_pad)
        job.kc_max = k_pad;
    /* blocks of equal size: each streams every panel of the thread from L3 again, so a
     * short last block (197 = 3 x 64 + 5) costs as much as a full one */
    const int n_blocks = (m + Q8_MC - 1) / Q8_MC, mc = (m + n_blocks - 1) / n_blocks;
    job.mc_max = (mc + CLIPN_Q8_MR - 1) / CLIPN_Q8_MR * CLIPN_Q8_MR;
    const double macs = (double)m * lin->n_out * lin->n_in;
    const double weights = (double)lin->n_out * lin->n_in;
    int tasks = macs < PARALLEL_MIN_MACS && weights < PARALLEL_MIN_WEIGHTS ? 1
                                                                            : clipn_pool_threads();
    if (tasks > job.n_panels)
        tasks = job.n_panels;
    job.n_tasks = tasks;
    if (m <= Q8_SMALL_M) {
        const int m_pad = (m + CLIPN_Q8_MR - 1) / CLIPN_Q8_MR * CLIPN_Q8_MR;
        unsigned char *block = (size_t)m_pad * k_pad * 2 <= Q8_SCRATCH_DATA &&
                                       (size_t)m_pad * (k_pad / group) <= Q8_SCRATCH_SCALES
                                   ? thread_scratch() : NULL;
        if (block) {
            int8_t *adata = (int8_t *)block;
            float *ascale = (float *)(block + Q8_SCRATCH_DATA);
            quantize_all_slices(&job, m_pad, adata, ascale);
            job.adata = adata;
            job.ascale = ascale;
            clipn_parallel_for(tasks, q8_small_m_task, &job);
            return;
        }
    }
    clipn_parallel_for(tasks, q8_task, &job);
}
