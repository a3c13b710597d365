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
        long u = lroundf((q[i] - center[i] - lo) / delta);
        u = u < 0 ? 0 : (u > 15 ? 15 : u);
        sum += (uint64_t)u;
        for (int j = 0; j < 4; j++)
            if (u >> j & 1) planes[j * words + (i >> 6)] |= (uint64_t)1 << (i & 63);
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
            const float dot = tail[0] * (lo2 * (float)ones + delta2 * weighted - bias) + tail[1]; \
            out[r] = euclidean ? tail[2] - 2.0f * dot : -dot;                                     \
        }                                                                                         \
    }

static void estimates_portable(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                               const void *const *records, size_t n, float *restrict out) {
    LODESTONE_SIGN_ESTIMATES(__builtin_popcountll)
}

#ifdef LODESTONE_X86
#include <cpuid.h>

__attribute__((target("popcnt"))) static inline uint32_t popcount_hw(uint64_t v) {
    return (uint32_t)__builtin_popcountll(v);
}

__attribute__((target("popcnt"))) static void estimates_popcnt(const uint64_t *planes, size_t words,
                                                             const lodestone_sign_query *query,
                                                             const void *const *records, size_t n,
                                                             float *restrict out) {
    LODESTONE_SIGN_ESTIMATES(popcount_hw)
}

static int has_popcnt(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 23) & 1;
}
#endif

void lodestone_sign_estimates(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                              const void *const *records, size_t n, float *out) {
#ifdef LODESTONE_X86
    static int popcnt = -1;
    int have = __atomic_load_n(&popcnt, __ATOMIC_RELAXED);
    if (have < 0) {
        have = has_popcnt();
        __atomic_store_n(&popcnt, have, __ATOMIC_RELAXED);
    }
    if (have) {
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
