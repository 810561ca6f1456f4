"""aiokpl 0.2.0's ``aiokpl.sinks`` over kplm: the sink protocols, the data they receive, and three sinks.

:class:`MetricsSink` (``async export``, async context manager) and
:class:`EventfulMetricsSink` (a sync ``record`` per put) are runtime-checkable
protocols: any object with those members is a sink. :class:`NullSink` and
:class:`InMemorySink` are plain Python; :class:`CloudWatchSink` is a
configuration that a :class:`~kplm.aiokpl.metrics.MetricsManager` turns into
kplm's native CloudWatch sink (:func:`kplm.cloudwatch_sink`), whose requests
are made off the event loop. Importing this module needs no third-party
package.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import (Any, AsyncContextManager, Callable, List, Optional, Protocol, Sequence, Tuple,
                    runtime_checkable)

from .. import sinks as _native_sinks

__all__ = [
    "CloudWatchSink", "EventfulMetricsSink", "InMemorySink", "MetricEvent",
    "MetricSnapshot", "MetricsSink", "NullSink",
]

Dimensions = Tuple[Tuple[str, str], ...]

# Frozen and, where the interpreter supports it (3.10+), slotted.
_SLOTS: Any = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclass(frozen=True, **_SLOTS)
class MetricEvent:
    """One observation as handed to an eventful sink's ``record`` (timestamp: manager clock seconds)."""

    name: str
    value: float
    timestamp: float
    dimensions: Dimensions = ()


@dataclass(frozen=True, **_SLOTS)
class MetricSnapshot:
    """Aggregate of one metric key over ``[window_start, window_end)`` (manager clock seconds)."""

    name: str
    count: int
    sum: float
    min: float
    max: float
    dimensions: Dimensions = ()
    window_start: float = 0.0
    window_end: float = 0.0


@runtime_checkable
class MetricsSink(Protocol):
    """A destination for batches of :class:`MetricSnapshot`, used as an async context manager."""

    async def export(self, snapshots: Sequence[MetricSnapshot]) -> None:
        """Deliver one batch (awaited on the event loop that entered the manager)."""
        ...

    async def __aenter__(self) -> "MetricsSink":
        ...

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        ...


@runtime_checkable
class EventfulMetricsSink(Protocol):
    """A sink that also sees every observation: ``record`` runs synchronously inside each put."""

    def record(self, event: MetricEvent) -> None:
        ...


class NullSink:
    """A sink that discards everything (a manager given one uses kplm's native null sink)."""

    __slots__ = ()

    async def export(self, snapshots: Sequence[MetricSnapshot]) -> None:
        return None

    async def __aenter__(self) -> "NullSink":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return None


class InMemorySink:
    """A sink keeping every exported batch, in call order (for tests)."""

    def __init__(self) -> None:
        self._batches: List[Tuple[MetricSnapshot, ...]] = []

    async def export(self, snapshots: Sequence[MetricSnapshot]) -> None:
        self._batches.append(tuple(snapshots))

    async def __aenter__(self) -> "InMemorySink":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return None

    @property
    def exports(self) -> Tuple[Tuple[MetricSnapshot, ...], ...]:
        """Every exported batch, oldest first (a new tuple at each read)."""
        return tuple(self._batches)

    @property
    def all_snapshots(self) -> Tuple[MetricSnapshot, ...]:
        """Every exported snapshot, batches concatenated in order."""
        return tuple(snap for batch in self._batches for snap in batch)

    def by_name(self, name: str) -> Tuple[MetricSnapshot, ...]:
        """The exported snapshots of metric ``name`` (``()`` if none)."""
        return tuple(snap for snap in self.all_snapshots if snap.name == name)


class CloudWatchSink:
    """Amazon CloudWatch (PutMetricData), sent by kplm's native sink (:func:`kplm.cloudwatch_sink`).

    Same keyword-only signature as aiokpl's. Constructing it touches no
    network and needs no credentials. A
    :class:`~kplm.aiokpl.metrics.MetricsManager` given this sink builds the
    native sink from it: requests are signed and sent by the library on a
    worker thread (never on the event loop), with kplm's retries and
    timeouts; a failed export keeps its data for the next flush.
    ``endpoint_url`` maps to kplm's ``endpoint``; credentials not given are
    looked up as :func:`kplm.cloudwatch_sink` documents (no aiobotocore).
    ``verify_ssl=False`` and ``client_factory`` have no native equivalent
    and are refused (:class:`ValueError`). Its own :meth:`export` (used
    without a manager) only accepts an empty batch: kplm's CloudWatch sink
    exports through a manager.
    """

    def __init__(self, *, region: str, namespace: str = "aiokpl", endpoint_url: Optional[str] = None,
                 verify_ssl: bool = True, aws_access_key_id: Optional[str] = None,
                 aws_secret_access_key: Optional[str] = None, aws_session_token: Optional[str] = None,
                 client_factory: Optional[Callable[[], AsyncContextManager[Any]]] = None) -> None:
        if not verify_ssl:
            raise ValueError("kplm's CloudWatch sink always verifies TLS certificates (verify_ssl=False "
                             "is not supported; use an http:// endpoint_url for a local endpoint)")
        if client_factory is not None:
            raise ValueError("client_factory is not supported: kplm's CloudWatch sink has its own "
                             "native client (see kplm.cloudwatch_sink)")
        self._region = region
        self._namespace = namespace
        self._endpoint_url = endpoint_url
        self._keys = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        self._entered = False

    @property
    def namespace(self) -> str:
        """The CloudWatch namespace datums are published under."""
        return self._namespace

    def _native_sink(self) -> _native_sinks.BuiltinSink:
        """A new native CloudWatch sink with this configuration (one per manager)."""
        key_id, secret, token = self._keys
        return _native_sinks.cloudwatch_sink(region=self._region, endpoint=self._endpoint_url,
                                             namespace=self._namespace, access_key_id=key_id,
                                             secret_access_key=secret, session_token=token)

    async def export(self, snapshots: Sequence[MetricSnapshot]) -> None:
        if not snapshots or not self._entered:
            return None
        raise NotImplementedError("kplm.aiokpl.sinks.CloudWatchSink exports through a MetricsManager "
                                  "(kplm's native CloudWatch sink); it cannot export snapshots by itself")

    async def __aenter__(self) -> "CloudWatchSink":
        self._entered = True
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._entered = False
