#!/usr/bin/env python3
"""The k-NN job past one machine: shard a corpus, then run it on Ray or Spark.

    # 1. Shard the corpus into immutable files (here 4 HNSW shards).
    python3 Python/examples/scaleout_knn.py shard --base base.fvecs --shards 4 --kind hnsw --out shards/

    # 2. Every query's 10 nearest, merged over all shards, as Parquet.
    python3 Python/examples/scaleout_knn.py ray   --shards shards/ --queries query.fvecs --k 10 --ef 64 --out knn-ray/
    python3 Python/examples/scaleout_knn.py spark --shards shards/ --queries query.fvecs --k 10 --ef 64 --out knn-spark/

    # 3. The same job in this process, to compare (flat shards: the exact answer).
    python3 Python/examples/scaleout_knn.py local --shards shards/ --queries query.fvecs --k 10 --ef 64 --out knn-local.parquet

Without an address, Ray starts a local cluster and Spark runs `local[2]`;
on a cluster, pass `--ray-address auto` (inside a Ray cluster) or run the
spark step through `spark-submit --master ...`. Shard files must be
readable at the same path on every worker (a shared filesystem, or copied
to each node's disk first: they never change once written).
"""
import argparse
import os
import sys

import numpy as np


def read_vectors(path):
    if path.endswith(".npy"):
        return np.load(path)
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view("<f4")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["shard", "ray", "spark", "local"])
    p.add_argument("--base", help="shard: the corpus (.fvecs or .npy)")
    p.add_argument("--kind", default="hnsw", choices=["flat", "hnsw"])
    p.add_argument("--metric", default="cosine")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--shards", required=False, help="shard: how many; the others: the shard directory")
    p.add_argument("--queries")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--ef", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--ray-address")
    a = p.parse_args()

    if a.step == "shard":
        from lodestone.shards import write_shards
        shards = write_shards(a.base, a.out, int(a.shards), kind=a.kind, metric=a.metric, threads=a.threads)
        print(shards)
        return
    queries = read_vectors(a.queries)
    if a.step == "ray":
        import ray
        from lodestone.scaleout import ray_knn
        ray.init(address=a.ray_address)
        ray_knn(a.shards, queries, a.k, a.out, ef=a.ef)
    elif a.step == "spark":
        from pyspark.sql import SparkSession
        from lodestone.scaleout import spark_knn
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (SparkSession.builder.appName("lodestone-knn")
                 .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
        spark_knn(spark, a.shards, queries, a.k, a.out, ef=a.ef)
        spark.stop()
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from lodestone.shards import ShardSet
        ids, scores = ShardSet.open(a.shards).knn(queries, a.k, ef=a.ef, threads=a.threads)
        pq.write_table(pa.table({"query": np.arange(len(ids)), "ids": list(ids), "scores": list(scores)}), a.out)
    print(f"{len(queries)} queries, k={a.k}: {a.out}")


if __name__ == "__main__":
    main()
