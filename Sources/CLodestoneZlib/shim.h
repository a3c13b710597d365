#ifndef CLODESTONE_ZLIB_SHIM_H
#define CLODESTONE_ZLIB_SHIM_H
// zlib's gzip file API (Debian: zlib1g-dev, pkg-config "zlib"), for
// exporting and importing gzip'd JSON Lines.
#include <zlib.h>
#endif
