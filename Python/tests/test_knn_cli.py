"""`lodestone knn`'s Parquet results, read by pyarrow and pandas as a
pipeline's next stage would: the exact top-k of a base file, and the k-NN
graph of a database index made from Python (string ids)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lodestone
from conftest import REPO, exact_top_k

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def cli():
    path = os.environ.get("LODESTONE_BIN") or str(REPO / "Tools" / ".build" / "release" / "lodestone")
    if not os.path.exists(path):
        if os.environ.get("LODESTONE_EXPECT_INSTALLED"):
            pytest.fail(f"{path} is missing (Scripts/python-test builds it)")
        pytest.skip("build the lodestone command first: swift build -c release --package-path Tools --product lodestone")
    return path


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    rows[:, 0] = np.array([x.shape[1]], dtype=np.int32).view(np.float32)[0]
    rows[:, 1:] = x
    rows.tofile(path)


def test_base_file_parquet_is_the_exact_top_k(cli, data, tmp_path):
    base, queries = data.base[:3000], data.queries[:150]
    write_fvecs(tmp_path / "base.fvecs", base)
    np.save(tmp_path / "queries.npy", queries)
    out = tmp_path / "r.parquet"
    subprocess.run([cli, "knn", "--base", str(tmp_path / "base.fvecs"), "--queries", str(tmp_path / "queries.npy"),
                    "--k", "10", "--out", str(out), "--block", "64"], check=True, capture_output=True)
    table = pq.read_table(out)
    assert table.column_names == ["query", "ids", "scores"]
    assert table.num_rows == len(queries)
    assert len(pq.ParquetFile(out).metadata.row_group(0).to_dict()["columns"]) == 3
    assert pq.ParquetFile(out).num_row_groups == 3  # one per block of 64
    order, scores = exact_top_k(base, queries, 10)
    ids = np.array(table.column("ids").to_pylist())
    assert (ids == order).mean() >= 0.99
    np.testing.assert_allclose(np.array(table.column("scores").to_pylist()), scores, atol=1e-5)
    frame = table.to_pandas()
    assert list(frame["query"]) == list(range(len(queries)))


def test_index_self_join_parquet_has_string_ids(cli, data, tmp_path):
    n = 2000
    ids = [m["id"] for m in data.metadata[:n]]
    with lodestone.Database(str(tmp_path / "db")) as db:
        index = db.create_index("docs", 384, kind="flat")
        index.upsert(ids=ids, values=data.base[:n])
    out = tmp_path / "graph.parquet"
    subprocess.run([cli, "knn", "--db", str(tmp_path / "db"), "--index", "docs", "--self", "--k", "5", "--out", str(out)],
                   check=True, capture_output=True)
    frame = pq.read_table(out).to_pandas()
    assert list(frame.columns) == ["query", "query_id", "ids", "scores"]
    assert sorted(frame["query_id"]) == sorted(ids)
    position = {i: r for r, i in enumerate(ids)}
    order, _ = exact_top_k(data.base[:n], data.base[:n], 6)
    agree = 0
    for qid, got in zip(frame["query_id"], frame["ids"]):
        assert qid not in got and len(got) == 5
        want = [ids[j] for j in order[position[qid]] if ids[j] != qid][:5]
        agree += list(got) == want
    assert agree / n >= 0.99
