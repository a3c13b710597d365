"""Loading libLodestoneC.so through cffi (ABI mode: no compiler needed).

Nothing here runs at import: the library is opened on first use, so a
process may import lodestone and fork (ann-benchmarks, Spark and
multiprocessing do) before any Swift code has run.
"""

import os
import threading
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: Where a wheel puts the library and its header.
_BUNDLE = _HERE / "_lib"
_lock = threading.Lock()
_state = {}


def _candidates():
    env = os.environ.get("LODESTONE_LIBRARY")
    if env:
        yield Path(env)
    if _BUNDLE.is_dir():
        # An installed package uses its own library or fails naming it;
        # it never falls back to one found elsewhere.
        yield _BUNDLE / "libLodestoneC.so"
        return
    # A source checkout: Python/lodestone -> the repository's release build.
    yield _HERE.parent.parent / ".build" / "release" / "libLodestoneC.so"


def _damaged(missing) -> ImportError:
    return ImportError(f"lodestone: the installed package is damaged: {missing} is missing; "
                       "reinstall it (pip install --force-reinstall lodestone, or the wheel you installed)")


def _header_text(library: Path) -> str:
    if library.parent == _BUNDLE:
        headers = [_BUNDLE / "lodestone.h"]
    else:
        headers = [library.parent / "lodestone.h", _HERE.parent.parent / "Sources" / "LodestoneCAPI" / "lodestone.h"]
    for header in headers:
        if header.exists():
            text = header.read_text()
            begin = text.index("/* cdef-begin")
            begin = text.index("*/", begin) + 2
            return text[begin:text.index("/* cdef-end */")]
    if library.parent == _BUNDLE:
        raise _damaged(headers[0])
    raise ImportError("lodestone: lodestone.h not found beside the library (looked in: "
                      + ", ".join(map(str, headers)) + ")")


def load():
    """(ffi, lib): the library, opened once per process."""
    if "lib" in _state:
        return _state["ffi"], _state["lib"]
    with _lock:
        if "lib" in _state:
            return _state["ffi"], _state["lib"]
        # Swift's crash backtracer is on by default on Linux; in a host
        # process it would intercept other libraries' crashes.
        os.environ.setdefault("SWIFT_BACKTRACE", "enable=no")
        import cffi

        tried = []
        for path in _candidates():
            if path.exists():
                break
            tried.append(str(path))
        else:
            if _BUNDLE.is_dir() and not os.environ.get("LODESTONE_LIBRARY"):
                raise _damaged(tried[-1])
            raise ImportError("lodestone: libLodestoneC.so not found (looked in: " + ", ".join(tried)
                              + "); install with `pip install ./Python` or set LODESTONE_LIBRARY")
        ffi = cffi.FFI()
        ffi.cdef(_header_text(path))
        # Never unloaded: cffi closes the library when its handle is freed
        # (at the latest when the interpreter exits), while the Swift
        # runtime's worker threads (parallel builds and searches) stay
        # parked in its code and crash when they wake in unmapped memory.
        try:
            lib = ffi.dlopen(str(path), ffi.RTLD_NOW | getattr(ffi, "RTLD_NODELETE", 0))
        except OSError as error:
            # The loader's message names the file it could not find or read.
            reason = str(error).split(".  Additionally")[0]  # cffi appends a find_library() note
            hint = ("; the installed package is damaged: reinstall it" if path.parent == _BUNDLE else "")
            raise ImportError(f"lodestone: {reason}{hint}") from None
        if lib.lds_abi_version() != lib.LDS_ABI_VERSION:
            raise ImportError(f"lodestone: {path} implements ABI {lib.lds_abi_version()}, "
                              f"this package needs {lib.LDS_ABI_VERSION}")
        _state["ffi"], _state["lib"], _state["path"] = ffi, lib, path
        return ffi, lib


def library_path() -> str:
    """Where the loaded library came from."""
    load()
    return str(_state["path"])
