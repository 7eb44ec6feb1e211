/*
 * aarch64 ARMv8.2 dot-product kernels (compiled with -march=armv8.2-a+dotprod,
 * installed only when AT_HWCAP has ASIMDDP: Pi 5, Jetson Orin, Graviton 2+):
 * the int8 products with SDOT (vdotq_s32: four int8 products summed into
 * each int32 lane, exact). Everything else comes from neon.c.
 */
#include "neon_common.h"

static inline int32x4_t dot16_sdot(int32x4_t acc, int8x16_t x, int8x16_t w) { return vdotq_s32(acc, x, w); }

ES_INLINE void rows4_sdot(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows, float *y) {
    es_rows4(x, xst, w, r, nrows, y, dot16_sdot);
}

ES_TILED_MATVEC(matvec_q8_dotprod, rows4_sdot, 4, 16)
ES_TILED_MATMUL(matmul_q8_dotprod, rows4_sdot, 4, 16)

void es_install_dotprod(es_kernels *k) {
    ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_dotprod);
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_dotprod);
}
