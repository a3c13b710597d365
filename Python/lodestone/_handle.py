"""A native handle shared by threads.

Every call holds the handle while it runs (`with handle as ptr:`); `close`
marks it closed at once (later calls raise IndexClosed) and the native
object is freed when the last call in flight has left, so closing on one
thread while another searches never frees memory in use.
"""

import threading


class Handle:
    __slots__ = ("_ptr", "_free", "_lock", "_users", "_closed", "_what")

    def __init__(self, ptr, free, what: str):
        self._ptr = ptr
        self._free = free
        self._lock = threading.Lock()
        self._users = 0
        self._closed = False
        self._what = what

    def __enter__(self):
        with self._lock:
            if self._closed:
                from .errors import IndexClosed
                raise IndexClosed(f"{self._what} was closed")
            self._users += 1
            return self._ptr

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._closed and self._users == 0:
                self._release_locked()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> bool:
        """Marks the handle closed; frees it now or when the last call leaves.
        Returns False if it was already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            if self._users == 0:
                self._release_locked()
            return True

    def _release_locked(self):
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._free(ptr)


class NativeObject:
    """What every wrapper of a native handle shares: the library, and calls
    made holding `self._handle` (a Handle)."""

    def __init__(self):
        from . import _native
        self._ffi, self._lib = _native.load()

    def _call(self, fn, *args):
        """`fn(handle, *args, err)`, raising the typed exception on failure."""
        from .errors import raise_for
        err = self._ffi.new("lds_error **")
        with self._handle as h:
            status = fn(h, *args, err)
        if status != 0:
            raise_for(status, err, self._ffi, self._lib)

    def _get(self, fn):
        """`fn(handle)` for a getter that cannot fail."""
        with self._handle as h:
            return fn(h)
