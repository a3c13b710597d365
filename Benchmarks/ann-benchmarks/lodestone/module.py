"""Lodestone in ann-benchmarks (https://github.com/erikbern/ann-benchmarks).

This folder goes to `ann_benchmarks/algorithms/lodestone/` in an
ann-benchmarks checkout. `config.yml` there names two constructors:

* `LodestoneHNSW(metric, {"M": m, "efConstruction": efc})`: the HNSW graph,
  whose query argument is the search beam `ef`; with `"traversal":
  "quantized"`, the quantized walk (neighbours' 1-bit codes per node);
* `LodestoneFlat(metric)`: the exact index (a scan, BLAS for batches).

Row i of the train matrix is stored under key i, so the keys Lodestone
returns are the row indices the runner expects. Metrics: ann-benchmarks'
`angular` (1 - cosine) is Lodestone's `cosine`, `euclidean` is `euclidean`
(Lodestone ranks by squared L2, the same order).

`lodestone` is imported in `fit`, not here: the harness imports this module
in its parent process and then forks the workers that run it.
"""

import os

import numpy as np

from ..base.module import BaseANN

METRICS = {"angular": "cosine", "euclidean": "euclidean"}


def _cpus() -> int:
    """CPUs this process may run on: the container's cpuset under Docker
    (one CPU per single-query run), every CPU with `--local`."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Lodestone(BaseANN):
    """What both variants share: build with every CPU, answer single
    queries on one thread and `--batch` runs with one call on every CPU."""

    def __init__(self, metric):
        if metric not in METRICS:
            raise NotImplementedError(f"Lodestone does not support the {metric!r} metric")
        self._metric = METRICS[metric]
        self._ef = 0  # the index's default beam (a flat index ignores it)
        self._index = None
        self._batch = None

    def _new_index(self, lodestone, dimension):
        """An empty index of this variant (`lodestone` is the package)."""
        raise NotImplementedError

    def fit(self, X):
        """Stores row i of `X` under key i."""
        import lodestone

        X = np.ascontiguousarray(X, dtype=np.float32)
        self._index = self._new_index(lodestone, X.shape[1])
        self._index.add(np.arange(X.shape[0], dtype=np.uint64), X, threads=_cpus())

    def query(self, v, n):
        """The row indices of the (at most) n nearest train vectors, best first."""
        ids, _, found = self._index.search(v, n, ef=self._ef, threads=1, return_counts=True)
        return ids[:found].view(np.int64)

    def batch_query(self, X, n):
        """All queries in one call, on every CPU; see `get_batch_results`."""
        self._batch = self._index.search(X, n, ef=self._ef, threads=_cpus(), return_counts=True)

    def get_batch_results(self):
        """One array of row indices per query of the last `batch_query`."""
        ids, _, found = self._batch
        return [row[:count].view(np.int64) for row, count in zip(ids, found)]

    def done(self):
        """Releases the index."""
        if self._index is not None:
            self._index.close()
            self._index = None
        self._batch = None


class LodestoneHNSW(_Lodestone):
    """Lodestone's HNSW index; the query argument is the beam width `ef`."""

    def __init__(self, metric, method_param):
        super().__init__(metric)
        self._m = int(method_param["M"])
        self._ef_construction = int(method_param["efConstruction"])
        self._traversal = method_param.get("traversal", "exact")
        self._label = f"M={self._m}, efConstruction={self._ef_construction}" + (
            f", traversal={self._traversal}" if self._traversal != "exact" else "")
        self.name = f"Lodestone-HNSW({self._label})"

    def _new_index(self, lodestone, dimension):
        return lodestone.HNSWIndex(dimension, self._metric, m=self._m, ef_construction=self._ef_construction,
                                   traversal=self._traversal)

    def set_query_arguments(self, ef):
        """Sets the search beam for the following queries."""
        self._ef = int(ef)
        self.name = f"Lodestone-HNSW({self._label}, ef={self._ef})"


class LodestoneFlat(_Lodestone):
    """Lodestone's exact index: the recall ceiling and the brute-force speed."""

    def __init__(self, metric):
        super().__init__(metric)
        self.name = "Lodestone-Flat()"

    def _new_index(self, lodestone, dimension):
        return lodestone.FlatIndex(dimension, self._metric)
