// CPU feature detection and kernel-table selection.
#include "kernels_internal.h"
#include <stdlib.h>
#include <strings.h>

#ifdef LODESTONE_X86
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static int x86_supports(lodestone_isa isa) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;  // the OS saves XMM and YMM state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    switch (isa) {
    case LODESTONE_ISA_AVX2_FMA:
        return avx2 && fma;
    case LODESTONE_ISA_AVX512:
        // The OS must also save opmask and ZMM state.
        return avx512f && (xcr0 & 0xE6) == 0xE6;
    default:
        return 0;
    }
}
#endif

int lodestone_cpu_supports(lodestone_isa isa) {
#ifdef LODESTONE_X86
    return x86_supports(isa);
#elif defined(LODESTONE_ARM64)
    return isa == LODESTONE_ISA_NEON;
#else
    (void)isa;
    return 0;
#endif
}

int lodestone_cpu_supports_avx512bw(void) {
#ifdef LODESTONE_X86
    unsigned int a, b, c, d;
    if (!x86_supports(LODESTONE_ISA_AVX512) || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 30) & 1;
#else
    return 0;
#endif
}

int lodestone_cpu_prefers_avx2(void) {
#ifdef LODESTONE_X86
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    // Vendor string in EBX, EDX, ECX: "AuthenticAMD" or "HygonGenuine".
    const int amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
    const int hygon = b == 0x6f677948u && d == 0x6e65476eu && c == 0x656e6975u;
    return amd || hygon;
#else
    return 0;
#endif
}

int lodestone_forced_isa(void) {
    static const struct {
        const char *name;
        int isa;
    } names[] = {{"portable", 0}, {"avx2", LODESTONE_ISA_AVX2_FMA}, {"avx512", LODESTONE_ISA_AVX512},
                 {"neon", LODESTONE_ISA_NEON}};
    const char *forced = getenv("LODESTONE_KERNELS");
    for (size_t i = 0; forced && i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(forced, names[i].name) == 0) return names[i].isa;
    }
    return -1;
}

int lodestone_kernel_table_for(lodestone_isa isa, lodestone_kernel_table *out) {
    if (!lodestone_cpu_supports(isa)) return 0;
    switch (isa) {
#ifdef LODESTONE_X86
    case LODESTONE_ISA_AVX2_FMA:
        lodestone_fill_avx2(out);
        return 1;
    case LODESTONE_ISA_AVX512:
        lodestone_fill_avx512(out);
        return 1;
#endif
#ifdef LODESTONE_ARM64
    case LODESTONE_ISA_NEON:
        lodestone_fill_neon(out);
        return 1;
#endif
    default:
        return 0;
    }
}
