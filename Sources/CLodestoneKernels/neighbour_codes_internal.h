// Shared by the neighbour-code files: neighbour_codes.c (the block layout,
// the portable kernels, the public entry points and the choice of variant)
// and the per-ISA kernels in neighbour_codes_avx2.c, neighbour_codes_avx512.c
// and neighbour_codes_neon.c. Internal: not part of lodestone_kernels.h.
#ifndef LODESTONE_NEIGHBOUR_CODES_INTERNAL_H
#define LODESTONE_NEIGHBOUR_CODES_INTERNAL_H
#include "kernels_internal.h"
#include <string.h>

#define QG_BATCH 32

/// Groups whose lookup sums still fit 16 bits (a table entry is at most
/// 255, and 256 * 255 < 65,536): the SIMD kernels sum a chunk of this many
/// groups in 16-bit lanes, then widen to 32 bits, so no dimension wraps.
#define QG_CHUNK 256

// Blocks are read by searches while the writer re-encodes slots in place
// (a torn slot only spoils one estimate, never an id: ids are atomic), so
// the kernels that touch them are not instrumented by ThreadSanitizer.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define QG_RACY __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef QG_RACY
#define QG_RACY
#endif

/// The functions one file defines for the others: kept out of the library's
/// exported symbols, and called directly (not through the PLT).
#define QG_INTERNAL __attribute__((visibility("hidden")))

/// `lodestone_qg_groups` and `lodestone_qg_batches`, inline: every file's
/// kernels use them in their loops.
static inline size_t qg_groups(size_t d) { return (((d + 3) / 4) + 1) & ~(size_t)1; }

static inline size_t qg_batches(size_t slots) { return (slots + QG_BATCH - 1) / QG_BATCH; }

static inline size_t batch_bytes(size_t d) { return qg_groups(d) * 16 + 2 * QG_BATCH * sizeof(float); }

/// Where the node's own code starts: after the ids and the batches.
static inline size_t node_offset(size_t d, size_t slots) {
    const size_t batches = qg_batches(slots);
    return batches * QG_BATCH * sizeof(uint32_t) + batches * batch_bytes(d);
}

/// Bytes of the node's own code: d int8 components, then its scale and
/// |x|^2, rounded up to whole cache lines.
static inline size_t node_bytes(size_t d) { return (d + 2 * sizeof(float) + 63) & ~(size_t)63; }

static inline uint8_t *batch_at(void *block, size_t d, size_t slots, size_t b) {
    return (uint8_t *)block + qg_batches(slots) * QG_BATCH * sizeof(uint32_t) + b * batch_bytes(d);
}

/// Writes slot `j`'s factors and id once its bits are in place: from
/// l1 = |r|_1, l2 = |r|^2, cs = <c, s>, cr = <c, r>.
QG_RACY static inline void finish_slot(void *block, size_t d, size_t slots, size_t slot, uint32_t id, float l1,
                                       float l2, float cs, float cr, int euclidean) {
    uint8_t *batch = batch_at(block, d, slots, slot / QG_BATCH);
    const size_t j = slot % QG_BATCH;
    // <q - c, r> ~ f <q - c, s> (s the signs, f = |r|^2 / |r|_1: RaBitQ's
    // 1-bit estimator without a rotation); then, from the node's exact
    // rank value, euclidean: |q-x|^2 = |q-c|^2 + |r|^2 - 2 <q-c, r>;
    // inner product: -<q, x> = -<q, c> - <q-c, r> - <c, r>.
    const float f = l1 > 0 ? l2 / l1 : 0;
    float *a = (float *)(batch + qg_groups(d) * 16);
    float *b = a + QG_BATCH;
    a[j] = euclidean ? l2 + 2 * f * cs : f * cs - cr;
    b[j] = euclidean ? -2 * f : -f;
    lodestone_store_u32((uint32_t *)block + slot, id);
}

/// Sets slot `slot`'s 4 bits of group `g` in a batch's codes.
QG_RACY static inline void put_nibble(uint8_t *codes, size_t slot, size_t g, unsigned nibble) {
    uint8_t *byte = codes + 16 * g + (slot & 15);
    *byte = slot % QG_BATCH >= 16 ? (uint8_t)((*byte & 0x0f) | (nibble << 4)) : (uint8_t)((*byte & 0xf0) | nibble);
}

/// The scalar encoding of groups [first, groups) (in neighbour_codes.c): the
/// portable encoder, and the AVX2 one past a multiple of 8 components. Not
/// inline: inlined into the AVX2 encoder its sums would be compiled with FMA
/// (r * r and c * r added in one rounding), and its tail would no longer
/// encode as the portable code does.
QG_RACY QG_INTERNAL void lodestone_qg_encode_groups(uint8_t *codes, size_t slot, const float *x, const float *c,
                                                    size_t d, size_t first, size_t groups, float sums[4]);

/// The rank value from <q, x'> (x' the decoded code) and the code's factors.
static inline float node_rank(float dot, const int8_t *code, size_t d, float qq, int euclidean) {
    float factors[2];
    memcpy(factors, code + d, sizeof factors);
    return euclidean ? qq + factors[1] - 2 * factors[0] * dot : -factors[0] * dot;
}

/// The first pass of a table: the widest group's range (sum of its positive
/// components less its negative ones), sum(q) and the sum of the groups'
/// minima (their negative components).
static inline void prepare_scan(const float *q, size_t d, size_t groups, float *width, double *sum_q, double *sum_min) {
    *width = 0;
    *sum_q = 0;
    *sum_min = 0;
    for (size_t g = 0; g < groups; g++) {
        float lo = 0, hi = 0;
        for (size_t t = 0; t < 4 && 4 * g + t < d; t++) {
            const float v = q[4 * g + t];
            if (v < 0) lo += v; else hi += v;
            *sum_q += v;
        }
        *width = hi - lo > *width ? hi - lo : *width;
        *sum_min += lo;
    }
}

/// Group g's four components (zero past d) into v; returns its minimum sum.
static inline float load_group(const float *q, size_t d, size_t g, float v[4]) {
    float lo = 0;
    for (size_t t = 0; t < 4; t++) {
        v[t] = 4 * g + t < d ? q[4 * g + t] : 0;
        if (v[t] < 0) lo += v[t];
    }
    return lo;
}

// The variants of the other files (neighbour_codes.c puts them in its tables).
#ifdef LODESTONE_X86
QG_INTERNAL void lodestone_qg_encode_avx2(void *block, size_t d, size_t slots, size_t slot, uint32_t id, const float *x,
                                          const float *c, int euclidean);
QG_INTERNAL void lodestone_qg_prepare_avx2(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out);
QG_INTERNAL void lodestone_qg_estimate_avx2(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                            const lodestone_qg_query *query, float base, float threshold, float *out,
                                            uint32_t *masks);
QG_INTERNAL float lodestone_qg_node_rank_avx2(const void *block, size_t d, size_t slots, const float *q, float qq,
                                              int euclidean);
QG_INTERNAL void lodestone_qg_estimate_avx512(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                              const lodestone_qg_query *query, float base, float threshold,
                                              float *out, uint32_t *masks);
QG_INTERNAL float lodestone_qg_node_rank_avx512(const void *block, size_t d, size_t slots, const float *q, float qq,
                                                int euclidean);
#endif
#ifdef LODESTONE_ARM64
QG_INTERNAL void lodestone_qg_estimate_neon(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                            const lodestone_qg_query *query, float base, float threshold, float *out,
                                            uint32_t *masks);
QG_INTERNAL float lodestone_qg_node_rank_neon(const void *block, size_t d, size_t slots, const float *q, float qq,
                                              int euclidean);
#endif

#endif
