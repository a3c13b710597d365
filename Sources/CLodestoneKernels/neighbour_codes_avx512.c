// AVX-512 neighbour-code kernels (x86-64): block estimates and node ranks;
// encoding and lookup tables are the AVX2 variant's.
#include "neighbour_codes_internal.h"

#ifdef LODESTONE_X86
#include <immintrin.h>

// AVX-512 (F and BW): four groups per 512-bit step, the AVX2 kernel's
// scheme on four 128-bit lanes; a final pair of groups is loaded into the
// low half (the high half zero: an all-zero table looks up zeros). The
// estimates of 16 slots at a time, compared straight into a mask register.
// Per lane a chunk's sums stay below 64 * 255, and the four lanes' below
// 65,536.
#define AVX512_QG __attribute__((target("avx512f,avx512bw")))

AVX512_QG QG_RACY void lodestone_qg_estimate_avx512(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                                    const lodestone_qg_query *query, float base, float threshold,
                                                    float *out, uint32_t *masks) {
    const size_t groups = qg_groups(d);
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (size_t bi = 0; bi < qg_batches(slots); bi++) {
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

AVX512_QG QG_RACY float lodestone_qg_node_rank_avx512(const void *block, size_t d, size_t slots, const float *q,
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
