/*
 * Parallel int8 products: up to three weight matrices that share one
 * quantized input (q/k/v, gate/up) are split by rows across the pool as one
 * concatenated row range, so every thread gets an equal share of weight bytes.
 */
#ifndef ES_PRODUCTS_H
#define ES_PRODUCTS_H

#include "ctx.h"

typedef struct es_prod_set {
    const es_kernels *k;
    const int8_t *xq;         /* (n_tokens, cols) */
    const float *xs;          /* (n_tokens) */
    int32_t n_tokens;
    int32_t n;                /* matrices in use, 1..3 */
    const es_qmat *w[3];
    float *y[3];              /* y[i] (n_tokens, w[i]->rows) */
} es_prod_set;

void es_run_products(es_ctx *ctx, es_prod_set *ps);

/* Token range [t0, t1) of thread ith out of nth for n tokens. */
static inline void es_split(int32_t n, int32_t ith, int32_t nth, int32_t *t0, int32_t *t1) {
    *t0 = (int32_t)((int64_t)n * ith / nth);
    *t1 = (int32_t)((int64_t)n * (ith + 1) / nth);
}

#endif /* ES_PRODUCTS_H */
