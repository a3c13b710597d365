/* The C ABI from C: compiled with -Wall -Wextra -Werror against
 * lodestone.h and run by Scripts/check-c-abi.sh. Exercises every kind of
 * handle, and checks that bad arguments come back as status codes with a
 * message instead of aborting the process. */
#include "lodestone.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

/* A failed call: the status, and a message that mentions `needle`. */
static void expect_error(int32_t status, lds_error **errp, int32_t code, const char *needle) {
    lds_error *err = *errp;
    *errp = NULL;
    CHECK(status == code);
    CHECK(err != NULL);
    if (err) {
        CHECK(lds_error_code(err) == code);
        const char *message = lds_error_message(err);
        if (needle && !strstr(message, needle)) {
            fprintf(stderr, "message \"%s\" lacks \"%s\"\n", message, needle);
            failures++;
        }
        lds_error_free(err);
    }
}

static void vector_indexes(void) {
    enum { D = 8, N = 200, K = 5 };
    float *rows = malloc(sizeof(float) * N * D);
    uint64_t keys[N];
    for (int i = 0; i < N; i++) {
        keys[i] = 1000 + (uint64_t)i;
        for (int j = 0; j < D; j++) rows[i * D + j] = (float)sin(i * 0.37 + j * 1.3) + (j == i % D ? 2.0f : 0.0f);
    }
    for (int kind = 0; kind < 2; kind++) {
        lds_vindex *ix = NULL;
        lds_error *err = NULL;
        int32_t s = kind == 0 ? lds_vindex_new_hnsw(D, LDS_METRIC_EUCLIDEAN, 8, 64, 64, 7, LDS_TRAVERSAL_QUANTIZED, &ix, &err)
                              : lds_vindex_new_flat(D, LDS_METRIC_EUCLIDEAN, &ix, &err);
        CHECK(s == LDS_OK && ix != NULL && err == NULL);
        CHECK(lds_vindex_add(ix, rows, keys, N, 2, &err) == LDS_OK);
        CHECK(lds_vindex_count(ix) == N && lds_vindex_dimension(ix) == D && lds_vindex_kind(ix) == kind);
        uint64_t out_keys[3 * K];
        float out_scores[3 * K];
        int32_t counts[3];
        CHECK(lds_vindex_search(ix, rows, 3, K, 0, 1, out_keys, out_scores, counts, &err) == LDS_OK);
        for (int q = 0; q < 3; q++) {
            CHECK(counts[q] == K);
            CHECK(out_keys[q * K] == keys[q] && out_scores[q * K] == 0.0f);
        }
        /* Bad arguments: a status and a message, never a crash. */
        expect_error(lds_vindex_search(ix, NULL, 1, K, 0, 1, out_keys, out_scores, counts, &err), &err,
                     LDS_E_INVALID_ARGUMENT, "queries");
        expect_error(lds_vindex_search(ix, rows, 1, 0, 0, 1, out_keys, out_scores, counts, &err), &err,
                     LDS_E_INVALID_ARGUMENT, "k");
        expect_error(lds_vindex_search(ix, rows, -1, K, 0, 1, out_keys, out_scores, counts, &err), &err,
                     LDS_E_INVALID_ARGUMENT, "nq");
        expect_error(lds_vindex_search(ix, rows, 1, K, 0, 1, NULL, out_scores, counts, &err), &err,
                     LDS_E_INVALID_ARGUMENT, "keys_out");
        expect_error(lds_vindex_add(ix, rows, keys, 1, 1, &err), &err, LDS_E_DUPLICATE_KEY, "1000");
        expect_error(lds_vindex_add(ix, rows, keys, 1, 0, &err), &err, LDS_E_INVALID_ARGUMENT, "threads");
        expect_error(lds_vindex_search(NULL, rows, 1, K, 0, 1, out_keys, out_scores, counts, &err), &err,
                     LDS_E_INVALID_ARGUMENT, "index");
        float nan_row[D] = {0};
        nan_row[3] = NAN;
        uint64_t fresh = 1;
        expect_error(lds_vindex_add(ix, nan_row, &fresh, 1, 1, &err), &err, LDS_E_NON_FINITE, NULL);
        CHECK(lds_vindex_search(ix, rows, 1, K, 0, 1, out_keys, out_scores, counts, NULL) == LDS_OK); /* err may be NULL */
        int64_t removed = -1;
        CHECK(lds_vindex_remove(ix, keys, 10, &removed, NULL) == LDS_OK && removed == 10);
        CHECK(lds_vindex_count(ix) == N - 10);
        float got[D];
        CHECK(lds_vindex_get(ix, keys[20], got, NULL) == LDS_OK && got[1] == rows[20 * D + 1]);
        CHECK(lds_vindex_get(ix, keys[0], got, NULL) == LDS_E_KEY_NOT_FOUND);
        char path[] = "/tmp/lodestone-capi-XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        CHECK(lds_vindex_persist(ix, path, NULL) == LDS_OK);
        lds_vindex *opened = NULL;
        CHECK(lds_vindex_open(path, &opened, NULL) == LDS_OK && lds_vindex_count(opened) == N - 10);
        CHECK(lds_vindex_kind(opened) == kind);
        lds_vindex_free(opened);
        unlink(path);
        /* Handles are typed: an index handle is not an error handle. */
        CHECK(lds_error_code((lds_error *)ix) == LDS_E_INVALID_ARGUMENT);
        lds_vindex_free(ix);
    }
    lds_vindex_free(NULL);
    free(rows);
}

/* A sparse index: records with sparse vectors only, an exact sparse query
 * returning them, and a bad vector refused with nothing stored. */
static void sparse(lds_db *db) {
    lds_index *ix = NULL;
    lds_error *err = NULL;
    CHECK(lds_db_create_index(db, "keywords", 0, LDS_METRIC_DOT_PRODUCT, NULL, LDS_KIND_SPARSE, 0, 0, 0,
                              LDS_TRAVERSAL_EXACT, LDS_DURABILITY_SYNCHRONOUS, &ix, &err) == LDS_OK);
    CHECK(lds_index_kind(ix) == LDS_KIND_SPARSE && lds_index_dimension(ix) == 0);
    const char ids[] = "abc";
    const int64_t id_offsets[] = {0, 1, 2, 3};
    const int64_t offsets[] = {0, 2, 3, 5};
    const uint32_t indices[] = {7, 3, 3, 9, 7}; /* any order within a record */
    const float weights[] = {0.5f, 1.0f, 2.0f, 1.0f, 0.25f};
    CHECK(lds_index_upsert_sparse(ix, ids, id_offsets, 3, NULL, offsets, indices, weights, NULL, NULL, NULL, NULL, 1,
                                  &err) == LDS_OK);
    const uint32_t q_indices[] = {3, 7};
    const float q_weights[] = {1.0f, 1.0f};
    lds_matches *m = NULL;
    CHECK(lds_index_query_sparse(ix, NULL, q_indices, q_weights, 2, 3, NULL, NULL, 0, 0, 1, 0, 0, &m, &err) == LDS_OK);
    CHECK(lds_matches_count(m) == 3);
    const float *scores = lds_matches_scores(m);
    CHECK(fabsf(scores[0] - 2.0f) < 1e-6f && fabsf(scores[1] - 1.5f) < 1e-6f && fabsf(scores[2] - 0.25f) < 1e-6f);
    const uint32_t *got_indices = NULL;
    const float *got_weights = NULL;
    const int64_t *got = lds_matches_sparse(m, &got_indices, &got_weights);
    /* Second best is "a", stored ascending: (3, 1.0), (7, 0.5). */
    CHECK(got != NULL && got[2] - got[1] == 2 && got_indices[got[1]] == 3 && got_weights[got[1] + 1] == 0.5f);
    lds_matches_free(m);
    const uint32_t twice[] = {4, 4};
    const int64_t one[] = {0, 2};
    expect_error(lds_index_upsert_sparse(ix, "d", (const int64_t[]){0, 1}, 1, NULL, one, twice, weights, NULL, NULL,
                                         NULL, NULL, 1, &err), &err, LDS_E_INVALID_ARGUMENT, "twice");
    CHECK(lds_index_count(ix) == 3);
    CHECK(lds_index_close(ix, 1, NULL) == LDS_OK);
    lds_index_free(ix);
    CHECK(lds_db_delete_index(db, "keywords", NULL) == LDS_OK);
}

/* A text index: BM25 over metadata["body"], a text query finding the record
 * that holds the words, and a text query on an index without a text field
 * refused. */
static void text_search(lds_db *db) {
    lds_index *ix = NULL;
    lds_error *err = NULL;
    CHECK(lds_db_create_text_index(db, "texts", 2, LDS_METRIC_COSINE, NULL, LDS_KIND_FLAT, 0, 0, 0,
                                   LDS_TRAVERSAL_EXACT, LDS_DURABILITY_SYNCHRONOUS, "body", &ix, &err) == LDS_OK);
    CHECK(lds_index_text_field(ix) != NULL && strcmp(lds_index_text_field(ix), "body") == 0);
    const char ids[] = "ab";
    const char meta[] = "{\"body\": \"fast JSON parser\"}{\"body\": \"array maths\"}";
    const int64_t meta_offsets[] = {0, 28, 51};
    const float values[] = {1, 0, 0, 1};
    CHECK(lds_index_upsert(ix, ids, (const int64_t[]){0, 1, 2}, 2, values, meta, meta_offsets, NULL, NULL, 1,
                           &err) == LDS_OK);
    lds_matches *m = NULL;
    CHECK(lds_index_query_text(ix, "Array", NULL, 5, NULL, NULL, 0, 0, 0, 1, 0, &m, &err) == LDS_OK);
    CHECK(lds_matches_count(m) == 1 && lds_matches_scores(m)[0] > 0);
    lds_matches_free(m);
    const float q[] = {1, 0};
    CHECK(lds_index_query_text(ix, "json", q, 2, NULL, NULL, 0, 0, 0, 0, 0, &m, &err) == LDS_OK);
    CHECK(lds_matches_count(m) == 2 && lds_matches_scores(m)[0] > 1.0f);
    lds_matches_free(m);
    CHECK(lds_index_close(ix, 1, NULL) == LDS_OK);
    lds_index_free(ix);
    CHECK(lds_db_create_index(db, "plain", 2, LDS_METRIC_COSINE, NULL, LDS_KIND_FLAT, 0, 0, 0, LDS_TRAVERSAL_EXACT,
                              LDS_DURABILITY_SYNCHRONOUS, &ix, &err) == LDS_OK);
    CHECK(lds_index_text_field(ix) == NULL);
    expect_error(lds_index_query_text(ix, "json", NULL, 2, NULL, NULL, 0, 0, 0, 0, 0, &m, &err), &err,
                 LDS_E_INVALID_ARGUMENT, "no text field");
    lds_index_free(ix);
}

static void database(void) {
    char dir[] = "/tmp/lodestone-capi-db-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    lds_db *db = NULL;
    lds_error *err = NULL;
    CHECK(lds_db_open(dir, &db, &err) == LDS_OK);
    lds_index *ix = NULL;
    CHECK(lds_db_create_index(db, "docs", 3, LDS_METRIC_COSINE, "model-a", LDS_KIND_FLAT, 0, 0, 0,
                              LDS_TRAVERSAL_EXACT, LDS_DURABILITY_SYNCHRONOUS, &ix, &err) == LDS_OK);
    const char ids[] = "alphabetagamma";
    const int64_t id_offsets[] = {0, 5, 9, 14};
    const float values[] = {1, 0, 0, 0, 1, 0, 0.6f, 0.8f, 0};
    const char metadata[] = "{\"year\":2020}{\"year\":2024,\"tags\":[\"x\"]}";
    const int64_t first = (int64_t)strlen("{\"year\":2020}");
    const int64_t metadata_offsets[] = {0, first, first, (int64_t)strlen(metadata)};
    CHECK(lds_index_upsert(ix, ids, id_offsets, 3, values, metadata, metadata_offsets, NULL, NULL, 1, &err) == LDS_OK);
    if (err) fprintf(stderr, "upsert: %s\n", lds_error_message(err));
    CHECK(lds_index_count(ix) == 3);
    CHECK(strcmp(lds_index_embedding_model(ix), "model-a") == 0);
    lds_matches *m = NULL;
    const float q[] = {1, 0.1f, 0};
    CHECK(lds_index_query(ix, q, 2, NULL, "{\"year\": {\"$gte\": 2021}}", 1, 1, 0, &m, &err) == LDS_OK);
    CHECK(lds_matches_groups(m) == 1 && lds_matches_count(m) == 1);
    const int64_t *offsets = NULL;
    const char *got_ids = lds_matches_ids(m, &offsets);
    CHECK(offsets[1] - offsets[0] == 5 && strncmp(got_ids, "gamma", 5) == 0);
    const char *got_meta = lds_matches_metadata(m, &offsets);
    CHECK(strncmp(got_meta + offsets[0], "{\"tags\":[\"x\"],\"year\":2024}", (size_t)(offsets[1] - offsets[0])) == 0);
    CHECK(lds_matches_values(m) != NULL && fabsf(lds_matches_values(m)[1] - 0.8f) < 1e-6f);
    lds_matches_free(m);
    /* Another model's name is refused, naming both. */
    lds_index *other = NULL;
    expect_error(lds_db_open_index(db, "docs", "model-b", 0, &other, &err), &err, LDS_E_EMBEDDING_MODEL_MISMATCH,
                 "model-b");
    expect_error(lds_index_query(ix, q, 2, NULL, "{\"year\": {\"$near\": 1}}", 0, 0, 0, &m, &err), &err,
                 LDS_E_INVALID_FILTER, "$near");
    const int64_t bad_offsets[] = {0, 9, 5, 14};
    expect_error(lds_index_upsert(ix, ids, bad_offsets, 3, values, NULL, NULL, NULL, NULL, 1, &err), &err,
                 LDS_E_INVALID_ARGUMENT, "offsets");
    /* Bytes that are not UTF-8 are refused, not repaired into another id. */
    const char bad_ids[] = "\xff\xfe";
    const int64_t bad_id_offsets[] = {0, 1, 2};
    expect_error(lds_index_upsert(ix, bad_ids, bad_id_offsets, 2, values, NULL, NULL, NULL, NULL, 1, &err), &err,
                 LDS_E_INVALID_ARGUMENT, "UTF-8");
    CHECK(lds_index_count(ix) == 3);
    sparse(db);
    text_search(db);
    lds_text *text = NULL;
    CHECK(lds_index_stats(ix, &text, &err) == LDS_OK);
    size_t length = 0;
    const char *json = lds_text_data(text, &length);
    CHECK(strstr(json, "\"total_vector_count\":3") != NULL && strlen(json) == length);
    lds_text_free(text);
    int64_t deleted = 0;
    CHECK(lds_index_delete_filter(ix, "{\"year\": 2020}", NULL, &deleted, NULL) == LDS_OK && deleted == 1);
    CHECK(lds_index_close(ix, 1, NULL) == LDS_OK);
    CHECK(lds_index_count(ix) == -1);
    expect_error(lds_index_query(ix, q, 2, NULL, NULL, 0, 0, 0, &m, &err), &err, LDS_E_INDEX_CLOSED, "closed");
    lds_index_free(ix);
    CHECK(lds_db_open_index(db, "docs", "model-a", 0, &ix, NULL) == LDS_OK && lds_index_count(ix) == 2);
    lds_index_free(ix);
    /* Read-only: it reads what was written, refuses writes, and a writer is refused while it is open. */
    CHECK(lds_db_close(db, 1, NULL) == LDS_OK);
    lds_db *reader = NULL;
    CHECK(lds_db_open_read_only(dir, &reader, &err) == LDS_OK);
    CHECK(lds_db_open_index(reader, "docs", NULL, 0, &ix, NULL) == LDS_OK && lds_index_count(ix) == 2);
    expect_error(lds_index_upsert(ix, ids, id_offsets, 3, values, NULL, NULL, NULL, NULL, 1, &err), &err,
                 LDS_E_READ_ONLY, "read-only");
    lds_index *writer = NULL;
    expect_error(lds_db_open_index(db, "docs", NULL, 0, &writer, &err), &err, LDS_E_LOCKED, "docs");
    CHECK(lds_index_close(ix, 1, NULL) == LDS_OK);
    lds_index_free(ix);
    lds_db_free(reader);
    expect_error(lds_db_open_read_only("/nonexistent/lodestone-db", &reader, &err), &err, LDS_E_IO, "nonexistent");
    CHECK(lds_db_delete_index(db, "docs", NULL) == LDS_OK);
    CHECK(lds_db_close(db, 1, NULL) == LDS_OK);
    lds_db_free(db);
    rmdir(dir);
}

int main(void) {
    CHECK(lds_abi_version() == LDS_ABI_VERSION);
    printf("lodestone %s, kernel %s\n", lds_version(), lds_kernel_name());
    vector_indexes();
    database();
    printf("%s: %d failed checks\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
