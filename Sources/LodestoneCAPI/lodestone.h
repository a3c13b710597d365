/*
 * lodestone.h: the C ABI of Lodestone, an embedded approximate-nearest-
 * neighbour vector index engine (libLodestoneC.so).
 *
 * ABI version 1. Every function below is exported by libLodestoneC.so and by
 * nothing else; CI compares the library's exported `lds_` symbols with the
 * declarations in this file.
 *
 * Conventions
 * - Handles are opaque pointers. Each is released by its own `*_free`
 *   (which accepts NULL). A handle may be used from many threads at once
 *   for reads (search, query, fetch, stats) while one thread writes; see
 *   each function.
 * - Functions that can fail return an `int32_t` status: LDS_OK (0) or one of
 *   the LDS_E_* codes. When `err` is not NULL and the call fails, `*err`
 *   receives an lds_error (code and a message written for a person) that the
 *   caller releases with lds_error_free. On success `*err` is left NULL.
 * - Outputs are caller-allocated wherever their size is known in advance
 *   (search results: `nq * k` keys and scores, `nq` counts). Variable-size
 *   results (string ids, metadata, JSON) come back as an lds_matches or
 *   lds_text handle whose accessors return pointers valid until that handle
 *   is freed. Nothing returned points into memory the caller must free with
 *   anything but the matching `*_free`.
 * - Strings are UTF-8 and NUL-terminated unless a length is given. Arrays of
 *   strings are one buffer of concatenated UTF-8 plus `n + 1` int64 offsets
 *   (string i is bytes [offsets[i], offsets[i+1]) of the buffer).
 * - Vectors are float32, row-major: `n` vectors of `dimension` floats each.
 * - No argument can abort the host process: every pointer, length, count
 *   and size is checked before the engine sees it, and a bad one is
 *   LDS_E_INVALID_ARGUMENT with a message naming it.
 * - The library starts no thread and does no work until a function is
 *   called (safe to load before fork(); do not fork after using a handle).
 * - Never unload it: a call with `threads` > 1 leaves the Swift runtime's
 *   worker threads parked inside the library, and they crash the process
 *   when they wake in unmapped code after dlclose(). Link it, or dlopen it
 *   with RTLD_NODELETE (as the Python package does) and keep it loaded.
 *
 * Metrics: 0 cosine (higher score is closer), 1 euclidean (score is the
 * squared L2 distance, lower is closer), 2 dot product (higher is closer).
 * Index kinds: 0 HNSW (approximate), 1 flat (exact).
 * Durability (database indexes): 0 synchronous (fdatasync per write),
 * 1 group commit (concurrent writers share a flush), 2 none (the OS decides).
 */
#ifndef LODESTONE_H
#define LODESTONE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cdef-begin: the Python package feeds what follows to cffi. */

#define LDS_ABI_VERSION 4

#define LDS_OK 0
#define LDS_E_INVALID_ARGUMENT 1
#define LDS_E_DIMENSION_MISMATCH 2
#define LDS_E_NON_FINITE 3
#define LDS_E_ZERO_VECTOR 4
#define LDS_E_EMPTY_INDEX 5
#define LDS_E_KEY_NOT_FOUND 6
#define LDS_E_DUPLICATE_KEY 7
#define LDS_E_MALFORMED_FILE 8
#define LDS_E_CORRUPT 9
#define LDS_E_UNSUPPORTED_VERSION 10
#define LDS_E_INVALID_FILTER 11
#define LDS_E_INVALID_METADATA 12
#define LDS_E_IO 13
#define LDS_E_INDEX_NOT_FOUND 14
#define LDS_E_INDEX_EXISTS 15
#define LDS_E_INDEX_CLOSED 16
#define LDS_E_LOCKED 17
#define LDS_E_EMBEDDING_MODEL_MISMATCH 18
#define LDS_E_INVALID_ID 19
#define LDS_E_RECORD_NOT_FOUND 20
#define LDS_E_MALFORMED_LINE 21
#define LDS_E_READ_ONLY 22
#define LDS_E_CANCELLED 23 /* Swift async calls only: the C API never cancels */
#define LDS_E_INTERNAL 99

#define LDS_METRIC_COSINE 0
#define LDS_METRIC_EUCLIDEAN 1
#define LDS_METRIC_DOT_PRODUCT 2

#define LDS_KIND_HNSW 0
#define LDS_KIND_FLAT 1
#define LDS_KIND_SPARSE 2

/* An HNSW index's layer-0 walk (HNSWParameters.Traversal). */
#define LDS_TRAVERSAL_EXACT 0
#define LDS_TRAVERSAL_QUANTIZED 1
/* One 4-bit code per vector: the least memory. A library built before it
 * answers LDS_E_INVALID_ARGUMENT. */
#define LDS_TRAVERSAL_COMPACT 2

#define LDS_DURABILITY_SYNCHRONOUS 0
#define LDS_DURABILITY_GROUP_COMMIT 1
#define LDS_DURABILITY_NONE 2

typedef struct lds_error lds_error;
typedef struct lds_vindex lds_vindex;
typedef struct lds_db lds_db;
typedef struct lds_index lds_index;
typedef struct lds_matches lds_matches;
typedef struct lds_text lds_text;

/* ---- Library --------------------------------------------------------- */

/* LDS_ABI_VERSION of the library actually loaded: refuse to run if it
 * differs from the header's. */
uint32_t lds_abi_version(void);
/* The library's version ("0.1.0"); a static string. */
const char *lds_version(void);
/* The distance kernel chosen for this CPU ("avx2-fma", "avx512", "neon",
 * "portable"); a static string. */
const char *lds_kernel_name(void);

/* ---- Errors ---------------------------------------------------------- */

/* The LDS_E_* code. */
int32_t lds_error_code(const lds_error *error);
/* The message, valid until lds_error_free. */
const char *lds_error_message(const lds_error *error);
void lds_error_free(lds_error *error);

/* ---- Vector indexes with integer keys (HNSW or flat) ----------------- *
 * Not durable by themselves: lds_vindex_persist writes one checksummed
 * segment file atomically; lds_vindex_open maps it back in milliseconds.
 * Thread safety: searches may run on many threads while one thread calls
 * add/upsert/remove. */

/* A new, empty flat (exact) index. */
int32_t lds_vindex_new_flat(int64_t dimension, int32_t metric, lds_vindex **out, lds_error **err);
/* A new, empty HNSW index: m links per node (2-128, typically 16),
 * ef_construction (build beam, >= 1, typically 200), ef_search (default
 * query beam, >= 1), seed for the level generator, traversal (an
 * LDS_TRAVERSAL_*; ABI 2). */
int32_t lds_vindex_new_hnsw(int64_t dimension, int32_t metric, int64_t m, int64_t ef_construction,
                            int64_t ef_search, uint64_t seed, int32_t traversal, lds_vindex **out,
                            lds_error **err);
/* Opens a segment written by lds_vindex_persist (either kind). */
int32_t lds_vindex_open(const char *path, lds_vindex **out, lds_error **err);
void lds_vindex_free(lds_vindex *index);

/* Adds n vectors (n * dimension floats) under n distinct new keys, on
 * `threads` threads (HNSW; >= 1). Validated as a whole first: on error
 * nothing is added. */
int32_t lds_vindex_add(lds_vindex *index, const float *vectors, const uint64_t *keys, int64_t n, int32_t threads,
                       lds_error **err);
/* Adds or replaces n vectors by key. */
int32_t lds_vindex_upsert(lds_vindex *index, const float *vectors, const uint64_t *keys, int64_t n,
                          int32_t threads, lds_error **err);
/* Removes n keys; *removed (if not NULL) receives how many were present. */
int32_t lds_vindex_remove(lds_vindex *index, const uint64_t *keys, int64_t n, int64_t *removed, lds_error **err);

/* Top-k for nq queries (nq * dimension floats), best first. Writes
 * keys_out[nq * k], scores_out[nq * k] and counts_out[nq] (results found
 * for each query: min(k, count)); slots past a query's count hold key
 * UINT64_MAX and a NaN score. An empty index is LDS_E_EMPTY_INDEX.
 * ef: the HNSW beam (0 = the index's default; ignored by a flat index).
 * threads: >= 1; a flat index answers a batch through BLAS. Batches return
 * exactly what one-at-a-time calls return. */
int32_t lds_vindex_search(const lds_vindex *index, const float *queries, int64_t nq, int64_t k, int64_t ef,
                          int32_t threads, uint64_t *keys_out, float *scores_out, int32_t *counts_out,
                          lds_error **err);

/* Like lds_vindex_search, among the keys in allowed_keys only (n_allowed
 * keys, any uint64 values; keys not in the index are ignored). Each query
 * gets min(k, matches) results; the queries are validated even when no
 * key is allowed. */
int32_t lds_vindex_search_filtered(const lds_vindex *index, const float *queries, int64_t nq, int64_t k,
                                   int64_t ef, const uint64_t *allowed_keys, int64_t n_allowed, int32_t threads,
                                   uint64_t *keys_out, float *scores_out, int32_t *counts_out, lds_error **err);

/* Copies the vector stored under key into out[dimension] (cosine: the
 * normalised vector). LDS_E_KEY_NOT_FOUND if absent. */
int32_t lds_vindex_get(const lds_vindex *index, uint64_t key, float *out, lds_error **err);
/* Writes the index to `path` (a single segment file, atomically). */
int32_t lds_vindex_persist(const lds_vindex *index, const char *path, lds_error **err);

int64_t lds_vindex_count(const lds_vindex *index);
int64_t lds_vindex_dimension(const lds_vindex *index);
int32_t lds_vindex_metric(const lds_vindex *index);
int32_t lds_vindex_kind(const lds_vindex *index);
/* Approximate bytes of memory the index holds (vectors, links, tables). */
int64_t lds_vindex_memory_bytes(const lds_vindex *index);

/* ---- Database: named, durable indexes of records ------------------- *
 * A directory of named indexes (HNSW or flat) of records: string id,
 * vector, metadata (a JSON object of strings, numbers, booleans and lists
 * of strings), in namespaces. Every write is validated, logged and synced
 * before it returns. Filters are Pinecone's JSON filter language. */

/* Opens (creating if missing) the database directory `path`. */
int32_t lds_db_open(const char *path, lds_db **out, lds_error **err);
/* Opens the existing database directory `path` read-only: its indexes
 * search, fetch and list; writes fail with LDS_E_READ_ONLY. Any number of
 * processes may hold it read-only at once (sharing the mapped segments'
 * pages); none may while a process has an index open for writing
 * (LDS_E_LOCKED), and a writer is refused while readers hold it. */
int32_t lds_db_open_read_only(const char *path, lds_db **out, lds_error **err);
/* Closes every index this database opened (persisting each first when
 * `persist` is non-zero). The handle stays usable. */
int32_t lds_db_close(lds_db *db, int32_t persist, lds_error **err);
void lds_db_free(lds_db *db);

/* Creates an index. embedding_model may be NULL or "". m/ef_construction/
 * ef_search: HNSW parameters (0 = defaults 16/200/64); traversal: an
 * LDS_TRAVERSAL_* (ABI 2). */
int32_t lds_db_create_index(lds_db *db, const char *name, int64_t dimension, int32_t metric,
                            const char *embedding_model, int32_t kind, int64_t m, int64_t ef_construction,
                            int64_t ef_search, int32_t traversal, int32_t durability, lds_index **out,
                            lds_error **err);
/* lds_db_create_index with a text field (ABI 4; NULL: none): the index keeps
 * a BM25 vector of each record's metadata[text_field] (a string) as its
 * sparse values, and lds_index_query_text searches it. */
int32_t lds_db_create_text_index(lds_db *db, const char *name, int64_t dimension, int32_t metric,
                                 const char *embedding_model, int32_t kind, int64_t m, int64_t ef_construction,
                                 int64_t ef_search, int32_t traversal, int32_t durability, const char *text_field,
                                 lds_index **out, lds_error **err);
/* Opens an existing index. When embedding_model is not NULL it must equal
 * the index's (else LDS_E_EMBEDDING_MODEL_MISMATCH, naming both). */
int32_t lds_db_open_index(lds_db *db, const char *name, const char *embedding_model, int32_t durability,
                          lds_index **out, lds_error **err);
int32_t lds_db_delete_index(lds_db *db, const char *name, lds_error **err);
/* JSON array of index names, sorted. */
int32_t lds_db_list_indexes(lds_db *db, lds_text **out, lds_error **err);
/* JSON object: name, dimension, metric, embedding_model, kind, record_count,
 * disk_bytes, resident_bytes_per_vector (bytes a vector that searches read;
 * null for a sparse index), ready, text_field (null when none). */
int32_t lds_db_describe_index(lds_db *db, const char *name, lds_text **out, lds_error **err);
/* Imports gzip'd JSON Lines (lds_index_export's format) into index `name`,
 * creating it if missing (dimension 0: from the first record). Writes a
 * JSON report: records, skipped_lines, created_index. */
int32_t lds_db_import(lds_db *db, const char *path, const char *name, int64_t dimension, int32_t metric,
                      const char *embedding_model, int32_t skip_bad_lines, lds_text **out, lds_error **err);

/* Releases the handle (not the index: other handles, and the database,
 * may still use it). */
void lds_index_free(lds_index *index);
/* Closes the index (persisting its log first when `persist`), releasing
 * the directory's lock. Later calls on any handle to it fail with
 * LDS_E_INDEX_CLOSED. */
int32_t lds_index_close(lds_index *index, int32_t persist, lds_error **err);

int64_t lds_index_dimension(const lds_index *index);
int32_t lds_index_metric(const lds_index *index);
int32_t lds_index_kind(const lds_index *index);
/* The embedding model name; valid as long as the handle. */
const char *lds_index_embedding_model(const lds_index *index);
/* The text field's name (ABI 4), or NULL; valid as long as the handle. */
const char *lds_index_text_field(const lds_index *index);
/* Records in all namespaces (-1 if the index is closed). */
int64_t lds_index_count(const lds_index *index);

/* Adds or replaces n records in `namespace_` (NULL = ""): ids as a string
 * array (ids + id_offsets[n + 1]), values[n * dimension], and metadata as
 * a string array of JSON objects (NULL for none; an empty string = none for
 * that record). embedding_model: NULL, or checked against the index's.
 * Validated as a whole: on error nothing is stored. */
int32_t lds_index_upsert(lds_index *index, const char *ids, const int64_t *id_offsets, int64_t n,
                         const float *values, const char *metadata, const int64_t *metadata_offsets,
                         const char *namespace_, const char *embedding_model, int32_t threads, lds_error **err);
/* Queries by vector (dimension floats). filter_json: NULL or a Pinecone
 * filter ("{}" matches everything). ef: 0 = default. */
int32_t lds_index_query(const lds_index *index, const float *vector, int64_t top_k, const char *namespace_,
                        const char *filter_json, int32_t include_values, int32_t include_metadata, int64_t ef,
                        lds_matches **out, lds_error **err);
/* Queries by the vector of a stored record. */
int32_t lds_index_query_id(const lds_index *index, const char *id, int64_t top_k, const char *namespace_,
                           const char *filter_json, int32_t include_values, int32_t include_metadata, int64_t ef,
                           lds_matches **out, lds_error **err);
/* nq queries at once (BLAS on a flat index); the lds_matches holds nq
 * groups. Answers equal nq single queries. */
int32_t lds_index_query_batch(const lds_index *index, const float *vectors, int64_t nq, int64_t top_k,
                              const char *namespace_, const char *filter_json, int32_t include_values,
                              int32_t include_metadata, int64_t ef, int32_t threads, lds_matches **out,
                              lds_error **err);
/* The records with these ids (absent ids are left out), with values and
 * metadata, as one group (scores are 0). */
int32_t lds_index_fetch(const lds_index *index, const char *ids, const int64_t *id_offsets, int64_t n,
                        const char *namespace_, lds_matches **out, lds_error **err);
/* lds_index_upsert with sparse vectors: record i's components are
 * sparse_indices and sparse_values [sparse_offsets[i], sparse_offsets[i+1])
 * (n + 1 offsets from 0; equal offsets: none; any order, unique indices,
 * finite values, at most 2048). values: NULL on a sparse index (kind
 * LDS_KIND_SPARSE, dimension 0), whose records need sparse vectors. */
int32_t lds_index_upsert_sparse(lds_index *index, const char *ids, const int64_t *id_offsets, int64_t n,
                                const float *values, const int64_t *sparse_offsets, const uint32_t *sparse_indices,
                                const float *sparse_values, const char *metadata, const int64_t *metadata_offsets,
                                const char *namespace_, const char *embedding_model, int32_t threads, lds_error **err);
/* A sparse query (vector NULL: records ranked by sparse dot product,
 * exactly) or a hybrid one (vector: dimension floats). fusion: 0 the sum
 * of the dense score and the sparse dot product (Pinecone's), 1
 * reciprocal-rank fusion with constant rrf_k. */
int32_t lds_index_query_sparse(const lds_index *index, const float *vector, const uint32_t *sparse_indices,
                               const float *sparse_values, int64_t nnz, int64_t top_k, const char *namespace_,
                               const char *filter_json, int32_t fusion, int64_t rrf_k, int32_t include_values,
                               int32_t include_metadata, int64_t ef, lds_matches **out, lds_error **err);
/* BM25 search of the index's text field (ABI 4): text alone (vector NULL),
 * or a hybrid query with a dense vector, fused as lds_index_query_sparse
 * fuses. Term weights are idf over the records stored now. An index
 * without a text field is LDS_E_INVALID_ARGUMENT. */
int32_t lds_index_query_text(const lds_index *index, const char *text, const float *vector, int64_t top_k,
                             const char *namespace_, const char *filter_json, int32_t fusion, int64_t rrf_k,
                             int32_t include_values, int32_t include_metadata, int64_t ef, lds_matches **out,
                             lds_error **err);
/* Sets a record's values (NULL: keep) and merges set_metadata_json (NULL:
 * keep) into its metadata. LDS_E_RECORD_NOT_FOUND if absent. */
int32_t lds_index_update(lds_index *index, const char *id, const float *values, const char *set_metadata_json,
                         const char *namespace_, lds_error **err);
/* Deletes these ids (absent ones are ignored); *deleted gets the count. */
int32_t lds_index_delete(lds_index *index, const char *ids, const int64_t *id_offsets, int64_t n,
                         const char *namespace_, int64_t *deleted, lds_error **err);
/* Deletes the records passing filter_json. */
int32_t lds_index_delete_filter(lds_index *index, const char *filter_json, const char *namespace_,
                                int64_t *deleted, lds_error **err);
/* Deletes every record of the namespace. */
int32_t lds_index_delete_all(lds_index *index, const char *namespace_, int64_t *deleted, lds_error **err);
/* A page of ids (sorted bytewise) as JSON: {"ids": [...], "next": "..." or
 * null}. prefix/filter_json/pagination_token may be NULL. */
int32_t lds_index_list_ids(const lds_index *index, const char *namespace_, const char *prefix,
                           const char *filter_json, int64_t limit, const char *pagination_token, lds_text **out,
                           lds_error **err);
/* JSON: {"namespaces": {"": {"vector_count": n}, ...}, "dimension": d,
 * "total_vector_count": n, "metric": "cosine"}. */
int32_t lds_index_stats(const lds_index *index, lds_text **out, lds_error **err);
/* Folds the log into a new segment. */
int32_t lds_index_persist(lds_index *index, lds_error **err);
/* Writes every record as gzip'd JSON Lines; *records gets the count. */
int32_t lds_index_export(const lds_index *index, const char *path, int64_t *records, lds_error **err);

/* ---- Results ---------------------------------------------------------- *
 * An lds_matches holds groups (one per query) of matches. Group g is
 * matches [offsets[g], offsets[g+1]). */
int64_t lds_matches_groups(const lds_matches *matches);
/* groups + 1 offsets. */
const int64_t *lds_matches_offsets(const lds_matches *matches);
/* Total matches (offsets[groups]). */
int64_t lds_matches_count(const lds_matches *matches);
const float *lds_matches_scores(const lds_matches *matches);
/* The ids: a string array (count + 1 offsets written to *offsets). */
const char *lds_matches_ids(const lds_matches *matches, const int64_t **offsets);
/* count * dimension floats, or NULL when values were not asked for. */
const float *lds_matches_values(const lds_matches *matches);
/* Metadata JSON objects as a string array (an empty string: no metadata),
 * or NULL when metadata was not asked for. */
const char *lds_matches_metadata(const lds_matches *matches, const int64_t **offsets);
/* The matches' sparse vectors (values asked for, or fetched): count + 1
 * offsets; match i's components are (*indices)[offsets[i] ..< offsets[i+1]]
 * and the same range of *values (equal offsets: none). NULL when values
 * were not asked for. */
const int64_t *lds_matches_sparse(const lds_matches *matches, const uint32_t **indices, const float **values);
void lds_matches_free(lds_matches *matches);

/* Text (JSON) results: the bytes and their length (also NUL-terminated). */
const char *lds_text_data(const lds_text *text, size_t *length);
void lds_text_free(lds_text *text);

/* cdef-end */

#ifdef __cplusplus
}
#endif

#endif /* LODESTONE_H */
