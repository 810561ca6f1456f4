"""Metric: a handle on one resolved metric key (kplm_metric), whose puts skip the key lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._convert import _number
from .errors import ClosedError, KplmError, Status
from .model import MetricKey

if TYPE_CHECKING:
    from ._lifecycle import _Core

class Metric:
    """A resolved metric key (``kplm_metric``): puts skip the key lookup.

    Obtained from :meth:`Manager.metric`; valid until the manager is freed
    (then :meth:`put` raises :class:`ClosedError`).
    """

    __slots__ = ("_core", "_ptr", "key")

    def __init__(self, core: _Core, ptr: Any, key: MetricKey) -> None:
        self._core = core
        self._ptr = ptr
        #: The key this handle records under, as formed at the manager's level.
        self.key = key

    def put(self, value: float = 1.0) -> None:
        """Record one observation (``kplm_metric_put``)."""
        v = _number(value)
        core = self._core  # referenced until the call returns: kplm_free waits for it
        if core.ptr is None:
            raise ClosedError(Status.ECLOSED, context="the manager has been freed")
        status = core.lib.kplm_metric_put(self._ptr, v)
        if core.deferred:
            core.run_deferred()
        if status:
            raise KplmError.from_status(status, f"kplm_metric_put({self.key.name!r})")

    def __repr__(self) -> str:
        return f"Metric({self.key!r})"
