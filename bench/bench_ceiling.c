/* Register-only instruction throughput of the GEMM inner loops on this x86 CPU: what a
 * micro-kernel could reach if loads were free. Products per cycle for
 *   fp32     vfmadd231ps (8 per instruction),
 *   W8A8     vpsignb + vpmaddubsw + vpmaddwd(ones) + vpaddd (the AVX2 INT8 kernel's sign
 *            trick, 32 per group of four),
 *   W8A16    vpmaddwd + vpaddd (16 per pair),
 *   W8A8 u8  vpmaddubsw + vpmaddwd + vpaddd, no sign (unsigned activations: what MLAS-style
 *            u8 x s8 kernels issue; not exact for full-range int8, shown for comparison),
 * each over 8 independent accumulators. Cycles come from a dependent add chain (1 per
 * cycle), so the figures hold whatever the clock. docs/kernels.md quotes them.
 *   build/bench/bench_ceiling */
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
#define ITER 20000000L
#define CLOBBER                                                                              \
    "rcx", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
/* best of 5 timings of ITER iterations of body */
#define TIME(body, best)                                                                     \
    do {                                                                                     \
        best = 1e30;                                                                         \
        for (int r_ = 0; r_ < 5; r_++) {                                                     \
            const double t0_ = now();                                                        \
            __asm__ volatile("mov %0, %%rcx\n1:\n" body "dec %%rcx\njnz 1b\n" ::"r"(ITER)    \
                             : CLOBBER);                                                     \
            const double t_ = now() - t0_;                                                   \
            best = t_ < best ? t_ : best;                                                    \
        }                                                                                    \
    } while (0)

#define FMA(a) "vfmadd231ps %%ymm15, %%ymm14, %%ymm" #a "\n"
#define W8A8(a, b)                                                                           \
    "vpsignb %%ymm10, %%ymm8, %%ymm12\n vpsignb %%ymm10, %%ymm9, %%ymm13\n"                \
    "vpmaddubsw %%ymm12, %%ymm11, %%ymm12\n vpmaddubsw %%ymm13, %%ymm11, %%ymm13\n"        \
    "vpmaddwd %%ymm14, %%ymm12, %%ymm12\n vpmaddwd %%ymm14, %%ymm13, %%ymm13\n"            \
    "vpaddd %%ymm12, %%ymm" #a ", %%ymm" #a "\n vpaddd %%ymm13, %%ymm" #b ", %%ymm" #b "\n"
#define U8(a, b)                                                                             \
    "vpmaddubsw %%ymm8, %%ymm11, %%ymm12\n vpmaddubsw %%ymm9, %%ymm11, %%ymm13\n"          \
    "vpmaddwd %%ymm14, %%ymm12, %%ymm12\n vpmaddwd %%ymm14, %%ymm13, %%ymm13\n"            \
    "vpaddd %%ymm12, %%ymm" #a ", %%ymm" #a "\n vpaddd %%ymm13, %%ymm" #b ", %%ymm" #b "\n"
#define A16(a) "vpmaddwd %%ymm8, %%ymm11, %%ymm12\n vpaddd %%ymm12, %%ymm" #a ", %%ymm" #a "\n"

int main(void)
{
    double t_add, t;
    TIME("add $1, %%rax\n add $1, %%rax\n add $1, %%rax\n add $1, %%rax\n", t_add);
    const double cycle = t_add / (4.0 * ITER); /* seconds per cycle */
    printf("clock from a dependent add chain: %.2f GHz\n", 1e-9 / cycle);
    TIME(FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7), t);
    const double fp32 = 8.0 * 8 / (t / ITER / cycle);
    printf("fp32  vfmadd231ps                          %5.1f products/cycle\n", fp32);
    TIME(W8A8(0, 1) W8A8(2, 3) W8A8(4, 5) W8A8(6, 7), t);
    printf("W8A8  sign + maddubs + maddwd + add        %5.1f products/cycle (%.2fx fp32)\n",
           256.0 / (t / ITER / cycle), 256.0 / (t / ITER / cycle) / fp32);
    TIME(A16(0) A16(1) A16(2) A16(3) A16(4) A16(5) A16(6) A16(7), t);
    printf("W8A16 maddwd + add                         %5.1f products/cycle (%.2fx fp32)\n",
           128.0 / (t / ITER / cycle), 128.0 / (t / ITER / cycle) / fp32);
    TIME(U8(0, 1) U8(2, 3) U8(4, 5) U8(6, 7), t);
    printf("u8s8  maddubs + maddwd + add (inexact)     %5.1f products/cycle (%.2fx fp32)\n",
           256.0 / (t / ITER / cycle), 256.0 / (t / ITER / cycle) / fp32);
    return 0;
}
#else
int main(void)
{
    (void)now;
    printf("bench_ceiling: x86-64 only\n");
    return 0;
}
#endif
