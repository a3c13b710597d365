#ifndef LODESTONE_HDF5_H
#define LODESTONE_HDF5_H
// Reading two-dimensional numeric datasets and string attributes from an
// HDF5 file (ann-benchmarks' format: train, test, neighbors, distances; the
// attribute "distance"). HDF5 is loaded on first use, so these functions
// fail with a message naming what to install where it is absent. Each
// returns 0 on success, or -1 with a message in err[0..errlen).
#include <stddef.h>
#include <stdint.h>

/// The shape of `dataset` (rows, and columns: 1 for a one-dimensional one).
int lodestone_h5_shape(const char *path, const char *dataset, int64_t *rows, int64_t *cols, char *err, size_t errlen);
/// Reads `dataset` converted to float32 into out[rows * cols].
int lodestone_h5_read_float(const char *path, const char *dataset, float *out, char *err, size_t errlen);
/// Reads `dataset` converted to int32 into out[rows * cols].
int lodestone_h5_read_int32(const char *path, const char *dataset, int32_t *out, char *err, size_t errlen);
/// Rows [start, start + count) of a two-dimensional dataset, as float32, row-major into out.
int lodestone_h5_read_float_rows(const char *path, const char *dataset, int64_t start, int64_t count, float *out,
                                  char *err, size_t errlen);
/// Reads the root group's string attribute `name` into out (NUL-terminated).
int lodestone_h5_string_attribute(const char *path, const char *name, char *out, size_t outlen, char *err, size_t errlen);

#endif
