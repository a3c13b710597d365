"""Test data: the real pypi-minilm embeddings.

The 10,000-vector slice of ../shared/data/pypi-minilm when it sits beside
the repository (or $LODESTONE_SHARED_DATA), else the 2,000-vector sample
committed in Data/. Every test passes on both.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def child_env() -> dict:
    """The environment for a child Python process that must import the
    lodestone this process imported (installed, or the source tree's)."""
    import lodestone
    return {**os.environ, "PYTHONPATH": str(Path(lodestone.__file__).resolve().parents[1])}


def read_vecs(path: Path, dtype) -> np.ndarray:
    """TEXMEX .fvecs/.ivecs: each row is an int32 dimension then the values."""
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(dtype).copy()


class Dataset:
    def __init__(self, name, base, queries, truth, metadata):
        self.name, self.base, self.queries, self.truth, self.metadata = name, base, queries, truth, metadata


def _load() -> Dataset:
    shared = os.environ.get("LODESTONE_SHARED_DATA") or str(REPO.parent / "shared" / "data" / "pypi-minilm")
    shared = Path(shared)
    if (shared / "small_base.fvecs").exists():
        files = ("pypi-minilm small (10,000 x 384)", shared / "small_base.fvecs", shared / "small_query.fvecs",
                 shared / "small_groundtruth.ivecs", shared / "small_base_meta.jsonl")
    else:
        d = REPO / "Data"
        files = ("Data/ sample (2,000 x 384)", d / "base.fvecs", d / "query.fvecs", d / "groundtruth.ivecs",
                 d / "base_meta.jsonl")
    name, base, queries, truth, meta = files
    metadata = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
    return Dataset(name, read_vecs(base, np.float32), read_vecs(queries, np.float32), read_vecs(truth, np.int32),
                   metadata)


_DATA = None


@pytest.fixture(scope="session")
def data() -> Dataset:
    global _DATA
    if _DATA is None:
        _DATA = _load()
    return _DATA


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine"):
    """Exact top-k in float64: (rows, scores), best first, ties to the lower row."""
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "euclidean":
        scores = (q * q).sum(1)[:, None] - 2 * q @ b.T + (b * b).sum(1)[None, :]
        order = np.lexsort((np.broadcast_to(np.arange(len(b)), scores.shape), scores), axis=1)[:, :k]
    else:
        scores = q @ b.T
        order = np.lexsort((np.broadcast_to(np.arange(len(b)), scores.shape), -scores), axis=1)[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def canonical(ids, scores, metric="cosine"):
    """Results sorted by (score, id), best first: equal scores may come in either order."""
    rank = scores.astype(np.float64) if metric == "euclidean" else -scores.astype(np.float64)
    order = np.lexsort((ids, rank), axis=1)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
