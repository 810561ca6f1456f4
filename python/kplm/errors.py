"""Errors: the Status codes of the C calls, KplmError and its subclasses, LibraryNotFoundError."""

from __future__ import annotations

import enum
from typing import Dict, Optional, Tuple, Type, Union


class Status(enum.IntEnum):
    """Result of a C call (``kplm_status``)."""

    OK = 0
    EINVAL = 1
    ESTATE = 2
    ECLOSED = 3
    ELIMIT = 4
    ENOMEM = 5
    ESINK = 6


class LibraryNotFoundError(OSError):
    """libkplm could not be located or loaded."""


class KplmError(Exception):
    """A kplm call returned a status other than ``KPLM_OK``.

    ``status`` is the :class:`Status` (or the raw ``int`` for a status this
    binding does not know), ``message`` the library's ``kplm_status_string``
    text, ``context`` what the binding was doing (may be empty).

    Each status has its own subclass (:class:`InvalidArgumentError`,
    :class:`StateError`, :class:`ClosedError`, :class:`LimitError`,
    :class:`OutOfMemoryError`, :class:`SinkError`), so callers can catch a
    single kind; :meth:`from_status` picks the right one.
    """

    def __init__(self, status: Union[Status, int], message: Optional[str] = None,
                 context: str = "") -> None:
        try:
            status = Status(int(status))
        except ValueError:
            status = int(status)
        if message is None:
            message = _safe_status_string(status)
        self.status: Union[Status, int] = status
        self.message = message
        self.context = context
        super().__init__(f"{context}: {message}" if context else message)

    @staticmethod
    def from_status(status: Union[Status, int], context: str = "",
                    message: Optional[str] = None) -> "KplmError":
        """The exception instance (of the matching subclass) for ``status``."""
        cls = _ERROR_CLASSES.get(int(status), KplmError)
        return cls(status, message, context)

    # keep pickling (e.g. multiprocessing) working
    def __reduce__(self) -> Tuple[Type["KplmError"], Tuple[Union[Status, int], str, str]]:
        return (type(self), (self.status, self.message, self.context))


class InvalidArgumentError(KplmError, ValueError):
    """``KPLM_EINVAL``: NULL/empty/over-long/invalid UTF-8 argument, NaN, bad config."""


class StateError(KplmError):
    """``KPLM_ESTATE``: not allowed in the current state (or from a callback)."""


class ClosedError(KplmError):
    """``KPLM_ECLOSED``: the manager is closed, closing, or has been freed."""


class LimitError(KplmError):
    """``KPLM_ELIMIT``: a new key beyond ``max_metrics``."""


class OutOfMemoryError(KplmError, MemoryError):
    """``KPLM_ENOMEM``: the library could not allocate memory."""


class SinkError(KplmError):
    """``KPLM_ESINK``: the sink's open or export reported a failure."""


_ERROR_CLASSES: Dict[int, Type[KplmError]] = {
    Status.EINVAL: InvalidArgumentError,
    Status.ESTATE: StateError,
    Status.ECLOSED: ClosedError,
    Status.ELIMIT: LimitError,
    Status.ENOMEM: OutOfMemoryError,
    Status.ESINK: SinkError,
}


def status_string(status: Union[Status, int]) -> str:
    """``kplm_status_string``: the library's readable name of a status."""
    from ._library import lib  # here, not at import: _library raises the errors of this module

    raw: Optional[bytes] = lib().kplm_status_string(int(status))
    return raw.decode("utf-8", "replace") if raw is not None else f"kplm status {int(status)}"


def _safe_status_string(status: Union[Status, int]) -> str:
    try:
        return status_string(status)
    except Exception:  # library unavailable: still produce a message
        try:
            return f"KPLM_{Status(int(status)).name}"
        except ValueError:
            return f"kplm status {int(status)}"


def _check(status: int, context: str) -> None:
    if status != 0:
        raise KplmError.from_status(status, context)
