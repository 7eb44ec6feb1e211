/*
 * Fork-join thread pool (see pool.h).
 *
 * One 64-bit word drives a call: the high half is the call's number, the low
 * half the next task index to hand out. The caller stores (call << 32) to
 * start a call; every thread, the caller included, claims indices with a
 * compare-and-swap that also checks the call number, so a worker waking late
 * can never take an index of a newer call. `pending` counts the tasks not yet
 * finished; the caller returns when it reaches zero.
 *
 * Waiting is spin-then-block, as in OpenMP runtimes (GOMP_SPINCOUNT) and
 * llama.cpp's ggml-cpu threadpool: a waiter polls for spin_ns with the CPU's
 * pause hint, then sleeps on a condition variable. The sleeper count and the
 * caller's waiting flag are seq_cst, so a store of new work (or of the last
 * completion) either is seen by the waiter's last check or sees the waiter
 * and signals it under the mutex: no wake-up is lost, and nobody pays for a
 * mutex while everyone is awake.
 */
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edge_sdk.h"
#include "pool.h"

/* ---- waiting --------------------------------------------------------------- */

/* The CPU's spin-wait hint: PAUSE on x86 (frees the sibling hyperthread, saves
 * power), YIELD on ARM (a hint to SMT cores and to hypervisors/qemu). */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
    __asm__ volatile("yield" ::: "memory");
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

enum { POLLS_PER_CLOCK = 32 }; /* cpu_relax rounds between two clock reads (~1-5 us) */

/*
 * A gap this long between two clock reads of a spin means the spinner was
 * descheduled: another runnable thread wanted its core. Spinning then only
 * trades our CPU share for preemptions in the middle of tasks, so every
 * waiter of the pool blocks at once for the next BACKOFF_NS, then tries
 * spinning again.
 */
#define PREEMPTED_NS INT64_C(200000)
#define BACKOFF_NS INT64_C(50000000)

typedef int (*es_ready_fn)(const struct es_pool *p, uint32_t key);

/* ---- the pool -------------------------------------------------------------- */

typedef struct es_worker {
    struct es_pool *pool;
    pthread_t thread;
} es_worker;

struct es_pool {
    /* set at creation, or by the caller between calls */
    int32_t n;
    int64_t spin_ns;
    uint32_t call;           /* number of the last call (caller only) */
    es_task_fn fn;
    void *arg;
    es_worker *workers;      /* (n - 1) */
    _Atomic int64_t no_spin_until; /* now_ns() before which waiters block at once */
    _Atomic int64_t backoffs;      /* times a descheduled spinner turned spinning off (for tests and tuning) */
    pthread_mutex_t run_mu;  /* one call at a time: callers on other threads wait their turn */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* workers sleep here for the next call */
    pthread_cond_t done_cv;  /* the caller sleeps here for the last task */
    /* written by every thread during a call: one cache line each */
    alignas(64) _Atomic uint64_t work; /* (call << 32) | next task index */
    alignas(64) atomic_int pending;    /* tasks of the current call not finished */
    alignas(64) atomic_int sleepers;   /* workers blocked on work_cv */
    atomic_int caller_waiting;         /* the caller is blocked on done_cv */
    atomic_int stop;
};

static inline uint32_t call_of(uint64_t w) { return (uint32_t)(w >> 32); }

/* Claim the next index of call `call`: 1 and *ith, or 0 when none is left. */
static int claim(es_pool *p, uint32_t call, int32_t *ith) {
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    for (;;) {
        if (call_of(w) != call || (uint32_t)w >= (uint32_t)p->n) return 0;
        if (atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *ith = (int32_t)(uint32_t)w;
            return 1;
        }
    }
}

/* Run claimed tasks of `call` until none is left. fn and arg stay valid for
 * as long as this thread holds a claimed, unfinished task of the call. */
static void run_tasks(es_pool *p, uint32_t call) {
    int32_t ith;
    while (claim(p, call, &ith)) {
        p->fn(p->arg, ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            atomic_thread_fence(memory_order_seq_cst); /* pending's store, then caller_waiting's load */
            if (atomic_load(&p->caller_waiting)) {
                pthread_mutex_lock(&p->mu);
                pthread_cond_signal(&p->done_cv);
                pthread_mutex_unlock(&p->mu);
            }
        }
    }
}

/*
 * Blocking without lost wake-ups is a store-then-load handshake on each side:
 * a waiter stores its flag (sleepers, caller_waiting) and then loads the
 * other side's word (work, pending); the other side stores that word and then
 * loads the flag. One of the two must see the other's store, so each side has
 * a seq_cst fence between its store and its load. seq_cst accesses alone do
 * not always give that in practice: qemu-user runs an aarch64 STLR followed by
 * LDAR as a plain store and load on an x86 host, which the host may reorder,
 * and test_pool then hung on a lost wake-up in about half of its runs; with
 * the fences (DMB ISH, an mfence on the host) it does not. The fences sit on
 * the paths that block or wake, once per call or task, never in a spin loop.
 */
static int new_call_or_stop(const es_pool *p, uint32_t seen) {
    return call_of(atomic_load(&p->work)) != seen || atomic_load(&p->stop);
}

static int all_done(const es_pool *p, uint32_t unused) {
    (void)unused;
    return atomic_load(&p->pending) == 0;
}

/* Poll ready(p, key) for up to spin_ns: 1 if it became true, else 0. */
static int spin(es_pool *p, es_ready_fn ready, uint32_t key) {
    if (ready(p, key)) return 1;
    if (p->spin_ns <= 0) return 0;
    int64_t t = now_ns();
    if (t < atomic_load_explicit(&p->no_spin_until, memory_order_relaxed)) return 0;
    const int64_t until = t + p->spin_ns;
    for (;;) {
        for (int i = 0; i < POLLS_PER_CLOCK; i++) {
            cpu_relax();
            if (ready(p, key)) return 1;
        }
        const int64_t t2 = now_ns();
        if (t2 - t > PREEMPTED_NS) {
            atomic_store_explicit(&p->no_spin_until, t2 + BACKOFF_NS, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->backoffs, 1, memory_order_relaxed);
            return 0;
        }
        if (t2 >= until) return 0;
        t = t2;
    }
}

static void *worker_main(void *a) {
    es_pool *p = ((es_worker *)a)->pool;
    uint32_t seen = 0;
    for (;;) {
        if (!spin(p, new_call_or_stop, seen)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            atomic_thread_fence(memory_order_seq_cst); /* sleepers' store, then work's load */
            while (!new_call_or_stop(p, seen)) pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = call_of(atomic_load_explicit(&p->work, memory_order_acquire));
        run_tasks(p, seen);
    }
}

/* ---- public functions ------------------------------------------------------ */

int32_t es_pool_cpus_available(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

int es_pool_create(int32_t n_threads, int64_t spin_ns, es_pool **out) {
    if (!out) return ES_ERR_NULL;
    *out = NULL;
    if (n_threads < 1 || n_threads > 256) return ES_ERR_THREADS;
    if (spin_ns < 0 || spin_ns > ES_POOL_SPIN_NS_MAX) return ES_ERR_ARG;
    es_pool *p = aligned_alloc(alignof(es_pool), sizeof *p); /* sizeof is a multiple of the 64-byte alignment */
    if (!p) return ES_ERR_NOMEM;
    memset(p, 0, sizeof *p);
    p->n = n_threads;
    p->spin_ns = n_threads > es_pool_cpus_available() ? 0 : spin_ns;
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->work, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->no_spin_until, 0);
    atomic_init(&p->backoffs, 0);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            es_pool_destroy(p);
            return ES_ERR_NOMEM;
        }
        for (int32_t i = 1; i < n_threads; i++) {
            es_worker *w = &p->workers[i - 1];
            w->pool = p;
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
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        for (int32_t i = 1; i < p->n; i++) pthread_join(p->workers[i - 1].thread, NULL);
        free(p->workers);
    }
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p);
}

static void run_call(es_pool *p, es_task_fn fn, void *arg);

void es_pool_run(es_pool *p, es_task_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    /* the call state below (fn, arg, call, pending) is one caller's: a second thread sharing the
       pool would overwrite it mid-call and both would wait forever, so calls are serialized */
    pthread_mutex_lock(&p->run_mu);
    run_call(p, fn, arg);
    pthread_mutex_unlock(&p->run_mu);
}

static void run_call(es_pool *p, es_task_fn fn, void *arg) {
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n, memory_order_relaxed);
    const uint32_t call = ++p->call;
    atomic_store(&p->work, (uint64_t)call << 32); /* seq_cst: publishes fn, arg, pending */
    atomic_thread_fence(memory_order_seq_cst);    /* work's store, then sleepers' load */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p, call);
    if (spin(p, all_done, 0)) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_waiting, 1);
    atomic_thread_fence(memory_order_seq_cst); /* caller_waiting's store, then pending's load */
    while (!all_done(p, 0)) pthread_cond_wait(&p->done_cv, &p->mu);
    atomic_store(&p->caller_waiting, 0);
    pthread_mutex_unlock(&p->mu);
}

int32_t es_pool_size(const es_pool *p) { return p->n; }

int64_t es_pool_spin_setting(const es_pool *p) { return p->spin_ns; }

int64_t es_pool_backoffs(const es_pool *p) { return atomic_load_explicit(&p->backoffs, memory_order_relaxed); }

int64_t es_pool_spin_ns(const es_pool *p) {
    return now_ns() < atomic_load_explicit(&p->no_spin_until, memory_order_relaxed) ? 0 : p->spin_ns;
}
