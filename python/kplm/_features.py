"""Functions added to the C ABI after 1.0: a binding loaded with an older
libkplm stays usable without them, and says what is missing when one is
called."""
from __future__ import annotations

from typing import Any

from .errors import KplmError, Status


def require_symbol(lib: Any, symbol: str, feature: str, since: str) -> None:
    """Raise :class:`StateError` when the loaded library has no ``symbol``,
    added in libkplm ``since`` for ``feature`` (what the caller asked for,
    named in the message)."""
    if not hasattr(lib, symbol):
        raise KplmError.from_status(Status.ESTATE, f"{feature}: needs libkplm {since} or later "
                                    f"(the loaded library has no {symbol})")
