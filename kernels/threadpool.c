/* One process-wide thread pool, created lazily on the first parallel region.
 *
 * Design: a single "region" at a time. The thread that wins run_lock (trylock) hands the
 * tasks to the workers and works too; anyone who finds the pool busy (another library
 * context in another thread, or a nested call from inside a task) runs its tasks serially.
 * So N user threads on 2 cores never create more than threads+N-1 busy threads and nobody
 * waits for somebody else's work. */
#include "kernels_impl.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#define POOL_MAX_WORKERS 63

static struct {
    pthread_mutex_t run_lock;   /* held by the thread running a region */
    pthread_mutex_t lock;       /* guards the fields below */
    pthread_cond_t work_cv, done_cv;
    pthread_t workers[POOL_MAX_WORKERS];
    unsigned long born[POOL_MAX_WORKERS]; /* generation when started: the next is theirs */
    int n_workers;              /* started */
    int threads;                /* wanted, including the caller; 0 = not yet decided */
    unsigned long generation;
    int participants;           /* workers taking part in the current region */
    int active;                 /* participants not yet finished */
    void (*fn)(void *, int);
    void *arg;
    int n_tasks;
    atomic_int next_task;
} pool = {
    .run_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

static void run_tasks(void (*fn)(void *, int), void *arg, int n_tasks)
{
    for (;;) {
        int t = atomic_fetch_add(&pool.next_task, 1);
        if (t >= n_tasks)
            break;
        fn(arg, t);
    }
}

static void *worker_main(void *p)
{
    const int index = (int)(intptr_t)p;
    clipn_gemm_thread_scratch(); /* GEMM block now, not in the first region (NULL: stack) */
    pthread_mutex_lock(&pool.lock);
    unsigned long seen = pool.born[index];
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.work_cv, &pool.lock);
        seen = pool.generation;
        if (index >= pool.participants)
            continue;
        void (*fn)(void *, int) = pool.fn;
        void *arg = pool.arg;
        int n_tasks = pool.n_tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, arg, n_tasks);
        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0)
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

int clipn_pool_threads(void)
{
    pthread_mutex_lock(&pool.lock);
    if (pool.threads == 0)
        pool.threads = default_threads();
    int n = pool.threads;
    pthread_mutex_unlock(&pool.lock);
    return n;
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
    while (pool.n_workers < want) {
        /* workers block all signals: the user's handlers run on the user's threads */
        pool.born[pool.n_workers] = pool.generation;
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
    if (want > pool.n_workers)
        want = pool.n_workers;
    pool.fn = fn;
    pool.arg = arg;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next_task, 0);
    pool.participants = want;
    pool.active = want;
    pool.generation++;
    pthread_cond_broadcast(&pool.work_cv);
    pthread_mutex_unlock(&pool.lock);

    run_tasks(fn, arg, n_tasks);

    pthread_mutex_lock(&pool.lock);
    while (pool.active > 0)
        pthread_cond_wait(&pool.done_cv, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.run_lock);
}
