// Per-vector codes (LVQ's scheme, Aguerrebere et al. 2023: the residual
// against a center, levels between the residual's own smallest and largest
// component): compact codes, 4 bits a component, gathered by the compact
// layer-0 walk and ranked against each other by the graph's construction.
// See lodestone_kernels.h for the record layout and the estimators.
#include "kernels_internal.h"
#include <string.h>
#ifdef LODESTONE_X86
#include <immintrin.h>
#endif

static size_t padded(size_t d) { return (d + 63) / 64 * 64; }

size_t lodestone_cc_record_bytes(size_t d) { return (padded(d) / 2 + 12 + 15) / 16 * 16; }

size_t lodestone_cc_query_bytes(size_t d) { return padded(d); }

// Component i of a 64-component group sits in byte (i % 16) + 16 * (i / 32)
// of the group's 32 bytes, in the low nibble when (i % 32) < 16, else the high.
static inline size_t cc_byte(size_t i) {
    const size_t j = i % 64;
    return (i / 64) * 32 + (j % 16) + 16 * (j / 32);
}
static inline int cc_high(size_t i) { return (i % 32) >= 16; }

/// LVQ's scalars for x against `center` with `levels` levels: the
/// residual's smallest component (`lo`), the step between levels (the
/// return value) and |x|^2.
static float lvq_range(const float *x, const float *center, size_t d, int levels, float *lo_out, double *norm2) {
    float lo = INFINITY, hi = -INFINITY;
    double n2 = 0;
    for (size_t i = 0; i < d; i++) {
        const float r = x[i] - center[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
        n2 += (double)x[i] * (double)x[i];
    }
    *lo_out = lo;
    *norm2 = n2;
    return hi > lo ? (hi - lo) / (float)(levels - 1) : 0.0f;
}

/// The level (0..<levels) of residual component r.
static inline int lvq_level(float r, float lo, float step, int levels) {
    const int u = step > 0 ? (int)((r - lo) / step + 0.5f) : 0;
    return u < 0 ? 0 : (u > levels - 1 ? levels - 1 : u);
}

void lodestone_cc_encode(const float *x, const float *center, size_t d, void *record) {
    float lo;
    double norm2;
    const float step = lvq_range(x, center, d, 16, &lo, &norm2);
    uint8_t *b = (uint8_t *)record;
    const size_t bytes = padded(d) / 2;
    memset(b, 0, lodestone_cc_record_bytes(d));
    for (size_t i = 0; i < d; i++) {
        const int u = lvq_level(x[i] - center[i], lo, step, 16);
        b[cc_byte(i)] |= (uint8_t)(cc_high(i) ? u << 4 : u);
    }
    const float tail[3] = {lo, step, (float)norm2};
    memcpy(b + bytes, tail, sizeof tail);
}

void lodestone_cc_prepare(const float *q, const float *center, size_t d, int euclidean, int8_t *q8,
                          lodestone_cc_query *out) {
    float m = 0;
    double sum = 0, qc = 0, qq = 0;
    for (size_t i = 0; i < d; i++) {
        m = fabsf(q[i]) > m ? fabsf(q[i]) : m;
        sum += q[i];
        qc += (double)q[i] * (double)center[i];
        qq += (double)q[i] * (double)q[i];
    }
    const float scale = m > 0 ? m / 127.0f : 1.0f;
    memset(q8, 0, padded(d));
    for (size_t i = 0; i < d; i++) {
        long t = lrintf(q[i] / scale);
        t = t < -127 ? -127 : (t > 127 ? 127 : t);
        // The query's bytes follow the codes' nibbles: per group, 32 bytes
        // for the low nibbles, then 32 for the high ones.
        const size_t byte = cc_byte(i);
        q8[(byte / 32) * 64 + (cc_high(i) ? 32 : 0) + byte % 32] = (int8_t)t;
    }
    out->scale = scale;
    out->sum = (float)sum;
    out->qc = (float)qc;
    out->qq = (float)qq;
    out->euclidean = euclidean;
}

static inline float cc_rank(const uint8_t *tail_bytes, int32_t dot, const lodestone_cc_query *query) {
    float tail[3];
    memcpy(tail, tail_bytes, sizeof tail);
    const float ip = query->qc + tail[0] * query->sum + tail[1] * query->scale * (float)dot;
    return query->euclidean ? query->qq + tail[2] - 2.0f * ip : -ip;
}

static void estimates_portable(const int8_t *q8, const lodestone_cc_query *query, size_t d,
                               const void *const *records, size_t n, float *out) {
    const size_t groups = padded(d) / 64;
    for (size_t r = 0; r < n; r++) {
        const uint8_t *b = (const uint8_t *)records[r];
        int32_t dot = 0;
        for (size_t g = 0; g < groups; g++) {
            for (size_t j = 0; j < 32; j++) {
                const uint8_t v = b[g * 32 + j];
                dot += (int32_t)(v & 15) * q8[g * 64 + j] + (int32_t)(v >> 4) * q8[g * 64 + 32 + j];
            }
        }
        out[r] = cc_rank(b + groups * 32, dot, query);
    }
}

#ifdef LODESTONE_X86
// Unsigned nibbles times signed query bytes (vpmaddubsw: at most 2 x 15 x
// 127 per 16-bit lane), then pairs summed into 32-bit lanes (vpmaddwd).
__attribute__((target("avx2"))) static void estimates_avx2(const int8_t *q8, const lodestone_cc_query *query,
                                                           size_t d, const void *const *records, size_t n,
                                                           float *out) {
    const size_t groups = padded(d) / 64;
    const size_t bytes = groups * 32 + 12;
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t r = 0; r < n && r < 4; r++) lodestone_prefetch_bytes(records[r], bytes);
    for (size_t r = 0; r < n; r++) {
        if (r + 4 < n) lodestone_prefetch_bytes(records[r + 4], bytes);
        const uint8_t *b = (const uint8_t *)records[r];
        __m256i acc = _mm256_setzero_si256();
        for (size_t g = 0; g < groups; g++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(b + g * 32));
            const __m256i lo4 = _mm256_and_si256(v, low);
            const __m256i hi4 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            const __m256i qlo = _mm256_loadu_si256((const __m256i *)(q8 + g * 64));
            const __m256i qhi = _mm256_loadu_si256((const __m256i *)(q8 + g * 64 + 32));
            const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo4, qlo), _mm256_maddubs_epi16(hi4, qhi));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones));
        }
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        out[r] = cc_rank(b + groups * 32, _mm_cvtsi128_si32(h), query);
    }
}
#endif

// Estimates between two compact codes of the same center, which a graph's
// construction ranks neighbours by: see lodestone_kernels.h.

void lodestone_cc_pair_factors(const void *record, const float *center, size_t d, float *out) {
    const uint8_t *b = (const uint8_t *)record;
    float tail[2];
    memcpy(tail, b + padded(d) / 2, sizeof tail);
    double cr = 0, rsum = 0;
    for (size_t i = 0; i < d; i++) {
        const uint8_t v = b[cc_byte(i)];
        const int u = cc_high(i) ? v >> 4 : v & 15;
        const double r = (double)tail[0] + (double)tail[1] * (double)u;  // the residual the code stands for
        cr += (double)center[i] * r;
        rsum += r;
    }
    out[0] = (float)cr;
    out[1] = (float)rsum;
}

static inline float cc_pair_rank(const uint8_t *ta, const float *fa, const uint8_t *tb, const float *fb, int32_t uv,
                                 float cc, size_t d, int euclidean) {
    float a[3], b[3];
    memcpy(a, ta, sizeof a);
    memcpy(b, tb, sizeof b);
    const float rr = a[0] * fb[1] + b[0] * fa[1] - (float)d * a[0] * b[0] + a[1] * b[1] * (float)uv;
    const float ip = cc + fa[0] + fb[0] + rr;
    return euclidean ? a[2] + b[2] - 2.0f * ip : -ip;
}

static inline int32_t pair_dot_portable(const uint8_t *a, const uint8_t *b, size_t bytes) {
    int32_t uv = 0;
    for (size_t j = 0; j < bytes; j++) {
        uv += (int32_t)(a[j] & 15) * (int32_t)(b[j] & 15) + (int32_t)(a[j] >> 4) * (int32_t)(b[j] >> 4);
    }
    return uv;
}

static void pair_estimates_portable(const void *record, const float *factors, float cc, size_t d, int euclidean,
                                    const void *const *records, const float *record_factors, size_t n, float *out) {
    const uint8_t *a = (const uint8_t *)record;
    const size_t bytes = padded(d) / 2;
    for (size_t r = 0; r < n; r++) {
        const uint8_t *b = (const uint8_t *)records[r];
        out[r] = cc_pair_rank(a + bytes, factors, b + bytes, record_factors + 2 * r, pair_dot_portable(a, b, bytes),
                              cc, d, euclidean);
    }
}

#ifdef LODESTONE_X86
// Both records' nibbles split into bytes, multiplied and summed in pairs
// (vpmaddubsw: at most 2 x 15 x 15 a 16-bit lane), then widened (vpmaddwd).
__attribute__((target("avx2"), always_inline)) static inline int32_t pair_dot_avx2(const uint8_t *a,
                                                                                   const uint8_t *b, size_t bytes) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    for (size_t g = 0; g < bytes; g += 32) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(a + g));
        const __m256i y = _mm256_loadu_si256((const __m256i *)(b + g));
        const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(x, low), _mm256_and_si256(y, low));
        const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(x, 4), low),
                                                _mm256_and_si256(_mm256_srli_epi16(y, 4), low));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones));
    }
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h);
}

__attribute__((target("avx2,fma"))) static void pair_estimates_avx2(const void *record, const float *factors,
                                                                    float cc, size_t d, int euclidean,
                                                                    const void *const *records,
                                                                    const float *record_factors, size_t n,
                                                                    float *out) {
    const size_t bytes = padded(d) / 2;
    const uint8_t *a = (const uint8_t *)record;
    for (size_t r = 0; r < n && r < 4; r++) lodestone_prefetch_bytes(records[r], bytes + 12);
    for (size_t r = 0; r < n; r++) {
        if (r + 4 < n) lodestone_prefetch_bytes(records[r + 4], bytes + 12);
        const uint8_t *b = (const uint8_t *)records[r];
        out[r] = cc_pair_rank(a + bytes, factors, b + bytes, record_factors + 2 * r, pair_dot_avx2(a, b, bytes), cc,
                              d, euclidean);
    }
}
#endif

// The neighbour choice on codes (see lodestone_kernels.h), one body for
// each ISA's pair product, inlined into it.
typedef int32_t (*cc_pair_dot_fn)(const uint8_t *, const uint8_t *, size_t);

__attribute__((always_inline)) static inline size_t
select_body(cc_pair_dot_fn dot, const void *const *rows, const float *factors, const float *ranks,
            const uint8_t *skip, size_t n, uint32_t *kept, size_t kept_count, size_t limit, float separation,
            float alpha, float beta, float cc, size_t d, int euclidean) {
    const size_t bytes = padded(d) / 2;
    for (size_t k = 0; k < n && k < 2; k++) lodestone_prefetch_bytes(rows[k], bytes + 12);
    for (size_t i = 0; i < n && kept_count < limit; i++) {
        if (i + 2 < n) lodestone_prefetch_bytes(rows[i + 2], bytes + 12);
        if (skip && skip[i]) continue;
        const uint8_t *a = (const uint8_t *)rows[i];
        const float own = alpha + beta * ranks[i];
        int admitted = 1;
        for (size_t k = 0; k < kept_count; k++) {
            const uint32_t j = kept[k];
            if (ranks[j] > ranks[i]) continue;
            const uint8_t *b = (const uint8_t *)rows[j];
            const float e = cc_pair_rank(a + bytes, factors + 2 * i, b + bytes, factors + 2 * (size_t)j,
                                         dot(a, b, bytes), cc, d, euclidean);
            if (separation * (alpha + beta * e) < own) {
                admitted = 0;
                break;
            }
        }
        if (admitted) kept[kept_count++] = (uint32_t)i;
    }
    return kept_count;
}

static size_t select_portable(const void *const *rows, const float *factors, const float *ranks, const uint8_t *skip,
                              size_t n, uint32_t *kept, size_t kept_count, size_t limit, float separation, float alpha,
                              float beta, float cc, size_t d, int euclidean) {
    return select_body(pair_dot_portable, rows, factors, ranks, skip, n, kept, kept_count, limit, separation, alpha,
                       beta, cc, d, euclidean);
}

#ifdef LODESTONE_X86
__attribute__((target("avx2,fma"))) static size_t select_avx2(const void *const *rows, const float *factors,
                                                              const float *ranks, const uint8_t *skip, size_t n,
                                                              uint32_t *kept, size_t kept_count, size_t limit,
                                                              float separation, float alpha, float beta, float cc,
                                                              size_t d, int euclidean) {
    return select_body(pair_dot_avx2, rows, factors, ranks, skip, n, kept, kept_count, limit, separation, alpha, beta,
                       cc, d, euclidean);
}
#endif

typedef void (*cc_estimates_fn)(const int8_t *, const lodestone_cc_query *, size_t, const void *const *, size_t,
                                float *);
typedef void (*cc_pair_estimates_fn)(const void *, const float *, float, size_t, int, const void *const *,
                                     const float *, size_t, float *);
typedef size_t (*cc_select_fn)(const void *const *, const float *, const float *, const uint8_t *, size_t, uint32_t *,
                               size_t, size_t, float, float, float, float, size_t, int);

/// One ISA's compact-code kernels: a query's estimates, and codes against codes.
typedef struct {
    cc_estimates_fn compact;
    cc_pair_estimates_fn pairs;
    cc_select_fn select;
} codes_kernels;

static const codes_kernels codes_portable = {estimates_portable, pair_estimates_portable, select_portable};
#ifdef LODESTONE_X86
static const codes_kernels codes_avx2 = {estimates_avx2, pair_estimates_avx2, select_avx2};
#endif

static const codes_kernels *codes_variant(int isa) {
#ifdef LODESTONE_X86
    if ((isa == LODESTONE_ISA_AVX2_FMA || isa == LODESTONE_ISA_AVX512) && lodestone_cpu_supports(LODESTONE_ISA_AVX2_FMA))
        return &codes_avx2;
#endif
    (void)isa;
    return NULL;
}

static const codes_kernels *codes_table;

static const codes_kernels *codes_active(void) {
    const codes_kernels *t = __atomic_load_n(&codes_table, __ATOMIC_ACQUIRE);
    if (t) return t;
    const int forced = lodestone_forced_isa();
    if (forced == 0) {
        t = &codes_portable;
    } else {
        t = forced > 0 ? codes_variant(forced) : NULL;
        if (!t) t = codes_variant(LODESTONE_ISA_AVX2_FMA);
        if (!t) t = &codes_portable;
    }
    __atomic_store_n(&codes_table, t, __ATOMIC_RELEASE);
    return t;
}

void lodestone_cc_estimates(const int8_t *q8, const lodestone_cc_query *query, size_t d, const void *const *records,
                            size_t n, float *out) {
    codes_active()->compact(q8, query, d, records, n, out);
}

void lodestone_cc_estimates_portable(const int8_t *q8, const lodestone_cc_query *query, size_t d,
                                     const void *const *records, size_t n, float *out) {
    estimates_portable(q8, query, d, records, n, out);
}

void lodestone_cc_pair_estimates(const void *record, const float *factors, float center_norm2, size_t d, int euclidean,
                                 const void *const *records, const float *record_factors, size_t n, float *out) {
    codes_active()->pairs(record, factors, center_norm2, d, euclidean, records, record_factors, n, out);
}

void lodestone_cc_pair_estimates_portable(const void *record, const float *factors, float center_norm2, size_t d,
                                          int euclidean, const void *const *records, const float *record_factors,
                                          size_t n, float *out) {
    pair_estimates_portable(record, factors, center_norm2, d, euclidean, records, record_factors, n, out);
}

size_t lodestone_cc_select(const void *const *rows, const float *factors, const float *ranks, const uint8_t *skip,
                           size_t n, uint32_t *kept, size_t kept_count, size_t limit, float separation, float alpha,
                           float beta, float center_norm2, size_t d, int euclidean) {
    return codes_active()->select(rows, factors, ranks, skip, n, kept, kept_count, limit, separation, alpha, beta,
                                  center_norm2, d, euclidean);
}

size_t lodestone_cc_select_portable(const void *const *rows, const float *factors, const float *ranks,
                                    const uint8_t *skip, size_t n, uint32_t *kept, size_t kept_count, size_t limit,
                                    float separation, float alpha, float beta, float center_norm2, size_t d,
                                    int euclidean) {
    return select_portable(rows, factors, ranks, skip, n, kept, kept_count, limit, separation, alpha, beta,
                           center_norm2, d, euclidean);
}
