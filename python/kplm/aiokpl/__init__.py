"""kplm.aiokpl: a drop-in for aiokpl 0.2.0's metrics API (``aiokpl.metrics`` and ``aiokpl.sinks``) over kplm's native core.

Replace ``from aiokpl.metrics import …`` with ``from kplm.aiokpl.metrics import …``
and ``from aiokpl.sinks import …`` with ``from kplm.aiokpl.sinks import …``.
Needs ``anyio`` (``pip install "kplm[aiokpl]"``); works under asyncio and trio.
The intended differences (each observation exported once, sorted batches,
validation, …) are listed in the README's "Migrating from aiokpl".
"""

from __future__ import annotations

try:
    import anyio as _anyio  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("kplm.aiokpl needs the anyio package: pip install 'kplm[aiokpl]' "
                      "(or pip install anyio)") from _exc

from . import metrics, sinks
from .metrics import MetricKey, MetricsLevel, MetricsManager
from .sinks import (CloudWatchSink, EventfulMetricsSink, InMemorySink, MetricEvent, MetricSnapshot,
                    MetricsSink, NullSink)

__all__ = [
    "metrics", "sinks",
    "CloudWatchSink", "EventfulMetricsSink", "InMemorySink", "MetricEvent", "MetricSnapshot",
    "MetricsSink", "NullSink", "MetricKey", "MetricsLevel", "MetricsManager",
]
