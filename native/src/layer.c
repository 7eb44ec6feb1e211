/*
 * es_run_layers: a range of LLaMA decoder layers for T tokens at positions
 * pos .. pos+T-1, every intermediate in the caller's arena (see buffers.c for
 * the op sequence and buffers). Products and attention run on the whole
 * pool; per-token ops run inline for T == 1 and split by tokens otherwise.
 */
#include <math.h>
#include <string.h>

#include "buffers.h"
#include "ctx.h"
#include "es_math.h"
#include "products.h"
#include "validate.h"

typedef struct layer_job layer_job;

/* One token's share of a per-token op. */
typedef void (*token_fn)(const layer_job *j, int32_t t);

struct layer_job {
    es_ctx *ctx;
    const es_kernels *k;
    const es_dims *d;
    const es_layer_weights *lw;
    int32_t layer;                 /* absolute index into the KV cache */
    const es_kv_cache *kv;
    const es_rope *rope;
    float *x;                      /* (T, dim) */
    int32_t T, pos;
    void *b[ES_BUF_COUNT];
    size_t att_stride;             /* floats between two threads' score rows */
    token_fn op;                   /* the per-token op task_tokens runs */
};

#define BUF_F(j, id) ((float *)(j)->b[id])
#define BUF_I8(j, id) ((int8_t *)(j)->b[id])

/* Row t of the f32 buffer id, whose rows hold n values. */
static inline float *row_f(const layer_job *j, int32_t id, int32_t t, int32_t n) {
    return BUF_F(j, id) + (size_t)t * n;
}

static void task_tokens(void *arg, int32_t ith, int32_t nth) {
    const layer_job *j = arg;
    int32_t t0, t1;
    es_split(j->T, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) j->op(j, t);
}

/* A per-token op: inline for one token, else split by tokens over the pool. */
static void run_tokens(layer_job *j, token_fn op) {
    if (j->T == 1) {
        op(j, 0);
        return;
    }
    j->op = op;
    es_pool_run(j->ctx->pool, task_tokens, j);
}

static void products(layer_job *j, int32_t in_q, int32_t in_s, int32_t n, const es_qmat *w0,
                     int32_t y0, const es_qmat *w1, int32_t y1, const es_qmat *w2, int32_t y2) {
    es_prod_set ps = {
        .xq = BUF_I8(j, in_q), .xs = BUF_F(j, in_s), .n_tokens = j->T, .n = n,
        .w = {w0, w1, w2},
        .y = {BUF_F(j, y0), y1 >= 0 ? BUF_F(j, y1) : NULL, y2 >= 0 ? BUF_F(j, y2) : NULL},
    };
    es_run_products(j->ctx, &ps);
}

/* Token t's n values of the f32 buffer `in` -> the int8 buffer q and its scales s. */
static void quantize_token(const layer_job *j, int32_t in, int32_t q, int32_t s, int32_t t, int32_t n) {
    j->k->quantize_row(row_f(j, in, t, n), n, j->d->act_block, BUF_I8(j, q) + (size_t)t * n,
                       BUF_F(j, s) + (size_t)t * es_n_scales(j->d->act_block, n));
}

/* ops 0-1 */
static void attn_norm_quant(const layer_job *j, int32_t t) {
    const int32_t dim = j->d->dim;
    j->k->rmsnorm(j->x + (size_t)t * dim, j->lw->attn_norm, dim, j->d->rms_eps, row_f(j, ES_BUF_XN, t, dim));
    quantize_token(j, ES_BUF_XN, ES_BUF_XQ, ES_BUF_XS, t, dim);
}

/* op 3 */
static void rope_store(const layer_job *j, int32_t t) {
    const es_dims *d = j->d;
    const int32_t hd = d->head_dim, half = hd / 2, qd = d->n_heads * hd, kvd = d->n_kv_heads * hd;
    const es_kv_cache *kv = j->kv;
    const size_t esz = es_kv_esize(kv->dtype);
    const int32_t p = j->pos + t;
    const float *c = j->rope->cos + (size_t)p * half, *s = j->rope->sin + (size_t)p * half;
    float *q = row_f(j, ES_BUF_Q, t, qd), *k = row_f(j, ES_BUF_K, t, kvd);
    const float *v = row_f(j, ES_BUF_V, t, kvd);
    for (int32_t h = 0; h < d->n_heads; h++) j->k->rope(q + (size_t)h * hd, c, s, half);
    for (int32_t h = 0; h < d->n_kv_heads; h++) {
        j->k->rope(k + (size_t)h * hd, c, s, half);
        const size_t srow = ((size_t)j->layer * kv->n_kv_heads + h) * kv->ctx + p, row = srow * hd;
        char *kd = (char *)kv->k + row * esz, *vd = (char *)kv->v + row * esz;
        if (kv->dtype == ES_KV_I8) { /* one block of head_dim values per row: the activation quantization */
            j->k->quantize_row(k + (size_t)h * hd, hd, hd, (int8_t *)kd, kv->k_scale + srow);
            j->k->quantize_row(v + (size_t)h * hd, hd, hd, (int8_t *)vd, kv->v_scale + srow);
        } else if (kv->dtype == ES_KV_F16) {
            j->k->f32_to_f16(k + (size_t)h * hd, (uint16_t *)kd, hd);
            j->k->f32_to_f16(v + (size_t)h * hd, (uint16_t *)vd, hd);
        } else {
            memcpy(kd, k + (size_t)h * hd, (size_t)hd * 4);
            memcpy(vd, v + (size_t)h * hd, (size_t)hd * 4);
        }
    }
}

/* op 4: (token, head) items dealt round-robin, so causal work is balanced. */
static void task_attention(void *arg, int32_t ith, int32_t nth) {
    layer_job *j = arg;
    const es_dims *d = j->d;
    const es_kv_cache *kv = j->kv;
    const int32_t hd = d->head_dim, qd = d->n_heads * hd, group = d->n_heads / d->n_kv_heads;
    const size_t esz = es_kv_esize(kv->dtype);
    const float scale = 1.0f / sqrtf((float)hd);
    float *scores = BUF_F(j, ES_BUF_ATT) + (size_t)ith * j->att_stride;
    const int32_t items = j->T * d->n_heads;
    const int i8 = kv->dtype == ES_KV_I8;
    for (int32_t it = ith; it < items; it += nth) {
        const int32_t t = it / d->n_heads, h = it % d->n_heads, kvh = h / group;
        const size_t srow = ((size_t)j->layer * kv->n_kv_heads + kvh) * kv->ctx, base = srow * hd * esz;
        const size_t off = (size_t)t * qd + (size_t)h * hd;
        j->k->attention(BUF_F(j, ES_BUF_Q) + off, (const char *)kv->k + base, (const char *)kv->v + base,
                        i8 ? kv->k_scale + srow : NULL, i8 ? kv->v_scale + srow : NULL, kv->dtype,
                        j->pos + t + 1, hd, scale, scores, BUF_F(j, ES_BUF_ATTN_OUT) + off);
    }
}

/* op 5 */
static void out_quant(const layer_job *j, int32_t t) {
    quantize_token(j, ES_BUF_ATTN_OUT, ES_BUF_AQ, ES_BUF_AS, t, j->d->n_heads * j->d->head_dim);
}

/* ops 7-9 */
static void resid_ffn_norm_quant(const layer_job *j, int32_t t) {
    const int32_t dim = j->d->dim;
    float *x = j->x + (size_t)t * dim;
    j->k->add(x, row_f(j, ES_BUF_O, t, dim), dim);
    j->k->rmsnorm(x, j->lw->ffn_norm, dim, j->d->rms_eps, row_f(j, ES_BUF_FXN, t, dim));
    quantize_token(j, ES_BUF_FXN, ES_BUF_FXQ, ES_BUF_FXS, t, dim);
}

/* ops 11-12 */
static void swiglu_quant(const layer_job *j, int32_t t) {
    const int32_t f = j->d->ffn_dim;
    j->k->swiglu(row_f(j, ES_BUF_GATE, t, f), row_f(j, ES_BUF_UP, t, f), f, row_f(j, ES_BUF_H, t, f));
    quantize_token(j, ES_BUF_H, ES_BUF_HQ, ES_BUF_HS, t, f);
}

/* op 14 */
static void resid_ffn(const layer_job *j, int32_t t) {
    const int32_t dim = j->d->dim;
    j->k->add(j->x + (size_t)t * dim, row_f(j, ES_BUF_D, t, dim), dim);
}

static void run_layer(layer_job *j) {
    const es_layer_weights *lw = j->lw;
    run_tokens(j, attn_norm_quant);
    products(j, ES_BUF_XQ, ES_BUF_XS, 3, &lw->wq, ES_BUF_Q, &lw->wk, ES_BUF_K, &lw->wv, ES_BUF_V);
    run_tokens(j, rope_store);
    es_pool_run(j->ctx->pool, task_attention, j);
    run_tokens(j, out_quant);
    products(j, ES_BUF_AQ, ES_BUF_AS, 1, &lw->wo, ES_BUF_O, NULL, -1, NULL, -1);
    run_tokens(j, resid_ffn_norm_quant);
    products(j, ES_BUF_FXQ, ES_BUF_FXS, 2, &lw->w_gate, ES_BUF_GATE, &lw->w_up, ES_BUF_UP, NULL, -1);
    run_tokens(j, swiglu_quant);
    products(j, ES_BUF_HQ, ES_BUF_HS, 1, &lw->w_down, ES_BUF_D, NULL, -1, NULL, -1);
    run_tokens(j, resid_ffn);
}

int es_run_layers(es_ctx *ctx, const es_dims *dims,
                  const es_layer_weights *layers, int32_t layer0, int32_t n_run,
                  const es_kv_cache *kv, const es_rope *rope,
                  float *x, int32_t n_tokens, int32_t pos,
                  void *arena, uint64_t arena_bytes,
                  const uint64_t *offsets, int32_t n_offsets) {
    if (!ctx || !layers || !rope || !x) return ES_ERR_NULL;
    int st = es_check_dims(dims);
    if (st != ES_OK) return st;
    if (layer0 < 0 || n_run < 0 || (int64_t)layer0 + n_run > dims->n_layers) return ES_ERR_LAYER;
    for (int32_t i = 0; i < n_run; i++)
        if ((st = es_check_layer(dims, &layers[i])) != ES_OK) return st;
    if ((st = es_check_kv(dims, kv, layer0, n_run)) != ES_OK) return st;
    if (n_tokens <= 0) return ES_ERR_DIM;
    if (pos < 0 || (int64_t)pos + n_tokens > kv->ctx) return ES_ERR_POS;
    if (!rope->cos || !rope->sin) return ES_ERR_NULL;
    if (rope->half_dim != dims->head_dim / 2) return ES_ERR_DIM;
    if ((int64_t)pos + n_tokens > rope->n_pos) return ES_ERR_POS;
    static const int32_t all[ES_BUF_COUNT] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                              10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    layer_job j = {.ctx = ctx, .k = ctx->k, .d = dims, .kv = kv, .rope = rope, .x = x,
                   .T = n_tokens, .pos = pos};
    st = es_place_buffers(dims, n_tokens, kv->ctx, ctx->n_threads, arena, arena_bytes, offsets,
                          n_offsets, all, ES_BUF_COUNT, j.b);
    if (st != ES_OK) return st;
    j.att_stride = ((size_t)kv->ctx * 4 + ES_ARENA_ALIGN - 1) / ES_ARENA_ALIGN * ES_ARENA_ALIGN / 4;
    for (int32_t i = 0; i < n_run; i++) {
        j.lw = &layers[i];
        j.layer = layer0 + i;
        run_layer(&j);
    }
    return ES_OK;
}
