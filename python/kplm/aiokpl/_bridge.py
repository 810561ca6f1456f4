"""The sync sink a MetricsManager gives kplm.Manager: it runs the user's async sink on the event loop.

kplm calls :meth:`_LoopBridge.export` on the thread that makes the flush:
an anyio worker thread (``anyio.to_thread.run_sync``) for the manager's
flushes, the library's uploader thread for the final flush inside
``kplm_close``. Either way the batch is converted to
:class:`~kplm.aiokpl.sinks.MetricSnapshot` there and the user's
``await sink.export(batch)`` runs on the event loop that entered the
manager (``anyio.from_thread.run`` with that loop's token), while the
calling thread waits. An exception there makes the native export fail, so
kplm keeps the data and offers it again, merged, at the next flush.

Never on the loop's own thread (it would wait for itself): an export asked
for there, or when no loop is attached (before ``__aenter__``, after
``__aexit__``), fails at once and the data stays pending.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

import anyio
import anyio.from_thread

from ..model import Event, Snapshot
from .sinks import MetricEvent, MetricSnapshot


class _LoopBridge:
    """A kplm Python sink (sync ``export``, optional ``record``) in front of an aiokpl-style sink."""

    def __init__(self, sink: Any, eventful: bool) -> None:
        self._sink = sink
        self._token: Optional[Any] = None          # anyio EventLoopToken of the entering loop
        self._loop_thread: Optional[int] = None
        #: Seconds an export may take during the final flush (None: unbounded, as aiokpl).
        self.close_timeout: Optional[float] = None
        self._local = threading.local()
        if eventful:
            self.record = self._record

    def attach(self, token: Any, loop_thread: int) -> None:
        self._token = token
        self._loop_thread = loop_thread

    def detach(self) -> None:
        self._token = None
        self._loop_thread = None

    def take_error(self) -> Optional[BaseException]:
        """The exception the user's export raised on this thread since the last call, if any."""
        error: Optional[BaseException] = getattr(self._local, "error", None)
        self._local.error = None
        return error

    def export(self, batch: Sequence[Snapshot]) -> None:
        token = self._token
        if token is None:
            raise RuntimeError("kplm.aiokpl: no event loop is attached to this manager "
                               "(not entered, or already exited); the data stays pending")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("kplm.aiokpl: a native flush ran on the event loop's thread; "
                               "use `await manager.flush()`; the data stays pending")
        snapshots = tuple(MetricSnapshot(s.name, s.count, s.sum, s.min, s.max, s.dimensions,
                                         s.window_start, s.window_end) for s in batch)
        try:
            anyio.from_thread.run(self._export_on_loop, snapshots, token=token)
        except Exception as exc:
            self._local.error = exc
            raise

    async def _export_on_loop(self, snapshots: Sequence[MetricSnapshot]) -> None:
        limit = self.close_timeout
        if limit is None:
            await self._sink.export(snapshots)
            return
        with anyio.fail_after(limit):
            await self._sink.export(snapshots)

    def _record(self, event: Event) -> None:
        self._sink.record(MetricEvent(event.name, event.value, event.timestamp, event.dimensions))

