/* Read bandwidth of this machine: what a batch-1 text encode (151 MB of fp32 weights per
 * prompt, every linear memory bound at ~11 rows) can at best stream. Sums a 151 MB buffer
 * (larger than any cache) with 16-float vector loads, on 1 thread and on 2 threads each
 * summing its own contiguous half, best of ROUNDS; once in 4 KiB pages and once in a
 * buffer madvise'd for transparent huge pages (fewer TLB misses while streaming).
 *
 *   build/bench/bench_membw [MB [ROUNDS]]      (defaults 151, 20) */
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

typedef float v16 __attribute__((vector_size(64)));

typedef struct {
    const v16 *p;
    size_t n;
    float sum;
} span;

static void *sum_span(void *arg)
{
    span *s = arg;
    v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}; /* 4 chains: loads, not adds, bound it */
    size_t i = 0;
    for (; i + 4 <= s->n; i += 4) {
        a0 += s->p[i];
        a1 += s->p[i + 1];
        a2 += s->p[i + 2];
        a3 += s->p[i + 3];
    }
    for (; i < s->n; i++)
        a0 += s->p[i];
    v16 a = a0 + a1 + a2 + a3;
    float t = 0;
    for (int j = 0; j < 16; j++)
        t += a[j];
    s->sum = t;
    return NULL;
}

/* seconds to read the buffer once with `threads` threads (1 or 2) */
static double read_once(const v16 *buf, size_t n, int threads)
{
    span s[2] = {{buf, n / 2, 0}, {buf + n / 2, n - n / 2, 0}};
    if (threads == 1)
        s[0].n = n;
    double t0 = now();
    pthread_t th;
    int spawned = threads == 2 && pthread_create(&th, NULL, sum_span, &s[1]) == 0;
    sum_span(&s[0]);
    if (threads == 2 && !spawned)
        sum_span(&s[1]);
    if (spawned)
        pthread_join(th, NULL);
    double dt = now() - t0;
    volatile float sink = s[0].sum + s[1].sum; /* keep the sums */
    (void)sink;
    return dt;
}

static v16 *filled_buffer(size_t n, int huge)
{
    v16 *buf = aligned_alloc(1 << 21, (n * sizeof(v16) + (1 << 21) - 1) >> 21 << 21);
    if (!buf)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(buf, n * sizeof(v16), huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#else
    (void)huge;
#endif
    for (size_t i = 0; i < n; i++) /* touch every page, non-zero data */
        for (int j = 0; j < 16; j++)
            buf[i][j] = (float)((i + (size_t)j) % 7);
    return buf;
}

int main(int argc, char **argv)
{
    const size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 151;
    const int rounds = argc > 2 ? atoi(argv[2]) : 20;
    const size_t n = mb * 1000000 / sizeof(v16);
    if (mb == 0 || rounds <= 0) {
        fprintf(stderr, "usage: bench_membw [MB [ROUNDS]]\n");
        return 1;
    }
    v16 *buf[2] = {filled_buffer(n, 0), filled_buffer(n, 1)};
    if (!buf[0] || !buf[1]) {
        fprintf(stderr, "bench_membw: cannot allocate 2 x %zu MB\n", mb);
        return 1;
    }
    double best[2][3] = {{1e30, 1e30, 1e30}, {1e30, 1e30, 1e30}};
    for (int r = 0; r < rounds; r++) /* interleaved: all see the same load */
        for (int h = 0; h < 2; h++)
            for (int t = 1; t <= 2; t++) {
                double dt = read_once(buf[h], n, t);
                best[h][t] = dt < best[h][t] ? dt : best[h][t];
            }
    const double bytes = (double)n * sizeof(v16);
    for (int h = 0; h < 2; h++)
        printf("read bandwidth, %zu MB, %s pages, best of %d: 1 thread %.1f GB/s (%.2f ms), "
               "2 threads %.1f GB/s (%.2f ms)\n",
               mb, h ? "2 MiB" : "4 KiB", rounds, bytes / best[h][1] / 1e9, best[h][1] * 1e3,
               bytes / best[h][2] / 1e9, best[h][2] * 1e3);
    free(buf[0]);
    free(buf[1]);
    return 0;
}
