/* The process-wide thread pool (kernels/threadpool.c). It knows nothing of what runs on
 * it: a layer that keeps per-thread state (the GEMM's activation blocks) registers a
 * worker-start hook. Internal to kernels/. */
#ifndef CLIPN_THREADPOOL_H
#define CLIPN_THREADPOOL_H

/* Run fn(arg, t) for t in [0, n_tasks) on the pool; the caller takes part. When the pool
 * is already busy (another thread's region, or a nested call) the tasks run serially in
 * the calling thread, so concurrent callers never oversubscribe nor deadlock. */
void clipn_parallel_for(int n_tasks, void (*fn)(void *arg, int t), void *arg);
int clipn_pool_threads(void);
void clipn_pool_set_threads(int n);
/* Hook each worker runs once when it starts, before its first task (one hook; a later call
 * replaces it for workers started from then on). */
void clipn_pool_on_worker_start(void (*hook)(void));

#endif
