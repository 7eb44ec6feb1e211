/* The es_ctx object: a thread pool and the kernel set chosen at creation. */
#ifndef ES_CTX_H
#define ES_CTX_H

#include "kernels.h"
#include "pool.h"

struct es_ctx {
    es_pool *pool;
    const es_kernels *k;
    int32_t isa;
    int32_t n_threads;
};

#endif /* ES_CTX_H */
