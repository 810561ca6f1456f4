"""The library's version (kplm_version), as a string and as a tuple of ints,
and the package's own version (``kplm.__version__``)."""

from __future__ import annotations

import importlib
import re
from typing import Tuple

from ._library import _REPO_ROOT, lib


def _package_version() -> str:
    """The distribution's version, the one of ``include/kplm.h``.

    A wheel (pyproject.toml) carries it in the generated module
    ``kplm._dist_version``; a checkout reads the header itself. Neither loads
    the library.
    """
    try:
        generated = importlib.import_module(f"{__package__}._dist_version")
    except ImportError:
        pass
    else:
        return str(generated.version)
    try:
        header = (_REPO_ROOT / "include" / "kplm.h").read_text(encoding="utf-8")
    except OSError:
        return "0+unknown"
    parts = [re.search(rf"^#define KPLM_VERSION_{part} (\d+)", header, re.MULTILINE)
             for part in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        return "0+unknown"
    return ".".join(m.group(1) for m in parts if m is not None)


#: The package's version (PEP 440), the one in ``include/kplm.h``; the loaded
#: library's own is :func:`version`.
__version__ = _package_version()


def version() -> str:
    """``kplm_version``: the library's "MAJOR.MINOR.PATCH"."""
    raw: bytes = lib().kplm_version()
    return raw.decode("ascii")


def version_info() -> Tuple[int, int, int]:
    """The library's version as a tuple of ints."""
    major, minor, patch = version().split(".")
    return int(major), int(minor), int(patch)
