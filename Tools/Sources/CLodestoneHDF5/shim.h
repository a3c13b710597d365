#ifndef CLODESTONE_HDF5_SHIM_H
#define CLODESTONE_HDF5_SHIM_H
// The HDF5 C library (Debian: libhdf5-dev, pkg-config "hdf5"). Only the
// lodestone command uses it, to read ann-benchmarks' data files.
#include <hdf5.h>
#endif
