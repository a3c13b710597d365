#include "lodestone_kernels.h"

#include <math.h>

size_t lodestone_sparse_gather(const lodestone_sparse_entry *postings, size_t n, float weight, uint32_t *cells,
                               uint32_t epoch, const uint64_t *allowed, size_t allowed_slots, uint32_t *touched,
                               float *partials, size_t count) {
    // The cells are scattered over a large array: each is requested a few
    // postings ahead so their misses overlap.
    enum { AHEAD = 16 };
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n) __builtin_prefetch(cells + 2 * (size_t)postings[i + AHEAD].key, 1);
        const uint32_t s = postings[i].key;
        if (allowed && (s >= allowed_slots || !((allowed[s >> 6] >> (s & 63)) & 1))) continue;
        const float v = weight * postings[i].value;
        uint32_t *cell = cells + 2 * (size_t)s;
        if (cell[0] != epoch) {
            cell[0] = epoch;
            cell[1] = (uint32_t)count;
            touched[count] = s;
            partials[count] = v;
            count++;
        } else {
            partials[cell[1]] += v;
        }
    }
    return count;
}

enum { CUT_BINS = 64 };

// The least float at or above `bar` whose bin, (score - bar) * scale in
// float as the histogram computes it, is `b` or more.
static float bin_edge(float bar, float scale, size_t b) {
    if (b == 0) return bar;
    float edge = bar + (float)b / scale;
    while (edge > bar && (edge - bar) * scale >= (float)b) edge = nextafterf(edge, -INFINITY);
    while ((edge - bar) * scale < (float)b) edge = nextafterf(edge, INFINITY);
    return edge;
}

size_t lodestone_best_scores(const float *scores, size_t n, float bar, size_t want, uint32_t *chosen) {
    // Eight running maxima, so the compiler keeps them in one vector
    // instead of one chain of dependent comparisons.
    float tops[8] = {bar, bar, bar, bar, bar, bar, bar, bar};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) tops[j] = scores[i + j] > tops[j] ? scores[i + j] : tops[j];
    }
    for (; i < n; i++) tops[0] = scores[i] > tops[0] ? scores[i] : tops[0];
    float top = bar;
    for (int j = 0; j < 8; j++) top = tops[j] > top ? tops[j] : top;
    // Bins in float, so the loop is a few instructions a score; a range
    // whose scale a float cannot hold is one bin.
    const double range = (double)top - (double)bar;
    const double wide = range > 0 ? CUT_BINS / range : 0;
    // Kept: every score at or above `upper` (NaN: none), then the first
    // `budget` at or above `lower`.
    float lower = bar, upper = NAN;
    size_t budget = want;
    if (wide > 0 && wide < 1e30) {
        const float scale = (float)wide;
        // Four histograms, so runs of scores in one bin do not wait on
        // each other's increments; below the bar (or NaN): the extra bin.
        uint32_t counts[4][CUT_BINS + 1] = {{0}};
        for (i = 0; i < n; i++) {
            // Written to compile without branches (a score below the bar
            // is common, and unpredictable).
            const float x = (scores[i] - bar) * scale;
            const float clamped = x < (float)(CUT_BINS - 1) ? x : (float)(CUT_BINS - 1);
            const int whole = (int)(clamped > -1.0f ? clamped : -1.0f);
            const int b = x >= 0 ? whole : CUT_BINS;
            counts[i & 3][b]++;
        }
        size_t b = CUT_BINS - 1, above = 0, in_bin = 0;
        for (;;) {
            in_bin = counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b];
            if (above + in_bin >= want || b == 0) break;
            above += in_bin;
            b--;
        }
        // All of the bins above b, then the first of bin b by position.
        lower = bin_edge(bar, scale, b);
        upper = b + 1 < CUT_BINS ? bin_edge(bar, scale, b + 1) : NAN;
        budget = want - above;
    }
    // Every score at or above `lower`, then, if a crowded bin b gave too
    // many, only the first `budget` of those below `upper`.
    size_t m = 0;
    for (i = 0; i < n; i++) {
        chosen[m] = (uint32_t)i;
        m += scores[i] >= lower;
    }
    if (m > want) {
        size_t kept = 0;
        for (size_t j = 0; j < m; j++) {
            const int high = scores[chosen[j]] >= upper;
            const int take = high || budget > 0;
            budget -= take && !high;
            chosen[kept] = chosen[j];
            kept += take;
        }
        m = kept;
    }
    return m;
}
