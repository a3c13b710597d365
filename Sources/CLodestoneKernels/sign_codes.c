// Sign codes: one bit per component, the 1-bit code of RaBitQ (Gao & Long,
// SIGMOD 2024) without its random rotation, for estimating many inner
// products cheaply before an exact re-ranking. See lodestone_kernels.h for
// the record layout and the estimator.
#include "kernels_internal.h"
#include <string.h>

size_t lodestone_sign_words(size_t d) { return (d + 63) / 64; }

size_t lodestone_sign_record_bytes(size_t d) { return lodestone_sign_words(d) * 8 + 16; }

void lodestone_sign_encode(const float *x, const float *center, size_t d, void *record) {
    const size_t words = lodestone_sign_words(d);
    uint64_t *bits = (uint64_t *)record;
    memset(bits, 0, words * 8);
    double l1 = 0, l2 = 0, norm2 = 0, cdot = 0;
    uint32_t ones = 0;
    for (size_t i = 0; i < d; i++) {
        const double r = (double)x[i] - (double)center[i];
        if (r > 0) {
            bits[i >> 6] |= (uint64_t)1 << (i & 63);
            ones++;
        }
        l1 += fabs(r);
        l2 += r * r;
        norm2 += (double)x[i] * (double)x[i];
        cdot += (double)center[i] * r;
    }
    float tail[4] = {l1 > 0 ? (float)(l2 / l1) : 0.0f, (float)cdot, (float)norm2, 0};
    memcpy(tail + 3, &ones, 4);
    memcpy((char *)record + words * 8, tail, 16);
}

void lodestone_sign_prepare(const float *q, const float *center, size_t d, int euclidean, uint64_t *planes,
                            lodestone_sign_query *out) {
    const size_t words = lodestone_sign_words(d);
    memset(planes, 0, 4 * words * 8);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < d; i++) {
        const float r = q[i] - center[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    const float delta = hi > lo ? (hi - lo) / 15.0f : 0.0f;
    uint64_t sum = 0;
    for (size_t i = 0; i < d && delta > 0; i++) {
        long u = (long)((q[i] - center[i] - lo) / delta + 0.5f);  // non-negative: rounds half up
        u = u < 0 ? 0 : (u > 15 ? 15 : u);
        sum += (uint64_t)u;
        // Without branches: a bit set or not is as likely as not.
        for (int j = 0; j < 4; j++) planes[j * words + (i >> 6)] |= (uint64_t)((u >> j) & 1) << (i & 63);
    }
    out->lo2 = 2.0f * lo;
    out->delta2 = 2.0f * delta;
    out->bias = (float)((double)d * lo + (double)delta * (double)sum);
    out->euclidean = euclidean;
}

// Each record's estimate: <q - c, x - c> from the code, plus <c, x - c>
// (exact, stored), i.e. <q, x - c>; then the rank value. The query's
// numbers are copied to locals so that the stores to `out` do not make the
// compiler reload them for every record.
#define LODESTONE_SIGN_AHEAD 8

#define LODESTONE_SIGN_ESTIMATES(popcount)                                                        \
    {                                                                                             \
        const uint64_t *p0 = planes, *p1 = planes + words, *p2 = planes + 2 * words,              \
                       *p3 = planes + 3 * words;                                                  \
        const float lo2 = query->lo2, delta2 = query->delta2, bias = query->bias;                 \
        const int euclidean = query->euclidean;                                                   \
        for (size_t r = 0; r < n; r++) {                                                          \
            if (r + LODESTONE_SIGN_AHEAD < n) lodestone_prefetch(records[r + LODESTONE_SIGN_AHEAD]); \
            const uint64_t *bits = (const uint64_t *)records[r];                                  \
            uint32_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;                                              \
            for (size_t w = 0; w < words; w++) {                                                  \
                const uint64_t b = bits[w];                                                       \
                c0 += popcount(b & p0[w]);                                                        \
                c1 += popcount(b & p1[w]);                                                        \
                c2 += popcount(b & p2[w]);                                                        \
                c3 += popcount(b & p3[w]);                                                        \
            }                                                                                     \
            float tail[4];                                                                        \
            memcpy(tail, bits + words, 16);                                                       \
            uint32_t ones;                                                                        \
            memcpy(&ones, tail + 3, 4);                                                           \
            const float weighted = (float)(c0 + 2 * c1 + 4 * c2 + 8 * c3);                        \
            out[r] = lodestone_sign_value(tail[0], tail[1], tail[2], (float)ones, weighted, lo2,  \
                                          delta2, bias, euclidean);                               \
        }                                                                                         \
    }

static void estimates_portable(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                               const void *const *records, size_t n, float *restrict out) {
    LODESTONE_SIGN_ESTIMATES(__builtin_popcountll)
}

#ifdef LODESTONE_X86
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("popcnt"))) static inline uint32_t popcount_hw(uint64_t v) {
    return (uint32_t)__builtin_popcountll(v);
}

__attribute__((target("popcnt"))) static void estimates_popcnt(const uint64_t *planes, size_t words,
                                                             const lodestone_sign_query *query,
                                                             const void *const *records, size_t n,
                                                             float *restrict out) {
    LODESTONE_SIGN_ESTIMATES(popcount_hw)
}

// AVX2: a 256-bit chunk of the code at a time, counted per byte with the
// nibble lookup (vpshufb); the four planes' byte counts are combined as
// ((c3 * 2 + c2) * 2 + c1) * 2 + c0 (at most 120, so it stays in a byte)
// before one vpsadbw sums them; words past the last full chunk use popcnt.
#define AVX2_SIGN __attribute__((target("avx2,popcnt")))

AVX2_SIGN static inline __m256i popcount_bytes(__m256i v, __m256i lut, __m256i low) {
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

AVX2_SIGN static void estimates_avx2(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                                     const void *const *records, size_t n, float *restrict out) {
    const uint64_t *p0 = planes, *p1 = planes + words, *p2 = planes + 2 * words, *p3 = planes + 3 * words;
    const float lo2 = query->lo2, delta2 = query->delta2, bias = query->bias;
    const int euclidean = query->euclidean;
    const size_t wide = words / 4;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    for (size_t r = 0; r < n; r++) {
        if (r + LODESTONE_SIGN_AHEAD < n) lodestone_prefetch(records[r + LODESTONE_SIGN_AHEAD]);
        const uint64_t *bits = (const uint64_t *)records[r];
        __m256i sums = zero;
        for (size_t c = 0; c < wide; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(bits + 4 * c));
            __m256i acc = popcount_bytes(_mm256_and_si256(v, _mm256_loadu_si256((const __m256i *)(p3 + 4 * c))), lut, low);
            acc = _mm256_add_epi8(_mm256_add_epi8(acc, acc),
                                  popcount_bytes(_mm256_and_si256(v, _mm256_loadu_si256((const __m256i *)(p2 + 4 * c))), lut, low));
            acc = _mm256_add_epi8(_mm256_add_epi8(acc, acc),
                                  popcount_bytes(_mm256_and_si256(v, _mm256_loadu_si256((const __m256i *)(p1 + 4 * c))), lut, low));
            acc = _mm256_add_epi8(_mm256_add_epi8(acc, acc),
                                  popcount_bytes(_mm256_and_si256(v, _mm256_loadu_si256((const __m256i *)(p0 + 4 * c))), lut, low));
            sums = _mm256_add_epi64(sums, _mm256_sad_epu8(acc, zero));
        }
        const __m128i half = _mm_add_epi64(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
        uint64_t weighted = (uint64_t)_mm_cvtsi128_si64(half) + (uint64_t)_mm_extract_epi64(half, 1);
        for (size_t w = 4 * wide; w < words; w++) {
            const uint64_t b = bits[w];
            weighted += popcount_hw(b & p0[w]) + 2 * popcount_hw(b & p1[w]) + 4 * popcount_hw(b & p2[w]) +
                        8 * popcount_hw(b & p3[w]);
        }
        float tail[4];
        memcpy(tail, bits + words, 16);
        uint32_t ones;
        memcpy(&ones, tail + 3, 4);
        out[r] = lodestone_sign_value(tail[0], tail[1], tail[2], (float)ones, (float)weighted, lo2, delta2, bias,
                                      euclidean);
    }
}

static int has_popcnt(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 23) & 1;
}
#endif

int lodestone_sign_level(void) {
#ifdef LODESTONE_X86
    // Asked once: cpuid traps to the hypervisor on a virtual machine.
    static int level = -1;
    int have = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (have < 0) {
        have = has_popcnt() ? (lodestone_cpu_supports(LODESTONE_ISA_AVX2_FMA) ? 2 : 1) : 0;
        __atomic_store_n(&level, have, __ATOMIC_RELAXED);
    }
    return have;
#else
    return 0;
#endif
}

void lodestone_sign_estimates(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                              const void *const *records, size_t n, float *out) {
#ifdef LODESTONE_X86
    const int have = lodestone_sign_level();
    if (have == 2) {
        estimates_avx2(planes, words, query, records, n, out);
        return;
    }
    if (have == 1) {
        estimates_popcnt(planes, words, query, records, n, out);
        return;
    }
#endif
    estimates_portable(planes, words, query, records, n, out);
}

void lodestone_sign_estimates_portable(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                                       const void *const *records, size_t n, float *out) {
    estimates_portable(planes, words, query, records, n, out);
}
