/*
 * aarch64 feature detection from the kernel's hwcaps (getauxval): ASIMD is
 * baseline, ASIMDDP (AT_HWCAP bit 20) enables the dot-product kernels and
 * I8MM (AT_HWCAP2 bit 13) the int8 matrix-multiply prefill. Each kernel file
 * is compiled for exactly the extension it uses, and is installed only when
 * the kernel reports that extension.
 */
#include <sys/auxv.h>

#include "../../kernels.h"

void es_install_neon(es_kernels *k);
void es_install_dotprod(es_kernels *k);
void es_install_i8mm(es_kernels *k);

enum {
    HWCAP_BIT_ASIMD = 1 << 1,
    HWCAP_BIT_ASIMDHP = 1 << 10,
    HWCAP_BIT_ASIMDDP = 1 << 20,
    HWCAP2_BIT_I8MM = 1 << 13,
};

uint32_t es_arch_features(void) {
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    uint32_t f = 0;
    if (hw & HWCAP_BIT_ASIMD) f |= ES_CPU_NEON;
    if (hw & HWCAP_BIT_ASIMDHP) f |= ES_CPU_FP16;
    if (hw & HWCAP_BIT_ASIMDDP) f |= ES_CPU_ASIMDDP;
    if (hw2 & HWCAP2_BIT_I8MM) f |= ES_CPU_I8MM;
    return f;
}

int es_arch_isa_supported(int32_t isa, uint32_t f) {
    switch (isa) {
    case ES_ISA_GENERIC: return 1;
    case ES_ISA_NEON: return (f & ES_CPU_NEON) != 0;
    case ES_ISA_DOTPROD: return (f & (ES_CPU_NEON | ES_CPU_ASIMDDP)) == (ES_CPU_NEON | ES_CPU_ASIMDDP);
    case ES_ISA_I8MM:
        return (f & (ES_CPU_NEON | ES_CPU_ASIMDDP | ES_CPU_I8MM)) == (ES_CPU_NEON | ES_CPU_ASIMDDP | ES_CPU_I8MM);
    default: return 0;
    }
}

int32_t es_arch_best_isa(uint32_t f) {
    if (es_arch_isa_supported(ES_ISA_I8MM, f)) return ES_ISA_I8MM;
    if (es_arch_isa_supported(ES_ISA_DOTPROD, f)) return ES_ISA_DOTPROD;
    if (es_arch_isa_supported(ES_ISA_NEON, f)) return ES_ISA_NEON;
    return ES_ISA_GENERIC;
}

void es_arch_install(int32_t isa, es_kernels *k) {
    if (isa == ES_ISA_NEON || isa == ES_ISA_DOTPROD || isa == ES_ISA_I8MM) es_install_neon(k);
    if (isa == ES_ISA_DOTPROD || isa == ES_ISA_I8MM) es_install_dotprod(k);
    if (isa == ES_ISA_I8MM) es_install_i8mm(k);
}
