/* Helpers shared by the benchmarks (header-only: each bench is one program). */
#ifndef CLIPN_BENCH_UTIL_H
#define CLIPN_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Non-empty lines without their newline (and CR); the last line may lack a newline.
 * NULL on failure. */
static inline char **read_lines(const char *path, int *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char **lines = NULL, buf[4096];
    int count = 0, cap = 0;
    while (fgets(buf, sizeof buf, f)) {
        size_t len = strcspn(buf, "\r\n");
        buf[len] = '\0';
        if (!len)
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 256;
            char **nl = realloc(lines, (size_t)cap * sizeof *nl);
            if (!nl)
                break;
            lines = nl;
        }
        if (!(lines[count] = strdup(buf)))
            break;
        count++;
    }
    fclose(f);
    *n = count;
    return lines;
}

static inline void free_lines(char **lines, int n)
{
    for (int i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

#endif
