/*
 * A fork-join thread pool created once per es_ctx. es_pool_run(fn) runs
 * fn(arg, ith, n) on all n threads (the caller is ith 0) and returns when all
 * are done. Workers spin briefly waiting for the next job, then sleep on a
 * condition variable; nothing is allocated per job.
 */
#ifndef ES_POOL_H
#define ES_POOL_H

#include <stdint.h>

typedef void (*es_task_fn)(void *arg, int32_t ith, int32_t nth);
typedef struct es_pool es_pool;

int es_pool_create(int32_t n_threads, es_pool **out); /* es_status */
void es_pool_destroy(es_pool *p);
void es_pool_run(es_pool *p, es_task_fn fn, void *arg);
int32_t es_pool_size(const es_pool *p);

#endif /* ES_POOL_H */
