/* Fork-join thread pool (see pool.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "edge_sdk.h"
#include "pool.h"

enum { SPIN_BEFORE_SLEEP = 1 << 14, SPIN_BEFORE_YIELD = 1 << 10 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
    __asm__ volatile("yield");
#endif
}

typedef struct es_worker {
    struct es_pool *pool;
    int32_t ith;
    pthread_t thread;
} es_worker;

struct es_pool {
    int32_t n;
    es_worker *workers;      /* (n - 1) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;         /* bumped once per job */
    atomic_int pending;      /* workers still running the current job */
    atomic_int sleepers;
    atomic_int stop;
    es_task_fn fn;
    void *arg;
};

static void *worker_main(void *a) {
    es_worker *w = a;
    es_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                if (spins > SPIN_BEFORE_YIELD && spins % 64 == 0) sched_yield(); /* let a busy caller run */
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

static void wake_all(es_pool *p) {
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with sleepers++ before the gen check */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

int es_pool_create(int32_t n_threads, es_pool **out) {
    if (!out) return ES_ERR_NULL;
    *out = NULL;
    if (n_threads < 1 || n_threads > 256) return ES_ERR_THREADS;
    es_pool *p = calloc(1, sizeof *p);
    if (!p) return ES_ERR_NOMEM;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            es_pool_destroy(p);
            return ES_ERR_NOMEM;
        }
        for (int32_t i = 1; i < n_threads; i++) {
            es_worker *w = &p->workers[i - 1];
            w->pool = p;
            w->ith = i;
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                p->n = i; /* join only the started ones */
                es_pool_destroy(p);
                return ES_ERR_THREADS;
            }
        }
    }
    *out = p;
    return ES_OK;
}

void es_pool_destroy(es_pool *p) {
    if (!p) return;
    if (p->workers) {
        atomic_store(&p->stop, 1);
        wake_all(p);
        for (int32_t i = 1; i < p->n; i++) pthread_join(p->workers[i - 1].thread, NULL);
        free(p->workers);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void es_pool_run(es_pool *p, es_task_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    wake_all(p);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_BEFORE_YIELD) cpu_relax();
        else sched_yield();
    }
}

int32_t es_pool_size(const es_pool *p) { return p->n; }
