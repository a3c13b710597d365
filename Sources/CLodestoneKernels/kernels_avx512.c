// AVX-512F kernels (x86-64). Four 16-lane accumulators (64 floats per step),
// then a 16-lane step, then one masked load for the last 1-15 components.
#include "kernels_internal.h"

#ifdef LODESTONE_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f"), always_inline)) static inline
#define AVX512_FN __attribute__((target("avx512f")))

AVX512 __mmask16 tail_mask(size_t r) { return (__mmask16)((1u << r) - 1u); }

AVX512 float dot_core(const float *a, const float *b, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= d; i += 16) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    }
    if (i < d) {
        __mmask16 m = tail_mask(d - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 float l2sq_core(const float *a, const float *b, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= d; i += 64) {
        __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 t2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 t3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(t0, t0, s0);
        s1 = _mm512_fmadd_ps(t1, t1, s1);
        s2 = _mm512_fmadd_ps(t2, t2, s2);
        s3 = _mm512_fmadd_ps(t3, t3, s3);
    }
    for (; i + 16 <= d; i += 16) {
        __m512 t = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(t, t, s0);
    }
    if (i < d) {
        __mmask16 m = tail_mask(d - i);
        __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(t, t, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512_FN static float avx512_dot(const float *a, const float *b, size_t d) { return dot_core(a, b, d); }
AVX512_FN static float avx512_l2sq(const float *a, const float *b, size_t d) { return l2sq_core(a, b, d); }

AVX512_FN static float avx512_cosine(const float *a, const float *b, size_t d) {
    __m512 sd = _mm512_setzero_ps(), sa = _mm512_setzero_ps(), sb = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m512 x = _mm512_loadu_ps(a + i), y = _mm512_loadu_ps(b + i);
        sd = _mm512_fmadd_ps(x, y, sd);
        sa = _mm512_fmadd_ps(x, x, sa);
        sb = _mm512_fmadd_ps(y, y, sb);
    }
    if (i < d) {
        __mmask16 m = tail_mask(d - i);
        __m512 x = _mm512_maskz_loadu_ps(m, a + i), y = _mm512_maskz_loadu_ps(m, b + i);
        sd = _mm512_fmadd_ps(x, y, sd);
        sa = _mm512_fmadd_ps(x, x, sa);
        sb = _mm512_fmadd_ps(y, y, sb);
    }
    return lodestone_cosine_from_parts(_mm512_reduce_add_ps(sd), _mm512_reduce_add_ps(sa),
                                       _mm512_reduce_add_ps(sb));
}

AVX512_FN static void avx512_dot_rows(const float *q, const float *base, size_t stride,
                                      size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = dot_core(q, base + r * stride, d);
}

AVX512_FN static void avx512_l2sq_rows(const float *q, const float *base, size_t stride,
                                       size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = l2sq_core(q, base + r * stride, d);
}

AVX512_FN static size_t avx512_find_ge(const float *x, size_t n, float t) {
    const __m512 tv = _mm512_set1_ps(t);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __mmask16 m0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), tv, _CMP_GE_OQ);
        __mmask16 m1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 16), tv, _CMP_GE_OQ);
        __mmask16 m2 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 32), tv, _CMP_GE_OQ);
        __mmask16 m3 = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 48), tv, _CMP_GE_OQ);
        if ((unsigned)m0 | (unsigned)m1 | (unsigned)m2 | (unsigned)m3) break;
    }
    for (; i + 16 <= n; i += 16) {
        unsigned m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), tv, _CMP_GE_OQ);
        if (m) return i + (size_t)__builtin_ctz(m);
    }
    for (; i < n; i++)
        if (x[i] >= t) return i;
    return n;
}

LODESTONE_DEFINE_GATHER(AVX512_FN, avx512_dot_gather, dot_core)
LODESTONE_DEFINE_GATHER(AVX512_FN, avx512_l2sq_gather, l2sq_core)

void lodestone_fill_avx512(lodestone_kernel_table *t) {
    t->l2sq = avx512_l2sq;
    t->dot = avx512_dot;
    t->cosine = avx512_cosine;
    t->l2sq_rows = avx512_l2sq_rows;
    t->dot_rows = avx512_dot_rows;
    t->find_ge = avx512_find_ge;
    t->dot_gather = avx512_dot_gather;
    t->l2sq_gather = avx512_l2sq_gather;
}
#endif
