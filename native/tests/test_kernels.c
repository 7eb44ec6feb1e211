/*
 * Every SIMD kernel set this CPU can run, held to the scalar twins over
 * awkward lengths (loop tails), extreme values (-127/127, all-zero rows,
 * rounding ties), and the scalar twins held to hand-computed values.
 *
 * Integer paths must be bit-exact. Float kernels share the canonical
 * reduction order and es_expf, so they are expected to be exact too; the
 * named tolerances below are in units in the last place.
 */
#include "check.h"
#include "es_math.h"
#include "kernels.h"

enum {
    TOL_ULP_RMSNORM = 0,
    TOL_ULP_ROPE = 0,
    TOL_ULP_SOFTMAX = 0,
    TOL_ULP_ATTENTION = 0,
    TOL_ULP_SWIGLU = 0,
    TOL_ULP_ADD = 0,
    TOL_ULP_EMBED = 0,
    TOL_ULP_MATMUL = 0,      /* the float part of the int8 product */
};


/* ---- the scalar twins against hand-computed values ------------------------ */

static void test_generic_values(void) {
    /* amax 127 -> inv 1: ties round to even, clamp, -0.5 -> 0 */
    const float x[8] = {127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f, -126.5f};
    const int8_t want[8] = {127, 2, 4, -2, 0, 0, 2, -126};
    int8_t q[8];
    float s[4];
    quantize_row_generic(x, 8, 0, q, s);
    CHECK(s[0] == 1.0f, "scale %g", s[0]);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(q[i], want[i]);
    const float z[3] = {0.0f, -0.0f, 0.0f};
    q[0] = q[1] = q[2] = 9;
    quantize_row_generic(z, 3, 3, q, s);
    CHECK(s[0] == 0.0f && q[0] == 0 && q[1] == 0 && q[2] == 0, "zero row");
    /* blocks of 2: scales 2/127 and 8/127; 1*63.5 and 4*(127/8) tie to 64 */
    const float xb[4] = {1.0f, 2.0f, 4.0f, -8.0f};
    quantize_row_generic(xb, 4, 2, q, s);
    CHECK(s[0] == 2.0f / 127.0f && s[1] == 8.0f / 127.0f, "block scales %g %g", s[0], s[1]);
    CHECK(q[0] == 64 && q[1] == 127 && q[2] == 64 && q[3] == -127, "block q %d %d %d %d", q[0], q[1], q[2], q[3]);

    /* product: blocks of 4, float sum over blocks in order */
    const int8_t wq[8] = {1, 2, 3, 4, -127, 127, -1, 0};
    const int8_t xq[8] = {127, -127, 1, 1, 1, 1, 1, 1};
    const float ws[2] = {0.5f, 0.25f}, xs[2] = {2.0f, 4.0f};
    float y;
    /* acc0 = 127-254+3+4 = -120, acc1 = -127+127-1 = -1 */
    es_qmat w = {wq, ws, 1, 8, 4, 4};
    matvec_q8_generic(xq, xs, 1, &w, 0, 1, &y, 1);
    CHECK(y == -121.0f, "grouped product %g", y); /* (-120*2)*0.5 + (-1*4)*0.25 */
    es_qmat w1 = {wq, ws, 1, 8, 0, 4};
    matvec_q8_generic(xq, xs, 1, &w1, 0, 1, &y, 1);
    CHECK(y == -122.0f, "per-row product %g", y); /* (-120*2)*0.5 + (-1*4)*0.5 */
    es_qmat w2 = {wq, ws, 1, 8, 0, 0};
    matvec_q8_generic(xq, xs, 1, &w2, 0, 1, &y, 1);
    CHECK(y == -121.0f, "whole-row block %g", y); /* (-121*2)*0.5 */

    /* half conversions */
    const float hv[] = {1.0f, 65504.0f, 65520.0f, 5.9604645e-08f, 2.9802322e-08f, 4.4703484e-08f, 0.1f, -2.0f};
    const uint16_t hw[] = {0x3c00, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0001, 0x2e66, 0xc000};
    for (size_t i = 0; i < sizeof hv / sizeof hv[0]; i++) CHECK_EQ_INT(es_f32_to_f16_scalar(hv[i]), hw[i]);
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        CHECK_EQ_INT(es_f32_to_f16_scalar(es_f16_to_f32_scalar((uint16_t)h)), h);
    }

    /* es_expf: within 2 ulp of double exp over the softmax/silu range */
    int64_t worst = 0;
    for (float v = -87.0f; v < 88.0f; v += 0.0137f) {
        int64_t d = ulp_diff(es_expf(v), (float)exp((double)v));
        if (d > worst) worst = d;
    }
    CHECK(worst <= 2, "es_expf worst %lld ulp", (long long)worst);
    CHECK(es_expf(-100.0f) == 0.0f && es_expf(0.0f) == 1.0f, "exp ends");

    /* int8 attention: scores (4*0.25, 2*0.5) tie, p = 0.5 each; value weights
       0.5*0.5 and 0.5*2: out = (0.25*10 + 1*3, 0.25*-20 + 1*1) */
    const float aq[2] = {1.0f, 1.0f}, aks[2] = {0.25f, 0.5f}, avs[2] = {0.5f, 2.0f};
    const int8_t akq[4] = {4, 0, 0, 2}, avq[4] = {10, -20, 3, 1};
    float asc[2], aout[2];
    attention_generic(aq, akq, avq, aks, avs, ES_KV_I8, 2, 2, 1.0f, asc, aout);
    CHECK(aout[0] == 5.5f && aout[1] == -4.0f, "int8 attention %g %g", aout[0], aout[1]);
}

/* ---- SIMD vs scalar ---------------------------------------------------- */

static void fill(rng_t *r, float *x, int32_t n, float scale) {
    for (int32_t i = 0; i < n; i++) x[i] = rng_unit(r) * scale;
}

static const int32_t BLOCKS[] = {0, 4, 8, 12, 16, 32, 64, 96};
#define N_BLOCKS ((int)(sizeof BLOCKS / sizeof BLOCKS[0]))

static void test_quantize(const es_kernels *k, const es_kernels *g, rng_t *r) {
    float x[1536], s1[1536], s2[1536];
    int8_t q1[1536], q2[1536];
    for (int li = 0; li < N_LENGTHS; li++) {
        const int32_t n = LENGTHS[li];
        for (int bi = 0; bi < N_BLOCKS; bi++) {
            const int32_t B = BLOCKS[bi], nb = B ? n / B : 1;
            if (B && n % B) continue;
            for (int variant = 0; variant < 4; variant++) {
                if (variant == 0) fill(r, x, n, 3.0f);
                if (variant == 1) memset(x, 0, sizeof x);
                if (variant == 2) /* ties: amax 127 makes x*inv == x */
                    for (int32_t i = 0; i < n; i++) x[i] = ((i + 1) % 4 == 0) ? -127.0f : (float)((i % 254) - 127) + 0.5f;
                if (variant == 3) { /* wildly different blocks, one all zero */
                    fill(r, x, n, 1e-3f);
                    for (int32_t i = 0; i < n / 2; i++) x[i] *= 1e4f;
                    if (B && nb > 2) memset(x + B, 0, (size_t)B * 4);
                }
                g->quantize_row(x, n, B, q1, s1);
                k->quantize_row(x, n, B, q2, s2);
                CHECK(memcmp(q1, q2, (size_t)n) == 0 && memcmp(s1, s2, (size_t)nb * 4) == 0,
                      "%s n=%d B=%d variant %d", k->names[ES_K_QUANTIZE_ROW], n, B, variant);
            }
        }
    }
}

static void test_products(const es_kernels *k, const es_kernels *g, rng_t *r) {
    enum { ROWS = 37, TMAX = 5 };
    static int8_t wq[ROWS * 1536], xq[TMAX * 1536];
    static float ws[ROWS * 1536 / 4], xs[TMAX * 1536 / 4], y1[TMAX * ROWS], y2[TMAX * ROWS];
    const int32_t tokens[] = {1, 2, 5};
    const int32_t gmul[] = {0, 1, 2}; /* group = 0 (per row), B, 2B */
    int combos = 0;
    for (int li = 0; li < N_LENGTHS; li++) {
        const int32_t K = LENGTHS[li];
        for (int bi = 0; bi < N_BLOCKS; bi++) {
            const int32_t B = BLOCKS[bi];
            if (B && K % B) continue;
            const int32_t nb = B ? K / B : 1;
            for (int gi = 0; gi < 3; gi++) {
                const int32_t G = gmul[gi] * B;
                if (gmul[gi] && (!B || K % G || G == K)) continue;
                const int32_t ng = G ? K / G : 1;
                for (int variant = 0; variant < 3; variant++) {
                    for (int32_t i = 0; i < ROWS * K; i++)
                        wq[i] = variant == 1 ? (int8_t)((i & 1) ? 127 : -127) : rng_i8(r);
                    for (int32_t i = 0; i < TMAX * K; i++)
                        xq[i] = variant == 1 ? (int8_t)((i % 3) ? -127 : 127) : rng_i8(r);
                    if (variant == 2) { /* an all-zero weight row and an all-zero token */
                        memset(wq + 5 * K, 0, (size_t)K);
                        memset(xq + 1 * K, 0, (size_t)K);
                    }
                    for (int32_t i = 0; i < ROWS * ng; i++) ws[i] = (rng_unit(r) + 1.5f) * 1e-2f;
                    for (int32_t i = 0; i < TMAX * nb; i++) xs[i] = (rng_unit(r) + 1.5f) * 3e-2f;
                    es_qmat w = {wq, ws, ROWS, K, G, B};
                    for (int ti = 0; ti < 3; ti++) {
                        const int32_t T = tokens[ti];
                        for (int rr = 0; rr < 2; rr++) { /* a sub-range exercises row tails and offsets */
                            const int32_t r0 = rr ? 3 : 0, r1 = rr ? 36 : ROWS;
                            memset(y1, 0, sizeof y1);
                            memset(y2, 0, sizeof y2);
                            g->matvec_q8(xq, xs, T, &w, r0, r1, y1, ROWS);
                            (T == 1 ? k->matvec_q8 : k->matmul_q8)(xq, xs, T, &w, r0, r1, y2, ROWS);
                            CHECK(max_ulp(y1, y2, (size_t)T * ROWS) <= TOL_ULP_MATMUL,
                                  "%s K=%d B=%d G=%d T=%d rows %d..%d variant %d", k->names[T == 1 ? 1 : 2], K, B,
                                  G, T, r0, r1, variant);
                            if (T > 1) { /* matvec must also accept T > 1 */
                                memset(y2, 0, sizeof y2);
                                k->matvec_q8(xq, xs, T, &w, r0, r1, y2, ROWS);
                                CHECK(max_ulp(y1, y2, (size_t)T * ROWS) <= TOL_ULP_MATMUL, "matvec T=%d K=%d", T, K);
                            }
                            combos++;
                        }
                    }
                }
            }
        }
    }
    CHECK(combos > 500, "only %d product cases", combos);
}

static void test_float_kernels(const es_kernels *k, const es_kernels *g, rng_t *r) {
    static float x[1536], w[1536], o1[1536], o2[1536], c[768], s[768];
    for (int li = 0; li < N_LENGTHS; li++) {
        const int32_t n = LENGTHS[li];
        fill(r, x, n, 4.0f);
        fill(r, w, n, 2.0f);
        g->rmsnorm(x, w, n, 1e-5f, o1);
        k->rmsnorm(x, w, n, 1e-5f, o2);
        CHECK(max_ulp(o1, o2, (size_t)n) <= TOL_ULP_RMSNORM, "%s n=%d", k->names[ES_K_RMSNORM], n);

        for (int variant = 0; variant < 2; variant++) {
            fill(r, o1, n, variant ? 200.0f : 8.0f); /* wide range hits exp underflow */
            memcpy(o2, o1, (size_t)n * 4);
            g->softmax(o1, n);
            k->softmax(o2, n);
            CHECK(max_ulp(o1, o2, (size_t)n) <= TOL_ULP_SOFTMAX, "%s n=%d", k->names[ES_K_SOFTMAX], n);
        }

        fill(r, x, n, 30.0f);
        x[0] = 95.0f; /* exp(-g) underflow, exp(g) clamp */
        if (n > 1) x[1] = -95.0f;
        g->swiglu(x, w, n, o1);
        k->swiglu(x, w, n, o2);
        CHECK(max_ulp(o1, o2, (size_t)n) <= TOL_ULP_SWIGLU, "%s n=%d", k->names[ES_K_SWIGLU], n);

        fill(r, o1, n, 1.0f);
        memcpy(o2, o1, (size_t)n * 4);
        g->add(o1, x, n);
        k->add(o2, x, n);
        CHECK(max_ulp(o1, o2, (size_t)n) <= TOL_ULP_ADD, "%s n=%d", k->names[ES_K_ADD], n);

        const int32_t half = n / 2 ? n / 2 : 1;
        fill(r, o1, 2 * half, 3.0f);
        fill(r, c, half, 1.0f);
        fill(r, s, half, 1.0f);
        memcpy(o2, o1, (size_t)2 * half * 4);
        g->rope(o1, c, s, half);
        k->rope(o2, c, s, half);
        CHECK(max_ulp(o1, o2, (size_t)2 * half) <= TOL_ULP_ROPE, "%s half=%d", k->names[ES_K_ROPE], half);

        int8_t q[1536];
        float sc[1536];
        for (int32_t i = 0; i < n; i++) q[i] = rng_i8(r);
        for (int32_t i = 0; i < n; i++) sc[i] = rng_unit(r);
        const int32_t gs[] = {0, 1, 4, n};
        for (int gi = 0; gi < 4; gi++) {
            if (gs[gi] && n % gs[gi]) continue;
            g->embed_row(q, sc, n, gs[gi], o1);
            k->embed_row(q, sc, n, gs[gi], o2);
            CHECK(max_ulp(o1, o2, (size_t)n) <= TOL_ULP_EMBED, "%s n=%d G=%d", k->names[ES_K_EMBED_ROW], n, gs[gi]);
        }
    }
}

/* One kv head's rows (n_pos, hd) as an int8 cache holds them: each row one
   quantization block. */
static void quantize_kv_rows(const float *x, int32_t n_pos, int32_t hd, int8_t *q, float *scales) {
    for (int32_t j = 0; j < n_pos; j++) quantize_row_generic(x + (size_t)j * hd, hd, hd, q + (size_t)j * hd, scales + j);
}

static void test_attention(const es_kernels *k, const es_kernels *g, rng_t *r) {
    enum { MAXPOS = 129, MAXHD = 128 };
    static float q[MAXHD], kf[MAXPOS * MAXHD], vf[MAXPOS * MAXHD], sc1[MAXPOS], sc2[MAXPOS], o1[MAXHD], o2[MAXHD];
    static float ks[MAXPOS], vs[MAXPOS];
    static uint16_t kh[MAXPOS * MAXHD], vh[MAXPOS * MAXHD];
    static int8_t kq[MAXPOS * MAXHD], vq[MAXPOS * MAXHD];
    const int32_t hds[] = {2, 6, 16, 64, 100, 128};
    for (int hi = 0; hi < 6; hi++) {
        const int32_t hd = hds[hi];
        for (int li = 0; li < N_LENGTHS && LENGTHS[li] <= MAXPOS; li++) {
            const int32_t np = LENGTHS[li];
            fill(r, q, hd, 2.0f);
            fill(r, kf, np * hd, 2.0f);
            fill(r, vf, np * hd, 1.0f);
            f32_to_f16_generic(kf, kh, (int64_t)np * hd);
            f32_to_f16_generic(vf, vh, (int64_t)np * hd);
            const float scale = 1.0f / sqrtf((float)hd);
            g->attention(q, kf, vf, NULL, NULL, ES_KV_F32, np, hd, scale, sc1, o1);
            k->attention(q, kf, vf, NULL, NULL, ES_KV_F32, np, hd, scale, sc2, o2);
            CHECK(max_ulp(o1, o2, (size_t)hd) <= TOL_ULP_ATTENTION, "%s f32 hd=%d n=%d",
                  k->names[ES_K_ATTENTION], hd, np);
            g->attention(q, kh, vh, NULL, NULL, ES_KV_F16, np, hd, scale, sc1, o1);
            k->attention(q, kh, vh, NULL, NULL, ES_KV_F16, np, hd, scale, sc2, o2);
            CHECK(max_ulp(o1, o2, (size_t)hd) <= TOL_ULP_ATTENTION, "%s f16 hd=%d n=%d",
                  k->names[ES_K_ATTENTION], hd, np);
            /* int8: rows of very different size, the last one all zero (scale 0), extremes -127/127 */
            for (int32_t j = 0; j < np; j++)
                for (int32_t i = 0; i < hd; i++) {
                    kf[j * hd + i] *= (float)(1 + j % 5);
                    vf[j * hd + i] *= 0.1f * (float)(1 + j % 3);
                }
            if (np > 1) {
                memset(kf + (size_t)(np - 1) * hd, 0, (size_t)hd * 4);
                memset(vf + (size_t)(np - 1) * hd, 0, (size_t)hd * 4);
            }
            quantize_kv_rows(kf, np, hd, kq, ks);
            quantize_kv_rows(vf, np, hd, vq, vs);
            g->attention(q, kq, vq, ks, vs, ES_KV_I8, np, hd, scale, sc1, o1);
            k->attention(q, kq, vq, ks, vs, ES_KV_I8, np, hd, scale, sc2, o2);
            CHECK(max_ulp(o1, o2, (size_t)hd) <= TOL_ULP_ATTENTION, "%s int8 hd=%d n=%d",
                  k->names[ES_K_ATTENTION], hd, np);
            CHECK(max_ulp(sc1, sc2, (size_t)np) == 0, "%s int8 weights hd=%d n=%d", k->names[ES_K_ATTENTION], hd, np);
        }
    }
}

static void test_f16(const es_kernels *k, const es_kernels *g, rng_t *r) {
    enum { N = 4096 + 13 };
    static float x[N], y1[N], y2[N];
    static uint16_t h1[N], h2[N];
    for (int32_t i = 0; i < N; i++) {
        const float m = (i % 4 == 0) ? 1e-6f : (i % 4 == 1) ? 70000.0f : (i % 4 == 2) ? 1e-8f : 1.0f;
        x[i] = rng_unit(r) * m;
    }
    x[0] = 65520.0f;
    x[1] = 2.9802322e-08f;
    x[2] = -0.0f;
    x[3] = INFINITY;
    x[4] = 1.0009765625f + 0.00048828125f; /* exact tie between two halves */
    g->f32_to_f16(x, h1, N);
    k->f32_to_f16(x, h2, N);
    CHECK(memcmp(h1, h2, sizeof h1) == 0, "%s", k->names[ES_K_F32_TO_F16]);
    for (uint32_t i = 0; i < N; i++) h1[i] = (uint16_t)(rng_next(r) & 0xffff);
    for (uint32_t i = 0; i < N; i++)
        if ((h1[i] & 0x7c00) == 0x7c00) h1[i] &= 0xfc00; /* inf, not NaN */
    g->f16_to_f32(h1, y1, N);
    k->f16_to_f32(h1, y2, N);
    CHECK(memcmp(y1, y2, sizeof y1) == 0, "%s", k->names[ES_K_F16_TO_F32]);
    for (int li = 0; li < N_LENGTHS; li++) { /* tails */
        const int32_t n = LENGTHS[li];
        memset(h2, 0, sizeof h2);
        k->f32_to_f16(x + 1, h2, n);
        g->f32_to_f16(x + 1, h1, n);
        CHECK(memcmp(h1, h2, (size_t)n * 2) == 0 && h2[n] == 0, "f32_to_f16 tail n=%d", n);
    }
}

int main(void) {
    test_generic_values();
    const es_kernels *g = es_kernels_for(ES_ISA_GENERIC);
    CHECK(g != NULL, "generic kernels");
    int tested = 0;
    for (int32_t isa = 1; isa < ES_ISA_COUNT; isa++) {
        const es_kernels *k = es_kernels_for(isa);
        if (!k) continue;
        const char *name;
        es_isa_name(isa, &name);
        printf("testing kernel set %s\n", name);
        rng_t r = {0x9E3779B97F4A7C15ULL + (uint64_t)isa};
        test_quantize(k, g, &r);
        test_products(k, g, &r);
        test_float_kernels(k, g, &r);
        test_attention(k, g, &r);
        test_f16(k, g, &r);
        tested++;
    }
    int32_t best;
    es_best_isa(&best);
    const char *bn;
    es_isa_name(best, &bn);
    printf("SIMD kernel sets tested: %d; ES_ISA_AUTO = %s\n", tested, bn);
    return check_report("test_kernels");
}
