/* Argument validation shared by the graph entry points (see validate.h). */
#include <stddef.h>
#include <stdint.h>

#include "validate.h"

int es_check_qmat(const es_qmat *m, int32_t rows, int32_t cols) {
    if (!m || !m->q || !m->scale) return ES_ERR_NULL;
    if (m->rows <= 0 || m->cols <= 0) return ES_ERR_DIM;
    if ((rows > 0 && m->rows != rows) || (cols > 0 && m->cols != cols)) return ES_ERR_DIM;
    if (m->group_size < 0 || (m->group_size > 0 && m->cols % m->group_size != 0)) return ES_ERR_GROUP;
    if (m->act_block < 0 || (m->act_block > 0 && m->cols % m->act_block != 0)) return ES_ERR_GROUP;
    const int32_t B = m->act_block > 0 ? m->act_block : m->cols;
    if (m->group_size > 0 && m->group_size % B != 0) return ES_ERR_GROUP;
    /* a block's int32 sum of up to B products of 127 * 127 must not overflow */
    if (B > ES_MAX_ACT_BLOCK) return ES_ERR_GROUP;
    /* the kernels index the scales (rows x groups) with int32 */
    const int32_t groups = m->group_size > 0 ? m->cols / m->group_size : 1;
    if ((int64_t)m->rows * groups > INT32_MAX) return ES_ERR_DIM;
    return ES_OK;
}

int es_check_dims(const es_dims *d) {
    if (!d) return ES_ERR_NULL;
    if (d->dim <= 0 || d->n_heads <= 0 || d->n_kv_heads <= 0 || d->head_dim <= 0 ||
        d->ffn_dim <= 0 || d->vocab_size <= 0 || d->n_layers <= 0)
        return ES_ERR_DIM;
    if (d->n_heads % d->n_kv_heads != 0 || d->head_dim % 2 != 0) return ES_ERR_DIM;
    if ((int64_t)d->n_heads * d->head_dim > INT32_MAX) return ES_ERR_DIM;
    if (!(d->rms_eps >= 0.0f)) return ES_ERR_ARG;
    const int32_t ab = d->act_block;
    if (ab < 0 || (ab > 0 && (d->dim % ab || (d->n_heads * d->head_dim) % ab || d->ffn_dim % ab)))
        return ES_ERR_GROUP;
    return ES_OK;
}

int es_check_layer(const es_dims *d, const es_layer_weights *lw) {
    if (!lw) return ES_ERR_NULL;
    if (!lw->attn_norm || !lw->ffn_norm) return ES_ERR_NULL;
    const int32_t qd = d->n_heads * d->head_dim, kvd = d->n_kv_heads * d->head_dim;
    const struct { const es_qmat *m; int32_t rows, cols; } want[] = {
        {&lw->wq, qd, d->dim},          {&lw->wk, kvd, d->dim},         {&lw->wv, kvd, d->dim},
        {&lw->wo, d->dim, qd},          {&lw->w_gate, d->ffn_dim, d->dim},
        {&lw->w_up, d->ffn_dim, d->dim}, {&lw->w_down, d->dim, d->ffn_dim},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int st = es_check_qmat(want[i].m, want[i].rows, want[i].cols);
        if (st != ES_OK) return st;
        if (want[i].m->act_block != d->act_block) return ES_ERR_GROUP;
    }
    return ES_OK;
}

/* Whether n elements of size esz, times each of the four factors, fit in a ptrdiff_t. */
static int fits_bytes(uint64_t esz, const int32_t f[4]) {
    uint64_t total = esz;
    for (int i = 0; i < 4; i++) {
        if ((uint64_t)PTRDIFF_MAX / (uint64_t)f[i] < total) return 0;
        total *= (uint64_t)f[i];
    }
    return 1;
}

int es_check_kv(const es_dims *d, const es_kv_cache *kv, int32_t layer0, int32_t n) {
    if (!kv || !kv->k || !kv->v) return ES_ERR_NULL;
    if (kv->dtype != ES_KV_F32 && kv->dtype != ES_KV_F16 && kv->dtype != ES_KV_I8) return ES_ERR_DTYPE;
    const int i8 = kv->dtype == ES_KV_I8;
    if (i8 && (!kv->k_scale || !kv->v_scale)) return ES_ERR_NULL;
    const uintptr_t esz = kv->dtype == ES_KV_F16 ? 2 : i8 ? 1 : 4;
    if ((uintptr_t)kv->k % esz || (uintptr_t)kv->v % esz) return ES_ERR_ALIGN;
    if (i8 && ((uintptr_t)kv->k_scale % sizeof(float) || (uintptr_t)kv->v_scale % sizeof(float))) return ES_ERR_ALIGN;
    if (kv->ctx <= 0 || kv->n_layers <= 0) return ES_ERR_DIM;
    if (kv->n_kv_heads != d->n_kv_heads || kv->head_dim != d->head_dim) return ES_ERR_DIM;
    /* every byte offset into the cache (and its scales) is computed in size_t */
    const int32_t shape[4] = {kv->n_layers, kv->n_kv_heads, kv->ctx, kv->head_dim};
    const int32_t scales[4] = {kv->n_layers, kv->n_kv_heads, kv->ctx, 1};
    if (!fits_bytes(esz, shape) || (i8 && !fits_bytes(sizeof(float), scales))) return ES_ERR_DIM;
    if (layer0 < 0 || n < 0 || (int64_t)layer0 + n > kv->n_layers || (int64_t)layer0 + n > d->n_layers)
        return ES_ERR_LAYER;
    return ES_OK;
}
