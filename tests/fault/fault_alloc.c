/* Allocation-failure injection for the fault build of the CLI (build/fault/clipn), linked
 * with -Wl,--wrap=malloc,... so every allocation the CLI and libclipn.a make comes here;
 * cJSON's are routed here through cJSON_InitHooks. Environment:
 *   CLIPN_FAULT_ALLOC=N        the N-th allocation (1-based) fails, once (0: none fails)
 *   CLIPN_FAULT_COUNT_FILE=F   at exit, write the number of allocations made to F
 * tests/fault/run_alloc_faults.sh runs each workload for N = 1, 2, ... */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

static atomic_long n_allocs;
static long fail_at;
static const char *count_file;

/* One more allocation; 1 when it is the one that must fail. */
static int fail_now(void)
{
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    if (fail_at > 0 && k == fail_at) {
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    return fail_now() ? ENOMEM : __real_posix_memalign(p, align, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return fail_now() ? NULL : __real_aligned_alloc(align, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_strndup(s, n);
}

static void report_count(void)
{
    FILE *f = count_file ? fopen(count_file, "w") : NULL;
    if (f) {
        fprintf(f, "%ld\n", atomic_load(&n_allocs));
        fclose(f);
    }
}

__attribute__((constructor)) static void fault_init(void)
{
    const char *s = getenv("CLIPN_FAULT_ALLOC");
    fail_at = s ? strtol(s, NULL, 10) : 0;
    count_file = getenv("CLIPN_FAULT_COUNT_FILE");
    cJSON_Hooks hooks = {__wrap_malloc, free};
    cJSON_InitHooks(&hooks);
    atexit(report_count);
}
