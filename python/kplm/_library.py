"""Finding and loading libkplm: an explicit path, $KPLM_LIBRARY, the copy bundled in the package, the checkout's build folders.

The library is loaded on first use (or by an explicit :func:`load_library`
call), so importing :mod:`kplm` never fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from pathlib import Path
from typing import List, Optional, Union

from ._native import _declare
from .errors import LibraryNotFoundError

#: The checkout holding this package (python/kplm/ → the repository root).
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SUFFIX = ".dylib" if sys.platform == "darwin" else ".so"
#: A copy of the library installed inside the package directory (by pip).
_BUNDLED = Path(__file__).resolve().parent / f"libkplm{_SUFFIX}"
_CANDIDATES = (
    Path("build") / f"libkplm{_SUFFIX}",
    Path(".build") / "release" / f"libkplm{_SUFFIX}",
    Path(".build") / "debug" / f"libkplm{_SUFFIX}",
)

_lib_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None


def _candidate_paths() -> List[str]:
    """The bundled copy, then the checkout's build folders, in the order tried."""
    return [str(_BUNDLED)] + [str(_REPO_ROOT / rel) for rel in _CANDIDATES]


def load_library(path: Optional[Union[str, "os.PathLike[str]"]] = None) -> ctypes.CDLL:
    """Load libkplm (once) and return it with every prototype declared.

    ``path`` (or else ``$KPLM_LIBRARY``) names the file to load; otherwise the
    copy bundled in the package directory (``kplm/libkplm.so``, installed by
    pip), the repository build folders and then the system search path are
    tried. A second call returns the library already loaded (a different explicit
    ``path`` at that point is an error). Raises :class:`LibraryNotFoundError`.
    """
    global _lib, _lib_path
    with _lib_lock:
        if _lib is not None:
            if path is not None and os.fspath(path) != _lib_path:
                raise LibraryNotFoundError(
                    f"libkplm is already loaded from {_lib_path!r}; cannot load {os.fspath(path)!r}")
            return _lib
        tried: List[str] = []
        cdll: Optional[ctypes.CDLL]
        chosen: Optional[str]
        explicit = os.fspath(path) if path is not None else os.environ.get("KPLM_LIBRARY") or None
        if explicit is not None:
            try:
                cdll = ctypes.CDLL(explicit)
            except OSError as exc:
                origin = "path argument" if path is not None else "KPLM_LIBRARY"
                raise LibraryNotFoundError(
                    f"cannot load libkplm from {explicit!r} ({origin}): {exc}") from exc
            chosen = explicit
        else:
            cdll = None
            chosen = None
            for cand in _candidate_paths():
                if not os.path.exists(cand):
                    tried.append(f"{cand} (missing)")
                    continue
                try:
                    cdll = ctypes.CDLL(cand)
                    chosen = cand
                    break
                except OSError as exc:
                    tried.append(f"{cand} ({exc})")
            if cdll is None:
                found = ctypes.util.find_library("kplm")
                if found:
                    try:
                        cdll = ctypes.CDLL(found)
                        chosen = found
                    except OSError as exc:
                        tried.append(f"find_library -> {found} ({exc})")
                else:
                    tried.append('ctypes.util.find_library("kplm") (not found)')
            if cdll is None:
                raise LibraryNotFoundError(
                    "libkplm not found. Build it (e.g. `swift build -c release --product kplm "
                    "-Xswiftc -static-stdlib`, or with CMake into build/) or set KPLM_LIBRARY "
                    "to the path of libkplm. Tried:\n  " + "\n  ".join(tried))
        try:
            _declare(cdll)
        except AttributeError as exc:
            raise LibraryNotFoundError(
                f"{chosen!r} is not a usable libkplm (missing symbol: {exc})") from exc
        _lib, _lib_path = cdll, chosen
        return cdll


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use), prototypes declared."""
    return _lib if _lib is not None else load_library()


def library_path() -> str:
    """Where the loaded library came from (loads it if needed)."""
    lib()
    assert _lib_path is not None
    return _lib_path
