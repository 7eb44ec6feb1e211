/* es_ctx lifetime: created once with its thread pool and kernel set. */
#include <stdlib.h>

#include "ctx.h"

/*
 * How long pool threads spin before blocking: EDGE_SDK_POOL_SPIN_US
 * (microseconds, 0 = block at once) or the pool's default. 0 suits a board
 * whose cores are shared with other busy processes; longer spins shave a
 * little off each parallel step on an otherwise idle machine.
 */
static int spin_ns_from_env(int64_t *spin_ns) {
    *spin_ns = ES_POOL_SPIN_NS_DEFAULT;
    const char *s = getenv("EDGE_SDK_POOL_SPIN_US");
    if (!s || !*s) return ES_OK;
    char *end;
    const long long us = strtoll(s, &end, 10);
    if (*end != '\0' || us < 0 || us > ES_POOL_SPIN_NS_MAX / 1000) return ES_ERR_ARG;
    *spin_ns = (int64_t)us * 1000;
    return ES_OK;
}

int es_ctx_create(int32_t n_threads, int32_t isa, es_ctx **out) {
    if (!out) return ES_ERR_NULL;
    *out = NULL;
    if (n_threads < 1 || n_threads > 256) return ES_ERR_THREADS;
    if (isa < ES_ISA_AUTO || isa >= ES_ISA_COUNT) return ES_ERR_ARG;
    const es_kernels *k = es_kernels_for(isa);
    if (!k) return ES_ERR_UNSUPPORTED;
    if (isa == ES_ISA_AUTO) es_best_isa(&isa);
    int64_t spin_ns;
    int st = spin_ns_from_env(&spin_ns);
    if (st != ES_OK) return st;
    es_ctx *c = calloc(1, sizeof *c);
    if (!c) return ES_ERR_NOMEM;
    st = es_pool_create(n_threads, spin_ns, &c->pool);
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
