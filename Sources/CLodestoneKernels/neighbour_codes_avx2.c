// AVX2 + FMA neighbour-code kernels (x86-64): block estimates, node ranks,
// encoding and lookup tables (the AVX-512 variant keeps these two).
#include "neighbour_codes_internal.h"

#ifdef LODESTONE_X86
#include <immintrin.h>

// Two groups per 256-bit step: the low lane holds group g's 16 code bytes
// and table, the high lane group g+1's. vpshufb looks up slots 0-15 (low
// nibbles) and 16-31 (high nibbles); the bytes are summed in 16-bit lanes
// as even + 256 * odd plus the odd bytes alone, and separated at the end.
#define AVX2_QG __attribute__((target("avx2,fma")))

AVX2_QG QG_RACY void lodestone_qg_estimate_avx2(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                                const lodestone_qg_query *query, float base, float threshold,
                                                float *out, uint32_t *masks) {
    const size_t groups = qg_groups(d);
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t bi = 0; bi < qg_batches(slots); bi++) {
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

AVX2_QG QG_RACY float lodestone_qg_node_rank_avx2(const void *block, size_t d, size_t slots, const float *q,
                                                  float qq, int euclidean) {
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
AVX2_QG QG_RACY void lodestone_qg_encode_avx2(void *block, size_t d, size_t slots, size_t slot, uint32_t id,
                                              const float *x, const float *c, int euclidean) {
    const size_t groups = qg_groups(d);
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
    lodestone_qg_encode_groups(codes, slot, x, c, d, i / 4, groups, sums);
    finish_slot(block, d, slots, slot, id, sums[0], sums[1], sums[2], sums[3], euclidean);
}

// The lookup table one group at a time: entries 0-7 are the
// subset sums of the group's first three components (a constant 0/1 mask
// per component), entries 8-15 the same plus the fourth; quantized with
// the scalar pass's step and packed to bytes.
AVX2_QG void lodestone_qg_prepare_avx2(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out) {
    const size_t groups = qg_groups(d);
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
