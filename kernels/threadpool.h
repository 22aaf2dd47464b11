/* The process-wide thread pool (kernels/threadpool.c). It knows nothing of what runs on
 * it: a layer that keeps per-thread state (the GEMM's activation blocks) registers a
 * worker-start hook. Internal to kernels/. */
#ifndef CLIPN_THREADPOOL_H
#define CLIPN_THREADPOOL_H

/* Run fn(arg, t) for t in [0, n_tasks) on the pool; the caller takes part. When the pool
 * is already busy (another thread's region, or a nested call) the tasks run serially in
 * the calling thread, so concurrent callers never oversubscribe nor deadlock. */
void clipn_parallel_for(int n_tasks, void (*fn)(void *arg, int t), void *arg);
/* Threads a region of the calling thread may use: its limit (clipn_pool_limit) or, without
 * one, the pool's count. What a task split should plan for. */
int clipn_pool_threads(void);
/* The process-wide count (clipn_pool_set_threads; default all online cores, at most 64). */
int clipn_pool_size(void);
void clipn_pool_set_threads(int n);
/* Limit the calling thread's regions to n threads (itself included; 0 = no limit, the
 * pool's count; may exceed it). Returns the previous limit, to restore. */
int clipn_pool_limit(int n);
/* Hooks each worker runs once when it starts, before its first task (up to 4; adding one
 * twice is a no-op). Returns 0, or -1 when full. A layer with per-thread state (the GEMM's
 * activation blocks) registers one. */
int clipn_pool_on_worker_start(void (*hook)(void));
/* Start the workers the calling thread's regions would use and wait until they ran their
 * start hooks; run the hooks in the calling thread too. Afterwards a region allocates
 * nothing (unless a later limit or count asks for more workers). */
void clipn_pool_start(void);

#endif
