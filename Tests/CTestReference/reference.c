#include "lodestone_test_reference.h"

#include <math.h>
#include <stdlib.h>

void lodestone_test_reference_scores(const float *base, size_t rows, size_t dimension,
                                     const float *query, int metric, double *out) {
    double *q = malloc(dimension * sizeof(double));
    double norm = 0;
    for (size_t j = 0; j < dimension; j++) {
        q[j] = query[j];
        norm += q[j] * q[j];
    }
    if (metric == 0) {
        norm = sqrt(norm);
        for (size_t j = 0; j < dimension; j++) q[j] /= norm;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *x = base + r * dimension;
        double dot = 0, nn = 0, l2 = 0;
        for (size_t j = 0; j < dimension; j++) {
            double v = x[j];
            dot += q[j] * v;
            nn += v * v;
            double t = q[j] - v;
            l2 += t * t;
        }
        out[r] = metric == 0 ? dot / sqrt(nn) : metric == 1 ? dot : l2;
    }
    free(q);
}
