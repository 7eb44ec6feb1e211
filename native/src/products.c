/* Row-split parallel products (see products.h). */
#include "products.h"

enum { ROW_ALIGN = 16 }; /* split points are multiples of this (tiles stay whole) */

static void prod_task(void *arg, int32_t ith, int32_t nth) {
    const es_prod_set *ps = arg;
    int64_t total = 0;
    for (int32_t i = 0; i < ps->n; i++) total += ps->w[i]->rows;
    int64_t lo = total * ith / nth, hi = total * (ith + 1) / nth;
    lo = lo / ROW_ALIGN * ROW_ALIGN;
    hi = ith == nth - 1 ? total : hi / ROW_ALIGN * ROW_ALIGN;
    const es_matmul_fn fn = ps->n_tokens == 1 ? ps->k->matvec_q8 : ps->k->matmul_q8;
    int64_t base = 0;
    for (int32_t i = 0; i < ps->n && lo < hi; i++) {
        const es_qmat *w = ps->w[i];
        const int64_t r0 = lo > base ? lo - base : 0;
        const int64_t r1 = hi - base < w->rows ? hi - base : w->rows;
        if (r0 < r1) fn(ps->xq, ps->xs, ps->n_tokens, w, (int32_t)r0, (int32_t)r1, ps->y[i], w->rows);
        base += w->rows;
    }
}

void es_run_products(es_ctx *ctx, es_prod_set *ps) {
    ps->k = ctx->k;
    es_pool_run(ctx->pool, prod_task, ps);
}
