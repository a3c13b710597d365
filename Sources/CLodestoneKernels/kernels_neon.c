// NEON kernels (AArch64, where NEON is baseline). Four 4-lane accumulators
// (16 floats per step), then a 4-lane step, then a scalar tail.
#include "kernels_internal.h"

#ifdef LODESTONE_ARM64
#include <arm_neon.h>

static inline __attribute__((always_inline)) float dot_core(const float *a, const float *b, size_t d) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= d; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < d; i++) s += a[i] * b[i];
    return s;
}

static inline __attribute__((always_inline)) float l2sq_core(const float *a, const float *b, size_t d) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        float32x4_t t0 = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        float32x4_t t1 = vsubq_f32(vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        float32x4_t t2 = vsubq_f32(vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        float32x4_t t3 = vsubq_f32(vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
        s0 = vfmaq_f32(s0, t0, t0);
        s1 = vfmaq_f32(s1, t1, t1);
        s2 = vfmaq_f32(s2, t2, t2);
        s3 = vfmaq_f32(s3, t3, t3);
    }
    for (; i + 4 <= d; i += 4) {
        float32x4_t t = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        s0 = vfmaq_f32(s0, t, t);
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < d; i++) { float t = a[i] - b[i]; s += t * t; }
    return s;
}

static float neon_dot(const float *a, const float *b, size_t d) { return dot_core(a, b, d); }
static float neon_l2sq(const float *a, const float *b, size_t d) { return l2sq_core(a, b, d); }

static float neon_cosine(const float *a, const float *b, size_t d) {
    float32x4_t sd = vdupq_n_f32(0), sa = vdupq_n_f32(0), sb = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float32x4_t x = vld1q_f32(a + i), y = vld1q_f32(b + i);
        sd = vfmaq_f32(sd, x, y);
        sa = vfmaq_f32(sa, x, x);
        sb = vfmaq_f32(sb, y, y);
    }
    float dd = vaddvq_f32(sd), na = vaddvq_f32(sa), nb = vaddvq_f32(sb);
    for (; i < d; i++) { dd += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return lodestone_cosine_from_parts(dd, na, nb);
}

static void neon_dot_rows(const float *q, const float *base, size_t stride, size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = dot_core(q, base + r * stride, d);
}

static void neon_l2sq_rows(const float *q, const float *base, size_t stride, size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = l2sq_core(q, base + r * stride, d);
}

static size_t neon_find_ge(const float *x, size_t n, float t) {
    const float32x4_t tv = vdupq_n_f32(t);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint32x4_t c = vorrq_u32(vorrq_u32(vcgeq_f32(vld1q_f32(x + i), tv), vcgeq_f32(vld1q_f32(x + i + 4), tv)),
                                 vorrq_u32(vcgeq_f32(vld1q_f32(x + i + 8), tv), vcgeq_f32(vld1q_f32(x + i + 12), tv)));
        if (vmaxvq_u32(c)) break;
    }
    for (; i < n; i++)
        if (x[i] >= t) return i;
    return n;
}

LODESTONE_DEFINE_GATHER(, neon_dot_gather, dot_core)
LODESTONE_DEFINE_GATHER(, neon_l2sq_gather, l2sq_core)

void lodestone_fill_neon(lodestone_kernel_table *t) {
    t->l2sq = neon_l2sq;
    t->dot = neon_dot;
    t->cosine = neon_cosine;
    t->l2sq_rows = neon_l2sq_rows;
    t->dot_rows = neon_dot_rows;
    t->find_ge = neon_find_ge;
    t->dot_gather = neon_dot_gather;
    t->l2sq_gather = neon_l2sq_gather;
}
#endif
