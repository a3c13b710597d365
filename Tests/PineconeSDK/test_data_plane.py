"""The data plane through Pinecone's SDK on real data (pypi-minilm
embeddings with their metadata), checked against float64 brute force."""

import json
import signal

import numpy as np
import pytest
from pinecone import ServerlessSpec
from pinecone.exceptions import NotFoundException, PineconeApiException

from conftest import exact_top_k, pinecone_match as passes
from test_control_plane import raw

N = 3_000  # records upserted (fewer when the data has fewer)


def metadata_of(m):
    """The record's metadata as Pinecone takes it (no nulls)."""
    return {k: v for k, v in m.items() if k != "id" and v is not None}


@pytest.fixture()
def loaded(pc, index_name, data):
    pc.create_index(name=index_name, dimension=384, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    index = pc.Index(index_name)
    n = min(N, len(data.base))
    ids = [m["id"] for m in data.metadata[:n]]
    records = [{"id": i, "values": v.tolist(), "metadata": metadata_of(m)}
               for i, v, m in zip(ids, data.base[:n], data.metadata[:n])]
    response = index.upsert(vectors=records, batch_size=250)
    assert response.upserted_count == n
    return index, ids, data.base[:n], [metadata_of(m) for m in data.metadata[:n]]


FILTERS = [
    {"year": {"$gte": 2024}},
    {"popular": True},
    {"$and": [{"year": {"$in": [2019, 2020, 2021]}}, {"words": {"$lt": 12}}]},
    {"$or": [{"year": {"$lt": 2012}}, {"rank": {"$exists": True}}]},
]


def test_query_recall_filters_and_values(loaded, data):
    index, ids, base, metas = loaded
    queries = data.queries[:40]
    for flt in [None] + FILTERS:
        rows = [i for i, m in enumerate(metas) if flt is None or passes(flt, m)]
        order, scores = exact_top_k(base[rows], queries, 10)
        hits = total = 0
        for q, (o, s) in enumerate(zip(order, scores)):
            r = index.query(vector=queries[q].tolist(), top_k=10, filter=flt, include_metadata=True)
            assert len(r.matches) == min(10, len(rows))
            for m in r.matches:
                assert flt is None or passes(flt, m.metadata)
            got = {m.id for m in r.matches}
            hits += len(got & {ids[rows[i]] for i in o})
            total += len(o)
            # Scores are cosine similarities, best first.
            assert all(a.score >= b.score - 1e-6 for a, b in zip(r.matches, r.matches[1:]))
        assert hits / total >= 0.95, (flt, hits / total)
    # By id, with values: the record itself first, its values as upserted.
    r = index.query(id=ids[5], top_k=3, include_values=True)
    assert r.matches[0].id == ids[5]
    np.testing.assert_allclose(r.matches[0].values, base[5], rtol=1e-5, atol=1e-7)
    # A zero vector under cosine has no direction: scores 0, filter honoured (LlamaIndex sends one).
    r = index.query(vector=[0.0] * 384, top_k=5, filter={"popular": True}, include_metadata=True)
    assert len(r.matches) == min(5, sum(m.get("popular") is True for m in metas))
    assert all(m.score == 0 and m.metadata["popular"] is True for m in r.matches)
    # `filter: {}` matches everything; an absent id gives no matches.
    assert len(index.query(vector=base[0].tolist(), top_k=7, filter={}).matches) == 7
    assert index.query(id="no-such-id", top_k=3).matches == []


def test_fetch_update_delete_stats_list(loaded):
    index, ids, base, metas = loaded
    got = index.fetch(ids=[ids[0], ids[1], "absent#1"])
    assert set(got.vectors) == {ids[0], ids[1]}
    np.testing.assert_allclose(got.vectors[ids[1]].values, base[1], rtol=1e-5, atol=1e-7)
    assert got.vectors[ids[1]].metadata == metas[1]
    # update: new values, merged metadata
    index.update(id=ids[0], values=(base[1] * 2).tolist(), set_metadata={"note": "edited", "year": 1999})
    r = index.fetch(ids=[ids[0]]).vectors[ids[0]]
    np.testing.assert_allclose(r.values, base[1] * 2, rtol=1e-5, atol=1e-7)
    assert r.metadata == {**metas[0], "note": "edited", "year": 1999}
    # update by filter (metadata only), dry run first
    n_popular = sum(m.get("popular") is True for m in metas)
    assert index.update(filter={"popular": True}, set_metadata={"flag": "x"}, dry_run=True).matched_records == n_popular
    assert index.describe_index_stats(filter={"flag": "x"}).total_vector_count == 0
    assert index.update(filter={"popular": True}, set_metadata={"flag": "x"}).matched_records == n_popular
    assert index.describe_index_stats(filter={"flag": "x"}).total_vector_count == n_popular
    # fetch by metadata, paged
    seen, token = set(), None
    while True:
        page = index.fetch_by_metadata(filter={"flag": "x"}, limit=7, pagination_token=token)
        seen |= set(page.vectors)
        token = page.pagination.next if page.pagination else None
        if not token:
            break
    assert len(seen) == n_popular
    # list ids by prefix, paged
    prefix = ids[10][:2]
    want = sorted(i for i in ids if i.startswith(prefix))
    listed = [v.id for page in index.list(prefix=prefix, limit=3) for v in page.vectors]
    assert sorted(listed) == want
    # delete by ids, by filter, stats
    index.delete(ids=[ids[2], ids[3]])
    assert index.fetch(ids=[ids[2]]).vectors == {}
    index.delete(filter={"flag": "x"})
    stats = index.describe_index_stats()
    assert stats.dimension == 384
    assert stats.total_vector_count == len(ids) - 2 - n_popular + sum(
        1 for i in (2, 3) if metas[i].get("popular") is True)
    assert stats.namespaces["__default__"].vector_count == stats.total_vector_count


def test_namespaces(loaded, data):
    index, ids, base, metas = loaded
    index.upsert(vectors=[(f"n{i}", base[i].tolist()) for i in range(20)], namespace="other")
    assert index.query(vector=base[0].tolist(), top_k=3, namespace="other").matches[0].id == "n0"
    assert index.fetch(ids=["n0"]).vectors == {}  # not in the default namespace
    assert index.describe_index_stats().namespaces["other"].vector_count == 20
    index.create_namespace(name="empty")
    names = {ns.name: int(ns.record_count) for page in index.list_namespaces() for ns in page.namespaces}
    assert names == {"__default__": len(ids), "other": 20, "empty": 0}
    assert int(index.describe_namespace(name="other").record_count) == 20
    index.delete_namespace(name="other")
    with pytest.raises(NotFoundException):
        index.describe_namespace(name="other")
    index.delete(delete_all=True, namespace="empty")
    index.delete(delete_all=True)
    assert index.describe_index_stats().total_vector_count == 0


def test_data_plane_errors_leave_data_intact(loaded, server, index_name):
    index, ids, base, metas = loaded
    before = index.describe_index_stats().total_vector_count
    path = "/_data/" + index_name
    bad = [
        ("/vectors/upsert", {"vectors": [{"id": "x", "values": [0.1] * 3}]}, "dimension"),
        ("/vectors/upsert", {"vectors": [{"id": "ok", "values": [0.1] * 384}, {"id": "nan", "values": [0.1] * 383 + ["x"]}]}, "numbers"),
        ("/vectors/upsert", {"vectors": [{"id": "z", "values": [0.0] * 384}]}, "zero vector"),
        ("/vectors/upsert", {"vectors": [{"id": "ok", "values": [0.1] * 384},
                                         {"id": "s", "values": [0.1] * 384, "sparseValues": {"indices": [1, 2], "values": [0.5]}}]},
         "vectors[1].sparseValues"),
        ("/vectors/upsert", {"vectors": [{"id": "s", "values": [0.1] * 384, "sparseValues": {"indices": [4, 4], "values": [1, 2]}}]}, "twice"),
        ("/vectors/upsert", {"vectors": [{"id": "s", "values": [0.1] * 384, "sparseValues": {"indices": [-1], "values": [1]}}]}, "indices[0]"),
        ("/vectors/upsert", {"vectors": [{"id": "s", "values": [0.1] * 384, "sparseValues": {"indices": [1], "values": ["x"]}}]}, "values[0]"),
        ("/vectors/upsert", {"vectors": [{"id": "s", "values": [0.1] * 384, "sparseValues": {"indices": [1]}}]}, "\"values\""),
        ("/vectors/upsert", {"vectors": [{"id": "s", "values": [0.1] * 384,
                                          "sparseValues": {"indices": list(range(2049)), "values": [1.0] * 2049}}]}, "at most 2048"),
        ("/vectors/upsert", {"vectors": [{"id": "m", "values": [0.1] * 384, "metadata": {"nested": {"a": 1}}}]}, "metadata"),
        ("/vectors/upsert", {"vectors": [{"id": "", "values": [0.1] * 384}]}, "id"),
        ("/vectors/upsert", {"vectors": "nope"}, "array"),
        ("/query", {"topK": 0, "vector": [0.1] * 384}, "topK"),
        ("/query", {"topK": 3}, "vector"),
        ("/query", {"topK": 3, "vector": [0.1] * 384, "filter": {"year": {"$regex": "x"}}}, "filter"),
        ("/query", {"topK": 3, "vector": [0.1] * 384, "sparseVector": {"indices": [1], "values": [1.0, 2.0]}}, "sparseVector"),
        ("/query", {"topK": 3, "id": "x", "sparseVector": {"indices": [1], "values": [1.0]}}, "alone"),
        ("/vectors/update", {"id": "x", "sparseValues": {"indices": [3, 3], "values": [1.0, 2.0]}}, "sparseValues"),
        ("/vectors/delete", {}, "exactly one"),
        ("/vectors/update", {"values": [0.1] * 384}, "id"),
    ]
    for route, body, words in bad:
        status, answer = raw(server, "POST", path + route, body)
        assert status == 400, (route, body, answer)
        assert words in answer["message"], (route, answer["message"])
        assert answer["code"] == 3
    for route, body, code in [("/query", b'{"topK": 3, "vector": [0.1, ', 400), ("/vectors/upsert", b"\xff\xfe", 400),
                              ("/nowhere", b"{}", 404)]:
        assert raw(server, "POST", path + route, body)[0] == code
    assert raw(server, "POST", "/_data/no-such-index/query", {"topK": 1, "vector": [0.1]})[0] == 404
    assert index.describe_index_stats().total_vector_count == before
    assert index.fetch(ids=["ok"]).vectors == {}  # the good record of a bad batch was not stored
    with pytest.raises(PineconeApiException):
        index.upsert(vectors=[("short", [0.1, 0.2])])


def test_restart_keeps_everything(loaded, server, pc, index_name, data):
    """SIGTERM closes (persists) every index; SIGKILL loses no acknowledged write."""
    index, ids, base, metas = loaded
    q = data.queries[0].tolist()
    before = [m.id for m in index.query(vector=q, top_k=10).matches]
    server.restart(signal.SIGTERM)
    index = pc.Index(host=f"{server.url}/_data/{index_name}")
    assert [m.id for m in index.query(vector=q, top_k=10).matches] == before
    index.upsert(vectors=[("after-restart", base[0].tolist(), {"late": True})])
    server.restart(signal.SIGKILL)
    index = pc.Index(host=f"{server.url}/_data/{index_name}")
    got = index.fetch(ids=["after-restart"]).vectors["after-restart"]
    assert got.metadata == {"late": True}
    assert index.describe_index_stats().total_vector_count == len(ids) + 1


@pytest.mark.parametrize("traversal", ["quantized", "compact"])
def test_traversal_through_lodestone_options(pc, server, index_name, data, traversal):
    """An index created with Lodestone's own option `traversal` (`quantized`
    or `compact`) says so in its description, answers real queries with exact cosine
    scores and the recall of float64 brute force, and keeps them across a
    restart; a traversal it does not know is a 400 naming the field."""
    status, created = raw(server, "POST", "/indexes", {"name": index_name, "dimension": 384, "metric": "cosine",
                                                        "lodestone": {"traversal": traversal, "ef_search": 96}})
    assert status == 201, created
    assert created["lodestone"]["traversal"] == traversal
    index = pc.Index(index_name)
    n = min(N, len(data.base))
    ids = [m["id"] for m in data.metadata[:n]]
    index.upsert(vectors=[{"id": i, "values": v.tolist()} for i, v in zip(ids, data.base[:n])], batch_size=250)
    queries = data.queries[:40]
    order, scores = exact_top_k(data.base[:n], queries, 10)

    def recall():
        hits = 0
        for q, (o, s) in enumerate(zip(order, scores)):
            r = index.query(vector=queries[q].tolist(), top_k=10)
            assert len(r.matches) == 10
            got = {m.id: m.score for m in r.matches}
            hits += len(got.keys() & {ids[i] for i in o})
            # Scores are exact cosine similarities, whichever walk found them.
            for i, sc in zip(o, s):
                if ids[i] in got:
                    assert got[ids[i]] == pytest.approx(sc, abs=1e-5)
        return hits / (10 * len(queries))

    assert recall() >= 0.95
    server.restart(signal.SIGTERM)
    assert raw(server, "GET", "/indexes/" + index_name)[1]["lodestone"]["traversal"] == traversal
    assert recall() >= 0.95
    status, answer = raw(server, "POST", "/indexes", {"name": index_name + "-x", "dimension": 4,
                                                       "lodestone": {"traversal": "fast"}})
    assert status == 400 and "traversal" in answer["error"]["message"], answer


def bm25_like(text, vocabulary):
    """A small bag-of-words sparse vector (term ids from a shared vocabulary)."""
    counts = {}
    for token in "".join(c if c.isalnum() else " " for c in text.lower()).split():
        t = vocabulary.setdefault(token, len(vocabulary))
        counts[t] = counts.get(t, 0) + 1
    indices = sorted(counts)
    return {"indices": indices, "values": [float(counts[t]) / (counts[t] + 1.2) for t in indices]}


def sparse_dot(a, b):
    weights = dict(zip(a["indices"], a["values"]))
    return sum(weights.get(i, 0.0) * v for i, v in zip(b["indices"], b["values"]))


def test_sparse_and_hybrid_queries(pc, index_name, data):
    """Pinecone's sparse-dense calls, unchanged: upsert with sparse_values,
    query with sparse_vector (alone and with a vector), fetch and update
    returning them; scores are exact."""
    pc.create_index(name=index_name, dimension=384, metric="dotproduct", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    index = pc.Index(index_name)
    n = min(1_000, len(data.base))
    vocabulary = {}
    sparse = [bm25_like(f"{m['id']}: {m['text']}", vocabulary) for m in data.metadata[:n]]
    ids = [m["id"] for m in data.metadata[:n]]
    records = [{"id": i, "values": v.tolist(), "sparse_values": s, "metadata": {"year": m["year"]}}
               for i, v, s, m in zip(ids, data.base[:n], sparse, data.metadata[:n])]
    assert index.upsert(vectors=records, batch_size=200).upserted_count == n
    fetched = index.fetch(ids=ids[:3]).vectors
    for i in range(3):
        assert list(fetched[ids[i]].sparse_values.indices) == sparse[i]["indices"]
        assert np.allclose(fetched[ids[i]].sparse_values.values, sparse[i]["values"])
    for qi in range(20):
        q = data.queries[qi]
        # Texts of records not upserted serve as the keyword queries.
        qs = bm25_like(data.metadata[n + qi]["text"], dict(vocabulary))
        qs = {"indices": [i for i in qs["indices"] if i < len(vocabulary)], "values":
              [v for i, v in zip(qs["indices"], qs["values"]) if i < len(vocabulary)]}
        if not qs["indices"]:
            continue
        exact = sorted(((sparse_dot(s, qs), -r) for r, s in enumerate(sparse) if sparse_dot(s, qs) != 0), reverse=True)[:10]
        got = index.query(sparse_vector=qs, top_k=10, include_values=True)
        assert [round(m.score, 4) for m in got.matches] == [round(e[0], 4) for e in exact]
        assert all(m.sparse_values is not None for m in got.matches)
        hybrid = index.query(vector=q.tolist(), sparse_vector=qs, top_k=10, filter={"year": {"$gte": 2020}},
                             include_metadata=True)
        assert len(hybrid.matches) == 10
        for m in hybrid.matches:
            r = ids.index(m.id)
            assert m.metadata["year"] >= 2020
            assert abs(m.score - (float(np.dot(q, data.base[r])) + sparse_dot(sparse[r], qs))) < 1e-3
    index.update(id=ids[0], sparse_values={"indices": [7, 3], "values": [0.5, 0.25]})
    updated = index.fetch(ids=[ids[0]]).vectors[ids[0]]
    assert list(updated.sparse_values.indices) == [3, 7]
    assert np.allclose(updated.values, data.base[0], atol=1e-6)


def test_text_search(pc, server, index_name, data):
    """Lodestone's BM25 text search over the wire: an index made with
    lodestone.text_field, records upserted by the SDK with their text,
    queries by "text" alone and with a vector; bad text input is 400."""
    status, model = raw(server, "POST", "/indexes", {
        "name": index_name, "dimension": 384, "metric": "cosine",
        "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}}, "lodestone": {"text_field": "text"}})
    assert status == 201, model
    assert model["lodestone"]["text_field"] == "text"
    index = pc.Index(index_name)
    n = min(1_000, len(data.base))
    ids = [m["id"] for m in data.metadata[:n]]
    records = [{"id": i, "values": v.tolist(), "metadata": {"text": m["text"], "year": m["year"]}}
               for i, v, m in zip(ids, data.base[:n], data.metadata[:n])]
    assert index.upsert(vectors=records, batch_size=250).upserted_count == n
    path = "/" + model["host"].split("/", 3)[3]
    fetched = index.fetch(ids=ids[:1]).vectors[ids[0]]
    assert len(fetched.sparse_values.indices) > 0  # the text's BM25 vector

    def query(body):
        return raw(server, "POST", path + "/query", body)

    for r in range(0, 200, 10):
        status, got = query({"text": data.metadata[r]["text"], "topK": 5, "includeMetadata": True})
        assert status == 200, got
        scores = [m["score"] for m in got["matches"]]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0
        # A record's own text ranks it first (or tied with an equal text).
        assert got["matches"][0]["id"] == ids[r] or got["matches"][0]["metadata"]["text"] == data.metadata[r]["text"] \
            or abs(scores[0] - next(m["score"] for m in got["matches"] if m["id"] == ids[r])) < 1e-6
        text_scores = {m["id"]: m["score"] for m in query({"text": data.metadata[r]["text"], "topK": n})[1]["matches"]}
        status, hybrid = query({"text": data.metadata[r]["text"], "vector": data.queries[r].tolist(), "topK": 5,
                                "filter": {"year": {"$gte": 2020}}, "includeMetadata": True})
        assert status == 200, hybrid
        for m in hybrid["matches"]:
            k = ids.index(m["id"])
            assert m["metadata"]["year"] >= 2020
            expected = float(np.dot(data.queries[r], data.base[k]) / np.linalg.norm(data.queries[r]) / np.linalg.norm(data.base[k]))
            assert abs(m["score"] - (expected + text_scores.get(m["id"], 0.0))) < 1e-3
    bad = [
        ({"text": 3, "topK": 3}, "text"),
        ({"text": "python", "sparseVector": {"indices": [1], "values": [1.0]}, "topK": 3}, "sparseVector"),
        ({"text": "python", "id": ids[0], "topK": 3}, "id"),
    ]
    for body, word in bad:
        status, reply = query(body)
        assert status == 400 and word in reply["error"]["message"], (body, reply)
    status, reply = raw(server, "POST", path + "/vectors/upsert", {"vectors": [
        {"id": "x", "values": data.base[0].tolist(), "sparseValues": {"indices": [1], "values": [1.0]}}]})
    assert status == 400 and "sparseValues" in reply["error"]["message"], reply
    status, reply = raw(server, "POST", path + "/vectors/upsert", {"vectors": [
        {"id": "x", "values": data.base[0].tolist(), "metadata": {"text": 5}}]})
    assert status == 400 and "text" in reply["error"]["message"], reply
    assert index.describe_index_stats().total_vector_count == n
    status, reply = raw(server, "POST", "/indexes", {"name": index_name + "-x", "dimension": 4,
                                                      "lodestone": {"text_field": ""}})
    assert status == 400, reply


def test_sparse_index(pc, server, index_name, data):
    """A sparse index (vector_type "sparse"), as Pinecone's SDK creates and
    queries it: records with sparse values only, exact sparse queries."""
    pc.create_index(name=index_name, vector_type="sparse", metric="dotproduct",
                    spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    described = pc.describe_index(index_name)
    assert described.vector_type == "sparse" and described.metric == "dotproduct"
    index = pc.Index(index_name)
    n = min(1_000, len(data.base))
    vocabulary = {}
    sparse = [bm25_like(f"{m['id']}: {m['text']}", vocabulary) for m in data.metadata[:n]]
    ids = [m["id"] for m in data.metadata[:n]]
    assert index.upsert(vectors=[{"id": i, "sparse_values": s} for i, s in zip(ids, sparse)],
                        batch_size=250).upserted_count == n
    assert index.describe_index_stats().total_vector_count == n
    for qi in range(10):
        qs = bm25_like(data.metadata[n + qi]["text"], dict(vocabulary))
        keep = [j for j, t in enumerate(qs["indices"]) if t < len(vocabulary)]
        qs = {"indices": [qs["indices"][j] for j in keep], "values": [qs["values"][j] for j in keep]}
        if not qs["indices"]:
            continue
        exact = sorted((sparse_dot(s, qs) for s in sparse if sparse_dot(s, qs) != 0), reverse=True)[:10]
        got = index.query(sparse_vector=qs, top_k=10)
        assert [round(m.score, 4) for m in got.matches] == [round(e, 4) for e in exact]
    fetched = index.fetch(ids=[ids[0]]).vectors[ids[0]]
    assert list(fetched.sparse_values.indices) == sparse[0]["indices"]
    path = "/_data/" + index_name
    for body, words in [({"topK": 3, "vector": [0.1] * 4}, "sparseVector"),
                        ({"topK": 3, "vector": [0.1], "sparseVector": {"indices": [1], "values": [1.0]}}, "sparseVector")]:
        status, answer = raw(server, "POST", path + "/query", body)
        assert status == 400 and words in answer["message"], answer
    status, answer = raw(server, "POST", path + "/vectors/upsert", {"vectors": [{"id": "d", "values": [0.5, 0.5]}]})
    assert status == 400 and "sparse" in answer["message"], answer
    status, answer = raw(server, "POST", "/indexes", {"name": "bad-sparse", "vector_type": "sparse", "dimension": 8,
                                                        "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}}})
    assert status == 400 and "dimension" in answer["message"], answer
    assert index.describe_index_stats().total_vector_count == n
