// Neighbour codes: the quantized graph walk's blocks (the layout is in
// lodestone_kernels.h). A node's block holds its neighbours' 1-bit codes
// taken against the node itself, transposed so that one pass of 4-bit
// table lookups (FastScan: Andre et al., VLDB 2015; as SymphonyQG, Gou et
// al. 2024, lays them out per node) estimates all 32 neighbours of a batch.
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

size_t lodestone_qg_groups(size_t d) { return (((d + 3) / 4) + 1) & ~(size_t)1; }

size_t lodestone_qg_batches(size_t slots) { return (slots + QG_BATCH - 1) / QG_BATCH; }

static size_t batch_bytes(size_t d) { return lodestone_qg_groups(d) * 16 + 2 * QG_BATCH * sizeof(float); }

/// Where the node's own code starts: after the ids and the batches.
static size_t node_offset(size_t d, size_t slots) {
    const size_t batches = lodestone_qg_batches(slots);
    return batches * QG_BATCH * sizeof(uint32_t) + batches * batch_bytes(d);
}

/// Bytes of the node's own code: d int8 components, then its scale and
/// |x|^2, rounded up to whole cache lines.
static size_t node_bytes(size_t d) { return (d + 2 * sizeof(float) + 63) & ~(size_t)63; }

size_t lodestone_qg_block_bytes(size_t d, size_t slots) { return node_offset(d, slots) + node_bytes(d); }

static uint8_t *batch_at(void *block, size_t d, size_t slots, size_t b) {
    return (uint8_t *)block + lodestone_qg_batches(slots) * QG_BATCH * sizeof(uint32_t) + b * batch_bytes(d);
}

QG_RACY void lodestone_qg_clear_block(void *block, size_t d, size_t slots) {
    const size_t batches = lodestone_qg_batches(slots);
    uint32_t *ids = (uint32_t *)block;
    for (size_t i = 0; i < batches * QG_BATCH; i++) lodestone_store_u32(ids + i, UINT32_MAX);
    memset(batch_at(block, d, slots, 0), 0, batches * batch_bytes(d) + node_bytes(d));
    for (size_t b = 0; b < batches; b++) {
        float *a = (float *)(batch_at(block, d, slots, b) + lodestone_qg_groups(d) * 16);
        for (size_t j = 0; j < QG_BATCH; j++) a[j] = INFINITY;
    }
}

/// Writes slot `j`'s factors and id once its bits are in place: from
/// l1 = |r|_1, l2 = |r|^2, cs = <c, s>, cr = <c, r>.
QG_RACY static void finish_slot(void *block, size_t d, size_t slots, size_t slot, uint32_t id, float l1, float l2,
                                float cs, float cr, int euclidean) {
    uint8_t *batch = batch_at(block, d, slots, slot / QG_BATCH);
    const size_t j = slot % QG_BATCH;
    // <q - c, r> ~ f <q - c, s> (s the signs, f = |r|^2 / |r|_1: RaBitQ's
    // 1-bit estimator without a rotation); then, from the node's exact
    // rank value, euclidean: |q-x|^2 = |q-c|^2 + |r|^2 - 2 <q-c, r>;
    // inner product: -<q, x> = -<q, c> - <q-c, r> - <c, r>.
    const float f = l1 > 0 ? l2 / l1 : 0;
    float *a = (float *)(batch + lodestone_qg_groups(d) * 16);
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

/// Encodes groups [first, groups) of slot `slot` (scalar), adding to the
/// factors' sums: sums[0] |r|_1, [1] |r|^2, [2] <c, s>, [3] <c, r>.
QG_RACY static void encode_groups(uint8_t *codes, size_t slot, const float *x, const float *c, size_t d,
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
    encode_groups(batch_at(block, d, slots, slot / QG_BATCH), slot, x, c, d, 0, lodestone_qg_groups(d), sums);
    finish_slot(block, d, slots, slot, id, sums[0], sums[1], sums[2], sums[3], euclidean);
}

QG_RACY void lodestone_qg_clear(void *block, size_t d, size_t slots, size_t slot) {
    lodestone_store_u32((uint32_t *)block + slot, UINT32_MAX);
    uint8_t *batch = batch_at(block, d, slots, slot / QG_BATCH);
    const size_t j = slot % QG_BATCH;
    float *a = (float *)(batch + lodestone_qg_groups(d) * 16);
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

/// The rank value from <q, x'> (x' the decoded code) and the code's factors.
static inline float node_rank(float dot, const int8_t *code, size_t d, float qq, int euclidean) {
    float factors[2];
    memcpy(factors, code + d, sizeof factors);
    return euclidean ? qq + factors[1] - 2 * factors[0] * dot : -factors[0] * dot;
}

QG_RACY static float node_rank_portable(const void *block, size_t d, size_t slots, const float *q, float qq,
                                        int euclidean) {
    const int8_t *code = (const int8_t *)block + node_offset(d, slots);
    float dot = 0;
    for (size_t i = 0; i < d; i++) dot += q[i] * (float)code[i];
    return node_rank(dot, code, d, qq, euclidean);
}

/// The first pass of a table: the widest group's range (sum of its positive
/// components less its negative ones), sum(q) and the sum of the groups'
/// minima (their negative components).
static void prepare_scan(const float *q, size_t d, size_t groups, float *width, double *sum_q, double *sum_min) {
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

static void prepare_portable(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out) {
    const size_t groups = lodestone_qg_groups(d);
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
    const size_t groups = lodestone_qg_groups(d);
    for (size_t bi = 0; bi < lodestone_qg_batches(slots); bi++) {
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

#ifdef LODESTONE_X86
#include <immintrin.h>

// Two groups per 256-bit step: the low lane holds group g's 16 code bytes
// and table, the high lane group g+1's. vpshufb looks up slots 0-15 (low
// nibbles) and 16-31 (high nibbles); the bytes are summed in 16-bit lanes
// as even + 256 * odd plus the odd bytes alone, and separated at the end.
#define AVX2_QG __attribute__((target("avx2,fma")))

AVX2_QG QG_RACY static void estimate_avx2(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                          const lodestone_qg_query *query, float base, float threshold, float *out,
                                          uint32_t *masks) {
    const size_t groups = lodestone_qg_groups(d);
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t bi = 0; bi < lodestone_qg_batches(slots); bi++) {
        const uint8_t *batch = batch_at((void *)block, d, slots, bi);
        // Slots 8 part .. 8 part + 7's sums, widened to 32 bits per chunk.
        __m256i total[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256()};
        for (size_t first = 0; first < groups; first += QG_CHUNK) {
            const size_t end = groups - first > QG_CHUNK ? first + QG_CHUNK : groups;
            __m256i lo_even = _mm256_setzero_si256(), lo_odd = lo_even, hi_even = lo_even, hi_odd = lo_even;
            for (size_t g = first; g < end; g += 2) {
                const __m256i codes = _mm256_loadu_si256((const __m256i *)(batch + 16 * g));
                const __m256i table = _mm256_loadu_si256((const __m256i *)(lut + 16 * g));
                const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(codes, low));
                const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(codes, 4), low));
                lo_even = _mm256_add_epi16(lo_even, lo);
                lo_odd = _mm256_add_epi16(lo_odd, _mm256_srli_epi16(lo, 8));
                hi_even = _mm256_add_epi16(hi_even, hi);
                hi_odd = _mm256_add_epi16(hi_odd, _mm256_srli_epi16(hi, 8));
            }
            lo_even = _mm256_sub_epi16(lo_even, _mm256_slli_epi16(lo_odd, 8));
            hi_even = _mm256_sub_epi16(hi_even, _mm256_slli_epi16(hi_odd, 8));
            // Fold the lanes (even and odd groups), then interleave even and odd slots.
            const __m128i le = _mm_add_epi16(_mm256_castsi256_si128(lo_even), _mm256_extracti128_si256(lo_even, 1));
            const __m128i lodd = _mm_add_epi16(_mm256_castsi256_si128(lo_odd), _mm256_extracti128_si256(lo_odd, 1));
            const __m128i he = _mm_add_epi16(_mm256_castsi256_si128(hi_even), _mm256_extracti128_si256(hi_even, 1));
            const __m128i hodd = _mm_add_epi16(_mm256_castsi256_si128(hi_odd), _mm256_extracti128_si256(hi_odd, 1));
            const __m128i s[4] = {_mm_unpacklo_epi16(le, lodd), _mm_unpackhi_epi16(le, lodd),
                                  _mm_unpacklo_epi16(he, hodd), _mm_unpackhi_epi16(he, hodd)};
            for (int part = 0; part < 4; part++)
                total[part] = _mm256_add_epi32(total[part], _mm256_cvtepu16_epi32(s[part]));
        }
        const float *a = (const float *)(batch + groups * 16);
        const float *b = a + QG_BATCH;
        const __m256 scale = _mm256_set1_ps(query->scale), offset = _mm256_set1_ps(query->offset);
        const __m256 basev = _mm256_set1_ps(base), limit = _mm256_set1_ps(threshold);
        float *o = out + bi * QG_BATCH;
        uint32_t mask = 0;
        for (int part = 0; part < 4; part++) {
            const __m256 dot = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(total[part]), offset);
            const __m256 est = _mm256_fmadd_ps(_mm256_loadu_ps(b + 8 * part), dot,
                                               _mm256_add_ps(basev, _mm256_loadu_ps(a + 8 * part)));
            _mm256_storeu_ps(o + 8 * part, est);
            mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(est, limit, _CMP_LT_OQ)) << (8 * part);
        }
        masks[bi] = mask;
    }
}

AVX2_QG QG_RACY static float node_rank_avx2(const void *block, size_t d, size_t slots, const float *q, float qq,
                                            int euclidean) {
    const int8_t *code = (const int8_t *)block + node_offset(d, slots);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        const __m128i c = _mm_loadu_si128((const __m128i *)(code + i));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8),
                             _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c, 8))), s1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(s0, s1));
    float dot = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (; i < d; i++) dot += q[i] * (float)code[i];
    return node_rank(dot, code, d, qq, euclidean);
}

// Eight components at a time: their signs (a movemask, two groups' nibbles)
// and the sums the factors need; the tail past a multiple of 8 is scalar.
AVX2_QG QG_RACY static void encode_avx2(void *block, size_t d, size_t slots, size_t slot, uint32_t id,
                                        const float *x, const float *c, int euclidean) {
    const size_t groups = lodestone_qg_groups(d);
    uint8_t *codes = batch_at(block, d, slots, slot / QG_BATCH);
    const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
    __m256 l1 = zero, l2 = zero, cs = zero, cr = zero;
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 cv = _mm256_loadu_ps(c + i);
        const __m256 r = _mm256_sub_ps(_mm256_loadu_ps(x + i), cv);
        const __m256 positive = _mm256_cmp_ps(r, zero, _CMP_GT_OQ);
        const unsigned bits = (unsigned)_mm256_movemask_ps(positive);
        put_nibble(codes, slot, i / 4, bits & 15);
        put_nibble(codes, slot, i / 4 + 1, bits >> 4);
        l1 = _mm256_add_ps(l1, _mm256_andnot_ps(sign, r));
        l2 = _mm256_fmadd_ps(r, r, l2);
        // +c where r > 0, -c elsewhere: flip c's sign bit outside the mask.
        cs = _mm256_add_ps(cs, _mm256_xor_ps(cv, _mm256_andnot_ps(positive, sign)));
        cr = _mm256_fmadd_ps(cv, r, cr);
    }
    float lanes[4][8];
    _mm256_storeu_ps(lanes[0], l1);
    _mm256_storeu_ps(lanes[1], l2);
    _mm256_storeu_ps(lanes[2], cs);
    _mm256_storeu_ps(lanes[3], cr);
    float sums[4] = {0, 0, 0, 0};
    for (int f = 0; f < 4; f++)
        for (int k = 0; k < 8; k++) sums[f] += lanes[f][k];
    encode_groups(codes, slot, x, c, d, i / 4, groups, sums);
    finish_slot(block, d, slots, slot, id, sums[0], sums[1], sums[2], sums[3], euclidean);
}

// The lookup table one group at a time: entries 0-7 are the
// subset sums of the group's first three components (a constant 0/1 mask
// per component), entries 8-15 the same plus the fourth; quantized with
// the scalar pass's step and packed to bytes.
AVX2_QG static void prepare_avx2(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out) {
    const size_t groups = lodestone_qg_groups(d);
    float width;
    double sum_q, sum_min;
    prepare_scan(q, d, groups, &width, &sum_q, &sum_min);
    const float delta = width > 0 ? width / 255.0f : 1.0f;
    const __m256 inverse = _mm256_set1_ps(1.0f / delta), half = _mm256_set1_ps(0.5f);
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    const __m256 m0 = _mm256_setr_ps(0, 1, 0, 1, 0, 1, 0, 1), m1 = _mm256_setr_ps(0, 0, 1, 1, 0, 0, 1, 1);
    const __m256 m2 = _mm256_setr_ps(0, 0, 0, 0, 1, 1, 1, 1);
    for (size_t g = 0; g < groups; g++) {
        float v[4];
        const float lo = load_group(q, d, g, v);
        const __m256 low = _mm256_fmadd_ps(_mm256_set1_ps(v[0]), m0,
                                           _mm256_fmadd_ps(_mm256_set1_ps(v[1]), m1, _mm256_mul_ps(_mm256_set1_ps(v[2]), m2)));
        const __m256 high = _mm256_add_ps(low, _mm256_set1_ps(v[3]));
        const __m256 shift = _mm256_set1_ps(lo);
        // (s - lo) / delta + 0.5, clamped to [0, 255], truncated: the
        // portable rounding.
        const __m256 ql = _mm256_min_ps(top, _mm256_max_ps(zero, _mm256_fmadd_ps(_mm256_sub_ps(low, shift), inverse, half)));
        const __m256 qh = _mm256_min_ps(top, _mm256_max_ps(zero, _mm256_fmadd_ps(_mm256_sub_ps(high, shift), inverse, half)));
        const __m256i il = _mm256_cvttps_epi32(ql), ih = _mm256_cvttps_epi32(qh);
        // int32 x 16 -> uint16 -> uint8, restoring order across the lanes.
        const __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(il, ih), 0xD8);
        const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
        _mm_storeu_si128((__m128i *)(lut + 16 * g), bytes);
    }
    out->scale = 2.0f * delta;
    out->offset = (float)(2.0 * sum_min - sum_q);
}
#endif

#ifdef LODESTONE_X86
// AVX-512 (F and BW): four groups per 512-bit step, the AVX2 kernel's
// scheme on four 128-bit lanes; a final pair of groups is loaded into the
// low half (the high half zero: an all-zero table looks up zeros). The
// estimates of 16 slots at a time, compared straight into a mask register.
// Per lane a chunk's sums stay below 64 * 255, and the four lanes' below
// 65,536.
#define AVX512_QG __attribute__((target("avx512f,avx512bw")))

AVX512_QG QG_RACY static void estimate_avx512(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                              const lodestone_qg_query *query, float base, float threshold,
                                              float *out, uint32_t *masks) {
    const size_t groups = lodestone_qg_groups(d);
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (size_t bi = 0; bi < lodestone_qg_batches(slots); bi++) {
        const uint8_t *batch = batch_at((void *)block, d, slots, bi);
        // Slots 0-15's and 16-31's sums, widened to 32 bits per chunk.
        __m512i total[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (size_t first = 0; first < groups; first += QG_CHUNK) {
            const size_t end = groups - first > QG_CHUNK ? first + QG_CHUNK : groups;
            __m512i lo_even = _mm512_setzero_si512(), lo_odd = lo_even, hi_even = lo_even, hi_odd = lo_even;
            for (size_t g = first; g < end; g += 4) {
                __m512i codes, table;
                if (end - g >= 4) {
                    codes = _mm512_loadu_si512(batch + 16 * g);
                    table = _mm512_loadu_si512(lut + 16 * g);
                } else {  // groups come in pairs: the last step may have two
                    codes = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(batch + 16 * g)));
                    table = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(lut + 16 * g)));
                }
                const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(codes, low));
                const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(codes, 4), low));
                lo_even = _mm512_add_epi16(lo_even, lo);
                lo_odd = _mm512_add_epi16(lo_odd, _mm512_srli_epi16(lo, 8));
                hi_even = _mm512_add_epi16(hi_even, hi);
                hi_odd = _mm512_add_epi16(hi_odd, _mm512_srli_epi16(hi, 8));
            }
            lo_even = _mm512_sub_epi16(lo_even, _mm512_slli_epi16(lo_odd, 8));
            hi_even = _mm512_sub_epi16(hi_even, _mm512_slli_epi16(hi_odd, 8));
            // Fold the four lanes, then interleave even and odd slots.
            const __m256i le2 = _mm256_add_epi16(_mm512_castsi512_si256(lo_even), _mm512_extracti64x4_epi64(lo_even, 1));
            const __m256i lo2 = _mm256_add_epi16(_mm512_castsi512_si256(lo_odd), _mm512_extracti64x4_epi64(lo_odd, 1));
            const __m256i he2 = _mm256_add_epi16(_mm512_castsi512_si256(hi_even), _mm512_extracti64x4_epi64(hi_even, 1));
            const __m256i ho2 = _mm256_add_epi16(_mm512_castsi512_si256(hi_odd), _mm512_extracti64x4_epi64(hi_odd, 1));
            const __m128i le = _mm_add_epi16(_mm256_castsi256_si128(le2), _mm256_extracti128_si256(le2, 1));
            const __m128i lodd = _mm_add_epi16(_mm256_castsi256_si128(lo2), _mm256_extracti128_si256(lo2, 1));
            const __m128i he = _mm_add_epi16(_mm256_castsi256_si128(he2), _mm256_extracti128_si256(he2, 1));
            const __m128i hodd = _mm_add_epi16(_mm256_castsi256_si128(ho2), _mm256_extracti128_si256(ho2, 1));
            const __m256i s0 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(le, lodd)),
                                                       _mm_unpackhi_epi16(le, lodd), 1);
            const __m256i s1 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(he, hodd)),
                                                       _mm_unpackhi_epi16(he, hodd), 1);
            total[0] = _mm512_add_epi32(total[0], _mm512_cvtepu16_epi32(s0));
            total[1] = _mm512_add_epi32(total[1], _mm512_cvtepu16_epi32(s1));
        }
        const float *a = (const float *)(batch + groups * 16);
        const float *b = a + QG_BATCH;
        const __m512 scale = _mm512_set1_ps(query->scale), offset = _mm512_set1_ps(query->offset);
        const __m512 basev = _mm512_set1_ps(base), limit = _mm512_set1_ps(threshold);
        float *o = out + bi * QG_BATCH;
        uint32_t mask = 0;
        for (int part = 0; part < 2; part++) {
            const __m512 dot = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(total[part]), offset);
            const __m512 est = _mm512_fmadd_ps(_mm512_loadu_ps(b + 16 * part), dot,
                                               _mm512_add_ps(basev, _mm512_loadu_ps(a + 16 * part)));
            _mm512_storeu_ps(o + 16 * part, est);
            mask |= (uint32_t)_mm512_cmp_ps_mask(est, limit, _CMP_LT_OQ) << (16 * part);
        }
        masks[bi] = mask;
    }
}

AVX512_QG QG_RACY static float node_rank_avx512(const void *block, size_t d, size_t slots, const float *q,
                                                float qq, int euclidean) {
    const int8_t *code = (const int8_t *)block + node_offset(d, slots);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(code + i));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(c))), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16),
                             _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(c, 1))), s1);
    }
    if (i < d) {
        // The last 1-31 components, masked (16 at a time).
        for (; i < d; i += 16) {
            const __mmask16 m = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1u);
            const __m128i c = _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)m, code + i));
            s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c)), s0);
        }
    }
    return node_rank(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), code, d, qq, euclidean);
}
#endif

#ifdef LODESTONE_ARM64
#include <arm_neon.h>

// NEON: one group per step, its 16 code bytes looked up twice (low and
// high nibbles: slots 0-15 and 16-31) with tbl, the bytes summed in 16-bit
// lanes by widening adds, widened to 32 bits per chunk of groups.
QG_RACY static void estimate_neon(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                  const lodestone_qg_query *query, float base, float threshold, float *out,
                                  uint32_t *masks) {
    const size_t groups = lodestone_qg_groups(d);
    const uint8x16_t low = vdupq_n_u8(0x0f);
    const uint32x4_t bit = {1, 2, 4, 8};
    for (size_t bi = 0; bi < lodestone_qg_batches(slots); bi++) {
        const uint8_t *batch = batch_at((void *)block, d, slots, bi);
        // total[k]: slots 4k .. 4k + 3.
        uint32x4_t total[8];
        for (int k = 0; k < 8; k++) total[k] = vdupq_n_u32(0);
        for (size_t first = 0; first < groups; first += QG_CHUNK) {
            const size_t end = groups - first > QG_CHUNK ? first + QG_CHUNK : groups;
            // Slots 0-7, 8-15, 16-23, 24-31.
            uint16x8_t s[4] = {vdupq_n_u16(0), vdupq_n_u16(0), vdupq_n_u16(0), vdupq_n_u16(0)};
            for (size_t g = first; g < end; g++) {
                const uint8x16_t codes = vld1q_u8(batch + 16 * g), table = vld1q_u8(lut + 16 * g);
                const uint8x16_t lo = vqtbl1q_u8(table, vandq_u8(codes, low));
                const uint8x16_t hi = vqtbl1q_u8(table, vshrq_n_u8(codes, 4));
                s[0] = vaddw_u8(s[0], vget_low_u8(lo));
                s[1] = vaddw_high_u8(s[1], lo);
                s[2] = vaddw_u8(s[2], vget_low_u8(hi));
                s[3] = vaddw_high_u8(s[3], hi);
            }
            for (int part = 0; part < 4; part++) {
                total[2 * part] = vaddw_u16(total[2 * part], vget_low_u16(s[part]));
                total[2 * part + 1] = vaddw_high_u16(total[2 * part + 1], s[part]);
            }
        }
        const float *a = (const float *)(batch + groups * 16);
        const float *b = a + QG_BATCH;
        const float32x4_t scale = vdupq_n_f32(query->scale), offset = vdupq_n_f32(query->offset);
        const float32x4_t basev = vdupq_n_f32(base), limit = vdupq_n_f32(threshold);
        float *o = out + bi * QG_BATCH;
        uint32_t mask = 0;
        for (int k = 0; k < 8; k++) {
            const float32x4_t dot = vfmaq_f32(offset, scale, vcvtq_f32_u32(total[k]));
            const float32x4_t est = vfmaq_f32(vaddq_f32(basev, vld1q_f32(a + 4 * k)), vld1q_f32(b + 4 * k), dot);
            vst1q_f32(o + 4 * k, est);
            mask |= vaddvq_u32(vandq_u32(vcltq_f32(est, limit), bit)) << (4 * k);
        }
        masks[bi] = mask;
    }
}

QG_RACY static float node_rank_neon(const void *block, size_t d, size_t slots, const float *q, float qq,
                                    int euclidean) {
    const int8_t *code = (const int8_t *)block + node_offset(d, slots);
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        const int8x16_t c = vld1q_s8(code + i);
        const int16x8_t l = vmovl_s8(vget_low_s8(c)), h = vmovl_high_s8(c);
        s0 = vfmaq_f32(s0, vld1q_f32(q + i), vcvtq_f32_s32(vmovl_s16(vget_low_s16(l))));
        s1 = vfmaq_f32(s1, vld1q_f32(q + i + 4), vcvtq_f32_s32(vmovl_high_s16(l)));
        s2 = vfmaq_f32(s2, vld1q_f32(q + i + 8), vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))));
        s3 = vfmaq_f32(s3, vld1q_f32(q + i + 12), vcvtq_f32_s32(vmovl_high_s16(h)));
    }
    float dot = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < d; i++) dot += q[i] * (float)code[i];
    return node_rank(dot, code, d, qq, euclidean);
}
#endif

// The variants, and the one this process uses: chosen once, as the
// distance kernels are (LODESTONE_KERNELS forces one the CPU runs).
static const lodestone_qg_kernels qg_portable = {encode_portable, prepare_portable, estimate_portable,
                                                 node_rank_portable};
#ifdef LODESTONE_X86
static const lodestone_qg_kernels qg_avx2 = {encode_avx2, prepare_avx2, estimate_avx2, node_rank_avx2};
// Encoding (at build time) and tables (once per query) keep the AVX2 code.
static const lodestone_qg_kernels qg_avx512 = {encode_avx2, prepare_avx2, estimate_avx512, node_rank_avx512};
#endif
#ifdef LODESTONE_ARM64
static const lodestone_qg_kernels qg_neon = {encode_portable, prepare_portable, estimate_neon, node_rank_neon};
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
