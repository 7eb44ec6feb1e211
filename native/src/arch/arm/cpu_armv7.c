/*
 * 32-bit ARM (ARMv7-A, hard float) feature detection: NEON from AT_HWCAP.
 * Only the int8 products use NEON here: ARMv7 Advanced SIMD flushes
 * subnormals to zero, so float kernels stay on the IEEE scalar twins.
 */
#include <sys/auxv.h>

#include "../../kernels.h"

void es_install_neon32(es_kernels *k);

enum { HWCAP_BIT_NEON = 1 << 12 };

uint32_t es_arch_features(void) {
    return (getauxval(AT_HWCAP) & HWCAP_BIT_NEON) ? ES_CPU_NEON : 0;
}

int es_arch_isa_supported(int32_t isa, uint32_t f) {
    return isa == ES_ISA_GENERIC || (isa == ES_ISA_NEON32 && (f & ES_CPU_NEON));
}

int32_t es_arch_best_isa(uint32_t f) {
    return (f & ES_CPU_NEON) ? ES_ISA_NEON32 : ES_ISA_GENERIC;
}

void es_arch_install(int32_t isa, es_kernels *k) {
    if (isa == ES_ISA_NEON32) es_install_neon32(k);
}
