"""The k-NN job of `lodestone knn`, past one machine: on Ray Data and on Spark.

Both run the same plan over a shard set (`lodestone.shards`):
1. every query meets every shard: workers open a shard file (mapped; on
   a cluster, from a shared filesystem, since shard files never change)
   and search blocks of queries against it;
2. each query's candidates from all shards merge into its top k
   (`merge_topk`: by score, ties by id, so the result does not depend on
   which worker answered first);
3. the results land as Parquet: `query` (int64), `ids` (list of int64,
   -1 past the last neighbour), `scores` (list of float32).

Over flat shards the result equals one exact search of the whole corpus;
over HNSW shards it equals `ShardSet.knn` in one process.

    from lodestone.scaleout import ray_knn, spark_knn
    ray_knn("shards/", queries, k=10, out="results-ray/", ef=64)
    spark_knn(spark, "shards/", queries, k=10, out="results-spark/", ef=64)

`queries` is an (n, d) float32 array (numbered 0..n-1), or a Ray Dataset /
Spark DataFrame with a `query` integer column and a `vector` column of
float lists (for example read from Parquet).

Needs `pip install "lodestone[scaleout]"` (ray[data], pyspark, pandas,
pyarrow); Spark also needs Java 17 or later.
"""
from typing import Any

import numpy as np

from .shards import ShardSet, merge_topk


def _as_matrix(column, dtype=np.float32) -> np.ndarray:
    """A batch's list column as an (n, d) array (Ray gives a 2-D array for
    fixed-size tensors, Ray and Spark object arrays of rows otherwise)."""
    arr = np.asarray(column)
    if arr.dtype == object:
        arr = np.stack([np.asarray(v, dtype=dtype) for v in arr])
    return np.ascontiguousarray(arr, dtype=dtype)


def _results_table(queries, ids, scores):
    import pyarrow as pa
    k = ids.shape[1]
    offsets = pa.array(np.arange(0, len(ids) * k + 1, k, dtype=np.int32))
    return pa.table({"query": pa.array(np.asarray(queries, dtype=np.int64)),
                     "ids": pa.ListArray.from_arrays(offsets, pa.array(ids.reshape(-1))),
                     "scores": pa.ListArray.from_arrays(offsets, pa.array(scores.reshape(-1)))})


# -- Ray Data -----------------------------------------------------------------

class _RayShardSearcher:
    """A Ray actor holding one shard open; called with blocks of queries."""

    def __init__(self, shards: ShardSet, shard: int, k: int, ef: int):
        self.shards, self.shard, self.k, self.ef = shards, shard, k, ef
        shards.index(shard)  # open (map) it once, up front

    def __call__(self, batch):
        ids, scores = self.shards.search(self.shard, _as_matrix(batch["vector"]), self.k, ef=self.ef)
        return {"query": np.asarray(batch["query"], dtype=np.int64), "ids": ids, "scores": scores}


def ray_knn(shard_dir: str, queries: Any, k: int, out: str, ef: int = 0, batch_size: int = 1024,
            actors_per_shard: int = 1) -> None:
    """Runs the k-NN job on the Ray cluster `ray.init()` connected to (or a
    local one) and writes Parquet files to the directory `out`."""
    import ray
    import ray.data

    shards = ShardSet.open(shard_dir)
    if isinstance(queries, ray.data.Dataset):
        ds = queries
    else:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        import pandas as pd
        ds = ray.data.from_pandas(pd.DataFrame({"query": np.arange(len(q), dtype=np.int64), "vector": list(q)}))
    # One actor pool per shard: its actors keep that shard mapped while
    # blocks of queries stream through them.
    per_shard = [ds.map_batches(_RayShardSearcher, fn_constructor_args=(shards, s, k, ef), batch_size=batch_size,
                                batch_format="numpy", concurrency=actors_per_shard, num_cpus=1)
                 for s in range(len(shards))]
    candidates = per_shard[0].union(*per_shard[1:]) if len(per_shard) > 1 else per_shard[0]

    def flatten(group):
        # map_groups hands over a group's rows (one per shard): lay them
        # side by side, as one query's candidates.
        return {"query": group["query"][:1], "ids": _as_matrix(group["ids"], np.int64).reshape(1, -1),
                "scores": _as_matrix(group["scores"]).reshape(1, -1)}

    def top_k(batch):
        ids, scores = merge_topk([_as_matrix(batch["ids"], np.int64)], [_as_matrix(batch["scores"])], k, shards.metric)
        return _results_table(batch["query"], ids, scores)

    merged = candidates.groupby("query").map_groups(flatten, batch_format="numpy")
    merged.map_batches(top_k, batch_format="numpy").write_parquet(out)


# -- Spark --------------------------------------------------------------------

def spark_knn(spark, shard_dir: str, queries: Any, k: int, out: str, ef: int = 0,
              partitions_per_shard: int = 1) -> None:
    """Runs the k-NN job on `spark` (a SparkSession) and writes Parquet to
    the directory `out`: `mapInPandas` searches each shard's partitions,
    `applyInPandas` merges each query's candidates."""
    import pandas as pd
    from pyspark.sql import DataFrame

    shards = ShardSet.open(shard_dir)
    if isinstance(queries, DataFrame):
        qdf = queries.select("query", "vector")
    else:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        qdf = spark.createDataFrame(pd.DataFrame({"query": np.arange(len(q), dtype=np.int64),
                                                  "vector": [row.tolist() for row in q]}),
                                    schema="query long, vector array<float>")
    shard_df = spark.createDataFrame([(s,) for s in range(len(shards))], schema="shard int")
    pairs = qdf.crossJoin(shard_df).repartition(len(shards) * partitions_per_shard, "shard")

    def search(batches):
        for pdf in batches:
            for shard, rows in pdf.groupby("shard"):
                ids, scores = shards.search(int(shard), _as_matrix(rows["vector"].to_numpy()), k, ef=ef)
                yield pd.DataFrame({"query": rows["query"].to_numpy(), "ids": list(ids), "scores": list(scores)})

    def merge(pdf):
        ids, scores = merge_topk([_as_matrix(pdf["ids"].to_numpy(), np.int64).reshape(1, -1)],
                                 [_as_matrix(pdf["scores"].to_numpy()).reshape(1, -1)], k, shards.metric)
        return pd.DataFrame({"query": pdf["query"].to_numpy()[:1], "ids": list(ids), "scores": list(scores)})

    candidates = pairs.mapInPandas(search, schema="query long, ids array<long>, scores array<float>")
    merged = candidates.groupBy("query").applyInPandas(merge, schema="query long, ids array<long>, scores array<float>")
    merged.write.mode("overwrite").parquet(out)
