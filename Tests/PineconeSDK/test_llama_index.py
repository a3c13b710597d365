"""LlamaIndex's own PineconeVectorStore against `lodestone serve`, unchanged:
it finds the server through PINECONE_CONTROLLER_HOST, as it would find
Pinecone. The embedding is deterministic (hashed words), so the test needs
no model; Python/examples shows a real one."""

import hashlib
import os
import re
import signal

import numpy as np
import pytest

llama_core = pytest.importorskip("llama_index.core")
pytest.importorskip("llama_index.vector_stores.pinecone")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters  # noqa: E402
from llama_index.vector_stores.pinecone import PineconeVectorStore  # noqa: E402
from pinecone import ServerlessSpec  # noqa: E402

DIM = 256


class HashedWords(BaseEmbedding):
    """A bag of hashed words, L2-normalised: texts sharing words are near."""

    def _embed(self, text: str):
        v = np.zeros(DIM)
        for w in re.findall(r"[a-z0-9]+", text.lower()):
            h = int(hashlib.blake2b(w.encode(), digest_size=8).hexdigest(), 16)
            v[h % DIM] += 1.0 if (h >> 20) & 1 else -1.0
        n = np.linalg.norm(v)
        return (v / n if n else v).tolist()

    def _get_text_embedding(self, text):
        return self._embed(text)

    def _get_query_embedding(self, query):
        return self._embed(query)

    async def _aget_query_embedding(self, query):
        return self._embed(query)


def test_vector_store_index(pc, server, index_name, data, monkeypatch):
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", server.url)
    pc.create_index(name=index_name, dimension=DIM, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    docs = [Document(text=m["text"], doc_id=m["id"], metadata={"year": m["year"]})
            for m in data.metadata[:300] if m.get("text")]
    embed = HashedWords()

    def open_store():
        store = PineconeVectorStore(index_name=index_name, api_key="local")
        return VectorStoreIndex.from_vector_store(store, embed_model=embed), store

    store = PineconeVectorStore(index_name=index_name, api_key="local")
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed)
    # Each document's own text retrieves it first.
    for d in docs[:25]:
        top = index.as_retriever(similarity_top_k=3).retrieve(d.text)
        assert top[0].node.ref_doc_id == d.doc_id
        assert top[0].node.get_content() == d.text
    # Filters pass through.
    year = docs[0].metadata["year"]
    hits = index.as_retriever(similarity_top_k=5, filters=MetadataFilters(
        filters=[ExactMatchFilter(key="year", value=year)])).retrieve(docs[1].text)
    assert hits and all(h.node.metadata["year"] == year for h in hits)
    # Deleting a document removes its nodes (delete by filter on doc_id).
    index.delete_ref_doc(docs[0].doc_id)
    top = index.as_retriever(similarity_top_k=3).retrieve(docs[0].text)
    assert all(h.node.ref_doc_id != docs[0].doc_id for h in top)
    # Restart the server: everything is still there.
    server.restart(signal.SIGTERM)
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", server.url)
    index, store = open_store()
    top = index.as_retriever(similarity_top_k=3).retrieve(docs[5].text)
    assert top[0].node.ref_doc_id == docs[5].doc_id
    assert store.client.describe_index_stats()["total_vector_count"] == len(docs) - 1
    # get_nodes by filter (a zero vector query) and clear().
    assert len(store.get_nodes(filters=MetadataFilters(filters=[ExactMatchFilter(key="year", value=year)]))) >= 1
    store.clear()
    assert store.client.describe_index_stats()["total_vector_count"] == 0
