/*
 * aarch64 ARMv8.0 Advanced SIMD kernels (baseline on every aarch64 CPU: Pi 3/4,
 * Jetson Nano). Same bits as the scalar twins: float reductions keep the
 * canonical 16-lane order (four q-registers = lanes 0-3, 4-7, 8-11, 12-15),
 * no FMA (-ffp-contract=off), es_expf step for step with FRINTN for the
 * round-half-even, FCVTN for the half conversion (round to nearest even).
 *
 * int8 dot: es_dot16_mull (neon_common.h), exact. Products with act_block
 * not a multiple of 16 use the scalar twin.
 */
#include "neon_common.h"

/* ---- activation quantization ------------------------------------------ */

static inline float absmax_neon(const float *x, int32_t n, int32_t *done) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    *done = i;
    return vmaxvq_f32(vmax);
}

/* FCVTNS rounds half to even, as es_rint_small does. */
static inline int32_t quant_neon(const float *x, int32_t n, float inv, int8_t *q) {
    const float32x4_t vinv = vdupq_n_f32(inv), lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t f0 = vmulq_f32(vld1q_f32(x + i), vinv), f1 = vmulq_f32(vld1q_f32(x + i + 4), vinv);
        f0 = vminq_f32(vmaxq_f32(f0, lo), hi);
        f1 = vminq_f32(vmaxq_f32(f1, lo), hi);
        const int16x8_t s16 = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(f0)), vqmovn_s32(vcvtnq_s32_f32(f1)));
        vst1_s8(q + i, vqmovn_s16(s16));
    }
    return i;
}

static void quantize_row_neon(const float *x, int32_t n, int32_t block, int8_t *q, float *scales) {
    es_quantize_row(x, n, block, q, scales, absmax_neon, quant_neon);
}

/* ---- int8 products ----------------------------------------------------- */

ES_INLINE void rows4_neon(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows, float *y) {
    es_rows4(x, xst, w, r, nrows, y, es_dot16_mull);
}

ES_TILED_MATVEC(matvec_q8_neon, rows4_neon, 4, 16)
ES_TILED_MATMUL(matmul_q8_neon, rows4_neon, 4, 16)

/* ---- float kernels ------------------------------------------------------ */

static float sumsq(const float *x, int32_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        const float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
        a0 = vaddq_f32(a0, vmulq_f32(v0, v0));
        a1 = vaddq_f32(a1, vmulq_f32(v1, v1));
        a2 = vaddq_f32(a2, vmulq_f32(v2, v2));
        a3 = vaddq_f32(a3, vmulq_f32(v3, v3));
    }
    if (i < n) {
        float t[16] = {0};
        memcpy(t, x + i, (size_t)(n - i) * 4);
        const float32x4_t v0 = vld1q_f32(t), v1 = vld1q_f32(t + 4), v2 = vld1q_f32(t + 8), v3 = vld1q_f32(t + 12);
        a0 = vaddq_f32(a0, vmulq_f32(v0, v0));
        a1 = vaddq_f32(a1, vmulq_f32(v1, v1));
        a2 = vaddq_f32(a2, vmulq_f32(v2, v2));
        a3 = vaddq_f32(a3, vmulq_f32(v3, v3));
    }
    return es_fold16_neon(a0, a1, a2, a3);
}

static void rmsnorm_neon(const float *x, const float *w, int32_t n, float eps, float *out) {
    const float inv = es_rms_inv(sumsq(x, n), n, eps);
    const float32x4_t vinv = vdupq_n_f32(inv);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vmulq_f32(vmulq_f32(vld1q_f32(x + i), vinv), vld1q_f32(w + i)));
    for (; i < n; i++) out[i] = (x[i] * inv) * w[i];
}

static void rope_neon(float *x, const float *cos, const float *sin, int32_t half) {
    int32_t i = 0;
    for (; i + 4 <= half; i += 4) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + half + i);
        const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
        vst1q_f32(x + i, vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s)));
        vst1q_f32(x + half + i, vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s)));
    }
    for (; i < half; i++) es_rope_pair(x, cos, sin, half, i);
}

/* es_expf on 4 lanes, step for step. */
static inline float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(ES_EXP_LO);
    const uint32x4_t under = vcltq_f32(x, lo);
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(ES_EXP_HI)), lo);
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(ES_LOG2E)));
    float32x4_t r = vsubq_f32(x, vmulq_f32(n, vdupq_n_f32(ES_LN2_HI)));
    r = vsubq_f32(r, vmulq_f32(n, vdupq_n_f32(ES_LN2_LO)));
    const float32x4_t z = vmulq_f32(r, r);
    float32x4_t y = vdupq_n_f32(ES_EXP_P0);
    y = vaddq_f32(vmulq_f32(y, r), vdupq_n_f32(ES_EXP_P1));
    y = vaddq_f32(vmulq_f32(y, r), vdupq_n_f32(ES_EXP_P2));
    y = vaddq_f32(vmulq_f32(y, r), vdupq_n_f32(ES_EXP_P3));
    y = vaddq_f32(vmulq_f32(y, r), vdupq_n_f32(ES_EXP_P4));
    y = vaddq_f32(vmulq_f32(y, r), vdupq_n_f32(ES_EXP_P5));
    y = vaddq_f32(vmulq_f32(y, z), r);
    y = vaddq_f32(y, vdupq_n_f32(1.0f));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    y = vmulq_f32(y, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), under));
}

static void softmax_neon(float *x, int32_t n) {
    float32x4_t vm = vdupq_n_f32(x[0]);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) vm = vmaxq_f32(vm, vld1q_f32(x + i));
    float mx = vmaxvq_f32(vm);
    for (; i < n; i++)
        if (x[i] > mx) mx = x[i];
    const float32x4_t vmx = vdupq_n_f32(mx);
    float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (i = 0; i + 16 <= n; i += 16)
        for (int j = 0; j < 4; j++) {
            const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i + 4 * j), vmx));
            vst1q_f32(x + i + 4 * j, e);
            a[j] = vaddq_f32(a[j], e);
        }
    if (i < n) {
        float t[16];
        const int32_t m = n - i;
        memcpy(t, x + i, (size_t)m * 4);
        for (int32_t j = m; j < 16; j++) t[j] = mx;
        for (int j = 0; j < 4; j++) {
            float32x4_t e = exp4(vsubq_f32(vld1q_f32(t + 4 * j), vmx));
            const int32_t live = m - 4 * j; /* lanes < live are real */
            const uint32x4_t keep = vcltq_s32(vld1q_s32((const int32_t[]){0, 1, 2, 3}), vdupq_n_s32(live));
            e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), keep));
            vst1q_f32(t + 4 * j, e);
            a[j] = vaddq_f32(a[j], e);
        }
        memcpy(x + i, t, (size_t)m * 4);
    }
    const float sum = es_fold16_neon(a[0], a[1], a[2], a[3]);
    const float32x4_t vsum = vdupq_n_f32(sum);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vdivq_f32(vld1q_f32(x + i), vsum));
    for (; i < n; i++) x[i] = x[i] / sum;
}

/* 16 cache values at element i of a row, as f32 in four vectors (f16 rows
   converted exactly, int8 rows as their integers). dtype is a constant where
   this is inlined. */
ES_INLINE void kv_load16(const void *row, int32_t dtype, int32_t i, float32x4_t o[4]) {
    if (dtype == ES_KV_I8) {
        const int8x16_t b = vld1q_s8((const int8_t *)row + i);
        const int16x8_t lo = vmovl_s8(vget_low_s8(b)), hi = vmovl_high_s8(b);
        o[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
        o[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
        o[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
        o[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
        return;
    }
    for (int u = 0; u < 4; u++)
        o[u] = dtype == ES_KV_F16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)row + i + 4 * u)))
                                  : vld1q_f32((const float *)row + i + 4 * u);
}

/* The attention kernel for one dtype (a constant: each call below compiles
   its own loops). */
ES_INLINE void attention_neon_of(const float *q, const void *k, const void *v, const float *ks, const float *vs,
                                 const int32_t dtype, int32_t n_pos, int32_t hd, float scale, float *scores,
                                 float *out) {
    const size_t esz = es_kv_esize(dtype);
    for (int32_t j = 0; j < n_pos; j++) {
        const void *kr = (const char *)k + (size_t)j * hd * esz;
        float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        int32_t i = 0;
        for (; i + 16 <= hd; i += 16) {
            float32x4_t kv[4];
            kv_load16(kr, dtype, i, kv);
            for (int u = 0; u < 4; u++) a[u] = vaddq_f32(a[u], vmulq_f32(vld1q_f32(q + i + 4 * u), kv[u]));
        }
        if (i < hd) {
            float tq[16] = {0}, tk[16] = {0};
            for (int32_t m = i; m < hd; m++) {
                tq[m - i] = q[m];
                tk[m - i] = es_kv_at(kr, dtype, (size_t)m);
            }
            for (int u = 0; u < 4; u++) a[u] = vaddq_f32(a[u], vmulq_f32(vld1q_f32(tq + 4 * u), vld1q_f32(tk + 4 * u)));
        }
        scores[j] = es_attention_score(es_fold16_neon(a[0], a[1], a[2], a[3]), ks, j, dtype, scale);
    }
    softmax_neon(scores, n_pos);
    es_attention_value_weights(scores, vs, dtype, n_pos);
    int32_t i0 = 0;
    for (; i0 + 16 <= hd; i0 += 16) {
        float32x4_t o[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        for (int32_t j = 0; j < n_pos; j++) {
            const void *vr = (const char *)v + (size_t)j * hd * esz;
            const float32x4_t p = vdupq_n_f32(scores[j]);
            float32x4_t vv[4];
            kv_load16(vr, dtype, i0, vv);
            for (int u = 0; u < 4; u++) o[u] = vaddq_f32(o[u], vmulq_f32(p, vv[u]));
        }
        for (int u = 0; u < 4; u++) vst1q_f32(out + i0 + 4 * u, o[u]);
    }
    es_attention_out_tail(scores, v, dtype, n_pos, hd, i0, out);
}

static void attention_neon(const float *q, const void *k, const void *v, const float *ks, const float *vs,
                           int32_t dtype, int32_t n_pos, int32_t hd, float scale, float *scores, float *out) {
    if (dtype == ES_KV_I8) attention_neon_of(q, k, v, ks, vs, ES_KV_I8, n_pos, hd, scale, scores, out);
    else if (dtype == ES_KV_F16) attention_neon_of(q, k, v, ks, vs, ES_KV_F16, n_pos, hd, scale, scores, out);
    else attention_neon_of(q, k, v, ks, vs, ES_KV_F32, n_pos, hd, scale, scores, out);
}

static void swiglu_neon(const float *g, const float *u, int32_t n, float *h) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t gv = vld1q_f32(g + i);
        const float32x4_t s = vdivq_f32(gv, vaddq_f32(one, exp4(vnegq_f32(gv))));
        vst1q_f32(h + i, vmulq_f32(s, vld1q_f32(u + i)));
    }
    for (; i < n; i++) h[i] = es_swiglu_value(g[i], u[i]);
}

static void add_neon(float *x, const float *y, int32_t n) {
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vaddq_f32(vld1q_f32(x + i), vld1q_f32(y + i)));
    for (; i < n; i++) x[i] += y[i];
}

static void embed_row_neon(const int8_t *q, const float *scale, int32_t cols, int32_t group_size, float *out) {
    const int32_t glen = group_size > 0 ? group_size : cols;
    for (int32_t g0 = 0; g0 < cols; g0 += glen) {
        const float s = scale[g0 / glen];
        const float32x4_t vs = vdupq_n_f32(s);
        int32_t i = g0;
        for (; i + 8 <= g0 + glen; i += 8) {
            const int16x8_t v = vmovl_s8(vld1_s8(q + i));
            vst1q_f32(out + i, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(v))), vs));
            vst1q_f32(out + i + 4, vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(v)), vs));
        }
        for (; i < g0 + glen; i++) out[i] = (float)q[i] * s;
    }
}

static void f32_to_f16_neon(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = es_f32_to_f16_scalar(x[i]);
}

static void f16_to_f32_neon(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; i++) y[i] = es_f16_to_f32_scalar(x[i]);
}

void es_install_neon(es_kernels *k) {
    ES_SET_ALL(k, neon);
}
