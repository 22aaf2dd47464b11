/* Kernels: every ISA variant this CPU can run (forced through clipn_kernels_select), and
 * the OpenBLAS backend, against naive double-precision references and against the
 * portable version.
 *
 * Tolerances (u = 2^-24, the float unit roundoff):
 *   GEMM      |y - ref| <= 4u (sqrt(K) + 4) * (sum_k |x w| + |b| + |y_in|)   before the
 *             activation; GELU/QuickGELU add 4 ulp of the result + 2u |x| (1 + erf cancels).
 *   erf       <= 3 ulp of the exact value, <= 4 ulp from glibc erff (dense sweep + tails).
 *   LayerNorm <= 1e-6 relative to sum of magnitudes (|xhat g| + |b|) vs double.
 *   attention <= 1e-5 * max |v| vs double (outputs are convex combinations of v rows).
 * Each ISA vs portable (test_isa_vs_portable): twice the above, see there. */
#include "testutil.h"

#include "../kernels/kernels.h"
#include "../kernels/kernels_control.h"
#include "clipn.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

static const char *const ISAS[] = {"portable", "avx2", "avx512", "neon"};
#define N_ISAS 4
#define U 5.9604645e-8 /* 2^-24 */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
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

static double ulp_of(double v) /* spacing of floats at |v| */
{
    float f = fabsf((float)v);
    if (f < 1.1754944e-38f)
        return 1.4e-45;
    return (double)nextafterf(f, INFINITY) - f;
}

static double gelu_d(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }
static double quickgelu_d(double v) { return v / (1.0 + exp(-1.702 * v)); }

/* ------------------------------------------------------------------ image resample */

/* The resampler's passes of each ISA give the portable bytes (integer sums), for every
 * channel count, windows that end at the row's end, and premultiply tails. */
START_TEST(test_resample_isa_vs_portable)
{
    const char *isa = ISAS[_i];
    if (_i == 0 || !clipn_kernels_isa_available(isa))
        return;
    enum { W = 101, N = 37, KS = 9, ROWS = 5 };
    uint8_t src[W * 4 * ROWS];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(frand() * 128 + 128);
    int bounds[2 * N];
    int32_t fixed[N * KS];
    for (int j = 0; j < N; j++) {
        const int cnt = 1 + j % KS;
        bounds[2 * j] = j == N - 1 ? W - cnt : (j * (W - KS)) / N; /* last: ends at W */
        bounds[2 * j + 1] = cnt;
        for (int t = 0; t < KS; t++)
            /* real taps sum to 1 << 22; keep 255 * sum inside int32 as they do (the
               portable pass would overflow, which is undefined behaviour) */
            fixed[j * KS + t] = t < cnt ? (int32_t)(frand() * (1 << 19)) + (1 << 18) : 0;
    }
    for (int C = 1; C <= 4; C++) {
        const int L = clipn_resample_spread_len(C, KS);
        ck_assert_int_gt(L, 0);
        int32_t *spread = malloc((size_t)N * L * sizeof *spread);
        ck_assert_ptr_nonnull(spread);
        clipn_resample_spread(bounds, fixed, N, KS, C, spread);
        const clipn_resample_taps taps = {N, KS, bounds, fixed, spread, L};
        uint8_t want[N * 4], got[N * 4], want_v[W * 4], got_v[W * 4], want_p[W * 4],
            got_p[W * 4];
        int32_t acc[W * 4];
        const int32_t k[ROWS] = {1 << 20, -(1 << 19), 3 << 20, 1 << 18, -(1 << 18)};
        for (int v = 0; v < 2; v++) {
            ck_assert_int_eq(clipn_kernels_select(v ? isa : "portable", NULL), 0);
            clipn_resample_row_h(src, (size_t)W * C, C, &taps, v ? got : want);
            clipn_resample_row_v(src, (size_t)W * C, 0, k, ROWS, acc, v ? got_v : want_v);
            clipn_premultiply_row(src, C, W, v ? got_p : want_p);
        }
        ck_assert_mem_eq(got, want, (size_t)N * C);
        ck_assert_mem_eq(got_v, want_v, (size_t)W * C);
        ck_assert_mem_eq(got_p, want_p, (size_t)W * C);
        free(spread);
    }
    clipn_kernels_reset_from_env();
}
END_TEST

/* ------------------------------------------------------------------ GEMM */

/* Relative error budget of one product: 4u(sqrt(K) + 4) in fp32; BF16 rounds both inputs
 * to 8 significant bits (2^-9 each), so 2^-8 per product, with margin 8e-3. */
static int bf16_mode;

/* Runs the linear with the current selection and checks every element against double.
 * Returns the output (caller frees) so variants can be compared with each other. */
static float *check_linear(int m, int n, int k, clipn_epilogue epi, int with_bias,
                           const char *what)
{
    float *w = rand_buf((size_t)n * k, 0.5f);
    float *b = with_bias ? rand_buf((size_t)n, 0.5f) : NULL;
    float *x = rand_buf((size_t)m * k, 1.0f);
    float *y = rand_buf((size_t)m * n, 1.0f);
    float *y_in = malloc(sizeof(float) * (size_t)m * n);
    ck_assert_ptr_nonnull(y_in);
    memcpy(y_in, y, sizeof(float) * (size_t)m * n);
    clipn_linear lin = {.n_out = n, .n_in = k, .weight = w, .bias = b};
    ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
    clipn_linear_forward(&lin, x, m, y, epi);
    const double base = bf16_mode ? 8e-3 : 4.0 * U * (sqrt((double)k) + 4.0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0, mag = 0;
            for (int kk = 0; kk < k; kk++) {
                const double p = (double)x[(size_t)i * k + kk] * w[(size_t)j * k + kk];
                acc += p;
                mag += fabs(p);
            }
            if (b) {
                acc += b[j];
                mag += fabs(b[j]);
            }
            if (epi == CLIPN_EPI_RESIDUAL) {
                acc += y_in[(size_t)i * n + j];
                mag += fabs(y_in[(size_t)i * n + j]);
            }
            double ref = acc, tol = base * mag;
            if (epi == CLIPN_EPI_GELU) {
                ref = gelu_d(acc);
                tol = 1.2 * tol + 4 * ulp_of(ref) + 2 * U * fabs(acc);
            } else if (epi == CLIPN_EPI_QUICKGELU) {
                ref = quickgelu_d(acc);
                tol = 1.2 * tol + 4 * ulp_of(ref) + 2 * U * fabs(acc);
            }
            const double got = y[(size_t)i * n + j];
            if (!(fabs(got - ref) <= tol))
                ck_abort_msg("%s: m=%d n=%d k=%d epi=%d bias=%d y[%d,%d]=%.9g ref=%.9g tol=%.3g",
                             what, m, n, k, (int)epi, with_bias, i, j, got, ref, tol);
        }
    clipn_linear_release(&lin);
    ck_assert_ptr_null(lin.packed);
    free(w);
    free(b);
    free(x);
    free(y_in);
    return y;
}

static void gemm_shapes_for(const char *isa, const char *gemm)
{
    ck_assert_int_eq(clipn_kernels_select(isa, gemm), 0);
    static const int ms[] = {1, 5, 6, 7, 13, 67, 150};
    static const int ns[] = {1, 15, 16, 17, 63, 64, 65, 67, 130};
    static const int ks[] = {1, 2, 7, 64, 67, 400}; /* 400 > KC: two K slices */
    char what[64];
    snprintf(what, sizeof what, "%s/%s", isa, gemm);
    int e = 0;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t c = 0; c < sizeof ns / sizeof *ns; c++)
            for (size_t d = 0; d < sizeof ks / sizeof *ks; d++) {
                /* cycle the epilogue and bias so every combination meets many shapes */
                e = (e + 1) % 8;
                free(check_linear(ms[a], ns[c], ks[d], (clipn_epilogue)(e % 4), e < 4, what));
            }
}

START_TEST(test_gemm_odd_shapes)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    gemm_shapes_for(isa, "native");
}
END_TEST

START_TEST(test_gemm_openblas_backend)
{
    gemm_shapes_for("portable", "openblas");
}
END_TEST

/* The real ViT-B-16 shapes, every variant vs double and vs the portable kernel. */
START_TEST(test_gemm_real_shapes)
{
    static const struct { int m, n, k; clipn_epilogue epi; } shapes[] = {
        {197, 2304, 768, CLIPN_EPI_NONE},
        {197, 3072, 768, CLIPN_EPI_GELU},
        {197, 768, 3072, CLIPN_EPI_RESIDUAL},
        {10, 2048, 512, CLIPN_EPI_QUICKGELU},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        float *ref = NULL;
        for (int i = 0; i < N_ISAS; i++) {
            if (!clipn_kernels_isa_available(ISAS[i]))
                continue;
            ck_assert_int_eq(clipn_kernels_select(ISAS[i], "native"), 0);
            rng_state = 12345 + s; /* same inputs for every variant */
            float *y = check_linear(shapes[s].m, shapes[s].n, shapes[s].k, shapes[s].epi, 1,
                                    ISAS[i]);
            if (!ref) {
                ref = y; /* portable */
                continue;
            }
            /* vs portable: both within the double bound, so within twice of it here */
            const size_t len = (size_t)shapes[s].m * shapes[s].n;
            double max_rel = 0;
            for (size_t t = 0; t < len; t++) {
                const double d = fabs((double)y[t] - ref[t]) / (fabs(ref[t]) + 1.0);
                max_rel = d > max_rel ? d : max_rel;
            }
            ck_assert_msg(max_rel < 2e-5, "%s vs portable: %g", ISAS[i], max_rel);
            free(y);
        }
        free(ref);
    }
}
END_TEST

/* Small m (the batch-1 text path of kernels/gemm.c, m <= 24: panel-major order, x packed
 * once, the streaming micro-kernel where the ISA has one): every m from 1 to 24 with every
 * epilogue, with and without bias, odd N, K with one, two and three KC slices, vs double;
 * then the same inputs under each ISA vs the portable variant (2e-5 relative, as the real
 * shapes above). */
START_TEST(test_gemm_small_m)
{
    static const int ns[] = {17, 67, 130};
    static const int ks[] = {7, 400, 800};
    int combo = 0;
    for (int m = 1; m <= 24; m++)
        for (int e = 0; e < 8; e++, combo++) {
            const int n = ns[combo % 3], k = ks[(combo / 3) % 3];
            float *ref = NULL;
            for (int i = 0; i < N_ISAS; i++) {
                if (!clipn_kernels_isa_available(ISAS[i]))
                    continue;
                ck_assert_int_eq(clipn_kernels_select(ISAS[i], "native"), 0);
                rng_state = 777 + (uint64_t)combo; /* same inputs for every variant */
                float *y = check_linear(m, n, k, (clipn_epilogue)(e % 4), e < 4, ISAS[i]);
                if (!ref) {
                    ref = y; /* portable */
                    continue;
                }
                for (size_t t = 0; t < (size_t)m * n; t++) {
                    const double d = fabs((double)y[t] - ref[t]) / (fabs(ref[t]) + 1.0);
                    if (!(d < 2e-5))
                        ck_abort_msg("%s vs portable: m=%d n=%d k=%d epi=%d y[%zu] %.9g vs %.9g",
                                     ISAS[i], m, n, k, e % 4, t, y[t], ref[t]);
                }
                free(y);
            }
            free(ref);
        }
}
END_TEST

/* A row's result must not depend on how many rows share the call (tests/test_text_prefix.c
 * relies on it): rows r..r+m-1 computed alone (small-m path, m <= 24; at k = 2048 and
 * m > 18 x no longer fits the packing block and the general path runs) are bitwise equal
 * to the same rows of one 40-row call (general path), for every ISA and epilogue. */
START_TEST(test_gemm_rows_independent_of_m)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    ck_assert_int_eq(clipn_kernels_select(isa, "native"), 0);
    static const struct { int n, k; } shapes[] = {{130, 400}, {67, 2048}, {1536, 512}};
    static const int ms[] = {1, 2, 5, 6, 7, 11, 12, 13, 18, 19, 23, 24};
    const int rows = 40;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int n = shapes[s].n, k = shapes[s].k;
        float *w = rand_buf((size_t)n * k, 0.5f), *b = rand_buf((size_t)n, 0.5f);
        float *x = rand_buf((size_t)rows * k, 1.0f), *y_in = rand_buf((size_t)rows * n, 1.0f);
        float *y_all = malloc(sizeof(float) * (size_t)rows * n);
        float *y_part = malloc(sizeof(float) * (size_t)rows * n);
        ck_assert(y_all && y_part);
        clipn_linear lin = {.n_out = n, .n_in = k, .weight = w, .bias = b};
        ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
        for (int epi = 0; epi < 4; epi++) {
            memcpy(y_all, y_in, sizeof(float) * (size_t)rows * n);
            clipn_linear_forward(&lin, x, rows, y_all, (clipn_epilogue)epi);
            for (size_t a = 0; a < sizeof ms / sizeof *ms; a++) {
                const int m = ms[a], r = (int)(a * 7 % (size_t)(rows - m + 1));
                memcpy(y_part, y_in + (size_t)r * n, sizeof(float) * (size_t)m * n);
                clipn_linear_forward(&lin, x + (size_t)r * k, m, y_part, (clipn_epilogue)epi);
                ck_assert_msg(!memcmp(y_part, y_all + (size_t)r * n, sizeof(float) * (size_t)m * n),
                              "%s: n=%d k=%d epi=%d rows %d..%d alone differ from a %d-row call",
                              isa, n, k, epi, r, r + m - 1, rows);
            }
        }
        clipn_linear_release(&lin);
        free(w);
        free(b);
        free(x);
        free(y_in);
        free(y_all);
        free(y_part);
    }
}
END_TEST

/* BF16 weights (AVX512_BF16 only): odd and real shapes within the BF16 budget; a BF16
 * layer run under another ISA falls back to fp32 OpenBLAS. */
START_TEST(test_gemm_bf16)
{
    if (clipn_kernels_set_weights("bf16") != 0) {
        ck_assert_str_eq(clipn_kernels_weights(), "fp32");
        return; /* no AVX512_BF16 here */
    }
    ck_assert_str_eq(clipn_kernels_weights(), "bf16");
    ck_assert_int_eq(clipn_kernels_select("avx512", "native"), 0);
    bf16_mode = 1;
    static const int ms[] = {1, 6, 7, 150};
    static const int ns[] = {1, 17, 64, 130};
    static const int ks[] = {1, 2, 7, 67, 400, 769};
    int e = 0;
    for (size_t a = 0; a < 4; a++)
        for (size_t c = 0; c < 4; c++)
            for (size_t d = 0; d < 6; d++) {
                e = (e + 1) % 8;
                free(check_linear(ms[a], ns[c], ks[d], (clipn_epilogue)(e % 4), e < 4, "bf16"));
            }
    free(check_linear(197, 3072, 768, CLIPN_EPI_GELU, 1, "bf16"));
    free(check_linear(10, 512, 2048, CLIPN_EPI_RESIDUAL, 1, "bf16"));
    bf16_mode = 0;

    /* packed as BF16, then forced to AVX2: fp32 OpenBLAS answer */
    if (clipn_kernels_isa_available("avx2")) {
        float *w = rand_buf(64 * 70, 0.5f), *x = rand_buf(3 * 70, 1.0f);
        float y[3 * 64], ref[3 * 64];
        clipn_linear lin = {.n_out = 64, .n_in = 70, .weight = w};
        ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
        ck_assert_int_eq(clipn_kernels_select("avx2", "native"), 0);
        clipn_linear_forward(&lin, x, 3, y, CLIPN_EPI_NONE);
        ck_assert_int_eq(clipn_kernels_select(NULL, "openblas"), 0);
        clipn_linear_forward(&lin, x, 3, ref, CLIPN_EPI_NONE);
        ck_assert_int_eq(memcmp(y, ref, sizeof y), 0);
        clipn_linear_release(&lin);
        free(w);
        free(x);
    }
    ck_assert_int_eq(clipn_kernels_set_weights("fp32"), 0);
    ck_assert_int_eq(clipn_kernels_set_weights("fp8"), -1);
    ck_assert_str_eq(clipn_kernels_weights(), "fp32");
}
END_TEST

START_TEST(test_prepare_rejects_bad_shapes)
{
    float w[4] = {0};
    clipn_linear lin = {.n_out = 2, .n_in = 0, .weight = w};
    ck_assert_int_eq(clipn_linear_prepare(&lin), -1);
    ck_assert_ptr_null(lin.packed);
    lin.n_in = 2;
    lin.weight = NULL;
    ck_assert_int_eq(clipn_linear_prepare(&lin), -1);
    clipn_linear_release(&lin); /* safe on an unprepared layer */
}
END_TEST

/* ------------------------------------------------------------------ elementwise */

static void sweep_points(float **out, size_t *n_out)
{
    /* dense over [-6, 6], plus tails, tiny and special values */
    const size_t dense = 1200001;
    size_t n = dense + 2000 + 16;
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    size_t c = 0;
    for (size_t i = 0; i < dense; i++)
        x[c++] = (float)(-6.0 + 12.0 * (double)i / (dense - 1));
    for (int i = 0; i < 1000; i++) {
        const float t = powf(10.0f, -38.0f + 42.0f * i / 999.0f); /* 1e-38 .. 1e4 */
        x[c++] = t;
        x[c++] = -t;
    }
    const float special[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 3.9192f, 3.9194f, -3.9194f, 0.8f,
                             -0.8f, 0.79999995f, 88.7f, -88.7f, 1e30f, -1e30f, 3.4e38f, -3.4e38f};
    for (size_t i = 0; i < 16; i++)
        x[c++] = special[i];
    *out = x;
    *n_out = c;
}

START_TEST(test_erf_sweep)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
    float *x;
    size_t n;
    sweep_points(&x, &n);
    float *y = malloc(n * sizeof *y);
    ck_assert_ptr_nonnull(y);
    clipn_erf(x, y, n);
    double worst = 0, worst_glibc = 0;
    for (size_t i = 0; i < n; i++) {
        const double ref = erf((double)x[i]);
        const double e = fabs(y[i] - ref) / ulp_of(ref);
        const double eg = fabs((double)y[i] - erff(x[i])) / ulp_of(ref);
        ck_assert_msg(e <= 3.0, "%s erf(%.9g) = %.9g, exact %.9g (%.2f ulp)", isa, x[i], y[i],
                      ref, e);
        worst = e > worst ? e : worst;
        worst_glibc = eg > worst_glibc ? eg : worst_glibc;
    }
    ck_assert_msg(worst_glibc <= 4.0, "%s erf vs erff %.2f ulp", isa, worst_glibc);
    /* odd, and NaN stays NaN */
    const float odd_in[3] = {NAN, 0.5f, -0.5f};
    float odd_out[3];
    clipn_erf(odd_in, odd_out, 3);
    ck_assert(isnan(odd_out[0]));
    ck_assert_float_eq(odd_out[1], -odd_out[2]);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_gelu_quickgelu_sweep)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
    float *x;
    size_t n;
    sweep_points(&x, &n);
    float *g = malloc(n * sizeof *g), *q = malloc(n * sizeof *q);
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(q);
    memcpy(g, x, n * sizeof *g);
    memcpy(q, x, n * sizeof *q);
    /* odd lengths exercise the vector tails */
    clipn_gelu_erf(g, n - 3);
    clipn_gelu_erf(g + n - 3, 3);
    clipn_quickgelu(q, n);
    for (size_t i = 0; i < n; i++) {
        if (fabsf(x[i]) > 1e6f)
            continue; /* x * (1 + erf) overflows differently; not a real activation */
        const double rg = gelu_d(x[i]);
        const double tg = 4 * ulp_of(rg) + 2 * U * fabs(x[i]);
        ck_assert_msg(fabs(g[i] - rg) <= tg, "%s gelu(%.9g) = %.9g, exact %.9g", isa, x[i], g[i],
                      rg);
        const double rq = quickgelu_d(x[i]);
        /* 1.702f * x rounds: exp's argument carries u |1.702 x| relative error */
        const double tq = 4 * ulp_of(rq) + 2 * U * fabs(1.702 * x[i]) * fabs(rq) + 1e-30;
        ck_assert_msg(fabs(q[i] - rq) <= tq, "%s quickgelu(%.9g) = %.9g, exact %.9g", isa, x[i],
                      q[i], rq);
    }
    free(x);
    free(g);
    free(q);
}
END_TEST

START_TEST(test_layernorm)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
    static const int dims[] = {1, 7, 16, 33, 64, 100, 512, 768, 1000};
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int rows = 5, dim = dims[di];
        float *x = rand_buf((size_t)rows * dim, 3.0f);
        for (int i = 0; i < rows * dim; i++)
            x[i] += 10.0f; /* an offset mean makes one-pass variance fail */
        float *g = rand_buf(dim, 2.0f), *b = rand_buf(dim, 1.0f);
        float *y = malloc(sizeof(float) * (size_t)rows * dim);
        ck_assert_ptr_nonnull(y);
        clipn_layernorm(x, y, rows, dim, g, b, 1e-5f);
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * dim;
            double mean = 0, var = 0;
            for (int i = 0; i < dim; i++)
                mean += xr[i];
            mean /= dim;
            for (int i = 0; i < dim; i++)
                var += (xr[i] - mean) * (xr[i] - mean);
            var /= dim;
            const double inv = 1.0 / sqrt(var + 1e-5);
            for (int i = 0; i < dim; i++) {
                const double xhat = (xr[i] - mean) * inv * g[i];
                const double ref = xhat + b[i];
                const double tol = 1e-6 * (fabs(xhat) + fabs(b[i])) + 1e-7;
                ck_assert_msg(fabs(y[(size_t)r * dim + i] - ref) <= tol,
                              "%s layernorm dim %d [%d,%d] = %.9g, ref %.9g", isa, dim, r, i,
                              y[(size_t)r * dim + i], ref);
            }
        }
        /* in place gives the same answer */
        clipn_layernorm(x, x, rows, dim, g, b, 1e-5f);
        ck_assert_int_eq(memcmp(x, y, sizeof(float) * (size_t)rows * dim), 0);
        free(x);
        free(g);
        free(b);
        free(y);
    }
}
END_TEST

/* ------------------------------------------------------------------ attention */

static void attention_ref(const float *qkv, double *out, int L, int W, int heads, int causal)
{
    const int hd = W / heads;
    const size_t ld = (size_t)3 * W;
    double *s = malloc(sizeof(double) * (size_t)L);
    ck_assert_ptr_nonnull(s);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < L; i++) {
            const int nk = causal ? i + 1 : L;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < nk; j++) {
                double d = 0;
                for (int c = 0; c < hd; c++)
                    d += (double)qkv[i * ld + h * hd + c] * qkv[j * ld + W + h * hd + c];
                s[j] = d / sqrt((double)hd);
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j < nk; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (int c = 0; c < hd; c++) {
                double o = 0;
                for (int j = 0; j < nk; j++)
                    o += s[j] * qkv[j * ld + 2 * W + h * hd + c];
                out[(size_t)i * W + h * hd + c] = o / sum;
            }
        }
    free(s);
}

START_TEST(test_attention)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
    static const struct { int L, W, heads; } cases[] = {
        {1, 64, 2}, {2, 64, 1}, {7, 48, 3}, {7, 40, 4} /* hd 10: fallback path */,
        {77, 512, 8}, {197, 768, 12}, {20, 128, 1} /* hd 128: two 64-channel chunks */,
        {33, 96, 2} /* hd 48: partial chunk */,
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const int L = cases[c].L, W = cases[c].W, heads = cases[c].heads;
            float *qkv = rand_buf((size_t)L * 3 * W, 2.0f);
            float *out = rand_buf((size_t)L * W, 1.0f);
            const size_t sf = clipn_attention_scratch_floats(L, W, heads);
            ck_assert_uint_gt(sf, 0);
            float *scratch = rand_buf(sf, 1.0f);
            double *ref = malloc(sizeof(double) * (size_t)L * W);
            ck_assert_ptr_nonnull(ref);
            clipn_attention(qkv, out, L, W, heads, causal, scratch);
            attention_ref(qkv, ref, L, W, heads, causal);
            for (size_t t = 0; t < (size_t)L * W; t++)
                ck_assert_msg(fabs(out[t] - ref[t]) <= 1e-5 * 2.0,
                              "%s attention L=%d W=%d heads=%d causal=%d [%zu] %.9g vs %.9g", isa,
                              L, W, heads, causal, t, out[t], ref[t]);
            free(qkv);
            free(out);
            free(scratch);
            free(ref);
        }
}
END_TEST

/* ------------------------------------------------------------------ each ISA vs portable */

/* "Numerically equal to the portable version": every ISA variant against the portable C
 * kernels on the same inputs (and the same packed weights: one layout for all). Both are
 * within the double-reference bounds above, so the bounds here are twice those; the
 * differences come from FMA contraction (the vector kernels round a*b+c once, the portable
 * C rounds twice: -std=c11 turns contraction off), the summation order (lanes, K^T blocks)
 * and the vector exp/erf against libm's expf/erff. Worst cases measured (the test prints
 * them; neon under qemu, avx2/avx512 on a Sapphire Rapids Xeon): GEMM 0.57 u(sqrt K + 4)
 * sum|x w| for all three, erf 2.0 ulp, GELU 1.1-1.4 and QuickGELU 2.0 (ulp + u|x|) units,
 * LayerNorm 1.8e-7 to 2.5e-7 relative, attention 5e-7 to 6e-7 max|v|. See docs/performance.md
 * "ARM (NEON)". */
static double gemm_mag(const float *x, const float *w, const float *b, const float *y_in,
                       int i, int j, int k, int n, double *acc_out)
{
    double acc = 0, mag = 0;
    for (int kk = 0; kk < k; kk++) {
        const double p = (double)x[(size_t)i * k + kk] * w[(size_t)j * k + kk];
        acc += p;
        mag += fabs(p);
    }
    if (b) {
        acc += b[j];
        mag += fabs(b[j]);
    }
    if (y_in) {
        acc += y_in[(size_t)i * n + j];
        mag += fabs(y_in[(size_t)i * n + j]);
    }
    *acc_out = acc;
    return mag;
}

START_TEST(test_isa_vs_portable)
{
    const char *isa = ISAS[_i];
    if (_i == 0 || !clipn_kernels_isa_available(isa))
        return;
    /* worst differences, in units of the bound's scale */
    double gemm_worst = 0;   /* |isa - portable| / (u (sqrt K + 4) mag) */
    double erf_worst = 0;    /* ulp of the exact value */
    double gelu_worst = 0, quick_worst = 0, ln_worst = 0, attn_worst = 0;

    /* GEMM: odd shapes (MR/NR tails, K > KC), every epilogue, bias or not */
    static const int ms[] = {1, 5, 6, 7, 13, 67};
    static const int ns[] = {1, 15, 16, 17, 63, 64, 65, 130};
    static const int ks[] = {1, 7, 64, 67, 400};
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t c = 0; c < sizeof ns / sizeof *ns; c++)
            for (size_t d = 0; d < sizeof ks / sizeof *ks; d++)
                for (int e = 0; e < 4; e++) {
                    const int m = ms[a], n = ns[c], k = ks[d], with_bias = (a + c + d + e) % 2;
                    const clipn_epilogue epi = (clipn_epilogue)e;
                    float *w = rand_buf((size_t)n * k, 0.5f), *x = rand_buf((size_t)m * k, 1.0f);
                    float *b = with_bias ? rand_buf((size_t)n, 0.5f) : NULL;
                    float *y0 = rand_buf((size_t)m * n, 1.0f);
                    float *y1 = malloc(sizeof(float) * (size_t)m * n);
                    float *y_in = malloc(sizeof(float) * (size_t)m * n);
                    ck_assert_ptr_nonnull(y1);
                    ck_assert_ptr_nonnull(y_in);
                    memcpy(y1, y0, sizeof(float) * (size_t)m * n);
                    memcpy(y_in, y0, sizeof(float) * (size_t)m * n);
                    clipn_linear lin = {.n_out = n, .n_in = k, .weight = w, .bias = b};
                    ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
                    ck_assert_int_eq(clipn_kernels_select("portable", "native"), 0);
                    clipn_linear_forward(&lin, x, m, y0, epi);
                    ck_assert_int_eq(clipn_kernels_select(isa, "native"), 0);
                    clipn_linear_forward(&lin, x, m, y1, epi);
                    const double scale = U * (sqrt((double)k) + 4.0);
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++) {
                            double acc;
                            const double mag = gemm_mag(x, w, b, epi == CLIPN_EPI_RESIDUAL ? y_in : NULL,
                                                        i, j, k, n, &acc);
                            const double got = y1[(size_t)i * n + j], want = y0[(size_t)i * n + j];
                            double tol = 8 * scale * mag; /* 2 x the vs-double bound */
                            if (epi == CLIPN_EPI_GELU || epi == CLIPN_EPI_QUICKGELU)
                                tol = 1.2 * tol + 8 * ulp_of(want) + 4 * U * fabs(acc);
                            else
                                gemm_worst = fmax(gemm_worst, fabs(got - want) / (scale * mag + 1e-300));
                            if (!(fabs(got - want) <= tol))
                                ck_abort_msg("%s vs portable: m=%d n=%d k=%d epi=%d bias=%d "
                                             "y[%d,%d] = %.9g vs %.9g (tol %.3g)", isa, m, n, k,
                                             e, with_bias, i, j, got, want, tol);
                        }
                    clipn_linear_release(&lin);
                    free(w);
                    free(x);
                    free(b);
                    free(y0);
                    free(y1);
                    free(y_in);
                }

    /* erf, GELU, QuickGELU over the dense sweep (odd length: vector tails) */
    float *x;
    size_t n;
    sweep_points(&x, &n);
    float *r0 = malloc(n * sizeof *r0), *r1 = malloc(n * sizeof *r1);
    ck_assert_ptr_nonnull(r0);
    ck_assert_ptr_nonnull(r1);
    for (int f = 0; f < 3; f++) {
        for (int v = 0; v < 2; v++) {
            float *r = v ? r1 : r0;
            ck_assert_int_eq(clipn_kernels_select(v ? isa : "portable", NULL), 0);
            if (f == 0) {
                clipn_erf(x, r, n);
            } else {
                memcpy(r, x, n * sizeof *r);
                if (f == 1)
                    clipn_gelu_erf(r, n);
                else
                    clipn_quickgelu(r, n);
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (fabsf(x[i]) > 1e6f)
                continue; /* as the sweep test: not a real activation */
            const double d = fabs((double)r1[i] - r0[i]);
            if (f == 0) {
                /* each within 3 ulp of the exact erf, glibc's erff within 1 */
                const double ulps = d / ulp_of(erf((double)x[i]));
                ck_assert_msg(ulps <= 4.0, "%s erf(%.9g): %.9g vs portable %.9g", isa, x[i],
                              r1[i], r0[i]);
                erf_worst = fmax(erf_worst, ulps);
            } else if (f == 1) {
                const double scale = ulp_of(gelu_d(x[i])) + U * fabs(x[i]);
                ck_assert_msg(d <= 8 * scale, "%s gelu(%.9g): %.9g vs portable %.9g", isa, x[i],
                              r1[i], r0[i]);
                gelu_worst = fmax(gelu_worst, d / scale);
            } else {
                const double rq = quickgelu_d(x[i]);
                const double scale = ulp_of(rq) + U * fabs(1.702 * x[i]) * fabs(rq) + 1e-30;
                ck_assert_msg(d <= 8 * scale, "%s quickgelu(%.9g): %.9g vs portable %.9g", isa,
                              x[i], r1[i], r0[i]);
                quick_worst = fmax(quick_worst, d / scale);
            }
        }
    }
    free(x);
    free(r0);
    free(r1);

    /* LayerNorm: dims around the vector widths, an offset mean */
    static const int dims[] = {1, 3, 4, 5, 15, 16, 17, 33, 100, 512, 768, 1000};
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int rows = 3, dim = dims[di];
        float *lx = rand_buf((size_t)rows * dim, 3.0f);
        for (int i = 0; i < rows * dim; i++)
            lx[i] += 10.0f;
        float *g = rand_buf(dim, 2.0f), *b = rand_buf(dim, 1.0f);
        float *y0 = malloc(sizeof(float) * (size_t)rows * dim), *y1 = malloc(sizeof(float) * (size_t)rows * dim);
        ck_assert_ptr_nonnull(y0);
        ck_assert_ptr_nonnull(y1);
        ck_assert_int_eq(clipn_kernels_select("portable", NULL), 0);
        clipn_layernorm(lx, y0, rows, dim, g, b, 1e-5f);
        ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
        clipn_layernorm(lx, y1, rows, dim, g, b, 1e-5f);
        for (int i = 0; i < rows * dim; i++) {
            /* each within 1e-6 (|xhat g| + |b|) + 1e-7 of double; |xhat g| <~ |y - b| */
            const double mag = fabs((double)y0[i] - b[i % dim]) + fabs(b[i % dim]) + 0.1;
            const double d = fabs((double)y1[i] - y0[i]);
            ck_assert_msg(d <= 2e-6 * mag, "%s layernorm dim %d [%d]: %.9g vs portable %.9g",
                          isa, dim, i, y1[i], y0[i]);
            ln_worst = fmax(ln_worst, d / mag);
        }
        free(lx);
        free(g);
        free(b);
        free(y0);
        free(y1);
    }

    /* attention, causal and not: CLIP's head sizes, tails of the 4-row and 16-key blocks,
     * keys a whole number of 64-key blocks (64) or one past (129), a head size no vector
     * kernel takes (fallback) */
    static const struct { int L, W, heads; } cases[] = {
        {1, 64, 2}, {2, 64, 1}, {5, 48, 3}, {7, 40, 4}, {17, 128, 2}, {33, 96, 2},
        {77, 512, 8}, {50, 768, 12}, {20, 128, 1}, {9, 36, 3}, {64, 128, 2}, {129, 64, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const int L = cases[c].L, W = cases[c].W, heads = cases[c].heads;
            float *qkv = rand_buf((size_t)L * 3 * W, 2.0f);
            float *o0 = rand_buf((size_t)L * W, 1.0f), *o1 = rand_buf((size_t)L * W, 1.0f);
            const size_t sf = clipn_attention_scratch_floats(L, W, heads);
            float *scratch = rand_buf(sf, 1.0f);
            ck_assert_int_eq(clipn_kernels_select("portable", NULL), 0);
            clipn_attention(qkv, o0, L, W, heads, causal, scratch);
            ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
            clipn_attention(qkv, o1, L, W, heads, causal, scratch);
            for (size_t t = 0; t < (size_t)L * W; t++) {
                /* outputs are convex combinations of v rows, |v| < 2: 2 x 1e-5 max |v| */
                const double d = fabs((double)o1[t] - o0[t]);
                ck_assert_msg(d <= 4e-5, "%s attention L=%d W=%d heads=%d causal=%d [%zu]: "
                              "%.9g vs portable %.9g", isa, L, W, heads, causal, t, o1[t], o0[t]);
                attn_worst = fmax(attn_worst, d / 2.0);
            }
            free(qkv);
            free(o0);
            free(o1);
            free(scratch);
        }
    printf("test_kernels: %s vs portable, worst: gemm %.2f u(sqrtK+4)|xw| (limit 8), "
           "erf %.2f ulp (4), gelu %.2f (8), quickgelu %.2f (8) ulp+u|x|, layernorm %.2g "
           "(2e-6), attention %.2g max|v| (2e-5)\n",
           isa, gemm_worst, erf_worst, gelu_worst, quick_worst, ln_worst, attn_worst);
    clipn_kernels_reset_from_env();
}
END_TEST

/* ------------------------------------------------------------------ dispatch, threads */

START_TEST(test_dispatch_select)
{
    const char *best = clipn_kernels_init();
    ck_assert(clipn_kernels_isa_available("portable"));
    ck_assert(clipn_kernels_isa_available(best));
    ck_assert(!clipn_kernels_isa_available("sse9"));
    ck_assert(!clipn_kernels_isa_available(NULL));
#if defined(__aarch64__)
    ck_assert(clipn_kernels_isa_available("neon")); /* AdvSIMD is baseline on aarch64 */
#else
    ck_assert(!clipn_kernels_isa_available("neon"));
#endif
    ck_assert_int_eq(clipn_kernels_select("sse9", NULL), -1);
    ck_assert_str_eq(clipn_kernels_isa(), best);
    ck_assert_int_eq(clipn_kernels_select(NULL, "mkl"), -1);
    ck_assert_int_eq(clipn_kernels_select("portable", "openblas"), 0);
    ck_assert_str_eq(clipn_kernels_isa(), "portable");
    ck_assert_str_eq(clipn_kernels_gemm_backend(), "openblas");
    ck_assert_int_eq(clipn_kernels_select(best, "native"), 0);
    ck_assert_str_eq(clipn_kernels_gemm_backend(), "native");
}
END_TEST

static void env_check(const char *isa_env, const char *gemm_env, const char *want_isa,
                      const char *want_gemm, int want_note)
{
    setenv("CLIPN_ISA", isa_env, 1);
    setenv("CLIPN_GEMM", gemm_env, 1);
    clipn_kernels_reset_from_env();
    ck_assert_str_eq(clipn_kernels_isa(), want_isa);
    ck_assert_str_eq(clipn_kernels_gemm_backend(), want_gemm);
    ck_assert_msg((*clipn_kernels_note() != 0) == want_note, "note '%s' for %s/%s",
                  clipn_kernels_note(), isa_env, gemm_env);
}

START_TEST(test_dispatch_env)
{
    const char *best = clipn_kernels_isa_available("avx512") ? "avx512"
                     : clipn_kernels_isa_available("avx2") ? "avx2"
                     : clipn_kernels_isa_available("neon") ? "neon" : "portable";
    env_check("portable", "openblas", "portable", "openblas", 0);
    env_check("", "", best, "native", 0);
    env_check("bogus", "native", best, "native", 1);
    env_check("portable", "cublas", "portable", "native", 1);
    unsetenv("CLIPN_ISA");
    unsetenv("CLIPN_GEMM");
    clipn_kernels_reset_from_env();
    ck_assert_str_eq(clipn_kernels_isa(), best);
}
END_TEST

typedef struct worker_arg {
    const clipn_linear *lin;
    const float *x;
    float *y;
    int m, reps;
    float *attn_qkv, *attn_out, *attn_scratch;
} worker_arg;

static void *concurrent_worker(void *p)
{
    worker_arg *a = p;
    for (int r = 0; r < a->reps; r++) {
        clipn_linear_forward(a->lin, a->x, a->m, a->y, CLIPN_EPI_GELU);
        clipn_attention(a->attn_qkv, a->attn_out, 77, 512, 8, 1, a->attn_scratch);
    }
    return NULL;
}

/* 4 user threads share one packed layer while the pool has 2 threads: results must be
 * bitwise those of a lone call (each output element is computed by one thread, in one
 * order, whatever the split). */
START_TEST(test_concurrent_callers)
{
    const char *best = clipn_kernels_init();
    ck_assert_int_eq(clipn_kernels_select(best, "native"), 0);
    clipn_kernels_set_threads(2);
    ck_assert_int_eq(clipn_kernels_threads(), 2);
    const int m = 197, n = 768, k = 768;
    float *w = rand_buf((size_t)n * k, 0.05f), *b = rand_buf(n, 0.1f);
    float *x = rand_buf((size_t)m * k, 1.0f);
    clipn_linear lin = {.n_out = n, .n_in = k, .weight = w, .bias = b};
    ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
    float *qkv = rand_buf((size_t)77 * 3 * 512, 1.0f);
    const size_t sf = clipn_attention_scratch_floats(77, 512, 8);
    float *want = malloc(sizeof(float) * (size_t)m * n), *want_attn = malloc(sizeof(float) * 77 * 512);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(want_attn);
    float *scratch0 = rand_buf(sf, 1.0f);
    clipn_kernels_set_threads(1);
    clipn_linear_forward(&lin, x, m, want, CLIPN_EPI_GELU);
    clipn_attention(qkv, want_attn, 77, 512, 8, 1, scratch0);
    clipn_kernels_set_threads(2);

    enum { T = 4 };
    pthread_t th[T];
    worker_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (worker_arg){&lin, x, malloc(sizeof(float) * (size_t)m * n), m, 20, qkv,
                               malloc(sizeof(float) * 77 * 512), rand_buf(sf, 1.0f)};
        ck_assert_ptr_nonnull(args[t].y);
        ck_assert_ptr_nonnull(args[t].attn_out);
        ck_assert_int_eq(pthread_create(&th[t], NULL, concurrent_worker, &args[t]), 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        ck_assert_int_eq(memcmp(args[t].y, want, sizeof(float) * (size_t)m * n), 0);
        ck_assert_int_eq(memcmp(args[t].attn_out, want_attn, sizeof(float) * 77 * 512), 0);
        free(args[t].y);
        free(args[t].attn_out);
        free(args[t].attn_scratch);
    }
    clipn_linear_release(&lin);
    free(w);
    free(b);
    free(x);
    free(qkv);
    free(want);
    free(want_attn);
    free(scratch0);
}
END_TEST

/* Loading with the native GEMM drops (MADV_DONTNEED) the packed weights' pages of the file
 * mapping. Anything that still reads them must see the file's values again: the model
 * loaded natively, then run with OpenBLAS (which reads lin->weight in the mapping), must
 * match bit for bit a model loaded and run with OpenBLAS from the start. */
START_TEST(test_dropped_weight_pages_refault)
{
    const char *path = "tests/fixtures/model/tiny_clipn.safetensors";
    const char *best = clipn_kernels_init();
    clipn_error err;
    clipn_model *native = NULL, *plain = NULL;
    ck_assert_int_eq(clipn_kernels_select(best, "native"), 0);
    ck_assert_msg(clipn_model_load(path, NULL, &native, &err) == CLIPN_OK, "%s", err.message);
    ck_assert_int_eq(clipn_kernels_select(NULL, "openblas"), 0);
    ck_assert_msg(clipn_model_load(path, NULL, &plain, &err) == CLIPN_OK, "%s", err.message);
    const clipn_config *c = clipn_model_config(native);
    const int n = 2, E = c->embed_dim;
    const size_t per_image = 3 * (size_t)c->image_size * c->image_size;
    float *pixels = rand_buf(per_image * n, 2.0f);
    float out[2][2 * 64];
    ck_assert_int_le(E, 64);
    clipn_model *models[2] = {native, plain};
    for (int i = 0; i < 2; i++) {
        clipn_ctx *ctx = NULL;
        ck_assert_int_eq(clipn_ctx_new(models[i], NULL, &ctx, &err), CLIPN_OK);
        ck_assert_int_eq(clipn_encode_image(ctx, pixels, n, out[i], &err), CLIPN_OK);
        clipn_ctx_free(ctx);
    }
    ck_assert_int_eq(memcmp(out[0], out[1], sizeof(float) * (size_t)n * E), 0);
    ck_assert_int_eq(clipn_kernels_select(best, "native"), 0);
    clipn_model_free(native);
    clipn_model_free(plain);
    free(pixels);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_gemm_odd_shapes, 0, N_ISAS);
    tcase_add_test(tc, test_gemm_openblas_backend);
    tcase_add_test(tc, test_gemm_small_m);
    tcase_add_loop_test(tc, test_gemm_rows_independent_of_m, 0, N_ISAS);
    tcase_add_test(tc, test_prepare_rejects_bad_shapes);
    tcase_add_test(tc, test_gemm_bf16);
    tcase_add_loop_test(tc, test_erf_sweep, 0, N_ISAS);
    tcase_add_loop_test(tc, test_gelu_quickgelu_sweep, 0, N_ISAS);
    tcase_add_loop_test(tc, test_layernorm, 0, N_ISAS);
    tcase_add_loop_test(tc, test_attention, 0, N_ISAS);
    tcase_add_loop_test(tc, test_isa_vs_portable, 0, N_ISAS);
    tcase_add_loop_test(tc, test_resample_isa_vs_portable, 0, N_ISAS);
    tcase_add_test(tc, test_dispatch_select);
    tcase_add_test(tc, test_dispatch_env);
    tcase_add_test(tc, test_dropped_weight_pages_refault);
    suite_add_tcase(s, tc);
    /* Tagged "slow": make test-arm leaves them out under qemu (CK_EXCLUDE_TAGS=slow), where
     * they take ~45 s each; every other case runs there. */
    TCase *real = tcase_create("real_shapes");
    tcase_set_tags(real, "slow");
    tcase_set_timeout(real, 300);
    tcase_add_test(real, test_gemm_real_shapes);
    suite_add_tcase(s, real);
    TCase *threads = tcase_create("threads");
    tcase_set_tags(threads, "slow");
    tcase_set_timeout(threads, 300);
    tcase_add_test(threads, test_concurrent_callers);
    suite_add_tcase(s, threads);
    return s;
}
