"""Backups (consistent snapshots on segments), restores into new indexes,
and bulk imports of gzip'd JSON Lines, through Pinecone's SDK."""

import gzip
import json
import time

import numpy as np
import pytest
from pinecone.exceptions import NotFoundException, PineconeApiException

from test_data_plane import loaded, metadata_of  # noqa: F401 (fixture)


def test_backup_and_restore(pc, loaded, index_name, data):
    index, ids, base, metas = loaded
    q = data.queries[:20]
    before = [[m.id for m in index.query(vector=v.tolist(), top_k=10).matches] for v in q]
    backup = pc.create_backup(index_name=index_name, backup_name="nightly", description="before the change")
    assert backup.status == "Ready" and backup.source_index_name == index_name
    assert backup.record_count == len(ids)
    assert (backup.dense_dimension if hasattr(type(backup), "dense_dimension") else backup.dimension) == 384
    # The source changes after the backup; the backup does not.
    index.upsert(vectors=[("later", base[0].tolist())])
    index.delete(ids=ids[:100])
    assert [b.backup_id for b in pc.list_backups(index_name=index_name)] == [backup.backup_id]
    assert pc.describe_backup(backup_id=backup.backup_id).name == "nightly"
    restored = index_name + "-r"
    try:
        pc.create_index_from_backup(name=restored, backup_id=backup.backup_id, tags={"from": "backup"})
        assert pc.describe_index(restored).status["ready"]
        assert pc.describe_index(restored).tags == {"from": "backup"}
        r = pc.Index(restored)
        assert r.describe_index_stats().total_vector_count == len(ids)
        assert r.fetch(ids=["later"]).vectors == {}
        after = [[m.id for m in r.query(vector=v.tolist(), top_k=10).matches] for v in q]
        assert after == before
        got = r.fetch(ids=[ids[3]]).vectors[ids[3]]
        np.testing.assert_allclose(got.values, base[3], rtol=1e-5, atol=1e-7)
        assert got.metadata == metas[3]
        assert any(j.target_index_name == restored for j in pc.list_restore_jobs())
    finally:
        if pc.has_index(restored):
            pc.delete_index(restored)
    pc.delete_backup(backup_id=backup.backup_id)
    with pytest.raises(NotFoundException):
        pc.describe_backup(backup_id=backup.backup_id)
    with pytest.raises(NotFoundException):
        pc.create_backup(index_name="no-such-index")


def write_jsonl_gz(path, rows):
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def wait_for(index, import_id):
    for _ in range(600):
        op = index.describe_import(import_id)
        if op.status in ("Completed", "Failed", "Cancelled"):
            return op
        time.sleep(0.05)
    raise AssertionError("the import did not finish")


def test_bulk_import(pc, loaded, tmp_path, data):
    index, ids, base, metas = loaded
    n = min(500, len(data.base) - len(ids))
    # Odd rows to "imported"; even rows to the default namespace, some of them spelled "__default__".
    rows = [{"id": f"imp-{i}", "values": data.base[len(ids) + i].tolist(), "metadata": {"batch": "import", "i": i},
             "namespace": "imported" if i % 2 else ("__default__" if i % 4 == 0 else "")} for i in range(n)]
    good = tmp_path / "good.jsonl.gz"
    write_jsonl_gz(good, rows)
    op = wait_for(index, index.start_import(f"file://{good}").id)
    assert op.status == "Completed" and op.records_imported == n and op.percent_complete == 100
    stats = index.describe_index_stats()
    assert stats.namespaces["imported"].vector_count == n // 2
    assert stats.total_vector_count == len(ids) + n
    assert stats.namespaces["__default__"].vector_count == len(ids) + n - n // 2
    names = {ns.name: int(ns.record_count) for page in index.list_namespaces() for ns in page.namespaces}
    assert names == {"__default__": len(ids) + n - n // 2, "imported": n // 2}
    got = index.fetch(ids=["imp-1"], namespace="imported").vectors["imp-1"]
    np.testing.assert_allclose(got.values, rows[1]["values"], rtol=1e-5, atol=1e-7)

    # A bad line: "abort" (the default) stores nothing of the file; "continue" skips it.
    bad = tmp_path / "bad.jsonl.gz"
    write_jsonl_gz(bad, [{"id": "b-0", "values": data.base[0].tolist()}, '{"id": "b-1", "values": [1, 2]}',
                         {"id": "b-2", "values": data.base[2].tolist()}])
    op = wait_for(index, index.start_import(f"file://{bad}").id)
    assert op.status == "Failed" and "dimension" in op.error
    assert index.fetch(ids=["b-0"]).vectors == {}
    op = wait_for(index, index.start_import(f"file://{bad}", error_mode="continue").id)
    assert op.status == "Completed" and op.records_imported == 2
    assert set(index.fetch(ids=["b-0", "b-1", "b-2"]).vectors) == {"b-0", "b-2"}
    assert len(list(index.list_imports())) == 3
    with pytest.raises(PineconeApiException):
        index.start_import("s3://bucket/path/")
    with pytest.raises(PineconeApiException):
        index.start_import(f"file://{tmp_path}/missing.jsonl.gz")
