/*
 * 32-bit ARMv7 NEON kernels (compiled with -mfpu=neon-vfpv4; Pi 2/3/4 on a
 * 32-bit OS): the int8 products only. vmull_s8 + vpadalq_s16 accumulate
 * exactly; the float part of each block (acc*xs*ws) runs on the IEEE VFP
 * unit, because ARMv7 Advanced SIMD flushes subnormals to zero. Products with
 * act_block not a multiple of 16 use the scalar twin.
 */
#include <arm_neon.h>

#include "../../es_math.h"
#include "../../kernels.h"

static inline int32x4_t dot16(int32x4_t acc, int8x16_t x, int8x16_t w) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(w)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(x), vget_high_s8(w)));
}

static inline int32x2_t sum2(int32x4_t a, int32x4_t b) {
    return vpadd_s32(vpadd_s32(vget_low_s32(a), vget_high_s32(a)), vpadd_s32(vget_low_s32(b), vget_high_s32(b)));
}

static void rows4_neon32(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows, float *y) {
    const int32_t cols = w->cols, ng = es_n_groups(w), glen = es_group_len(w);
    const int32_t B = es_act_block(w), nb = cols / B;
    const int8_t *wr[4];
    int32_t idx[4];
    for (int i = 0; i < 4; i++) {
        const int32_t rr = r + (i < nrows ? i : nrows - 1);
        wr[i] = w->q + (size_t)rr * cols;
        idx[i] = rr * ng;
    }
    float sumf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int32_t b = 0; b < nb; b++) {
        const int32_t k0 = b * B;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t c = k0; c < k0 + B; c += 16) {
            const int8x16_t xv = vld1q_s8(x + c);
            a0 = dot16(a0, xv, vld1q_s8(wr[0] + c));
            a1 = dot16(a1, xv, vld1q_s8(wr[1] + c));
            a2 = dot16(a2, xv, vld1q_s8(wr[2] + c));
            a3 = dot16(a3, xv, vld1q_s8(wr[3] + c));
        }
        int32_t acc[4];
        vst1q_s32(acc, vcombine_s32(sum2(a0, a1), sum2(a2, a3)));
        const int32_t g = k0 / glen;
        for (int i = 0; i < 4; i++) sumf[i] += ((float)acc[i] * xst[b]) * w->scale[idx[i] + g];
    }
    for (int i = 0; i < nrows; i++) y[r + i] = sumf[i];
}

static void matvec_q8_neon32(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                             int32_t r0, int32_t r1, float *y, int32_t ldy) {
    if (es_act_block(w) % 16) {
        matvec_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);
        return;
    }
    const int32_t nb = w->cols / es_act_block(w);
    for (int32_t t = 0; t < n_tokens; t++)
        for (int32_t r = r0; r < r1; r += 4)
            rows4_neon32(xq + (size_t)t * w->cols, xs + (size_t)t * nb, w, r, r1 - r < 4 ? r1 - r : 4,
                         y + (size_t)t * ldy);
}

/* Rows outer (4 rows stay in L1), tokens inner. */
static void matmul_q8_neon32(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                             int32_t r0, int32_t r1, float *y, int32_t ldy) {
    if (es_act_block(w) % 16) {
        matmul_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);
        return;
    }
    const int32_t nb = w->cols / es_act_block(w);
    for (int32_t r = r0; r < r1; r += 4)
        for (int32_t t = 0; t < n_tokens; t++)
            rows4_neon32(xq + (size_t)t * w->cols, xs + (size_t)t * nb, w, r, r1 - r < 4 ? r1 - r : 4,
                         y + (size_t)t * ldy);
}

void es_install_neon32(es_kernels *k) {
    ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_neon32);
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_neon32);
}
