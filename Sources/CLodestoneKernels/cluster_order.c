#include "lodestone_kernels.h"

#include <math.h>
#include <string.h>

// Whether cluster a comes before cluster b.
static inline int before(const float *values, uint16_t a, uint16_t b) {
    return values[a] < values[b] || (values[a] == values[b] && a < b);
}

enum { BINS = 64 };

// Value v's bin: 0 to BINS - 1, in the values' order (all 0 with scale 0).
static inline size_t bin(float v, float lo, double scale) {
    if (scale == 0) return 0;
    const double x = ((double)v - (double)lo) * scale;
    return x < BINS ? (size_t)x : BINS - 1;
}

// A histogram of the values finds the bin where the counts reach the target:
// the clusters of the bins below it come first (they are nearer than every
// other), bin by bin, then that bin's clusters sorted, until the target.
// The same clusters as sorting them all, in O(n) for the usual case.
size_t lodestone_nearest_clusters(const float *values, const uint32_t *counts, size_t n, size_t target,
                                  uint16_t *order, uint16_t *scratch) {
    if (n == 0) return 0;
    float lo = values[0], hi = values[0];
    for (size_t c = 1; c < n; c++) {
        if (values[c] < lo) lo = values[c];
        if (values[c] > hi) hi = values[c];
    }
    // In double, so a range too small (or too large) for a float scale
    // still bins monotonically; without a finite positive range, one bin.
    const double range = (double)hi - (double)lo;
    const double scale = range > 0 && range < HUGE_VAL ? BINS / range : 0;
    size_t sums[BINS] = {0}, sizes[BINS] = {0};
    for (size_t c = 0; c < n; c++) {
        const size_t b = bin(values[c], lo, scale);
        sums[b] += counts[c];
        sizes[b]++;
    }
    size_t last = 0, below = 0;  // the bin that reaches the target; counts before it
    while (last < BINS - 1 && below + sums[last] < target) below += sums[last++];
    // Where each bin's clusters start in `order` (bins up to `last`).
    size_t start[BINS + 1] = {0};
    start[0] = 0;
    for (size_t b = 0; b <= last; b++) start[b + 1] = start[b] + sizes[b];
    size_t next[BINS];
    memcpy(next, start, sizeof(next));
    for (size_t c = 0; c < n; c++) {
        const size_t b = bin(values[c], lo, scale);
        if (b < last) order[next[b]++] = (uint16_t)c;
        else if (b == last) scratch[next[b]++ - start[last]] = (uint16_t)c;
    }
    // The crossing bin, sorted (insertion: it holds a few clusters).
    const size_t m = sizes[last];
    for (size_t i = 1; i < m; i++) {
        uint16_t x = scratch[i];
        size_t j = i;
        while (j > 0 && before(values, x, scratch[j - 1])) {
            scratch[j] = scratch[j - 1];
            j--;
        }
        scratch[j] = x;
    }
    size_t written = start[last], sum = below;
    for (size_t i = 0; i < m && sum < target; i++) {
        order[written++] = scratch[i];
        sum += counts[scratch[i]];
    }
    return written;
}
