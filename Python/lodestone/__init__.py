"""Lodestone from Python: HNSW and exact vector indexes with numpy in and
out, and a durable, Pinecone-shaped database of records.

Importing this package loads nothing native and starts no thread; the
library is opened on first use (safe before fork()).
"""

from .database import Database, Index, Match, Record
from .errors import (CorruptFile, DimensionMismatch, DuplicateKey, EmbeddingModelMismatch, EmptyIndex,
                     IndexAlreadyExists, IndexClosed, IndexLocked, IndexNotFound, InvalidArgument, InvalidFilter,
                     InvalidID, InvalidMetadata, KeyNotFound, LodestoneError, MalformedFile, MalformedLine,
                     NonFiniteValue, ReadOnly, RecordNotFound, StorageError, UnsupportedFormatVersion, ZeroVector)
from .vector_index import FlatIndex, HNSWIndex, open_index

__version__ = "0.1.0"


def library_info() -> dict:
    """The loaded native library: its path, version, ABI and the distance kernel chosen for this CPU."""
    from . import _native
    ffi, lib = _native.load()
    return {"path": _native.library_path(), "version": ffi.string(lib.lds_version()).decode(),
            "abi": int(lib.lds_abi_version()), "kernel": ffi.string(lib.lds_kernel_name()).decode()}


__all__ = [
    "Database", "Index", "Match", "Record", "HNSWIndex", "FlatIndex", "open_index", "library_info",
    "LodestoneError", "InvalidArgument", "DimensionMismatch", "NonFiniteValue", "ZeroVector", "EmptyIndex",
    "KeyNotFound", "DuplicateKey", "MalformedFile", "CorruptFile", "UnsupportedFormatVersion", "InvalidFilter",
    "InvalidMetadata", "StorageError", "IndexNotFound", "IndexAlreadyExists", "IndexClosed", "IndexLocked",
    "EmbeddingModelMismatch", "InvalidID", "RecordNotFound", "MalformedLine", "ReadOnly",
]
