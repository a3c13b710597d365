// Per-vector codes (LVQ's scheme, Aguerrebere et al. 2023: the residual
// against a center, levels between the residual's own smallest and largest
// component): compact codes, 4 bits a component, gathered by the compact
// layer-0 walk; build codes, 8 bits, which the graph's construction ranks
// by. See lodestone_kernels.h for the record layouts and the estimators.
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
    for (size_t r = 0; r < n; r++) {
        if (r + 4 < n) {
            const char *p = (const char *)records[r + 4];
            for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
        }
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

// Build codes: 8 bits a component (LVQ with 256 levels), which the
// graph's construction ranks by.

static size_t bc_padded(size_t d) { return (d + 15) / 16 * 16; }

size_t lodestone_bc_record_bytes(size_t d) { return bc_padded(d) + 24; }

void lodestone_bc_encode(const float *x, const float *center, size_t d, void *record) {
    float lo;
    double norm2;
    const float step = lvq_range(x, center, d, 256, &lo, &norm2);
    uint8_t *b = (uint8_t *)record;
    memset(b, 0, lodestone_bc_record_bytes(d));
    double cr = 0, rsum = 0;
    for (size_t i = 0; i < d; i++) {
        b[i] = (uint8_t)lvq_level(x[i] - center[i], lo, step, 256);
        const double r = (double)lo + (double)step * (double)b[i];  // the residual the code stands for
        cr += (double)center[i] * r;
        rsum += r;
    }
    const float tail[5] = {lo, step, (float)norm2, (float)cr, (float)rsum};
    memcpy(b + bc_padded(d), tail, sizeof tail);
}

void lodestone_bc_decode(const void *record, const float *center, size_t d, float *x) {
    const uint8_t *b = (const uint8_t *)record;
    float tail[3];
    memcpy(tail, b + bc_padded(d), sizeof tail);
    for (size_t i = 0; i < d; i++) x[i] = center[i] + tail[0] + tail[1] * (float)b[i];
}

void lodestone_bc_prepare(const float *q, const float *center, size_t d, int euclidean, lodestone_cc_query *out) {
    double sum = 0, qc = 0, qq = 0;
    for (size_t i = 0; i < d; i++) {
        sum += q[i];
        qc += (double)q[i] * (double)center[i];
        qq += (double)q[i] * (double)q[i];
    }
    out->scale = 1;
    out->sum = (float)sum;
    out->qc = (float)qc;
    out->qq = (float)qq;
    out->euclidean = euclidean;
}

static inline float bc_rank(const uint8_t *tail_bytes, float dot, const lodestone_cc_query *query) {
    float tail[3];
    memcpy(tail, tail_bytes, sizeof tail);
    const float ip = query->qc + tail[0] * query->sum + tail[1] * dot;
    return query->euclidean ? query->qq + tail[2] - 2.0f * ip : -ip;
}

static inline float bc_pair_rank(const uint8_t *ta, const uint8_t *tb, int32_t uv, float cc, size_t d,
                                 int euclidean) {
    float a[5], b[5];
    memcpy(a, ta, sizeof a);
    memcpy(b, tb, sizeof b);
    const float rr = a[0] * b[4] + b[0] * a[4] - (float)d * a[0] * b[0] + a[1] * b[1] * (float)uv;
    const float ip = cc + a[3] + b[3] + rr;
    return euclidean ? a[2] + b[2] - 2.0f * ip : -ip;
}

static void bc_pair_estimates_portable(const void *record, float cc, size_t d, int euclidean,
                                       const void *const *records, size_t n, float *out) {
    const uint8_t *a = (const uint8_t *)record;
    for (size_t r = 0; r < n; r++) {
        const uint8_t *b = (const uint8_t *)records[r];
        int32_t uv = 0;
        for (size_t i = 0; i < d; i++) uv += (int32_t)a[i] * (int32_t)b[i];
        out[r] = bc_pair_rank(a + bc_padded(d), b + bc_padded(d), uv, cc, d, euclidean);
    }
}

static void bc_estimates_portable(const float *q, const lodestone_cc_query *query, size_t d,
                                  const void *const *records, size_t n, float *out) {
    for (size_t r = 0; r < n; r++) {
        const uint8_t *b = (const uint8_t *)records[r];
        float dot = 0;
        for (size_t i = 0; i < d; i++) dot += q[i] * (float)b[i];
        out[r] = bc_rank(b + bc_padded(d), dot, query);
    }
}

#ifdef LODESTONE_X86
// Eight levels widened to floats at a time (vpmovzxbd, vcvtdq2ps), times
// the float32 query, in four accumulators; components past d are read as
// the record's zero padding against a query that must be padded too.
__attribute__((target("avx2,fma"))) static void bc_estimates_avx2(const float *q, const lodestone_cc_query *query,
                                                                  size_t d, const void *const *records, size_t n,
                                                                  float *out) {
    const size_t D = bc_padded(d);
    const size_t bytes = D + 24;
    for (size_t r = 0; r < n; r++) {
        if (r + 4 < n) {
            const char *p = (const char *)records[r + 4];
            for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
        }
        const uint8_t *b = (const uint8_t *)records[r];
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (size_t i = 0; i < D; i += 16) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(b + i));
            const __m256 x0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            const __m256 x1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), x0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), x1, a1);
        }
        const __m256 s = _mm256_add_ps(a0, a1);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        out[r] = bc_rank(b + D, _mm_cvtss_f32(h), query);
    }
}

// Sixteen levels of each record widened to 16 bits (vpmovzxbw), multiplied
// and summed in pairs (vpmaddwd: at most 2 x 255 x 255 a lane, no overflow).
__attribute__((target("avx2,fma"))) static void bc_pair_estimates_avx2(const void *record, float cc, size_t d,
                                                                       int euclidean, const void *const *records,
                                                                       size_t n, float *out) {
    const size_t D = bc_padded(d);
    const size_t bytes = D + 24;
    const uint8_t *a = (const uint8_t *)record;
    for (size_t r = 0; r < n; r++) {
        if (r + 4 < n) {
            const char *p = (const char *)records[r + 4];
            for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
        }
        const uint8_t *b = (const uint8_t *)records[r];
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        size_t i = 0;
        for (; i + 32 <= D; i += 32) {
            const __m256i x0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
            const __m256i y0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
            const __m256i x1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i + 16)));
            const __m256i y1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + i + 16)));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x0, y0));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(x1, y1));
        }
        if (i < D) {
            const __m256i x0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
            const __m256i y0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x0, y0));
        }
        const __m256i s = _mm256_add_epi32(s0, s1);
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        out[r] = bc_pair_rank(a + D, b + D, _mm_cvtsi128_si32(h), cc, d, euclidean);
    }
}
#endif

typedef void (*cc_estimates_fn)(const int8_t *, const lodestone_cc_query *, size_t, const void *const *, size_t,
                                float *);
typedef void (*bc_estimates_fn)(const float *, const lodestone_cc_query *, size_t, const void *const *, size_t,
                                float *);
typedef void (*bc_pair_estimates_fn)(const void *, float, size_t, int, const void *const *, size_t, float *);

/// One ISA's estimate kernels for both kinds of per-vector codes.
typedef struct {
    cc_estimates_fn compact;
    bc_estimates_fn build;
    bc_pair_estimates_fn build_pairs;
} codes_kernels;

static const codes_kernels codes_portable = {estimates_portable, bc_estimates_portable, bc_pair_estimates_portable};
#ifdef LODESTONE_X86
static const codes_kernels codes_avx2 = {estimates_avx2, bc_estimates_avx2, bc_pair_estimates_avx2};
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

void lodestone_bc_estimates(const float *q, const lodestone_cc_query *query, size_t d, const void *const *records,
                            size_t n, float *out) {
    codes_active()->build(q, query, d, records, n, out);
}

void lodestone_bc_estimates_portable(const float *q, const lodestone_cc_query *query, size_t d,
                                     const void *const *records, size_t n, float *out) {
    bc_estimates_portable(q, query, d, records, n, out);
}

void lodestone_bc_pair_estimates(const void *record, float center_norm2, size_t d, int euclidean,
                                 const void *const *records, size_t n, float *out) {
    codes_active()->build_pairs(record, center_norm2, d, euclidean, records, n, out);
}

void lodestone_bc_pair_estimates_portable(const void *record, float center_norm2, size_t d, int euclidean,
                                          const void *const *records, size_t n, float *out) {
    bc_pair_estimates_portable(record, center_norm2, d, euclidean, records, n, out);
}
