/*
 * The fork-join pool: every task index runs exactly once per call, with the
 * pool's own nth, for pools smaller and larger than the machine, with and
 * without spinning; tasks' writes are visible to the caller on return;
 * creation checks its arguments; pools can be destroyed with workers
 * spinning, asleep, or never used; EDGE_SDK_POOL_SPIN_US sets the spin; a
 * spinning worker that loses its CPU turns spinning off for a while; two
 * threads sharing one pool take turns.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ctx.h"
#include "edge_sdk.h"
#include "pool.h"

enum { MAX_N = 64 };

typedef struct count_job {
    int32_t n;
    int32_t call;
    int32_t uneven;                 /* tasks do index-dependent amounts of work */
    atomic_int runs[MAX_N];         /* calls of each index, over all calls */
    atomic_int bad;                 /* calls with a wrong ith or nth */
    int64_t out[MAX_N];             /* plain writes, read by the caller after the call */
} count_job;

static void count_task(void *arg, int32_t ith, int32_t nth) {
    count_job *j = arg;
    if (nth != j->n || ith < 0 || ith >= nth) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    atomic_fetch_add(&j->runs[ith], 1);
    int64_t acc = (int64_t)j->call * 1000 + ith;
    if (j->uneven) {
        const int32_t work = (int32_t)(((uint32_t)ith * 7919u + (uint32_t)j->call * 104729u) % 7u);
        volatile int64_t sink = 0;
        for (int32_t i = 0; i < work * 2000; i++) sink += i;
        if (work == 6) sched_yield();
        acc += sink - sink;
    }
    j->out[ith] = acc;
}

static void exactly_once(int32_t n, int64_t spin_ns, int32_t calls, int32_t uneven) {
    es_pool *p = NULL;
    CHECK_EQ_INT(es_pool_create(n, spin_ns, &p), ES_OK);
    if (!p) return;
    CHECK_EQ_INT(es_pool_size(p), n);
    static count_job j;
    memset(&j, 0, sizeof j);
    j.n = n;
    j.uneven = uneven;
    int32_t stale = 0;
    for (int32_t c = 1; c <= calls; c++) {
        j.call = c;
        es_pool_run(p, count_task, &j);
        for (int32_t i = 0; i < n; i++) stale += j.out[i] != (int64_t)c * 1000 + i;
    }
    CHECK(stale == 0, "n=%d spin=%lld: %d task results not visible after the call", n, (long long)spin_ns, stale);
    CHECK(atomic_load(&j.bad) == 0, "n=%d: %d calls with a wrong index", n, atomic_load(&j.bad));
    for (int32_t i = 0; i < n; i++)
        CHECK(atomic_load(&j.runs[i]) == calls, "n=%d spin=%lld uneven=%d: index %d ran %d times in %d calls", n,
              (long long)spin_ns, uneven, i, atomic_load(&j.runs[i]), calls);
    es_pool_destroy(p);
}

static void test_every_index_once(void) {
    const int32_t sizes[] = {1, 2, 3, 4, 8, 16, MAX_N};
    const int64_t spins[] = {0, 2000, ES_POOL_SPIN_NS_DEFAULT};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t k = 0; k < sizeof spins / sizeof spins[0]; k++) {
            const int32_t n = sizes[s], calls = n <= 4 ? 3000 : 300;
            exactly_once(n, spins[k], calls, 0);
            exactly_once(n, spins[k], calls / 10, 1);
        }
}

static void test_create_arguments(void) {
    es_pool *p = (es_pool *)&p; /* must be reset to NULL on failure */
    CHECK_EQ_INT(es_pool_create(0, 0, &p), ES_ERR_THREADS);
    CHECK(p == NULL, "out not cleared");
    CHECK_EQ_INT(es_pool_create(257, 0, &p), ES_ERR_THREADS);
    CHECK_EQ_INT(es_pool_create(2, -1, &p), ES_ERR_ARG);
    CHECK_EQ_INT(es_pool_create(2, (int64_t)ES_POOL_SPIN_NS_MAX + 1, &p), ES_ERR_ARG);
    CHECK_EQ_INT(es_pool_create(2, 0, NULL), ES_ERR_NULL);
    es_pool_destroy(NULL);
}

static void test_spin_dropped_when_oversubscribed(void) {
    const int32_t cpus = es_pool_cpus_available();
    CHECK(cpus >= 1, "cpus_available %d", cpus);
    es_pool *p;
    CHECK_EQ_INT(es_pool_create(1, 1234, &p), ES_OK);
    CHECK_EQ_INT(es_pool_spin_ns(p), 1234); /* no workers: nobody spins */
    CHECK_EQ_INT(es_pool_spin_setting(p), 1234);
    es_pool_destroy(p);
    /* with workers, a spinner that emulation or the host deschedules may turn
     * the spin in effect off for a while: the setting is what is pinned */
    if (cpus <= 256) {
        CHECK_EQ_INT(es_pool_create(cpus, 1234, &p), ES_OK);
        CHECK_EQ_INT(es_pool_spin_setting(p), 1234);
        es_pool_destroy(p);
    }
    if (cpus < 256) {
        CHECK_EQ_INT(es_pool_create(cpus + 1, 1234, &p), ES_OK);
        CHECK_EQ_INT(es_pool_spin_setting(p), 0);
        CHECK_EQ_INT(es_pool_spin_ns(p), 0);
        es_pool_destroy(p);
    }
}

static void test_destroy_in_any_state(void) {
    static count_job j;
    for (int32_t r = 0; r < 200; r++) {
        const int32_t n = 2 + r % 4;
        es_pool *p;
        CHECK_EQ_INT(es_pool_create(n, r % 2 ? ES_POOL_SPIN_NS_DEFAULT : 0, &p), ES_OK);
        memset(&j, 0, sizeof j);
        j.n = n;
        for (int32_t c = 0; c < r % 3; c++) {
            j.call = c + 1;
            es_pool_run(p, count_task, &j);
        }
        es_pool_destroy(p); /* workers never started, spinning, or asleep */
        for (int32_t i = 0; i < n; i++) CHECK_EQ_INT(atomic_load(&j.runs[i]), r % 3);
    }
}

static void test_spin_from_environment(void) {
    es_ctx *ctx;
    unsetenv("EDGE_SDK_POOL_SPIN_US");
    CHECK_EQ_INT(es_ctx_create(1, ES_ISA_GENERIC, &ctx), ES_OK);
    CHECK_EQ_INT(es_pool_spin_ns(ctx->pool), ES_POOL_SPIN_NS_DEFAULT);
    es_ctx_destroy(ctx);
    setenv("EDGE_SDK_POOL_SPIN_US", "7", 1);
    CHECK_EQ_INT(es_ctx_create(1, ES_ISA_GENERIC, &ctx), ES_OK);
    CHECK_EQ_INT(es_pool_spin_ns(ctx->pool), 7000);
    es_ctx_destroy(ctx);
    setenv("EDGE_SDK_POOL_SPIN_US", "0", 1);
    CHECK_EQ_INT(es_ctx_create(1, ES_ISA_GENERIC, &ctx), ES_OK);
    CHECK_EQ_INT(es_pool_spin_ns(ctx->pool), 0);
    es_ctx_destroy(ctx);
    const char *bad[] = {"-1", "7us", "1e3", "100001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("EDGE_SDK_POOL_SPIN_US", bad[i], 1);
        ctx = (es_ctx *)&ctx;
        CHECK(es_ctx_create(1, ES_ISA_GENERIC, &ctx) == ES_ERR_ARG && ctx == NULL, "EDGE_SDK_POOL_SPIN_US=%s accepted",
              bad[i]);
    }
    unsetenv("EDGE_SDK_POOL_SPIN_US");
}

/* ---- a descheduled spinner: a signal handler that sleeps 2 ms stands in for
 * the scheduler giving the worker's core to another process */

static atomic_int g_handled;

static void sleepy_handler(int sig) {
    (void)sig;
    const struct timespec ms2 = {0, 2000000};
    nanosleep(&ms2, NULL);
    atomic_fetch_add(&g_handled, 1);
}

static void sleep_ms(long ms) {
    const struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void test_preempted_spinner_turns_spinning_off(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sleepy_handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    const int64_t spin = ES_POOL_SPIN_NS_MAX; /* 100 ms: the worker is surely still spinning */
    es_pool *p;
    CHECK_EQ_INT(es_pool_create(2, spin, &p), ES_OK);
    static count_job j;
    memset(&j, 0, sizeof j);
    j.n = 2;
    /* only the worker may take SIGUSR1: the caller blocks it after creating the pool */
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old);
    /* The pool counts each back-off, so the check does not race the 50 ms it lasts: on a busy host (or under
     * qemu) this thread may itself be descheduled for longer than that between two polls. */
    int seen_off = 0, tries = 0;
    const int cpus = es_pool_cpus_available();
    for (; tries < 20 && !seen_off && cpus >= 2; tries++) {
        j.call = tries + 1;
        es_pool_run(p, count_task, &j); /* the worker now spins for the next call */
        const int before = atomic_load(&g_handled);
        const int64_t backoffs = es_pool_backoffs(p);
        kill(getpid(), SIGUSR1);
        for (int w = 0; w < 2000 && atomic_load(&g_handled) == before; w++) sleep_ms(1); /* up to 2 s */
        /* the worker reads its clock as soon as it runs again after the handler: on a busy host that may be
         * tens of milliseconds later; a worker that had stopped spinning before the signal never backs off */
        for (int w = 0; w < 500 && !seen_off; w++) {
            seen_off = es_pool_backoffs(p) > backoffs;
            if (!seen_off) sleep_ms(1);
        }
        if (!seen_off) sleep_ms(120); /* the worker had gone to sleep before the signal: start over */
    }
    if (cpus >= 2) {
        CHECK(seen_off, "spinning stayed on after %d descheduled spins", tries);
        sleep_ms(80); /* past the back-off; nobody spins meanwhile (the worker blocked) */
        CHECK_EQ_INT(es_pool_spin_ns(p), spin);
    }
    es_pool_destroy(p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    signal(SIGUSR1, SIG_DFL);
}

/* ---- two threads sharing one pool: their calls are serialized, none is lost */

typedef struct sharer {
    es_pool *pool;
    count_job *job;
    int32_t calls;
    int32_t stale;
} sharer;

static void *share_main(void *a) {
    sharer *s = a;
    for (int32_t c = 1; c <= s->calls; c++) {
        s->job->call = c;
        es_pool_run(s->pool, count_task, s->job);
        for (int32_t i = 0; i < s->job->n; i++) s->stale += s->job->out[i] != (int64_t)c * 1000 + i;
    }
    return NULL;
}

static void test_threads_sharing_a_pool(void) {
    static count_job jobs[2];
    memset(jobs, 0, sizeof jobs);
    es_pool *p = NULL;
    CHECK_EQ_INT(es_pool_create(3, 2000, &p), ES_OK);
    sharer s[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        jobs[i].n = 3;
        s[i] = (sharer){p, &jobs[i], 2000, 0};
        CHECK_EQ_INT(pthread_create(&t[i], NULL, share_main, &s[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(s[i].stale == 0, "thread %d: %d task results not its own", i, s[i].stale);
        CHECK(atomic_load(&jobs[i].bad) == 0, "thread %d: wrong indices", i);
        for (int32_t k = 0; k < 3; k++)
            CHECK(atomic_load(&jobs[i].runs[k]) == 2000, "thread %d: index %d ran %d times in 2000 calls", i, k,
                  atomic_load(&jobs[i].runs[k]));
    }
    es_pool_destroy(p);
}

int main(void) {
    test_create_arguments();
    test_threads_sharing_a_pool();
    test_spin_dropped_when_oversubscribed();
    test_spin_from_environment();
    test_destroy_in_any_state();
    test_preempted_spinner_turns_spinning_off();
    test_every_index_once();
    return check_report("test_pool");
}
