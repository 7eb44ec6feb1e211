/*
 * Checks every public entry point runs before touching memory: pointers,
 * dimensions, group sizes, and the placement of scratch buffers in the arena.
 */
#ifndef ES_VALIDATE_H
#define ES_VALIDATE_H

#include <stdint.h>

#include "edge_sdk.h"

/* m non-NULL with q, scale set, rows/cols positive and equal to the expected
   ones (pass 0 to accept any), group size 0 or a divisor of cols, act_block 0
   or a divisor of cols, group size a multiple of the act_block. */
int es_check_qmat(const es_qmat *m, int32_t rows, int32_t cols);

/* Positive sizes, n_heads multiple of n_kv_heads, even head_dim, eps >= 0. */
int es_check_dims(const es_dims *d);

/* Layer weights for dims: every pointer set, every shape as in the header,
   every act_block equal to dims->act_block. */
int es_check_layer(const es_dims *d, const es_layer_weights *lw);

/* Cache geometry matches dims and holds layers [layer0, layer0 + n). */
int es_check_kv(const es_dims *d, const es_kv_cache *kv, int32_t layer0, int32_t n);

/* Buffers listed in ids[0..n_ids) (sizes from es_layer_buffers) lie inside the
   arena at 64-byte aligned addresses; ptrs[id] receives each address. */
int es_place_buffers(const es_dims *d, int32_t n_tokens, int32_t ctx_len, int32_t n_threads,
                     void *arena, uint64_t arena_bytes, const uint64_t *offsets,
                     int32_t n_offsets, const int32_t *ids, int32_t n_ids,
                     void *ptrs[ES_BUF_COUNT]);

#endif /* ES_VALIDATE_H */
