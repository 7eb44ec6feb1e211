/* CPUs without arch-specific kernels: only the scalar twins. */
#include "../../kernels.h"

uint32_t es_arch_features(void) { return 0; }

int es_arch_isa_supported(int32_t isa, uint32_t features) {
    (void)features;
    return isa == ES_ISA_GENERIC;
}

int32_t es_arch_best_isa(uint32_t features) {
    (void)features;
    return ES_ISA_GENERIC;
}

void es_arch_install(int32_t isa, es_kernels *k) {
    (void)isa;
    (void)k;
}
