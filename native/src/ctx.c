/* es_ctx lifetime: created once with its thread pool and kernel set. */
#include <stdlib.h>

#include "ctx.h"

int es_ctx_create(int32_t n_threads, int32_t isa, es_ctx **out) {
    if (!out) return ES_ERR_NULL;
    *out = NULL;
    if (n_threads < 1 || n_threads > 256) return ES_ERR_THREADS;
    if (isa < ES_ISA_AUTO || isa >= ES_ISA_COUNT) return ES_ERR_ARG;
    const es_kernels *k = es_kernels_for(isa);
    if (!k) return ES_ERR_UNSUPPORTED;
    if (isa == ES_ISA_AUTO) es_best_isa(&isa);
    es_ctx *c = calloc(1, sizeof *c);
    if (!c) return ES_ERR_NOMEM;
    int st = es_pool_create(n_threads, &c->pool);
    if (st != ES_OK) {
        free(c);
        return st;
    }
    c->k = k;
    c->isa = isa;
    c->n_threads = n_threads;
    *out = c;
    return ES_OK;
}

int es_ctx_destroy(es_ctx *ctx) {
    if (!ctx) return ES_ERR_NULL;
    es_pool_destroy(ctx->pool);
    free(ctx);
    return ES_OK;
}

int es_ctx_info(const es_ctx *ctx, int32_t *n_threads, int32_t *isa) {
    if (!ctx || !n_threads || !isa) return ES_ERR_NULL;
    *n_threads = ctx->n_threads;
    *isa = ctx->isa;
    return ES_OK;
}
