/* The OpenBLAS backend (CLIPN_GEMM=openblas, and the fallback for layers nothing could
 * pack): cblas_sgemm on the unpacked weights, then the epilogue in a second pass. */
#include "kernels_impl.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* OpenBLAS's thread count follows the pool's, set when OpenBLAS is first about to run (or
 * by clipn_kernels_set_threads): a process that only runs the native GEMM leaves OpenBLAS
 * as the environment configured it (OPENBLAS_NUM_THREADS), since raising the count starts
 * OpenBLAS worker threads that each map a 128 MB buffer. */
static pthread_mutex_t openblas_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int openblas_threads; /* last count given to OpenBLAS; 0 = never */

void clipn_openblas_sync_threads(void)
{
    const int n = clipn_pool_size(); /* process-wide: OpenBLAS has one count */
    if (atomic_load_explicit(&openblas_threads, memory_order_acquire) == n)
        return; /* every sgemm after the first: no lock */
    pthread_mutex_lock(&openblas_lock);
    if (atomic_load(&openblas_threads) != n) {
        openblas_set_num_threads(n);
        atomic_store_explicit(&openblas_threads, n, memory_order_release);
    }
    pthread_mutex_unlock(&openblas_lock);
}

void clipn_openblas_forward(const clipn_linear *lin, const float *x, int m, float *y,
                            clipn_epilogue epi, const clipn_kernel_ops *ops)
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
    clipn_openblas_sync_threads();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, lin->weight, k,
                beta, y, n);
    if (epi == CLIPN_EPI_GELU)
        ops->gelu_erf(y, (size_t)m * n);
    else if (epi == CLIPN_EPI_QUICKGELU)
        ops->quickgelu(y, (size_t)m * n);
}

