#ifndef CLODESTONE_BLAS_SHIM_H
#define CLODESTONE_BLAS_SHIM_H
// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, pkg-config "openblas").
#include <cblas.h>
#endif
