"""Database and Index: named, durable indexes of records (string id,
vector, metadata) in namespaces, in the shape of Pinecone's client."""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._handle import Handle, NativeObject
from .errors import InvalidArgument, raise_for
from .vector_index import METRIC_NAMES, _matrix, metric_code

KINDS = {"hnsw": 0, "flat": 1, "sparse": 2}
TRAVERSALS = {"exact": 0, "quantized": 1, "compact": 2}
DURABILITY = {"synchronous": 0, "group_commit": 1, "none": 2}

Filter = Union[Dict[str, Any], str, None]


@dataclass
class Match:
    """One query result: the record's id, its score on the metric's scale
    (cosine similarity, inner product, or squared L2 distance), and its
    values and metadata when asked for."""

    id: str
    score: float
    values: Optional[np.ndarray] = None
    metadata: Optional[Dict[str, Any]] = None
    #: {"indices": [...], "values": [...]} when values were asked for and it has one.
    sparse_values: Optional[Dict[str, list]] = None


@dataclass
class Record:
    """A stored record."""

    id: str
    values: np.ndarray
    metadata: Optional[Dict[str, Any]] = field(default=None)
    sparse_values: Optional[Dict[str, list]] = field(default=None)


def _c(s: Optional[str]):
    """A str as NUL-terminated UTF-8, None as NULL."""
    return _native.load()[0].NULL if s is None else s.encode("utf-8")


def _filter_text(f: Filter):
    if f is None:
        return _native.load()[0].NULL
    if isinstance(f, str):
        return f.encode("utf-8")
    return json.dumps(f, separators=(",", ":")).encode("utf-8")


def _id_list(ids) -> List[str]:
    """A sequence of ids as a list; a lone string is refused (it would be
    taken as a sequence of one-character ids)."""
    if isinstance(ids, (str, bytes)):
        raise InvalidArgument(f"invalid ids: pass a list of ids, not a single string ({ids!r})")
    return list(ids)


def _sparse_arrays(vectors: Sequence[Optional[Dict[str, Any]]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse vectors ({"indices", "values"} or None) as CSR arrays: n + 1
    offsets, uint32 indices, float32 values (checked by the library)."""
    offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
    indices, values = [], []
    for i, v in enumerate(vectors):
        if v is None:
            offsets[i + 1] = offsets[i]
            continue
        try:
            ix, vx = list(v["indices"]), list(v["values"])
        except (TypeError, KeyError):
            raise InvalidArgument(f"invalid sparse values: record {i}: expected a dict with \"indices\" and "
                                  f"\"values\", got {v!r}") from None
        if len(ix) != len(vx):
            raise InvalidArgument(f"invalid sparse values: record {i}: {len(ix)} indices but {len(vx)} values")
        if any(not isinstance(t, (int, np.integer)) or t < 0 or t > 0xFFFFFFFF for t in ix):
            raise InvalidArgument(f"invalid sparse values: record {i}: indices are integers from 0 to 4294967295")
        indices += ix
        values += vx
        offsets[i + 1] = offsets[i] + len(ix)
    return (offsets, np.asarray(indices, dtype=np.uint32).reshape(-1),
            np.asarray(values, dtype=np.float32).reshape(-1))


def _string_array(strings: Sequence[str]) -> Tuple[bytes, np.ndarray]:
    """Strings as one UTF-8 buffer plus n + 1 offsets (lodestone.h's string arrays)."""
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return b"".join(encoded) + b"\0", offsets


class _Native(NativeObject):
    """NativeObject with the two variable-size results, text and matches."""

    def _text(self, fn, *args) -> Any:
        out = self._ffi.new("lds_text **")
        self._call(fn, *args, out)
        try:
            size = self._ffi.new("size_t *")
            data = self._lib.lds_text_data(out[0], size)
            return json.loads(self._ffi.unpack(data, size[0]).decode("utf-8"))
        finally:
            self._lib.lds_text_free(out[0])

    def _matches(self, fn, *args, dimension: int) -> List[List[Match]]:
        ffi, lib = self._ffi, self._lib
        out = ffi.new("lds_matches **")
        self._call(fn, *args, out)
        m = out[0]
        try:
            groups = int(lib.lds_matches_groups(m))
            total = int(lib.lds_matches_count(m))
            group_offsets = np.frombuffer(ffi.buffer(lib.lds_matches_offsets(m), 8 * (groups + 1)), dtype=np.int64)
            scores = np.frombuffer(ffi.buffer(lib.lds_matches_scores(m), 4 * max(total, 1)), dtype=np.float32)[:total]
            id_offsets_p = ffi.new("int64_t **")
            id_bytes = lib.lds_matches_ids(m, id_offsets_p)
            id_offsets = np.frombuffer(ffi.buffer(id_offsets_p[0], 8 * (total + 1)), dtype=np.int64)
            blob = ffi.unpack(id_bytes, int(id_offsets[-1]))
            ids = [blob[id_offsets[i]:id_offsets[i + 1]].decode("utf-8") for i in range(total)]
            values_p = lib.lds_matches_values(m)
            values = None
            if values_p != ffi.NULL and total:
                values = np.frombuffer(ffi.buffer(values_p, 4 * total * dimension), dtype=np.float32)
                values = values.reshape(total, dimension).copy()
            meta_offsets_p = ffi.new("int64_t **")
            meta_bytes = lib.lds_matches_metadata(m, meta_offsets_p)
            metadata = None
            if meta_bytes != ffi.NULL:
                meta_offsets = np.frombuffer(ffi.buffer(meta_offsets_p[0], 8 * (total + 1)), dtype=np.int64)
                mblob = ffi.unpack(meta_bytes, int(meta_offsets[-1]))
                metadata = [mblob[meta_offsets[i]:meta_offsets[i + 1]] for i in range(total)]
            sparse = None
            s_indices, s_values = ffi.new("uint32_t **"), ffi.new("float **")
            s_offsets_p = lib.lds_matches_sparse(m, s_indices, s_values)
            if s_offsets_p != ffi.NULL and total:
                s_offsets = np.frombuffer(ffi.buffer(s_offsets_p, 8 * (total + 1)), dtype=np.int64)
                n = int(s_offsets[-1])
                all_i = np.frombuffer(ffi.buffer(s_indices[0], 4 * max(n, 1)), dtype=np.uint32)[:n]
                all_v = np.frombuffer(ffi.buffer(s_values[0], 4 * max(n, 1)), dtype=np.float32)[:n]
                sparse = [None if s_offsets[i] == s_offsets[i + 1] else
                          {"indices": all_i[s_offsets[i]:s_offsets[i + 1]].tolist(),
                           "values": all_v[s_offsets[i]:s_offsets[i + 1]].tolist()} for i in range(total)]
            result = []
            for g in range(groups):
                row = []
                for i in range(int(group_offsets[g]), int(group_offsets[g + 1])):
                    md = None
                    if metadata is not None and metadata[i]:
                        md = json.loads(metadata[i])
                    row.append(Match(ids[i], float(scores[i]), None if values is None else values[i], md,
                                     None if sparse is None else sparse[i]))
                result.append(row)
            return result
        finally:
            lib.lds_matches_free(m)


class Index(_Native):
    """A named, durable index of records in namespaces.

    Get one from `Database.create_index` or `Database.index`. Every write is
    validated as a whole (nothing is stored on error), logged and synced,
    then visible. Many threads may query while one writes; every call
    releases the GIL.
    """

    def __init__(self, handle, name: str):
        super().__init__()
        self._handle = Handle(handle, self._lib.lds_index_free, f'index "{name}"')
        self.name = name
        self.dimension = int(self._lib.lds_index_dimension(handle))
        self.metric = METRIC_NAMES[int(self._lib.lds_index_metric(handle))]
        self.kind = {0: "hnsw", 1: "flat", 2: "sparse"}[int(self._lib.lds_index_kind(handle))]
        self.embedding_model = self._ffi.string(self._lib.lds_index_embedding_model(handle)).decode("utf-8")
        field = self._lib.lds_index_text_field(handle)
        #: The metadata field searched by `query(text=...)` (BM25), or None.
        self.text_field = None if field == self._ffi.NULL else self._ffi.string(field).decode("utf-8")

    def __len__(self) -> int:
        with self._handle as h:
            count = int(self._lib.lds_index_count(h))
        if count < 0:
            from .errors import IndexClosed
            raise IndexClosed(f'index "{self.name}" was closed')
        return count

    def __repr__(self):
        return (f"Index(name={self.name!r}, dimension={self.dimension}, metric={self.metric!r}, "
                f"kind={self.kind!r}, embedding_model={self.embedding_model!r})")

    # -- writing ---------------------------------------------------------
    def upsert(self, vectors: Optional[Iterable] = None, *, ids: Optional[Sequence[str]] = None, values=None,
               metadata: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
               sparse_values: Optional[Sequence[Optional[Dict[str, Any]]]] = None, namespace: str = "",
               embedding_model: Optional[str] = None, threads: int = 1) -> int:
        """Adds records, or replaces those whose id is already in `namespace`.

        Either `vectors`, Pinecone-style: tuples `(id, values)` or
        `(id, values, metadata)`, or dicts with "id", "values" and optional
        "metadata" and "sparse_values" ({"indices", "values"}); or columns:
        `ids`, `values` (an (n, dimension) array) and optional `metadata`
        and `sparse_values` (lists of dicts or None). A sparse index's
        records have sparse values and no values. Returns the count.
        """
        sparse_index = self.kind == "sparse"
        if vectors is not None:
            if ids is not None or values is not None:
                raise InvalidArgument("invalid arguments: pass either vectors or ids/values, not both")
            ids, rows, metadata, sparse_values = [], [], [], []
            for v in vectors:
                if isinstance(v, dict):
                    ids.append(v["id"]); rows.append(v.get("values", [])); metadata.append(v.get("metadata"))
                    sparse_values.append(v.get("sparse_values"))
                else:
                    ids.append(v[0]); rows.append(v[1]); metadata.append(v[2] if len(v) > 2 else None)
                    sparse_values.append(None)
            values = rows
            if not any(s is not None for s in sparse_values):
                sparse_values = None
        if ids is None or (values is None and not sparse_index):
            raise InvalidArgument("invalid arguments: upsert needs records, or ids and values")
        ids = list(ids)
        if not ids:
            return 0
        if sparse_index and values is not None and any(len(r) for r in values):
            raise InvalidArgument("invalid values: a sparse index stores sparse_values only")
        x = np.zeros((len(ids), 0), dtype=np.float32) if sparse_index else _matrix(values, self.dimension, "values")
        if x.shape[0] != len(ids):
            raise InvalidArgument(f"invalid values: {x.shape[0]} vectors for {len(ids)} ids")
        for i in ids:
            if not isinstance(i, str):
                raise InvalidArgument(f"invalid ids: record ids are strings, got {type(i).__name__} {i!r}")
        id_bytes, id_offsets = _string_array(ids)
        f = self._ffi
        meta_buf, meta_off = f.NULL, f.NULL
        if metadata is not None and len(metadata) != len(ids):
            raise InvalidArgument(f"invalid metadata: {len(metadata)} entries for {len(ids)} ids")
        if metadata is not None and any(m for m in metadata):
            texts = [json.dumps(m, separators=(",", ":")) if m else "" for m in metadata]
            mb, mo = _string_array(texts)
            meta_buf, meta_off = mb, f.from_buffer("int64_t[]", mo)
        if sparse_values is None and not sparse_index:
            self._call(self._lib.lds_index_upsert, id_bytes, f.from_buffer("int64_t[]", id_offsets), len(ids),
                       f.from_buffer("float[]", x), meta_buf, meta_off, _c(namespace), _c(embedding_model), threads)
            return len(ids)
        if sparse_values is None or len(sparse_values) != len(ids):
            raise InvalidArgument(f"invalid sparse values: {0 if sparse_values is None else len(sparse_values)} "
                                  f"entries for {len(ids)} ids")
        so, si, sv = _sparse_arrays(sparse_values)
        self._call(self._lib.lds_index_upsert_sparse, id_bytes, f.from_buffer("int64_t[]", id_offsets), len(ids),
                   f.NULL if sparse_index else f.from_buffer("float[]", x), f.from_buffer("int64_t[]", so),
                   f.from_buffer("uint32_t[]", si) if len(si) else f.NULL,
                   f.from_buffer("float[]", sv) if len(sv) else f.NULL, meta_buf, meta_off, _c(namespace),
                   _c(embedding_model), threads)
        return len(ids)

    def update(self, id: str, values=None, set_metadata: Optional[Dict[str, Any]] = None, namespace: str = "") -> None:
        """Sets a record's values and/or merges `set_metadata` into its metadata."""
        f = self._ffi
        v = f.NULL
        if values is not None:
            row = _matrix(values, self.dimension, "values")
            if row.shape[0] != 1:
                raise InvalidArgument(f"invalid values: update takes one vector, got {row.shape[0]}")
            v = f.from_buffer("float[]", row)
        m = f.NULL if set_metadata is None else json.dumps(set_metadata, separators=(",", ":")).encode("utf-8")
        self._call(self._lib.lds_index_update, id.encode("utf-8"), v, m, _c(namespace))

    def delete(self, ids: Optional[Sequence[str]] = None, *, filter: Filter = None, delete_all: bool = False,
               namespace: str = "") -> int:
        """Deletes by ids, by filter, or everything in the namespace. Returns the count."""
        deleted = self._ffi.new("int64_t *")
        if sum(x is not None and x is not False for x in (ids, filter, delete_all or None)) != 1:
            raise InvalidArgument("invalid arguments: delete takes exactly one of ids, filter and delete_all")
        if delete_all:
            self._call(self._lib.lds_index_delete_all, _c(namespace), deleted)
        elif filter is not None:
            self._call(self._lib.lds_index_delete_filter, _filter_text(filter), _c(namespace), deleted)
        else:
            ids = _id_list(ids)
            b, o = _string_array(ids)
            self._call(self._lib.lds_index_delete, b, self._ffi.from_buffer("int64_t[]", o), len(ids),
                       _c(namespace), deleted)
        return int(deleted[0])

    # -- reading ---------------------------------------------------------
    def query(self, vector=None, *, id: Optional[str] = None, sparse_vector: Optional[Dict[str, Any]] = None,
              text: Optional[str] = None, top_k: int = 10, namespace: str = "", filter: Filter = None,
              include_values: bool = False, include_metadata: bool = False, ef: int = 0, fusion: str = "sum",
              rrf_k: int = 60) -> List[Match]:
        """The top_k records nearest a vector (or a stored record's vector,
        `id=`), best first, among those passing `filter` (Pinecone's
        filter language, a dict or JSON text). With `sparse_vector`
        ({"indices", "values"}): alone, records ranked by sparse dot product
        (exact); with `vector`, a hybrid query: `fusion` "sum" scores the
        dense score plus the sparse one (Pinecone's), "rrf" fuses the two
        rankings (constant `rrf_k`). With `text`, on an index created with
        a `text_field`: records ranked by BM25 over that field (term
        weights are idf over the records stored now), alone or, with
        `vector`, fused the same way."""
        f = self._ffi
        if vector is not None and self.kind == "sparse":
            raise InvalidArgument("invalid vector: a sparse index is queried with a sparse_vector or text only")
        if fusion not in ("sum", "rrf"):
            raise InvalidArgument(f"invalid fusion: {fusion!r}; use 'sum' or 'rrf'")

        def dense_or_null():
            """The hybrid query's one dense vector, or NULL."""
            if vector is None:
                return f.NULL
            q = _matrix(vector, self.dimension, "vector")
            if q.shape[0] != 1:
                raise InvalidArgument("invalid vector: query takes one vector; use query_batch for many")
            return f.from_buffer("float[]", q)
        if text is not None:
            if id is not None or sparse_vector is not None:
                raise InvalidArgument("invalid arguments: a text query takes no id and no sparse_vector")
            if not isinstance(text, str):
                raise InvalidArgument(f"invalid text: a string, got {type(text).__name__}")
            v = dense_or_null()
            return self._matches(self._lib.lds_index_query_text, text.encode("utf-8"), v, top_k, _c(namespace),
                                 _filter_text(filter), 0 if fusion == "sum" else 1, rrf_k, include_values,
                                 include_metadata, ef, dimension=self.dimension)[0]
        if sparse_vector is not None:
            if id is not None:
                raise InvalidArgument("invalid arguments: a sparse_vector query takes no id")
            so, si, sv = _sparse_arrays([sparse_vector])
            v = dense_or_null()
            return self._matches(self._lib.lds_index_query_sparse, v,
                                 f.from_buffer("uint32_t[]", si) if len(si) else f.NULL,
                                 f.from_buffer("float[]", sv) if len(sv) else f.NULL, len(si), top_k,
                                 _c(namespace), _filter_text(filter), 0 if fusion == "sum" else 1, rrf_k,
                                 include_values, include_metadata, ef, dimension=self.dimension)[0]
        if (vector is None) == (id is None):
            raise InvalidArgument("invalid arguments: query takes a vector, an id, a sparse_vector or text")
        if id is not None:
            return self._matches(self._lib.lds_index_query_id, id.encode("utf-8"), top_k, _c(namespace),
                                 _filter_text(filter), include_values, include_metadata, ef,
                                 dimension=self.dimension)[0]
        q = _matrix(vector, self.dimension, "vector")
        if q.shape[0] != 1:
            raise InvalidArgument("invalid vector: query takes one vector; use query_batch for many")
        return self._matches(self._lib.lds_index_query, f.from_buffer("float[]", q), top_k, _c(namespace),
                             _filter_text(filter), include_values, include_metadata, ef, dimension=self.dimension)[0]

    def query_batch(self, vectors, *, top_k: int = 10, namespace: str = "", filter: Filter = None,
                    include_values: bool = False, include_metadata: bool = False, ef: int = 0,
                    threads: int = 1) -> List[List[Match]]:
        """Many queries at once (BLAS on a flat index); equal to asking them one by one."""
        q = _matrix(vectors, self.dimension, "vectors")
        return self._matches(self._lib.lds_index_query_batch, self._ffi.from_buffer("float[]", q),
                             q.shape[0], top_k, _c(namespace), _filter_text(filter), include_values,
                             include_metadata, ef, threads, dimension=self.dimension)

    def fetch(self, ids: Sequence[str], namespace: str = "") -> Dict[str, Record]:
        """The records with these ids (absent ids are left out)."""
        ids = _id_list(ids)
        b, o = _string_array(ids)
        found = self._matches(self._lib.lds_index_fetch, b, self._ffi.from_buffer("int64_t[]", o), len(ids),
                              _c(namespace), dimension=self.dimension)[0]
        return {m.id: Record(m.id, m.values, m.metadata, m.sparse_values) for m in found}

    def list_ids(self, namespace: str = "", prefix: str = "", filter: Filter = None, limit: int = 100,
                 pagination_token: Optional[str] = None) -> Tuple[List[str], Optional[str]]:
        """A page of ids, sorted, and the token for the next page (None at the end)."""
        page = self._text(self._lib.lds_index_list_ids, _c(namespace), _c(prefix), _filter_text(filter),
                          limit, _c(pagination_token))
        return page["ids"], page["next"]

    def describe_index_stats(self) -> Dict[str, Any]:
        """Pinecone's shape: namespaces with their vector_count, dimension, total_vector_count, metric."""
        return self._text(self._lib.lds_index_stats, )

    # -- files -----------------------------------------------------------
    def persist(self) -> None:
        """Folds the write-ahead log into a new segment (reopening then replays nothing)."""
        self._call(self._lib.lds_index_persist, )

    def export(self, path: str) -> int:
        """Writes every record as gzip'd JSON Lines (Pinecone's record shape). Returns the count."""
        n = self._ffi.new("int64_t *")
        self._call(self._lib.lds_index_export, str(path).encode(), n)
        return int(n[0])

    # -- lifetime --------------------------------------------------------
    def close(self, persist: bool = True) -> None:
        """Closes the index (persisting its log first), releasing its lock.
        Closing an index the database already closed is not an error."""
        if self._handle.closed:
            return
        from .errors import IndexClosed
        try:
            self._call(self._lib.lds_index_close, int(persist))
        except IndexClosed:
            pass
        finally:
            self._handle.close()

    def release(self) -> None:
        """Drops this handle without closing the index (the database keeps it open)."""
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


class Database(_Native):
    """A directory of named indexes.

    >>> with lodestone.Database("vectors") as db:
    ...     ix = db.create_index("docs", dimension=384, metric="cosine", embedding_model="all-MiniLM-L6-v2")
    ...     ix.upsert([("a", v, {"year": 2024})])
    ...     ix.query(q, top_k=10, filter={"year": {"$gte": 2020}}, include_metadata=True)
    """

    def __init__(self, path: str, read_only: bool = False):
        """Opens (creating if missing) the database at `path`; with
        `read_only`, opens an existing one without changing it: its indexes
        search and fetch, writes raise ReadOnly, and any number of processes
        may hold it read-only at once, sharing one copy of each index's
        pages (none may while another process writes it: IndexLocked)."""
        super().__init__()
        out = self._ffi.new("lds_db **")
        err = self._ffi.new("lds_error **")
        open_ = self._lib.lds_db_open_read_only if read_only else self._lib.lds_db_open
        status = open_(str(path).encode(), out, err)
        if status != 0:
            raise_for(status, err, self._ffi, self._lib)
        self._handle = Handle(out[0], self._lib.lds_db_free, "this Database")
        self.path = str(path)

    def create_index(self, name: str, dimension: int, metric: str = "cosine", embedding_model: Optional[str] = None,
                     kind: str = "hnsw", m: int = 16, ef_construction: int = 200, ef_search: int = 64,
                     durability: str = "synchronous", traversal: str = "exact",
                     text_field: Optional[str] = None) -> Index:
        """Creates an empty index (kind 'hnsw' or 'flat', or 'sparse' with
        dimension 0 and metric 'dotproduct': sparse values only); the embedding
        model's name is recorded and checked when the index is reopened.
        `traversal` 'quantized' keeps each HNSW node's neighbours' 1-bit
        codes and its own 8-bit code beside its links: 2.5-3.7x the
        queries/s of 'exact' at the same recall (recall 0.90-0.99 on 100k
        x 384), for about 2.4 KB more per vector (m 16, 384-d); 'compact'
        keeps one 4-bit code per vector (about 208 bytes at 384-d) and reads
        float32 vectors only to re-rank: the least memory, between the two
        in speed.
        `text_field`: a metadata field of text the index keeps BM25 vectors
        of (as each record's sparse values), searched by
        `Index.query(text=...)`; records then give no sparse_values."""
        if kind not in KINDS:
            raise InvalidArgument(f"invalid kind: {kind!r}; use 'hnsw', 'flat' or 'sparse'")
        if traversal not in TRAVERSALS:
            raise InvalidArgument(f"invalid traversal: {traversal!r}; use 'exact', 'quantized' or 'compact'")
        if durability not in DURABILITY:
            raise InvalidArgument(f"invalid durability: {durability!r}; use one of {sorted(DURABILITY)}")
        out = self._ffi.new("lds_index **")
        if text_field is not None and not isinstance(text_field, str):
            raise InvalidArgument(f"invalid text_field: a string, got {type(text_field).__name__}")
        self._call(self._lib.lds_db_create_text_index, name.encode("utf-8"), int(dimension), metric_code(metric),
                   _c(embedding_model), KINDS[kind], int(m), int(ef_construction), int(ef_search),
                   TRAVERSALS[traversal], DURABILITY[durability], _c(text_field), out)
        return Index(out[0], name)

    def index(self, name: str, embedding_model: Optional[str] = None, durability: str = "synchronous") -> Index:
        """Opens an index. With `embedding_model`, raises
        EmbeddingModelMismatch (naming both) if the index was built with another."""
        if durability not in DURABILITY:
            raise InvalidArgument(f"invalid durability: {durability!r}; use one of {sorted(DURABILITY)}")
        out = self._ffi.new("lds_index **")
        self._call(self._lib.lds_db_open_index, name.encode("utf-8"), _c(embedding_model),
                   DURABILITY[durability], out)
        return Index(out[0], name)

    def list_indexes(self) -> List[str]:
        return self._text(self._lib.lds_db_list_indexes, )

    def has_index(self, name: str) -> bool:
        return name in self.list_indexes()

    def describe_index(self, name: str) -> Dict[str, Any]:
        return self._text(self._lib.lds_db_describe_index, name.encode("utf-8"))

    def delete_index(self, name: str) -> None:
        self._call(self._lib.lds_db_delete_index, name.encode("utf-8"))

    def import_records(self, path: str, name: str, dimension: int = 0, metric: str = "cosine",
                       embedding_model: Optional[str] = None, skip_bad_lines: bool = False) -> Dict[str, Any]:
        """Imports gzip'd JSON Lines (as `Index.export` writes) into index
        `name`, creating it if missing. Validates the whole file first."""
        return self._text(self._lib.lds_db_import, str(path).encode(), name.encode("utf-8"),
                          int(dimension), metric_code(metric), _c(embedding_model), int(skip_bad_lines))

    def close(self, persist: bool = True) -> None:
        """Closes every index this database opened (persisting each first).
        The Database stays usable: `index` opens an index again."""
        if not self._handle.closed:
            self._call(self._lib.lds_db_close, int(persist))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()
