// The tests' exact reference: Float64 scores of every base row against a
// query, in plain C so that the reference stays quick in a debug build
// (the Swift loop it replaces took a third of the test run there).
#ifndef LODESTONE_TEST_REFERENCE_H
#define LODESTONE_TEST_REFERENCE_H

#include <stddef.h>

/// Metric codes: 0 cosine, 1 dot product, 2 squared euclidean distance.
/// Writes `rows` scores to `out`: cosine similarity (query and row
/// normalised in Float64), the dot product, or the squared L2 distance.
void lodestone_test_reference_scores(const float *base, size_t rows, size_t dimension,
                                     const float *query, int metric, double *out);

#endif
