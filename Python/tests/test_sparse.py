"""Sparse vectors and hybrid queries from Python, checked against float64
brute force on bag-of-words vectors of the PyPI summaries."""

import numpy as np
import pytest

import lodestone


def bag_of_words(text, vocabulary, grow=True):
    """A sparse vector of the text's words (ids from a shared vocabulary)."""
    counts = {}
    for token in "".join(c if c.isalnum() else " " for c in text.lower()).split():
        if token not in vocabulary:
            if not grow:
                continue
            vocabulary[token] = len(vocabulary)
        t = vocabulary[token]
        counts[t] = counts.get(t, 0) + 1
    indices = sorted(counts)
    return {"indices": indices, "values": [counts[t] / (counts[t] + 1.2) for t in indices]}


def dot(a, b):
    weights = dict(zip(a["indices"], a["values"]))
    return sum(weights.get(i, 0.0) * v for i, v in zip(b["indices"], b["values"]))


@pytest.fixture()
def corpus(data):
    n = min(2_000, len(data.base) - 50)
    vocabulary = {}
    docs = [bag_of_words(f"{m['id']}: {m['text']}", vocabulary) for m in data.metadata[:n]]
    queries = [bag_of_words(m["text"], vocabulary, grow=False) for m in data.metadata[n:n + 50]]
    return n, docs, [q for q in queries if q["indices"]]


def test_sparse_and_hybrid_queries_are_exact_on_a_flat_index(tmp_path, data, corpus):
    n, docs, queries = corpus
    db = lodestone.Database(str(tmp_path / "db"))
    index = db.create_index("hybrid", dimension=384, metric="dotproduct", kind="flat")
    ids = [m["id"] for m in data.metadata[:n]]
    index.upsert(ids=ids, values=data.base[:n], sparse_values=docs,
                 metadata=[{"year": m["year"]} for m in data.metadata[:n]])
    for qi, q in enumerate(queries[:20]):
        scores = [dot(d, q) for d in docs]
        exact = sorted((s for s in scores if s != 0), reverse=True)[:10]
        got = index.query(sparse_vector=q, top_k=10, include_values=True)
        assert np.allclose([m.score for m in got], exact, atol=1e-5)
        for m in got:
            assert m.sparse_values == {"indices": docs[ids.index(m.id)]["indices"],
                                       "values": pytest.approx(docs[ids.index(m.id)]["values"])}
        dense = data.queries[qi].astype(np.float64)
        hybrid = sorted((float(dense @ data.base[i].astype(np.float64)) + scores[i] for i in range(n)), reverse=True)[:10]
        got = index.query(data.queries[qi], sparse_vector=q, top_k=10)
        assert np.allclose([m.score for m in got], hybrid, atol=1e-4)
        rrf = index.query(data.queries[qi], sparse_vector=q, top_k=5, fusion="rrf")
        assert len(rrf) == 5 and all(m.score <= 2 / 61 + 1e-6 for m in rrf)
        filtered = index.query(sparse_vector=q, top_k=10, filter={"year": {"$gte": 2020}}, include_metadata=True)
        assert all(m.metadata["year"] >= 2020 for m in filtered)
    assert index.fetch([ids[0]])[ids[0]].sparse_values["indices"] == docs[0]["indices"]
    db.close()


def test_sparse_index_persists_and_refuses_bad_input(tmp_path, data, corpus):
    n, docs, queries = corpus
    path = str(tmp_path / "db")
    db = lodestone.Database(path)
    index = db.create_index("keywords", dimension=0, metric="dotproduct", kind="sparse")
    assert index.kind == "sparse" and index.dimension == 0
    ids = [m["id"] for m in data.metadata[:n]]
    index.upsert([{"id": i, "sparse_values": d} for i, d in zip(ids, docs)])
    bad = [
        ({"indices": [1, 2], "values": [1.0]}, "indices but"),
        ({"indices": [3, 3], "values": [1.0, 2.0]}, "twice"),
        ({"indices": [-1], "values": [1.0]}, "integers"),
        ({"indices": [1], "values": [float("nan")]}, "finite"),
        ({"values": [1.0]}, "indices"),
    ]
    for vector, words in bad:
        with pytest.raises(lodestone.InvalidArgument, match=words):
            index.upsert([{"id": "new", "sparse_values": docs[0]}, {"id": "bad", "sparse_values": vector}])
    with pytest.raises(lodestone.InvalidArgument, match="sparse"):
        index.upsert(ids=["dense"], values=[[0.5, 0.5]])
    with pytest.raises(lodestone.InvalidArgument):
        index.query(data.queries[0], top_k=3)
    assert len(index) == n and not index.fetch(["new", "bad"])
    before = [(m.id, m.score) for m in index.query(sparse_vector=queries[0], top_k=10)]
    db.close()
    db = lodestone.Database(path)
    index = db.index("keywords")
    assert index.kind == "sparse"
    assert [(m.id, m.score) for m in index.query(sparse_vector=queries[0], top_k=10)] == before
    by_id = index.query(id=ids[0], top_k=10)  # by the record's sparse vector
    assert [m.id for m in by_id] == [m.id for m in index.query(sparse_vector=docs[0], top_k=10)]
    db.close()


def bm25_reference(texts):
    """BM25 as the index computes it, keyed by token (no hashing): document
    weights tf / (tf + k1 (1 - b + b dl / avgdl)), query terms idf
    ln((N + 1) / (df + 0.5)) normalised to sum 1."""
    import math
    import re
    import unicodedata
    def tokenize(text):
        return [t for t in re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower()) if len(t) <= 64]
    docs = []
    for t in texts:
        counts = {}
        for token in tokenize(t):
            counts[token] = counts.get(token, 0) + 1
        docs.append((counts, sum(counts.values())))
    with_text = [d for d in docs if d[1] > 0]
    avgdl = sum(d[1] for d in with_text) / len(with_text)
    df = {}
    for counts, _ in with_text:
        for token in counts:
            df[token] = df.get(token, 0) + 1
    weights = [{t: c / (c + 1.2 * (0.25 + 0.75 * dl / avgdl)) for t, c in counts.items()} for counts, dl in docs]

    def scores(query):
        terms = set(tokenize(query))
        idf = {t: math.log((len(with_text) + 1) / (df.get(t, 0) + 0.5)) for t in terms}
        total = sum(idf.values())
        return [sum(idf[t] / total * w.get(t, 0.0) for t in terms) if total > 0 else 0.0 for w in weights]
    return scores


def test_text_search_ranks_as_bm25(tmp_path, data):
    n = min(2_000, len(data.base) - 50)
    db = lodestone.Database(str(tmp_path / "db"))
    index = db.create_index("docs", dimension=384, metric="cosine", kind="flat", text_field="text")
    assert index.text_field == "text"
    ids = [m["id"] for m in data.metadata[:n]]
    texts = [m["text"] for m in data.metadata[:n]]
    index.upsert(ids=ids, values=data.base[:n], metadata=[{"text": t, "year": m["year"]}
                                                         for t, m in zip(texts, data.metadata[:n])])
    scores = bm25_reference(texts)
    unit = data.base[:n].astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    for qi, m in enumerate(data.metadata[n:n + 20]):
        s = scores(m["text"])
        exact = sorted((x for x in s if x != 0), reverse=True)[:10]
        got = index.query(text=m["text"], top_k=10)
        assert np.allclose([g.score for g in got], exact, atol=1e-5), (m["text"], got)
        q = data.queries[qi].astype(np.float64)
        dense = unit @ (q / np.linalg.norm(q))
        hybrid = sorted((dense[i] + s[i] for i in range(n)), reverse=True)[:10]
        got = index.query(data.queries[qi], text=m["text"], top_k=10)
        assert np.allclose([g.score for g in got], hybrid, atol=1e-4)
        filtered = index.query(text=m["text"], top_k=10, filter={"year": {"$gte": 2020}}, include_metadata=True)
        assert all(g.metadata["year"] >= 2020 for g in filtered)
    with pytest.raises(lodestone.InvalidArgument, match="sparseValues"):
        index.upsert([{"id": "x", "values": data.base[0], "sparse_values": {"indices": [1], "values": [1.0]}}])
    with pytest.raises(lodestone.InvalidMetadata, match="text"):
        index.upsert([{"id": "x", "values": data.base[0], "metadata": {"text": 3}}])
    with pytest.raises(lodestone.InvalidArgument, match="text"):
        index.query(text=3, top_k=3)
    assert len(index) == n
    plain = db.create_index("plain", dimension=384)
    assert plain.text_field is None
    with pytest.raises(lodestone.InvalidArgument, match="no text field"):
        plain.query(text="python", top_k=3)
    db.close()
