// Neighbour codes: the quantized graph walk's blocks (the layout is in
// lodestone_kernels.h). A node's block holds its neighbours' 1-bit codes
// taken against the node itself, transposed so that one pass of 4-bit
// table lookups (FastScan: Andre et al., VLDB 2015; as SymphonyQG, Gou et
// al. 2024, lays them out per node) estimates all 32 neighbours of a batch.
//
// This file: the layout, the portable C kernels, the public entry points and
// the choice of variant; the AVX2, AVX-512 and NEON kernels are in
// neighbour_codes_avx2.c, neighbour_codes_avx512.c and neighbour_codes_neon.c,
// with what they share in neighbour_codes_internal.h.
#include "neighbour_codes_internal.h"
#include <string.h>

size_t lodestone_qg_groups(size_t d) { return qg_groups(d); }

size_t lodestone_qg_batches(size_t slots) { return qg_batches(slots); }

size_t lodestone_qg_block_bytes(size_t d, size_t slots) { return node_offset(d, slots) + node_bytes(d); }

QG_RACY void lodestone_qg_clear_block(void *block, size_t d, size_t slots) {
    const size_t batches = qg_batches(slots);
    uint32_t *ids = (uint32_t *)block;
    for (size_t i = 0; i < batches * QG_BATCH; i++) lodestone_store_u32(ids + i, UINT32_MAX);
    memset(batch_at(block, d, slots, 0), 0, batches * batch_bytes(d) + node_bytes(d));
    for (size_t b = 0; b < batches; b++) {
        float *a = (float *)(batch_at(block, d, slots, b) + qg_groups(d) * 16);
        for (size_t j = 0; j < QG_BATCH; j++) a[j] = INFINITY;
    }
}

/// Encodes groups [first, groups) of slot `slot` (scalar), adding to the
/// factors' sums: sums[0] |r|_1, [1] |r|^2, [2] <c, s>, [3] <c, r>.
QG_RACY void lodestone_qg_encode_groups(uint8_t *codes, size_t slot, const float *x, const float *c, size_t d,
                                        size_t first, size_t groups, float sums[4]) {
    for (size_t g = first; g < groups; g++) {
        unsigned nibble = 0;
        for (size_t t = 0; t < 4 && 4 * g + t < d; t++) {
            const size_t i = 4 * g + t;
            const float r = x[i] - c[i];
            const int positive = r > 0;
            nibble |= (unsigned)positive << t;
            sums[0] += fabsf(r);
            sums[1] += r * r;
            sums[2] += positive ? c[i] : -c[i];
            sums[3] += c[i] * r;
        }
        put_nibble(codes, slot, g, nibble);
    }
}

QG_RACY static void encode_portable(void *block, size_t d, size_t slots, size_t slot, uint32_t id, const float *x,
                                    const float *c, int euclidean) {
    float sums[4] = {0, 0, 0, 0};
    lodestone_qg_encode_groups(batch_at(block, d, slots, slot / QG_BATCH), slot, x, c, d, 0, qg_groups(d), sums);
    finish_slot(block, d, slots, slot, id, sums[0], sums[1], sums[2], sums[3], euclidean);
}

QG_RACY void lodestone_qg_clear(void *block, size_t d, size_t slots, size_t slot) {
    lodestone_store_u32((uint32_t *)block + slot, UINT32_MAX);
    uint8_t *batch = batch_at(block, d, slots, slot / QG_BATCH);
    const size_t j = slot % QG_BATCH;
    float *a = (float *)(batch + qg_groups(d) * 16);
    a[j] = INFINITY;
    a[QG_BATCH + j] = 0;
}

QG_RACY void lodestone_qg_encode_node(void *block, size_t d, size_t slots, const float *x) {
    int8_t *code = (int8_t *)block + node_offset(d, slots);
    float top = 0, norm = 0;
    for (size_t i = 0; i < d; i++) {
        top = fabsf(x[i]) > top ? fabsf(x[i]) : top;
        norm += x[i] * x[i];
    }
    const float scale = top > 0 ? top / 127.0f : 0;
    const float inverse = top > 0 ? 127.0f / top : 0;
    for (size_t i = 0; i < d; i++) code[i] = (int8_t)lrintf(x[i] * inverse);
    float factors[2] = {scale, norm};
    memcpy(code + d, factors, sizeof factors);
}

QG_RACY static float node_rank_portable(const void *block, size_t d, size_t slots, const float *q, float qq,
                                        int euclidean) {
    const int8_t *code = (const int8_t *)block + node_offset(d, slots);
    float dot = 0;
    for (size_t i = 0; i < d; i++) dot += q[i] * (float)code[i];
    return node_rank(dot, code, d, qq, euclidean);
}

static void prepare_portable(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out) {
    const size_t groups = qg_groups(d);
    float width;
    double sum_q, sum_min;
    prepare_scan(q, d, groups, &width, &sum_q, &sum_min);
    const float delta = width > 0 ? width / 255.0f : 1.0f;
    const float inverse = 1.0f / delta;
    for (size_t g = 0; g < groups; g++) {
        float v[4];
        const float lo = load_group(q, d, g, v);
        // Entry p = sum of v over p's bits, less the group's minimum (so
        // never negative: rounding is +0.5 and truncation), built from the
        // entry without p's highest bit.
        float sums[16];
        sums[0] = 0;
        for (unsigned t = 0; t < 4; t++)
            for (unsigned p = 0; p < (1u << t); p++) sums[p | (1u << t)] = sums[p] + v[t];
        for (unsigned p = 0; p < 16; p++) {
            const float u = (sums[p] - lo) * inverse + 0.5f;
            lut[16 * g + p] = (uint8_t)(u >= 255.0f ? 255 : (u <= 0.0f ? 0 : (int)u));
        }
    }
    // <q, s> = 2 T - sum(q), T = sum of q over set bits ~ delta * U + sum of the groups' minima.
    out->scale = 2.0f * delta;
    out->offset = (float)(2.0 * sum_min - sum_q);
}

// The estimates of one batch from its lookup sums.
static inline uint32_t finish(const uint8_t *batch, size_t groups, const lodestone_qg_query *query, float base,
                              float threshold, const uint32_t *sums, float *out) {
    const float *a = (const float *)(batch + groups * 16);
    const float *b = a + QG_BATCH;
    uint32_t mask = 0;
    for (size_t j = 0; j < QG_BATCH; j++) {
        out[j] = base + a[j] + b[j] * (query->scale * (float)sums[j] + query->offset);
        mask |= (uint32_t)(out[j] < threshold) << j;
    }
    return mask;
}

QG_RACY static void estimate_portable(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                      const lodestone_qg_query *query, float base, float threshold, float *out,
                                      uint32_t *masks) {
    const size_t groups = qg_groups(d);
    for (size_t bi = 0; bi < qg_batches(slots); bi++) {
        const uint8_t *batch = batch_at((void *)block, d, slots, bi);
        uint32_t sums[QG_BATCH] = {0};
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *codes = batch + 16 * g, *table = lut + 16 * g;
            for (size_t j = 0; j < 16; j++) {
                sums[j] += table[codes[j] & 15];
                sums[j + 16] += table[codes[j] >> 4];
            }
        }
        masks[bi] = finish(batch, groups, query, base, threshold, sums, out + bi * QG_BATCH);
    }
}

// The variants, and the one this process uses: chosen once, as the
// distance kernels are (LODESTONE_KERNELS forces one the CPU runs).
static const lodestone_qg_kernels qg_portable = {encode_portable, prepare_portable, estimate_portable,
                                                 node_rank_portable};
#ifdef LODESTONE_X86
static const lodestone_qg_kernels qg_avx2 = {lodestone_qg_encode_avx2, lodestone_qg_prepare_avx2,
                                             lodestone_qg_estimate_avx2, lodestone_qg_node_rank_avx2};
// Encoding (at build time) and tables (once per query) keep the AVX2 code.
static const lodestone_qg_kernels qg_avx512 = {lodestone_qg_encode_avx2, lodestone_qg_prepare_avx2,
                                               lodestone_qg_estimate_avx512, lodestone_qg_node_rank_avx512};
#endif
#ifdef LODESTONE_ARM64
static const lodestone_qg_kernels qg_neon = {encode_portable, prepare_portable, lodestone_qg_estimate_neon,
                                             lodestone_qg_node_rank_neon};
#endif

static const lodestone_qg_kernels *qg_variant(lodestone_isa isa) {
    switch (isa) {
#ifdef LODESTONE_X86
    case LODESTONE_ISA_AVX2_FMA:
        return lodestone_cpu_supports(LODESTONE_ISA_AVX2_FMA) ? &qg_avx2 : NULL;
    case LODESTONE_ISA_AVX512:
        return lodestone_cpu_supports(LODESTONE_ISA_AVX2_FMA) && lodestone_cpu_supports_avx512bw() ? &qg_avx512
                                                                                                  : NULL;
#endif
#ifdef LODESTONE_ARM64
    case LODESTONE_ISA_NEON:
        return &qg_neon;
#endif
    default:
        return NULL;
    }
}

int lodestone_qg_kernels_for(lodestone_isa isa, lodestone_qg_kernels *out) {
    const lodestone_qg_kernels *t = qg_variant(isa);
    if (!t) return 0;
    *out = *t;
    return 1;
}

void lodestone_qg_kernels_portable(lodestone_qg_kernels *out) { *out = qg_portable; }

static const lodestone_qg_kernels *qg_choose(lodestone_isa *isa) {
    const int forced = lodestone_forced_isa();
    if (forced == 0) {
        *isa = 0;
        return &qg_portable;
    }
    const lodestone_qg_kernels *t = forced > 0 ? qg_variant((lodestone_isa)forced) : NULL;
    if (t) {
        *isa = (lodestone_isa)forced;
        return t;
    }
    // AVX-512 first even on AMD cores, unlike the distance kernels: on a
    // Zen 4 EPYC the walk ran faster with it, its block estimates and node
    // ranks being quicker than AVX2's (measurements:
    // docs/design/quantized-walk.md).
    static const lodestone_isa order[] = {LODESTONE_ISA_AVX512, LODESTONE_ISA_AVX2_FMA, LODESTONE_ISA_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        t = qg_variant(order[i]);
        if (t) {
            *isa = order[i];
            return t;
        }
    }
    *isa = 0;
    return &qg_portable;
}

static const lodestone_qg_kernels *qg_active_table;
static int qg_active_isa;

static inline const lodestone_qg_kernels *qg_active(void) {
    const lodestone_qg_kernels *t = __atomic_load_n(&qg_active_table, __ATOMIC_ACQUIRE);
    if (__builtin_expect(t == NULL, 0)) {
        lodestone_isa isa;
        t = qg_choose(&isa);
        __atomic_store_n(&qg_active_isa, (int)isa, __ATOMIC_RELAXED);
        __atomic_store_n(&qg_active_table, t, __ATOMIC_RELEASE);
    }
    return t;
}

int lodestone_qg_active_isa(void) {
    qg_active();
    return __atomic_load_n(&qg_active_isa, __ATOMIC_RELAXED);
}

void lodestone_qg_encode(void *block, size_t d, size_t slots, size_t slot, uint32_t id, const float *x,
                         const float *c, int euclidean) {
    qg_active()->encode(block, d, slots, slot, id, x, c, euclidean);
}

void lodestone_qg_prepare(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out) {
    qg_active()->prepare(q, d, lut, out);
}

void lodestone_qg_estimate(const void *block, size_t d, size_t slots, const uint8_t *lut,
                           const lodestone_qg_query *query, float base, float threshold, float *out,
                           uint32_t *masks) {
    qg_active()->estimate(block, d, slots, lut, query, base, threshold, out, masks);
}

float lodestone_qg_node_rank(const void *block, size_t d, size_t slots, const float *q, float qq, int euclidean) {
    return qg_active()->node_rank(block, d, slots, q, qq, euclidean);
}
