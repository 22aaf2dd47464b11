/* Kernel benchmark: GFLOP/s of the native GEMM (each ISA) and of OpenBLAS sgemm on the
 * CLIPN ViT-B-16 shapes, fp32 against BF16 (where native) and INT8 weights on the same
 * shapes, plus attention, LayerNorm and the activations.
 * Usage: bench_kernels [threads]   (default: all cores)
 * Env BENCH_ROUNDS (default 12): interleaved rounds per measurement, best kept. */
#include "kernels.h"
#include "kernels_control.h"

#include <cblas.h>
#include <math.h>
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

/* One contender: a call, and the kernel selection it needs (NULL = leave as is). */
typedef void (*bench_fn)(void *);
typedef struct contender {
    bench_fn fn;
    void *arg;
    const char *isa, *gemm;
    int reps;
    double best;
} contender;

static double run_reps(contender *c)
{
    if (c->isa || c->gemm)
        clipn_kernels_select(c->isa, c->gemm);
    double t0 = now();
    for (int r = 0; r < c->reps; r++)
        c->fn(c->arg);
    return (now() - t0) / c->reps;
}

/* Seconds per call for each contender: rounds of ~10 ms each, interleaved, best of
 * BENCH_ROUNDS. Interleaving gives every contender the same chances on a shared machine. */
static int rounds = 12;
static void time_contenders(contender *c, int n)
{
    for (int i = 0; i < n; i++) {
        c[i].reps = 1;
        run_reps(&c[i]); /* warm up: page faults, pool start */
        while (run_reps(&c[i]) * c[i].reps < 0.01 && c[i].reps < (1 << 20))
            c[i].reps *= 2;
        c[i].best = 1e30;
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            const double t = run_reps(&c[i]);
            if (t < c[i].best)
                c[i].best = t;
        }
}

static double time_call(bench_fn fn, void *arg)
{
    contender c = {fn, arg, NULL, NULL, 1, 0};
    time_contenders(&c, 1);
    return c.best;
}

typedef struct gemm_case {
    clipn_linear *lin;
    const float *x;
    float *y;
    int m;
    clipn_epilogue epi;
} gemm_case;

static void run_linear(void *p)
{
    gemm_case *c = p;
    clipn_linear_forward(c->lin, c->x, c->m, c->y, c->epi);
}

static void run_sgemm(void *p) /* the yardstick: bare OpenBLAS sgemm, no bias, no epilogue */
{
    gemm_case *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->m, c->lin->n_out, c->lin->n_in, 1.0f,
                c->x, c->lin->n_in, c->lin->weight, c->lin->n_in, 0.0f, c->y, c->lin->n_out);
}

typedef struct shape {
    const char *name;
    int m, n, k;
    clipn_epilogue epi;
} shape;

static const char *epi_name(clipn_epilogue e)
{
    return e == CLIPN_EPI_GELU ? "gelu" : e == CLIPN_EPI_QUICKGELU ? "qgelu"
         : e == CLIPN_EPI_RESIDUAL ? "resid" : "none";
}

typedef struct attn_case {
    const float *qkv;
    float *out, *scratch;
    int L, W, heads, causal;
} attn_case;

static void run_attention(void *p)
{
    attn_case *a = p;
    clipn_attention(a->qkv, a->out, a->L, a->W, a->heads, a->causal, a->scratch);
}

typedef struct ew_case {
    float *x, *y;
    const float *g, *b;
    int rows, dim;
} ew_case;

static void run_layernorm(void *p)
{
    ew_case *e = p;
    clipn_layernorm(e->x, e->y, e->rows, e->dim, e->g, e->b, 1e-5f);
}
static void run_gelu(void *p) /* from a fresh copy: repeated GELU would reach denormals */
{
    ew_case *e = p;
    memcpy(e->y, e->x, sizeof(float) * (size_t)e->rows * e->dim);
    clipn_gelu_erf(e->y, (size_t)e->rows * e->dim);
}

/* fp32 against another weight format on every shape, timed alternately in one run, with
 * the drift of one call: the BF16 and INT8 tables. Returns 0, or 1 on allocation failure. */
static int format_table(const char *fmt, const char *title, const shape *shapes, int n_shapes,
                        const char *isa)
{
    printf("\n%-22s %5s %5s %5s %5s | %9s %9s %6s | %s\n", title, "M", "N", "K", "epi",
           "fp32", fmt, "ratio", "drift: max|d|/max|y|, rms(d)/rms(y)");
    for (int s = 0; s < n_shapes; s++) {
        const shape *sh = &shapes[s];
        float *w = random_floats((size_t)sh->n * sh->k, 0.05f);
        float *bias = random_floats((size_t)sh->n, 0.1f);
        float *x = random_floats((size_t)sh->m * sh->k, 1.0f);
        const size_t ny = (size_t)sh->m * sh->n;
        float *y32 = random_floats(ny, 1.0f), *yq = malloc(ny * sizeof(float));
        if (!yq)
            return 1;
        memcpy(yq, y32, ny * sizeof(float));
        clipn_linear l32 = {.n_out = sh->n, .n_in = sh->k, .weight = w, .bias = bias};
        clipn_linear lq = l32;
        clipn_kernels_select(isa, "native");
        clipn_kernels_set_weights("fp32");
        if (clipn_linear_prepare(&l32) != 0)
            return 1;
        clipn_kernels_set_weights(fmt);
        if (clipn_linear_prepare(&lq) != 0)
            return 1;
        /* drift on one call from the same y (residual epilogues read it) */
        clipn_linear_forward(&l32, x, sh->m, y32, sh->epi);
        clipn_linear_forward(&lq, x, sh->m, yq, sh->epi);
        double max_d = 0, max_y = 0, ss_d = 0, ss_y = 0;
        for (size_t t = 0; t < ny; t++) {
            const double d = fabs((double)yq[t] - y32[t]);
            max_d = d > max_d ? d : max_d;
            max_y = fabs(y32[t]) > max_y ? fabs(y32[t]) : max_y;
            ss_d += d * d;
            ss_y += (double)y32[t] * y32[t];
        }
        gemm_case c32 = {&l32, x, y32, sh->m, sh->epi}, cq = {&lq, x, yq, sh->m, sh->epi};
        contender cs[2] = {{run_linear, &c32, NULL, NULL, 1, 0},
                           {run_linear, &cq, NULL, NULL, 1, 0}};
        time_contenders(cs, 2);
        const double flop = 2.0 * sh->m * sh->n * sh->k;
        printf("%-22s %5d %5d %5d %5s | %9.1f %9.1f %5.2fx | %.1e, %.1e\n", sh->name, sh->m,
               sh->n, sh->k, epi_name(sh->epi), flop / cs[0].best * 1e-9,
               flop / cs[1].best * 1e-9, cs[0].best / cs[1].best, max_d / max_y,
               sqrt(ss_d / ss_y));
        clipn_linear_release(&l32);
        clipn_linear_release(&lq);
        free(w);
        free(bias);
        free(x);
        free(y32);
        free(yq);
    }
    clipn_kernels_set_weights("fp32");
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (getenv("BENCH_ROUNDS") && atoi(getenv("BENCH_ROUNDS")) > 0)
        rounds = atoi(getenv("BENCH_ROUNDS"));
    clipn_kernels_init();
    clipn_kernels_set_threads(threads);
    threads = clipn_kernels_threads();
    const char *isas[] = {"avx512", "avx2", "portable"};
    const char *best_isa = clipn_kernels_isa();
    printf("kernels: best isa %s, threads %d%s%s\n", best_isa, threads,
           *clipn_kernels_note() ? ", note: " : "", clipn_kernels_note());

    const shape shapes[] = {
        {"img b1 attn.in_proj", 197, 2304, 768, CLIPN_EPI_NONE},
        {"img b1 attn.out_proj", 197, 768, 768, CLIPN_EPI_RESIDUAL},
        {"img b1 mlp.c_fc", 197, 3072, 768, CLIPN_EPI_GELU},
        {"img b1 mlp.c_proj", 197, 768, 3072, CLIPN_EPI_RESIDUAL},
        {"img b8 attn.in_proj", 1576, 2304, 768, CLIPN_EPI_NONE},
        {"img b8 attn.out_proj", 1576, 768, 768, CLIPN_EPI_RESIDUAL},
        {"img b8 mlp.c_fc", 1576, 3072, 768, CLIPN_EPI_GELU},
        {"img b8 mlp.c_proj", 1576, 768, 3072, CLIPN_EPI_RESIDUAL},
        {"txt m10 attn.in_proj", 10, 1536, 512, CLIPN_EPI_NONE},
        {"txt m10 mlp.c_fc", 10, 2048, 512, CLIPN_EPI_GELU},
        {"txt m10 mlp.c_proj", 10, 512, 2048, CLIPN_EPI_RESIDUAL},
        {"txt m64 attn.in_proj", 64, 1536, 512, CLIPN_EPI_NONE},
        {"txt m64 mlp.c_fc", 64, 2048, 512, CLIPN_EPI_GELU},
        {"txt m64 mlp.c_proj", 64, 512, 2048, CLIPN_EPI_RESIDUAL},
    };
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);

    printf("\n%-22s %5s %5s %5s %5s | %9s", "GEMM (y = xW^T + b)", "M", "N", "K", "epi",
           "sgemm");
    for (int i = 0; i < 3; i++)
        if (clipn_kernels_isa_available(isas[i]))
            printf(" %9s %6s", isas[i], "%blas");
    printf(" %9s\n", "blas+epi");
    double tot_flop = 0, tot_native = 0, tot_blas = 0; /* image b1+b8 layer sums */
    for (int s = 0; s < n_shapes; s++) {
        const shape *sh = &shapes[s];
        float *w = random_floats((size_t)sh->n * sh->k, 0.05f);
        float *bias = random_floats((size_t)sh->n, 0.1f);
        float *x = random_floats((size_t)sh->m * sh->k, 1.0f);
        float *y = random_floats((size_t)sh->m * sh->n, 1.0f);
        clipn_linear lin = {.n_out = sh->n, .n_in = sh->k, .weight = w, .bias = bias};
        clipn_kernels_select(NULL, "native");
        if (clipn_linear_prepare(&lin) != 0) {
            fprintf(stderr, "prepare failed\n");
            return 1;
        }
        gemm_case c = {&lin, x, y, sh->m, sh->epi};
        const double flop = 2.0 * sh->m * sh->n * sh->k;
        contender cs[5];
        int nc = 0, best_index = -1;
        cs[nc++] = (contender){run_sgemm, &c, NULL, NULL, 1, 0};
        for (int i = 0; i < 3; i++)
            if (clipn_kernels_isa_available(isas[i])) {
                if (strcmp(isas[i], best_isa) == 0)
                    best_index = nc;
                cs[nc++] = (contender){run_linear, &c, isas[i], "native", 1, 0};
            }
        cs[nc++] = (contender){run_linear, &c, best_isa, "openblas", 1, 0};
        time_contenders(cs, nc);
        const double t_blas = cs[0].best, t_blas_epi = cs[nc - 1].best;
        const double t_best_native = cs[best_index].best;
        printf("%-22s %5d %5d %5d %5s | %9.1f", sh->name, sh->m, sh->n, sh->k, epi_name(sh->epi),
               flop / t_blas * 1e-9);
        for (int i = 1; i < nc - 1; i++)
            printf(" %9.1f %5.0f%%", flop / cs[i].best * 1e-9, 100.0 * t_blas / cs[i].best);
        printf(" %9.1f\n", flop / t_blas_epi * 1e-9);
        clipn_kernels_select(best_isa, "native");
        if (sh->m >= 197) {
            tot_flop += flop;
            tot_native += t_best_native;
            tot_blas += t_blas_epi;
        }
        clipn_linear_release(&lin);
        free(w);
        free(bias);
        free(x);
        free(y);
    }
    printf("image-tower linears (b1 + b8, with epilogues): native %s %.1f GFLOP/s, "
           "openblas %.1f GFLOP/s, ratio %.0f%%\n",
           best_isa, tot_flop / tot_native * 1e-9, tot_flop / tot_blas * 1e-9,
           100.0 * tot_blas / tot_native);

    if (clipn_kernels_set_weights("bf16") == 0 &&
        format_table("bf16", "BF16 weights (avx512)", shapes, n_shapes, best_isa))
        return 1;
    clipn_kernels_set_weights("fp32");
    char int8_title[64];
    snprintf(int8_title, sizeof int8_title, "INT8 weights (%s)", clipn_kernels_int8_kernel());
    if (format_table("int8", int8_title, shapes, n_shapes, best_isa))
        return 1;

    printf("\n%-28s", "attention (per sequence)");
    for (int i = 0; i < 3; i++)
        if (clipn_kernels_isa_available(isas[i]))
            printf(" %9s", isas[i]);
    printf("   GFLOP/s\n");
    const struct { const char *name; int L, W, heads, causal; } attn[] = {
        {"image L=197 W=768 h=12", 197, 768, 12, 0},
        {"text L=77 W=512 h=8 causal", 77, 512, 8, 1},
    };
    for (int s = 0; s < 2; s++) {
        const int L = attn[s].L, W = attn[s].W, heads = attn[s].heads;
        float *qkv = random_floats((size_t)L * 3 * W, 1.0f);
        float *out = random_floats((size_t)L * W, 1.0f);
        float *scratch = random_floats(clipn_attention_scratch_floats(L, W, heads), 1.0f);
        attn_case a = {qkv, out, scratch, L, W, heads, attn[s].causal};
        const double flop = 4.0 * L * L * W / (attn[s].causal ? 2.0 : 1.0);
        printf("%-28s", attn[s].name);
        for (int i = 0; i < 3; i++) {
            if (!clipn_kernels_isa_available(isas[i]))
                continue;
            clipn_kernels_select(isas[i], NULL);
            printf(" %9.1f", flop / time_call(run_attention, &a) * 1e-9);
        }
        printf("\n");
        free(qkv);
        free(out);
        free(scratch);
    }

    printf("\n%-28s", "elementwise (ns / element)");
    for (int i = 0; i < 3; i++)
        if (clipn_kernels_isa_available(isas[i]))
            printf(" %9s", isas[i]);
    printf("\n");
    {
        const int rows = 197, dim = 3072;
        float *x = random_floats((size_t)rows * dim, 3.0f), *y = random_floats((size_t)rows * dim, 3.0f);
        float *g = random_floats(dim, 1.0f), *b = random_floats(dim, 1.0f);
        ew_case ln = {x, y, g, b, rows, 768}, ge = {x, y, g, b, rows, dim};
        const double n_ln = (double)rows * 768, n_ge = (double)rows * dim;
        printf("%-28s", "layernorm 197 x 768");
        for (int i = 0; i < 3; i++)
            if (clipn_kernels_isa_available(isas[i])) {
                clipn_kernels_select(isas[i], NULL);
                printf(" %9.3f", time_call(run_layernorm, &ln) / n_ln * 1e9);
            }
        printf("\n%-28s", "gelu_erf 197x3072 (+copy)");
        for (int i = 0; i < 3; i++)
            if (clipn_kernels_isa_available(isas[i])) {
                clipn_kernels_select(isas[i], NULL);
                printf(" %9.3f", time_call(run_gelu, &ge) / n_ge * 1e9);
            }
        printf("\n");
        free(x);
        free(y);
        free(g);
        free(b);
    }
    clipn_kernels_select(best_isa, "native");
    return 0;
}
