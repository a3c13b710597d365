// The one system call Swift's Glibc module does not export: fallocate(2) is
// a GNU extension, declared only under _GNU_SOURCE. Swift reaches it through
// SystemCalls.punchHole, the engine's seam for system calls.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>

#include "lodestone_kernels.h"

int lodestone_punch_hole(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0 ? 0 : errno;
#else
    (void)fd; (void)offset; (void)length;
    return ENOTSUP;
#endif
}
