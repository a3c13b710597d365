// CRC-32C (Castagnoli), the checksum of every segment section: SSE4.2's
// crc32 instruction where the CPU has it, a table-driven fallback elsewhere.
#include "kernels_internal.h"

static uint32_t table[8][256];
static int table_ready = 0;

static void build_table(void) {
    // Racing builders write identical values; the flag publishes them.
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_portable(uint32_t crc, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_table();
    while (n >= 8) {
        uint64_t v;
        __builtin_memcpy(&v, p, 8);
        v ^= crc;
        crc = table[7][v & 0xFF] ^ table[6][(v >> 8) & 0xFF] ^ table[5][(v >> 16) & 0xFF] ^
              table[4][(v >> 24) & 0xFF] ^ table[3][(v >> 32) & 0xFF] ^ table[2][(v >> 40) & 0xFF] ^
              table[1][(v >> 48) & 0xFF] ^ table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#ifdef LODESTONE_X86
#include <cpuid.h>
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        __builtin_memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

static int has_sse42(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 20) & 1;
}
#endif

uint32_t lodestone_crc32c(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
#ifdef LODESTONE_X86
    static int sse42 = -1;
    int have = __atomic_load_n(&sse42, __ATOMIC_RELAXED);
    if (have < 0) {
        have = has_sse42();
        __atomic_store_n(&sse42, have, __ATOMIC_RELAXED);
    }
    crc = have ? crc32c_sse42(crc, p, n) : crc32c_portable(crc, p, n);
#else
    crc = crc32c_portable(crc, p, n);
#endif
    return ~crc;
}

uint32_t lodestone_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    return ~crc32c_portable(~crc, (const uint8_t *)data, n);
}
