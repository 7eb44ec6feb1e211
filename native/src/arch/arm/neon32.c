/*
 * 32-bit ARMv7 NEON kernels (compiled with -mfpu=neon-vfpv4; Pi 2/3/4 on a
 * 32-bit OS): the int8 products only. es_dot16_mull (neon_common.h)
 * accumulates exactly; the float part of each block (acc*xs*ws) runs on the
 * IEEE VFP unit, because ARMv7 Advanced SIMD flushes subnormals to zero.
 * Products with act_block not a multiple of 16 use the scalar twin.
 */
#include "neon_common.h"

/* Lane sums of a and b: [sum a, sum b] (A32 has no vpaddq_s32). */
static inline int32x2_t sum2(int32x4_t a, int32x4_t b) {
    return vpadd_s32(vpadd_s32(vget_low_s32(a), vget_high_s32(a)), vpadd_s32(vget_low_s32(b), vget_high_s32(b)));
}

/* The tile (kernel_common.h) of one token and four rows. */
static void rows4_neon32(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows, float *y) {
    const es_qshape s = es_qshape_of(w);
    const int8_t *wr[4];
    int32_t sidx[4];
    es_tile_rows(w, r, nrows, 4, wr, sidx);
    float sumf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int32_t b = 0; b < s.nb; b++) {
        const int32_t k0 = b * s.B;
        int32x4_t a[4];
        es_block_dots4(x, wr, k0, s.B, es_dot16_mull, a);
        int32_t acc[4];
        vst1q_s32(acc, vcombine_s32(sum2(a[0], a[1]), sum2(a[2], a[3])));
        const int32_t g = k0 / s.glen;
        for (int i = 0; i < 4; i++) sumf[i] += ((float)acc[i] * xst[b]) * w->scale[sidx[i] + g];
    }
    for (int i = 0; i < nrows; i++) y[r + i] = sumf[i];
}

ES_TILED_MATVEC(matvec_q8_neon32, rows4_neon32, 4, 16)
ES_TILED_MATMUL(matmul_q8_neon32, rows4_neon32, 4, 16)

void es_install_neon32(es_kernels *k) {
    ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_neon32);
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_neon32);
}
