"""The k-NN job on Ray Data and on Spark, each in local mode with 2
workers, over shard files: the same results as one process.

Flat shards must give exactly the exact search of the whole corpus, HNSW
shards exactly what `ShardSet.knn` gives in this process. Skipped when
ray or pyspark is not installed, unless LODESTONE_REQUIRE_SCALEOUT=1
(CI sets it), which makes a missing one a failure.
"""
import glob
import os
import sys

import numpy as np
import pytest

import lodestone
from lodestone.shards import write_shards

from conftest import canonical

K = 10
REQUIRED = os.environ.get("LODESTONE_REQUIRE_SCALEOUT") == "1"


def need(module):
    if REQUIRED:
        return __import__(module)
    return pytest.importorskip(module)


def read_results(directory, n):
    """(ids, scores) of the Parquet files a job wrote, ordered by query."""
    import pyarrow.parquet as pq
    table = pq.read_table(sorted(glob.glob(os.path.join(directory, "*.parquet"))))
    assert table.schema.field("query").type == "int64"
    query = table.column("query").to_numpy()
    assert sorted(query.tolist()) == list(range(n)), "every query exactly once"
    order = np.argsort(query)
    ids = np.array(table.column("ids").to_pylist(), dtype=np.int64)[order]
    scores = np.array(table.column("scores").to_pylist(), dtype=np.float32)[order]
    return ids, scores


@pytest.fixture(scope="module")
def shard_sets(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    flat = write_shards(data.base, str(root / "flat"), 4, kind="flat")
    hnsw = write_shards(data.base, str(root / "hnsw"), 3, kind="hnsw", ef_construction=100, threads=2)
    whole = lodestone.FlatIndex(data.base.shape[1], "cosine")
    whole.add(np.arange(len(data.base)), data.base)
    exact_ids, exact_scores = whole.search(data.queries, K)
    return {"flat": flat, "hnsw": hnsw, "exact": (exact_ids.astype(np.int64), exact_scores),
            "hnsw_local": hnsw.knn(data.queries, K, ef=32)}


def check(ids, scores, want_ids, want_scores):
    # Equal scores may come in either order: compare sorted by (score, id).
    got, want = canonical(ids, scores), canonical(want_ids, want_scores)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])


@pytest.fixture(scope="module")
def ray_local():
    ray = need("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def spark():
    need("pyspark")
    from pyspark.sql import SparkSession
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers use this environment too
    session = (SparkSession.builder.master("local[2]").appName("lodestone-knn-test")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.ui.enabled", "false").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_ray_flat_shards_equal_the_exact_search(ray_local, data, shard_sets, tmp_path):
    from lodestone.scaleout import ray_knn
    ray_knn(shard_sets["flat"].directory, data.queries, K, str(tmp_path / "out"), batch_size=256)
    check(*read_results(str(tmp_path / "out"), len(data.queries)), *shard_sets["exact"])


def test_ray_hnsw_shards_equal_one_process(ray_local, data, shard_sets, tmp_path):
    from lodestone.scaleout import ray_knn
    ray_knn(shard_sets["hnsw"].directory, data.queries, K, str(tmp_path / "out"), ef=32, batch_size=256)
    check(*read_results(str(tmp_path / "out"), len(data.queries)), *shard_sets["hnsw_local"])


def test_spark_flat_shards_equal_the_exact_search(spark, data, shard_sets, tmp_path):
    from lodestone.scaleout import spark_knn
    spark_knn(spark, shard_sets["flat"].directory, data.queries, K, str(tmp_path / "out"))
    check(*read_results(str(tmp_path / "out"), len(data.queries)), *shard_sets["exact"])


def test_spark_hnsw_shards_from_a_dataframe_equal_one_process(spark, data, shard_sets, tmp_path):
    from lodestone.scaleout import spark_knn
    # Queries as a Spark user has them: a table with an id and a vector column.
    import pandas as pd
    df = spark.createDataFrame(pd.DataFrame({"query": np.arange(len(data.queries)),
                                             "vector": [q.tolist() for q in data.queries]}),
                               schema="query long, vector array<float>")
    spark_knn(spark, shard_sets["hnsw"].directory, df, K, str(tmp_path / "out"), ef=32, partitions_per_shard=2)
    check(*read_results(str(tmp_path / "out"), len(data.queries)), *shard_sets["hnsw_local"])
