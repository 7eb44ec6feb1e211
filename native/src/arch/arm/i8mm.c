/*
 * aarch64 int8 matrix-multiply kernels (compiled with
 * -march=armv8.2-a+dotprod+i8mm, installed only when AT_HWCAP2 has I8MM:
 * Graviton 3, Neoverse V1/N2, Cortex-A510/A710+): the prefill product with
 * SMMLA (vmmlaq_s32), which multiplies a 2x8 int8 block of two tokens by a
 * 2x8 block of two weight rows into a 2x2 int32 tile, exactly. One pass
 * covers 2 tokens x 4 rows; decode (one token) keeps the SDOT kernel.
 */
#include "neon_common.h"

static inline int8x16_t zip_lo(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

static inline int8x16_t zip_hi(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* Tokens x0, x1 (x1 may repeat x0; then y1 is NULL) against rows r..r+nrows-1. */
static void tile2x4(const int8_t *x0, const int8_t *x1, const float *xs0, const float *xs1, const es_qmat *w,
                    int32_t r, int32_t nrows, float *y0, float *y1) {
    const es_qshape s = es_qshape_of(w);
    const int8_t *wr[4];
    int32_t sidx[4];
    es_tile_rows(w, r, nrows, 4, wr, sidx);
    float32x4_t wsv = es_scales4(w, sidx, 0), s0 = vdupq_n_f32(0.0f), s1 = s0;
    for (int32_t b = 0; b < s.nb; b++) {
        const int32_t k0 = b * s.B;
        int32x4_t a01 = vdupq_n_s32(0), a23 = a01; /* [t0r0 t0r1 t1r0 t1r1], [t0r2 t0r3 t1r2 t1r3] */
        for (int32_t c = k0; c < k0 + s.B; c += 16) {
            const int8x16_t xa = vld1q_s8(x0 + c), xb = vld1q_s8(x1 + c);
            const int8x16_t w0 = vld1q_s8(wr[0] + c), w1 = vld1q_s8(wr[1] + c);
            const int8x16_t w2 = vld1q_s8(wr[2] + c), w3 = vld1q_s8(wr[3] + c);
            const int8x16_t xl = zip_lo(xa, xb), xh = zip_hi(xa, xb);
            a01 = vmmlaq_s32(a01, xl, zip_lo(w0, w1));
            a01 = vmmlaq_s32(a01, xh, zip_hi(w0, w1));
            a23 = vmmlaq_s32(a23, xl, zip_lo(w2, w3));
            a23 = vmmlaq_s32(a23, xh, zip_hi(w2, w3));
        }
        if (es_new_group(&s, k0)) wsv = es_scales4(w, sidx, k0 / s.glen);
        const int32x4_t t0 = vcombine_s32(vget_low_s32(a01), vget_low_s32(a23));
        const int32x4_t t1 = vcombine_s32(vget_high_s32(a01), vget_high_s32(a23));
        s0 = vaddq_f32(s0, vmulq_f32(vmulq_f32(vcvtq_f32_s32(t0), vdupq_n_f32(xs0[b])), wsv));
        s1 = vaddq_f32(s1, vmulq_f32(vmulq_f32(vcvtq_f32_s32(t1), vdupq_n_f32(xs1[b])), wsv));
    }
    float o0[4], o1[4];
    vst1q_f32(o0, s0);
    vst1q_f32(o1, s1);
    for (int i = 0; i < nrows; i++) {
        y0[r + i] = o0[i];
        if (y1) y1[r + i] = o1[i];
    }
}

/* Rows outer (4 rows stay in L1), token pairs inner. */
static void matmul_q8_i8mm(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                           int32_t r0, int32_t r1, float *y, int32_t ldy) {
    if (es_act_block(w) % 16) {
        matmul_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);
        return;
    }
    const int32_t cols = w->cols, nb = cols / es_act_block(w);
    for (int32_t r = r0; r < r1; r += 4) {
        const int32_t nrows = r1 - r < 4 ? r1 - r : 4;
        for (int32_t t = 0; t < n_tokens; t += 2) {
            const int32_t t1 = t + 1 < n_tokens ? t + 1 : t;
            tile2x4(xq + (size_t)t * cols, xq + (size_t)t1 * cols, xs + (size_t)t * nb, xs + (size_t)t1 * nb, w, r,
                    nrows, y + (size_t)t * ldy, t1 != t ? y + (size_t)t1 * ldy : NULL);
        }
    }
}

void es_install_i8mm(es_kernels *k) {
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_i8mm);
}
