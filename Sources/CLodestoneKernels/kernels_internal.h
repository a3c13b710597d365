// Declarations shared by the per-ISA kernel files and the dispatcher.
#ifndef LODESTONE_KERNELS_INTERNAL_H
#define LODESTONE_KERNELS_INTERNAL_H
#include "include/lodestone_kernels.h"
#include <math.h>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define LODESTONE_X86 1
void lodestone_fill_avx2(lodestone_kernel_table *t);
void lodestone_fill_avx512(lodestone_kernel_table *t);
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
#define LODESTONE_ARM64 1
void lodestone_fill_neon(lodestone_kernel_table *t);
#endif

/// Cosine distance from a dot product and the two squared norms, shared by
/// every ISA so that all variants agree on the final step.
static inline float lodestone_cosine_from_parts(float dot, float na, float nb) {
    if (na <= 0.0f || nb <= 0.0f) return 1.0f;
    return 1.0f - (float)((double)dot / sqrt((double)na * (double)nb));
}

/// A sign code's rank value from its weighted count (the query's 4-bit
/// values summed over the code's set bits) and its record's numbers: one
/// expression for every sign-code kernel, record or packed, so that they
/// agree to the bit (see lodestone_kernels.h).
static inline float lodestone_sign_value(float factor, float cdot, float norm2, float ones, float weighted,
                                         float lo2, float delta2, float bias, int euclidean) {
    const float dot = factor * (lo2 * ones + delta2 * weighted - bias) + cdot;
    return euclidean ? norm2 - 2.0f * dot : -dot;
}

/// What the sign-code kernels, record and packed, run on (sign_codes.c):
/// 2 with AVX2 and popcnt, 1 with popcnt only, 0 portable C; the CPU is
/// asked once.
int lodestone_sign_level(void);

/// Rows ahead of the one being scored that a gather kernel pulls into L1.
#define LODESTONE_GATHER_AHEAD 2

/// Defines a gather kernel from a pair kernel body `core` (which must be the
/// same inline function the pair kernel uses, for bit-identical results).
///
/// Prefetching: every row's lines are requested at once with a far hint
/// (prefetcht2), then each row is pulled into L1 two rows ahead. Many
/// outstanding far requests overlap the DRAM latency of all the rows, and
/// the near ones keep L1 from being flooded (measurements:
/// docs/design/quantized-walk.md).
#define LODESTONE_DEFINE_GATHER(attr, name, core)                                          \
    attr static void name(const float *q, const float *const *rows, size_t n, size_t d,     \
                          float *out) {                                                     \
        const size_t bytes = d * sizeof(float);                                             \
        for (size_t i = 0; i < n; i++) {                                                    \
            const char *c = (const char *)rows[i];                                          \
            for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 1); \
        }                                                                                   \
        for (size_t i = 0; i < n && i < LODESTONE_GATHER_AHEAD; i++)                        \
            lodestone_prefetch_bytes(rows[i], bytes);                                       \
        for (size_t i = 0; i < n; i++) {                                                    \
            if (i + LODESTONE_GATHER_AHEAD < n)                                             \
                lodestone_prefetch_bytes(rows[i + LODESTONE_GATHER_AHEAD], bytes);          \
            out[i] = core(q, rows[i], d);                                                   \
        }                                                                                   \
    }

#endif
