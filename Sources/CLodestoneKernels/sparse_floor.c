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

// The least score to keep: see lodestone_best_scores.
static float score_cut(const float *scores, size_t n, float bar, size_t want) {
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
    // whose scale a float cannot hold keeps every score.
    const double range = (double)top - (double)bar;
    const double wide = range > 0 ? CUT_BINS / range : 0;
    if (!(wide > 0 && wide < 1e30)) return bar;
    const float scale = (float)wide;
    // Four histograms, so runs of scores in one bin do not wait on each
    // other's increments.
    uint32_t counts[4][CUT_BINS + 1] = {{0}};
    for (i = 0; i < n; i++) {
        const float x = (scores[i] - bar) * scale;
        // Below the bar: the extra bin; at or past the top: the last.
        const int b = x < 0 ? CUT_BINS : (x >= CUT_BINS ? CUT_BINS - 1 : (int)x);
        counts[i & 3][b]++;
    }
    size_t b = CUT_BINS - 1;
    size_t above = counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b];
    while (above < want && b > 0) {
        b--;
        above += counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b];
    }
    if (b == 0) return bar;
    // The least float that bins at b or above.
    float cut = bar + (float)b / scale;
    while (cut > bar && (cut - bar) * scale >= (float)b) cut = nextafterf(cut, -INFINITY);
    while ((cut - bar) * scale < (float)b) cut = nextafterf(cut, INFINITY);
    return cut;
}

size_t lodestone_best_scores(const float *scores, size_t n, float bar, size_t want, uint32_t *chosen) {
    const float cut = score_cut(scores, n, bar, want);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        chosen[m] = (uint32_t)i;
        m += scores[i] >= cut;
    }
    return m;
}
