/* Minimal test helpers: checks that count failures, a seeded RNG, ULP distance. */
#ifndef ES_CHECK_H
#define ES_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        g_checks++;                                                           \
        if (!(cond)) {                                                        \
            g_failures++;                                                     \
            if (g_failures <= 30) {                                           \
                fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                 \
                fprintf(stderr, "\n");                                        \
            }                                                                 \
        }                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b) CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

static int check_report(const char *name) {
    printf("%s: %d checks, %d failures\n", name, g_checks, g_failures);
    return g_failures ? 1 : 0;
}

/* xorshift64*: deterministic across platforms. */
typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

/* uniform in [-1, 1) */
static inline float rng_unit(rng_t *r) { return (float)((double)(rng_next(r) >> 11) / 4503599627370496.0) - 1.0f; }

static inline int8_t rng_i8(rng_t *r) { return (int8_t)((int)(rng_next(r) % 255) - 127); }

/* Distance in units in the last place (0 for identical bits or +0/-0). */
static inline int64_t ulp_diff(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = (int32_t)(0x80000000u - (uint32_t)ia);
    if (ib < 0) ib = (int32_t)(0x80000000u - (uint32_t)ib);
    int64_t d = (int64_t)ia - (int64_t)ib;
    return d < 0 ? -d : d;
}

static inline int64_t max_ulp(const float *a, const float *b, size_t n) {
    int64_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t d = ulp_diff(a[i], b[i]);
        if (d > m) m = d;
    }
    return m;
}

static const int32_t LENGTHS[] = {1, 3, 7, 15, 16, 17, 31, 33, 63, 127, 129, 576, 1536};
#define N_LENGTHS ((int)(sizeof LENGTHS / sizeof LENGTHS[0]))

#endif /* ES_CHECK_H */
