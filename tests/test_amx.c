/* AMX-BF16 GEMM (kernels/gemm_amx.c), selected for layers prepared with BF16 weights when
 * the CPU and kernel allow AMX. Skipped (with a note, passing) where AMX is not usable.
 *
 * Tolerances (u = 2^-24):
 *   vs double over the BF16-ROUNDED x and W (only the fp32 accumulation order differs):
 *     |y - ref| <= 8u (sqrt(K) + 4) (sum_k |x w| + |b| + |y_in|); GELU/QuickGELU: that
 *     times 1.2 (max slope) + 4 ulp of the result + 2u |x|.
 *   vs the fp32 GEMM: 2^-7 (sum_k |x w| + |b| + |y_in|) (two inputs rounded to 8 bits). */
#include "testutil.h"

#include "../kernels/gemm_amx.h"
#include "../kernels/kernels.h"
#include "../kernels/kernels_control.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define U 5.9604645e-8 /* 2^-24 */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *rand_buf(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * frand();
    return p;
}

static double bf16_round(float f) /* round to nearest even to 8 significant bits */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

static double ulp_of(double v)
{
    float f = fabsf((float)v);
    if (f < 1.1754944e-38f)
        return 1.4e-45;
    return (double)nextafterf(f, INFINITY) - f;
}

static double gelu_d(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }
static double quickgelu_d(double v) { return v / (1.0 + exp(-1.702 * v)); }

#if !defined(__x86_64__)
#define clipn_amx_usable() 0 /* kernels/gemm_amx.c is x86-64 only */
#endif

/* AMX available and BF16 weights selectable; otherwise print why the test is skipped. */
static int amx_ready(const char *test)
{
    if (!clipn_amx_usable() || clipn_kernels_set_weights("bf16") != 0) {
        printf("test_amx: %s skipped: AMX-BF16 not usable (CPU, kernel or CLIPN_AMX=0)\n", test);
        return 0;
    }
    return 1;
}

static void prepare(clipn_linear *lin, const char *weights, uint32_t expect_format)
{
    ck_assert_int_eq(clipn_kernels_set_weights(weights), 0);
    ck_assert_int_eq(clipn_linear_prepare(lin), 0);
    if (expect_format)
        ck_assert_uint_eq(*(const uint32_t *)lin->packed, expect_format);
    else
        ck_assert(lin->packed == NULL || *(const uint32_t *)lin->packed != CLIPN_PACK_AMX);
}

/* One shape and epilogue: AMX vs double over bf16-rounded inputs, and vs the fp32 GEMM. */
static void check_shape(int m, int n, int k, clipn_epilogue epi, int with_bias)
{
    float *w = rand_buf((size_t)n * k, 0.5f), *x = rand_buf((size_t)m * k, 1.0f);
    float *b = with_bias ? rand_buf((size_t)n, 0.5f) : NULL;
    float *y_in = rand_buf((size_t)m * n, 1.0f);
    float *y = malloc((size_t)m * n * sizeof *y), *y32 = malloc((size_t)m * n * sizeof *y32);
    ck_assert(y && y32);
    memcpy(y, y_in, (size_t)m * n * sizeof *y);
    memcpy(y32, y_in, (size_t)m * n * sizeof *y);
    clipn_linear amx = {.n_out = n, .n_in = k, .weight = w, .bias = b};
    clipn_linear f32 = amx;
    prepare(&amx, "bf16", CLIPN_PACK_AMX);
    prepare(&f32, "fp32", 0);
    clipn_linear_forward(&amx, x, m, y, epi);
    clipn_linear_forward(&f32, x, m, y32, epi);

    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (int kk = 0; kk < k; kk++) {
                const double p =
                    bf16_round(x[(size_t)i * k + kk]) * bf16_round(w[(size_t)j * k + kk]);
                ref += p;
                mag += fabs(p);
            }
            if (b) {
                ref += b[j];
                mag += fabs(b[j]);
            }
            const size_t at = (size_t)i * n + j;
            if (epi == CLIPN_EPI_RESIDUAL) {
                ref += y_in[at];
                mag += fabs(y_in[at]);
            }
            double tol = 8 * U * (sqrt((double)k) + 4) * mag;
            double tol32 = mag / 128;
            if (epi == CLIPN_EPI_GELU || epi == CLIPN_EPI_QUICKGELU) {
                const double pre = ref;
                ref = epi == CLIPN_EPI_GELU ? gelu_d(pre) : quickgelu_d(pre);
                tol = 1.2 * tol + 4 * ulp_of(ref) + 2 * U * fabs(pre);
                tol32 = 1.2 * tol32 + 4 * ulp_of(ref) + 2 * U * fabs(pre);
            }
            if (!(fabs(y[at] - ref) <= tol) || !(fabs(y[at] - y32[at]) <= tol32))
                ck_abort_msg("m=%d n=%d k=%d epi=%d bias=%d at (%d,%d): amx %.9g ref %.9g "
                             "(tol %.3g) fp32 %.9g (tol %.3g)", m, n, k, (int)epi, with_bias,
                             i, j, y[at], ref, tol, y32[at], tol32);
        }
    clipn_linear_release(&amx);
    clipn_linear_release(&f32);
    free(w);
    free(x);
    free(b);
    free(y_in);
    free(y);
    free(y32);
}

START_TEST(test_amx_odd_shapes)
{
    if (!amx_ready("odd shapes"))
        return;
    static const int shapes[][3] = {
        {1, 1, 1},   {1, 16, 32},  {2, 17, 33},  {15, 31, 31}, {16, 32, 64}, {17, 33, 65},
        {31, 47, 95}, {32, 64, 96}, {33, 65, 97}, {48, 20, 200}, {67, 70, 129}, {5, 100, 7},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int epi = CLIPN_EPI_NONE; epi <= CLIPN_EPI_RESIDUAL; epi++)
            check_shape(shapes[s][0], shapes[s][1], shapes[s][2], (clipn_epilogue)epi, epi != 1);
    for (int m = 1; m <= 67; m += 3)
        check_shape(m, 40, 48, CLIPN_EPI_NONE, 1);
    clipn_kernels_set_weights("fp32");
}
END_TEST

/* The image tower's shapes (M = 197 tokens), on the thread pool. */
START_TEST(test_amx_real_shapes)
{
    if (!amx_ready("real shapes"))
        return;
    clipn_kernels_set_threads(2);
    check_shape(197, 768, 768, CLIPN_EPI_RESIDUAL, 1);
    check_shape(197, 2304, 768, CLIPN_EPI_NONE, 1);
    check_shape(197, 3072, 768, CLIPN_EPI_GELU, 1);
    check_shape(50, 768, 3072, CLIPN_EPI_RESIDUAL, 1);
    check_shape(77, 2048, 512, CLIPN_EPI_QUICKGELU, 1);
    clipn_kernels_set_threads(0);
    clipn_kernels_set_weights("fp32");
}
END_TEST

/* ---- 4 user threads on one layer at once: identical to a lone call, bit for bit */
typedef struct worker {
    const clipn_linear *lin;
    const float *x;
    float *y;
    int m;
} worker;

static void *run_worker(void *p)
{
    worker *wk = p;
    for (int r = 0; r < 3; r++)
        clipn_linear_forward(wk->lin, wk->x, wk->m, wk->y, CLIPN_EPI_GELU);
    return NULL;
}

START_TEST(test_amx_threads)
{
    if (!amx_ready("threads"))
        return;
    enum { M = 197, N = 768, K = 768, T = 4 };
    float *w = rand_buf((size_t)N * K, 0.1f), *x = rand_buf((size_t)M * K, 1.0f);
    float *b = rand_buf(N, 0.1f);
    clipn_linear lin = {.n_out = N, .n_in = K, .weight = w, .bias = b};
    prepare(&lin, "bf16", CLIPN_PACK_AMX);
    float *lone = malloc((size_t)M * N * sizeof *lone);
    ck_assert_ptr_nonnull(lone);
    clipn_linear_forward(&lin, x, M, lone, CLIPN_EPI_GELU);
    pthread_t th[T];
    worker wk[T];
    for (int t = 0; t < T; t++) {
        wk[t] = (worker){&lin, x, malloc((size_t)M * N * sizeof(float)), M};
        ck_assert_ptr_nonnull(wk[t].y);
        ck_assert_int_eq(pthread_create(&th[t], NULL, run_worker, &wk[t]), 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        ck_assert(memcmp(wk[t].y, lone, (size_t)M * N * sizeof(float)) == 0);
        free(wk[t].y);
    }
    clipn_linear_release(&lin);
    free(lone);
    free(w);
    free(x);
    free(b);
    clipn_kernels_set_weights("fp32");
}
END_TEST

/* CLIPN_AMX=0: BF16 layers prepared from then on take the AVX512_BF16 path instead. */
START_TEST(test_amx_env_off)
{
    if (!amx_ready("CLIPN_AMX=0"))
        return;
    float *w = rand_buf(64 * 64, 0.5f);
    clipn_linear lin = {.n_out = 64, .n_in = 64, .weight = w};
    setenv("CLIPN_AMX", "0", 1);
    ck_assert_int_eq(clipn_amx_usable(), 0);
    prepare(&lin, "bf16", 0);
    clipn_linear_release(&lin);
    unsetenv("CLIPN_AMX");
    ck_assert_int_eq(clipn_amx_usable(), 1);
    prepare(&lin, "bf16", CLIPN_PACK_AMX);
    clipn_linear_release(&lin);
    free(w);
    clipn_kernels_set_weights("fp32");
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("amx");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_amx_odd_shapes);
    tcase_add_test(tc, test_amx_real_shapes);
    tcase_add_test(tc, test_amx_threads);
    tcase_add_test(tc, test_amx_env_off);
    suite_add_tcase(s, tc);
    return s;
}
