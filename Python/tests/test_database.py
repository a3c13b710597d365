"""Database and Index from Python on real records (PyPI package
summaries: id, embedding, metadata), checked against numpy brute force
with the filter evaluated in Python."""

import gzip
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lodestone
from conftest import child_env, exact_top_k

MODEL = "all-MiniLM-L6-v2"


def passes(meta: dict, flt: dict) -> bool:
    """Pinecone's filter semantics, written independently of the engine."""
    for key, cond in flt.items():
        if key == "$and":
            if not all(passes(meta, c) for c in cond):
                return False
            continue
        if key == "$or":
            if not any(passes(meta, c) for c in cond):
                return False
            continue
        if not isinstance(cond, dict):
            cond = {"$eq": cond}
        value = meta.get(key)
        for op, arg in cond.items():
            values = value if isinstance(value, list) else [value]
            if op == "$exists":
                ok = (value is not None) == arg
            elif value is None:
                ok = op in ("$ne", "$nin")
            elif op == "$eq":
                ok = arg in values
            elif op == "$ne":
                ok = arg not in values
            elif op == "$in":
                ok = any(v in arg for v in values)
            elif op == "$nin":
                ok = not any(v in arg for v in values)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    ok = False
                else:
                    ok = {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]
            if not ok:
                return False
    return True


def records(data):
    """(ids, metadata without id/text/null) of the real records."""
    ids, metas = [], []
    for m in data.metadata:
        ids.append(m["id"])
        metas.append({k: v for k, v in m.items() if k not in ("id", "text") and v is not None})
    return ids, metas


FILTERS = [
    {"year": {"$gte": 2024}},
    {"popular": True},
    {"$and": [{"year": {"$eq": 2019}}, {"words": {"$gte": 10}}]},
    {"$or": [{"year": {"$lt": 2012}}, {"rank": {"$exists": True}}]},
    {"year": {"$in": [2015, 2016, 2017]}, "words": {"$lt": 12}},
]


@pytest.fixture()
def db(tmp_path):
    with lodestone.Database(str(tmp_path / "db")) as database:
        yield database


def test_filtered_queries_against_brute_force(db, data):
    ids, metas = records(data)
    ix = db.create_index("pypi", dimension=384, metric="cosine", embedding_model=MODEL)
    for start in range(0, len(ids), 2500):
        ix.upsert(ids=ids[start:start + 2500], values=data.base[start:start + 2500],
                  metadata=metas[start:start + 2500], threads=2)
    assert len(ix) == len(ids)
    queries = data.queries[:30]
    for flt in FILTERS:
        mask = np.array([passes(m, flt) for m in metas])
        rows = np.flatnonzero(mask)
        truth, _ = exact_top_k(data.base[rows], queries, 10)
        hits = wanted = 0
        batch = ix.query_batch(queries, top_k=10, filter=flt, include_metadata=True, threads=2)
        for qi, q in enumerate(queries):
            got = ix.query(q, top_k=10, filter=flt, include_metadata=True)
            assert len(got) == min(10, len(rows)), flt
            assert all(passes(m.metadata, flt) for m in got), flt
            assert [m.id for m in got] == [m.id for m in batch[qi]], "batch differs from single"
            expected = {ids[r] for r in rows[truth[qi]]}
            hits += len(expected & {m.id for m in got})
            wanted += len(expected)
        assert hits / wanted >= 0.95, (flt, hits / wanted)


@pytest.mark.parametrize("traversal", ["quantized", "compact"])
def test_quantized_and_compact_traversals_reopen_with_them(tmp_path, data, traversal):
    ids, metas = records(data)
    path = str(tmp_path / "qdb")
    with lodestone.Database(path) as database:
        ix = database.create_index("q", dimension=384, metric="cosine", embedding_model=MODEL, traversal=traversal)
        for start in range(0, len(ids), 2500):
            ix.upsert(ids=ids[start:start + 2500], values=data.base[start:start + 2500],
                      metadata=metas[start:start + 2500], threads=2)
        before = [[m.id for m in ix.query(q, top_k=10, ef=96)] for q in data.queries[:20]]
        truth, _ = exact_top_k(data.base, data.queries[:20], 10)
        hits = sum(len({ids[r] for r in truth[i]} & set(before[i])) for i in range(20))
        assert hits / 200 >= 0.95
        with pytest.raises(lodestone.InvalidArgument, match="traversal"):
            database.create_index("bad", dimension=3, traversal="fast")
    with lodestone.Database(path) as database:
        ix = database.index("q", embedding_model=MODEL)
        after = [[m.id for m in ix.query(q, top_k=10, ef=96)] for q in data.queries[:20]]
        assert after == before
        # What searches keep hot: the quantized walk's blocks and vectors, or the compact code and links only.
        resident = database.describe_index("q")["resident_bytes_per_vector"]
        assert (resident > 1536 + 2368) if traversal == "quantized" else (350 <= resident <= 400)


def test_values_metadata_fetch_update_delete_namespaces(db, data):
    ids, metas = records(data)
    ix = db.create_index("docs", dimension=384, metric="cosine", kind="flat", embedding_model=MODEL)
    n = 300
    ix.upsert([(ids[i], data.base[i], metas[i]) for i in range(n)])
    ix.upsert([{"id": "other", "values": data.base[n], "metadata": {"tag": ["a", "b"]}}], namespace="ns2")
    top = ix.query(data.base[3], top_k=3, include_values=True, include_metadata=True)
    assert top[0].id == ids[3] and top[0].score == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(top[0].values, data.base[3], atol=1e-6)  # unit-length input comes back as given
    assert top[0].metadata == metas[3]
    assert [m.id for m in ix.query(id=ids[3], top_k=1)] == [ids[3]]
    got = ix.fetch([ids[0], "missing", ids[1]])
    assert set(got) == {ids[0], ids[1]} and got[ids[0]].metadata == metas[0]
    assert ix.fetch(["other"]) == {} and "other" in ix.fetch(["other"], namespace="ns2")
    stats = ix.describe_index_stats()
    assert stats["total_vector_count"] == n + 1 and stats["namespaces"]["ns2"]["vector_count"] == 1
    assert stats["dimension"] == 384 and stats["metric"] == "cosine"
    model = {ids[i]: dict(metas[i]) for i in range(n)}  # what the default namespace should hold
    ix.update(ids[0], set_metadata={"year": 1999, "note": "x"})
    model[ids[0]].update(year=1999, note="x")
    assert ix.fetch([ids[0]])[ids[0]].metadata == model[ids[0]]  # merged, not replaced
    ix.update(ids[0], values=data.base[5])
    assert {m.id for m in ix.query(data.base[5], top_k=2)} == {ids[0], ids[5]}
    assert ix.delete([ids[1], ids[2], "missing"]) == 2
    del model[ids[1]], model[ids[2]]
    old = [i for i, m in model.items() if m.get("year", 0) < 2015]
    assert ids[0] in old
    assert ix.delete(filter={"year": {"$lt": 2015}}) == len(old)
    for i in old:
        del model[i]
    seen, token = ix.list_ids(limit=50)
    assert seen == sorted(seen) and len(seen) == 50
    while token:
        page, token = ix.list_ids(limit=50, pagination_token=token)
        seen += page
    assert seen == sorted(model)
    assert ix.list_ids(prefix=seen[0][:3])[0] == [i for i in seen if i.startswith(seen[0][:3])][:100]
    assert ix.delete(delete_all=True, namespace="ns2") == 1
    assert ix.list_ids(namespace="ns2") == ([], None)


def test_bad_input_is_typed_and_stores_nothing(db, data):
    ix = db.create_index("bad", dimension=384, metric="cosine")
    ix.upsert(ids=["a"], values=data.base[:1])
    cases = [
        (lodestone.DimensionMismatch, lambda: ix.upsert(ids=["b"], values=np.ones((1, 10)))),
        (lodestone.InvalidMetadata, lambda: ix.upsert(ids=["b"], values=data.base[1:2], metadata=[{"x": {"nested": 1}}])),
        (lodestone.InvalidID, lambda: ix.upsert(ids=["b", "b"], values=data.base[1:3])),
        (lodestone.InvalidID, lambda: ix.upsert(ids=[""], values=data.base[1:2])),
        (lodestone.ZeroVector, lambda: ix.upsert(ids=["b"], values=np.zeros((1, 384)))),
        (lodestone.NonFiniteValue, lambda: ix.upsert(ids=["b"], values=np.full((1, 384), np.inf))),
        (lodestone.InvalidFilter, lambda: ix.query(data.base[0], filter={"year": {"$near": 3}})),
        (lodestone.InvalidFilter, lambda: ix.query(data.base[0], filter="{not json")),
        (lodestone.InvalidArgument, lambda: ix.query(data.base[0], top_k=0)),
        (lodestone.RecordNotFound, lambda: ix.update("missing", set_metadata={"a": 1})),
        (lodestone.RecordNotFound, lambda: ix.query(id="missing")),
        (lodestone.EmbeddingModelMismatch, lambda: ix.upsert(ids=["b"], values=data.base[1:2], embedding_model="x")),
        (lodestone.IndexNotFound, lambda: db.index("nope")),
        (lodestone.IndexAlreadyExists, lambda: db.create_index("bad", dimension=3)),
        (lodestone.InvalidArgument, lambda: db.create_index("Bad_Name", dimension=3)),
        (lodestone.InvalidArgument, lambda: db.create_index("x", dimension=0)),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    assert len(ix) == 1 and list(ix.fetch(["a", "b"])) == ["a"]


def test_persist_reopen_in_another_process_and_model_check(tmp_path, data):
    path = str(tmp_path / "db")
    ids, metas = records(data)
    with lodestone.Database(path) as db:
        ix = db.create_index("pypi", dimension=384, metric="cosine", embedding_model=MODEL)
        ix.upsert(ids=ids[:1000], values=data.base[:1000], metadata=metas[:1000], threads=2)
        before = [[m.id for m in ix.query(q, top_k=10, filter={"year": {"$gte": 2020}})] for q in data.queries[:10]]
    np.save(tmp_path / "q.npy", data.queries[:10])
    code = textwrap.dedent(f"""
        import json, numpy as np, lodestone
        db = lodestone.Database({path!r})
        try:
            db.index("pypi", embedding_model="text-embedding-3-small")
            raise SystemExit("no mismatch error")
        except lodestone.EmbeddingModelMismatch as e:
            assert "{MODEL}" in str(e) and "text-embedding-3-small" in str(e), str(e)
        ix = db.index("pypi", embedding_model="{MODEL}")
        q = np.load({str(tmp_path / 'q.npy')!r})
        print(json.dumps([[m.id for m in ix.query(v, top_k=10, filter={{"year": {{"$gte": 2020}}}})] for v in q]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == before


def test_locked_by_another_process(tmp_path):
    path = str(tmp_path / "db")
    with lodestone.Database(path) as db:
        db.create_index("held", dimension=2, metric="euclidean").upsert(ids=["a"], values=[[1, 2]])
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import lodestone, sys; ix = lodestone.Database({path!r}).index('held'); "
                               "print('open', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=child_env())
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(lodestone.IndexLocked, match="another process"):
            lodestone.Database(path).index("held")
    finally:
        holder.communicate("\n")
    assert len(lodestone.Database(path).index("held")) == 1


def test_read_only_processes_share_an_index_and_exclude_a_writer(tmp_path, data):
    path = str(tmp_path / "db")
    ids, metas = records(data)
    with lodestone.Database(path) as db:
        ix = db.create_index("pypi", dimension=384, metric="cosine")
        ix.upsert(ids=ids[:1000], values=data.base[:1000], metadata=metas[:1000], threads=2)
        want = [[m.id for m in ix.query(q, top_k=5)] for q in data.queries[:5]]
    np.save(tmp_path / "q.npy", data.queries[:5])
    reader = textwrap.dedent(f"""
        import json, sys, numpy as np, lodestone
        ix = lodestone.Database({path!r}, read_only=True).index("pypi")
        q = np.load({str(tmp_path / 'q.npy')!r})
        print(json.dumps([[m.id for m in ix.query(v, top_k=5)] for v in q]), flush=True)
        sys.stdin.readline()
    """)
    env = child_env()
    readers = [subprocess.Popen([sys.executable, "-c", reader], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        for r in readers:  # both hold the index at once, and see what was written
            assert json.loads(r.stdout.readline()) == want
        with pytest.raises(lodestone.IndexLocked, match="another process"):
            lodestone.Database(path).index("pypi")
        ro = lodestone.Database(path, read_only=True).index("pypi")
        assert [[m.id for m in ro.query(q, top_k=5)] for q in data.queries[:5]] == want
        with pytest.raises(lodestone.ReadOnly, match="read-only"):
            ro.upsert(ids=["x"], values=data.base[:1])
        with pytest.raises(PermissionError):
            ro.delete(ids=[ids[0]])
        ro.close()
    finally:
        for r in readers:
            r.communicate("\n")
    assert all(r.returncode == 0 for r in readers)
    with lodestone.Database(path) as db:  # the readers gone, a writer opens it
        assert len(db.index("pypi")) == 1000


def test_export_import_round_trip(db, data, tmp_path):
    ids, metas = records(data)
    ix = db.create_index("src", dimension=384, metric="cosine", embedding_model=MODEL)
    ix.upsert(ids=ids[:200], values=data.base[:200], metadata=metas[:200])
    ix.upsert(ids=["n1"], values=data.base[200:201], namespace="other")
    path = str(tmp_path / "out.jsonl.gz")
    assert ix.export(path) == 201
    lines = [json.loads(l) for l in gzip.open(path, "rt")]
    assert {l["id"] for l in lines} == set(ids[:200]) | {"n1"}
    report = db.import_records(path, "copy", embedding_model=MODEL)
    assert report["records"] == 201 and report["created_index"] is True
    copy = db.index("copy")
    assert copy.describe_index_stats()["namespaces"] == ix.describe_index_stats()["namespaces"]
    for q in data.queries[:5]:
        a = ix.query(q, top_k=10, include_metadata=True)
        b = copy.query(q, top_k=10, include_metadata=True)
        assert [(m.id, m.score, m.metadata) for m in a] == [(m.id, m.score, m.metadata) for m in b]
    assert db.describe_index("copy")["record_count"] == 201
    assert sorted(db.list_indexes()) == ["copy", "src"] and db.has_index("copy")
    db.delete_index("copy")
    assert db.list_indexes() == ["src"]


def test_python_argument_mistakes_are_refused(db, data):
    ix = db.create_index("args", dimension=384, metric="cosine")
    ix.upsert(ids=["d", "x", "y", "dxy"], values=data.base[:4])
    with pytest.raises(lodestone.InvalidArgument, match="single string"):
        ix.delete("dxy")  # would otherwise delete "d", "x" and "y"
    with pytest.raises(lodestone.InvalidArgument, match="single string"):
        ix.fetch("dxy")
    with pytest.raises(lodestone.InvalidArgument, match="one vector"):
        ix.update("d", values=data.base[5:7])
    with pytest.raises(lodestone.InvalidArgument, match="entries"):
        ix.upsert(ids=["a", "b"], values=data.base[:2], metadata=[None])
    assert len(ix) == 4 and sorted(ix.fetch(["d", "x", "y", "dxy"])) == ["d", "dxy", "x", "y"]
    db.close()  # closes the index under this handle
    with pytest.raises(lodestone.IndexClosed):
        len(ix)
    ix.close()  # closing what the database closed is not an error
    with pytest.raises(lodestone.IndexClosed):
        ix.query(data.base[0], top_k=1)
    assert len(db.index("args")) == 4
