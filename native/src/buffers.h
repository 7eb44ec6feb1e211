/*
 * The scratch buffers of one decoder layer: their sizes and lifetimes
 * (es_layer_buffers, declared in edge_sdk.h) and their placement in the
 * caller's arena. Builds on the argument checks of validate.h, which know
 * nothing of buffers (native/README.md, "Layering").
 */
#ifndef ES_BUFFERS_H
#define ES_BUFFERS_H

#include <stdint.h>

#include "edge_sdk.h"

/* Activation scales per token of an input of n values (act_block 0 = one). */
static inline int32_t es_n_scales(int32_t act_block, int32_t n) { return act_block > 0 ? n / act_block : 1; }

/* Buffers listed in ids[0..n_ids) (sizes from es_layer_buffers) lie inside the
   arena at 64-byte aligned addresses and two alive at the same op share no
   byte; ptrs[id] receives each address. */
int es_place_buffers(const es_dims *d, int32_t n_tokens, int32_t ctx_len, int32_t n_threads,
                     void *arena, uint64_t arena_bytes, const uint64_t *offsets,
                     int32_t n_offsets, const int32_t *ids, int32_t n_ids,
                     void *ptrs[ES_BUF_COUNT]);

#endif /* ES_BUFFERS_H */
