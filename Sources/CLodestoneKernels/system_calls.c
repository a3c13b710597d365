// System calls Swift's Glibc module does not export: fallocate(2) and
// mremap(2) are GNU extensions, declared only under _GNU_SOURCE (and mremap
// is variadic). Swift reaches them through SystemCalls, the engine's seam
// for system calls.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>

#include "lodestone_kernels.h"

int lodestone_punch_hole(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0 ? 0 : errno;
#else
    (void)fd; (void)offset; (void)length;
    return ENOTSUP;
#endif
}

int lodestone_map_private_over(int fd, int64_t offset, void *address, size_t size) {
#if defined(__linux__)
    // Map first, elsewhere: what can fail for lack of memory or address
    // space fails here, with the mapping at `address` untouched.
    void *fresh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)offset);
    if (fresh == MAP_FAILED) return errno;
    // Then move it over `address`: the old pages go and the new arrive under
    // one hold of the kernel's mapping lock.
    if (mremap(fresh, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, address) == MAP_FAILED) {
        int error = errno;
        munmap(fresh, size);
        return -error;
    }
    return 0;
#else
    (void)fd; (void)offset; (void)address; (void)size;
    return ENOTSUP;
#endif
}
