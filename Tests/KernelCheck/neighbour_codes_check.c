// Checks every neighbour-code kernel variant this CPU runs (AVX2, AVX-512,
// NEON) against the portable C kernels and against the documented
// estimator in double precision, on random blocks and on a worst case past
// 1,028 dimensions (where 16-bit lookup sums would wrap); with --bench, it
// times each variant's estimate and node rank on cache-resident blocks.
//
// It builds without SwiftPM, so that an AArch64 cross compiler and
// qemu-user can check the NEON variant on an x86-64 machine
// (Scripts/check-kernels.sh). `swift test` covers the variants of the
// machine it runs on.
#include "lodestone_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static float uniform(void) {  // [-1, 1)
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static int failures = 0, checks = 0;
static void expect(int ok, const char *what, double got, double want) {
    checks++;
    if (!ok && failures++ < 20) fprintf(stderr, "FAIL %s: %.9g vs %.9g\n", what, got, want);
}

static int near(double a, double b, double rel) {
    if (isinf(a) || isinf(b)) return a == b;
    return fabs(a - b) <= rel * fmax(1.0, fabs(b));
}

/// A block of `slots` neighbours in `d` dimensions, every seventh slot
/// empty. `adversarial`: the query is +-1 in every component and each
/// neighbour's residual is signed like the query, so every group looks up
/// its largest entry (255) and a slot's lookup sum is 255 * groups.
static void check(const char *name, const lodestone_qg_kernels *k, const lodestone_qg_kernels *ref, size_t d,
                  size_t slots, int adversarial) {
    const size_t bytes = lodestone_qg_block_bytes(d, slots), groups = lodestone_qg_groups(d);
    const size_t n = lodestone_qg_batches(slots) * 32;
    void *block = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    float *x = malloc(d * sizeof(float)), *c = malloc(d * sizeof(float)), *q = malloc(d * sizeof(float));
    uint8_t *lut = malloc(groups * 16), *ref_lut = malloc(groups * 16);
    float *out = malloc(n * sizeof(float)), *ref_out = malloc(n * sizeof(float));
    double *want = malloc(n * sizeof(double));
    uint32_t *masks = malloc(n / 8), *ref_masks = malloc(n / 8);
    char what[200];
    double width = 0;
    for (size_t i = 0; i < d; i++) {
        c[i] = 0.1f * uniform();
        q[i] = adversarial ? (uniform() < 0 ? -1.0f : 1.0f) : uniform();
    }
    for (size_t g = 0; g < groups; g++) {
        double lo = 0, hi = 0;
        for (size_t i = 4 * g; i < 4 * g + 4 && i < d; i++) *(q[i] < 0 ? &lo : &hi) += q[i];
        width = fmax(width, hi - lo);
    }
    const double delta = width / 255;
    for (int euclidean = 0; euclidean < 2; euclidean++) {
        const float base = 0.25f;
        lodestone_qg_clear_block(block, d, slots);
        for (size_t j = 0; j < slots; j++) {
            want[j] = INFINITY;
            if (j % 7 == 3) continue;
            double l1 = 0, l2 = 0, qcs = 0, cr = 0;
            for (size_t i = 0; i < d; i++) {
                const float r = 0.05f + fabsf(uniform());
                x[i] = c[i] + (adversarial ? (q[i] > 0 ? r : -r) : uniform());
                const double e = (double)x[i] - (double)c[i];
                l1 += fabs(e), l2 += e * e, cr += (double)c[i] * e;
                qcs += (e > 0 ? 1 : -1) * ((double)q[i] - (double)c[i]);
            }
            const double f = l1 > 0 ? l2 / l1 : 0;
            want[j] = euclidean ? base + l2 - 2 * f * qcs : base - f * qcs - cr;
            k->encode(block, d, slots, j, (uint32_t)(1000 + j), x, c, euclidean);
        }
        lodestone_qg_query query, ref_query;
        k->prepare(q, d, lut, &query);
        ref->prepare(q, d, ref_lut, &ref_query);
        size_t off = 0;
        for (size_t i = 0; i < groups * 16; i++) off += abs((int)lut[i] - (int)ref_lut[i]) > 1;
        snprintf(what, sizeof what, "%s d %zu: table entries off by more than one step", name, d);
        expect(off == 0 && query.scale == ref_query.scale && query.offset == ref_query.offset, what, (double)off, 0);
        // A slot's estimate as the threshold: masks of both kinds.
        k->estimate(block, d, slots, lut, &query, base, INFINITY, out, masks);
        const float threshold = out[0] < INFINITY ? out[0] : out[1];
        k->estimate(block, d, slots, lut, &query, base, threshold, out, masks);
        ref->estimate(block, d, slots, lut, &query, base, threshold, ref_out, ref_masks);
        // Variants differ only in rounding (summation order, fused
        // multiply-adds): a few float steps of the largest term, f <q, s>.
        double sum_abs_q = 0;
        for (size_t i = 0; i < d; i++) sum_abs_q += fabs(q[i]);
        const double f_bound = 4.0;  // f = |r|^2 / |r|_1 <= max |r_i| < 2.2 here
        for (size_t j = 0; j < n; j++) {
            snprintf(what, sizeof what, "%s d %zu euclidean %d adversarial %d slot %zu", name, d, euclidean,
                     adversarial, j);
            const double rounding = 8 * 1.2e-7 * (fabs(ref_out[j]) + 2 * f_bound * (sum_abs_q + fabs(query.offset)));
            expect((isinf(out[j]) && out[j] == ref_out[j]) || fabs(out[j] - ref_out[j]) <= rounding, what, out[j],
                   ref_out[j]);
            expect((int)((masks[j / 32] >> (j % 32)) & 1) == (out[j] < threshold), what,
                   (double)((masks[j / 32] >> (j % 32)) & 1), out[j] < threshold);
            if (j >= slots || j % 7 == 3) {
                expect(isinf(out[j]) && out[j] > 0, what, out[j], INFINITY);
                continue;
            }
            // Each group's entry is within half a step of its sum.
            const double tolerance = (euclidean ? 2 : 1) * f_bound * 2 * (double)groups * delta / 2 + 1e-3 * fmax(1, fabs(want[j]));
            expect(fabs((double)out[j] - want[j]) <= tolerance, what, out[j], want[j]);
        }
        const float qq = (float)d;
        const float rank = k->node_rank(block, d, slots, q, qq, euclidean);
        const float ref_rank = ref->node_rank(block, d, slots, q, qq, euclidean);
        snprintf(what, sizeof what, "%s d %zu euclidean %d node rank", name, d, euclidean);
        expect(near(rank, ref_rank, 1e-5), what, rank, ref_rank);
    }
    free(block), free(x), free(c), free(q), free(lut), free(ref_lut), free(out), free(ref_out), free(want);
    free(masks), free(ref_masks);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/// Estimates per second over 64 cache-resident blocks of 384 dimensions.
static void bench(const char *name, const lodestone_qg_kernels *k) {
    const size_t d = 384, slots = 32, blocks = 64, bytes = lodestone_qg_block_bytes(d, slots);
    uint8_t *memory = aligned_alloc(64, blocks * bytes);
    float x[384], c[384], q[384], out[32];
    uint32_t masks[1];
    uint8_t lut[2048];
    for (size_t b = 0; b < blocks; b++) {
        void *block = memory + b * bytes;
        for (size_t i = 0; i < d; i++) c[i] = uniform();
        lodestone_qg_clear_block(block, d, slots);
        lodestone_qg_encode_node(block, d, slots, c);
        for (size_t j = 0; j < slots; j++) {
            for (size_t i = 0; i < d; i++) x[i] = uniform();
            k->encode(block, d, slots, j, (uint32_t)j, x, c, 1);
        }
    }
    for (size_t i = 0; i < d; i++) q[i] = uniform();
    lodestone_qg_query query;
    k->prepare(q, d, lut, &query);
    float sink = 0;
    for (int round = 0; round < 3; round++) {
        const size_t reps = 20000;
        double t0 = now();
        for (size_t r = 0; r < reps; r++)
            for (size_t b = 0; b < blocks; b++) {
                k->estimate(memory + b * bytes, d, slots, lut, &query, sink * 1e-30f, 0.5f, out, masks);
                sink += out[r % 32];
            }
        double t1 = now();
        for (size_t r = 0; r < reps; r++)
            for (size_t b = 0; b < blocks; b++) sink += k->node_rank(memory + b * bytes, d, slots, q, 1.0f, 1);
        double t2 = now();
        printf("%-8s estimate %6.1f ns/block  node_rank %5.1f ns  (%g)\n", name, (t1 - t0) / (reps * blocks) * 1e9,
               (t2 - t1) / (reps * blocks) * 1e9, (double)(sink > 0));
    }
    free(memory);
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        lodestone_isa isa;
    } variants[] = {{"avx2", LODESTONE_ISA_AVX2_FMA}, {"avx512", LODESTONE_ISA_AVX512}, {"neon", LODESTONE_ISA_NEON}};
    lodestone_qg_kernels portable;
    lodestone_qg_kernels_portable(&portable);
    const int timing = argc > 1 && strcmp(argv[1], "--bench") == 0;
    if (timing) bench("portable", &portable);
    int ran = 0;
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        lodestone_qg_kernels k;
        if (!lodestone_qg_kernels_for(variants[v].isa, &k)) continue;
        ran++;
        if (timing) {
            bench(variants[v].name, &k);
            continue;
        }
        const size_t shapes[][2] = {{1, 16}, {5, 32}, {8, 32}, {64, 32}, {100, 48}, {384, 32}, {768, 64}, {1032, 32}, {1536, 32}};
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) check(variants[v].name, &k, &portable, shapes[s][0], shapes[s][1], 0);
        for (size_t s = 6; s < sizeof shapes / sizeof shapes[0]; s++) check(variants[v].name, &k, &portable, shapes[s][0], shapes[s][1], 1);
        printf("%s: checked\n", variants[v].name);
    }
    // The portable kernels against the estimator too (adversarial sums included).
    if (!timing) {
        check("portable", &portable, &portable, 384, 32, 0);
        check("portable", &portable, &portable, 1536, 32, 1);
        printf("%d passed, %d failed\n", checks - failures, failures);
    }
    (void)ran;
    return failures ? 1 : 0;
}
