// AVX2 + FMA kernels (x86-64). Four 8-lane accumulators (32 floats per step),
// then an 8-lane step, then one masked load for the last 1-7 components.
#include "kernels_internal.h"

#ifdef LODESTONE_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
#define AVX2_FN __attribute__((target("avx2,fma")))

AVX2 __m256i tail_mask(size_t r) {
    // r in [1, 7]: lanes [0, r) enabled.
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), idx);
}

AVX2 float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

AVX2 float dot_core(const float *a, const float *b, size_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= d; i += 8) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    }
    if (i < d) {
        __m256i m = tail_mask(d - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

AVX2 float l2sq_core(const float *a, const float *b, size_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 t2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 t3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(t0, t0, s0);
        s1 = _mm256_fmadd_ps(t1, t1, s1);
        s2 = _mm256_fmadd_ps(t2, t2, s2);
        s3 = _mm256_fmadd_ps(t3, t3, s3);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(t, t, s0);
    }
    if (i < d) {
        __m256i m = tail_mask(d - i);
        __m256 t = _mm256_sub_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m));
        s1 = _mm256_fmadd_ps(t, t, s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

AVX2_FN static float avx2_dot(const float *a, const float *b, size_t d) { return dot_core(a, b, d); }
AVX2_FN static float avx2_l2sq(const float *a, const float *b, size_t d) { return l2sq_core(a, b, d); }

AVX2_FN static float avx2_cosine(const float *a, const float *b, size_t d) {
    __m256 sd = _mm256_setzero_ps(), sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 x = _mm256_loadu_ps(a + i), y = _mm256_loadu_ps(b + i);
        sd = _mm256_fmadd_ps(x, y, sd);
        sa = _mm256_fmadd_ps(x, x, sa);
        sb = _mm256_fmadd_ps(y, y, sb);
    }
    if (i < d) {
        __m256i m = tail_mask(d - i);
        __m256 x = _mm256_maskload_ps(a + i, m), y = _mm256_maskload_ps(b + i, m);
        sd = _mm256_fmadd_ps(x, y, sd);
        sa = _mm256_fmadd_ps(x, x, sa);
        sb = _mm256_fmadd_ps(y, y, sb);
    }
    return lodestone_cosine_from_parts(hsum(sd), hsum(sa), hsum(sb));
}

AVX2_FN static void avx2_dot_rows(const float *q, const float *base, size_t stride,
                                  size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = dot_core(q, base + r * stride, d);
}

AVX2_FN static void avx2_l2sq_rows(const float *q, const float *base, size_t stride,
                                   size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = l2sq_core(q, base + r * stride, d);
}

AVX2_FN static size_t avx2_find_ge(const float *x, size_t n, float t) {
    const __m256 tv = _mm256_set1_ps(t);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 c0 = _mm256_cmp_ps(_mm256_loadu_ps(x + i), tv, _CMP_GE_OQ);
        __m256 c1 = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 8), tv, _CMP_GE_OQ);
        __m256 c2 = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 16), tv, _CMP_GE_OQ);
        __m256 c3 = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 24), tv, _CMP_GE_OQ);
        if (_mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(c0, c1), _mm256_or_ps(c2, c3)))) break;
    }
    for (; i + 8 <= n; i += 8) {
        int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), tv, _CMP_GE_OQ));
        if (m) return i + (size_t)__builtin_ctz((unsigned)m);
    }
    for (; i < n; i++)
        if (x[i] >= t) return i;
    return n;
}

LODESTONE_DEFINE_GATHER(AVX2_FN, avx2_dot_gather, dot_core)
LODESTONE_DEFINE_GATHER(AVX2_FN, avx2_l2sq_gather, l2sq_core)

void lodestone_fill_avx2(lodestone_kernel_table *t) {
    t->l2sq = avx2_l2sq;
    t->dot = avx2_dot;
    t->cosine = avx2_cosine;
    t->l2sq_rows = avx2_l2sq_rows;
    t->dot_rows = avx2_dot_rows;
    t->find_ge = avx2_find_ge;
    t->dot_gather = avx2_dot_gather;
    t->l2sq_gather = avx2_l2sq_gather;
}
#endif
