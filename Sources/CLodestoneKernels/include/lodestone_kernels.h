// Lodestone distance kernels: the only C in the engine.
//
// Every kernel exists once per instruction set. Each variant is compiled with a
// function-level `__attribute__((target(...)))`, so the package needs no
// compiler flags (SwiftPM refuses unsafeFlags in dependencies) and still runs
// AVX2+FMA / AVX-512 code where the CPU has it. `lodestone_kernel_table_for`
// fills a table of function pointers for one ISA; the Swift side picks the best
// supported table once, at start-up, and falls back to its portable Swift SIMD
// kernels (the reference) when no variant here applies.
//
// Conventions (all kernels):
// - `d` is the number of components; any d >= 0 is handled (tails included).
// - pointers need no particular alignment.
// - a `*_rows` kernel computes `out[i] = pair(q, base + i * stride)` for
//   i in [0, n): bit-identical to calling the pair kernel n times.
#ifndef LODESTONE_KERNELS_H
#define LODESTONE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set variants a kernel table may use.
typedef enum {
    LODESTONE_ISA_AVX2_FMA = 1,
    LODESTONE_ISA_AVX512 = 2,
    LODESTONE_ISA_NEON = 3,
} lodestone_isa;

/// A kernel over one pair of vectors.
typedef float (*lodestone_pair_fn)(const float *a, const float *b, size_t d);
/// A kernel over one query and `n` rows spaced `stride` floats apart.
typedef void (*lodestone_rows_fn)(const float *q, const float *base, size_t stride,
                                  size_t n, size_t d, float *out);

/// A kernel over one query and `n` rows given by pointers (a graph's
/// neighbours): `out[i] = pair(q, rows[i])`, bit-identical to the pair kernel.
/// It prefetches the rows a few ahead of the one it computes.
typedef void (*lodestone_gather_fn)(const float *q, const float *const *rows, size_t n,
                                    size_t d, float *out);

/// The first index i in [0, n) with x[i] >= t, or n if there is none.
typedef size_t (*lodestone_find_fn)(const float *x, size_t n, float t);

/// One ISA's kernels.
typedef struct {
    /// Squared Euclidean distance, sum((a-b)^2).
    lodestone_pair_fn l2sq;
    /// Inner product, sum(a*b).
    lodestone_pair_fn dot;
    /// Cosine distance, 1 - a.b / (|a| |b|); 1 when either vector is zero.
    lodestone_pair_fn cosine;
    /// Squared Euclidean distances of one query to many rows.
    lodestone_rows_fn l2sq_rows;
    /// Inner products of one query with many rows.
    lodestone_rows_fn dot_rows;
    /// Scans for the first value at or above a threshold (top-k selection
    /// over a tile of scores rejects most values with it, 8-16 at a time).
    lodestone_find_fn find_ge;
    /// Squared Euclidean distances of one query to rows given by pointers.
    lodestone_gather_fn l2sq_gather;
    /// Inner products of one query with rows given by pointers.
    lodestone_gather_fn dot_gather;
} lodestone_kernel_table;

/// CRC-32C (Castagnoli) of `n` bytes, continuing from `crc` (0 to start):
/// hardware crc32 where the CPU has SSE4.2, a table otherwise.
uint32_t lodestone_crc32c(uint32_t crc, const void *data, size_t n);
/// The table-driven CRC-32C, for tests to compare the fast path against.
uint32_t lodestone_crc32c_portable(uint32_t crc, const void *data, size_t n);

// Sign codes: one bit per component (RaBitQ's 1-bit code, without its
// random rotation), estimating inner products for a quantized scan whose
// best candidates are then scored exactly.
//
// A record (`lodestone_sign_record_bytes(d)` bytes) of vector x against a
// center c: `lodestone_sign_words(d)` little-endian uint64 words, bit i set
// when x[i] > c[i]; then four 4-byte fields: float factor = |x-c|^2 / |x-c|_1
// (0 when x == c), float <c, x-c>, float |x|^2, uint32 number of set bits.
//
// The estimate of <q, x-c> is factor * <q'-c, s> + <c, x-c>, with s the
// code's signs (+1/-1) and q' the query quantized to 4 bits per component
// (16 levels between its smallest and largest component after centering),
// computed from the code's popcounts against the query's four bit planes.

/// Words of a sign code for `d` components.
size_t lodestone_sign_words(size_t d);
/// Bytes of a sign-code record for `d` components.
size_t lodestone_sign_record_bytes(size_t d);
/// Writes the record of `x` against `center` (both `d` floats).
void lodestone_sign_encode(const float *x, const float *center, size_t d, void *record);

/// A query prepared for sign-code estimates (with its bit planes).
typedef struct {
    float lo2, delta2, bias;
    /// 1: estimates are of |x|^2 - 2<q, x> (squared Euclidean distance less
    /// |q|^2); 0: of -<q, x> (negated inner product); both less a constant
    /// per query, so they rank but do not equal distances.
    int euclidean;
} lodestone_sign_query;

/// Quantizes `q` (centered on `center`) into `planes` (4 x words words,
/// plane j first) and `out`.
void lodestone_sign_prepare(const float *q, const float *center, size_t d, int euclidean, uint64_t *planes,
                            lodestone_sign_query *out);
/// Rank-value estimates (lower is nearer) of the `n` records at `records`:
/// the popcnt instruction where the CPU has it.
void lodestone_sign_estimates(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                              const void *const *records, size_t n, float *out);
/// The same, portable C (for tests to compare against).
void lodestone_sign_estimates_portable(const uint64_t *planes, size_t words, const lodestone_sign_query *query,
                                       const void *const *records, size_t n, float *out);

// Packed sign codes: the sign codes of a set of vectors (a filter's
// matches) transposed into blocks of 32, so that one 256-bit shuffle looks
// up a 4-bit slice of 32 codes at once (FastScan, André et al. 2015, on
// RaBitQ's 1-bit codes). A block holds, for each byte k of a code
// (`lodestone_sign_words(d)` x 8 bytes), 32 bytes: byte j is code byte k of
// the block's vector j; then four arrays of 32 floats: factor, <c, x-c>,
// |x|^2 and the number of set bits (as a float), vector j at index j.
// Vectors past the last in the final block are zero. The query's table for
// byte k, low and high nibble, sums its 4-bit components over the nibble's
// set bits, so a packed estimate equals `lodestone_sign_estimates`' exactly.
// The AVX2 kernel sums in 16 bits, at most 240 for each two code bytes: `d`
// must be at most 4,352 (68 words).

/// The clusters a clustered scan ranks: of the `n` clusters by `values`
/// (ascending; ties by cluster number), the first whose `counts` sum to at
/// least `target` (all when they do not), into `order`, nearest first but
/// for those nearer than the last one, which may come in any order of
/// their own. `scratch` has room for `n`. Returns how many were written.
size_t lodestone_nearest_clusters(const float *values, const uint32_t *counts, size_t n, size_t target,
                                  uint16_t *order, uint16_t *scratch);

/// One posting of a sparse term (slot and value), or one component of a
/// sparse vector (term and value).
typedef struct {
    uint32_t key;
    float value;
} lodestone_sparse_entry;

/// Adds `weight` times each posting's value to its slot's score, skipping
/// slots outside `allowed` (a bitset over `allowed_slots` slots; NULL: all).
/// The first `count` entries of `touched` and `partials` are the slots
/// scored so far and their scores. `cells` holds two words per slot: the
/// epoch that last touched it, then where it is in them; a slot not yet
/// touched in `epoch` is appended. Returns the new count.
size_t lodestone_sparse_gather(const lodestone_sparse_entry *postings, size_t n, float weight, uint32_t *cells,
                               uint32_t epoch, const uint64_t *allowed, size_t allowed_slots, uint32_t *touched,
                               float *partials, size_t count);

/// The best `want` of the `n` scores at or above `bar` (all of them when
/// fewer), to within one bin of a 64-bin histogram from `bar` to the
/// highest score: every score of the bins above the one where the count
/// from the top reaches `want`, then that bin's first by position. Writes
/// their positions, ascending, to `chosen` (room for `n`) and returns how
/// many (`want` or fewer). NaN scores are never chosen.
size_t lodestone_best_scores(const float *scores, size_t n, float bar, size_t want, uint32_t *chosen);

/// Bytes of one block of 32 packed sign codes for `d` components.
size_t lodestone_sign_block_bytes(size_t d);
/// Packs the `n` sign-code records at `records` (for `d` components) into
/// ceil(n / 32) blocks at `blocks` (32-byte aligned).
void lodestone_sign_pack(const void *const *records, size_t n, size_t d, void *blocks);
/// The lookup tables of a query's bit planes (4 x `words` words, as
/// `lodestone_sign_prepare` writes them) for packed estimates: 16 x `words`
/// tables of 32 bytes (16 entries, twice), into `tables`.
void lodestone_sign_tables(const uint64_t *planes, size_t words, uint8_t *tables);
/// Rank-value estimates of the first `n` packed codes at `blocks`, equal to
/// `lodestone_sign_estimates` for the same records, into `out`; bit j of
/// `below[b]` is set when the estimate of code 32b + j is at most `bound`
/// (a scan keeping the best few then looks only at blocks with a bit set).
/// AVX2 where the CPU has it.
void lodestone_sign_block_estimates(const uint8_t *tables, size_t words, const lodestone_sign_query *query,
                                    const void *blocks, size_t n, float bound, float *out, uint32_t *below);
/// The same, portable C (for tests to compare against).
void lodestone_sign_block_estimates_portable(const uint8_t *tables, size_t words, const lodestone_sign_query *query,
                                             const void *blocks, size_t n, float bound, float *out,
                                             uint32_t *below);

// Compact codes: one 4-bit code per vector for the compact layer-0 walk
// (LVQ's scheme, Aguerrebere et al. 2023), gathered per neighbour.
//
// A record (`lodestone_cc_record_bytes(d)` bytes) of vector x against a
// center c: with r = x - c, lo and hi its smallest and largest component
// and step = (hi - lo) / 15, component i's level u_i = round((r_i - lo) /
// step) in 0...15, 4 bits each; the components are padded with zeros to a
// multiple of 64 (D), and each group of 64 takes 32 bytes: component j of
// the group sits in byte (j % 16) + 16 (j / 32), in the low nibble when
// j % 32 < 16, else the high one. Then float lo, float step, float |x|^2,
// zero padding to a multiple of 16 bytes (208 at 384-d).
//
// The estimate of <q, x> is <q, c> + lo * sum(q) + step * <q, u>, with <q,
// u> computed from q quantized to int8 (scale max|q| / 127); the rank value
// is -<q, x> (cosine, dot product) or |q|^2 + |x|^2 - 2 <q, x> (euclidean).

/// Bytes of a compact-code record for `d` components.
size_t lodestone_cc_record_bytes(size_t d);
/// Bytes of a query prepared for compact-code estimates.
size_t lodestone_cc_query_bytes(size_t d);
/// Writes the record of `x` against `center` (both `d` floats).
void lodestone_cc_encode(const float *x, const float *center, size_t d, void *record);

/// A query's numbers for compact-code estimates (its int8 components are
/// kept apart, `lodestone_cc_query_bytes(d)` bytes).
typedef struct {
    float scale, sum, qc, qq;
    int euclidean;
} lodestone_cc_query;

/// Quantizes `q` into `q8` and `out` (`center`: the codes' center).
void lodestone_cc_prepare(const float *q, const float *center, size_t d, int euclidean, int8_t *q8,
                          lodestone_cc_query *out);
/// Rank-value estimates (lower is nearer) of the `n` records at `records`:
/// AVX2 where the CPU has it (`LODESTONE_KERNELS=portable` forces C).
void lodestone_cc_estimates(const int8_t *q8, const lodestone_cc_query *query, size_t d, const void *const *records,
                            size_t n, float *out);
/// The same, portable C (for tests to compare against).
void lodestone_cc_estimates_portable(const int8_t *q8, const lodestone_cc_query *query, size_t d,
                                     const void *const *records, size_t n, float *out);

// Codes against codes, for linking a graph on its compact codes: with
// r' = lo + step * u the residual a code stands for, and a record's two
// factors A = <c, r'> and R = sum(r') (`lodestone_cc_pair_factors`), the
// estimate of <x, y> is the inner product of the vectors two codes stand for:
//     |c|^2 + A_x + A_y + lo_x R_y + lo_y R_x - d lo_x lo_y
//           + step_x step_y <u, v>
// with <u, v> summed exactly in integers; ranked as above, with both exact
// norms (the records' |x|^2).

/// A record's two factors (A, R) for pair estimates, into `out[0...1]`.
void lodestone_cc_pair_factors(const void *record, const float *center, size_t d, float *out);
/// Rank-value estimates between the vector of `record` (its factors at
/// `factors`) and those of the `n` records at `records` (theirs two floats
/// each at `record_factors`), `center_norm2` being |c|^2: AVX2 where the CPU
/// has it.
void lodestone_cc_pair_estimates(const void *record, const float *factors, float center_norm2, size_t d, int euclidean,
                                 const void *const *records, const float *record_factors, size_t n, float *out);
/// The same, portable C (for tests to compare against).
void lodestone_cc_pair_estimates_portable(const void *record, const float *factors, float center_norm2, size_t d,
                                          int euclidean, const void *const *records, const float *record_factors,
                                          size_t n, float *out);
/// The neighbour choice on codes (Malkov & Yashunin's heuristic, and the
/// fill of a list's empty slots). Walks the `n` entries in order (`rows[i]`
/// a record, `factors + 2 * i` its factors, `ranks[i]` its rank value to the
/// base node), skipping those with `skip[i]` nonzero (`skip` may be NULL),
/// and appends an entry's index to `kept` unless an entry kept already, at
/// most as far from the base, is nearer to it:
///     separation * s(estimate(i, j)) < s(ranks[i]),  s(x) = alpha + beta x
/// (s maps rank values to squared distances; separation 1, alpha 0, beta 1
/// is the heuristic itself). `kept` holds `kept_count` indices on entry,
/// which `skip` must mark, and has room for `limit`; the walk stops when
/// it holds `limit`. Returns the new count. AVX2 where the CPU has it.
size_t lodestone_cc_select(const void *const *rows, const float *factors, const float *ranks, const uint8_t *skip,
                           size_t n, uint32_t *kept, size_t kept_count, size_t limit, float separation, float alpha,
                           float beta, float center_norm2, size_t d, int euclidean);
/// The same, portable C (for tests to compare against).
size_t lodestone_cc_select_portable(const void *const *rows, const float *factors, const float *ranks,
                                    const uint8_t *skip, size_t n, uint32_t *kept, size_t kept_count, size_t limit,
                                    float separation, float alpha, float beta, float center_norm2, size_t d,
                                    int euclidean);

// Neighbour codes: the quantized graph walk. A node c's block holds, for
// each of its layer-0 neighbours x (its slots, in batches of 32), the 1-bit
// code of r = x - c (bit set when r[i] > 0) and two floats A, B, so that
//     rank(q, x) ~ rank(q, c) + A + B * <q, s>
// with s the code's signs (+1/-1) and rank the index's rank value (squared
// L2 distance for euclidean, -<q, x> otherwise). <q, s> comes from one pass
// of 4-bit table lookups over the batch (FastScan), with the query's table
// built once per query (`lodestone_qg_prepare`).
//
// Block layout (`lodestone_qg_block_bytes(d, slots)` bytes; B batches of 32
// slots, G = `lodestone_qg_groups(d)` groups of 4 components, even):
// - B * 32 uint32 neighbour ids (UINT32_MAX: empty), atomically stored;
// - per batch: G * 16 code bytes (group g's 16 bytes at 16 g: byte j holds
//   slot j's 4 bits in its low nibble and slot j+16's in its high nibble;
//   bit t is component 4 g + t), then 32 float A, then 32 float B;
// - the node's own 8-bit code, for its rank value without its float32
//   vector: d int8 components x[i] ~ scale * code[i] (scale = max|x| / 127),
//   then float scale and float |x|^2, zero padded to a multiple of 64 bytes.
// Components past d, and empty slots, have zero bits; empty slots have
// A = +infinity and B = 0 (their estimate is never below a threshold).

/// Groups of four components in a neighbour code of `d` components (even).
size_t lodestone_qg_groups(size_t d);
/// Batches of 32 slots for `slots` neighbours.
size_t lodestone_qg_batches(size_t slots);
/// Bytes of a block for `slots` neighbours of `d` components.
size_t lodestone_qg_block_bytes(size_t d, size_t slots);
/// Empties every slot of a block.
void lodestone_qg_clear_block(void *block, size_t d, size_t slots);
/// Writes slot `slot` of a block: neighbour `id` with vector `x`, the
/// block's node having vector `c` (both `d` floats); `euclidean` selects the
/// rank value the estimates are of.
void lodestone_qg_encode(void *block, size_t d, size_t slots, size_t slot, uint32_t id, const float *x,
                         const float *c, int euclidean);
/// Empties slot `slot` of a block.
void lodestone_qg_clear(void *block, size_t d, size_t slots, size_t slot);

/// A query prepared for neighbour-code estimates: <q, s> ~ scale * U + offset,
/// U the sum of the looked-up table bytes.
typedef struct {
    float scale, offset;
} lodestone_qg_query;

/// Builds `q`'s lookup table (`lodestone_qg_groups(d) * 16` bytes: group g's
/// 16 entries, entry p the sum of q over the bits of p, quantized to 8 bits
/// with one step for all groups) and its scale and offset.
void lodestone_qg_prepare(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out);
/// Estimated rank values of every slot of a block (32 per batch, empty slots
/// included) into `out`, given `base`, the rank value of the block's node
/// (exact, or from its 8-bit code); `masks[b]` gets bit j set when slot 32 b + j's estimate is below
/// `threshold`. Exact in 32 bits for any `d` (the lookup sums are widened
/// every 256 groups).
void lodestone_qg_estimate(const void *block, size_t d, size_t slots, const uint8_t *lut,
                           const lodestone_qg_query *query, float base, float threshold, float *out,
                           uint32_t *masks);

/// Writes the block's own node code from the node's vector `x` (`d` floats).
void lodestone_qg_encode_node(void *block, size_t d, size_t slots, const float *x);
/// The rank value of the block's node for query `q` from its 8-bit code
/// (close to the exact one on unit vectors: a walk orders by it and
/// re-ranks its finalists exactly; measurements:
/// docs/design/quantized-walk.md); `qq` = |q|^2, read with `euclidean`.
float lodestone_qg_node_rank(const void *block, size_t d, size_t slots, const float *q, float qq, int euclidean);

/// One instruction set's neighbour-code kernels (see the functions above
/// for what each computes). `lodestone_qg_encode`, `_prepare`, `_estimate`
/// and `_node_rank` call the variant chosen once per process: on x86-64
/// AVX-512 (F and BW), then AVX2+FMA; NEON on AArch64; else portable C.
/// `LODESTONE_KERNELS` (`portable`, `avx2`, `avx512`, `neon`), read at the
/// first call, forces one the CPU runs, as it does the distance kernels.
typedef struct {
    void (*encode)(void *block, size_t d, size_t slots, size_t slot, uint32_t id, const float *x, const float *c,
                   int euclidean);
    void (*prepare)(const float *q, size_t d, uint8_t *lut, lodestone_qg_query *out);
    void (*estimate)(const void *block, size_t d, size_t slots, const uint8_t *lut, const lodestone_qg_query *query,
                     float base, float threshold, float *out, uint32_t *masks);
    float (*node_rank)(const void *block, size_t d, size_t slots, const float *q, float qq, int euclidean);
} lodestone_qg_kernels;

/// Fills `out` with `isa`'s neighbour-code kernels and returns 1; returns 0
/// (leaving `out` untouched) when this build has no such variant or the
/// CPU lacks it.
int lodestone_qg_kernels_for(lodestone_isa isa, lodestone_qg_kernels *out);
/// Fills `out` with the portable C kernels (the reference the others are
/// tested against).
void lodestone_qg_kernels_portable(lodestone_qg_kernels *out);
/// The instruction set of the kernels this process uses (0: portable C).
int lodestone_qg_active_isa(void);

/// 1 when this CPU and OS can run the given ISA, else 0.
int lodestone_cpu_supports(lodestone_isa isa);
/// 1 when this CPU and OS can run AVX-512BW (byte and word operations).
int lodestone_cpu_supports_avx512bw(void);

/// 1 when AVX2 kernels should be preferred over AVX-512 on this CPU even
/// though both run: AMD cores (Zen 4 executes 512-bit operations as two
/// 256-bit halves), where the AVX2 flat scan measured faster
/// (measurements: docs/design/quantized-walk.md).
int lodestone_cpu_prefers_avx2(void);

/// The variant the environment variable `LODESTONE_KERNELS` names, for the
/// distance and the neighbour-code kernels alike: 0 for `portable`, a
/// `lodestone_isa` for `avx2`, `avx512` or `neon` (any case), -1 when it is
/// unset or names none of them. Whether the CPU runs it is the caller's
/// check (an unsupported one falls back to the automatic choice).
int lodestone_forced_isa(void);

/// Fills `out` with the kernels of `isa` and returns 1; returns 0 (leaving
/// `out` untouched) when this build has no such variant or the CPU lacks it.
int lodestone_kernel_table_for(lodestone_isa isa, lodestone_kernel_table *out);

/// A read prefetch hint for the cache line holding `p` (no-op where unknown).
static inline void lodestone_prefetch(const void *p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#endif
}

/// Prefetches every cache line of `bytes` bytes starting at `p` into the
/// second-level cache (prefetcht1 on x86-64).
static inline void lodestone_prefetch_bytes_l2(const void *p, size_t bytes) {
    const char *c = (const char *)p;
#if defined(__GNUC__) || defined(__clang__)
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 2);
#endif
}

/// Prefetches every cache line of `bytes` bytes starting at `p`.
static inline void lodestone_prefetch_bytes(const void *p, size_t bytes) {
    const char *c = (const char *)p;
    for (size_t off = 0; off < bytes; off += 64) lodestone_prefetch(c + off);
}

/// Frees the disk blocks under `length` bytes of `fd` from `offset`, keeping
/// the file's size (Linux fallocate PUNCH_HOLE): 0, or the error number.
int lodestone_punch_hole(int fd, int64_t offset, int64_t length);

/// Maps `size` bytes of `fd` from `offset` copy-on-write, then moves that
/// mapping over the one at `address` (Linux mmap, then mremap FIXED): 0; a
/// positive error number when nothing changed at `address`; a negative one
/// when the move failed and the range at `address` may be unmapped.
int lodestone_map_private_over(int fd, int64_t offset, void *address, size_t size);

// Atomic access to graph memory shared by concurrent readers and writers.
// Links and chunk pointers are read with acquire and written with release
// ordering (plain moves on x86-64), so a reader that sees a node's id also
// sees the node's vector, and thread sanitizer sees no race.

/// Acquire-load of a 32-bit word.
static inline uint32_t lodestone_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/// Release-store of a 32-bit word.
static inline void lodestone_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/// Acquire-load of a byte.
static inline uint8_t lodestone_load_u8(const uint8_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/// Release-store of a byte.
static inline void lodestone_store_u8(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/// Acquire-load of a pointer.
static inline void *lodestone_load_ptr(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/// Release-store of a pointer.
static inline void lodestone_store_ptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/// Sequentially consistent 64-bit load, store and fetch-add (reader epochs).
static inline uint64_t lodestone_load_u64_seq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void lodestone_store_u64_seq(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t lodestone_add_u64_seq(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }

/// Installs `desired` at `*p` if it still holds `expected`; returns 1 if so.
static inline int lodestone_cas_ptr(void **p, void *expected, void *desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/// Takes a one-byte spin lock (0 = free, 1 = held).
static inline void lodestone_spin_lock(uint8_t *lock) {
    while (__atomic_exchange_n(lock, (uint8_t)1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ volatile("yield");
#endif
        }
    }
}

/// Takes a one-byte spin lock if it is free; returns 1 if taken.
static inline int lodestone_try_lock(uint8_t *lock) {
    return __atomic_exchange_n(lock, (uint8_t)1, __ATOMIC_ACQUIRE) == 0;
}

/// Releases a one-byte spin lock.
static inline void lodestone_spin_unlock(uint8_t *lock) { __atomic_store_n(lock, (uint8_t)0, __ATOMIC_RELEASE); }

#ifdef __cplusplus
}
#endif

#endif
