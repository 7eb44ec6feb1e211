/*
 * Scalar building blocks shared by every kernel file, so that SIMD and scalar
 * code compute the same bits: round-half-even, the canonical 16-lane fold,
 * es_expf, IEEE half conversions, and the per-element steps of the kernels
 * (an activation's int8 value, a RoPE pair, SwiGLU) that the scalar twins
 * run everywhere and the SIMD kernels run on their tails.
 */
#ifndef ES_MATH_H
#define ES_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edge_sdk.h"

/* 1.5 * 2^23: adding and subtracting it rounds |v| < 2^22 to an integer with
   the current (round-to-nearest-even) mode; no libm, same on every FPU. */
#define ES_RINT_MAGIC 12582912.0f

static inline float es_rint_small(float v) {
    return (v + ES_RINT_MAGIC) - ES_RINT_MAGIC;
}

/* One activation of a block whose multiplier is inv = 127/amax (amax > 0):
   rint_half_even(clamp(x*inv, -127, 127)), the int8 spec of edge_sdk.h. */
static inline int8_t es_quant_value(float x, float inv) {
    float v = x * inv;
    v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
    return (int8_t)(int32_t)es_rint_small(v);
}

/* Fold 16 lane sums in the canonical order: lane j += lane j+w, w = 8, 4, 2, 1. */
static inline float es_fold16(float lane[16]) {
    for (int w = 8; w >= 1; w >>= 1)
        for (int j = 0; j < w; j++) lane[j] = lane[j] + lane[j + w];
    return lane[0];
}

/* es_expf: Cody-Waite range reduction x = n*ln2 + r, |r| <= ln2/2, and the
   Cephes expf polynomial (https://github.com/jeremybarnes/cephes, single/expf.c),
   evaluated with separate multiplies and adds so SIMD twins match bit for bit.
   Below ES_EXP_LO the result is 0; above ES_EXP_HI the input is clamped. */
#define ES_EXP_LO (-87.33654f)
#define ES_EXP_HI 88.0f
#define ES_LOG2E 1.44269504088896341f
#define ES_LN2_HI 0.693359375f
#define ES_LN2_LO (-2.12194440e-4f)
#define ES_EXP_P0 1.9875691500e-4f
#define ES_EXP_P1 1.3981999507e-3f
#define ES_EXP_P2 8.3334519073e-3f
#define ES_EXP_P3 4.1665795894e-2f
#define ES_EXP_P4 1.6666665459e-1f
#define ES_EXP_P5 5.0000001201e-1f

static inline float es_expf(float x) {
    if (x < ES_EXP_LO) return 0.0f;
    if (x > ES_EXP_HI) x = ES_EXP_HI;
    float n = es_rint_small(x * ES_LOG2E);
    float r = x - n * ES_LN2_HI;
    r = r - n * ES_LN2_LO;
    float z = r * r;
    float y = ES_EXP_P0;
    y = y * r + ES_EXP_P1;
    y = y * r + ES_EXP_P2;
    y = y * r + ES_EXP_P3;
    y = y * r + ES_EXP_P4;
    y = y * r + ES_EXP_P5;
    y = y * z + r;
    y = y + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float p;
    memcpy(&p, &bits, 4);
    return y * p;
}

/* IEEE binary16 <-> binary32, round to nearest even, subnormals, inf, NaN. */
static inline uint16_t es_f32_to_f16_scalar(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf, NaN (quiet, top payload bits kept) */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0u));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (a >= 0x38800000u) {                                /* normal half */
        a += 0xfffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
    }
    if (a < 0x33000000u) return (uint16_t)sign;            /* <= 2^-25: rounds to 0 */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;                             /* 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline float es_f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        e = 113u;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        bits = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Bytes per KV-cache value of dtype (es_kv_dtype, already validated). */
static inline size_t es_kv_esize(int32_t dtype) {
    return dtype == ES_KV_F16 ? 2 : dtype == ES_KV_I8 ? 1 : 4;
}

/* Element i of a KV-cache row of dtype (es_kv_dtype), as f32: for int8 the
   integer value, its row's scale applied by the caller. */
static inline float es_kv_at(const void *row, int32_t dtype, size_t i) {
    if (dtype == ES_KV_F16) return es_f16_to_f32_scalar(((const uint16_t *)row)[i]);
    if (dtype == ES_KV_I8) return (float)((const int8_t *)row)[i];
    return ((const float *)row)[i];
}

/* ---- per-element steps of the float kernels ------------------------------ */

/* RoPE, rotate_half layout: the pair (x[i], x[i + half]). */
static inline void es_rope_pair(float *x, const float *cos, const float *sin, int32_t half, int32_t i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
}

/* SwiGLU: silu(g) * u = (g / (1 + exp(-g))) * u. */
static inline float es_swiglu_value(float g, float u) {
    return (g / (1.0f + es_expf(-g))) * u;
}

/* RMSNorm's multiplier from the sum of squares ss of n values. */
static inline float es_rms_inv(float ss, int32_t n, float eps) {
    return 1.0f / sqrtf(ss / (float)n + eps);
}

/* ---- geometry of an int8 weight matrix ----------------------------------- */

static inline int32_t es_n_groups(const es_qmat *w) {
    return w->group_size > 0 ? w->cols / w->group_size : 1;
}

static inline int32_t es_group_len(const es_qmat *w) {
    return w->group_size > 0 ? w->group_size : w->cols;
}

static inline int32_t es_act_block(const es_qmat *w) {
    return w->act_block > 0 ? w->act_block : w->cols;
}

#endif /* ES_MATH_H */
