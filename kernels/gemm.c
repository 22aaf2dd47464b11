/* Linear layers: weight packing at load and the BLIS-style GEMM driver around the
 * selected ISA's micro-kernel (the OpenBLAS sgemm backend: kernels/gemm_openblas.c).
 *
 * Loop nest per thread (the thread owns a contiguous range of NR-wide weight panels):
 *   for each KC slice of K            (few slices: C is read and written K/KC times)
 *     for each MC block of rows       (pack MC x KC activations into MR micro-panels)
 *       for each weight panel          (KC x NR = 96 KiB, from L2; the 6 x KC activation
 *                                       micro-panel, 9 KiB, stays in L1)
 *         for each MR rows: micro-kernel (bias and residual added on the way out)
 *         last KC slice: GELU/QuickGELU over the MC x NR block just written (still in L2)
 *
 * Few rows (m <= GEMM_SMALL_M: a batch-1 text prompt has ~11) make every layer a stream of
 * its weights from memory, each weight used m times. There the calling thread packs all of
 * x once and the loop nest turns inside out, per thread over its contiguous panel range:
 *   for each weight panel, for each KC slice, for each MR rows: micro-kernel
 * so each thread reads its share of the panels exactly once, front to back, with the ISA's
 * streaming micro-kernel (same tile, plus software prefetch 2 KiB ahead) where it has one.
 * Every output still sums the same products in the same order (same KC slices, same tile
 * arithmetic), so rows are bitwise what a big-m call gives. docs/performance.md, "Text at
 * batch 1". */
#include "kernels_impl.h"
#include "gemm_amx.h" /* CLIPN_PACK_AMX on every arch; the AMX calls are x86_64-only */
#include "gemm_int8.h"

#include <pthread.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef GEMM_KC
#define GEMM_KC 384
#endif
#ifndef GEMM_MC
#define GEMM_MC 96 /* multiple of MR */
#endif
_Static_assert(GEMM_KC % 2 == 0 && GEMM_MC % CLIPN_GEMM_MR == 0,
               "K slices start on a BF16 pair; row blocks are whole micro-panels");
/* Below this many multiply-adds a call runs on one thread: waking the pool costs more.
 * Unless the weights alone are this big: then reading them is the time (m = 1: the last
 * text layer's pooled row streams 9 MB), and two threads read faster than one. */
#define GEMM_PARALLEL_MIN_FMAS (1 << 21)
#define GEMM_PARALLEL_MIN_WEIGHTS (1 << 18)
/* Up to this many rows the panel-major order above (weights streamed once) is used. */
#ifndef GEMM_SMALL_M
#define GEMM_SMALL_M 24
#endif

/* The packed buffer starts with a 64-byte header saying which layout follows, so a model
 * packed as BF16 is never read as fp32 (and vice versa) whatever is selected later. */
enum { PACK_F32 = 0x46333250, PACK_BF16 = 0x42463136 };
#define PACK_HEADER 64

static int packed_format(const clipn_linear *lin)
{
    return lin->packed ? (int)*(const uint32_t *)lin->packed : 0;
}

/* ---- per-thread activation blocks: allocated once per thread, never per call.
 * Pool workers allocate theirs when they start (the hook is registered with the key, at
 * the first prepare or GEMM); any other thread on its first GEMM. The pthread key's
 * destructor frees a thread's block when the thread exits. */
#define SCRATCH_FLOATS ((size_t)GEMM_MC * GEMM_KC) /* 144 KiB; BF16 pairs need half */
static pthread_key_t scratch_key;
static int scratch_key_ok;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void worker_start(void) { clipn_gemm_thread_scratch(); } /* NULL: the stack block */

static void make_scratch_key(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, free) == 0;
    clipn_pool_on_worker_start(worker_start);
}

float *clipn_gemm_thread_scratch(void)
{
    pthread_once(&scratch_once, make_scratch_key);
    if (!scratch_key_ok)
        return NULL;
    float *buf = pthread_getspecific(scratch_key);
    if (!buf) {
        buf = aligned_alloc(64, SCRATCH_FLOATS * sizeof(float));
        if (buf && pthread_setspecific(scratch_key, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

int clipn_linear_prepare(clipn_linear *lin)
{
    pthread_once(&scratch_once, make_scratch_key); /* before the pool's first worker */
    lin->packed = NULL;
    lin->packed_bytes = 0;
    if (!lin->weight || lin->n_out <= 0 || lin->n_in <= 0)
        return -1;
    const int format = lin->format ? lin->format : clipn_kernels_default_weights();
    if (format == CLIPN_WEIGHTS_INT8)
        return clipn_int8_prepare(lin, lin->int8_group); /* kernels/gemm_int8.c */
    if (clipn_kernels_use_openblas())
        return 0; /* OpenBLAS reads the weights in place: no second copy */
    const int bf16 = format == CLIPN_WEIGHTS_BF16 && clipn_kernels_bf16_native();
#if defined(__x86_64__)
    if (bf16 && clipn_amx_usable())
        return clipn_amx_prepare(lin); /* AMX tiles (kernels/gemm_amx.c) */
#endif
    const size_t n = (size_t)lin->n_out, k = (size_t)lin->n_in;
    const size_t panels = (n + CLIPN_GEMM_NR - 1) / CLIPN_GEMM_NR;
    const size_t k_even = (k + 1) / 2 * 2; /* BF16 pairs along k */
    const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    if (k_even > (SIZE_MAX - PACK_HEADER) / elem / CLIPN_GEMM_NR / panels)
        return -1;
    const size_t bytes = PACK_HEADER + panels * (bf16 ? k_even : k) * CLIPN_GEMM_NR * elem;
    unsigned char *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!buf)
        return -1;
#ifdef MADV_HUGEPAGE
    /* Transparent huge pages where the kernel allows: 151 MB streamed 20-30% faster from
       2 MiB pages (bench_membw). Only a hint: the range is rounded inward to pages. */
    const uintptr_t page = 4096, lo = ((uintptr_t)buf + page - 1) & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)buf + bytes) & ~(page - 1);
    if (hi > lo + (2u << 20))
        madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#endif
    memset(buf, 0, PACK_HEADER);
    *(uint32_t *)buf = bf16 ? PACK_BF16 : PACK_F32;
    for (size_t pj = 0; pj < panels; pj++) {
        for (size_t j = 0; j < CLIPN_GEMM_NR; j++) {
            const size_t row = pj * CLIPN_GEMM_NR + j;
            const float *w = lin->weight + row * k;
            if (bf16) {
                /* panel [k/2][NR][2]: the two k of a pair side by side, as vdpbf16ps wants */
                uint16_t *panel = (uint16_t *)(buf + PACK_HEADER) + pj * k_even * CLIPN_GEMM_NR;
                for (size_t kk = 0; kk < k_even; kk++)
                    panel[(kk / 2) * 2 * CLIPN_GEMM_NR + 2 * j + kk % 2] =
                        row < n && kk < k ? clipn_to_bf16(w[kk]) : 0;
            } else {
                float *panel = (float *)(buf + PACK_HEADER) + pj * k * CLIPN_GEMM_NR;
                for (size_t kk = 0; kk < k; kk++)
                    panel[kk * CLIPN_GEMM_NR + j] = row < n ? w[kk] : 0.0f;
            }
        }
    }
    lin->packed = buf;
    lin->packed_bytes = bytes;
    return 0;
}

int clipn_linear_format(const clipn_linear *lin)
{
    const uint32_t f = (uint32_t)packed_format(lin);
    return f == CLIPN_PACK_INT8 ? CLIPN_WEIGHTS_INT8
         : f == PACK_BF16 || f == (uint32_t)CLIPN_PACK_AMX ? CLIPN_WEIGHTS_BF16 : CLIPN_WEIGHTS_FP32;
}

void clipn_linear_release(clipn_linear *lin)
{
    free(lin->packed);
    lin->packed = NULL;
    lin->packed_bytes = 0;
}

/* ---- native backend */
typedef struct gemm_job {
    const clipn_linear *lin;
    const float *x;
    float *y;
    int m, act, residual;
    int panels, n_tasks;
    int mc_max, kc_max;         /* block sizes for this call, <= GEMM_MC, GEMM_KC */
    int bf16;                   /* weights packed as BF16 pairs */
    const void *apack;          /* small m: all of x packed once by the caller, else NULL */
    int m_pad;                  /* small m: m rounded up to MR */
    clipn_gemm_ukernel_fn ukernel;
    const clipn_kernel_ops *ops;
} gemm_job;

/* rows of x [mc, kc] (leading dim k) -> MR-row micro-panels [kc][MR], zero rows past mc */
static void pack_activations(const float *x, size_t k, int mc, int kc, float *dst)
{
    _Static_assert(CLIPN_GEMM_MR == 6, "the full micro-panel loop reads 6 rows");
    for (int i0 = 0; i0 < mc; i0 += CLIPN_GEMM_MR) {
        const int mr = mc - i0 < CLIPN_GEMM_MR ? mc - i0 : CLIPN_GEMM_MR;
        if (mr == CLIPN_GEMM_MR) {
            /* 6 read streams, contiguous writes: 1.5x faster than row by row (strided
             * writes), and packing is a few % of an image GEMM (every thread packs) */
            const float *r0 = x + (size_t)i0 * k, *r1 = r0 + k, *r2 = r1 + k, *r3 = r2 + k,
                        *r4 = r3 + k, *r5 = r4 + k;
            for (int kk = 0; kk < kc; kk++) {
                float *d = dst + (size_t)kk * CLIPN_GEMM_MR;
                d[0] = r0[kk], d[1] = r1[kk], d[2] = r2[kk];
                d[3] = r3[kk], d[4] = r4[kk], d[5] = r5[kk];
            }
        } else {
            for (int kk = 0; kk < kc; kk++)
                for (int i = 0; i < CLIPN_GEMM_MR; i++)
                    dst[(size_t)kk * CLIPN_GEMM_MR + i] =
                        i < mr ? x[(size_t)(i0 + i) * k + kk] : 0.0f;
        }
        dst += (size_t)kc * CLIPN_GEMM_MR;
    }
}

/* BF16: rows of x [mc, kc] -> micro-panels [kc/2][MR] of bf16 pairs (k, k+1) */
static void pack_activations_bf16(const float *x, size_t k, int mc, int kc, uint32_t *dst)
{
    const int kp = (kc + 1) / 2;
    for (int i0 = 0; i0 < mc; i0 += CLIPN_GEMM_MR) {
        for (int i = 0; i < CLIPN_GEMM_MR; i++) {
            if (i0 + i >= mc) {
                for (int p = 0; p < kp; p++)
                    dst[p * CLIPN_GEMM_MR + i] = 0;
                continue;
            }
            const float *src = x + (size_t)(i0 + i) * k;
            for (int p = 0; p < kp; p++) {
                uint32_t pair = clipn_to_bf16(src[2 * p]);
                if (2 * p + 1 < kc)
                    pair |= (uint32_t)clipn_to_bf16(src[2 * p + 1]) << 16;
                dst[p * CLIPN_GEMM_MR + i] = pair;
            }
        }
        dst += (size_t)kp * CLIPN_GEMM_MR;
    }
}

/* The micro-kernel on one MR x NR tile of C. Edges are handled here, once for every ISA:
 * a tile with mr < MR rows or nr < NR columns runs the full-tile micro-kernel on a local
 * tile (C's corner copied in when load_c, the bias zero-padded) and copies its mr x nr
 * corner back. Packed activation rows past m and panel columns past n_out are zeros, so the
 * extra lanes compute zeros that are dropped; the kept lanes sum exactly as a full tile. */
static inline __attribute__((always_inline)) void
micro_tile(const gemm_job *job, const void *a, const void *b, int kc, float *c, size_t ldc,
           int mr, int nr, const float *bias, int load_c)
{
    const int full = mr == CLIPN_GEMM_MR && nr == CLIPN_GEMM_NR;
    _Alignas(64) float tile[CLIPN_GEMM_MR * CLIPN_GEMM_NR];
    _Alignas(64) float bias_tile[CLIPN_GEMM_NR];
    float *dst = c;
    size_t ld = ldc;
    if (!full) {
        memset(tile, 0, sizeof tile);
        if (load_c)
            for (int i = 0; i < mr; i++)
                memcpy(tile + i * CLIPN_GEMM_NR, c + i * ldc, (size_t)nr * sizeof *c);
        if (bias && nr < CLIPN_GEMM_NR) {
            memset(bias_tile, 0, sizeof bias_tile);
            memcpy(bias_tile, bias, (size_t)nr * sizeof *bias);
            bias = bias_tile;
        }
        dst = tile;
        ld = CLIPN_GEMM_NR;
    }
    if (job->bf16)
        job->ops->gemm_ukernel_bf16((kc + 1) / 2, a, b, dst, ld, bias, load_c);
    else
        job->ukernel(kc, a, b, dst, ld, bias, load_c);
    if (!full)
        for (int i = 0; i < mr; i++)
            memcpy(c + i * ldc, tile + i * CLIPN_GEMM_NR, (size_t)nr * sizeof *c);
}

/* Rows [ic, ic + mc) of C against weight panel p, K slice [pc, pc + kc): a_slice is the
 * slice's packed activations of those rows (micro-panels [kc][MR] fp32, or [kp][MR] bf16
 * pairs). The bias enters with the first slice, the activation after the last, on the
 * mc x nr block just written (still in cache). */
static inline __attribute__((always_inline)) void
panel_slice(const gemm_job *job, const void *a_slice, int p, int pc, int kc, int ic, int mc)
{
    const clipn_linear *lin = job->lin;
    const int n = lin->n_out, k = lin->n_in;
    const int j0 = p * CLIPN_GEMM_NR;
    const int nr = n - j0 < CLIPN_GEMM_NR ? n - j0 : CLIPN_GEMM_NR;
    const int first = pc == 0, last = pc + kc == k;
    const float *bias = first && lin->bias ? lin->bias + j0 : NULL;
    const int load_c = !first || job->residual;
    float *c = job->y + (size_t)ic * n + j0;
    const unsigned char *packed = (const unsigned char *)lin->packed + PACK_HEADER;
    const void *b;
    size_t a_step; /* bytes per MR-row micro-panel of the slice */
    if (job->bf16) {
        const size_t k_even = ((size_t)k + 1) / 2 * 2; /* pc is even: slices start on a pair */
        b = (const uint16_t *)packed + ((size_t)p * k_even + pc) * CLIPN_GEMM_NR;
        a_step = (size_t)(kc + 1) / 2 * CLIPN_GEMM_MR * sizeof(uint32_t);
    } else {
        b = (const float *)packed + ((size_t)p * k + pc) * CLIPN_GEMM_NR;
        a_step = (size_t)kc * CLIPN_GEMM_MR * sizeof(float);
    }
    for (int ir = 0; ir < mc; ir += CLIPN_GEMM_MR) {
        const int mr = mc - ir < CLIPN_GEMM_MR ? mc - ir : CLIPN_GEMM_MR;
        micro_tile(job, (const unsigned char *)a_slice + (size_t)(ir / CLIPN_GEMM_MR) * a_step,
                   b, kc, c + (size_t)ir * n, (size_t)n, mr, nr, bias, load_c);
    }
    if (last && job->act != CLIPN_ACT_NONE)
        job->ops->activate(c, (size_t)n, mc, nr, job->act);
}

/* Small m: x packed once as KC slices, slice pc at pc * m_pad floats (fp32) or pc/2 *
 * m_pad pairs (BF16), each slice m_pad/MR micro-panels [kc][MR] like pack_activations. */
static void pack_all_slices(const gemm_job *job, void *dst)
{
    const int k = job->lin->n_in;
    for (int pc = 0; pc < k; pc += job->kc_max) {
        const int kc = k - pc < job->kc_max ? k - pc : job->kc_max;
        if (job->bf16)
            pack_activations_bf16(job->x + pc, (size_t)k, job->m, kc,
                                  (uint32_t *)dst + (size_t)pc / 2 * job->m_pad);
        else
            pack_activations(job->x + pc, (size_t)k, job->m, kc,
                             (float *)dst + (size_t)pc * job->m_pad);
    }
}

/* One task: a contiguous share of the weight panels (sizes differing by at most one), in
 * one of the two loop orders of the header comment. Both sum every output's products in
 * the same order (same KC slices, same tile arithmetic), so they agree bit for bit. */
static void gemm_task(void *arg, int t)
{
    const gemm_job *job = arg;
    const int k = job->lin->n_in, m = job->m;
    const int p0 = (int)((long long)job->panels * t / job->n_tasks);
    const int p1 = (int)((long long)job->panels * (t + 1) / job->n_tasks);

    if (job->apack) { /* small m: panel-major over x packed once by the caller */
        for (int p = p0; p < p1; p++)
            for (int pc = 0; pc < k; pc += job->kc_max) {
                const int kc = k - pc < job->kc_max ? k - pc : job->kc_max;
                const void *a_slice = job->bf16
                    ? (const void *)((const uint32_t *)job->apack + (size_t)pc / 2 * job->m_pad)
                    : (const void *)((const float *)job->apack + (size_t)pc * job->m_pad);
                panel_slice(job, a_slice, p, pc, kc, 0, m);
            }
        return;
    }

    /* The thread's block; without one (its allocation failed) a one-micro-panel block on
     * the stack: slower, same arithmetic (row blocking does not change any sum's order). */
    _Alignas(64) float one_panel[CLIPN_GEMM_MR * GEMM_KC];
    float *apack = clipn_gemm_thread_scratch();
    int mc_max = job->mc_max;
    if (!apack) {
        apack = one_panel;
        mc_max = CLIPN_GEMM_MR;
    }
    for (int pc = 0; pc < k; pc += job->kc_max) {
        const int kc = k - pc < job->kc_max ? k - pc : job->kc_max;
        for (int ic = 0; ic < m; ic += mc_max) {
            const int mc = m - ic < mc_max ? m - ic : mc_max;
            if (job->bf16)
                pack_activations_bf16(job->x + (size_t)ic * k + pc, (size_t)k, mc, kc,
                                      (uint32_t *)apack);
            else
                pack_activations(job->x + (size_t)ic * k + pc, (size_t)k, mc, kc, apack);
            for (int p = p0; p < p1; p++)
                panel_slice(job, apack, p, pc, kc, ic, mc);
        }
    }
}

void clipn_linear_forward(const clipn_linear *lin, const float *x, int m, float *y,
                          clipn_epilogue epi)
{
    if (m <= 0)
        return;
    const clipn_kernel_ops *ops = clipn_kernels_ops();
    const int format = packed_format(lin);
    if ((uint32_t)format == CLIPN_PACK_INT8) {
        clipn_int8_forward(lin, x, m, y, epi); /* any ISA, any CLIPN_GEMM */
        return;
    }
#if defined(__x86_64__)
    if (format == (int)CLIPN_PACK_AMX && !clipn_kernels_use_openblas() &&
        ops->gemm_ukernel_bf16 && clipn_amx_forward(lin, x, m, y, epi) == 0)
        return;
#endif
    /* OpenBLAS when asked, when nothing is packed, or when BF16 weights meet an ISA
     * without vdpbf16ps (a forced variant): always a correct fp32 answer */
    if (clipn_kernels_use_openblas() || !format || format == (int)CLIPN_PACK_AMX ||
        (format == PACK_BF16 && !ops->gemm_ukernel_bf16)) {
        clipn_openblas_forward(lin, x, m, y, epi, ops);
        return;
    }
    gemm_job job = {
        .lin = lin, .x = x, .y = y, .m = m,
        .act = clipn_epilogue_act(epi),
        .residual = epi == CLIPN_EPI_RESIDUAL,
        .panels = (lin->n_out + CLIPN_GEMM_NR - 1) / CLIPN_GEMM_NR,
        .bf16 = format == PACK_BF16,
        .ukernel = ops->gemm_ukernel,
        .ops = ops,
    };
    const double fmas = (double)m * lin->n_out * lin->n_in;
    const double weights = (double)lin->n_out * lin->n_in;
    int tasks = fmas < GEMM_PARALLEL_MIN_FMAS && weights < GEMM_PARALLEL_MIN_WEIGHTS
                    ? 1 : clipn_pool_threads();
    if (tasks > job.panels)
        tasks = job.panels;
    job.n_tasks = tasks;
    job.kc_max = lin->n_in < GEMM_KC ? lin->n_in : GEMM_KC;
    job.mc_max = m < GEMM_MC ? (m + CLIPN_GEMM_MR - 1) / CLIPN_GEMM_MR * CLIPN_GEMM_MR : GEMM_MC;
    if (m <= GEMM_SMALL_M) {
        /* all of x fits the caller's block (m_pad * k floats; BF16 pairs need half) */
        job.m_pad = (m + CLIPN_GEMM_MR - 1) / CLIPN_GEMM_MR * CLIPN_GEMM_MR;
        float *apack = (size_t)job.m_pad * (size_t)lin->n_in <= SCRATCH_FLOATS
                           ? clipn_gemm_thread_scratch() : NULL;
        if (apack) {
            pack_all_slices(&job, apack);
            job.apack = apack;
            if (ops->gemm_ukernel_stream)
                job.ukernel = ops->gemm_ukernel_stream;
        }
    }
    clipn_parallel_for(tasks, gemm_task, &job);
}
