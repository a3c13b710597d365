"""One corpus split into immutable shard files, searched apart and merged.

The building block of k-NN jobs that outgrow one machine (see
`lodestone.scaleout` for the same job on Ray Data and on Spark): each
shard is one segment file (mapped when opened, so a worker opens it in
milliseconds and workers on one host share its pages), and a query's
results from every shard merge into its global top k.

    >>> shards = write_shards("base.npy", "shards/", 8, kind="hnsw", threads=2)
    >>> ids, scores = ShardSet.open("shards/").knn(queries, k=10, ef=64)

The directory holds `shard-00000-of-00008.lodestone` ... and
`shards.json` (written last, atomically), which names every file with
its row range and byte size. Ids are the rows' global numbers (or the
`ids` given). Shards never change once written: write a new set to
change the corpus.
"""
import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import CorruptFile, DimensionMismatch, InvalidArgument, MalformedFile
from .vector_index import FlatIndex, HNSWIndex, open_index

MANIFEST = "shards.json"
FORMAT_VERSION = 1
#: The id a result row holds past its last neighbour.
NO_ID = -1


@dataclass(frozen=True)
class Shard:
    """One shard file and the global rows it holds (`start`..<`stop`)."""
    file: str
    start: int
    stop: int
    bytes: int


def _load_vectors(vectors) -> np.ndarray:
    """An (n, d) float32 array, or a path to .npy (memory-mapped) or .fvecs."""
    if isinstance(vectors, (str, os.PathLike)):
        path = os.fspath(vectors)
        if path.endswith(".npy"):
            return np.load(path, mmap_mode="r")
        if path.endswith(".fvecs"):
            raw = np.memmap(path, dtype="<i4", mode="r")
            if raw.size == 0:
                raise MalformedFile(f"{path}: empty vector file")
            d = int(raw[0])
            if d <= 0 or raw.size % (d + 1) != 0:
                raise MalformedFile(f"{path}: not an .fvecs file (first dimension {d}, {raw.size * 4} bytes)")
            return raw.reshape(-1, d + 1)[:, 1:].view("<f4")
        raise InvalidArgument(f"invalid vectors: {path} is neither .npy nor .fvecs")
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InvalidArgument(f"invalid vectors: expected an (n, dimension) array, got shape {x.shape}")
    return x


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shards(vectors, directory: str, shards: int, *, kind: str = "flat", metric: str = "cosine",
                 ids: Optional[Sequence[int]] = None, m: int = 16, ef_construction: int = 200,
                 threads: int = 1) -> "ShardSet":
    """Splits `vectors` into `shards` consecutive row ranges and writes each
    as an index file (`kind` "flat" or "hnsw") in `directory`, then the
    manifest. `ids` (non-negative integers, one per row) default to the row
    numbers. Refuses a directory that already holds a shard set."""
    x = _load_vectors(vectors)
    n, d = x.shape
    if kind not in ("flat", "hnsw"):
        raise InvalidArgument(f"invalid kind: {kind!r} (flat or hnsw)")
    if not 1 <= shards <= max(n, 1) or n == 0:
        raise InvalidArgument(f"invalid shards: {shards} shards of {n} vectors (1 to {n})")
    keys = np.arange(n, dtype=np.uint64) if ids is None else np.asarray(ids)
    if keys.shape != (n,) or (keys.dtype.kind not in "iu") or (keys.dtype.kind == "i" and (keys < 0).any()):
        raise InvalidArgument(f"invalid ids: need {n} non-negative integers")
    keys = keys.astype(np.uint64)
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(os.path.join(directory, MANIFEST)):
        raise InvalidArgument(f"invalid directory: {directory} already holds a shard set ({MANIFEST}); "
                              "shards are immutable, write a new set elsewhere")
    entries: List[Shard] = []
    for s in range(shards):
        start, stop = s * n // shards, (s + 1) * n // shards
        index = FlatIndex(d, metric) if kind == "flat" else HNSWIndex(d, metric, m=m, ef_construction=ef_construction)
        with index:
            index.add(keys[start:stop], np.ascontiguousarray(x[start:stop], dtype=np.float32), threads=threads)
            name = f"shard-{s:05d}-of-{shards:05d}.lodestone"
            index.persist(os.path.join(directory, name))
        entries.append(Shard(name, start, stop, os.path.getsize(os.path.join(directory, name))))
    manifest = {"format": FORMAT_VERSION, "kind": kind, "metric": metric, "dimension": d, "count": n,
                "shards": [{"file": e.file, "rows": [e.start, e.stop], "bytes": e.bytes} for e in entries]}
    tmp = os.path.join(directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, MANIFEST))
    _fsync_directory(directory)
    return ShardSet.open(directory)


# Indexes opened in this process, by path: a worker that searches many
# blocks of one shard maps it once.
_opened = {}


class ShardSet:
    """A shard set's manifest, and search over its shards.

    Picklable (it holds only the manifest), so Ray and Spark ship it to
    workers; each worker process opens a shard file on first use and keeps
    it mapped."""

    def __init__(self, directory: str, kind: str, metric: str, dimension: int, count: int, shards: List[Shard]):
        self.directory = directory
        self.kind = kind
        self.metric = metric
        self.dimension = dimension
        self.count = count
        self.shards = shards

    @classmethod
    def open(cls, directory: str) -> "ShardSet":
        """Reads `directory/shards.json` and checks that every shard file is
        there with its recorded size."""
        path = os.path.join(directory, MANIFEST)
        try:
            with open(path) as f:
                m = json.load(f)
        except FileNotFoundError:
            raise InvalidArgument(f"invalid directory: {directory} holds no shard set (no {MANIFEST})") from None
        except ValueError as e:
            raise CorruptFile(f"{path}: not valid JSON ({e})") from None
        try:
            if m["format"] > FORMAT_VERSION:
                raise CorruptFile(f"{path}: format {m['format']} is newer than this package reads ({FORMAT_VERSION})")
            shards = [Shard(e["file"], int(e["rows"][0]), int(e["rows"][1]), int(e["bytes"])) for e in m["shards"]]
            kind, metric, dimension, count = m["kind"], m["metric"], int(m["dimension"]), int(m["count"])
        except (KeyError, TypeError, IndexError) as e:
            raise CorruptFile(f"{path}: missing or malformed field ({e!r})") from None
        for s in shards:
            file = os.path.join(directory, s.file)
            if not os.path.exists(file):
                raise CorruptFile(f"{file}: shard file missing")
            if os.path.getsize(file) != s.bytes:
                raise CorruptFile(f"{file}: {os.path.getsize(file)} bytes, the manifest says {s.bytes}")
        return cls(os.path.abspath(directory), kind, metric, dimension, count, shards)

    def __len__(self) -> int:
        return len(self.shards)

    def __repr__(self):
        return f"ShardSet({self.directory!r}, {len(self)} {self.kind} shards of {self.count} vectors)"

    def path(self, shard: int) -> str:
        return os.path.join(self.directory, self.shards[shard].file)

    def index(self, shard: int):
        """Shard `shard`'s index, opened (mapped) once per process."""
        path = self.path(shard)
        index = _opened.get(path)
        if index is None:
            index = _opened[path] = open_index(path)
        return index

    def search(self, shard: int, queries, k: int, ef: int = 0, threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Shard `shard`'s k nearest of each query: int64 ids (-1 past the
        last) and float32 scores (NaN past the last), shape (nq, k)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dimension:
            raise DimensionMismatch(f"dimension mismatch: the shards hold {self.dimension}-d vectors, "
                                    f"the queries have shape {q.shape}")
        ids, scores, counts = self.index(shard).search(q, k, ef=ef, threads=threads, return_counts=True)
        out = ids.astype(np.int64)
        out[np.arange(k)[None, :] >= counts[:, None]] = NO_ID
        return out, scores

    def knn(self, queries, k: int, ef: int = 0, threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Every query's k nearest over all shards, in this process: each
        shard searched in turn, then merged (`merge_topk`)."""
        parts = [self.search(s, queries, k, ef=ef, threads=threads) for s in range(len(self))]
        return merge_topk([p[0] for p in parts], [p[1] for p in parts], k, self.metric)


def merge_topk(ids: Sequence[np.ndarray], scores: Sequence[np.ndarray], k: int,
               metric: str = "cosine") -> Tuple[np.ndarray, np.ndarray]:
    """Merges per-shard results of the same queries (each (nq, k_i), ids
    -1 past the last) into each query's best k: by score (higher first
    for cosine and dot product, lower first for euclidean), ties by the
    smaller id. The order depends only on the candidates, never on which
    shard answered first, so any merge order gives the same result."""
    all_ids = np.concatenate([np.asarray(i, dtype=np.int64) for i in ids], axis=1)
    all_scores = np.concatenate([np.asarray(s, dtype=np.float32) for s in scores], axis=1)
    rank = all_scores.astype(np.float64) if metric == "euclidean" else -all_scores.astype(np.float64)
    rank[all_ids == NO_ID] = np.inf
    rank[np.isnan(rank)] = np.inf
    # Sort each row by (rank, id): lexsort's last key is the primary one.
    order = np.lexsort((all_ids, rank), axis=1)[:, :k]
    out_ids = np.take_along_axis(all_ids, order, axis=1)
    out_scores = np.take_along_axis(all_scores, order, axis=1)
    missing = np.take_along_axis(rank, order, axis=1) == np.inf
    out_ids[missing] = NO_ID
    out_scores[missing] = np.nan
    if out_ids.shape[1] < k:  # fewer candidates than k in all
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=NO_ID)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=np.nan)
    return out_ids, out_scores
