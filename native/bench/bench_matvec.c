/*
 * int8 matvec micro-benchmark: GB/s of weights (int8 + scales) read per
 * second, for the SmolLM2-135M shapes (576x1536 down, 1536x576 gate/up,
 * 49152x576 head), for every kernel set this CPU runs.
 *
 * "hot": one matrix, called repeatedly (it stays in cache for the small ones).
 * "stream": enough copies to fill 256 MiB, called in turn, so weights come
 * from DRAM as in a real decode step. Each number is the best of 5 runs
 * (the machine may be shared).
 *
 *   make -C native bench            (or: build/host/bench/bench_matvec [threads])
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edge_sdk.h"
#include "kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    const char *name;
    int32_t rows, cols;
} shape;

static double run(es_ctx *ctx, const es_qmat *mats, int n_mats, const int8_t *xq, const float *xs, float *y,
                  double min_seconds) {
    int calls = 0;
    const double t0 = now();
    double t;
    do {
        for (int i = 0; i < n_mats; i++) es_matmul_q8(ctx, xq, xs, 1, &mats[i], y);
        calls += n_mats;
        t = now() - t0;
    } while (t < min_seconds);
    const double bytes = (double)mats[0].rows * mats[0].cols + (double)mats[0].rows * (mats[0].cols / 32) * 4;
    return bytes * calls / t / 1e9;
}

int main(int argc, char **argv) {
    const int32_t threads = argc > 1 ? atoi(argv[1]) : 1;
    const int32_t only = argc > 2 ? atoi(argv[2]) : -1; /* one ES_ISA_* or all */
    const shape shapes[] = {{"576x1536 (down)", 576, 1536}, {"1536x576 (gate/up)", 1536, 576},
                            {"49152x576 (head)", 49152, 576}};
    const size_t stream_bytes = (size_t)256 << 20;
    srand(1);
    printf("threads %d, act_block 32, per-row scales\n", threads);
    for (int32_t isa = 0; isa < ES_ISA_COUNT; isa++) {
        int32_t ok = 0;
        es_isa_supported(isa, &ok);
        if (!ok || (only >= 0 && isa != only)) continue;
        const char *name;
        es_isa_name(isa, &name);
        es_ctx *ctx;
        if (es_ctx_create(threads, isa, &ctx) != ES_OK) return 1;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int32_t rows = shapes[s].rows, cols = shapes[s].cols;
            const size_t mbytes = (size_t)rows * cols;
            int n_copies = (int)(stream_bytes / mbytes);
            if (n_copies < 1) n_copies = 1;
            int8_t *q = malloc(mbytes * (size_t)n_copies);
            float *sc = malloc((size_t)rows * 4);
            int8_t *xq = malloc((size_t)cols);
            float *xs = malloc((size_t)(cols / 32) * 4), *y = malloc((size_t)rows * 4);
            es_qmat *mats = malloc(sizeof(es_qmat) * (size_t)n_copies);
            for (size_t i = 0; i < mbytes * (size_t)n_copies; i++) q[i] = (int8_t)(rand() % 255 - 127);
            for (int32_t i = 0; i < rows; i++) sc[i] = 0.01f;
            for (int32_t i = 0; i < cols; i++) xq[i] = (int8_t)(rand() % 255 - 127);
            for (int32_t i = 0; i < cols / 32; i++) xs[i] = 0.02f;
            for (int i = 0; i < n_copies; i++) {
                es_qmat m = {q + mbytes * (size_t)i, sc, rows, cols, 0, 32};
                mats[i] = m;
            }
            double hot = 0.0, cold = 0.0;
            for (int rep = 0; rep < 5; rep++) {
                const double h = run(ctx, mats, 1, xq, xs, y, 0.1), c = run(ctx, mats, n_copies, xq, xs, y, 0.2);
                hot = h > hot ? h : hot;
                cold = c > cold ? c : cold;
            }
            printf("%-11s %-20s hot %6.1f GB/s   stream %6.1f GB/s\n", name, shapes[s].name, hot, cold);
            free(q), free(sc), free(xq), free(xs), free(y), free(mats);
        }
        es_ctx_destroy(ctx);
    }
    return 0;
}
