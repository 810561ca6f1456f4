"""The library's version (kplm_version), as a string and as a tuple of ints."""

from __future__ import annotations

from typing import Tuple

from ._library import lib


def version() -> str:
    """``kplm_version``: the library's "MAJOR.MINOR.PATCH"."""
    raw: bytes = lib().kplm_version()
    return raw.decode("ascii")


def version_info() -> Tuple[int, int, int]:
    """The library's version as a tuple of ints."""
    major, minor, patch = version().split(".")
    return int(major), int(minor), int(patch)
