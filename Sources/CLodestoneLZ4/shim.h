#ifndef CLODESTONE_LZ4_SHIM_H
#define CLODESTONE_LZ4_SHIM_H
// LZ4 block and frame APIs (Debian: liblz4-dev, pkg-config "liblz4").
#include <lz4.h>
#include <lz4frame.h>
#endif
