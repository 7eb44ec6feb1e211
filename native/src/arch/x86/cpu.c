/*
 * x86-64 feature detection: cpuid for what the CPU has, xgetbv for what the
 * OS saves on context switch (YMM state for AVX2, ZMM/opmask state for
 * AVX-512). A kernel set is offered only if every instruction its file was
 * compiled for is both present and enabled.
 */
#include <cpuid.h>

#include "../../kernels.h"

void es_install_avx2(es_kernels *k);
void es_install_avx512vnni(es_kernels *k);

static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

uint32_t es_arch_features(void) {
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return 0; /* SSE + AVX state */
    if ((c >> 12) & 1) f |= ES_CPU_FMA;
    if ((c >> 29) & 1) f |= ES_CPU_F16C;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    if ((b >> 5) & 1) f |= ES_CPU_AVX2;
    if ((xcr0 & 0xe0) == 0xe0) { /* opmask, ZMM0-15 upper, ZMM16-31 */
        if ((b >> 16) & 1) f |= ES_CPU_AVX512F;
        if ((b >> 30) & 1) f |= ES_CPU_AVX512BW;
        if ((b >> 31) & 1) f |= ES_CPU_AVX512VL;
        if ((c >> 11) & 1) f |= ES_CPU_AVX512VNNI;
    }
    return f;
}

static const uint32_t NEED_AVX2 = ES_CPU_AVX2 | ES_CPU_FMA | ES_CPU_F16C;
static const uint32_t NEED_AVX512 = ES_CPU_AVX512F | ES_CPU_AVX512BW | ES_CPU_AVX512VL |
                                    ES_CPU_AVX512VNNI;

int es_arch_isa_supported(int32_t isa, uint32_t f) {
    switch (isa) {
    case ES_ISA_GENERIC: return 1;
    case ES_ISA_AVX2: return (f & NEED_AVX2) == NEED_AVX2;
    case ES_ISA_AVX512VNNI: return (f & (NEED_AVX2 | NEED_AVX512)) == (NEED_AVX2 | NEED_AVX512);
    default: return 0;
    }
}

int32_t es_arch_best_isa(uint32_t f) {
    if (es_arch_isa_supported(ES_ISA_AVX512VNNI, f)) return ES_ISA_AVX512VNNI;
    if (es_arch_isa_supported(ES_ISA_AVX2, f)) return ES_ISA_AVX2;
    return ES_ISA_GENERIC;
}

void es_arch_install(int32_t isa, es_kernels *k) {
    if (isa == ES_ISA_AVX2 || isa == ES_ISA_AVX512VNNI) es_install_avx2(k);
    if (isa == ES_ISA_AVX512VNNI) es_install_avx512vnni(k);
}
