/* AMX-BF16 GEMM (Intel Sapphire Rapids and later): y = x W^T + b with BF16 weights and
 * activations and fp32 accumulation in tiles. Compiled with -mamx-*; only entered after
 * clipn_amx_usable() said yes.
 *
 * Tiles (palette 1, all 16 rows x 64 bytes):
 *   tmm0..3  fp32 C, a 2 x 2 block of 16 x 16 (32 rows x 32 outputs)
 *   tmm4..5  A: 16 rows x 32 bf16 of k
 *   tmm6..7  B: 16 k-pairs x 16 outputs x 2 bf16 (the "VNNI" layout tdpbf16ps wants)
 * Weights, packed once: per 16 outputs ("column block") and per 32 k ("k step") one 1 KiB
 * B tile, k steps of a column block contiguous; n padded to 32, k to 32, with zeros.
 * Activations, per call: x rounded to bf16 into the calling thread's buffer, row-major
 * [m rounded up to 16][k padded], zero padding; every thread reads it.
 * The pool splits the column-block pairs; a thread walks its pairs, and for each pair all
 * row blocks (the pair's B panel, <= 192 KiB, stays in L2 while A streams). */
#include "gemm_amx.h"
#include "kernels_impl.h"

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TILE_ROWS 16
#define TILE_K 32                     /* bf16 per tile row */
#define TILE_BF16 (TILE_ROWS * TILE_K) /* 512 bf16 = 1 KiB */
#define PACK_HEADER 64                /* same header size as gemm.c's packed formats */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
/* Below this many multiply-adds a call runs on one thread: waking the pool costs more. */
#define AMX_PARALLEL_MIN_FMAS (1 << 22)

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* ---- detection: CPUID, XCR0, then the kernel's permission (per process, asked once) */
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int amx_ok;

static void detect_amx(void)
{
    unsigned int a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7 || !__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1))
        return; /* no leaf 7 or no OSXSAVE (xgetbv) */
    __cpuid_count(7, 0, a, b, c, d);
    const int amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1;
    const int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
    __cpuid_count(7, 1, a, b, c, d);
    const int avx512_bf16 = (a >> 5) & 1; /* the activation conversion uses vcvtne2ps2bf16 */
    if (!amx_bf16 || !amx_tile || !avx512 || !avx512_bf16)
        return;
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const unsigned long long xcr0 = ((unsigned long long)hi << 32) | lo;
    const unsigned long long need = 0xe6ull | (1ull << 17) | (1ull << 18); /* ZMM + TILECFG/DATA */
    if ((xcr0 & need) != need)
        return;
    amx_ok = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int clipn_amx_usable(void)
{
    pthread_once(&detect_once, detect_amx);
    const char *env = getenv("CLIPN_AMX");
    return amx_ok && !(env && strcmp(env, "0") == 0);
}

/* Every thread that runs tiles loads the configuration once (nothing else in the library
 * touches tiles, so it stays loaded). */
static _Thread_local int tiles_configured;

typedef struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;
_Static_assert(sizeof(tile_config) == 64, "ldtilecfg reads 64 bytes");

static void configure_tiles(void)
{
    if (tiles_configured)
        return;
    _Alignas(64) tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = TILE_ROWS;
    }
    _tile_loadconfig(&cfg);
    tiles_configured = 1;
}

/* ---- weight packing */

int clipn_amx_prepare(clipn_linear *lin)
{
    lin->packed = NULL;
    lin->packed_bytes = 0;
    if (!lin->weight || lin->n_out <= 0 || lin->n_in <= 0)
        return -1;
    const size_t n = (size_t)lin->n_out, k = (size_t)lin->n_in;
    const size_t n_pad = round_up(n, 2 * TILE_ROWS), k_pad = round_up(k, TILE_K);
    if (k_pad > (SIZE_MAX - PACK_HEADER - 63) / sizeof(uint16_t) / n_pad)
        return -1;
    const size_t bytes = PACK_HEADER + n_pad * k_pad * sizeof(uint16_t);
    unsigned char *buf = aligned_alloc(64, round_up(bytes, 64));
    if (!buf)
        return -1;
    memset(buf, 0, PACK_HEADER);
    *(uint32_t *)buf = CLIPN_PACK_AMX;
    uint16_t *tiles = (uint16_t *)(buf + PACK_HEADER);
    /* written in order: column block, k step, k pair (tile row), 16 columns x 2 k */
    for (size_t c0 = 0; c0 < n_pad; c0 += TILE_ROWS)
        for (size_t k0 = 0; k0 < k_pad; k0 += TILE_K)
            for (size_t kk = k0; kk < k0 + TILE_K; kk += 2)
                for (size_t col = c0; col < c0 + TILE_ROWS; col++)
                    for (size_t e = 0; e < 2; e++)
                        *tiles++ = col < n && kk + e < k ? clipn_to_bf16(lin->weight[col * k + kk + e])
                                                         : 0;
    lin->packed = buf;
    lin->packed_bytes = bytes;
    return 0;
}

/* ---- the calling thread's bf16 activation buffer: grown when a larger call comes (in
 * practice once, at the first forward of the largest layer), freed at thread exit. */
typedef struct act_buffer {
    size_t bytes;
    uint16_t *data;
} act_buffer;

static pthread_key_t act_key;
static int act_key_ok;
static pthread_once_t act_once = PTHREAD_ONCE_INIT;

static void free_act_buffer(void *p)
{
    act_buffer *ab = p;
    free(ab->data);
    free(ab);
}

static void make_act_key(void) { act_key_ok = pthread_key_create(&act_key, free_act_buffer) == 0; }

static uint16_t *thread_act_buffer(size_t bytes)
{
    pthread_once(&act_once, make_act_key);
    if (!act_key_ok)
        return NULL;
    act_buffer *ab = pthread_getspecific(act_key);
    if (!ab) {
        if (!(ab = calloc(1, sizeof *ab)))
            return NULL;
        if (pthread_setspecific(act_key, ab) != 0) {
            free(ab);
            return NULL;
        }
    }
    if (ab->bytes < bytes) {
        free(ab->data);
        ab->bytes = 0;
        if (!(ab->data = aligned_alloc(64, round_up(bytes, 64))))
            return NULL;
        ab->bytes = bytes;
    }
    return ab->data;
}

/* ---- per call */
typedef struct amx_job {
    const clipn_linear *lin;
    const float *x;
    float *y;
    uint16_t *a;          /* [m_pad][k_pad] bf16 */
    int m, m_pad, k_pad;
    int act, residual;
    int pairs, n_tasks;   /* column-block pairs, and how many tasks share them */
    const clipn_kernel_ops *ops;
} amx_job;

static __mmask16 lanes(int count) /* the first count lanes, count clamped to [0, 16] */
{
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

/* rows [r0, r1) of x -> bf16, zero past m and past k */
static void convert_rows(const amx_job *job, int r0, int r1)
{
    const int k = job->lin->n_in;
    for (int r = r0; r < r1; r++) {
        uint16_t *dst = job->a + (size_t)r * job->k_pad;
        if (r >= job->m) {
            memset(dst, 0, (size_t)job->k_pad * sizeof *dst);
            continue;
        }
        const float *src = job->x + (size_t)r * k;
        for (int kk = 0; kk < job->k_pad; kk += 32) {
            const int left = k - kk;
            const __m512 lo = _mm512_maskz_loadu_ps(lanes(left), src + kk);
            const __m512 hi = _mm512_maskz_loadu_ps(lanes(left - 16), src + kk + 16);
            _mm512_store_si512(dst + kk, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

static void convert_task(void *arg, int t)
{
    const amx_job *job = arg;
    const int blocks = job->m_pad / TILE_ROWS;
    const int b0 = (int)((long long)blocks * t / job->n_tasks);
    const int b1 = (int)((long long)blocks * (t + 1) / job->n_tasks);
    convert_rows(job, b0 * TILE_ROWS, b1 * TILE_ROWS);
}

/* C block [32][32] (or [16][32] with one row tile) += A rows x B pair over all k steps */
static void tiles_2x2(const uint16_t *a, size_t a_stride, const uint16_t *b0, const uint16_t *b1,
                      int k_steps, float *c)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int ks = 0; ks < k_steps; ks++) {
        _tile_loadd(4, a + (size_t)ks * TILE_K, a_stride);
        _tile_loadd(5, a + 16 * (a_stride / 2) + (size_t)ks * TILE_K, a_stride);
        _tile_loadd(6, b0 + (size_t)ks * TILE_BF16, 64);
        _tile_loadd(7, b1 + (size_t)ks * TILE_BF16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 128);
    _tile_stored(1, c + 16, 128);
    _tile_stored(2, c + 16 * 32, 128);
    _tile_stored(3, c + 16 * 32 + 16, 128);
}

static void tiles_1x2(const uint16_t *a, size_t a_stride, const uint16_t *b0, const uint16_t *b1,
                      int k_steps, float *c)
{
    _tile_zero(0);
    _tile_zero(1);
    for (int ks = 0; ks < k_steps; ks++) {
        _tile_loadd(4, a + (size_t)ks * TILE_K, a_stride);
        _tile_loadd(6, b0 + (size_t)ks * TILE_BF16, 64);
        _tile_loadd(7, b1 + (size_t)ks * TILE_BF16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
    }
    _tile_stored(0, c, 128);
    _tile_stored(1, c + 16, 128);
}

/* y[rows, cols] (ldy n) = c [rows][32] + bias (+ y if residual) */
static void store_block(const float *c, float *y, size_t n, int rows, int cols,
                        const float *bias, int residual)
{
    const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
    const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * n;
        __m512 v0 = _mm512_add_ps(_mm512_load_ps(c + r * 32), bias0);
        __m512 v1 = _mm512_add_ps(_mm512_load_ps(c + r * 32 + 16), bias1);
        if (residual) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
}

static void gemm_task(void *arg, int t)
{
    const amx_job *job = arg;
    const clipn_linear *lin = job->lin;
    const int n = lin->n_out;
    const int k_steps = job->k_pad / TILE_K;
    const size_t a_stride = (size_t)job->k_pad * sizeof(uint16_t);
    const uint16_t *tiles = (const uint16_t *)((const unsigned char *)lin->packed + PACK_HEADER);
    const int p0 = (int)((long long)job->pairs * t / job->n_tasks);
    const int p1 = (int)((long long)job->pairs * (t + 1) / job->n_tasks);
    _Alignas(64) float c[32 * 32];
    configure_tiles();
    for (int p = p0; p < p1; p++) {
        const int j0 = 32 * p, cols = n - j0 < 32 ? n - j0 : 32;
        const uint16_t *b0 = tiles + (size_t)(2 * p) * k_steps * TILE_BF16;
        const uint16_t *b1 = b0 + (size_t)k_steps * TILE_BF16;
        const float *bias = lin->bias ? lin->bias + j0 : NULL;
        for (int i0 = 0; i0 < job->m_pad; i0 += 32) {
            const uint16_t *a = job->a + (size_t)i0 * job->k_pad;
            if (job->m_pad - i0 >= 32)
                tiles_2x2(a, a_stride, b0, b1, k_steps, c);
            else
                tiles_1x2(a, a_stride, b0, b1, k_steps, c);
            const int rows = job->m - i0 < 32 ? job->m - i0 : 32;
            float *y = job->y + (size_t)i0 * n + j0;
            store_block(c, y, (size_t)n, rows, cols, bias, job->residual);
            if (job->act != CLIPN_ACT_NONE)
                job->ops->activate(y, (size_t)n, rows, cols, job->act);
        }
    }
}

int clipn_amx_forward(const clipn_linear *lin, const float *x, int m, float *y,
                      clipn_epilogue epi)
{
    if (m <= 0)
        return 0;
    const size_t m_pad = round_up((size_t)m, TILE_ROWS);
    const size_t k_pad = round_up((size_t)lin->n_in, TILE_K);
    if (m_pad > INT32_MAX || k_pad > SIZE_MAX / sizeof(uint16_t) / m_pad)
        return -1;
    uint16_t *a = thread_act_buffer(m_pad * k_pad * sizeof(uint16_t));
    if (!a)
        return -1;
    amx_job job = {
        .lin = lin, .x = x, .y = y, .a = a,
        .m = m, .m_pad = (int)m_pad, .k_pad = (int)k_pad,
        .act = clipn_epilogue_act(epi),
        .residual = epi == CLIPN_EPI_RESIDUAL,
        .pairs = (lin->n_out + 31) / 32,
        .ops = clipn_kernels_ops(),
    };
    const double fmas = (double)m * lin->n_out * lin->n_in;
    int tasks = fmas < AMX_PARALLEL_MIN_FMAS ? 1 : clipn_pool_threads();
    if (tasks > (int)(m_pad / TILE_ROWS))
        tasks = (int)(m_pad / TILE_ROWS);
    job.n_tasks = tasks;
    clipn_parallel_for(tasks, convert_task, &job);
    tasks = fmas < AMX_PARALLEL_MIN_FMAS ? 1 : clipn_pool_threads();
    if (tasks > job.pairs)
        tasks = job.pairs;
    job.n_tasks = tasks;
    clipn_parallel_for(tasks, gemm_task, &job);
    return 0;
}
