/*
 * A fork-join thread pool created once per es_ctx. es_pool_run(fn) calls
 * fn(arg, ith, n) once for every task index ith in [0, n) and returns when
 * all n calls are done; n is the pool size. Which thread runs which index is
 * not fixed: the caller and the workers claim indices from a shared counter,
 * so a worker that is asleep or descheduled (a busy machine, more threads
 * than cores) does not hold up the call; the caller runs what nobody took.
 * Each index runs on exactly one thread, so per-index scratch stays private.
 *
 * Waiting (workers for the next call, the caller for the last task) spins for
 * at most spin_ns nanoseconds, then blocks on a condition variable, so idle
 * or oversubscribed threads give their CPU away; when a spinning thread finds
 * it was descheduled, the whole pool blocks without spinning for a while.
 * Nothing is allocated per call. Calls from different threads take turns.
 *
 *   es_pool *p;
 *   if (es_pool_create(4, ES_POOL_SPIN_NS_DEFAULT, &p) == ES_OK) {
 *       es_pool_run(p, task, &job);     // task(&job, ith, 4) for ith = 0..3
 *       es_pool_destroy(p);
 *   }
 */
#ifndef ES_POOL_H
#define ES_POOL_H

#include <stdint.h>

typedef void (*es_task_fn)(void *arg, int32_t ith, int32_t nth);
typedef struct es_pool es_pool;

/*
 * Default spin before blocking: about the longest serial gap between two
 * parallel steps of a decode (SwiGLU's 1536 exps, ~30k cycles: some 20 us on
 * a 1.5 GHz Cortex-A72 by estimate), so workers stay awake through a token
 * and sleep between tokens; far shorter than a scheduler tick. On a 2-core
 * x86 host, 2-thread decode of SmolLM2-135M ran ~125 tok/s with 20 us and
 * ~100 with 0 us when nothing else ran, but 0 us was best next to a busy
 * process (spinners get preempted mid-task): hence the back-off in pool.c.
 */
enum { ES_POOL_SPIN_NS_DEFAULT = 20000, ES_POOL_SPIN_NS_MAX = 100000000 };

/*
 * n_threads in [1, 256] counts the caller; spin_ns in [0, ES_POOL_SPIN_NS_MAX].
 * With more threads than the process may use CPUs the spin is dropped (a
 * spinning thread would only keep a thread with work off a core).
 */
int es_pool_create(int32_t n_threads, int64_t spin_ns, es_pool **out); /* es_status */
void es_pool_destroy(es_pool *p);
void es_pool_run(es_pool *p, es_task_fn fn, void *arg);
int32_t es_pool_size(const es_pool *p);
/* The spin in effect now: 0 when oversubscribed, or for a while after a
 * spinning thread was descheduled (another process wanted the core). */
int64_t es_pool_spin_ns(const es_pool *p);
/* The spin the pool was made with: spin_ns as given, or 0 when oversubscribed.
 * Unlike es_pool_spin_ns it does not change while the pool runs. */
int64_t es_pool_spin_setting(const es_pool *p);
/* How many times a spinning thread found it had been descheduled and turned spinning off (for BACKOFF_NS). */
int64_t es_pool_backoffs(const es_pool *p);

/* How many CPUs this process may run on (its affinity mask), at least 1. */
int32_t es_pool_cpus_available(void);

#endif /* ES_POOL_H */
