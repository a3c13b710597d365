"""Lodestone's errors as Python exceptions, one class per LDS_E_* code.

Every exception derives from LodestoneError and also from the built-in
class a Python caller would expect (ValueError for bad values, KeyError for
missing keys, OSError for I/O), so `except ValueError` keeps working.
"""


class LodestoneError(Exception):
    """Base class. `code` is the C ABI's status code."""

    code = 99

    def __init__(self, message: str, code: int = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self):
        return self.args[0] if self.args else ""


class InvalidArgument(LodestoneError, ValueError):
    code = 1


class DimensionMismatch(LodestoneError, ValueError):
    code = 2


class NonFiniteValue(LodestoneError, ValueError):
    code = 3


class ZeroVector(LodestoneError, ValueError):
    code = 4


class EmptyIndex(LodestoneError, ValueError):
    code = 5


class KeyNotFound(LodestoneError, KeyError):
    code = 6


class DuplicateKey(LodestoneError, ValueError):
    code = 7


class MalformedFile(LodestoneError, ValueError):
    code = 8


class CorruptFile(LodestoneError, OSError):
    code = 9


class UnsupportedFormatVersion(LodestoneError, OSError):
    code = 10


class InvalidFilter(LodestoneError, ValueError):
    code = 11


class InvalidMetadata(LodestoneError, ValueError):
    code = 12


class StorageError(LodestoneError, OSError):
    code = 13


class IndexNotFound(LodestoneError, KeyError):
    code = 14


class IndexAlreadyExists(LodestoneError, ValueError):
    code = 15


class IndexClosed(LodestoneError, RuntimeError):
    code = 16


class IndexLocked(LodestoneError, RuntimeError):
    code = 17


class EmbeddingModelMismatch(LodestoneError, ValueError):
    code = 18


class InvalidID(LodestoneError, ValueError):
    code = 19


class RecordNotFound(LodestoneError, KeyError):
    code = 20


class MalformedLine(LodestoneError, ValueError):
    code = 21


class ReadOnly(LodestoneError, PermissionError):
    """A write to an index of a Database opened with read_only=True."""
    code = 22


class Cancelled(LodestoneError):
    """A cancelled async call (Swift only; listed for completeness)."""
    code = 23


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, DimensionMismatch, NonFiniteValue, ZeroVector, EmptyIndex, KeyNotFound, DuplicateKey,
    MalformedFile, CorruptFile, UnsupportedFormatVersion, InvalidFilter, InvalidMetadata, StorageError,
    IndexNotFound, IndexAlreadyExists, IndexClosed, IndexLocked, EmbeddingModelMismatch, InvalidID,
    RecordNotFound, MalformedLine, ReadOnly, Cancelled)}


def raise_for(status: int, err_ptr, ffi, lib):
    """Raises the exception for a failed call (and frees the lds_error)."""
    err = err_ptr[0]
    message = "lodestone call failed with status %d" % status
    if err != ffi.NULL:
        message = ffi.string(lib.lds_error_message(err)).decode("utf-8", "replace")
        lib.lds_error_free(err)
    raise _BY_CODE.get(status, LodestoneError)(message, status)
