#include "lodestone_hdf5.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HDF5 is loaded on first use (dlopen), not linked: the shipped binary runs
 * where libhdf5 is absent, and only reading an HDF5 file asks for it. The
 * few types and constants used are declared here as HDF5 1.10-1.14 define
 * them (hid_t 64-bit since 1.10), so no HDF5 header is needed to build. */
typedef int64_t hid_t;
typedef int herr_t;
typedef int htri_t;
typedef unsigned long long hsize_t;
enum { H5P_DEFAULT = 0, H5S_ALL = 0, H5E_DEFAULT = 0, H5F_ACC_RDONLY = 0, H5S_SELECT_SET = 0 };
enum { H5T_INTEGER = 0, H5T_FLOAT = 1, H5T_STRING = 3 };
#define H5T_VARIABLE ((size_t)(-1))

/* The sonames tried, newest first; LODESTONE_HDF5_LIBRARY names another. */
static const char *const sonames[] = {
    "libhdf5_serial.so.310", "libhdf5.so.310", "libhdf5_serial.so.200", "libhdf5.so.200",
    "libhdf5_serial.so.103", "libhdf5.so.103", "libhdf5_serial.so", "libhdf5.so",
};

static struct {
    int loaded;
    char problem[400];
    herr_t (*open)(void);
    herr_t (*eset_auto)(hid_t, void *, void *);
    hid_t (*fopen)(const char *, unsigned, hid_t);
    herr_t (*fclose)(hid_t);
    hid_t (*dopen)(hid_t, const char *, hid_t);
    herr_t (*dclose)(hid_t);
    hid_t (*dget_space)(hid_t);
    hid_t (*dget_type)(hid_t);
    herr_t (*dread)(hid_t, hid_t, hid_t, hid_t, hid_t, void *);
    int (*sget_ndims)(hid_t);
    int (*sget_dims)(hid_t, hsize_t *, hsize_t *);
    hid_t (*screate_simple)(int, const hsize_t *, const hsize_t *);
    herr_t (*sselect_hyperslab)(hid_t, int, const hsize_t *, const hsize_t *, const hsize_t *, const hsize_t *);
    herr_t (*sclose)(hid_t);
    int (*tget_class)(hid_t);
    size_t (*tget_size)(hid_t);
    htri_t (*tis_variable_str)(hid_t);
    hid_t (*tcopy)(hid_t);
    herr_t (*tset_size)(hid_t, size_t);
    int (*tget_cset)(hid_t);
    herr_t (*tset_cset)(hid_t, int);
    herr_t (*tclose)(hid_t);
    htri_t (*aexists)(hid_t, const char *);
    hid_t (*aopen)(hid_t, const char *, hid_t);
    hid_t (*aget_type)(hid_t);
    herr_t (*aread)(hid_t, hid_t, void *);
    herr_t (*aclose)(hid_t);
    herr_t (*free_memory)(void *);
    hid_t *native_float, *native_int32, *c_s1;
} h5;
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;

static void load_hdf5(void) {
    void *handle = NULL;
    const char *chosen = getenv("LODESTONE_HDF5_LIBRARY");
    if (chosen && *chosen) {
        handle = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
    } else {
        for (size_t i = 0; !handle && i < sizeof sonames / sizeof *sonames; i++) {
            handle = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
        }
    }
    if (!handle) {
        snprintf(h5.problem, sizeof h5.problem,
                 "reading HDF5 files needs the HDF5 library, not found here (%s); install it "
                 "(Debian/Ubuntu: apt-get install libhdf5-103-1, or libhdf5-310 on newer releases) "
                 "or set LODESTONE_HDF5_LIBRARY to its path",
                 chosen && *chosen ? chosen : "looked for libhdf5_serial.so.* and libhdf5.so.*");
        return;
    }
    const char *missing = NULL;
#define RESOLVE(field, symbol) \
    if (!missing && !(*(void **)&h5.field = dlsym(handle, symbol))) missing = symbol
    RESOLVE(open, "H5open");
    RESOLVE(eset_auto, "H5Eset_auto2");
    RESOLVE(fopen, "H5Fopen");
    RESOLVE(fclose, "H5Fclose");
    RESOLVE(dopen, "H5Dopen2");
    RESOLVE(dclose, "H5Dclose");
    RESOLVE(dget_space, "H5Dget_space");
    RESOLVE(dget_type, "H5Dget_type");
    RESOLVE(dread, "H5Dread");
    RESOLVE(sget_ndims, "H5Sget_simple_extent_ndims");
    RESOLVE(sget_dims, "H5Sget_simple_extent_dims");
    RESOLVE(screate_simple, "H5Screate_simple");
    RESOLVE(sselect_hyperslab, "H5Sselect_hyperslab");
    RESOLVE(sclose, "H5Sclose");
    RESOLVE(tget_class, "H5Tget_class");
    RESOLVE(tget_size, "H5Tget_size");
    RESOLVE(tis_variable_str, "H5Tis_variable_str");
    RESOLVE(tcopy, "H5Tcopy");
    RESOLVE(tset_size, "H5Tset_size");
    RESOLVE(tget_cset, "H5Tget_cset");
    RESOLVE(tset_cset, "H5Tset_cset");
    RESOLVE(tclose, "H5Tclose");
    RESOLVE(aexists, "H5Aexists");
    RESOLVE(aopen, "H5Aopen");
    RESOLVE(aget_type, "H5Aget_type");
    RESOLVE(aread, "H5Aread");
    RESOLVE(aclose, "H5Aclose");
    RESOLVE(free_memory, "H5free_memory");
    /* The predefined types are globals that H5open fills in. */
    RESOLVE(native_float, "H5T_NATIVE_FLOAT_g");
    RESOLVE(native_int32, "H5T_NATIVE_INT32_g");
    RESOLVE(c_s1, "H5T_C_S1_g");
#undef RESOLVE
    if (missing) {
        snprintf(h5.problem, sizeof h5.problem, "the HDF5 library found lacks %s (HDF5 1.10 or later is needed)",
                 missing);
        return;
    }
    if (h5.open() < 0) {
        snprintf(h5.problem, sizeof h5.problem, "the HDF5 library failed to initialise (H5open)");
        return;
    }
    h5.loaded = 1;
}

static void fail(char *err, size_t errlen, const char *what, const char *path, const char *name) {
    if (err && errlen) snprintf(err, errlen, "%s: %s%s%s", path, what, name ? " " : "", name ? name : "");
}

/* Loads HDF5 and opens the file quietly (HDF5 prints its own error stack
 * otherwise). */
static hid_t open_file(const char *path, char *err, size_t errlen) {
    pthread_once(&h5_once, load_hdf5);
    if (!h5.loaded) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", path, h5.problem);
        return -1;
    }
    h5.eset_auto(H5E_DEFAULT, NULL, NULL);
    hid_t file = h5.fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) fail(err, errlen, "not an HDF5 file, or unreadable", path, NULL);
    return file;
}

/* Opens `dataset` in the file at `path`: 0 with *file and *set open (close
 * them with close_dataset), or -1 with err filled and nothing open. */
static int open_dataset(const char *path, const char *dataset, hid_t *file, hid_t *set, char *err, size_t errlen) {
    *file = open_file(path, err, errlen);
    if (*file < 0) return -1;
    *set = h5.dopen(*file, dataset, H5P_DEFAULT);
    if (*set < 0) {
        fail(err, errlen, "has no dataset", path, dataset);
        h5.fclose(*file);
        return -1;
    }
    return 0;
}

static void close_dataset(hid_t file, hid_t set) {
    h5.dclose(set);
    h5.fclose(file);
}

int lodestone_h5_shape(const char *path, const char *dataset, int64_t *rows, int64_t *cols, char *err, size_t errlen) {
    hid_t file, set;
    if (open_dataset(path, dataset, &file, &set, err, errlen) < 0) return -1;
    int status = -1;
    hid_t space = h5.dget_space(set);
    int rank = h5.sget_ndims(space);
    hsize_t dims[2] = {0, 1};
    if (rank < 1 || rank > 2) {
        fail(err, errlen, "dataset is not one- or two-dimensional:", path, dataset);
    } else {
        h5.sget_dims(space, dims, NULL);
        *rows = (int64_t)dims[0];
        *cols = rank == 2 ? (int64_t)dims[1] : 1;
        status = 0;
    }
    h5.sclose(space);
    close_dataset(file, set);
    return status;
}

/* `type` points at one of h5's predefined-type pointers, read once the file
 * is open (and so HDF5 loaded). */
static int read_as(const char *path, const char *dataset, hid_t *const *type, void *out, char *err, size_t errlen) {
    hid_t file, set;
    if (open_dataset(path, dataset, &file, &set, err, errlen) < 0) return -1;
    int status = -1;
    hid_t stored = h5.dget_type(set);
    if (h5.tget_class(stored) != H5T_FLOAT && h5.tget_class(stored) != H5T_INTEGER) {
        fail(err, errlen, "dataset is not numeric:", path, dataset);
    } else if (h5.dread(set, **type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        fail(err, errlen, "cannot read dataset", path, dataset);
    } else {
        status = 0;
    }
    h5.tclose(stored);
    close_dataset(file, set);
    return status;
}

int lodestone_h5_read_float(const char *path, const char *dataset, float *out, char *err, size_t errlen) {
    return read_as(path, dataset, &h5.native_float, out, err, errlen);
}

int lodestone_h5_read_int32(const char *path, const char *dataset, int32_t *out, char *err, size_t errlen) {
    return read_as(path, dataset, &h5.native_int32, out, err, errlen);
}

int lodestone_h5_read_float_rows(const char *path, const char *dataset, int64_t start, int64_t count, float *out,
                                  char *err, size_t errlen) {
    hid_t file, set;
    if (open_dataset(path, dataset, &file, &set, err, errlen) < 0) return -1;
    int status = -1;
    hid_t space = h5.dget_space(set);
    int rank = h5.sget_ndims(space);
    hsize_t dims[2] = {0, 1};
    if (rank == 2) h5.sget_dims(space, dims, NULL);
    if (rank != 2 || start < 0 || count < 0 || (hsize_t)(start + count) > dims[0]) {
        fail(err, errlen, "rows out of range (or not a two-dimensional dataset):", path, dataset);
    } else {
        hsize_t offset[2] = {(hsize_t)start, 0}, size[2] = {(hsize_t)count, dims[1]};
        hid_t memory = h5.screate_simple(2, size, NULL);
        if (h5.sselect_hyperslab(space, H5S_SELECT_SET, offset, NULL, size, NULL) < 0 ||
            h5.dread(set, *h5.native_float, memory, space, H5P_DEFAULT, out) < 0) {
            fail(err, errlen, "cannot read rows of dataset", path, dataset);
        } else {
            status = 0;
        }
        h5.sclose(memory);
    }
    h5.sclose(space);
    close_dataset(file, set);
    return status;
}

int lodestone_h5_string_attribute(const char *path, const char *name, char *out, size_t outlen, char *err, size_t errlen) {
    hid_t file = open_file(path, err, errlen);
    if (file < 0) return -1;
    int status = -1;
    if (h5.aexists(file, name) <= 0) {
        fail(err, errlen, "has no attribute", path, name);
    } else {
        hid_t attr = h5.aopen(file, name, H5P_DEFAULT);
        hid_t type = h5.aget_type(attr);
        if (h5.tget_class(type) != H5T_STRING) {
            fail(err, errlen, "attribute is not a string:", path, name);
        } else if (h5.tis_variable_str(type) > 0) {
            char *value = NULL;
            hid_t memtype = h5.tcopy(*h5.c_s1);
            h5.tset_size(memtype, H5T_VARIABLE);
            h5.tset_cset(memtype, h5.tget_cset(type));
            if (h5.aread(attr, memtype, &value) >= 0 && value) {
                snprintf(out, outlen, "%s", value);
                h5.free_memory(value);
                status = 0;
            }
            h5.tclose(memtype);
        } else {
            size_t size = h5.tget_size(type);
            char buffer[512];
            if (size < sizeof buffer && h5.aread(attr, type, buffer) >= 0) {
                buffer[size] = 0;
                snprintf(out, outlen, "%s", buffer);
                status = 0;
            }
        }
        if (status != 0) fail(err, errlen, "cannot read attribute", path, name);
        h5.tclose(type);
        h5.aclose(attr);
    }
    h5.fclose(file);
    return status;
}
