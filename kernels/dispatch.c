/* Run-time kernel selection: CPUID once (pthread_once), then the env overrides
 * CLIPN_ISA=portable|avx2|avx512|neon, CLIPN_GEMM=native|openblas and CLIPN_WEIGHTS=fp32|bf16|int8.
 * On aarch64 NEON (AdvSIMD) is part of the base ISA, so it is always available there.
 * An unknown or
 * unsupported value falls back to the best available choice and is explained by
 * clipn_kernels_note(); the library never prints. */
#include "kernels_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static const clipn_kernel_ops *selected = &clipn_ops_portable;
static int use_openblas;
static int default_weights = CLIPN_WEIGHTS_FP32; /* CLIPN_WEIGHTS=fp32|bf16|int8 */
static char note[160];
static int have_avx512_bf16; /* stays 0 off x86 */
#if defined(__x86_64__)
static int have_avx2, have_avx512;
#endif

#if defined(__x86_64__)
static unsigned long long read_xcr0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect_cpu(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return;
    const unsigned long long xcr0 = read_xcr0();
    const int os_ymm = (xcr0 & 0x6) == 0x6;          /* XMM and YMM state saved */
    const int os_zmm = (xcr0 & 0xe6) == 0xe6;        /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (!os_ymm || __get_cpuid_max(0, NULL) < 7)
        return;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    const int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    have_avx2 = avx2 && fma;
    have_avx512 = have_avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
    __cpuid_count(7, 1, a, b, c, d);
    have_avx512_bf16 = have_avx512 && ((a >> 5) & 1);
}
#else
static void detect_cpu(void) {}
#endif

static const clipn_kernel_ops *ops_by_name(const char *isa)
{
    if (strcmp(isa, "portable") == 0)
        return &clipn_ops_portable;
#if defined(__x86_64__)
    if (strcmp(isa, "avx2") == 0)
        return have_avx2 ? &clipn_ops_avx2 : NULL;
    if (strcmp(isa, "avx512") == 0)
        return have_avx512 ? &clipn_ops_avx512 : NULL;
#endif
#if defined(__aarch64__)
    if (strcmp(isa, "neon") == 0)
        return &clipn_ops_neon;
#endif
    return NULL;
}

static const clipn_kernel_ops *best_ops(void)
{
#if defined(__x86_64__)
    if (have_avx512)
        return &clipn_ops_avx512;
    if (have_avx2)
        return &clipn_ops_avx2;
#endif
#if defined(__aarch64__)
    return &clipn_ops_neon;
#endif
    return &clipn_ops_portable;
}

/* best ISA, then the environment overrides */
static void choose_from_env(void)
{
    note[0] = 0;
    selected = best_ops();
    use_openblas = 0;
    const char *isa = getenv("CLIPN_ISA");
    if (isa && *isa) {
        const clipn_kernel_ops *o = ops_by_name(isa);
        if (o)
            selected = o;
        else
            snprintf(note, sizeof note, "CLIPN_ISA=%.40s unknown or not supported here; using %s",
                     isa, selected->isa);
    }
    default_weights = CLIPN_WEIGHTS_FP32;
    const char *weights = getenv("CLIPN_WEIGHTS");
    if (weights && *weights && strcmp(weights, "fp32") != 0) {
        if (strcmp(weights, "bf16") == 0 && have_avx512_bf16)
            default_weights = CLIPN_WEIGHTS_BF16;
        else if (strcmp(weights, "int8") == 0)
            default_weights = CLIPN_WEIGHTS_INT8;
        else {
            size_t len = strlen(note);
            snprintf(note + len, sizeof note - len,
                     "%sCLIPN_WEIGHTS=%.20s unknown or not supported here; using fp32",
                     len ? "; " : "", weights);
        }
    }
    const char *gemm = getenv("CLIPN_GEMM");
    if (gemm && *gemm) {
        if (strcmp(gemm, "openblas") == 0)
            use_openblas = 1;
        else if (strcmp(gemm, "native") != 0) {
            size_t len = strlen(note);
            snprintf(note + len, sizeof note - len, "%sCLIPN_GEMM=%.40s unknown; using native",
                     len ? "; " : "", gemm);
        }
    }
}

static void init_kernels(void)
{
    detect_cpu();
    choose_from_env();
}

const char *clipn_kernels_init(void)
{
    pthread_once(&init_once, init_kernels);
    return selected->isa;
}

const clipn_kernel_ops *clipn_kernels_ops(void)
{
    pthread_once(&init_once, init_kernels);
    return selected;
}

int clipn_kernels_use_openblas(void)
{
    pthread_once(&init_once, init_kernels);
    return use_openblas;
}

int clipn_kernels_default_weights(void)
{
    pthread_once(&init_once, init_kernels);
    return default_weights;
}

int clipn_kernels_weights_bf16(void)
{
    return clipn_kernels_default_weights() == CLIPN_WEIGHTS_BF16;
}

int clipn_kernels_bf16_native(void)
{
    pthread_once(&init_once, init_kernels);
    return have_avx512_bf16;
}

const char *clipn_kernels_weights(void)
{
    const int w = clipn_kernels_default_weights();
    return w == CLIPN_WEIGHTS_BF16 ? "bf16" : w == CLIPN_WEIGHTS_INT8 ? "int8" : "fp32";
}

int clipn_kernels_set_weights(const char *format)
{
    pthread_once(&init_once, init_kernels);
    if (format && strcmp(format, "fp32") == 0) {
        default_weights = CLIPN_WEIGHTS_FP32;
        return 0;
    }
    if (format && strcmp(format, "bf16") == 0 && have_avx512_bf16) {
        default_weights = CLIPN_WEIGHTS_BF16;
        return 0;
    }
    if (format && strcmp(format, "int8") == 0) {
        default_weights = CLIPN_WEIGHTS_INT8;
        return 0;
    }
    return -1;
}

const char *clipn_kernels_isa(void) { return clipn_kernels_ops()->isa; }
const char *clipn_kernels_gemm_backend(void)
{
    return clipn_kernels_use_openblas() ? "openblas" : "native";
}
const char *clipn_kernels_note(void)
{
    pthread_once(&init_once, init_kernels);
    return note;
}

int clipn_kernels_isa_available(const char *isa)
{
    pthread_once(&init_once, init_kernels);
    return isa && ops_by_name(isa) != NULL;
}

int clipn_kernels_select(const char *isa, const char *gemm)
{
    pthread_once(&init_once, init_kernels);
    const clipn_kernel_ops *o = selected;
    int blas = use_openblas;
    if (isa && !(o = ops_by_name(isa)))
        return -1;
    if (gemm) {
        if (strcmp(gemm, "openblas") == 0)
            blas = 1;
        else if (strcmp(gemm, "native") == 0)
            blas = 0;
        else
            return -1;
    }
    selected = o;
    use_openblas = blas;
    return 0;
}

void clipn_kernels_reset_from_env(void)
{
    pthread_once(&init_once, init_kernels);
    choose_from_env();
}

void clipn_kernels_set_threads(int n)
{
    clipn_pool_set_threads(n);
    clipn_openblas_sync_threads();
}

int clipn_kernels_threads(void) { return clipn_pool_size(); }

int clipn_kernels_limit_threads(int n) { return clipn_pool_limit(n); }

void clipn_kernels_warm(void)
{
    clipn_kernels_init();
    clipn_pool_start();
}

/* ---- public entry points: forward to the selected ISA */

void clipn_layernorm(const float *x, float *y, int rows, int dim, const float *g,
                     const float *b, float eps)
{
    if (rows > 0 && dim > 0)
        clipn_kernels_ops()->layernorm(x, y, rows, dim, g, b, eps);
}

void clipn_gelu_erf(float *x, size_t n) { clipn_kernels_ops()->gelu_erf(x, n); }
void clipn_quickgelu(float *x, size_t n) { clipn_kernels_ops()->quickgelu(x, n); }
void clipn_erf(const float *x, float *y, size_t n) { clipn_kernels_ops()->erf(x, y, n); }
