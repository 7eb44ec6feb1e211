/* Whole-array kernel entry points for tests and tools, validated. */
#include "buffers.h"
#include "ctx.h"
#include "products.h"
#include "validate.h"

int es_quantize_rows(es_ctx *ctx, const float *x, int32_t n_rows, int32_t n_cols,
                     int32_t act_block, int8_t *q, float *scales) {
    if (!ctx || !x || !q || !scales) return ES_ERR_NULL;
    if (n_rows <= 0 || n_cols <= 0) return ES_ERR_DIM;
    if (act_block < 0 || (act_block > 0 && n_cols % act_block)) return ES_ERR_GROUP;
    const int32_t nb = es_n_scales(act_block, n_cols);
    for (int32_t r = 0; r < n_rows; r++)
        ctx->k->quantize_row(x + (size_t)r * n_cols, n_cols, act_block, q + (size_t)r * n_cols,
                             scales + (size_t)r * nb);
    return ES_OK;
}

int es_matmul_q8(es_ctx *ctx, const int8_t *xq, const float *xs, int32_t n_tokens,
                 const es_qmat *w, float *y) {
    if (!ctx || !xq || !xs || !y) return ES_ERR_NULL;
    int st = es_check_qmat(w, 0, 0);
    if (st != ES_OK) return st;
    if (n_tokens <= 0) return ES_ERR_DIM;
    es_prod_set ps = {.xq = xq, .xs = xs, .n_tokens = n_tokens, .n = 1, .w = {w}, .y = {y}};
    es_run_products(ctx, &ps);
    return ES_OK;
}

int es_f32_to_f16(es_ctx *ctx, const float *x, uint16_t *y, int64_t n) {
    if (!ctx || !x || !y) return ES_ERR_NULL;
    if (n < 0) return ES_ERR_DIM;
    ctx->k->f32_to_f16(x, y, n);
    return ES_OK;
}

int es_f16_to_f32(es_ctx *ctx, const uint16_t *x, float *y, int64_t n) {
    if (!ctx || !x || !y) return ES_ERR_NULL;
    if (n < 0) return ES_ERR_DIM;
    ctx->k->f16_to_f32(x, y, n);
    return ES_OK;
}
