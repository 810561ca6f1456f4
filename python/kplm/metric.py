"""Metric: a handle on one resolved metric key (kplm_metric), whose puts skip the key lookup."""

from __future__ import annotations

import math
import time
from array import array
from typing import TYPE_CHECKING, Any

from ._convert import _number
from .errors import ClosedError, KplmError, Status
from .model import MetricKey

if TYPE_CHECKING:
    from ._lifecycle import _Core

_monotonic = time.monotonic


class Metric:
    """A resolved metric key (``kplm_metric``): puts skip the key lookup.

    Obtained from :meth:`Manager.metric`; valid until the manager is freed
    (then :meth:`put` raises :class:`ClosedError`). Thread-safe.

    With the library's clock (no ``clock=``), at a level other than NONE and
    without an eventful sink, a put appends its value to this handle's
    buffer, handed to the library at the latest when its second ends or a
    flush, read or close begins (see :mod:`kplm._buffer`): the put costs a
    fraction of a ctypes call, and every value still lands in its second.
    """

    __slots__ = ("_core", "_ptr", "key", "_buf", "_end", "_at", "__weakref__")

    def __init__(self, core: _Core, ptr: Any, key: MetricKey) -> None:
        self._core = core
        self._ptr = ptr
        #: The key this handle records under, as formed at the manager's level.
        self.key = key
        #: Values put but not yet handed to the library (see kplm._buffer).
        self._buf = array("d")
        #: Monotonic time until which a put may append to _buf (-inf: every
        #: put takes _put_slow), and the second _buf's values belong to.
        self._end = -math.inf
        self._at = 0.0
        buffers = core.buffers
        if buffers is not None:
            buffers.add(self)

    def put(self, value: float = 1.0) -> None:
        """Record one observation (``kplm_metric_put``)."""
        # Hot path: a finite number (NaN and ±inf fail v - v == 0), inside
        # the open slice of the buffer. A TypeError (not a number) is
        # reported by _put_slow.
        try:
            if value - value == 0.0 and _monotonic() < self._end:
                self._buf.append(value)
                return
        except TypeError:
            pass
        self._put_slow(value)

    def _put_slow(self, value: Any) -> None:
        v = _number(value)
        core = self._core  # referenced until the call returns: kplm_free waits for it
        if core.ptr is None:
            raise ClosedError(Status.ECLOSED, context="the manager has been freed")
        if not math.isfinite(v):   # what kplm_metric_put answers, before any buffering
            raise KplmError.from_status(Status.EINVAL, f"kplm_metric_put({self.key.name!r})")
        buffers = core.buffers
        if buffers is not None and buffers.enabled and not core.inherited and buffers.rotate(self):
            self._buf.append(v)
            if core.deferred:
                core.run_deferred()
            return
        status = core.lib.kplm_metric_put(self._ptr, v)
        if core.deferred:
            core.run_deferred()
        if status:
            raise KplmError.from_status(status, f"kplm_metric_put({self.key.name!r})")

    def __repr__(self) -> str:
        return f"Metric({self.key!r})"
