/*
 * aarch64 ARMv8.2 dot-product kernels (compiled with -march=armv8.2-a+dotprod,
 * installed only when AT_HWCAP has ASIMDDP: Pi 5, Jetson Orin, Graviton 2+):
 * the int8 products with SDOT (vdotq_s32: four int8 products summed into
 * each int32 lane, exact). Everything else comes from neon.c.
 */
#include "neon_common.h"

static inline int32x4_t dot16_sdot(int32x4_t acc, int8x16_t x, int8x16_t w) { return vdotq_s32(acc, x, w); }

static void matvec_q8_dotprod(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                              int32_t r0, int32_t r1, float *y, int32_t ldy) {
    if (es_act_block(w) % 16) matvec_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);
    else es_matvec_rows4(xq, xs, n_tokens, w, r0, r1, y, ldy, dot16_sdot);
}

static void matmul_q8_dotprod(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                              int32_t r0, int32_t r1, float *y, int32_t ldy) {
    if (es_act_block(w) % 16) matmul_q8_generic(xq, xs, n_tokens, w, r0, r1, y, ldy);
    else es_matmul_rows4(xq, xs, n_tokens, w, r0, r1, y, ldy, dot16_sdot);
}

void es_install_dotprod(es_kernels *k) {
    ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_dotprod);
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_dotprod);
}
