// Build codes: one 8-bit code per vector (LVQ's scheme with 256 levels),
// which the graph's construction ranks candidates by instead of float32
// vectors, so a large build need not keep its vectors in memory. See
// lodestone_kernels.h for the record layout and the estimator.
#include "kernels_internal.h"
#include <string.h>
#ifdef LODESTONE_X86
#include <immintrin.h>
#endif

static size_t padded(size_t d) { return (d + 15) / 16 * 16; }

size_t lodestone_bc_record_bytes(size_t d) { return padded(d) + 16; }

void lodestone_bc_encode(const float *x, const float *center, size_t d, void *record) {
    float lo = INFINITY, hi = -INFINITY;
    double norm2 = 0;
    for (size_t i = 0; i < d; i++) {
        const float r = x[i] - center[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
        norm2 += (double)x[i] * (double)x[i];
    }
    const float step = hi > lo ? (hi - lo) / 255.0f : 0.0f;
    uint8_t *b = (uint8_t *)record;
    memset(b, 0, lodestone_bc_record_bytes(d));
    for (size_t i = 0; i < d; i++) {
        int u = step > 0 ? (int)((x[i] - center[i] - lo) / step + 0.5f) : 0;
        b[i] = (uint8_t)(u < 0 ? 0 : (u > 255 ? 255 : u));
    }
    const float tail[3] = {lo, step, (float)norm2};
    memcpy(b + padded(d), tail, sizeof tail);
}

void lodestone_bc_decode(const void *record, const float *center, size_t d, float *x) {
    const uint8_t *b = (const uint8_t *)record;
    float tail[3];
    memcpy(tail, b + padded(d), sizeof tail);
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

static void bc_estimates_portable(const float *q, const lodestone_cc_query *query, size_t d,
                                  const void *const *records, size_t n, float *out) {
    for (size_t r = 0; r < n; r++) {
        const uint8_t *b = (const uint8_t *)records[r];
        float dot = 0;
        for (size_t i = 0; i < d; i++) dot += q[i] * (float)b[i];
        out[r] = bc_rank(b + padded(d), dot, query);
    }
}

#ifdef LODESTONE_X86
// Eight levels widened to floats at a time (vpmovzxbd, vcvtdq2ps), times
// the float32 query, in four accumulators; components past d are read as
// the record's zero padding against a query that must be padded too.
__attribute__((target("avx2,fma"))) static void bc_estimates_avx2(const float *q, const lodestone_cc_query *query,
                                                                  size_t d, const void *const *records, size_t n,
                                                                  float *out) {
    const size_t D = padded(d);
    const size_t bytes = D + 16;
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
#endif

typedef void (*bc_estimates_fn)(const float *, const lodestone_cc_query *, size_t, const void *const *, size_t,
                                float *);

static bc_estimates_fn bc_variant(int isa) {
#ifdef LODESTONE_X86
    if ((isa == LODESTONE_ISA_AVX2_FMA || isa == LODESTONE_ISA_AVX512) && lodestone_cpu_supports(LODESTONE_ISA_AVX2_FMA))
        return bc_estimates_avx2;
#endif
    (void)isa;
    return NULL;
}

static bc_estimates_fn bc_active;

static bc_estimates_fn bc_choose(void) {
    const int forced = lodestone_forced_isa();
    if (forced == 0) return bc_estimates_portable;
    bc_estimates_fn f = forced > 0 ? bc_variant(forced) : NULL;
    if (!f) f = bc_variant(LODESTONE_ISA_AVX2_FMA);
    return f ? f : bc_estimates_portable;
}

void lodestone_bc_estimates(const float *q, const lodestone_cc_query *query, size_t d, const void *const *records,
                            size_t n, float *out) {
    bc_estimates_fn f = __atomic_load_n(&bc_active, __ATOMIC_ACQUIRE);
    if (!f) {
        f = bc_choose();
        __atomic_store_n(&bc_active, f, __ATOMIC_RELEASE);
    }
    f(q, query, d, records, n, out);
}

void lodestone_bc_estimates_portable(const float *q, const lodestone_cc_query *query, size_t d,
                                     const void *const *records, size_t n, float *out) {
    bc_estimates_portable(q, query, d, records, n, out);
}
