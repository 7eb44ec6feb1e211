/*
 * The embedding graph (row lookup + dequantization), the head graph (final
 * rmsnorm, quantize, int8 product -> logits) and the whole-model convenience.
 */
#include "buffers.h"
#include "ctx.h"
#include "products.h"
#include "validate.h"

typedef struct embed_job {
    const es_kernels *k;
    const es_qmat *table;
    const int32_t *ids;
    int32_t T;
    float *out;
} embed_job;

static void task_embed(void *arg, int32_t ith, int32_t nth) {
    const embed_job *j = arg;
    const es_qmat *m = j->table;
    const int32_t ng = m->group_size > 0 ? m->cols / m->group_size : 1;
    int32_t t0, t1;
    es_split(j->T, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        const size_t id = (size_t)j->ids[t];
        j->k->embed_row(m->q + id * m->cols, m->scale + id * ng, m->cols, m->group_size,
                        j->out + (size_t)t * m->cols);
    }
}

int es_run_embed(es_ctx *ctx, const es_qmat *table, const int32_t *ids, int32_t n_tokens, float *out) {
    if (!ctx || !ids || !out) return ES_ERR_NULL;
    int st = es_check_qmat(table, 0, 0);
    if (st != ES_OK) return st;
    if (n_tokens <= 0) return ES_ERR_DIM;
    for (int32_t t = 0; t < n_tokens; t++)
        if (ids[t] < 0 || ids[t] >= table->rows) return ES_ERR_TOKEN;
    embed_job j = {.k = ctx->k, .table = table, .ids = ids, .T = n_tokens, .out = out};
    if (n_tokens == 1) task_embed(&j, 0, 1);
    else es_pool_run(ctx->pool, task_embed, &j);
    return ES_OK;
}

typedef struct head_job {
    const es_kernels *k;
    const es_dims *d;
    const float *out_norm;
    const float *x;
    int32_t T;
    float *xn;
    int8_t *xq;
    float *xs;
} head_job;

static void task_head_norm_quant(void *arg, int32_t ith, int32_t nth) {
    const head_job *j = arg;
    const int32_t dim = j->d->dim;
    int32_t t0, t1;
    es_split(j->T, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        float *xn = j->xn + (size_t)t * dim;
        j->k->rmsnorm(j->x + (size_t)t * dim, j->out_norm, dim, j->d->rms_eps, xn);
        j->k->quantize_row(xn, dim, j->d->act_block, j->xq + (size_t)t * dim,
                           j->xs + (size_t)t * es_n_scales(j->d->act_block, dim));
    }
}

int es_run_head(es_ctx *ctx, const es_dims *dims, const float *out_norm,
                const es_qmat *head, const float *x, int32_t n_tokens, float *logits,
                void *arena, uint64_t arena_bytes,
                const uint64_t *offsets, int32_t n_offsets) {
    if (!ctx || !out_norm || !x || !logits) return ES_ERR_NULL;
    int st = es_check_dims(dims);
    if (st != ES_OK) return st;
    if ((st = es_check_qmat(head, dims->vocab_size, dims->dim)) != ES_OK) return st;
    if (head->act_block != dims->act_block) return ES_ERR_GROUP;
    if (n_tokens <= 0) return ES_ERR_DIM;
    static const int32_t ids[3] = {ES_BUF_XN, ES_BUF_XQ, ES_BUF_XS};
    void *b[ES_BUF_COUNT] = {0};
    st = es_place_buffers(dims, n_tokens, 1, ctx->n_threads, arena, arena_bytes, offsets, n_offsets,
                          ids, 3, b);
    if (st != ES_OK) return st;
    head_job j = {.k = ctx->k, .d = dims, .out_norm = out_norm, .x = x, .T = n_tokens,
                  .xn = b[ES_BUF_XN], .xq = b[ES_BUF_XQ], .xs = b[ES_BUF_XS]};
    if (n_tokens == 1) task_head_norm_quant(&j, 0, 1);
    else es_pool_run(ctx->pool, task_head_norm_quant, &j);
    es_prod_set ps = {.xq = j.xq, .xs = j.xs, .n_tokens = n_tokens, .n = 1, .w = {head}, .y = {logits}};
    es_run_products(ctx, &ps);
    return ES_OK;
}

int es_run_model(es_ctx *ctx, const es_dims *dims, const es_model_weights *model,
                 const es_kv_cache *kv, const es_rope *rope,
                 const int32_t *ids, int32_t n_tokens, int32_t pos,
                 float *x_work, float *logits, int32_t all_logits,
                 void *arena, uint64_t arena_bytes,
                 const uint64_t *offsets, int32_t n_offsets) {
    if (!ctx || !model || !model->layers || !model->out_norm || !x_work || !logits) return ES_ERR_NULL;
    int st = es_check_dims(dims);
    if (st != ES_OK) return st;
    if ((st = es_check_qmat(&model->embed, dims->vocab_size, dims->dim)) != ES_OK) return st;
    if ((st = es_check_qmat(&model->head, dims->vocab_size, dims->dim)) != ES_OK) return st;
    if ((st = es_run_embed(ctx, &model->embed, ids, n_tokens, x_work)) != ES_OK) return st;
    st = es_run_layers(ctx, dims, model->layers, 0, dims->n_layers, kv, rope, x_work, n_tokens, pos,
                       arena, arena_bytes, offsets, n_offsets);
    if (st != ES_OK) return st;
    const int32_t nh = all_logits ? n_tokens : 1;
    const float *xh = x_work + (size_t)(n_tokens - nh) * dims->dim;
    return es_run_head(ctx, dims, model->out_norm, &model->head, xh, nh, logits, arena, arena_bytes,
                       offsets, n_offsets);
}
