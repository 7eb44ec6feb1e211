/*
 * The one place that chooses kernels: one table per ISA, filled once from the
 * CPU features (es_arch_features) on first use. ES_ISA_AUTO resolves to the
 * best ISA the CPU supports, or to the scalar twins if the environment
 * variable EDGE_SDK_FORCE_SCALAR is set to 1.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

typedef struct es_dispatch {
    es_kernels tables[ES_ISA_COUNT];
    int available[ES_ISA_COUNT];
    uint32_t features;
    int32_t best;
} es_dispatch;

static es_dispatch g_dispatch;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void dispatch_init(void) {
    es_dispatch *d = &g_dispatch;
    d->features = es_arch_features();
    for (int32_t isa = 0; isa < ES_ISA_COUNT; isa++) {
        d->available[isa] = isa == ES_ISA_GENERIC || es_arch_isa_supported(isa, d->features);
        if (!d->available[isa]) continue;
        es_install_generic(&d->tables[isa]);
        if (isa != ES_ISA_GENERIC) es_arch_install(isa, &d->tables[isa]);
    }
    const char *force = getenv("EDGE_SDK_FORCE_SCALAR");
    d->best = (force && strcmp(force, "1") == 0) ? ES_ISA_GENERIC : es_arch_best_isa(d->features);
}

static const es_dispatch *dispatch(void) {
    pthread_once(&g_once, dispatch_init);
    return &g_dispatch;
}

const es_kernels *es_kernels_for(int32_t isa) {
    const es_dispatch *d = dispatch();
    if (isa == ES_ISA_AUTO) isa = d->best;
    if (isa < 0 || isa >= ES_ISA_COUNT || !d->available[isa]) return NULL;
    return &d->tables[isa];
}

int es_cpu_features(uint32_t *out) {
    if (!out) return ES_ERR_NULL;
    *out = dispatch()->features;
    return ES_OK;
}

int es_isa_supported(int32_t isa, int32_t *out) {
    if (!out) return ES_ERR_NULL;
    if (isa < 0 || isa >= ES_ISA_COUNT) return ES_ERR_ARG;
    *out = dispatch()->available[isa];
    return ES_OK;
}

int es_best_isa(int32_t *out) {
    if (!out) return ES_ERR_NULL;
    *out = dispatch()->best;
    return ES_OK;
}

int es_isa_name(int32_t isa, const char **out) {
    static const char *const names[ES_ISA_COUNT] = {
        "generic", "avx2", "avx512vnni", "neon", "dotprod", "i8mm", "neon32",
    };
    if (!out) return ES_ERR_NULL;
    if (isa == ES_ISA_AUTO) isa = dispatch()->best;
    if (isa < 0 || isa >= ES_ISA_COUNT) return ES_ERR_ARG;
    *out = names[isa];
    return ES_OK;
}

int es_kernel_names(int32_t isa, const char **names, int32_t n_names) {
    if (!names) return ES_ERR_NULL;
    if (n_names < 0 || n_names > ES_K_COUNT) return ES_ERR_ARG;
    const es_kernels *k = es_kernels_for(isa);
    if (!k) return isa >= ES_ISA_AUTO && isa < ES_ISA_COUNT ? ES_ERR_UNSUPPORTED : ES_ERR_ARG;
    for (int32_t i = 0; i < n_names; i++) names[i] = k->names[i];
    return ES_OK;
}

int es_abi_version(uint32_t *out) {
    if (!out) return ES_ERR_NULL;
    *out = ES_ABI_VERSION;
    return ES_OK;
}
