/*
 * The skeletons every kernel file shares (kernels_generic.c and the files in
 * arch/): what the int8 spec of edge_sdk.h fixes, written once, so that an
 * arch file holds only what its instructions change.
 *
 *   - Activation quantization: the scalar tails, the all-zero block
 *     (amax == 0: scale 0, q 0), the scale and its inverse. An ISA supplies
 *     two vector loops (the block's max |x| and the rounding of x * inv);
 *     the scalar twin supplies none.
 *   - Int8 products in row tiles: the tile's row pointers (a row tail
 *     repeats the last real row, so inner loops never branch on it), its
 *     scale indices, when a block opens a new weight group, and the two walk
 *     orders over tiles and tokens: decode (tokens outer) and prefill (rows
 *     outer, so each weight row is read from memory once per call). An ISA
 *     supplies the tile: one token (two for SMMLA) against H rows.
 *   - Attention's scalar output columns past the last whole vector.
 *
 * Everything here is inlined into the kernel that uses it (function pointer
 * arguments are constants there), so a kernel compiles as if written out.
 */
#ifndef ES_KERNEL_COMMON_H
#define ES_KERNEL_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "es_math.h"
#include "kernels.h"

#define ES_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ------------------------------------------- */

/* The ISA's part of a block's max |x|: over x[0 .. *done), *done <= n set by
   the loop (where its whole vectors end; n if it masks the tail). */
typedef float (*es_absmax_fn)(const float *x, int32_t n, int32_t *done);

/* The ISA's part of the rounding: q[i] = es_quant_value(x[i], inv) for i
   below the returned count (<= n). */
typedef int32_t (*es_quant_fn)(const float *x, int32_t n, float inv, int8_t *q);

/* One block of n values: q (n), *scale. */
ES_INLINE void es_quantize_block(const float *x, int32_t n, int8_t *q, float *scale, es_absmax_fn absmax,
                                 es_quant_fn quant) {
    int32_t i;
    float amax = absmax(x, n, &i);
    for (; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    if (amax == 0.0f) {
        *scale = 0.0f;
        memset(q, 0, (size_t)n);
        return;
    }
    *scale = amax / 127.0f;
    const float inv = 127.0f / amax;
    for (i = quant(x, n, inv, q); i < n; i++) q[i] = es_quant_value(x[i], inv);
}

/* The quantize_row kernel: x (n) in blocks of `block` values (0 = one block). */
ES_INLINE void es_quantize_row(const float *x, int32_t n, int32_t block, int8_t *q, float *scales,
                               es_absmax_fn absmax, es_quant_fn quant) {
    const int32_t B = block > 0 ? block : n;
    for (int32_t b0 = 0; b0 < n; b0 += B) es_quantize_block(x + b0, B, q + b0, scales + b0 / B, absmax, quant);
}

/* The scalar twin's parts: no vector loop, every value takes the scalar step. */
ES_INLINE float es_absmax_none(const float *x, int32_t n, int32_t *done) {
    (void)x, (void)n;
    *done = 0;
    return 0.0f;
}

ES_INLINE int32_t es_quant_none(const float *x, int32_t n, float inv, int8_t *q) {
    (void)x, (void)n, (void)inv, (void)q;
    return 0;
}

/* ---- int8 products in row tiles ---------------------------------------- */

/* A product's shape: cols, weight groups per row and their length, the
   activation block and blocks per row. */
typedef struct es_qshape {
    int32_t cols, ng, glen, B, nb;
} es_qshape;

ES_INLINE es_qshape es_qshape_of(const es_qmat *w) {
    const es_qshape s = {w->cols, es_n_groups(w), es_group_len(w), es_act_block(w), w->cols / es_act_block(w)};
    return s;
}

/* Tile of `height` rows from r, nrows (1..height) of them real: wr[i] = the
   bytes of row i, sidx[i] = the index of its first scale. Rows past nrows
   repeat the last real row; their sums are computed and never stored. */
ES_INLINE void es_tile_rows(const es_qmat *w, int32_t r, int32_t nrows, int32_t height, const int8_t **wr,
                            int32_t *sidx) {
    const int32_t ng = es_n_groups(w);
    for (int32_t i = 0; i < height; i++) {
        const int32_t rr = r + (i < nrows ? i : nrows - 1);
        wr[i] = w->q + (size_t)rr * w->cols;
        sidx[i] = rr * ng;
    }
}

/* The tile rows' scales of weight group g. */
ES_INLINE void es_tile_scales(const es_qmat *w, const int32_t *sidx, int32_t height, int32_t g, float *ws) {
    for (int32_t i = 0; i < height; i++) ws[i] = w->scale[sidx[i] + g];
}

/* Whether the activation block from column k0 opens a new weight group, so
   a tile's scales change there (group size is a multiple of the block). */
ES_INLINE int es_new_group(const es_qshape *s, int32_t k0) {
    return s->ng > 1 && k0 % s->glen == 0 && k0 > 0;
}

/* One token x (cols), its block scales xst (nb), against rows r ..
   r+nrows-1: y[r + i]. */
typedef void (*es_tile_fn)(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows,
                           float *y);

/* Decode order: tokens outer, tiles of `height` rows inner. */
ES_INLINE void es_tiles_by_token(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,
                                 int32_t r1, float *y, int32_t ldy, int32_t height, es_tile_fn tile) {
    const int32_t nb = w->cols / es_act_block(w);
    for (int32_t t = 0; t < n_tokens; t++)
        for (int32_t r = r0; r < r1; r += height)
            tile(xq + (size_t)t * w->cols, xs + (size_t)t * nb, w, r, r1 - r < height ? r1 - r : height,
                 y + (size_t)t * ldy);
}

/* Prefill order: tiles outer (height * cols weight bytes stay in L1/L2),
   tokens inner, so each weight row comes from memory once per call. */
ES_INLINE void es_tiles_by_row(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,
                               int32_t r1, float *y, int32_t ldy, int32_t height, es_tile_fn tile) {
    const int32_t nb = w->cols / es_act_block(w);
    for (int32_t r = r0; r < r1; r += height)
        for (int32_t t = 0; t < n_tokens; t++)
            tile(xq + (size_t)t * w->cols, xs + (size_t)t * nb, w, r, r1 - r < height ? r1 - r : height,
                 y + (size_t)t * ldy);
}

/* Define the matvec_q8 kernel `name` from a tile of `height` rows that needs
   act_block % multiple == 0; other act_blocks take the scalar twin. */
#define ES_TILED_MATVEC(name, tile, height, multiple)                                                         \
    static void name(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,       \
                     int32_t r1, float *y, int32_t ldy) {                                                     \
        if (es_act_block(w) % (multiple)) matvec_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);             \
        else es_tiles_by_token(xq, xs, n_tokens, w, r0, r1, y, ldy, (height), (tile));                       \
    }

/* The same for the matmul_q8 (prefill) kernel `name`. */
#define ES_TILED_MATMUL(name, tile, height, multiple)                                                         \
    static void name(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,       \
                     int32_t r1, float *y, int32_t ldy) {                                                     \
        if (es_act_block(w) % (multiple)) matmul_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);             \
        else es_tiles_by_row(xq, xs, n_tokens, w, r0, r1, y, ldy, (height), (tile));                         \
    }

/* ---- attention ---------------------------------------------------------- */

/* Position j's score from its canonical dot product with q: an int8 key
   row's scale applies to the dot, then the 1/sqrt(head_dim) of every dtype. */
ES_INLINE float es_attention_score(float dot, const float *ks, int32_t j, int32_t dtype, float scale) {
    return dtype == ES_KV_I8 ? (dot * ks[j]) * scale : dot * scale;
}

/* After the softmax: each probability takes its int8 value row's scale, so
   the weighted sum below reads int8 values as plain integers. */
ES_INLINE void es_attention_value_weights(float *p, const float *vs, int32_t dtype, int32_t n_pos) {
    if (dtype != ES_KV_I8) return;
    for (int32_t j = 0; j < n_pos; j++) p[j] = p[j] * vs[j];
}

/* Output columns i0 .. hd-1 (past the last whole vector) of the weighted sum
   of n_pos value rows (stride hd, of dtype), each summed over j in order. */
ES_INLINE void es_attention_out_tail(const float *scores, const void *v, int32_t dtype, int32_t n_pos, int32_t hd,
                                     int32_t i0, float *out) {
    const size_t esz = es_kv_esize(dtype);
    for (int32_t i = i0; i < hd; i++) {
        float o = 0.0f;
        for (int32_t j = 0; j < n_pos; j++) o += scores[j] * es_kv_at((const char *)v + (size_t)j * hd * esz, dtype, i);
        out[i] = o;
    }
}

#endif /* ES_KERNEL_COMMON_H */
