/* Linear layers: weight packing at load and the BLIS-style GEMM driver around the
 * selected ISA's micro-kernel, with the OpenBLAS sgemm backend kept as an alternative.
 *
 * Loop nest per thread (the thread owns a contiguous range of NR-wide weight panels):
 *   for each KC slice of K            (a KC x NR weight micro-panel: 48 KiB, L1)
 *     for each MC block of rows       (pack MC x KC activations into MR micro-panels, L2)
 *       for each weight panel          (stays in L1 across the row loop)
 *         for each MR rows: micro-kernel (bias and residual added on the way out)
 *         last KC slice: GELU/QuickGELU over the MC x NR block just written (still in L2) */
#include "kernels_impl.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef GEMM_KC
#define GEMM_KC 192
#endif
#ifndef GEMM_MC
#define GEMM_MC 144 /* multiple of MR; the activation block lives on the stack (108 KiB) */
#endif
/* Below this many multiply-adds a call runs on one thread: waking the pool costs more. */
#define GEMM_PARALLEL_MIN_FMAS (1 << 21)

int clipn_linear_prepare(clipn_linear *lin)
{
    lin->packed = NULL;
    lin->packed_bytes = 0;
    if (!lin->weight || lin->n_out <= 0 || lin->n_in <= 0)
        return -1;
    if (clipn_kernels_use_openblas())
        return 0; /* OpenBLAS reads the weights in place: no second copy */
    const size_t n = (size_t)lin->n_out, k = (size_t)lin->n_in;
    const size_t panels = (n + CLIPN_GEMM_NR - 1) / CLIPN_GEMM_NR;
    if (k > SIZE_MAX / sizeof(float) / CLIPN_GEMM_NR / panels)
        return -1;
    const size_t bytes = panels * k * CLIPN_GEMM_NR * sizeof(float);
    float *p = aligned_alloc(64, bytes); /* bytes is a multiple of 256 */
    if (!p)
        return -1;
    for (size_t pj = 0; pj < panels; pj++) {
        float *panel = p + pj * k * CLIPN_GEMM_NR;
        for (size_t j = 0; j < CLIPN_GEMM_NR; j++) {
            const size_t row = pj * CLIPN_GEMM_NR + j;
            const float *w = lin->weight + row * k;
            for (size_t kk = 0; kk < k; kk++)
                panel[kk * CLIPN_GEMM_NR + j] = row < n ? w[kk] : 0.0f;
        }
    }
    lin->packed = p;
    lin->packed_bytes = bytes;
    return 0;
}

void clipn_linear_release(clipn_linear *lin)
{
    free(lin->packed);
    lin->packed = NULL;
    lin->packed_bytes = 0;
}

/* ---- OpenBLAS backend: sgemm, then the epilogue in a second pass */
static void forward_openblas(const clipn_linear *lin, const float *x, int m, float *y,
                             clipn_epilogue epi)
{
    const int n = lin->n_out, k = lin->n_in;
    float beta = epi == CLIPN_EPI_RESIDUAL ? 1.0f : 0.0f; /* accumulate onto y */
    if (lin->bias) {
        for (int i = 0; i < m; i++) {
            float *yr = y + (size_t)i * n;
            if (epi == CLIPN_EPI_RESIDUAL)
                for (int j = 0; j < n; j++)
                    yr[j] += lin->bias[j];
            else
                memcpy(yr, lin->bias, sizeof(float) * (size_t)n);
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, lin->weight, k,
                beta, y, n);
    if (epi == CLIPN_EPI_GELU)
        clipn_gelu_erf(y, (size_t)m * n);
    else if (epi == CLIPN_EPI_QUICKGELU)
        clipn_quickgelu(y, (size_t)m * n);
}

/* ---- native backend */
typedef struct gemm_job {
    const clipn_linear *lin;
    const float *x;
    float *y;
    int m, act, residual;
    int panels, n_tasks;
    clipn_gemm_ukernel_fn ukernel;
    const clipn_kernel_ops *ops;
} gemm_job;

/* rows of x [mc, kc] (leading dim k) -> MR-row micro-panels [kc][MR], zero rows past mc */
static void pack_activations(const float *x, size_t k, int mc, int kc, float *dst)
{
    for (int i0 = 0; i0 < mc; i0 += CLIPN_GEMM_MR) {
        const int mr = mc - i0 < CLIPN_GEMM_MR ? mc - i0 : CLIPN_GEMM_MR;
        for (int i = 0; i < CLIPN_GEMM_MR; i++) {
            if (i < mr) {
                const float *src = x + (size_t)(i0 + i) * k;
                for (int kk = 0; kk < kc; kk++)
                    dst[kk * CLIPN_GEMM_MR + i] = src[kk];
            } else {
                for (int kk = 0; kk < kc; kk++)
                    dst[kk * CLIPN_GEMM_MR + i] = 0.0f;
            }
        }
        dst += (size_t)kc * CLIPN_GEMM_MR;
    }
}

static void gemm_task(void *arg, int t)
{
    const gemm_job *job = arg;
    const clipn_linear *lin = job->lin;
    const int n = lin->n_out, k = lin->n_in, m = job->m;
    const float *packed = lin->packed;
    /* contiguous share of the panels, sizes differing by at most one */
    const int p0 = (int)((long long)job->panels * t / job->n_tasks);
    const int p1 = (int)((long long)job->panels * (t + 1) / job->n_tasks);
    float apack[GEMM_MC * GEMM_KC] __attribute__((aligned(64)));

    for (int pc = 0; pc < k; pc += GEMM_KC) {
        const int kc = k - pc < GEMM_KC ? k - pc : GEMM_KC;
        const int first = pc == 0, last = pc + kc == k;
        for (int ic = 0; ic < m; ic += GEMM_MC) {
            const int mc = m - ic < GEMM_MC ? m - ic : GEMM_MC;
            pack_activations(job->x + (size_t)ic * k + pc, (size_t)k, mc, kc, apack);
            for (int p = p0; p < p1; p++) {
                const int j0 = p * CLIPN_GEMM_NR;
                const int nr = n - j0 < CLIPN_GEMM_NR ? n - j0 : CLIPN_GEMM_NR;
                const float *b = packed + ((size_t)p * k + pc) * CLIPN_GEMM_NR;
                const float *bias = first && lin->bias ? lin->bias + j0 : NULL;
                const int load_c = !first || job->residual;
                float *c = job->y + (size_t)ic * n + j0;
                for (int ir = 0; ir < mc; ir += CLIPN_GEMM_MR) {
                    const int mr = mc - ir < CLIPN_GEMM_MR ? mc - ir : CLIPN_GEMM_MR;
                    job->ukernel(kc, apack + (size_t)ir * kc, b, c + (size_t)ir * n, (size_t)n,
                                 mr, nr, bias, load_c);
                }
                if (last && job->act != CLIPN_ACT_NONE)
                    job->ops->activate(c, (size_t)n, mc, nr, job->act); /* mc x nr in L2 */
            }
        }
    }
}

void clipn_linear_forward(const clipn_linear *lin, const float *x, int m, float *y,
                          clipn_epilogue epi)
{
    if (m <= 0)
        return;
    if (clipn_kernels_use_openblas() || !lin->packed) {
        forward_openblas(lin, x, m, y, epi);
        return;
    }
    gemm_job job = {
        .lin = lin, .x = x, .y = y, .m = m,
        .act = epi == CLIPN_EPI_GELU ? CLIPN_ACT_GELU_ERF
             : epi == CLIPN_EPI_QUICKGELU ? CLIPN_ACT_QUICK : CLIPN_ACT_NONE,
        .residual = epi == CLIPN_EPI_RESIDUAL,
        .panels = (lin->n_out + CLIPN_GEMM_NR - 1) / CLIPN_GEMM_NR,
        .ukernel = clipn_kernels_ops()->gemm_ukernel,
        .ops = clipn_kernels_ops(),
    };
    const double fmas = (double)m * lin->n_out * lin->n_in;
    int tasks = fmas < GEMM_PARALLEL_MIN_FMAS ? 1 : clipn_pool_threads();
    if (tasks > job.panels)
        tasks = job.panels;
    job.n_tasks = tasks;
    clipn_parallel_for(tasks, gemm_task, &job);
}
