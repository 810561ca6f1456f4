"""aiokpl 0.2.0's ``aiokpl.metrics`` over kplm's native core: MetricsManager, MetricKey, Metric, levels, names.

:class:`MetricsManager` records into a :class:`kplm.Manager` (the native
per-second window, at native speed) and is used as an async context manager
under asyncio or trio (anyio). Its upload loop is an anyio task on the
caller's event loop (``sleep_fn`` then ``flush``, every
``upload_interval_ms``); the native manager runs no periodic uploader of its
own. A flush runs the native ``kplm_flush`` on an anyio worker thread, and
the sink's ``export`` is awaited back on the caller's event loop: the loop
never blocks on a flush, a close or a native network sink.

Differences from aiokpl (see the README's "Migrating from aiokpl"): each
observation is exported once (aiokpl re-exports the whole 60 s window at
every flush); an export that raises keeps its data for the next flush,
merged; batches are sorted by name then dimensions; invalid observations
(NaN or infinite values, empty or over-long names) are refused by the core
and counted in ``KplmMetricsRefused`` instead of being recorded; ``""`` as a
dimension is the same as ``None``; ``record`` is called for puts made while
the manager is entered.

:class:`Metric` and :class:`_Accumulator` are standalone rolling-window
accumulators (pure Python), as in aiokpl.
"""

from __future__ import annotations

import enum
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..constants import Level as _Level
from ..errors import KplmError as _KplmError
from ..manager import Manager as _Manager
from ..model import Snapshot as _Snapshot
from ._bridge import _LoopBridge
from .sinks import (CloudWatchSink, EventfulMetricsSink, MetricEvent, MetricSnapshot, MetricsSink,
                    NullSink)

__all__ = [
    "MetricsLevel", "MetricKey", "Metric", "MetricsManager",
    "NAME_USER_RECORDS_RECEIVED", "NAME_USER_RECORDS_PUT", "NAME_USER_RECORDS_DATA_PUT",
    "NAME_USER_RECORDS_PENDING", "NAME_KINESIS_RECORDS_PUT", "NAME_KINESIS_RECORDS_DATA_PUT",
    "NAME_ALL_ERRORS", "NAME_ERRORS_BY_CODE", "NAME_RETRIES_PER_RECORD", "NAME_BUFFERED_TIME",
    "NAME_REQUEST_TIME", "NAME_EXPIRED_RECORDS",
]

# Re-exported for code that imports them from here, as aiokpl allows.
_REEXPORTED = (EventfulMetricsSink, MetricEvent, MetricSnapshot, MetricsSink, NullSink)

logger = logging.getLogger("kplm.aiokpl")

NAME_USER_RECORDS_RECEIVED = "UserRecordsReceived"
NAME_USER_RECORDS_PUT = "UserRecordsPut"
NAME_USER_RECORDS_DATA_PUT = "UserRecordsDataPut"
NAME_USER_RECORDS_PENDING = "UserRecordsPending"
NAME_KINESIS_RECORDS_PUT = "KinesisRecordsPut"
NAME_KINESIS_RECORDS_DATA_PUT = "KinesisRecordsDataPut"
NAME_ALL_ERRORS = "AllErrors"
NAME_ERRORS_BY_CODE = "ErrorsByCode"
NAME_RETRIES_PER_RECORD = "RetriesPerRecord"
#: aiokpl's name (the KPL and kplm.METRIC_BUFFERING_TIME say "BufferingTime").
NAME_BUFFERED_TIME = "BufferedTime"
NAME_REQUEST_TIME = "RequestTime"
#: aiokpl's name (the KPL and kplm.METRIC_USER_RECORD_EXPIRED say "UserRecordExpired").
NAME_EXPIRED_RECORDS = "ExpiredRecords"

#: The native manager's own upload interval: about 31 years, i.e. never (the
#: anyio upload loop flushes instead).
_NO_NATIVE_UPLOADS_MS = 1e12
#: Bound on one export during the final flush at ``__aexit__`` (kplm's
#: default export_timeout_ms); other exports are not bounded, as in aiokpl.
_CLOSE_EXPORT_TIMEOUT_S = 10.0

_SLOTS: Any = {"slots": True} if sys.version_info >= (3, 10) else {}


class MetricsLevel(enum.Enum):
    """How much a :class:`MetricsManager` records."""

    NONE = "none"
    SUMMARY = "summary"
    DETAILED = "detailed"


_NATIVE_LEVEL = {MetricsLevel.NONE: _Level.NONE, MetricsLevel.SUMMARY: _Level.SUMMARY,
                 MetricsLevel.DETAILED: _Level.DETAILED}


@dataclass(frozen=True, **_SLOTS)
class MetricKey:
    """A metric's identity: its name and the optional stream, shard and error code."""

    name: str
    stream: Optional[str] = None
    shard_id: Optional[str] = None
    error_code: Optional[str] = None

    def dimensions(self) -> Tuple[Tuple[str, str], ...]:
        """``(("stream", …), ("shard", …), ("error_code", …))``, each only if not None."""
        dims: List[Tuple[str, str]] = []
        if self.stream is not None:
            dims.append(("stream", self.stream))
        if self.shard_id is not None:
            dims.append(("shard", self.shard_id))
        if self.error_code is not None:
            dims.append(("error_code", self.error_code))
        return tuple(dims)


_Stats = Tuple[int, float, float, float]


class _Accumulator:
    """count/sum/min/max of the values put during the last ``window_seconds`` whole seconds of ``clock``.

    One bucket per second ``int(clock())``; a bucket is live while its
    second is at least ``int(now) - window_seconds + 1``. Dead buckets are
    dropped by :meth:`put` and :meth:`stats`. Not thread-safe.
    """

    __slots__ = ("_window", "_clock", "_buckets")

    def __init__(self, *, window_seconds: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = int(window_seconds)
        self._clock = clock
        self._buckets: Dict[int, List[Any]] = {}   # second -> [count, sum, min, max]

    def _drop_dead(self, now: float) -> None:
        first_live = int(now) - self._window + 1
        dead = [second for second in self._buckets if second < first_live]
        for second in dead:
            del self._buckets[second]

    def put(self, value: float = 1.0) -> None:
        now = self._clock()
        self._drop_dead(now)
        second = int(now)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [1, value, value, value]
            return
        bucket[0] += 1
        bucket[1] += value
        if value < bucket[2]:
            bucket[2] = value
        if value > bucket[3]:
            bucket[3] = value

    def stats(self) -> Optional[_Stats]:
        """``(count, sum, min, max)`` over the live window, or None when it holds nothing."""
        self._drop_dead(self._clock())
        if not self._buckets:
            return None
        count = 0
        total = 0.0
        low = math.inf
        high = -math.inf
        for c, s, lo, hi in self._buckets.values():
            count += c
            total += s
            low = min(low, lo)
            high = max(high, hi)
        return (count, total, low, high)

    def window_bounds(self) -> Tuple[float, float]:
        """``(first bucket second, last bucket second + 1)``; ``(0.0, 0.0)`` when empty."""
        if not self._buckets:
            return (0.0, 0.0)
        return (float(min(self._buckets)), float(max(self._buckets) + 1))


class Metric:
    """A standalone rolling-window accumulator for one :class:`MetricKey` (not tied to a manager)."""

    __slots__ = ("key", "_acc")

    def __init__(self, key: MetricKey, clock: Callable[[], float] = time.monotonic) -> None:
        self.key = key
        self._acc = _Accumulator(clock=clock)

    def put(self, value: float = 1.0) -> None:
        self._acc.put(value)

    def stats(self) -> Optional[_Stats]:
        return self._acc.stats()

    def window_bounds(self) -> Tuple[float, float]:
        return self._acc.window_bounds()


def _key_of(snap: _Snapshot) -> MetricKey:
    dims = dict(snap.dimensions)
    return MetricKey(snap.name, dims.get("stream"), dims.get("shard"), dims.get("error_code"))


class MetricsManager:
    """aiokpl's metrics manager over a native :class:`kplm.Manager`.

    Keyword-only, as aiokpl: ``level`` (:class:`MetricsLevel`), ``sink``
    (``None``: a new :class:`NullSink`), ``upload_interval_ms`` (the upload
    loop's period), ``clock`` (seconds; drives bucketing and the window) and
    ``sleep_fn`` (awaited by the upload loop with the period in seconds).

    :meth:`put` is synchronous, cheap and thread-safe; it never raises for
    an observation the core refuses (counted in ``KplmMetricsRefused``) nor
    after the manager has exited (dropped). Entering starts the native
    manager and the upload loop; leaving cancels the loop, makes the final
    flush (each export then bounded to 10 s) and closes the native manager,
    then exits the sink. A manager is entered once. At
    :attr:`MetricsLevel.NONE` nothing is recorded, the sink is never entered
    and no task is started.
    """

    def __init__(self, *, level: MetricsLevel = MetricsLevel.NONE, sink: Optional[MetricsSink] = None,
                 upload_interval_ms: float = 60000.0, clock: Callable[[], float] = time.monotonic,
                 sleep_fn: Callable[[float], Awaitable[None]] = anyio.sleep) -> None:
        self._level = level
        self._sink: MetricsSink = sink if sink is not None else NullSink()
        self._upload_interval_ms = upload_interval_ms
        self._clock = clock
        self._sleep_fn = sleep_fn
        self._off = level is MetricsLevel.NONE or _NATIVE_LEVEL[level] == _Level.NONE
        self._bridge: Optional[_LoopBridge] = None
        native_sink: Any = None
        user_sink: Any = self._sink
        if type(user_sink) is NullSink:
            native_sink = None          # the native null sink: nothing to hand back to the loop
        elif isinstance(user_sink, CloudWatchSink):
            native_sink = user_sink._native_sink()
        else:
            self._bridge = _LoopBridge(user_sink, callable(getattr(user_sink, "record", None)))
            native_sink = self._bridge
        self._native = _Manager(_NATIVE_LEVEL[level], upload_interval_ms=_NO_NATIVE_UPLOADS_MS,
                                clock=None if clock is time.monotonic else clock, sink=native_sink)
        self._native_put = self._native.put
        self._started = False
        self._task_group: Optional[Any] = None

    # -- configuration ------------------------------------------------------
    @property
    def level(self) -> MetricsLevel:
        return self._level

    @property
    def sink(self) -> MetricsSink:
        return self._sink

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @property
    def sleep_fn(self) -> Callable[[float], Awaitable[None]]:
        return self._sleep_fn

    @property
    def upload_interval_ms(self) -> float:
        return self._upload_interval_ms

    @property
    def native(self) -> _Manager:
        """The underlying :class:`kplm.Manager` (for queries and counters; do not close it)."""
        return self._native

    # -- recording ------------------------------------------------------------
    def put(self, name: str, value: float = 1.0, *, stream: Optional[str] = None,
            shard_id: Optional[str] = None, error_code: Optional[str] = None) -> None:
        """Record one observation (SUMMARY keeps only the stream; an eventful sink's ``record`` runs here)."""
        if self._off:
            return
        try:
            self._native_put(name, value, stream, shard_id, error_code)
        except _KplmError:
            pass    # refused (counted natively in KplmMetricsRefused) or closed: never raise

    def snapshot(self) -> Dict[MetricKey, _Stats]:
        """``{MetricKey: (count, sum, min, max)}`` of every key with data in the live window."""
        return {_key_of(s): (s.count, s.sum, s.min, s.max) for s in self._native_snapshots()}

    def snapshots(self) -> Tuple[MetricSnapshot, ...]:
        """The live window as :class:`MetricSnapshot` objects, sorted by name then dimensions."""
        return tuple(MetricSnapshot(s.name, s.count, s.sum, s.min, s.max, s.dimensions,
                                    s.window_start, s.window_end) for s in self._native_snapshots())

    def _native_snapshots(self) -> List[_Snapshot]:
        if self._off:
            return []
        try:
            return self._native.snapshots()
        except _KplmError:
            return []   # freed

    # -- flushing -------------------------------------------------------------
    async def flush(self) -> None:
        """Export what was put since the last export (nothing if nothing new).

        The native flush runs on a worker thread; the sink's ``export`` is
        awaited on this event loop. An exception it raises propagates here
        and the data is kept for the next flush. Before ``__aenter__`` (and
        at level NONE) this does nothing.
        """
        if self._off or not self._started:
            return
        await anyio.to_thread.run_sync(self._flush_in_thread)

    def _flush_in_thread(self) -> None:
        bridge = self._bridge
        if bridge is not None:
            bridge.take_error()
        try:
            self._native.flush()
        except _KplmError:
            error = bridge.take_error() if bridge is not None else None
            if error is not None:
                raise error from None
            raise

    def _close_in_thread(self) -> None:
        try:
            self._flush_in_thread()
        finally:
            self._native.close()

    async def _upload_loop(self) -> None:
        period = self._upload_interval_ms / 1000.0
        while True:
            await self._sleep_fn(period)
            try:
                await self.flush()
            except Exception as exc:    # the data is kept: the next flush retries it
                logger.error("kplm.aiokpl: periodic flush failed (kept for the next flush): %s: %s",
                             type(exc).__name__, exc)

    # -- async context manager ---------------------------------------------------
    async def __aenter__(self) -> "MetricsManager":
        if self._off:
            return self
        await self._sink.__aenter__()
        try:
            if self._bridge is not None:
                self._bridge.attach(anyio.lowlevel.current_token(), threading.get_ident())
            await anyio.to_thread.run_sync(self._native.start)
            self._started = True
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
        except BaseException as exc:
            if self._bridge is not None:
                self._bridge.detach()
            await self._sink.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._task_group = task_group
        task_group.start_soon(self._upload_loop)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Optional[bool]:
        if self._off:
            return None
        task_group, self._task_group = self._task_group, None
        suppress: Optional[bool] = None
        close_error: Optional[BaseException] = None
        try:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                suppress = await task_group.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True):
                bridge = self._bridge
                if bridge is not None:
                    bridge.close_timeout = _CLOSE_EXPORT_TIMEOUT_S
                try:
                    await anyio.to_thread.run_sync(self._close_in_thread)
                except Exception as error:
                    close_error = error
                finally:
                    if bridge is not None:
                        bridge.detach()
                    self._started = False
                await self._sink.__aexit__(exc_type, exc, tb)
        if close_error is not None and exc_type is None:
            raise close_error
        if close_error is not None:
            logger.error("kplm.aiokpl: final flush failed while handling %s: %s",
                         getattr(exc_type, "__name__", exc_type), close_error)
        return suppress
