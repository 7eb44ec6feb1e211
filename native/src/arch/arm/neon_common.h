/*
 * Shared by the ARM kernel files. Both flavours (neon.c, dotprod.c, i8mm.c
 * on aarch64; neon32.c on ARMv7): the 16-byte int8 dot step of ARMv8.0/ARMv7
 * NEON and the exact int32 sums of one activation block against four rows.
 * aarch64 only: the canonical 16-lane fold and the 4-row tile whose float
 * part runs on NEON (ARMv7 NEON flushes subnormals, and lacks vpaddq_s32).
 */
#ifndef ES_NEON_COMMON_H
#define ES_NEON_COMMON_H

#include <arm_neon.h>

#include "../../kernel_common.h"

/* acc += the int8 products of x and w, summed in pairs into its four lanes. */
typedef int32x4_t (*es_dot16_fn)(int32x4_t acc, int8x16_t x, int8x16_t w);

/* The ARMv8.0 / ARMv7 dot step: vmull_s8 (int16 products, |p| <= 16129) and
   vpadalq_s16 (pairwise add-accumulate into int32): exact. */
ES_INLINE int32x4_t es_dot16_mull(int32x4_t acc, int8x16_t x, int8x16_t w) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(w)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(x), vget_high_s8(w)));
}

/* Columns k0 .. k0+B-1 (B % 16 == 0) of x against rows wr[0..3]: lane sums
   of a[i] add up to row i's exact block sum. */
ES_INLINE void es_block_dots4(const int8_t *x, const int8_t *const wr[4], int32_t k0, int32_t B, es_dot16_fn dot,
                              int32x4_t a[4]) {
    int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
    for (int32_t c = k0; c < k0 + B; c += 16) {
        const int8x16_t xv = vld1q_s8(x + c);
        a0 = dot(a0, xv, vld1q_s8(wr[0] + c));
        a1 = dot(a1, xv, vld1q_s8(wr[1] + c));
        a2 = dot(a2, xv, vld1q_s8(wr[2] + c));
        a3 = dot(a3, xv, vld1q_s8(wr[3] + c));
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

/* The scales of weight group g of four tile rows (sidx: es_tile_rows). */
ES_INLINE float32x4_t es_scales4(const es_qmat *w, const int32_t sidx[4], int32_t g) {
    float ws[4];
    es_tile_scales(w, sidx, 4, g, ws);
    return vld1q_f32(ws);
}

#if defined(__aarch64__)

/* Canonical fold of lanes 0-3 (a0), 4-7 (a1), 8-11 (a2), 12-15 (a3). */
ES_INLINE float es_fold16_neon(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
    const float32x4_t s = vaddq_f32(vaddq_f32(a0, a2), vaddq_f32(a1, a3));
    const float32x2_t s2 = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

/* The tile (kernel_common.h) of one token and four rows, act_block % 16 == 0:
   lane i of every vector is row r + i, so the float sum over blocks runs in
   the spec's order for four rows at once. */
ES_INLINE void es_rows4(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows, float *y,
                        es_dot16_fn dot) {
    const es_qshape s = es_qshape_of(w);
    const int8_t *wr[4];
    int32_t sidx[4];
    es_tile_rows(w, r, nrows, 4, wr, sidx);
    float32x4_t wsv = es_scales4(w, sidx, 0), sumf = vdupq_n_f32(0.0f);
    for (int32_t b = 0; b < s.nb; b++) {
        const int32_t k0 = b * s.B;
        int32x4_t a[4];
        es_block_dots4(x, wr, k0, s.B, dot, a);
        if (es_new_group(&s, k0)) wsv = es_scales4(w, sidx, k0 / s.glen);
        const int32x4_t acc = vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
        const float32x4_t f = vmulq_f32(vcvtq_f32_s32(acc), vdupq_n_f32(xst[b]));
        sumf = vaddq_f32(sumf, vmulq_f32(f, wsv));
    }
    float out[4];
    vst1q_f32(out, sumf);
    for (int i = 0; i < nrows; i++) y[r + i] = out[i];
}

#endif /* __aarch64__ */

#endif /* ES_NEON_COMMON_H */
