/* INT8 linear layers (kernels/gemm_int8.c), the same tests for every variant this CPU runs
 * (portable, avx2, avx512 -> the AVX2 kernel, neon -> SDOT under qemu-aarch64 -cpu max):
 *   - against a double-precision sum over an independent quantization of the same inputs
 *     (the scheme of kernels/gemm_int8.h): <= 1e-5 of the sum of magnitudes;
 *   - bitwise equal to the portable kernel (same int32 sums, same fmaf order), GELU within
 *     the ISA's erf differences;
 *   - rows the same whatever m (small-m and large-m drivers), NaN rows stay NaN;
 *   - against fp32: the quantization error stays small (relative Frobenius error).
 * And models loaded at CLIPN_PRECISION_INT8: the precision query, the features' cosine
 * to fp32 on the small test model. */
#include "testutil.h"

#include "../kernels/kernels.h"
#include "../kernels/kernels_control.h"
#include "clipn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>

static const char *const ISAS[] = {"portable", "avx2", "avx512", "neon"};
#define N_ISAS 4
/* loop index -> (ISA, activation bits): W8A8 for 0..3, W8A16 for 4..7 */
#define N_VARIANTS (2 * N_ISAS)
#define ISA_OF(i) ISAS[(i) % N_ISAS]
#define BITS_OF(i) ((i) < N_ISAS ? 8 : 16)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23)) - 1.0);
}

static float *rand_vec(size_t n, float scale)
{
    float *v = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

/* the scheme, written again: scale = max|v| / qmax, q = v * qmax / max rounded to nearest
 * even; qmax 127 (weights, int8 activations) or, for int16 activations, 32767 or less so
 * that a group's int32 sum cannot overflow */
static void quantize_ref(const float *v, int n, int qmax, int32_t *q, float *scale)
{
    float amax = 0;
    for (int i = 0; i < n; i++)
        amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
    *scale = amax / (float)qmax;
    const float inv = amax > 0 ? (float)qmax / amax : 0.0f;
    for (int i = 0; i < n; i++)
        q[i] = (int32_t)lrintf(v[i] * inv); /* nearest even, |v * inv| <= qmax */
}

static int act_qmax(int bits, int g)
{
    if (bits == 8)
        return 127;
    const long q = 2147483647L / ((long)g * 127);
    return q < 32767 ? (int)q : 32767;
}

static int group_for(int k, int group)
{
    return k < group ? (k + 15) / 16 * 16 : group;
}

/* y_ref (before the activation) and its magnitude, in double */
static void reference(const float *x, const float *w, const float *b, const float *y_in, int m,
                      int n, int k, int group, int bits, double *ref, double *mag)
{
    const int g = group_for(k, group), ng = (k + g - 1) / g;
    int32_t *qx = malloc(sizeof(int32_t) * (size_t)m * k), *qw = malloc(sizeof(int32_t) * (size_t)n * k);
    float *sx = malloc(sizeof(float) * (size_t)m * ng), *sw = malloc(sizeof(float) * (size_t)n * ng);
    for (int r = 0; r < m; r++)
        for (int gi = 0; gi < ng; gi++) {
            const int k0 = gi * g, len = k0 + g < k ? g : k - k0;
            quantize_ref(x + (size_t)r * k + k0, len, act_qmax(bits, g), qx + (size_t)r * k + k0,
                         &sx[r * ng + gi]);
        }
    for (int j = 0; j < n; j++)
        for (int gi = 0; gi < ng; gi++) {
            const int k0 = gi * g, len = k0 + g < k ? g : k - k0;
            quantize_ref(w + (size_t)j * k + k0, len, 127, qw + (size_t)j * k + k0, &sw[j * ng + gi]);
        }
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) {
            double acc = b ? b[j] : 0, am = b ? fabs(b[j]) : 0;
            if (y_in) {
                acc += y_in[(size_t)r * n + j];
                am += fabs(y_in[(size_t)r * n + j]);
            }
            for (int gi = 0; gi < ng; gi++) {
                long long s = 0;
                const int k0 = gi * g, k1 = k0 + g < k ? k0 + g : k;
                for (int kk = k0; kk < k1; kk++)
                    s += (long long)qx[(size_t)r * k + kk] * qw[(size_t)j * k + kk];
                const double t = (double)s * sx[r * ng + gi] * sw[j * ng + gi];
                acc += t;
                am += fabs(t);
            }
            ref[(size_t)r * n + j] = acc;
            mag[(size_t)r * n + j] = am;
        }
    free(qx), free(qw), free(sx), free(sw);
}

static double gelu_d(double v) { return 0.5 * v * (1 + erf(v / sqrt(2.0))); }
static double quick_d(double v) { return v / (1 + exp(-1.702 * v)); }

typedef struct shape {
    int m, n, k, group;
} shape;

static const shape SHAPES[] = {
    {1, 1, 1, 64},     {1, 64, 16, 64},   {3, 65, 17, 16},   {4, 63, 64, 64},
    {5, 130, 100, 32}, {11, 200, 768, 64}, {24, 96, 129, 16}, {25, 64, 1100, 64},
    {65, 70, 96, 32},  {130, 129, 2100, 128}, {197, 64, 48, 1024}, {7, 33, 3072, 64},
    {6, 70, 2100, 1024},
};
#define N_SHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static void run_linear_bits(const char *isa, int bits, const float *w, const float *b, int n,
                            int k, int group, const float *x, int m, float *y, clipn_epilogue epi)
{
    ck_assert_int_eq(clipn_kernels_select(isa, "native"), 0);
    clipn_linear lin = {.n_out = n, .n_in = k, .weight = w, .bias = b,
                        .format = CLIPN_WEIGHTS_INT8, .int8_group = group, .int8_act_bits = bits};
    ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
    ck_assert_int_eq(clipn_linear_format(&lin), CLIPN_WEIGHTS_INT8);
    clipn_linear_forward(&lin, x, m, y, epi);
    clipn_linear_release(&lin);
}

static int bits; /* the running case's activation bits (8 or 16) */
static void run_linear(const char *isa, const float *w, const float *b, int n, int k, int group,
                       const float *x, int m, float *y, clipn_epilogue epi)
{
    run_linear_bits(isa, bits, w, b, n, k, group, x, m, y, epi);
}

START_TEST(test_int8_vs_reference)
{
    const char *isa = ISA_OF(_i);
    bits = BITS_OF(_i);
    if (!clipn_kernels_isa_available(isa))
        return;
    for (int si = 0; si < N_SHAPES; si++) {
        const shape sh = SHAPES[si];
        const size_t mn = (size_t)sh.m * sh.n;
        float *x = rand_vec((size_t)sh.m * sh.k, 2.0f), *w = rand_vec((size_t)sh.n * sh.k, 0.1f);
        float *b = rand_vec((size_t)sh.n, 0.5f), *y_in = rand_vec(mn, 1.0f);
        float *y = malloc(mn * sizeof(float));
        double *ref = malloc(mn * sizeof(double)), *mag = malloc(mn * sizeof(double));
        for (int epi = 0; epi < 4; epi++) {
            memcpy(y, y_in, mn * sizeof(float));
            run_linear(isa, w, si % 2 ? b : NULL, sh.n, sh.k, sh.group, x, sh.m, y, epi);
            reference(x, w, si % 2 ? b : NULL, epi == CLIPN_EPI_RESIDUAL ? y_in : NULL, sh.m,
                      sh.n, sh.k, sh.group, bits, ref, mag);
            for (size_t t = 0; t < mn; t++) {
                double want = ref[t], tol = 1e-5 * mag[t] + 1e-30;
                if (epi == CLIPN_EPI_GELU)
                    want = gelu_d(ref[t]), tol = tol + 1e-6 * fabs(want) + 1e-7;
                else if (epi == CLIPN_EPI_QUICKGELU)
                    want = quick_d(ref[t]), tol = tol + 1e-6 * fabs(want) + 1e-7;
                ck_assert_msg(fabs(y[t] - want) <= tol,
                              "%s a%d m=%d n=%d k=%d g=%d epi=%d y[%zu] = %.9g, ref %.9g (tol %.3g)",
                              isa, bits, sh.m, sh.n, sh.k, sh.group, epi, t, y[t], want, tol);
            }
        }
        free(x), free(w), free(b), free(y_in), free(y), free(ref), free(mag);
    }
    clipn_kernels_reset_from_env();
}
END_TEST

START_TEST(test_int8_variants_agree)
{
    const char *isa = ISA_OF(_i);
    bits = BITS_OF(_i);
    if (_i % N_ISAS == 0 || !clipn_kernels_isa_available(isa))
        return;
    for (int si = 0; si < N_SHAPES; si++) {
        const shape sh = SHAPES[si];
        const size_t mn = (size_t)sh.m * sh.n;
        float *x = rand_vec((size_t)sh.m * sh.k, 3.0f), *w = rand_vec((size_t)sh.n * sh.k, 0.2f);
        float *b = rand_vec((size_t)sh.n, 0.5f), *y_in = rand_vec(mn, 1.0f);
        float *y0 = malloc(mn * sizeof(float)), *y1 = malloc(mn * sizeof(float));
        for (int epi = 0; epi < 4; epi++) {
            memcpy(y0, y_in, mn * sizeof(float));
            memcpy(y1, y_in, mn * sizeof(float));
            run_linear("portable", w, b, sh.n, sh.k, sh.group, x, sh.m, y0, epi);
            run_linear(isa, w, b, sh.n, sh.k, sh.group, x, sh.m, y1, epi);
            for (size_t t = 0; t < mn; t++) {
                /* the activations are the ISA's own erf/exp (tests/test_kernels.c) */
                const double tol = epi == CLIPN_EPI_GELU || epi == CLIPN_EPI_QUICKGELU
                                       ? 1e-6 * fabs(y0[t]) + 1e-6 : 0.0;
                ck_assert_msg(fabs(y1[t] - y0[t]) <= tol,
                              "%s a%d m=%d n=%d k=%d epi=%d y[%zu] = %.9g, portable %.9g", isa, bits, sh.m,
                              sh.n, sh.k, epi, t, y1[t], y0[t]);
            }
        }
        free(x), free(w), free(b), free(y_in), free(y0), free(y1);
    }
    clipn_kernels_reset_from_env();
}
END_TEST

/* a row's result does not depend on how many rows came with it (small-m vs blocked) */
START_TEST(test_int8_rows_independent_of_m)
{
    const char *isa = ISA_OF(_i);
    bits = BITS_OF(_i);
    if (!clipn_kernels_isa_available(isa))
        return;
    const int n = 130, k = 2100, M = 150;
    float *x = rand_vec((size_t)M * k, 1.0f), *w = rand_vec((size_t)n * k, 0.1f);
    float *b = rand_vec((size_t)n, 0.5f);
    float *all = malloc(sizeof(float) * (size_t)M * n), *part = malloc(sizeof(float) * (size_t)M * n);
    run_linear(isa, w, b, n, k, 64, x, M, all, CLIPN_EPI_GELU);
    const int starts[] = {0, 1, 5, 77, 140}, counts[] = {1, 4, 24, 25, 10};
    for (int c = 0; c < 5; c++) {
        run_linear(isa, w, b, n, k, 64, x + (size_t)starts[c] * k, counts[c], part,
                   CLIPN_EPI_GELU);
        ck_assert_msg(memcmp(part, all + (size_t)starts[c] * n,
                             sizeof(float) * (size_t)counts[c] * n) == 0,
                      "%s rows %d..%d differ from the m=%d call", isa, starts[c],
                      starts[c] + counts[c] - 1, M);
    }
    free(x), free(w), free(b), free(all), free(part);
    clipn_kernels_reset_from_env();
}
END_TEST

START_TEST(test_int8_nan_and_zero_rows)
{
    const char *isa = ISA_OF(_i);
    bits = BITS_OF(_i);
    if (!clipn_kernels_isa_available(isa))
        return;
    const int n = 70, k = 100, m = 6;
    float *x = rand_vec((size_t)m * k, 1.0f), *w = rand_vec((size_t)n * k, 0.1f);
    float *b = rand_vec((size_t)n, 0.5f), *y = malloc(sizeof(float) * (size_t)m * n);
    x[2 * k + 37] = NAN;
    memset(x + 4 * k, 0, sizeof(float) * k);
    run_linear(isa, w, b, n, k, 32, x, m, y, CLIPN_EPI_NONE);
    for (int j = 0; j < n; j++) {
        ck_assert_msg(isnan(y[2 * n + j]), "%s: NaN input row gave %g", isa, y[2 * n + j]);
        ck_assert_msg(y[4 * n + j] == b[j], "%s: zero row gave %g, bias %g", isa, y[4 * n + j], b[j]);
        ck_assert(isfinite(y[j]) && isfinite(y[5 * n + j]));
    }
    free(x), free(w), free(b), free(y);
    clipn_kernels_reset_from_env();
}
END_TEST

/* int16 activations with the largest group: every product at its maximum, |sum| just
 * below 2^31 (activations are capped at clipn_q16_qmax(1024) = 16513, not 32767) */
START_TEST(test_int8_a16_no_overflow)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    const int n = 64, k = 2048, m = 4;
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
    float *y = malloc(sizeof(float) * m * n);
    for (int i = 0; i < m * k; i++)
        x[i] = i / k % 2 ? -1.0f : 1.0f;
    for (int i = 0; i < n * k; i++)
        w[i] = 1.0f;
    run_linear_bits(isa, 16, w, NULL, n, k, 1024, x, m, y, CLIPN_EPI_NONE);
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++)
            ck_assert_msg(fabsf(y[r * n + j] - (r % 2 ? -2048.0f : 2048.0f)) < 1e-2f,
                          "%s: y[%d][%d] = %g", isa, r, j, y[r * n + j]);
    free(x), free(w), free(y);
    clipn_kernels_reset_from_env();
}
END_TEST

/* the quantization error itself: small against fp32 on Gaussian-like data, and grouping
 * keeps one huge channel from flattening the rest of the row */
static double rel_error(const float *x, const float *w, int m, int n, int k, int group)
{
    float *y = malloc(sizeof(float) * (size_t)m * n);
    run_linear_bits(clipn_kernels_init(), bits, w, NULL, n, k, group, x, m, y, CLIPN_EPI_NONE);
    double num = 0, den = 0;
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) {
            double e = 0;
            for (int kk = 0; kk < k; kk++)
                e += (double)x[(size_t)r * k + kk] * w[(size_t)j * k + kk];
            num += (y[(size_t)r * n + j] - e) * (y[(size_t)r * n + j] - e);
            den += e * e;
        }
    free(y);
    return sqrt(num / den);
}

START_TEST(test_int8_error_vs_fp32)
{
    const int m = 16, n = 64, k = 768;
    float *x = rand_vec((size_t)m * k, 1.0f), *w = rand_vec((size_t)n * k, 0.05f);
    bits = 8;
    const double plain = rel_error(x, w, m, n, k, 64);
    ck_assert_msg(plain < 0.01, "relative error %.4g", plain);
    /* int16 activations: the weights' error alone, about 1/sqrt(2) of W8A8's */
    bits = 16;
    const double a16 = rel_error(x, w, m, n, k, 64);
    bits = 8;
    printf("int8 relative error: W8A8 %.4f, W8A16 %.4f\n", plain, a16);
    ck_assert_msg(a16 < 0.8 * plain, "W8A16 error %.4g, W8A8 %.4g", a16, plain);
    for (int r = 0; r < m; r++) /* three channels x30, as the outlier test model */
        for (int c = 0; c < 3; c++)
            x[(size_t)r * k + 100 + 250 * c] *= 30.0f;
    const double g32 = rel_error(x, w, m, n, k, 32), g64 = rel_error(x, w, m, n, k, 64);
    const double g1024 = rel_error(x, w, m, n, k, 1024);
    printf("int8 relative error: plain %.4f; 3 channels x30: group 32 %.4f, 64 %.4f, "
           "whole row %.4f\n", plain, g32, g64, g1024);
    ck_assert_msg(g64 < 0.025 && g64 < g1024 / 2, "outliers: group 64 %.4g, whole row %.4g",
                  g64, g1024);
    free(x), free(w);
}
END_TEST

START_TEST(test_int8_prepare_rejects)
{
    float w[64] = {0};
    clipn_linear lin = {.n_out = 2, .n_in = 32, .weight = w, .format = CLIPN_WEIGHTS_INT8};
    const int bad_groups[] = {8, 24, 2048, -16};
    for (int i = 0; i < 4; i++) {
        lin.int8_group = bad_groups[i];
        ck_assert_int_eq(clipn_linear_prepare(&lin), -1);
        ck_assert_ptr_null(lin.packed);
    }
    lin.int8_group = 0;
    lin.int8_act_bits = 12;
    ck_assert_int_eq(clipn_linear_prepare(&lin), -1);
    lin.int8_act_bits = 16;
    lin.n_in = 0;
    ck_assert_int_eq(clipn_linear_prepare(&lin), -1);
    lin.n_in = 32;
    ck_assert_int_eq(clipn_linear_prepare(&lin), 0);
    /* 1 panel: header, 1 group x 64 scales, 32 x 64 bytes: about a quarter of fp32 */
    ck_assert_uint_eq(lin.packed_bytes, 64 + 64 * 4 + 32 * 64);
    clipn_linear_release(&lin);
}
END_TEST

/* ------------------------------------------------------------------ models */

#define TINY FIXTURE("model/tiny_clipn.safetensors")

static clipn_model *load_at(const char *path, clipn_precision p)
{
    clipn_load_opts opts = {.precision = p};
    clipn_model *m = NULL;
    clipn_error err;
    ck_assert_msg(clipn_model_load(path, &opts, &m, &err) == CLIPN_OK, "%s", err.message);
    return m;
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* image, text and no-text features of the tiny model at `p`, into out [3][4 * dim] */
static void features(clipn_precision p, float *out, int dim)
{
    clipn_model *m = load_at(TINY, p);
    const clipn_config *c = clipn_model_config(m);
    ck_assert_int_eq(c->embed_dim, dim);
    clipn_ctx *ctx = NULL;
    ck_assert_int_eq(clipn_ctx_new(m, NULL, &ctx, NULL), CLIPN_OK);
    const size_t px = (size_t)3 * c->image_size * c->image_size;
    float *pixels = malloc(4 * px * sizeof(float));
    clipn_image_opts io;
    clipn_image_opts_from_model(m, &io);
    ck_assert_int_eq(clipn_preprocess_file(FIXTURE("images/photo_chelsea_q80.jpg"), &io, pixels,
                                           NULL), CLIPN_OK);
    for (size_t i = px; i < 4 * px; i++) /* three more: shifted and mirrored copies */
        pixels[i] = pixels[(i * 7 + 13) % px] * (i % 2 ? 0.5f : -1.0f);
    ck_assert_int_eq(clipn_encode_image(ctx, pixels, 4, out, NULL), CLIPN_OK);
    clipn_tokenizer *tok = NULL;
    ck_assert_int_eq(clipn_tokenizer_from_model(m, &tok, NULL), CLIPN_OK);
    const char *texts[4] = {"a photo of a cat", "a dog", "an old red fire truck on a road", "x"};
    int32_t *ids = malloc(sizeof(int32_t) * 4 * c->context_length);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(clipn_tokenize(tok, texts[i], strlen(texts[i]),
                                        ids + (size_t)i * c->context_length, c->context_length,
                                        NULL), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 4, out + 4 * dim, NULL), CLIPN_OK);
    ck_assert_int_eq(clipn_encode_no_text(ctx, ids, 4, out + 8 * dim, NULL), CLIPN_OK);
    free(ids), free(pixels);
    clipn_tokenizer_free(tok);
    clipn_ctx_free(ctx);
    clipn_model_free(m);
}

START_TEST(test_model_int8_features)
{
    const char *isa = ISAS[_i];
    if (!clipn_kernels_isa_available(isa))
        return;
    ck_assert_int_eq(clipn_kernels_select(isa, NULL), 0);
    clipn_model *probe = load_at(TINY, CLIPN_PRECISION_FP32);
    const int dim = clipn_model_config(probe)->embed_dim;
    clipn_model_free(probe);
    float *f32 = malloc(sizeof(float) * 12 * dim), *q8 = malloc(sizeof(float) * 12 * dim);
    features(CLIPN_PRECISION_FP32, f32, dim);
    features(CLIPN_PRECISION_INT8, q8, dim);
    double worst = 1;
    for (int r = 0; r < 12; r++) {
        const double cs = cosine(f32 + (size_t)r * dim, q8 + (size_t)r * dim, dim);
        worst = cs < worst ? cs : worst;
    }
    printf("int8 %s (int8 kernel %s) tiny model: min feature cosine vs fp32 %.6f\n", isa,
           clipn_kernels_int8_kernel(), worst);
    ck_assert_msg(worst >= 0.995, "%s: int8 features cosine %.6f vs fp32", isa, worst);
    free(f32), free(q8);
    clipn_kernels_reset_from_env();
}
END_TEST

/* CLIPN_INT8_LAYERS (lib/model/int8_layers.c, for measuring): the layers it sets to fp32
 * give exactly the fp32 features, the others stay INT8 */
START_TEST(test_model_int8_layers_knob)
{
    clipn_model *probe = load_at(TINY, CLIPN_PRECISION_FP32);
    const int dim = clipn_model_config(probe)->embed_dim;
    clipn_model_free(probe);
    const size_t n = 12 * (size_t)dim;
    float *f32 = malloc(sizeof(float) * n), *q8 = malloc(sizeof(float) * n);
    float *mix = malloc(sizeof(float) * n);
    features(CLIPN_PRECISION_FP32, f32, dim);
    features(CLIPN_PRECISION_INT8, q8, dim);
    setenv("CLIPN_INT8_LAYERS", "*=fp32", 1);
    features(CLIPN_PRECISION_INT8, mix, dim);
    ck_assert_msg(memcmp(mix, f32, sizeof(float) * n) == 0, "*=fp32 is not fp32");
    setenv("CLIPN_INT8_LAYERS", "*=fp32,text.*.0-1=w8a8,text.proj=w8a8", 1);
    features(CLIPN_PRECISION_INT8, mix, dim);
    ck_assert_msg(memcmp(mix, f32, sizeof(float) * 4 * dim) == 0, "image tower not fp32");
    ck_assert_msg(memcmp(mix + 8 * dim, f32 + 8 * dim, sizeof(float) * 4 * dim) == 0,
                  "no-text tower not fp32");
    ck_assert_msg(memcmp(mix + 4 * dim, f32 + 4 * dim, sizeof(float) * 4 * dim) != 0,
                  "text tower not INT8");
    setenv("CLIPN_INT8_LAYERS", "*=w8", 1); /* the weight error alone: neither fp32 nor W8A8 */
    features(CLIPN_PRECISION_INT8, mix, dim);
    for (int r = 0; r < 12; r++) {
        const float *a = f32 + (size_t)r * dim, *b = mix + (size_t)r * dim;
        ck_assert_msg(memcmp(a, b, sizeof(float) * dim) != 0, "w8 row %d is fp32", r);
        ck_assert_msg(memcmp(q8 + (size_t)r * dim, b, sizeof(float) * dim) != 0,
                      "w8 row %d is W8A8", r);
        ck_assert_msg(cosine(a, b, dim) >= 0.995, "w8 row %d: cosine %.6f", r,
                      cosine(a, b, dim));
    }
    unsetenv("CLIPN_INT8_LAYERS");
    free(f32), free(q8), free(mix);
}
END_TEST

START_TEST(test_model_precision_query)
{
    clipn_model *m = load_at(TINY, CLIPN_PRECISION_INT8);
    ck_assert_int_eq(clipn_model_precision(m), CLIPN_PRECISION_INT8);
    ck_assert_str_eq(clipn_model_precision_note(m), "");
    clipn_model_free(m);
    m = load_at(TINY, CLIPN_PRECISION_DEFAULT); /* an F32 file: fp32 */
    ck_assert_int_eq(clipn_model_precision(m), CLIPN_PRECISION_FP32);
    clipn_model_free(m);
    m = load_at(TINY, CLIPN_PRECISION_BF16);
    if (clipn_model_precision(m) == CLIPN_PRECISION_BF16) {
        ck_assert_str_eq(clipn_model_precision_note(m), "");
    } else { /* no AVX512_BF16: fp32, and says so */
        ck_assert_int_eq(clipn_model_precision(m), CLIPN_PRECISION_FP32);
        ck_assert_msg(strstr(clipn_model_precision_note(m), "bf16 asked") != NULL, "note '%s'",
                      clipn_model_precision_note(m));
    }
    clipn_model_free(m);
    /* the environment default, for benchmarks */
    setenv("CLIPN_WEIGHTS", "int8", 1);
    clipn_kernels_reset_from_env();
    m = load_at(TINY, CLIPN_PRECISION_DEFAULT);
    ck_assert_int_eq(clipn_model_precision(m), CLIPN_PRECISION_INT8);
    clipn_model_free(m);
    m = load_at(TINY, CLIPN_PRECISION_FP32); /* the caller's choice wins */
    ck_assert_int_eq(clipn_model_precision(m), CLIPN_PRECISION_FP32);
    clipn_model_free(m);
    unsetenv("CLIPN_WEIGHTS");
    clipn_kernels_reset_from_env();
    clipn_load_opts bad = {.precision = (clipn_precision)9};
    clipn_error err;
    ck_assert_int_eq(clipn_model_load(TINY, &bad, &m, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(clipn_precision_name(CLIPN_PRECISION_INT8), "int8");
    ck_assert_ptr_null(clipn_precision_name((clipn_precision)9));
    ck_assert_ptr_null(clipn_model_precision(NULL) ? "" : NULL);
}
END_TEST

#define TINY_INT8 FIXTURE("model/tiny_clipn_int8.safetensors")

/* an int8 file (clipn_convert.py --dtype int8): INT8 by default, close to the f32 file at
 * fp32; at fp32 it runs its dequantized weights */
START_TEST(test_model_int8_file)
{
    clipn_model *m = load_at(TINY_INT8, CLIPN_PRECISION_DEFAULT);
    ck_assert_int_eq(clipn_model_precision(m), CLIPN_PRECISION_INT8);
    const clipn_config *c = clipn_model_config(m);
    const int dim = c->embed_dim, C = c->context_length;
    clipn_model *ref = load_at(TINY, CLIPN_PRECISION_FP32);
    clipn_model *deq = load_at(TINY_INT8, CLIPN_PRECISION_FP32);
    ck_assert_int_eq(clipn_model_precision(deq), CLIPN_PRECISION_FP32);
    clipn_tokenizer *tok = NULL;
    ck_assert_int_eq(clipn_tokenizer_from_model(m, &tok, NULL), CLIPN_OK);
    int32_t ids[2 * 77];
    ck_assert_int_le(C, 77);
    ck_assert_int_eq(clipn_tokenize(tok, "a photo of a cat", 16, ids, C, NULL), CLIPN_OK);
    ck_assert_int_eq(clipn_tokenize(tok, "a dog", 5, ids + C, C, NULL), CLIPN_OK);
    float out[3][2 * 64];
    ck_assert_int_le(dim, 64);
    clipn_model *models[3] = {ref, m, deq};
    for (int k = 0; k < 3; k++) {
        clipn_ctx *ctx = NULL;
        ck_assert_int_eq(clipn_ctx_new(models[k], NULL, &ctx, NULL), CLIPN_OK);
        ck_assert_int_eq(clipn_encode_text(ctx, ids, 2, out[k], NULL), CLIPN_OK);
        clipn_ctx_free(ctx);
    }
    for (int r = 0; r < 2; r++) {
        const double q8 = cosine(out[0] + r * dim, out[1] + r * dim, dim);
        const double dq = cosine(out[0] + r * dim, out[2] + r * dim, dim);
        ck_assert_msg(q8 >= 0.995 && dq >= 0.995, "int8 file: cosine %.6f (int8), %.6f (fp32)",
                      q8, dq);
    }
    clipn_tokenizer_free(tok);
    clipn_model_free(m), clipn_model_free(ref), clipn_model_free(deq);
}
END_TEST

/* a copy of the int8 fixture with one header string replaced (same length) */
static void expect_refused(const char *from, const char *to, const char *needle)
{
    size_t len;
    FILE *f = fopen(TINY_INT8, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    rewind(f);
    char *buf = malloc(len);
    ck_assert_uint_eq(fread(buf, 1, len, f), len);
    fclose(f);
    char *hit = memmem(buf, len < 1 << 16 ? len : 1 << 16, from, strlen(from));
    ck_assert_msg(hit != NULL, "'%s' not in the fixture header", from);
    memcpy(hit, to, strlen(to));
    char path[512];
    snprintf(path, sizeof path, "%s/int8_hostile.safetensors", test_tmp_dir());
    f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);
    clipn_model *m = NULL;
    clipn_error err;
    ck_assert_int_ne(clipn_model_load(path, NULL, &m, &err), CLIPN_OK);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.message, needle) != NULL, "'%s' lacks '%s'", err.message, needle);
    remove(path);
}

START_TEST(test_model_int8_file_hostile)
{
    expect_refused("\"int8_group\":\"64\"", "\"int8_group\":\"65\"", "int8_group");
    expect_refused("\"int8_group\":\"64\"", "\"int8_grouq\":\"64\"", "no int8_group");
    expect_refused("in_proj_weight_scale", "in_proj_weight_scalf", "_scale");
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("int8");
    TCase *k = tcase_create("kernels");
    tcase_set_timeout(k, 120);
    tcase_add_loop_test(k, test_int8_vs_reference, 0, N_VARIANTS);
    tcase_add_loop_test(k, test_int8_variants_agree, 0, N_VARIANTS);
    tcase_add_loop_test(k, test_int8_rows_independent_of_m, 0, N_VARIANTS);
    tcase_add_loop_test(k, test_int8_nan_and_zero_rows, 0, N_VARIANTS);
    tcase_add_loop_test(k, test_int8_a16_no_overflow, 0, N_ISAS);
    tcase_add_test(k, test_int8_error_vs_fp32);
    tcase_add_test(k, test_int8_prepare_rejects);
    suite_add_tcase(s, k);
    TCase *m = tcase_create("models");
    tcase_set_timeout(m, 120);
    tcase_add_loop_test(m, test_model_int8_features, 0, N_ISAS);
    tcase_add_test(m, test_model_precision_query);
    tcase_add_test(m, test_model_int8_layers_knob);
    tcase_add_test(m, test_model_int8_file);
    tcase_add_test(m, test_model_int8_file_hostile);
    suite_add_tcase(s, m);
    return s;
}
