/* AMX-BF16 GEMM vs the fp32 native GEMM, the AVX512_BF16 GEMM and OpenBLAS sgemm on the
 * ViT-B-16 image-tower shapes (M = 197 tokens x batch 1 or 8), GFLOP/s, same run.
 * Usage: bench_amx [threads]   (default: all cores). Env BENCH_ROUNDS (default 7). */
#include "kernels.h"
#include "kernels_control.h"
#include "gemm_amx.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *random_floats(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (float)(rand() / (double)RAND_MAX * 2.0 - 1.0);
    return p;
}

enum { FP32, AVX512_BF16, AMX, OPENBLAS, N_WAYS };
static const char *const WAY_NAMES[N_WAYS] = {"fp32 native", "avx512_bf16", "amx_bf16",
                                              "openblas"};

/* seconds per call, best of `rounds` runs of >= 20 ms */
static double time_way(int way, clipn_linear *lin, const float *x, int m, float *y, int rounds)
{
    int reps = 1;
    double best = 1e30;
    for (int r = -1; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < reps; i++) {
            if (way == OPENBLAS)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, lin->n_out, lin->n_in,
                            1.0f, x, lin->n_in, lin->weight, lin->n_in, 0.0f, y, lin->n_out);
            else
                clipn_linear_forward(lin, x, m, y, CLIPN_EPI_NONE);
        }
        const double t = (now() - t0) / reps;
        if (r < 0) { /* warm-up also sizes the repetitions */
            while (t * reps < 0.02 && reps < (1 << 16))
                reps *= 2;
            continue;
        }
        if (t < best)
            best = t;
    }
    return best;
}

#if !defined(__x86_64__)
int clipn_amx_usable(void) { return 0; } /* kernels/gemm_amx.c is x86-64 only */
#endif

int main(int argc, char **argv)
{
    clipn_kernels_set_threads(argc > 1 ? atoi(argv[1]) : 0);
    const char *env_rounds = getenv("BENCH_ROUNDS");
    const int rounds = env_rounds ? atoi(env_rounds) : 7;
    if (!clipn_amx_usable()) {
        printf("AMX-BF16 not usable here\n");
        return 0;
    }
    static const int shapes[][3] = {{197, 2304, 768},  {197, 768, 768},  {197, 3072, 768},
                                    {197, 768, 3072},  {1576, 2304, 768}, {1576, 768, 768},
                                    {1576, 3072, 768}, {1576, 768, 3072}};
    printf("threads %d; GFLOP/s (2 m n k / s), best of %d\n", clipn_kernels_threads(), rounds);
    printf("%6s %5s %5s", "M", "N", "K");
    for (int w = 0; w < N_WAYS; w++)
        printf(" %12s", WAY_NAMES[w]);
    printf(" %9s %9s\n", "amx/fp32", "amx/blas");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *w = random_floats((size_t)n * k, 0.05f), *x = random_floats((size_t)m * k, 1.0f);
        float *b = random_floats((size_t)n, 0.1f), *y = malloc((size_t)m * n * sizeof *y);
        if (!y)
            return 1;
        clipn_linear lin[N_WAYS];
        for (int way = 0; way < N_WAYS; way++) {
            lin[way] = (clipn_linear){.n_out = n, .n_in = k, .weight = w, .bias = b};
            if (way == OPENBLAS)
                continue;
            setenv("CLIPN_AMX", way == AMX ? "1" : "0", 1);
            if (clipn_kernels_set_weights(way == FP32 ? "fp32" : "bf16") != 0 ||
                clipn_linear_prepare(&lin[way]) != 0) {
                fprintf(stderr, "prepare failed\n");
                return 1;
            }
        }
        double gflops[N_WAYS];
        printf("%6d %5d %5d", m, n, k);
        for (int way = 0; way < N_WAYS; way++) {
            gflops[way] = 2e-9 * m * n * k / time_way(way, &lin[way], x, m, y, rounds);
            printf(" %12.1f", gflops[way]);
        }
        printf(" %9.2f %9.2f\n", gflops[AMX] / gflops[FP32], gflops[AMX] / gflops[OPENBLAS]);
        fflush(stdout);
        for (int way = 0; way < N_WAYS; way++)
            clipn_linear_release(&lin[way]);
        free(w);
        free(x);
        free(b);
        free(y);
    }
    return 0;
}
