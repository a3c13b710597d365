#include "lodestone_hdf5.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

static void fail(char *err, size_t errlen, const char *what, const char *path, const char *name) {
    if (err && errlen) snprintf(err, errlen, "%s: %s%s%s", path, what, name ? " " : "", name ? name : "");
}

/* Opens the file quietly (HDF5 prints its own error stack otherwise). */
static hid_t open_file(const char *path, char *err, size_t errlen) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) fail(err, errlen, "not an HDF5 file, or unreadable", path, NULL);
    return file;
}

/* Opens `dataset` in the file at `path`: 0 with *file and *set open (close
 * them with close_dataset), or -1 with err filled and nothing open. */
static int open_dataset(const char *path, const char *dataset, hid_t *file, hid_t *set, char *err, size_t errlen) {
    *file = open_file(path, err, errlen);
    if (*file < 0) return -1;
    *set = H5Dopen2(*file, dataset, H5P_DEFAULT);
    if (*set < 0) {
        fail(err, errlen, "has no dataset", path, dataset);
        H5Fclose(*file);
        return -1;
    }
    return 0;
}

static void close_dataset(hid_t file, hid_t set) {
    H5Dclose(set);
    H5Fclose(file);
}

int lodestone_h5_shape(const char *path, const char *dataset, int64_t *rows, int64_t *cols, char *err, size_t errlen) {
    hid_t file, set;
    if (open_dataset(path, dataset, &file, &set, err, errlen) < 0) return -1;
    int status = -1;
    hid_t space = H5Dget_space(set);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 1};
    if (rank < 1 || rank > 2) {
        fail(err, errlen, "dataset is not one- or two-dimensional:", path, dataset);
    } else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        *rows = (int64_t)dims[0];
        *cols = rank == 2 ? (int64_t)dims[1] : 1;
        status = 0;
    }
    H5Sclose(space);
    close_dataset(file, set);
    return status;
}

static int read_as(const char *path, const char *dataset, hid_t type, void *out, char *err, size_t errlen) {
    hid_t file, set;
    if (open_dataset(path, dataset, &file, &set, err, errlen) < 0) return -1;
    int status = -1;
    hid_t stored = H5Dget_type(set);
    if (H5Tget_class(stored) != H5T_FLOAT && H5Tget_class(stored) != H5T_INTEGER) {
        fail(err, errlen, "dataset is not numeric:", path, dataset);
    } else if (H5Dread(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        fail(err, errlen, "cannot read dataset", path, dataset);
    } else {
        status = 0;
    }
    H5Tclose(stored);
    close_dataset(file, set);
    return status;
}

int lodestone_h5_read_float(const char *path, const char *dataset, float *out, char *err, size_t errlen) {
    return read_as(path, dataset, H5T_NATIVE_FLOAT, out, err, errlen);
}

int lodestone_h5_read_int32(const char *path, const char *dataset, int32_t *out, char *err, size_t errlen) {
    return read_as(path, dataset, H5T_NATIVE_INT32, out, err, errlen);
}

int lodestone_h5_read_float_rows(const char *path, const char *dataset, int64_t start, int64_t count, float *out,
                                  char *err, size_t errlen) {
    hid_t file, set;
    if (open_dataset(path, dataset, &file, &set, err, errlen) < 0) return -1;
    int status = -1;
    hid_t space = H5Dget_space(set);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 1};
    if (rank == 2) H5Sget_simple_extent_dims(space, dims, NULL);
    if (rank != 2 || start < 0 || count < 0 || (hsize_t)(start + count) > dims[0]) {
        fail(err, errlen, "rows out of range (or not a two-dimensional dataset):", path, dataset);
    } else {
        hsize_t offset[2] = {(hsize_t)start, 0}, size[2] = {(hsize_t)count, dims[1]};
        hid_t memory = H5Screate_simple(2, size, NULL);
        if (H5Sselect_hyperslab(space, H5S_SELECT_SET, offset, NULL, size, NULL) < 0 ||
            H5Dread(set, H5T_NATIVE_FLOAT, memory, space, H5P_DEFAULT, out) < 0) {
            fail(err, errlen, "cannot read rows of dataset", path, dataset);
        } else {
            status = 0;
        }
        H5Sclose(memory);
    }
    H5Sclose(space);
    close_dataset(file, set);
    return status;
}

int lodestone_h5_string_attribute(const char *path, const char *name, char *out, size_t outlen, char *err, size_t errlen) {
    hid_t file = open_file(path, err, errlen);
    if (file < 0) return -1;
    int status = -1;
    if (H5Aexists(file, name) <= 0) {
        fail(err, errlen, "has no attribute", path, name);
    } else {
        hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
        hid_t type = H5Aget_type(attr);
        if (H5Tget_class(type) != H5T_STRING) {
            fail(err, errlen, "attribute is not a string:", path, name);
        } else if (H5Tis_variable_str(type) > 0) {
            char *value = NULL;
            hid_t memtype = H5Tcopy(H5T_C_S1);
            H5Tset_size(memtype, H5T_VARIABLE);
            H5Tset_cset(memtype, H5Tget_cset(type));
            if (H5Aread(attr, memtype, &value) >= 0 && value) {
                snprintf(out, outlen, "%s", value);
                H5free_memory(value);
                status = 0;
            }
            H5Tclose(memtype);
        } else {
            size_t size = H5Tget_size(type);
            char buffer[512];
            if (size < sizeof buffer && H5Aread(attr, type, buffer) >= 0) {
                buffer[size] = 0;
                snprintf(out, outlen, "%s", buffer);
                status = 0;
            }
        }
        if (status != 0) fail(err, errlen, "cannot read attribute", path, name);
        H5Tclose(type);
        H5Aclose(attr);
    }
    H5Fclose(file);
    return status;
}
