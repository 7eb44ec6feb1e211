/*
 * Thread-pool dispatch micro-benchmark: how many fork-join calls per second
 * the pool completes, and how much CPU each costs, for 1, 2, 4 and 8 threads
 * (more threads than cores is the interesting case on a 2-core board).
 *
 * "empty": es_pool_run with a task that does nothing (pure wake + join cost).
 * "matvec": es_matmul_q8 of one 576x576 int8 matrix and one token (the size
 * of SmolLM2-135M's attention output product, ~15 us on one core), the
 * shortest parallel step of a decode.
 *
 * calls/s is the best of 3 runs of `seconds` each; CPU us/call is process
 * CPU time (all threads) per call in that run, so spinning shows up there.
 * Run it once with the machine otherwise idle and once next to a busy loop
 * (`python -c "while True: pass" &`) to see the shared-machine behaviour.
 *
 *   make -C native build/host/bench/bench_pool
 *   native/build/host/bench/bench_pool [seconds=0.3] [threads ...=1 2 4 8]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ctx.h"
#include "edge_sdk.h"
#include "pool.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct rate {
    double calls_per_s;
    double cpu_us_per_call;
} rate;

static void empty_task(void *arg, int32_t ith, int32_t nth) { (void)arg, (void)ith, (void)nth; }

typedef struct matvec_job {
    es_ctx *ctx;
    const int8_t *xq;
    const float *xs;
    const es_qmat *w;
    float *y;
} matvec_job;

static void call_empty(es_ctx *ctx, const matvec_job *m) {
    (void)m;
    es_pool_run(ctx->pool, empty_task, NULL);
}

static void call_matvec(es_ctx *ctx, const matvec_job *m) { es_matmul_q8(ctx, m->xq, m->xs, 1, m->w, m->y); }

static rate measure(es_ctx *ctx, void (*call)(es_ctx *, const matvec_job *), const matvec_job *m, double seconds) {
    rate best = {0.0, 0.0};
    for (int rep = 0; rep < 3; rep++) {
        long calls = 0;
        const double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        double t;
        do {
            for (int i = 0; i < 64; i++) call(ctx, m);
            calls += 64;
            t = clock_s(CLOCK_MONOTONIC) - t0;
        } while (t < seconds);
        const double c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (calls / t > best.calls_per_s) {
            best.calls_per_s = calls / t;
            best.cpu_us_per_call = 1e6 * c / (double)calls;
        }
    }
    return best;
}

int main(int argc, char **argv) {
    const double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    int32_t threads[16] = {1, 2, 4, 8};
    int n_threads = 4;
    if (argc > 2) {
        n_threads = 0;
        for (int i = 2; i < argc && n_threads < 16; i++) threads[n_threads++] = atoi(argv[i]);
    }
    enum { ROWS = 576, COLS = 576 };
    int8_t *q = malloc((size_t)ROWS * COLS), xq[COLS];
    float sc[ROWS], xs[COLS / 32], y[ROWS];
    srand(1);
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) q[i] = (int8_t)(rand() % 255 - 127);
    for (int i = 0; i < ROWS; i++) sc[i] = 0.01f;
    for (int i = 0; i < COLS; i++) xq[i] = (int8_t)(rand() % 255 - 127);
    for (int i = 0; i < COLS / 32; i++) xs[i] = 0.02f;
    const es_qmat w = {q, sc, ROWS, COLS, 0, 32};
    printf("%7s %16s %14s %16s %14s\n", "threads", "empty calls/s", "CPU us/call", "matvec calls/s", "CPU us/call");
    for (int i = 0; i < n_threads; i++) {
        es_ctx *ctx;
        if (es_ctx_create(threads[i], ES_ISA_AUTO, &ctx) != ES_OK) {
            fprintf(stderr, "es_ctx_create(%d) failed\n", threads[i]);
            return 1;
        }
        const matvec_job m = {ctx, xq, xs, &w, y};
        const rate e = measure(ctx, call_empty, &m, seconds), v = measure(ctx, call_matvec, &m, seconds);
        printf("%7d %16.0f %14.2f %16.0f %14.2f\n", threads[i], e.calls_per_s, e.cpu_us_per_call, v.calls_per_s,
               v.cpu_us_per_call);
        es_ctx_destroy(ctx);
    }
    free(q);
    return 0;
}
