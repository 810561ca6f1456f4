"""Python binding of libkplm, the metrics core of the Kinesis Producer Library.

This package wraps the C ABI declared in ``include/kplm.h`` with :mod:`ctypes`.
It has two layers:

* a low-level layer that mirrors the header one to one: the structures
  :class:`KplmDimension`, :class:`KplmSnapshot`, :class:`KplmEvent`,
  :class:`KplmSink`, :class:`KplmConfig` and :class:`KplmStatistics`, the
  callback types (:data:`CLOCK_FUNC`, :data:`OPEN_FUNC`, :data:`EXPORT_FUNC`,
  :data:`RECORD_FUNC`, :data:`CLOSE_FUNC`, :data:`VISIT_FUNC`), the enums
  :class:`Level`, :class:`Status`, :class:`Unit` and :class:`Granularity`,
  and :func:`lib`, which returns the loaded :class:`ctypes.CDLL` with
  ``restype`` and ``argtypes`` set on every ``kplm_*`` function;

* a Pythonic layer: :class:`Manager` (a context manager), :class:`Metric`
  handles, the frozen dataclasses :class:`MetricKey`, :class:`Snapshot` and
  :class:`Event`, the :class:`Statistics` tuple of queries, the
  :class:`KplmError` exception family, the :class:`InMemorySink` and the
  clock helpers :class:`ClockCallback` and :class:`ManualClock`.

KPL parity: the Kinesis Producer Library's metric names (``METRIC_*``, all
of them in :data:`KPL_METRICS`) with their unit and KPL level
(:func:`metric_unit`, :func:`metric_level`, :func:`unit_name`), its dimension
names (``DIMENSION_*``), and the :class:`Manager` options ``granularity``
(KPL rollups), ``kpl_level_filter``, ``namespace`` and ``extra_dimensions``,
with the local queries :meth:`Manager.query` and :meth:`Manager.query_name`.

Example::

    import kplm

    sink = kplm.InMemorySink()
    with kplm.Manager(level=kplm.Level.DETAILED, sink=sink) as manager:
        manager.put("UserRecordsPut", 1, stream="orders")
        manager.put("ErrorsByCode", 1, stream="orders", error_code="Throttled")
    # leaving the block closed the manager: the final flush reached the sink
    for batch in sink.batches:
        for snap in batch:
            print(snap.name, snap.dimensions, snap.count, snap.sum)

Locating the library: a path given to :func:`load_library` wins, then the
environment variable ``KPLM_LIBRARY`` (a path). Otherwise the copy bundled in
this package's directory (``kplm/libkplm.so``, as pip installs it), then,
relative to the repository root (the parent of the ``python`` folder holding
this package), ``build/libkplm.so``, ``.build/release/libkplm.so`` and
``.build/debug/libkplm.so`` are tried in that order, then
``ctypes.util.find_library("kplm")``. :class:`LibraryNotFoundError` explains
what was tried when none loads. The library is loaded on first use (or by an
explicit :func:`load_library` call), so importing this module never fails.

Strings: ``str`` arguments are encoded to UTF-8 (lone surrogates are passed
through as their 3-byte forms, so the library rejects them with
``KPLM_EINVAL`` like any other invalid UTF-8); ``bytes`` are passed as is.
A string with an embedded NUL byte is refused with :class:`InvalidArgumentError`
before reaching C, because C would silently truncate it.

Callbacks: every pointer the library hands to a callback is valid only during
that call, so the trampolines copy the C data into Python objects before
calling Python code. Every ctypes callback object is kept referenced by its
manager until the manager is freed. Exceptions raised by Python callbacks never
escape into C: an exception in a sink's ``export`` (or ``open``) makes the
trampoline return non-zero, so the library counts the export (or open) as
failed and keeps the data; the exception is logged on the ``kplm`` logger and
kept on :attr:`Manager.last_sink_error`.

Modules (everything public is re-exported here; import from :mod:`kplm`):
:mod:`kplm.constants` (limits, KPL names, Level/Unit/Granularity),
:mod:`kplm.errors` (Status, KplmError and its subclasses),
:mod:`kplm._native` (ctypes structs, callback types, prototypes),
:mod:`kplm._library` (finding and loading libkplm),
:mod:`kplm.model` (MetricKey, Snapshot, Event, Statistics),
:mod:`kplm.clocks` (ClockCallback, ManualClock),
:mod:`kplm.catalog` (metric_unit, metric_level, unit_name),
:mod:`kplm.manager` (Manager), :mod:`kplm.metric` (Metric),
:mod:`kplm.sinks` (built-in sinks, cloudwatch_requests, InMemorySink),
:mod:`kplm._lifecycle` and :mod:`kplm._frames` (manager lifetime, SPEC §9).
"""

from __future__ import annotations

import logging
from typing import Any

from . import _convert, _frames, _library, _lifecycle, _native, constants, errors, model
from ._library import lib, library_path, load_library
from ._native import CW_EMIT_FUNC as CW_EMIT_FUNC
from ._native import ManagerPointer as ManagerPointer
from ._native import MetricPointer as MetricPointer
from ._native import (CLOCK_FUNC, CLOSE_FUNC, EXPORT_FUNC, OPEN_FUNC, RECORD_FUNC, VISIT_FUNC,
                      KplmCloudWatchConfig, KplmConfig, KplmDimension, KplmDogStatsDConfig, KplmEmfConfig,
                      KplmEvent, KplmOtlpConfig, KplmPrometheusConfig, KplmSink, KplmSnapshot, KplmStatistics)
from ._version import __version__, version, version_info
from .catalog import metric_level, metric_unit, unit_name
from .clocks import ClockCallback, ManualClock
from .constants import (ABI_VERSION, CUMULATIVE, DIMENSIONS_MAX, DEFAULT_EXPORT_TIMEOUT_MS, DEFAULT_MAX_METRICS,
                        DEFAULT_NAMESPACE, DEFAULT_UPLOAD_INTERVAL_MS, DEFAULT_WINDOW_SECONDS,
                        DIMENSION_ERROR_CODE, DIMENSION_SHARD_ID, DIMENSION_STREAM_NAME, DIMENSION_VALUE_MAX,
                        KPL_DISTRIBUTIONS, KPL_METRICS, METRIC_ALL_ERRORS, METRIC_BUFFERING_TIME, METRIC_ERRORS_BY_CODE,
                        METRIC_KINESIS_RECORDS_DATA_PUT, METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST,
                        METRIC_KINESIS_RECORDS_PUT, METRIC_REFUSED, METRIC_REQUEST_TIME,
                        METRIC_RETRIES_PER_RECORD, METRIC_USER_RECORD_EXPIRED, METRIC_USER_RECORDS_DATA_PUT,
                        METRIC_USER_RECORDS_PENDING, METRIC_USER_RECORDS_PER_KINESIS_RECORD,
                        METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST, METRIC_USER_RECORDS_PUT,
                        METRIC_USER_RECORDS_RECEIVED, NAME_MAX, WINDOW_SECONDS_MAX, WINDOW_SECONDS_MIN,
                        Granularity, Level, Unit)
from .errors import (ClosedError, InvalidArgumentError, KplmError, LibraryNotFoundError, LimitError,
                     OutOfMemoryError, SinkError, StateError, Status, status_string)
from .manager import Manager, default_config
from .metric import Metric
from .model import Event, MetricKey, Snapshot, Statistics
from .sinks import OTLP_COMPRESSIONS as OTLP_COMPRESSIONS
from .sinks import (BuiltinSink, EmfDestination, InMemorySink, cloudwatch_requests,
                    cloudwatch_sink, dogstatsd_sink, emf_sink, otlp_sink, prometheus_sink)

__all__ = [
    # constants
    "ABI_VERSION", "NAME_MAX", "DIMENSION_VALUE_MAX", "DIMENSIONS_MAX", "WINDOW_SECONDS_MIN",
    "WINDOW_SECONDS_MAX", "METRIC_REFUSED", "DEFAULT_UPLOAD_INTERVAL_MS",
    "DEFAULT_WINDOW_SECONDS", "DEFAULT_MAX_METRICS", "DEFAULT_EXPORT_TIMEOUT_MS",
    "DEFAULT_NAMESPACE", "CUMULATIVE",
    "METRIC_USER_RECORDS_RECEIVED", "METRIC_USER_RECORDS_PENDING", "METRIC_USER_RECORDS_PUT",
    "METRIC_USER_RECORDS_DATA_PUT", "METRIC_KINESIS_RECORDS_PUT", "METRIC_KINESIS_RECORDS_DATA_PUT",
    "METRIC_ERRORS_BY_CODE", "METRIC_ALL_ERRORS", "METRIC_RETRIES_PER_RECORD",
    "METRIC_USER_RECORD_EXPIRED", "METRIC_BUFFERING_TIME", "METRIC_REQUEST_TIME",
    "METRIC_USER_RECORDS_PER_KINESIS_RECORD", "METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST",
    "METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST", "KPL_METRICS", "KPL_DISTRIBUTIONS",
    "DIMENSION_STREAM_NAME", "DIMENSION_SHARD_ID", "DIMENSION_ERROR_CODE",
    # enums
    "Level", "Status", "Unit", "Granularity",
    # errors
    "KplmError", "InvalidArgumentError", "StateError", "ClosedError",
    "LimitError", "OutOfMemoryError", "SinkError", "LibraryNotFoundError",
    # low level
    "KplmDimension", "KplmSnapshot", "KplmEvent", "KplmSink", "KplmConfig", "KplmStatistics",
    "CLOCK_FUNC", "OPEN_FUNC", "EXPORT_FUNC", "RECORD_FUNC", "CLOSE_FUNC",
    "VISIT_FUNC", "load_library", "lib", "library_path", "status_string",
    "__version__", "version", "version_info", "default_config", "metric_unit", "metric_level", "unit_name", "cloudwatch_requests",
    "BuiltinSink",
    "KplmDogStatsDConfig", "dogstatsd_sink",
    "KplmEmfConfig", "EmfDestination", "emf_sink",
    "KplmPrometheusConfig", "prometheus_sink",
    "KplmOtlpConfig", "otlp_sink",
    "KplmCloudWatchConfig", "cloudwatch_sink",
    # high level
    "MetricKey", "Snapshot", "Event", "Statistics", "Manager", "Metric", "InMemorySink",
    "ClockCallback", "ManualClock",
]

#: The ``kplm`` logger: sink and clock exceptions, failed closes, exit warnings.
logger = logging.getLogger("kplm")

#: Internal names of the one-module binding this package replaced, and where
#: they live now: ``kplm._lib`` and the like still work (read live, so the
#: mutable ones such as ``_lib`` and ``_exiting`` give the current value).
_MOVED = {
    "_UINT32_MAX": constants, "_INT32_MIN": constants, "_INT32_MAX": constants,
    "_ERROR_CLASSES": errors, "_safe_status_string": errors, "_check": errors,
    "_OpaqueManager": _native, "_OpaqueMetric": _native, "_SINK_SIZES": _native, "_declare": _native,
    "_ConfigT": _native, "_init_config": _native,
    "_REPO_ROOT": _library, "_SUFFIX": _library, "_CANDIDATES": _library, "_lib_lock": _library,
    "_lib": _library, "_lib_path": _library, "_candidate_paths": _library,
    "_StrLike": _convert, "_encode": _convert, "_number": _convert, "_decode": _convert,
    "_dims_from_c": _convert, "_short": _convert, "_int_in": _convert, "_granularity_int": _convert,
    "_tls": _frames, "_PUT_TIME_KINDS": _frames, "_callback_enter": _frames, "_callback_leave": _frames,
    "_callback_stack": _frames, "_callback_kind": _frames, "_in_callback_of": _frames,
    "_on_main_thread": _frames,
    "_live_cores": _lifecycle, "_sink_registry": _lifecycle, "_exiting": _lifecycle,
    "_SinkEntry": _lifecycle, "_Core": _lifecycle, "_close_all_at_exit": _lifecycle,
    "_after_fork_in_child": _lifecycle, "_previous_unraisablehook": _lifecycle,
    "_unraisable_hook": _lifecycle, "_build_sink": _lifecycle,
    "_DIM_FIELDS": model, "_DIM_TO_FIELD": model,
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
