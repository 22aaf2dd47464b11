/* One process-wide thread pool, created lazily on the first parallel region.
 *
 * Design: a single "region" at a time. The thread that wins run_lock (trylock) hands the
 * tasks to the workers and works too; anyone who finds the pool busy (another library
 * context in another thread, or a nested call from inside a task) runs its tasks serially.
 * So N user threads on 2 cores never create more than threads+N-1 busy threads and nobody
 * waits for somebody else's work.
 *
 * Between regions workers spin for a short while (POOL_SPIN_NS) before sleeping on the
 * condition variable, and the caller spins likewise for the workers to finish: a batch-1
 * text prompt runs ~60 regions of ~0.1-0.3 ms each, and waking a sleeping worker (a futex
 * wake, on a VM an idle vCPU's halt exit) cost 40-240 us per region here, as much as the
 * work. The spin is only a fast path: the mutex and condition variables decide. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX_WORKERS 63
#ifndef POOL_SPIN_NS
#define POOL_SPIN_NS 100000 /* 0.1 ms: longer than the gaps between a forward pass's regions */
#endif

static struct {
    pthread_mutex_t run_lock;   /* held by the thread running a region */
    pthread_mutex_t lock;       /* guards the fields below */
    pthread_cond_t work_cv, done_cv, ready_cv;
    pthread_t workers[POOL_MAX_WORKERS];
    unsigned long born[POOL_MAX_WORKERS]; /* generation when started: the next is theirs */
    int n_workers;              /* started */
    int n_ready;                /* started and through their start hooks */
    int threads;                /* wanted, including the caller; 0 = not yet decided */
    atomic_ulong generation;    /* changed under lock; read without it only to spin */
    int participants;           /* workers taking part in the current region */
    atomic_int active;          /* participants not yet finished; likewise */
    void (*fn)(void *, int);
    void *arg;
    int n_tasks;
    atomic_int next_task;
} pool = {
    .run_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .ready_cv = PTHREAD_COND_INITIALIZER,
};

/* per calling thread: at most this many threads for its regions (0: the pool's count) */
static _Thread_local int thread_limit;

#define MAX_HOOKS 4
static void (*_Atomic start_hooks[MAX_HOOKS])(void);

int clipn_pool_on_worker_start(void (*hook)(void))
{
    for (int i = 0; i < MAX_HOOKS; i++) {
        void (*expected)(void) = NULL;
        if (atomic_load(&start_hooks[i]) == hook ||
            atomic_compare_exchange_strong(&start_hooks[i], &expected, hook))
            return 0;
    }
    return -1;
}

static void run_start_hooks(void)
{
    for (int i = 0; i < MAX_HOOKS; i++) {
        void (*hook)(void) = atomic_load(&start_hooks[i]);
        if (hook)
            hook();
    }
}

static void run_tasks(void (*fn)(void *, int), void *arg, int n_tasks)
{
    for (;;) {
        int t = atomic_fetch_add(&pool.next_task, 1);
        if (t >= n_tasks)
            break;
        fn(arg, t);
    }
}

/* Yield, not pause: when both threads share one CPU (another process holds the other),
 * a pausing spinner would eat the time slice of the thread it waits for. */
static inline void cpu_relax(void)
{
    sched_yield();
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int generation_moved(unsigned long seen)
{
    return atomic_load_explicit(&pool.generation, memory_order_acquire) != seen;
}

static int all_done(unsigned long unused)
{
    (void)unused;
    return atomic_load_explicit(&pool.active, memory_order_acquire) == 0;
}

/* Spin until ready(arg) (1) or POOL_SPIN_NS pass (0). */
static int spin_until(int (*ready)(unsigned long), unsigned long arg)
{
    const long long end = now_ns() + POOL_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 4; i++) {
            if (ready(arg))
                return 1;
            cpu_relax();
        }
        if (now_ns() > end)
            return 0;
    }
}

static void *worker_main(void *p)
{
    const int index = (int)(intptr_t)p;
    run_start_hooks(); /* e.g. the GEMM's per-thread blocks, now rather than in a region */
    pthread_mutex_lock(&pool.lock);
    pool.n_ready++;
    pthread_cond_broadcast(&pool.ready_cv);
    unsigned long seen = pool.born[index];
    for (;;) {
        if (atomic_load(&pool.generation) == seen) {
            pthread_mutex_unlock(&pool.lock);
            spin_until(generation_moved, seen);
            pthread_mutex_lock(&pool.lock);
        }
        while (atomic_load(&pool.generation) == seen)
            pthread_cond_wait(&pool.work_cv, &pool.lock);
        seen = atomic_load(&pool.generation);
        if (index >= pool.participants)
            continue;
        void (*fn)(void *, int) = pool.fn;
        void *arg = pool.arg;
        int n_tasks = pool.n_tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, arg, n_tasks);
        pthread_mutex_lock(&pool.lock);
        if (atomic_fetch_sub(&pool.active, 1) == 1)
            pthread_cond_signal(&pool.done_cv);
    }
    return NULL;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (n > POOL_MAX_WORKERS + 1)
        n = POOL_MAX_WORKERS + 1;
    return (int)n;
}

int clipn_pool_size(void)
{
    pthread_mutex_lock(&pool.lock);
    if (pool.threads == 0)
        pool.threads = default_threads();
    int n = pool.threads;
    pthread_mutex_unlock(&pool.lock);
    return n;
}

int clipn_pool_threads(void) { return thread_limit > 0 ? thread_limit : clipn_pool_size(); }

int clipn_pool_limit(int n)
{
    const int old = thread_limit;
    thread_limit = n < 0 ? 0 : n > POOL_MAX_WORKERS + 1 ? POOL_MAX_WORKERS + 1 : n;
    return old;
}

void clipn_pool_set_threads(int n)
{
    if (n <= 0)
        n = default_threads();
    if (n > POOL_MAX_WORKERS + 1)
        n = POOL_MAX_WORKERS + 1;
    pthread_mutex_lock(&pool.lock);
    pool.threads = n;
    pthread_mutex_unlock(&pool.lock);
}

/* Under pool.lock: start workers until there are `want` (or creation fails). */
static void start_workers(int want)
{
    while (pool.n_workers < want) {
        /* workers block all signals: the user's handlers run on the user's threads */
        pool.born[pool.n_workers] = atomic_load(&pool.generation);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&pool.workers[pool.n_workers], NULL, worker_main,
                                (void *)(intptr_t)pool.n_workers);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0)
            break; /* run with the workers we have */
        pool.n_workers++;
    }
}

void clipn_pool_start(void)
{
    run_start_hooks(); /* the calling thread's share */
    const int threads = clipn_pool_threads();
    pthread_mutex_lock(&pool.lock);
    start_workers(threads - 1);
    while (pool.n_ready < pool.n_workers)
        pthread_cond_wait(&pool.ready_cv, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

void clipn_parallel_for(int n_tasks, void (*fn)(void *arg, int t), void *arg)
{
    if (n_tasks <= 0)
        return;
    int threads = clipn_pool_threads();
    if (n_tasks == 1 || threads == 1 || pthread_mutex_trylock(&pool.run_lock) != 0) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t);
        return;
    }
    int want = (threads < n_tasks ? threads : n_tasks) - 1;
    pthread_mutex_lock(&pool.lock);
    start_workers(want);
    if (want > pool.n_workers)
        want = pool.n_workers;
    pool.fn = fn;
    pool.arg = arg;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next_task, 0);
    pool.participants = want;
    atomic_store(&pool.active, want);
    atomic_fetch_add(&pool.generation, 1); /* last: a worker that saw it spinning locks, then reads */
    pthread_cond_broadcast(&pool.work_cv);
    pthread_mutex_unlock(&pool.lock);

    run_tasks(fn, arg, n_tasks);

    spin_until(all_done, 0);
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.active) > 0)
        pthread_cond_wait(&pool.done_cv, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.run_lock);
}
