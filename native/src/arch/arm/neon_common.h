/*
 * Shared by the aarch64 kernel files (neon.c, dotprod.c, i8mm.c): the
 * canonical 16-lane fold and the 4-row int8 product skeleton, instantiated
 * with each file's 16-byte dot step (vmull+vpadal or vdot).
 */
#ifndef ES_NEON_COMMON_H
#define ES_NEON_COMMON_H

#include <arm_neon.h>

#include "../../es_math.h"
#include "../../kernels.h"

#define ES_INLINE static inline __attribute__((always_inline))

/* Canonical fold of lanes 0-3 (a0), 4-7 (a1), 8-11 (a2), 12-15 (a3). */
ES_INLINE float es_fold16_neon(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
    const float32x4_t s = vaddq_f32(vaddq_f32(a0, a2), vaddq_f32(a1, a3));
    const float32x2_t s2 = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

typedef int32x4_t (*es_dot16_fn)(int32x4_t acc, int8x16_t x, int8x16_t w);

/* Rows r .. r+nrows-1 (nrows <= 4) of one token, act_block % 16 == 0: lane i
   of every vector is row i, so the float sum over blocks runs in the spec's
   order for four rows at once. */
ES_INLINE void es_rows4(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows,
                        float *y, es_dot16_fn dot) {
    const int32_t cols = w->cols, ng = es_n_groups(w), glen = es_group_len(w);
    const int32_t B = es_act_block(w), nb = cols / B;
    const int8_t *wr[4];
    int32_t idx[4];
    for (int i = 0; i < 4; i++) {
        const int32_t rr = r + (i < nrows ? i : nrows - 1);
        wr[i] = w->q + (size_t)rr * cols;
        idx[i] = rr * ng;
    }
    float ws[4];
    for (int i = 0; i < 4; i++) ws[i] = w->scale[idx[i]];
    float32x4_t wsv = vld1q_f32(ws), sumf = vdupq_n_f32(0.0f);
    for (int32_t b = 0; b < nb; b++) {
        const int32_t k0 = b * B;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t c = k0; c < k0 + B; c += 16) {
            const int8x16_t xv = vld1q_s8(x + c);
            a0 = dot(a0, xv, vld1q_s8(wr[0] + c));
            a1 = dot(a1, xv, vld1q_s8(wr[1] + c));
            a2 = dot(a2, xv, vld1q_s8(wr[2] + c));
            a3 = dot(a3, xv, vld1q_s8(wr[3] + c));
        }
        if (ng > 1 && k0 % glen == 0 && k0 > 0) {
            for (int i = 0; i < 4; i++) ws[i] = w->scale[idx[i] + k0 / glen];
            wsv = vld1q_f32(ws);
        }
        const int32x4_t acc = vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
        const float32x4_t f = vmulq_f32(vcvtq_f32_s32(acc), vdupq_n_f32(xst[b]));
        sumf = vaddq_f32(sumf, vmulq_f32(f, wsv));
    }
    float out[4];
    vst1q_f32(out, sumf);
    for (int i = 0; i < nrows; i++) y[r + i] = out[i];
}

/* Tokens outer (decode). */
ES_INLINE void es_matvec_rows4(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,
                               int32_t r1, float *y, int32_t ldy, es_dot16_fn dot) {
    const int32_t nb = w->cols / es_act_block(w);
    for (int32_t t = 0; t < n_tokens; t++)
        for (int32_t r = r0; r < r1; r += 4)
            es_rows4(xq + (size_t)t * w->cols, xs + (size_t)t * nb, w, r, r1 - r < 4 ? r1 - r : 4,
                     y + (size_t)t * ldy, dot);
}

/* Rows outer (4 rows stay in L1), tokens inner (prefill). */
ES_INLINE void es_matmul_rows4(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,
                               int32_t r1, float *y, int32_t ldy, es_dot16_fn dot) {
    const int32_t nb = w->cols / es_act_block(w);
    for (int32_t r = r0; r < r1; r += 4)
        for (int32_t t = 0; t < n_tokens; t++)
            es_rows4(xq + (size_t)t * w->cols, xs + (size_t)t * nb, w, r, r1 - r < 4 ? r1 - r : 4,
                     y + (size_t)t * ldy, dot);
}

#endif /* ES_NEON_COMMON_H */
