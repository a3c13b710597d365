// NEON neighbour-code kernels (AArch64, where NEON is baseline): block
// estimates and node ranks; encoding and lookup tables are portable C.
#include "neighbour_codes_internal.h"

#ifdef LODESTONE_ARM64
#include <arm_neon.h>

// NEON: one group per step, its 16 code bytes looked up twice (low and
// high nibbles: slots 0-15 and 16-31) with tbl, the bytes summed in 16-bit
// lanes by widening adds, widened to 32 bits per chunk of groups.
QG_RACY void lodestone_qg_estimate_neon(const void *block, size_t d, size_t slots, const uint8_t *lut,
                                        const lodestone_qg_query *query, float base, float threshold, float *out,
                                        uint32_t *masks) {
    const size_t groups = qg_groups(d);
    const uint8x16_t low = vdupq_n_u8(0x0f);
    const uint32x4_t bit = {1, 2, 4, 8};
    for (size_t bi = 0; bi < qg_batches(slots); bi++) {
        const uint8_t *batch = batch_at((void *)block, d, slots, bi);
        // total[k]: slots 4k .. 4k + 3.
        uint32x4_t total[8];
        for (int k = 0; k < 8; k++) total[k] = vdupq_n_u32(0);
        for (size_t first = 0; first < groups; first += QG_CHUNK) {
            const size_t end = groups - first > QG_CHUNK ? first + QG_CHUNK : groups;
            // Slots 0-7, 8-15, 16-23, 24-31.
            uint16x8_t s[4] = {vdupq_n_u16(0), vdupq_n_u16(0), vdupq_n_u16(0), vdupq_n_u16(0)};
            for (size_t g = first; g < end; g++) {
                const uint8x16_t codes = vld1q_u8(batch + 16 * g), table = vld1q_u8(lut + 16 * g);
                const uint8x16_t lo = vqtbl1q_u8(table, vandq_u8(codes, low));
                const uint8x16_t hi = vqtbl1q_u8(table, vshrq_n_u8(codes, 4));
                s[0] = vaddw_u8(s[0], vget_low_u8(lo));
                s[1] = vaddw_high_u8(s[1], lo);
                s[2] = vaddw_u8(s[2], vget_low_u8(hi));
                s[3] = vaddw_high_u8(s[3], hi);
            }
            for (int part = 0; part < 4; part++) {
                total[2 * part] = vaddw_u16(total[2 * part], vget_low_u16(s[part]));
                total[2 * part + 1] = vaddw_high_u16(total[2 * part + 1], s[part]);
            }
        }
        const float *a = (const float *)(batch + groups * 16);
        const float *b = a + QG_BATCH;
        const float32x4_t scale = vdupq_n_f32(query->scale), offset = vdupq_n_f32(query->offset);
        const float32x4_t basev = vdupq_n_f32(base), limit = vdupq_n_f32(threshold);
        float *o = out + bi * QG_BATCH;
        uint32_t mask = 0;
        for (int k = 0; k < 8; k++) {
            const float32x4_t dot = vfmaq_f32(offset, scale, vcvtq_f32_u32(total[k]));
            const float32x4_t est = vfmaq_f32(vaddq_f32(basev, vld1q_f32(a + 4 * k)), vld1q_f32(b + 4 * k), dot);
            vst1q_f32(o + 4 * k, est);
            mask |= vaddvq_u32(vandq_u32(vcltq_f32(est, limit), bit)) << (4 * k);
        }
        masks[bi] = mask;
    }
}

QG_RACY float lodestone_qg_node_rank_neon(const void *block, size_t d, size_t slots, const float *q, float qq,
                                          int euclidean) {
    const int8_t *code = (const int8_t *)block + node_offset(d, slots);
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        const int8x16_t c = vld1q_s8(code + i);
        const int16x8_t l = vmovl_s8(vget_low_s8(c)), h = vmovl_high_s8(c);
        s0 = vfmaq_f32(s0, vld1q_f32(q + i), vcvtq_f32_s32(vmovl_s16(vget_low_s16(l))));
        s1 = vfmaq_f32(s1, vld1q_f32(q + i + 4), vcvtq_f32_s32(vmovl_high_s16(l)));
        s2 = vfmaq_f32(s2, vld1q_f32(q + i + 8), vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))));
        s3 = vfmaq_f32(s3, vld1q_f32(q + i + 12), vcvtq_f32_s32(vmovl_high_s16(h)));
    }
    float dot = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < d; i++) dot += q[i] * (float)code[i];
    return node_rank(dot, code, d, qq, euclidean);
}
#endif
