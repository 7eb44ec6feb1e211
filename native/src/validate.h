/*
 * Checks every public entry point runs before touching memory: pointers,
 * dimensions, group sizes. The bottom of the core's layering: it needs only
 * edge_sdk.h (buffers.h places scratch buffers using these checks).
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

/* Cache geometry matches dims and holds layers [layer0, layer0 + n); a known
   dtype, its arrays (and an int8 cache's scales) set and aligned to their
   element size, its byte size within a ptrdiff_t. */
int es_check_kv(const es_dims *d, const es_kv_cache *kv, int32_t layer0, int32_t n);

#endif /* ES_VALIDATE_H */
