"""LodestoneVectorStore under LlamaIndex: build, persist, reload in a new
process without embedding a document again, the embedding-model check,
filters, deletes. A deterministic hashing embedding; no network."""

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding, MockEmbedding  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import lodestone  # noqa: E402
from lodestone.llama_index import LodestoneVectorStore, to_lodestone_filter  # noqa: E402

DIM = 64
HERE = Path(__file__).resolve().parent


def hash_vector(text: str, dim: int = DIM) -> List[float]:
    """Bag of words: each lower-cased word adds +1 or -1 to a bucket chosen by its BLAKE2 hash; unit length."""
    v = np.zeros(dim)
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        n = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        v[n % dim] += 1.0 if (n >> 32) & 1 else -1.0
    return (v / np.linalg.norm(v)).tolist()


class HashEmbedding(BaseEmbedding):
    """A deterministic embedding that counts the texts and queries it embeds."""

    model_name: str = "hash-v1"
    _counts: Dict[str, int] = PrivateAttr(default_factory=lambda: {"text": 0, "query": 0})

    @property
    def counts(self) -> Dict[str, int]:
        """Texts and queries embedded so far."""
        return dict(self._counts)

    def _get_text_embedding(self, text: str) -> List[float]:
        self._counts["text"] += 1
        return hash_vector(text)

    def _get_query_embedding(self, query: str) -> List[float]:
        self._counts["query"] += 1
        return hash_vector(query)

    async def _aget_text_embedding(self, text: str) -> List[float]:
        return self._get_text_embedding(text)

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return self._get_query_embedding(query)


DOCS = [
    Document(doc_id="cats", text="Cats purr and nap in the sun; a cat chases mice at night.",
             metadata={"topic": "animals", "year": 2021}),
    Document(doc_id="rust", text="The Rust compiler checks borrows and lifetimes before code runs.",
             metadata={"topic": "programming", "year": 2015}),
    Document(doc_id="bread", text="Knead the dough, let the bread rise, then bake it in a hot oven.",
             metadata={"topic": "cooking", "year": 2019}),
    Document(doc_id="tides", text="The moon pulls the oceans, and the tides rise and fall twice a day.",
             metadata={"topic": "science", "year": 2023}),
]


def build(persist_dir: Path, emb: BaseEmbedding, **store_args) -> VectorStoreIndex:
    """DOCS indexed in a LodestoneVectorStore in persist_dir, persisted there."""
    vs = LodestoneVectorStore(str(persist_dir), dimension=DIM, embed_model=emb, **store_args)
    index = VectorStoreIndex.from_documents(DOCS, storage_context=StorageContext.from_defaults(vector_store=vs),
                                            embed_model=emb)
    index.storage_context.persist(persist_dir=str(persist_dir))
    return index


def run_python(code: str) -> subprocess.CompletedProcess:
    """Runs code in a new interpreter that imports the lodestone this process imported, and this module."""
    env = dict(os.environ)
    package_parent = Path(lodestone.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(package_parent), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_importing_lodestone_does_not_import_llama_index():
    result = run_python("""
        import sys
        import lodestone
        assert not [m for m in sys.modules if m.startswith("llama_index")], "lodestone imported llama_index"
        import lodestone.llama_index
        assert "llama_index.core" in sys.modules
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_reload_in_new_process_embeds_only_the_query(tmp_path):
    emb = HashEmbedding()
    index = build(tmp_path, emb)
    assert emb.counts == {"text": len(DOCS), "query": 0}
    index.vector_store.close()
    assert (tmp_path / "lodestone").is_dir()
    assert (tmp_path / "docstore.json").is_file()
    assert not (tmp_path / "default__vector_store.json").exists()

    result = run_python(f"""
        import json
        import numpy as np
        from llama_index.core import StorageContext, load_index_from_storage
        from llama_index.core.schema import MetadataMode
        from lodestone.llama_index import LodestoneVectorStore
        from test_llama_index import HashEmbedding, hash_vector

        d = {str(tmp_path)!r}
        emb = HashEmbedding()
        vs = LodestoneVectorStore.from_persist_dir(d, embed_model=emb)
        index = load_index_from_storage(StorageContext.from_defaults(vector_store=vs, persist_dir=d), embed_model=emb)
        query = "why does my cat purr in the sun"
        hits = index.as_retriever(similarity_top_k=2).retrieve(query)
        out = {{
            "counts": emb.counts,
            "hits": [{{"doc": h.node.ref_doc_id, "text": h.node.get_content(), "score": h.score,
                       "expected": float(np.dot(hash_vector(query),
                                                hash_vector(h.node.get_content(metadata_mode=MetadataMode.EMBED))))}}
                     for h in hits],
            "count": len(vs.client),
        }}
        vs.close()
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["counts"] == {"text": 0, "query": 1}
    assert out["count"] == len(DOCS)
    assert len(out["hits"]) == 2
    assert out["hits"][0]["doc"] == "cats"
    assert out["hits"][0]["text"] == DOCS[0].text
    for hit in out["hits"]:
        assert math.isclose(hit["score"], hit["expected"], abs_tol=1e-5)
    assert out["hits"][0]["score"] > out["hits"][1]["score"]


def test_reload_with_another_model_is_refused(tmp_path):
    build(tmp_path, HashEmbedding()).vector_store.close()
    with pytest.raises(lodestone.EmbeddingModelMismatch) as refused:
        LodestoneVectorStore.from_persist_dir(str(tmp_path), embed_model=HashEmbedding(model_name="hash-v2"))
    assert "HashEmbedding:hash-v1" in str(refused.value)
    assert "HashEmbedding:hash-v2" in str(refused.value)
    # The refusal released the index's lock: another process opens it with the right model.
    result = run_python(f"""
        from lodestone.llama_index import LodestoneVectorStore
        from test_llama_index import HashEmbedding
        vs = LodestoneVectorStore.from_persist_dir({str(tmp_path)!r}, embed_model=HashEmbedding())
        print(len(vs.client), vs.embed_model_name)
        vs.close()
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(DOCS)), "HashEmbedding:hash-v1"]


def test_reload_without_the_vector_store_fails(tmp_path):
    emb = HashEmbedding()
    build(tmp_path, emb).vector_store.close()
    with pytest.raises(KeyError):
        load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path)), embed_model=emb)


def test_unnamed_model_needs_an_explicit_name(tmp_path):
    with pytest.raises(ValueError, match="embed_model_name"):
        LodestoneVectorStore(str(tmp_path), dimension=8, embed_model=MockEmbedding(embed_dim=8))
    with pytest.raises(ValueError, match="embed_model"):
        LodestoneVectorStore(str(tmp_path), dimension=8)
    vs = LodestoneVectorStore(str(tmp_path), dimension=8, embed_model=MockEmbedding(embed_dim=8),
                              embed_model_name="mock-8")
    assert vs.client.embedding_model == "mock-8"
    vs.close()


def test_missing_database_and_conflicting_shape(tmp_path):
    with pytest.raises(FileNotFoundError):
        LodestoneVectorStore.from_persist_dir(str(tmp_path / "nothing"), embed_model=HashEmbedding())
    assert not (tmp_path / "nothing").exists()
    LodestoneVectorStore(str(tmp_path), dimension=DIM, metric="euclidean", embed_model=HashEmbedding()).close()
    with pytest.raises(ValueError, match="dimension"):
        LodestoneVectorStore(str(tmp_path), dimension=DIM + 1, embed_model=HashEmbedding())
    with pytest.raises(ValueError, match="metric"):
        LodestoneVectorStore(str(tmp_path), dimension=DIM, metric="cosine", embed_model=HashEmbedding())
    vs = LodestoneVectorStore(str(tmp_path), dimension=DIM, metric="l2", embed_model=HashEmbedding())
    assert (vs.dimension, vs.metric, vs.kind) == (DIM, "euclidean", "hnsw")
    vs.close()


def test_filter_translation():
    f = MetadataFilters(filters=[
        MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE),
        MetadataFilters(filters=[
            MetadataFilter(key="topic", value="animals"),
            MetadataFilter(key="tags", value=["a", "b"], operator=FilterOperator.ALL),
            MetadataFilter(key="note", value=None, operator=FilterOperator.IS_EMPTY),
        ], condition=FilterCondition.OR),
        MetadataFilter(key="lang", value=["en", "fr"], operator=FilterOperator.NIN),
        MetadataFilter(key="tags", value="c", operator=FilterOperator.CONTAINS),
    ])
    assert to_lodestone_filter(f) == {"$and": [
        {"year": {"$gte": 2020}},
        {"$or": [
            {"topic": {"$eq": "animals"}},
            {"$and": [{"tags": {"$eq": "a"}}, {"tags": {"$eq": "b"}}]},
            {"$or": [{"note": {"$exists": False}}, {"note": {"$eq": ""}}]},
        ]},
        {"lang": {"$nin": ["en", "fr"]}},
        {"tags": {"$eq": "c"}},
    ]}
    assert to_lodestone_filter(MetadataFilters(filters=[])) == {}
    with pytest.raises(NotImplementedError, match="text match"):
        to_lodestone_filter(MetadataFilters(filters=[
            MetadataFilter(key="t", value="x", operator=FilterOperator.TEXT_MATCH)]))
    with pytest.raises(ValueError, match="numbers only"):
        to_lodestone_filter(MetadataFilters(filters=[
            MetadataFilter(key="date", value="2024-01-01", operator=FilterOperator.GT)]))
    with pytest.raises(ValueError, match="list"):
        to_lodestone_filter(MetadataFilters(filters=[MetadataFilter(key="t", value="x", operator=FilterOperator.IN)]))


@pytest.mark.skipif(not hasattr(FilterCondition, "NOT"), reason="this llama-index-core has no NOT condition")
def test_not_condition_is_refused():
    with pytest.raises(NotImplementedError, match="NOT"):
        to_lodestone_filter(MetadataFilters(filters=[MetadataFilter(key="t", value="x")],
                                            condition=FilterCondition.NOT))


def _nodes() -> List[TextNode]:
    """24 nodes with varied metadata; node i's embedding is nearest a query of e_i."""
    topics = ["animals", "programming", "cooking"]
    nodes = []
    for i in range(24):
        metadata = {"year": 2000 + i, "topic": topics[i % 3], "tags": [f"t{i % 4}", f"t{i % 5}"], "parity": i % 2,
                    "flag": i % 2 == 0}
        if i % 6 == 0:
            metadata["note"] = None
        elif i % 6 == 1:
            metadata["note"] = ""
        elif i % 6 == 2:
            metadata["note"] = "kept"
        v = np.full(DIM, 0.01)
        v[i] = 1.0
        nodes.append(TextNode(id_=f"n{i:02d}", text=f"node {i}", embedding=v.tolist(), metadata=metadata))
    return nodes


def ranking_query() -> List[float]:
    """A query that ranks _nodes() in order, n00 first."""
    query = np.zeros(DIM)
    query[:24] = np.linspace(1.0, 0.5, 24)
    return query.tolist()


FILTER_CASES = [
    ("eq", [MetadataFilter(key="topic", value="cooking")], lambda m: m["topic"] == "cooking"),
    ("ne", [MetadataFilter(key="topic", value="cooking", operator=FilterOperator.NE)],
     lambda m: m["topic"] != "cooking"),
    ("gt", [MetadataFilter(key="year", value=2020, operator=FilterOperator.GT)], lambda m: m["year"] > 2020),
    ("gte", [MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE)], lambda m: m["year"] >= 2020),
    ("lt", [MetadataFilter(key="year", value=2003, operator=FilterOperator.LT)], lambda m: m["year"] < 2003),
    ("lte", [MetadataFilter(key="year", value=2003.0, operator=FilterOperator.LTE)], lambda m: m["year"] <= 2003),
    ("in", [MetadataFilter(key="topic", value=["animals", "cooking"], operator=FilterOperator.IN)],
     lambda m: m["topic"] in ("animals", "cooking")),
    ("nin", [MetadataFilter(key="year", value=[2001, 2005], operator=FilterOperator.NIN)],
     lambda m: m["year"] not in (2001, 2005)),
    ("contains", [MetadataFilter(key="tags", value="t3", operator=FilterOperator.CONTAINS)],
     lambda m: "t3" in m["tags"]),
    ("any", [MetadataFilter(key="tags", value=["t0", "t1"], operator=FilterOperator.ANY)],
     lambda m: bool({"t0", "t1"} & set(m["tags"]))),
    ("all", [MetadataFilter(key="tags", value=["t1", "t2"], operator=FilterOperator.ALL)],
     lambda m: {"t1", "t2"} <= set(m["tags"])),
    ("is_empty", [MetadataFilter(key="note", value=None, operator=FilterOperator.IS_EMPTY)],
     lambda m: m.get("note") in (None, "")),
    ("parity", [MetadataFilter(key="parity", value=0)], lambda m: m["parity"] == 0),
    ("and", [MetadataFilter(key="topic", value="animals"),
             MetadataFilter(key="year", value=2010, operator=FilterOperator.GTE)],
     lambda m: m["topic"] == "animals" and m["year"] >= 2010),
]


@pytest.mark.parametrize("kind", ["hnsw", "flat"])
def test_filters_return_only_passing_nodes(tmp_path, kind):
    nodes = _nodes()
    vs = LodestoneVectorStore(str(tmp_path), dimension=DIM, kind=kind, embed_model=HashEmbedding())
    assert vs.add(nodes) == [n.node_id for n in nodes]
    query = ranking_query()
    cases = FILTER_CASES + [
        ("or", [MetadataFilters(filters=[MetadataFilter(key="topic", value="programming"),
                                         MetadataFilter(key="year", value=2002, operator=FilterOperator.LTE)],
                                condition=FilterCondition.OR)],
         lambda m: m["topic"] == "programming" or m["year"] <= 2002),
    ]
    for name, filters, passes in cases:
        expected = [n.node_id for n in nodes if passes(n.metadata)]
        assert expected, name
        result = vs.query(VectorStoreQuery(query_embedding=query, similarity_top_k=len(nodes),
                                           filters=MetadataFilters(filters=filters)))
        assert result.ids == expected, name
        assert result.similarities == sorted(result.similarities, reverse=True), name
        top2 = vs.query(VectorStoreQuery(query_embedding=query, similarity_top_k=2,
                                         filters=MetadataFilters(filters=filters)))
        assert top2.ids == expected[:2], name
    vs.close()


def test_query_node_ids_doc_ids_and_modes(tmp_path):
    nodes = _nodes()
    for i, node in enumerate(nodes):
        node.relationships = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i // 6}")}
    vs = LodestoneVectorStore(str(tmp_path), dimension=DIM, embed_model=HashEmbedding())
    vs.add(nodes)
    q = ranking_query()
    result = vs.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, node_ids=["n05", "n01", "n17"]))
    assert result.ids == ["n01", "n05", "n17"]
    result = vs.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, node_ids=["n05", "n01", "n17"],
                                       filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2001)])))
    assert result.ids == ["n01"]
    result = vs.query(VectorStoreQuery(query_embedding=q, similarity_top_k=30, doc_ids=["doc2"]))
    assert sorted(result.ids) == [f"n{i:02d}" for i in range(12, 18)]
    with pytest.raises(NotImplementedError):
        vs.query(VectorStoreQuery(query_embedding=q, mode=VectorStoreQueryMode.MMR))
    vs.close()


def test_retriever_filters_through_vector_store_index(tmp_path):
    emb = HashEmbedding()
    index = build(tmp_path, emb)
    filters = MetadataFilters(filters=[MetadataFilter(key="year", value=2019, operator=FilterOperator.GTE),
                                       MetadataFilter(key="topic", value="animals", operator=FilterOperator.NE)])
    hits = index.as_retriever(similarity_top_k=4, filters=filters).retrieve("cats purr in the sun")
    assert sorted(h.node.ref_doc_id for h in hits) == ["bread", "tides"]
    assert all(h.node.get_content() for h in hits)
    index.vector_store.close()


def test_delete_ref_doc_removes_every_node_of_that_document(tmp_path):
    emb = HashEmbedding()
    vs = LodestoneVectorStore(str(tmp_path), dimension=DIM, embed_model=emb)
    long_doc = Document(doc_id="long", text=" ".join(f"Sentence {i} about rivers and boats." for i in range(60)),
                        metadata={"topic": "rivers"})
    index = VectorStoreIndex.from_documents(DOCS + [long_doc],
                                            storage_context=StorageContext.from_defaults(vector_store=vs),
                                            embed_model=emb,
                                            transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0)])
    long_ids = [i for i, n in index.docstore.docs.items() if n.ref_doc_id == "long"]
    assert len(long_ids) > 2
    assert len(vs.client) == len(DOCS) + len(long_ids)
    assert set(vs.client.fetch(long_ids)) == set(long_ids)
    index.delete_ref_doc("long", delete_from_docstore=True)
    assert vs.client.fetch(long_ids) == {}
    assert len(vs.client) == len(DOCS)
    hits = index.as_retriever(similarity_top_k=10).retrieve("rivers and boats")
    assert sorted(h.node.ref_doc_id for h in hits) == sorted(d.doc_id for d in DOCS)
    vs.close()


def test_get_nodes_delete_nodes_and_clear(tmp_path):
    nodes = _nodes()
    vs = LodestoneVectorStore(str(tmp_path), dimension=DIM, embed_model=HashEmbedding())
    vs.add(nodes)
    got = vs.get_nodes(node_ids=["n07", "n02", "missing"])
    assert [n.node_id for n in got] == ["n07", "n02"]
    assert got[0].metadata == {k: v for k, v in nodes[7].metadata.items() if v is not None}
    # A cosine index searches unit vectors but keeps each one's length: the embedding comes back as added.
    np.testing.assert_allclose(got[0].embedding, nodes[7].embedding, rtol=1e-5, atol=1e-6)
    cooking = MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking")])
    cooking_ids = [n.node_id for n in nodes if n.metadata["topic"] == "cooking"]
    assert [n.node_id for n in vs.get_nodes(filters=cooking)] == cooking_ids
    assert [n.node_id for n in vs.get_nodes(node_ids=["n08", "n05", "n03"], filters=cooking)] == ["n08", "n05"]
    assert len(vs.get_nodes()) == len(nodes)

    vs.delete_nodes(node_ids=["n00", "n01"])
    vs.delete_nodes(filters=cooking)
    vs.delete_nodes(node_ids=["n03", "n04"], filters=MetadataFilters(filters=[MetadataFilter(key="parity", value=0)]))
    remaining = {n.node_id for n in vs.get_nodes()}
    expected = {n.node_id for n in nodes if n.metadata["topic"] != "cooking"} - {"n00", "n01", "n04"}
    assert remaining == expected
    with pytest.raises(ValueError, match="clear"):
        vs.delete_nodes()
    vs.clear()
    assert len(vs.client) == 0 and vs.get_nodes() == []
    vs.close()


def test_unstorable_metadata_is_refused_whole(tmp_path):
    vs = LodestoneVectorStore(str(tmp_path), dimension=DIM, embed_model=HashEmbedding())
    ok = TextNode(id_="ok", text="ok", embedding=hash_vector("ok"), metadata={"a": 1})
    bad = TextNode(id_="bad", text="bad", embedding=hash_vector("bad"), metadata={"nested": {"x": 1}})
    with pytest.raises(ValueError, match="nested"):
        vs.add([ok, bad])
    assert len(vs.client) == 0
    vs.close()


def test_euclidean_similarity_is_minus_distance(tmp_path):
    vs = LodestoneVectorStore(str(tmp_path), dimension=4, metric="euclidean", embed_model_name="plain")
    vs.add([TextNode(id_="a", text="a", embedding=[1.0, 0.0, 0.0, 0.0]),
            TextNode(id_="b", text="b", embedding=[0.0, 2.0, 0.0, 0.0])])
    result = vs.query(VectorStoreQuery(query_embedding=[0.0, 3.0, 0.0, 0.0], similarity_top_k=2))
    assert result.ids == ["b", "a"]
    assert np.allclose(result.similarities, [-1.0, -math.sqrt(10.0)], atol=1e-5)
    vs.close()


def test_persisting_elsewhere_warns(tmp_path):
    emb = HashEmbedding()
    vs = LodestoneVectorStore(str(tmp_path / "a"), dimension=DIM, embed_model=emb)
    index = VectorStoreIndex.from_documents(DOCS, storage_context=StorageContext.from_defaults(vector_store=vs),
                                            embed_model=emb)
    with pytest.warns(UserWarning, match="from_persist_dir"):
        index.storage_context.persist(persist_dir=str(tmp_path / "b"))
    vs.close()
