"""A LlamaIndex vector store kept in a Lodestone database.

An optional extra (`pip install 'lodestone[llama-index]'`): importing
`lodestone` does not import LlamaIndex; importing this module does.

>>> vs = LodestoneVectorStore("storage", dimension=384, embed_model=emb)
>>> index = VectorStoreIndex.from_documents(
...     docs, storage_context=StorageContext.from_defaults(vector_store=vs), embed_model=emb)
>>> index.storage_context.persist(persist_dir="storage")
>>> vs.close()
... # later, in another process, without embedding a document again:
>>> vs = LodestoneVectorStore.from_persist_dir("storage", embed_model=emb)
>>> index = load_index_from_storage(
...     StorageContext.from_defaults(vector_store=vs, persist_dir="storage"), embed_model=emb)

The store keeps node ids, embeddings and filterable metadata; LlamaIndex's
docstore keeps the text (`stores_text` is False, as with the Faiss store).
The database lives in `<persist_dir>/lodestone/` and no
`*vector_store.json` is written, so a reload that forgets `vector_store=`
fails at once instead of answering from an empty store. The index records
the embedding model's name, and reopening it with another model raises
`lodestone.EmbeddingModelMismatch` naming both.
"""

import math
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from .database import Database, Index, Record
from .vector_index import METRIC_NAMES, metric_code

DATABASE_DIR = "lodestone"
"""The database's folder inside a persist directory."""

DEFAULT_INDEX_NAME = "llama-index"

NODE_ID_KEY = "_node_id"
"""Metadata field holding the node's id (queries and deletes restricted to node ids filter on it)."""

REF_DOC_KEYS = ("ref_doc_id", "doc_id", "document_id")
"""Metadata fields holding the node's source document id, under the names LlamaIndex's stores use."""

_RESERVED_KEYS = frozenset((NODE_ID_KEY,) + REF_DOC_KEYS)

_SCALAR_OPS = {FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.CONTAINS: "$eq"}
_RANGE_OPS = {FilterOperator.GT: "$gt", FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt",
              FilterOperator.LTE: "$lte"}
_LIST_OPS = {FilterOperator.IN: "$in", FilterOperator.NIN: "$nin", FilterOperator.ANY: "$in"}
# By value: text_match_insensitive and the NOT condition are not in every llama-index-core release.
_TEXT_OPS = ("text_match", "text_match_insensitive")
_NOT = "not"


def embedding_model_name(embed_model: Optional[BaseEmbedding] = None, embed_model_name: Optional[str] = None) -> str:
    """The name recorded in (and checked against) the index: `embed_model_name`
    when given, else `"<class name>:<model_name>"` of `embed_model`.

    Raises ValueError when neither is given, or when `embed_model` does not
    name its model (LlamaIndex's default `model_name` is "unknown"), since
    such a name could not tell two models apart.
    """
    if embed_model_name is not None:
        if not embed_model_name.strip():
            raise ValueError("embed_model_name is empty; name the embedding model that makes the vectors")
        return embed_model_name
    if embed_model is None:
        raise ValueError("pass embed_model (the BaseEmbedding that makes the vectors) or embed_model_name")
    model = getattr(embed_model, "model_name", None)
    if not model or model == "unknown":
        raise ValueError(f"{type(embed_model).__name__} does not name its model (model_name is {model!r}); "
                         "pass embed_model_name= so that reopening the index with another model is refused")
    return f"{type(embed_model).__name__}:{model}"


def to_lodestone_filter(filters: MetadataFilters) -> Dict[str, Any]:
    """LlamaIndex metadata filters as Lodestone's (Pinecone's) filter JSON.

    `== != > >= < <= in nin` map to `$eq $ne $gt $gte $lt $lte $in $nin`;
    `contains` is `$eq` (true when a list field holds the value, or a string
    field equals it: Lodestone matches no substrings), `any` is `$in`,
    `all` an `$and` of `$eq`, and `is_empty` is true when the field is
    absent or "" (the store leaves out None and [] values). Nested filters
    and the and/or conditions nest as `$and`/`$or`. Range operators take
    numbers only. An empty filter list gives `{}`, which matches every record.

    Raises NotImplementedError for text_match, text_match_insensitive and
    the NOT condition, and ValueError for a value of the wrong shape.
    """
    condition = filters.condition or FilterCondition.AND
    if condition == _NOT:
        raise NotImplementedError("Lodestone filters have no NOT condition; write the negated filter instead "
                                  "(== as !=, in as nin, > as <=) with the and/or conditions")
    parts = [to_lodestone_filter(f) if isinstance(f, MetadataFilters) else _field_filter(f) for f in filters.filters]
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}


def _field_filter(f: MetadataFilter) -> Dict[str, Any]:
    """One MetadataFilter as a Lodestone condition on its field."""
    key, op, value = f.key, f.operator, f.value
    if op.value in _TEXT_OPS:
        raise NotImplementedError(f"filter on {key!r}: Lodestone has no text matching ({op.value}); "
                                  "filter on exact values (==, in, contains) instead")
    if op == FilterOperator.IS_EMPTY:
        return {"$or": [{key: {"$exists": False}}, {key: {"$eq": ""}}]}
    if op in _SCALAR_OPS:
        if value is None or isinstance(value, list):
            raise ValueError(f"filter on {key!r}: {op.value} takes one string, number or boolean, got {value!r}"
                             + (" (use is_empty to match a missing field)" if value is None else ""))
        return {key: {_SCALAR_OPS[op]: value}}
    if op in _RANGE_OPS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"filter on {key!r}: Lodestone compares numbers only, and {op.value} got {value!r}")
        return {key: {_RANGE_OPS[op]: value}}
    if not isinstance(value, list):
        raise ValueError(f"filter on {key!r}: {op.value} takes a list of values, got {value!r}")
    if op in _LIST_OPS:
        return {key: {_LIST_OPS[op]: value}}
    if op == FilterOperator.ALL:
        if not value:
            return {key: {"$exists": True}}
        return {"$and": [{key: {"$eq": v}} for v in value]}
    raise NotImplementedError(f"filter on {key!r}: the operator {op.value!r} has no Lodestone translation")


def _storable(value: Any) -> bool:
    """Whether Lodestone stores this metadata value (a string, number, boolean or list of strings)."""
    if isinstance(value, (str, bool, int, float)):
        return True
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class LodestoneVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store backed by a Lodestone index in
    `<persist_dir>/lodestone/`.

    Every write is durable when `add` or `delete` returns; `persist` folds
    the write-ahead log into a compact segment. One process at a time may
    open the index: call `close()` before another process opens it.

    Stored per node: its id, its embedding, and its metadata with its
    source document id under `ref_doc_id`, `doc_id` and `document_id` and
    its own id under `_node_id` (those keys are reserved). Metadata values
    must be strings, numbers, booleans or lists of strings; None and empty
    lists are left out. The text stays in LlamaIndex's docstore.

    Similarities are cosine similarity, inner product, or minus the
    Euclidean distance, by the index's metric: higher is better.
    """

    stores_text: bool = False
    persist_dir: str
    index_name: str
    embed_model_name: str
    dimension: int
    metric: str
    kind: str

    _db: Database = PrivateAttr()
    _ix: Index = PrivateAttr()

    def __init__(self, persist_dir: str, dimension: Optional[int] = None, metric: Optional[str] = None,
                 kind: Optional[str] = None, embed_model: Optional[BaseEmbedding] = None,
                 embed_model_name: Optional[str] = None, index_name: str = DEFAULT_INDEX_NAME) -> None:
        """Opens the index `index_name` in `<persist_dir>/lodestone/`, or
        creates it (with `dimension`, `metric` default "cosine", `kind`
        "hnsw" or "flat", default "hnsw") when it does not exist.

        The embedding model's name (see `embedding_model_name`) is recorded
        at creation; opening an index built with another model raises
        `lodestone.EmbeddingModelMismatch` naming both. Opening an existing
        index with a `dimension`, `metric` or `kind` other than its own
        raises ValueError.
        """
        name = embedding_model_name(embed_model, embed_model_name)
        path = os.path.join(persist_dir, DATABASE_DIR)
        if dimension is None and not os.path.isdir(path):
            raise FileNotFoundError(f"no Lodestone database in {path}: give the persist_dir the index was built in, "
                                    "or pass dimension= to create a new index")
        wanted = {"dimension": dimension, "metric": None if metric is None else METRIC_NAMES[metric_code(metric)],
                  "kind": kind}
        db = Database(path)
        try:
            if db.has_index(index_name):
                ix = db.index(index_name, embedding_model=name)
                found = {"dimension": ix.dimension, "metric": ix.metric, "kind": ix.kind}
                differs = {k: v for k, v in wanted.items() if v is not None and v != found[k]}
                if differs:
                    raise ValueError(f"the index {index_name!r} in {path} has {found}, not {differs}")
            elif dimension is None:
                raise ValueError(f"no index {index_name!r} in {path}; pass dimension= to create it")
            else:
                ix = db.create_index(index_name, dimension, metric or "cosine", embedding_model=name,
                                     kind=kind or "hnsw")
        except BaseException:
            db.close()
            raise
        super().__init__(persist_dir=str(persist_dir), index_name=index_name, embed_model_name=name,
                         dimension=ix.dimension, metric=ix.metric, kind=ix.kind)
        self._db = db
        self._ix = ix

    @classmethod
    def from_persist_dir(cls, persist_dir: str, embed_model: Optional[BaseEmbedding] = None,
                         embed_model_name: Optional[str] = None,
                         index_name: str = DEFAULT_INDEX_NAME) -> "LodestoneVectorStore":
        """Reopens the store persisted in `persist_dir` (the directory given
        to `StorageContext.persist`), checking that `embed_model` (or
        `embed_model_name`) is the model the index was built with:
        `lodestone.EmbeddingModelMismatch` otherwise. Computes no embedding."""
        return cls(persist_dir, embed_model=embed_model, embed_model_name=embed_model_name, index_name=index_name)

    @classmethod
    def class_name(cls) -> str:
        """The component's name in LlamaIndex's serialisation."""
        return "LodestoneVectorStore"

    @property
    def client(self) -> Index:
        """The underlying `lodestone.Index`."""
        return self._ix

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> List[str]:
        """Stores the nodes' embeddings and metadata in one durable upsert
        (replacing nodes with the same ids). Returns the node ids."""
        if not nodes:
            return []
        ids = [node.node_id for node in nodes]
        values = np.asarray([node.get_embedding() for node in nodes], dtype=np.float32)
        self._ix.upsert(ids=ids, values=values, metadata=[self._record_metadata(node) for node in nodes],
                        embedding_model=self.embed_model_name)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Deletes every node of the source document `ref_doc_id`."""
        self._ix.delete(filter={"ref_doc_id": {"$eq": ref_doc_id}})

    def delete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                     **delete_kwargs: Any) -> None:
        """Deletes the nodes with these ids and/or passing these filters (both: those passing both).
        Raises ValueError when given neither: `clear()` deletes everything."""
        if node_ids is None and filters is None:
            raise ValueError("delete_nodes needs node_ids or filters; clear() deletes every node")
        if filters is None:
            self._ix.delete(ids=list(node_ids))
        else:
            self._ix.delete(filter=self._where(filters, node_ids=node_ids))

    def clear(self) -> None:
        """Deletes every node."""
        self._ix.delete(delete_all=True)

    def get_nodes(self, node_ids: Optional[List[str]] = None,
                  filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        """The stored nodes with these ids and/or passing these filters
        (every node when given neither), in `node_ids`' order when given.

        Each is a TextNode with its id, stored embedding (as it was added,
        to float precision), stored metadata and source-document
        relationship, and empty text: the text is in the docstore
        (`index.docstore.get_nodes(ids)`).
        """
        ids = None if node_ids is None else list(node_ids)
        if filters is not None or ids is None:
            # pagination_token="" starts at the first id (list_ids hands a None token to cffi, which refuses it).
            passing, _ = self._ix.list_ids(filter=self._where(filters, node_ids=ids), limit=max(len(self._ix), 1),
                                           pagination_token="")
            if ids is None:
                ids = passing
            else:
                kept = set(passing)
                ids = [i for i in ids if i in kept]
        records = self._ix.fetch(ids)
        return [self._node(records[i]) for i in ids if i in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The `similarity_top_k` nodes nearest `query_embedding`, best
        first, among those passing `filters` and, when given, with ids in
        `node_ids` and source documents in `doc_ids`. Default mode only."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise NotImplementedError(f"LodestoneVectorStore answers default (dense) queries, not {query.mode.value}")
        if query.query_embedding is None:
            raise ValueError("LodestoneVectorStore.query needs query_embedding")
        matches = self._ix.query(query.query_embedding, top_k=query.similarity_top_k,
                                 filter=self._where(query.filters, node_ids=query.node_ids, doc_ids=query.doc_ids))
        return VectorStoreQueryResult(ids=[m.id for m in matches],
                                      similarities=[self._similarity(m.score) for m in matches])

    def persist(self, persist_path: str, fs: Any = None) -> None:
        """Folds the index's write-ahead log into a compact segment (every
        write is already durable). Writes no file at `persist_path`: the
        database stays in `<persist_dir>/lodestone/`, and a warning says so
        when `persist_path` is in another directory."""
        self._ix.persist()
        target = os.path.dirname(os.path.abspath(persist_path))
        if os.path.realpath(target) != os.path.realpath(self.persist_dir):
            warnings.warn(f"the Lodestone database stays in {os.path.join(self.persist_dir, DATABASE_DIR)}, not in "
                          f"{target}; reload with LodestoneVectorStore.from_persist_dir({self.persist_dir!r})",
                          stacklevel=2)

    def close(self) -> None:
        """Persists and closes the index and its database, releasing its lock
        so that another process may open it. Idempotent."""
        self._ix.close()
        self._db.close()

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def _record_metadata(node: BaseNode) -> Dict[str, Any]:
        """The metadata stored for a node: its own (less None and []), its id and its source document's id."""
        metadata: Dict[str, Any] = {}
        for key, value in node.metadata.items():
            if value is None or (isinstance(value, list) and not value):
                continue
            if not _storable(value):
                raise ValueError(f"node {node.node_id}: metadata {key!r} is a {type(value).__name__}; Lodestone "
                                 "stores strings, numbers, booleans and lists of strings (flatten it, or drop it "
                                 "from the node's metadata)")
            metadata[key] = value
        metadata[NODE_ID_KEY] = node.node_id
        if node.ref_doc_id is not None:
            for key in REF_DOC_KEYS:
                metadata[key] = node.ref_doc_id
        return metadata

    @staticmethod
    def _where(filters: Optional[MetadataFilters], node_ids: Optional[Sequence[str]] = None,
               doc_ids: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """One Lodestone filter for metadata filters, node ids and source document ids ({} for none)."""
        parts = []
        if filters is not None:
            parts.append(to_lodestone_filter(filters))
        if node_ids is not None:
            parts.append({NODE_ID_KEY: {"$in": list(node_ids)}})
        if doc_ids is not None:
            parts.append({"ref_doc_id": {"$in": list(doc_ids)}})
        parts = [p for p in parts if p]
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _similarity(self, score: float) -> float:
        """A Lodestone score as a similarity (higher is better): the squared L2 distance becomes -distance."""
        return -math.sqrt(max(score, 0.0)) if self.metric == "euclidean" else score

    @staticmethod
    def _node(record: Record) -> TextNode:
        """A stored record as a text-less TextNode."""
        metadata = record.metadata or {}
        relationships = {}
        if "ref_doc_id" in metadata:
            relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=metadata["ref_doc_id"])
        return TextNode(id_=record.id, text="", embedding=record.values.tolist(),
                        metadata={k: v for k, v in metadata.items() if k not in _RESERVED_KEYS},
                        relationships=relationships)
