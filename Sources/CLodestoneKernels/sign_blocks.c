// Packed sign codes: a filter's matches transposed into blocks of 32 codes,
// estimated a block at a time with 4-bit table lookups (FastScan, André et
// al., VLDB 2015, on RaBitQ's 1-bit codes). Layout and estimator in
// lodestone_kernels.h; the per-record estimator is in sign_codes.c.
#include "kernels_internal.h"
#include <string.h>

#define BLOCK 32

// A block: a code's `words` x 8 bytes for each of 32 vectors, then the
// four per-vector numbers (factor, <c, x-c>, |x|^2, set bits) as arrays.
static size_t block_stride(size_t words) { return words * 8 * BLOCK + 4 * BLOCK * sizeof(float); }

size_t lodestone_sign_block_bytes(size_t d) { return block_stride(lodestone_sign_words(d)); }

void lodestone_sign_pack(const void *const *records, size_t n, size_t d, void *blocks) {
    const size_t bytes = lodestone_sign_words(d) * 8, stride = lodestone_sign_block_bytes(d);
    const size_t count = (n + BLOCK - 1) / BLOCK;
    memset(blocks, 0, count * stride);
    for (size_t r = 0; r < n; r++) {
        uint8_t *block = (uint8_t *)blocks + (r / BLOCK) * stride;
        const size_t j = r % BLOCK;
        const uint8_t *code = (const uint8_t *)records[r];
        for (size_t k = 0; k < bytes; k++) block[k * BLOCK + j] = code[k];
        float tail[4];
        memcpy(tail, code + bytes, 16);
        uint32_t ones;
        memcpy(&ones, tail + 3, 4);
        float *numbers = (float *)(block + bytes * BLOCK);
        numbers[j] = tail[0];
        numbers[BLOCK + j] = tail[1];
        numbers[2 * BLOCK + j] = tail[2];
        numbers[3 * BLOCK + j] = (float)ones;
    }
}

void lodestone_sign_tables(const uint64_t *planes, size_t words, uint8_t *tables) {
    // Component i's 4-bit value u_i, from the four planes.
    const size_t d = words * 64;
    for (size_t g = 0; g < d / 4; g++) {
        uint8_t u[4];
        for (int b = 0; b < 4; b++) {
            const size_t i = 4 * g + (size_t)b;
            uint8_t v = 0;
            for (int p = 0; p < 4; p++) v |= (uint8_t)(((planes[(size_t)p * words + (i >> 6)] >> (i & 63)) & 1) << p);
            u[b] = v;
        }
        uint8_t *table = tables + g * 32;
        for (int m = 0; m < 16; m++) {
            uint8_t sum = 0;
            for (int b = 0; b < 4; b++)
                if (m >> b & 1) sum = (uint8_t)(sum + u[b]);
            table[m] = sum;
            table[16 + m] = sum;
        }
    }
}

static void block_estimates_portable(const uint8_t *tables, size_t words, const lodestone_sign_query *query,
                                     const void *blocks, size_t n, float bound, float *restrict out,
                                     uint32_t *restrict below) {
    const size_t bytes = words * 8, stride = block_stride(words);
    for (size_t b = 0; b * BLOCK < n; b++) {
        const uint8_t *block = (const uint8_t *)blocks + b * stride;
        const float *numbers = (const float *)(block + bytes * BLOCK);
        const size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
        uint32_t mask = 0;
        for (size_t j = 0; j < m; j++) {
            uint32_t weighted = 0;
            for (size_t k = 0; k < bytes; k++) {
                const uint8_t v = block[k * BLOCK + j];
                weighted += tables[(2 * k) * 32 + (v & 15)] + tables[(2 * k + 1) * 32 + (v >> 4)];
            }
            const float value = lodestone_sign_value(numbers[j], numbers[BLOCK + j], numbers[2 * BLOCK + j],
                                                     numbers[3 * BLOCK + j], (float)weighted, query->lo2,
                                                     query->delta2, query->bias, query->euclidean);
            out[b * BLOCK + j] = value;
            if (value <= bound) mask |= (uint32_t)1 << j;
        }
        below[b] = mask;
    }
}

#ifdef LODESTONE_X86
#include <immintrin.h>

#define AVX2_BLOCKS __attribute__((target("avx2")))

// Two code bytes (four 4-bit slices, each table entry at most 60) are
// looked up and added in bytes (at most 240), then widened: the even bytes
// (vectors 0, 2, ...) and odd bytes into 16-bit sums (at most 15 x d).
AVX2_BLOCKS static void block_estimates_avx2(const uint8_t *tables, size_t words, const lodestone_sign_query *query,
                                             const void *blocks, size_t n, float bound, float *restrict out,
                                             uint32_t *restrict below) {
    const size_t bytes = words * 8, stride = block_stride(words);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i evenMask = _mm256_set1_epi16(0x00ff);
    const __m256 vlo2 = _mm256_set1_ps(query->lo2), vdelta2 = _mm256_set1_ps(query->delta2);
    const __m256 vbias = _mm256_set1_ps(query->bias), two = _mm256_set1_ps(2.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256 vbound = _mm256_set1_ps(bound);
    const int euclidean = query->euclidean;
    for (size_t b = 0; b * BLOCK < n; b++) {
        const uint8_t *block = (const uint8_t *)blocks + b * stride;
        if ((b + 1) * BLOCK < n) {
            const uint8_t *next = block + stride;
            for (size_t at = 0; at < stride; at += 64) lodestone_prefetch(next + at);
        }
        __m256i even = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
        for (size_t k = 0; k + 1 < bytes; k += 2) {
            const __m256i v0 = _mm256_load_si256((const __m256i *)(block + k * BLOCK));
            const __m256i v1 = _mm256_load_si256((const __m256i *)(block + (k + 1) * BLOCK));
            const uint8_t *t = tables + 2 * k * 32;
            __m256i r = _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)t), _mm256_and_si256(v0, low));
            r = _mm256_add_epi8(r, _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)(t + 32)),
                                                       _mm256_and_si256(_mm256_srli_epi16(v0, 4), low)));
            r = _mm256_add_epi8(r, _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)(t + 64)),
                                                       _mm256_and_si256(v1, low)));
            r = _mm256_add_epi8(r, _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)(t + 96)),
                                                       _mm256_and_si256(_mm256_srli_epi16(v1, 4), low)));
            even = _mm256_add_epi16(even, _mm256_and_si256(r, evenMask));
            odd = _mm256_add_epi16(odd, _mm256_srli_epi16(r, 8));
        }
        // Vector j's sum is word j/2 of `even` (j even) or of `odd`: the
        // interleaved low halves hold vectors 0-7 and 16-23, the high 8-15
        // and 24-31. The estimate is then lodestone_sign_value's, in its
        // order of operations, so it is the same float.
        const __m256i lo = _mm256_unpacklo_epi16(even, odd), hi = _mm256_unpackhi_epi16(even, odd);
        __m256 weighted[4];
        weighted[0] = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(lo)));
        weighted[1] = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(hi)));
        weighted[2] = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(lo, 1)));
        weighted[3] = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(hi, 1)));
        const float *numbers = (const float *)(block + bytes * BLOCK);
        const size_t m = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
        float estimates[BLOCK] __attribute__((aligned(32)));
        float *to = m == BLOCK ? out + b * BLOCK : estimates;
        uint32_t mask = 0;
        for (int g = 0; g < 4; g++) {
            const __m256 factor = _mm256_load_ps(numbers + 8 * g);
            const __m256 cdot = _mm256_load_ps(numbers + BLOCK + 8 * g);
            const __m256 ones = _mm256_load_ps(numbers + 3 * BLOCK + 8 * g);
            const __m256 inner = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(vlo2, ones), _mm256_mul_ps(vdelta2, weighted[g])),
                                               vbias);
            const __m256 dot = _mm256_add_ps(_mm256_mul_ps(factor, inner), cdot);
            const __m256 value = euclidean
                ? _mm256_sub_ps(_mm256_load_ps(numbers + 2 * BLOCK + 8 * g), _mm256_mul_ps(two, dot))
                : _mm256_xor_ps(dot, sign);
            _mm256_storeu_ps(to + 8 * g, value);
            mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(value, vbound, _CMP_LE_OQ)) << (8 * g);
        }
        if (m < BLOCK) {
            memcpy(out + b * BLOCK, estimates, m * sizeof(float));
            mask &= ((uint32_t)1 << m) - 1;
        }
        below[b] = mask;
    }
}
#endif

void lodestone_sign_block_estimates(const uint8_t *tables, size_t words, const lodestone_sign_query *query,
                                    const void *blocks, size_t n, float bound, float *out, uint32_t *below) {
#ifdef LODESTONE_X86
    if (lodestone_sign_level() == 2) {
        block_estimates_avx2(tables, words, query, blocks, n, bound, out, below);
        return;
    }
#endif
    block_estimates_portable(tables, words, query, blocks, n, bound, out, below);
}

void lodestone_sign_block_estimates_portable(const uint8_t *tables, size_t words, const lodestone_sign_query *query,
                                             const void *blocks, size_t n, float bound, float *out,
                                             uint32_t *below) {
    block_estimates_portable(tables, words, query, blocks, n, bound, out, below);
}
