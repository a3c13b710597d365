"""HNSWIndex and FlatIndex: vector indexes with integer keys, numpy in and
out, for benchmarks and batch jobs."""

import threading

import numpy as np

from . import _native
from ._handle import Handle, NativeObject
from .errors import InvalidArgument, raise_for

METRICS = {"cosine": 0, "euclidean": 1, "l2": 1, "dotproduct": 2, "dot": 2, "ip": 2}
METRIC_NAMES = {0: "cosine", 1: "euclidean", 2: "dotproduct"}
MISSING_KEY = np.iinfo(np.uint64).max


def metric_code(metric: str) -> int:
    try:
        return METRICS[metric.lower()]
    except (KeyError, AttributeError):
        raise InvalidArgument(f"invalid metric: {metric!r}; use 'cosine', 'euclidean' or 'dotproduct'") from None


def _matrix(x, dimension: int, name: str) -> np.ndarray:
    """`x` as a C-contiguous float32 (n, dimension) array (a copy only if needed)."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise InvalidArgument(f"invalid {name}: expected a 2-d array of vectors, got {a.ndim} dimensions")
    if a.shape[1] != dimension:
        from .errors import DimensionMismatch
        raise DimensionMismatch(f"dimension mismatch: the index holds {dimension}-dimensional vectors "
                                f"but got {a.shape[1]} components")
    return a


def _keys(ids, n: int) -> np.ndarray:
    k = np.ascontiguousarray(ids, dtype=np.uint64).reshape(-1)
    if k.shape[0] != n:
        raise InvalidArgument(f"invalid ids: {k.shape[0]} ids for {n} vectors")
    return k


class _Scratch:
    """Out-parameters a thread reuses across calls, so a single-query search allocates
    nothing on the cffi side."""

    def __init__(self, ffi):
        self.err = ffi.new("lds_error **")
        self.count = ffi.new("int32_t[1]")


_thread_scratch = threading.local()


class _VectorIndex(NativeObject):
    """Shared by HNSWIndex and FlatIndex (a handle on an lds_vindex)."""

    def __init__(self, handle):
        super().__init__()
        self._handle = Handle(handle, self._lib.lds_vindex_free, "this index")
        self._dimension = int(self._lib.lds_vindex_dimension(handle))

    # -- properties ------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Components per vector."""
        return self._dimension

    @property
    def metric(self) -> str:
        """'cosine', 'euclidean' (scores are squared L2 distances) or 'dotproduct'."""
        return METRIC_NAMES[int(self._get(self._lib.lds_vindex_metric))]

    @property
    def memory_bytes(self) -> int:
        """Approximate bytes the index holds in memory."""
        return int(self._get(self._lib.lds_vindex_memory_bytes))

    def __len__(self) -> int:
        return int(self._get(self._lib.lds_vindex_count))

    # -- writing ---------------------------------------------------------
    def add(self, ids, vectors, threads: int = 1) -> None:
        """Adds vectors (n, dimension) under n new integer ids (uint64).

        Validated as a whole first: on error nothing is added."""
        x = _matrix(vectors, self._dimension, "vectors")
        k = _keys(ids, x.shape[0])
        f = self._ffi
        self._call(self._lib.lds_vindex_add, f.from_buffer("float[]", x), f.from_buffer("uint64_t[]", k),
                   x.shape[0], threads)

    def upsert(self, ids, vectors, threads: int = 1) -> None:
        """Adds vectors, replacing those whose id is already present."""
        x = _matrix(vectors, self._dimension, "vectors")
        k = _keys(ids, x.shape[0])
        f = self._ffi
        self._call(self._lib.lds_vindex_upsert, f.from_buffer("float[]", x),
                   f.from_buffer("uint64_t[]", k), x.shape[0], threads)

    def remove(self, ids) -> int:
        """Removes ids; returns how many were present."""
        k = np.ascontiguousarray(ids, dtype=np.uint64).reshape(-1)
        removed = self._ffi.new("int64_t *")
        self._call(self._lib.lds_vindex_remove, self._ffi.from_buffer("uint64_t[]", k), k.shape[0], removed)
        return int(removed[0])

    # -- reading ---------------------------------------------------------
    def search(self, queries, k: int, ef: int = 0, threads: int = 1, filter_ids=None, return_counts: bool = False):
        """The k nearest stored vectors of each query, best first.

        `queries` is (nq, dimension) or one vector (dimension,). Returns
        `(ids, scores)`: uint64 and float32 arrays of shape (nq, k), or (k,)
        for one vector. A query with fewer than k results (a small index, a
        narrow filter) is padded with id 2**64-1 and score NaN; pass
        `return_counts=True` to also get the number found per query.
        `ef` is the HNSW beam (0: the index's default). `filter_ids`
        restricts the results to those ids. The call releases the GIL, and
        a batch equals the same queries asked one at a time.
        """
        q = queries
        if not (type(q) is np.ndarray and q.dtype == np.float32 and q.flags.c_contiguous):
            q = np.ascontiguousarray(q, dtype=np.float32)
        fb = self._ffi.from_buffer
        if q.ndim == 1 and filter_ids is None and q.shape[0] == self._dimension:
            # One vector: the path ann-benchmarks and per-request callers take, kept short.
            try:
                scratch = _thread_scratch.value
            except AttributeError:
                scratch = self._scratch()
            keys = np.empty(k, dtype=np.uint64)
            scores = np.empty(k, dtype=np.float32)
            with self._handle as h:
                status = self._lib.lds_vindex_search(h, fb("float[]", q), 1, k, ef, threads, fb("uint64_t[]", keys),
                                                     fb("float[]", scores), scratch.count, scratch.err)
            if status != 0:
                raise_for(status, scratch.err, self._ffi, self._lib)
            return (keys, scores, int(scratch.count[0])) if return_counts else (keys, scores)
        single = q.ndim == 1
        q = _matrix(q, self._dimension, "queries")
        nq = q.shape[0]
        keys = np.empty((nq, k), dtype=np.uint64)
        scores = np.empty((nq, k), dtype=np.float32)
        counts = np.empty(nq, dtype=np.int32)
        if filter_ids is None:
            self._call(self._lib.lds_vindex_search, fb("float[]", q), nq, k, ef, threads,
                       fb("uint64_t[]", keys), fb("float[]", scores), fb("int32_t[]", counts))
        else:
            allowed = np.ascontiguousarray(filter_ids, dtype=np.uint64).reshape(-1)
            self._call(self._lib.lds_vindex_search_filtered, fb("float[]", q), nq, k, ef,
                       fb("uint64_t[]", allowed), allowed.shape[0], threads,
                       fb("uint64_t[]", keys), fb("float[]", scores), fb("int32_t[]", counts))
        if single:
            keys, scores, counts = keys[0], scores[0], int(counts[0])
        return (keys, scores, counts) if return_counts else (keys, scores)

    def _scratch(self):
        """This thread's reusable out-parameters (an lds_error slot and a count), made on first use."""
        value = _Scratch(self._ffi)
        _thread_scratch.value = value
        return value

    def get(self, id) -> np.ndarray:
        """The stored vector of `id` (unit length under cosine)."""
        out = np.empty(self._dimension, dtype=np.float32)
        self._call(self._lib.lds_vindex_get, int(id), self._ffi.from_buffer("float[]", out))
        return out

    def persist(self, path: str) -> None:
        """Writes the index to one checksummed segment file, atomically."""
        self._call(self._lib.lds_vindex_persist, str(path).encode())

    # -- lifetime --------------------------------------------------------
    def close(self) -> None:
        """Releases the index (idempotent; calls still running on other
        threads finish first). Not persisted: call persist first."""
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _new(handle_fn, *args):
    ffi, lib = _native.load()
    out = ffi.new("lds_vindex **")
    err = ffi.new("lds_error **")
    status = handle_fn(*args, out, err)
    if status != 0:
        raise_for(status, err, ffi, lib)
    return out[0]


class HNSWIndex(_VectorIndex):
    """An approximate (HNSW graph) index with integer ids.

    >>> ix = HNSWIndex(384, "cosine", m=16, ef_construction=200)
    >>> ix.add(np.arange(len(X)), X, threads=2)
    >>> ids, scores = ix.search(Q, k=10, ef=64)

    `traversal="quantized"` keeps each node's neighbours' 1-bit codes and its
    own 8-bit code beside its links (the quantized walk: faster at the same
    recall, about 2.4 KB more per vector at m 16, 384-d); `traversal="compact"`
    keeps one 4-bit code per vector instead (about 208 bytes at 384-d: the
    least memory, float32 read only to re-rank).
    """

    def __init__(self, dimension: int, metric: str = "cosine", m: int = 16, ef_construction: int = 200,
                 ef_search: int = 64, seed: int = 42, traversal: str = "exact", _handle=None):
        if _handle is None:
            if traversal not in ("exact", "quantized", "compact"):
                raise InvalidArgument(f"invalid traversal: {traversal!r}; use 'exact', 'quantized' or 'compact'")
            _, lib = _native.load()
            _handle = _new(lib.lds_vindex_new_hnsw, int(dimension), metric_code(metric), int(m),
                           int(ef_construction), int(ef_search), int(seed),
                           {"exact": 0, "quantized": 1, "compact": 2}[traversal])
        super().__init__(_handle)

    def __repr__(self):
        return f"HNSWIndex(dimension={self.dimension}, metric={self.metric!r}, count={len(self)})"


class FlatIndex(_VectorIndex):
    """An exact index with integer ids; batches of queries go through BLAS."""

    def __init__(self, dimension: int, metric: str = "cosine", _handle=None):
        if _handle is None:
            _, lib = _native.load()
            _handle = _new(lib.lds_vindex_new_flat, int(dimension), metric_code(metric))
        super().__init__(_handle)

    def __repr__(self):
        return f"FlatIndex(dimension={self.dimension}, metric={self.metric!r}, count={len(self)})"


def open_index(path: str):
    """Opens a segment file written by `persist` (mapped: milliseconds,
    whatever its size). Returns an HNSWIndex or a FlatIndex."""
    ffi, lib = _native.load()
    handle = _new(lib.lds_vindex_open, str(path).encode())
    if lib.lds_vindex_kind(handle) == 0:
        return HNSWIndex(0, _handle=handle)
    return FlatIndex(0, _handle=handle)
