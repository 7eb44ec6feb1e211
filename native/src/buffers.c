/*
 * The scratch buffers of one decoder layer: sizes for (dims, T, ctx, threads)
 * and inclusive lifetimes over the op sequence (es_layer_op). Mirrored in
 * edge_sdk/backends/native_buffers.py; a test checks the two agree. Then
 * their placement in an arena, checked against those sizes and lifetimes.
 */
#include "buffers.h"
#include "validate.h"

int es_layer_buffers(const es_dims *dims, int32_t n_tokens, int32_t ctx_len,
                     int32_t n_threads, es_buffer_info *out, int32_t n_out) {
    if (!out) return ES_ERR_NULL;
    int st = es_check_dims(dims);
    if (st != ES_OK) return st;
    if (n_tokens <= 0 || ctx_len <= 0) return ES_ERR_DIM;
    if (n_threads < 1 || n_threads > 256) return ES_ERR_THREADS;
    if (n_out != ES_BUF_COUNT) return ES_ERR_ARG;
    const uint64_t t = (uint64_t)n_tokens, d = (uint64_t)dims->dim, f = (uint64_t)dims->ffn_dim;
    const uint64_t qd = (uint64_t)dims->n_heads * dims->head_dim;
    const uint64_t kvd = (uint64_t)dims->n_kv_heads * dims->head_dim;
    /* activation scales per token of the dim-, qd- and ffn-wide inputs */
    const uint64_t sd = (uint64_t)es_n_scales(dims->act_block, dims->dim);
    const uint64_t sq = (uint64_t)es_n_scales(dims->act_block, (int32_t)qd);
    const uint64_t sf = (uint64_t)es_n_scales(dims->act_block, dims->ffn_dim);
    const uint64_t att_row = ((uint64_t)ctx_len * 4 + ES_ARENA_ALIGN - 1) / ES_ARENA_ALIGN * ES_ARENA_ALIGN;
    const es_buffer_info spec[ES_BUF_COUNT] = {
        [ES_BUF_XN] = {t * d * 4, ES_OP_ATTN_NORM, ES_OP_ATTN_QUANT},
        [ES_BUF_XQ] = {t * d, ES_OP_ATTN_QUANT, ES_OP_QKV},
        [ES_BUF_XS] = {t * sd * 4, ES_OP_ATTN_QUANT, ES_OP_QKV},
        [ES_BUF_Q] = {t * qd * 4, ES_OP_QKV, ES_OP_ATTENTION},
        [ES_BUF_K] = {t * kvd * 4, ES_OP_QKV, ES_OP_ROPE_STORE},
        [ES_BUF_V] = {t * kvd * 4, ES_OP_QKV, ES_OP_ROPE_STORE},
        [ES_BUF_ATT] = {(uint64_t)n_threads * att_row, ES_OP_ATTENTION, ES_OP_ATTENTION},
        [ES_BUF_ATTN_OUT] = {t * qd * 4, ES_OP_ATTENTION, ES_OP_OUT_QUANT},
        [ES_BUF_AQ] = {t * qd, ES_OP_OUT_QUANT, ES_OP_WO},
        [ES_BUF_AS] = {t * sq * 4, ES_OP_OUT_QUANT, ES_OP_WO},
        /* ops 7-9 and ops 11-12 run fused, one token at a time: the fused group's inputs stay
           live to the group's last op, or a planner could place a later token's input under an
           earlier token's output */
        [ES_BUF_O] = {t * d * 4, ES_OP_WO, ES_OP_FFN_QUANT},
        [ES_BUF_FXN] = {t * d * 4, ES_OP_FFN_NORM, ES_OP_FFN_QUANT},
        [ES_BUF_FXQ] = {t * d, ES_OP_FFN_QUANT, ES_OP_GATE_UP},
        [ES_BUF_FXS] = {t * sd * 4, ES_OP_FFN_QUANT, ES_OP_GATE_UP},
        [ES_BUF_GATE] = {t * f * 4, ES_OP_GATE_UP, ES_OP_H_QUANT},
        [ES_BUF_UP] = {t * f * 4, ES_OP_GATE_UP, ES_OP_H_QUANT},
        [ES_BUF_H] = {t * f * 4, ES_OP_SWIGLU, ES_OP_H_QUANT},
        [ES_BUF_HQ] = {t * f, ES_OP_H_QUANT, ES_OP_DOWN},
        [ES_BUF_HS] = {t * sf * 4, ES_OP_H_QUANT, ES_OP_DOWN},
        [ES_BUF_D] = {t * d * 4, ES_OP_DOWN, ES_OP_FFN_RESIDUAL},
    };
    for (int32_t i = 0; i < ES_BUF_COUNT; i++) out[i] = spec[i];
    return ES_OK;
}

int es_place_buffers(const es_dims *d, int32_t n_tokens, int32_t ctx_len, int32_t n_threads,
                     void *arena, uint64_t arena_bytes, const uint64_t *offsets,
                     int32_t n_offsets, const int32_t *ids, int32_t n_ids,
                     void *ptrs[ES_BUF_COUNT]) {
    if (!arena || !offsets) return ES_ERR_NULL;
    if (n_offsets != ES_BUF_COUNT) return ES_ERR_ARG;
    es_buffer_info info[ES_BUF_COUNT];
    int st = es_layer_buffers(d, n_tokens, ctx_len, n_threads, info, ES_BUF_COUNT);
    if (st != ES_OK) return st;
    for (int32_t i = 0; i < n_ids; i++) {
        const int32_t id = ids[i];
        const uint64_t off = offsets[id], size = info[id].size_bytes;
        if (off > arena_bytes || size > arena_bytes - off) return ES_ERR_ARENA;
        char *p = (char *)arena + off;
        if (((uintptr_t)p & (ES_ARENA_ALIGN - 1)) != 0) return ES_ERR_ALIGN;
        ptrs[id] = p;
    }
    /* two buffers alive at the same op must not share a byte (the plan verifier's rule) */
    for (int32_t i = 0; i < n_ids; i++) {
        const es_buffer_info *a = &info[ids[i]];
        const uint64_t a0 = offsets[ids[i]];
        for (int32_t j = i + 1; j < n_ids; j++) {
            const es_buffer_info *b = &info[ids[j]];
            const uint64_t b0 = offsets[ids[j]];
            if (!a->size_bytes || !b->size_bytes) continue;
            if (a->first_use > b->last_use || b->first_use > a->last_use) continue;
            if (a0 < b0 + b->size_bytes && b0 < a0 + a->size_bytes) return ES_ERR_ARENA;
        }
    }
    return ES_OK;
}
