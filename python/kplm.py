"""Python binding of libkplm, the metrics core of the Kinesis Producer Library.

This module wraps the C ABI declared in ``include/kplm.h`` with :mod:`ctypes`.
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

Locating the library: the environment variable ``KPLM_LIBRARY`` (a path) wins
if set. Otherwise, relative to the repository root (the parent of the folder
holding this file), ``build/libkplm.so``, ``.build/release/libkplm.so`` and
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
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import dataclasses
import enum
import logging
import numbers
import os
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple, TypeVar, Union

__all__ = [
    # constants
    "ABI_VERSION", "NAME_MAX", "DIMENSION_VALUE_MAX", "WINDOW_SECONDS_MIN",
    "WINDOW_SECONDS_MAX", "METRIC_REFUSED", "DEFAULT_UPLOAD_INTERVAL_MS",
    "DEFAULT_WINDOW_SECONDS", "DEFAULT_MAX_METRICS", "DEFAULT_EXPORT_TIMEOUT_MS",
    "DEFAULT_NAMESPACE", "CUMULATIVE",
    "METRIC_USER_RECORDS_RECEIVED", "METRIC_USER_RECORDS_PENDING", "METRIC_USER_RECORDS_PUT",
    "METRIC_USER_RECORDS_DATA_PUT", "METRIC_KINESIS_RECORDS_PUT", "METRIC_KINESIS_RECORDS_DATA_PUT",
    "METRIC_ERRORS_BY_CODE", "METRIC_ALL_ERRORS", "METRIC_RETRIES_PER_RECORD",
    "METRIC_USER_RECORD_EXPIRED", "METRIC_BUFFERING_TIME", "METRIC_REQUEST_TIME",
    "METRIC_USER_RECORDS_PER_KINESIS_RECORD", "METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST",
    "METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST", "KPL_METRICS",
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
    "version", "version_info", "default_config", "metric_unit", "metric_level", "unit_name", "cloudwatch_requests",
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

logger = logging.getLogger("kplm")

# --------------------------------------------------------------------------
# Constants of kplm.h
# --------------------------------------------------------------------------

#: (MAJOR, MINOR, PATCH) of the header this binding was written against.
ABI_VERSION: Tuple[int, int, int] = (1, 0, 0)
#: Longest metric name accepted, in bytes (KPLM_NAME_MAX).
NAME_MAX = 255
#: Longest dimension value accepted, in bytes (KPLM_DIMENSION_VALUE_MAX).
DIMENSION_VALUE_MAX = 1024
#: Bounds of the window length (KPLM_WINDOW_SECONDS_MIN / _MAX).
WINDOW_SECONDS_MIN = 1
WINDOW_SECONDS_MAX = 3600
#: Metric the library keeps by itself for puts refused with KPLM_ELIMIT.
METRIC_REFUSED = "KplmMetricsRefused"
#: Defaults filled in by kplm_config_init.
DEFAULT_UPLOAD_INTERVAL_MS = 60000.0
DEFAULT_WINDOW_SECONDS = 60
DEFAULT_MAX_METRICS = 100000
DEFAULT_EXPORT_TIMEOUT_MS = 10000.0
#: Namespace of a manager created without one (kplm_config.metric_namespace NULL).
DEFAULT_NAMESPACE = "KinesisProducerLibrary"
#: ``seconds`` of :meth:`Manager.query` for statistics since the manager was
#: created (KPLM_CUMULATIVE).
CUMULATIVE = 0

# The Kinesis Producer Library's metric names, byte for byte (KPLM_METRIC_*).
# Unit and KPL level of each: metric_unit() / metric_level().
#: Count, Detailed.
METRIC_USER_RECORDS_RECEIVED = "UserRecordsReceived"
#: Count, Detailed.
METRIC_USER_RECORDS_PENDING = "UserRecordsPending"
#: Count, Summary.
METRIC_USER_RECORDS_PUT = "UserRecordsPut"
#: Bytes, Detailed.
METRIC_USER_RECORDS_DATA_PUT = "UserRecordsDataPut"
#: Count, Summary.
METRIC_KINESIS_RECORDS_PUT = "KinesisRecordsPut"
#: Bytes, Detailed.
METRIC_KINESIS_RECORDS_DATA_PUT = "KinesisRecordsDataPut"
#: Count, Summary.
METRIC_ERRORS_BY_CODE = "ErrorsByCode"
#: Count, Summary.
METRIC_ALL_ERRORS = "AllErrors"
#: Count, Detailed.
METRIC_RETRIES_PER_RECORD = "RetriesPerRecord"
#: Count, Summary.
METRIC_USER_RECORD_EXPIRED = "UserRecordExpired"
#: Milliseconds, Summary.
METRIC_BUFFERING_TIME = "BufferingTime"
#: Milliseconds, Detailed.
METRIC_REQUEST_TIME = "RequestTime"
#: Count, Detailed.
METRIC_USER_RECORDS_PER_KINESIS_RECORD = "UserRecordsPerKinesisRecord"
#: Count, Detailed.
METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST = "KinesisRecordsPerPutRecordsRequest"
#: Count, Detailed.
METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST = "UserRecordsPerPutRecordsRequest"
#: Every KPL metric name, in the KPL's (and the header's) order.
KPL_METRICS: Tuple[str, ...] = (
    METRIC_USER_RECORDS_RECEIVED, METRIC_USER_RECORDS_PENDING, METRIC_USER_RECORDS_PUT,
    METRIC_USER_RECORDS_DATA_PUT, METRIC_KINESIS_RECORDS_PUT, METRIC_KINESIS_RECORDS_DATA_PUT,
    METRIC_ERRORS_BY_CODE, METRIC_ALL_ERRORS, METRIC_RETRIES_PER_RECORD,
    METRIC_USER_RECORD_EXPIRED, METRIC_BUFFERING_TIME, METRIC_REQUEST_TIME,
    METRIC_USER_RECORDS_PER_KINESIS_RECORD, METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST,
    METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST,
)

#: The KPL's dimension names (KPLM_DIMENSION_*), used by snapshots and
#: exports when a granularity is configured.
DIMENSION_STREAM_NAME = "StreamName"
DIMENSION_SHARD_ID = "ShardId"
DIMENSION_ERROR_CODE = "ErrorCode"

_UINT32_MAX = 0xFFFFFFFF
_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


class Level(enum.IntEnum):
    """How much a manager records (``kplm_level``)."""

    #: Nothing is recorded; no thread is started and the sink is never used.
    NONE = 0
    #: ``shard_id`` and ``error_code`` are dropped: keys are (name, stream).
    SUMMARY = 1
    #: Every dimension is kept.
    DETAILED = 2


class Unit(enum.IntEnum):
    """A metric's unit, as CloudWatch names it (``kplm_unit``; :func:`unit_name`)."""

    #: "None": names the KPL does not define.
    NONE = 0
    #: "Count"
    COUNT = 1
    #: "Bytes"
    BYTES = 2
    #: "Milliseconds"
    MILLISECONDS = 3


class Granularity(enum.IntEnum):
    """KPL rollups (``kplm_granularity``, the KPL's MetricsGranularity).

    ``NONE`` (the default) reports every key as recorded, with the dimensions
    "stream", "shard", "error_code". Otherwise snapshots and exports show the
    KPL's tree with its dimension names and order (global extras,
    ``ErrorCode``, ``StreamName`` and stream extras, ``ShardId`` and shard
    extras): one line for the name alone, one with the error code, then
    (``STREAM`` and finer) one per stream, then (``SHARD``) one per shard; a
    line's statistics merge those of the keys under it.
    """

    NONE = 0
    #: The metric name alone (plus the error code and global extra dimensions).
    GLOBAL = 1
    #: Also per stream.
    STREAM = 2
    #: Also per stream and shard.
    SHARD = 3


class Status(enum.IntEnum):
    """Result of a C call (``kplm_status``)."""

    OK = 0
    EINVAL = 1
    ESTATE = 2
    ECLOSED = 3
    ELIMIT = 4
    ENOMEM = 5
    ESINK = 6


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


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
        self.status = status
        self.message = message
        self.context = context
        super().__init__(f"{context}: {message}" if context else message)

    @staticmethod
    def from_status(status: Union[Status, int], context: str = "",
                    message: Optional[str] = None) -> "KplmError":
        """The exception instance (of the matching subclass) for ``status``."""
        cls = _ERROR_CLASSES.get(int(status), KplmError)
        return cls(status, message, context)

    def __reduce__(self):  # keep pickling (e.g. multiprocessing) working
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


_ERROR_CLASSES = {
    Status.EINVAL: InvalidArgumentError,
    Status.ESTATE: StateError,
    Status.ECLOSED: ClosedError,
    Status.ELIMIT: LimitError,
    Status.ENOMEM: OutOfMemoryError,
    Status.ESINK: SinkError,
}


# --------------------------------------------------------------------------
# C types
# --------------------------------------------------------------------------


class _OpaqueManager(ctypes.Structure):
    """``struct kplm_manager`` (opaque)."""


class _OpaqueMetric(ctypes.Structure):
    """``struct kplm_metric`` (opaque)."""


#: ``kplm_manager *``
ManagerPointer = ctypes.POINTER(_OpaqueManager)
#: ``kplm_metric *``
MetricPointer = ctypes.POINTER(_OpaqueMetric)


class KplmDimension(ctypes.Structure):
    """``kplm_dimension``: one (name, value) pair."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("value", ctypes.c_char_p),
    ]


class KplmSnapshot(ctypes.Structure):
    """``kplm_snapshot``: aggregated statistics of one key over a span."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("count", ctypes.c_uint64),
        ("sum", ctypes.c_double),
        ("min", ctypes.c_double),
        ("max", ctypes.c_double),
        ("dimensions", ctypes.POINTER(KplmDimension)),
        ("dimension_count", ctypes.c_size_t),
        ("window_start", ctypes.c_double),
        ("window_end", ctypes.c_double),
        ("timestamp_unix", ctypes.c_double),
    ]


class KplmEvent(ctypes.Structure):
    """``kplm_event``: one observation handed to an eventful sink."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("value", ctypes.c_double),
        ("timestamp", ctypes.c_double),
        ("dimensions", ctypes.POINTER(KplmDimension)),
        ("dimension_count", ctypes.c_size_t),
    ]


#: ``double (*clock)(void *user_data)``
CLOCK_FUNC = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p)
#: ``int (*open)(void *user_data)``
OPEN_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
#: ``int (*export_snapshots)(void *user_data, const kplm_snapshot *s, size_t n)``
EXPORT_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                               ctypes.POINTER(KplmSnapshot), ctypes.c_size_t)
#: ``void (*record)(void *user_data, const kplm_event *e)``
RECORD_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(KplmEvent))
#: ``void (*close)(void *user_data)``
CLOSE_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
#: ``int (*visit)(void *user_data, const kplm_snapshot *s)`` of kplm_snapshots
VISIT_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(KplmSnapshot))
#: ``emit`` of kplm_cloudwatch_requests: (user_data, body, body_len, datums) -> int.
CW_EMIT_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)


class KplmSink(ctypes.Structure):
    """``kplm_sink``: the callbacks a manager flushes to (copied by set_sink).

    A field left unset is a NULL function pointer. Whoever builds one must
    keep the callback objects alive for as long as the library may call them.
    """

    _fields_ = [
        ("user_data", ctypes.c_void_p),
        ("open", OPEN_FUNC),
        ("export_snapshots", EXPORT_FUNC),
        ("record", RECORD_FUNC),
        ("close", CLOSE_FUNC),
    ]


#: The sizes kplm_set_sink_sized gets: this module's kplm_sink, kplm_snapshot
#: and kplm_event (the library lays out what the callbacks get at those sizes).
_SINK_SIZES = (ctypes.sizeof(KplmSink), ctypes.sizeof(KplmSnapshot), ctypes.sizeof(KplmEvent))


class KplmConfig(ctypes.Structure):
    """``kplm_config``. Initialise with ``kplm_config_init`` (see :func:`default_config`)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("level", ctypes.c_int),
        ("upload_interval_ms", ctypes.c_double),
        ("window_seconds", ctypes.c_uint32),
        ("clock", CLOCK_FUNC),
        ("clock_user_data", ctypes.c_void_p),
        ("max_metrics", ctypes.c_uint32),
        ("export_timeout_ms", ctypes.c_double),
        ("granularity", ctypes.c_int),
        ("kpl_level_filter", ctypes.c_int),
        ("metric_namespace", ctypes.c_char_p),
    ]


class KplmStatistics(ctypes.Structure):
    """``kplm_statistics``: what ``kplm_query`` returns (all zero when empty)."""

    _fields_ = [
        ("count", ctypes.c_uint64),
        ("sum", ctypes.c_double),
        ("min", ctypes.c_double),
        ("max", ctypes.c_double),
    ]




# --------------------------------------------------------------------------
# Library loading
# --------------------------------------------------------------------------

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SUFFIX = ".dylib" if sys.platform == "darwin" else ".so"
_CANDIDATES = (
    Path("build") / f"libkplm{_SUFFIX}",
    Path(".build") / "release" / f"libkplm{_SUFFIX}",
    Path(".build") / "debug" / f"libkplm{_SUFFIX}",
)

_lib_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None


def _declare(cdll: ctypes.CDLL) -> None:
    """Set ``restype`` and ``argtypes`` of every function of kplm.h."""
    st = ctypes.c_int
    pm = ManagerPointer
    s = ctypes.c_char_p

    def proto(name: str, restype: Any, argtypes: Sequence[Any]) -> None:
        fn = getattr(cdll, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)

    proto("kplm_config_init", None, [ctypes.POINTER(KplmConfig)])
    proto("kplm_config_init_sized", None, [ctypes.POINTER(KplmConfig), ctypes.c_size_t])
    proto("kplm_new", st, [ctypes.POINTER(KplmConfig), ctypes.POINTER(pm)])
    proto("kplm_set_sink", st, [pm, ctypes.POINTER(KplmSink)])
    proto("kplm_set_sink_sized", st, [pm, ctypes.POINTER(KplmSink), ctypes.c_size_t, ctypes.c_size_t,
                                      ctypes.c_size_t])
    proto("kplm_sink_release", None, [ctypes.POINTER(KplmSink)])
    proto("kplm_dogstatsd_config_init", None, [ctypes.POINTER(KplmDogStatsDConfig)])
    proto("kplm_dogstatsd_config_init_sized", None, [ctypes.POINTER(KplmDogStatsDConfig), ctypes.c_size_t])
    proto("kplm_sink_dogstatsd", st, [ctypes.POINTER(KplmDogStatsDConfig), ctypes.POINTER(KplmSink)])
    proto("kplm_start", st, [pm])
    proto("kplm_put", st, [pm, s, ctypes.c_double, s, s, s])
    proto("kplm_metric_get", st, [pm, s, s, s, s, ctypes.POINTER(MetricPointer)])
    proto("kplm_metric_put", st, [MetricPointer, ctypes.c_double])
    proto("kplm_snapshots", st, [pm, VISIT_FUNC, ctypes.c_void_p])
    proto("kplm_snapshots_sized", st, [pm, VISIT_FUNC, ctypes.c_void_p, ctypes.c_size_t])
    proto("kplm_flush", st, [pm])
    proto("kplm_close", st, [pm])
    proto("kplm_free", None, [pm])
    proto("kplm_add_dimension", st, [pm, s, s, ctypes.c_int])
    proto("kplm_namespace", ctypes.c_char_p, [pm])
    proto("kplm_query", st, [pm, s, s, s, s, ctypes.c_uint32, ctypes.POINTER(KplmStatistics)])
    proto("kplm_query_name", st, [pm, s, ctypes.c_uint32, ctypes.POINTER(KplmStatistics)])
    proto("kplm_query_sized", st, [pm, s, s, s, s, ctypes.c_uint32, ctypes.POINTER(KplmStatistics), ctypes.c_size_t])
    proto("kplm_query_name_sized", st, [pm, s, ctypes.c_uint32, ctypes.POINTER(KplmStatistics), ctypes.c_size_t])
    proto("kplm_metric_unit", ctypes.c_int, [s])
    proto("kplm_metric_level", ctypes.c_int, [s])
    proto("kplm_unit_name", ctypes.c_char_p, [ctypes.c_int])
    proto("kplm_cloudwatch_requests", st,
          [ctypes.POINTER(KplmSnapshot), ctypes.c_size_t, s, ctypes.c_double, CW_EMIT_FUNC, ctypes.c_void_p,
           ctypes.POINTER(ctypes.c_size_t)])
    proto("kplm_cloudwatch_requests_sized", st,
          [ctypes.POINTER(KplmSnapshot), ctypes.c_size_t, s, ctypes.c_double, CW_EMIT_FUNC, ctypes.c_void_p,
           ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t])
    proto("kplm_emf_config_init", None, [ctypes.POINTER(KplmEmfConfig)])
    proto("kplm_emf_config_init_sized", None, [ctypes.POINTER(KplmEmfConfig), ctypes.c_size_t])
    proto("kplm_sink_emf", st, [ctypes.POINTER(KplmEmfConfig), ctypes.POINTER(KplmSink)])
    proto("kplm_prometheus_config_init", None, [ctypes.POINTER(KplmPrometheusConfig)])
    proto("kplm_prometheus_config_init_sized", None, [ctypes.POINTER(KplmPrometheusConfig), ctypes.c_size_t])
    proto("kplm_sink_prometheus", st, [ctypes.POINTER(KplmPrometheusConfig), ctypes.POINTER(KplmSink)])
    proto("kplm_otlp_config_init", None, [ctypes.POINTER(KplmOtlpConfig)])
    proto("kplm_otlp_config_init_sized", None, [ctypes.POINTER(KplmOtlpConfig), ctypes.c_size_t])
    proto("kplm_sink_otlp", st, [ctypes.POINTER(KplmOtlpConfig), ctypes.POINTER(KplmSink)])
    proto("kplm_cloudwatch_config_init", None, [ctypes.POINTER(KplmCloudWatchConfig)])
    proto("kplm_cloudwatch_config_init_sized", None, [ctypes.POINTER(KplmCloudWatchConfig), ctypes.c_size_t])
    proto("kplm_sink_cloudwatch", st, [ctypes.POINTER(KplmCloudWatchConfig), ctypes.POINTER(KplmSink)])
    proto("kplm_status_string", ctypes.c_char_p, [ctypes.c_int])
    proto("kplm_version", ctypes.c_char_p, [])


def _candidate_paths() -> list:
    return [str(_REPO_ROOT / rel) for rel in _CANDIDATES]


def load_library(path: Optional[Union[str, os.PathLike]] = None) -> ctypes.CDLL:
    """Load libkplm (once) and return it with every prototype declared.

    ``path`` (or else ``$KPLM_LIBRARY``) names the file to load; otherwise the
    repository build folders and then the system search path are tried. A
    second call returns the library already loaded (a different explicit
    ``path`` at that point is an error). Raises :class:`LibraryNotFoundError`.
    """
    global _lib, _lib_path
    with _lib_lock:
        if _lib is not None:
            if path is not None and os.fspath(path) != _lib_path:
                raise LibraryNotFoundError(
                    f"libkplm is already loaded from {_lib_path!r}; cannot load {os.fspath(path)!r}")
            return _lib
        tried = []
        explicit = os.fspath(path) if path is not None else os.environ.get("KPLM_LIBRARY") or None
        if explicit is not None:
            try:
                cdll = ctypes.CDLL(explicit)
            except OSError as exc:
                origin = "path argument" if path is not None else "KPLM_LIBRARY"
                raise LibraryNotFoundError(
                    f"cannot load libkplm from {explicit!r} ({origin}): {exc}") from exc
            chosen = explicit
        else:
            cdll = None
            chosen = None
            for cand in _candidate_paths():
                if not os.path.exists(cand):
                    tried.append(f"{cand} (missing)")
                    continue
                try:
                    cdll = ctypes.CDLL(cand)
                    chosen = cand
                    break
                except OSError as exc:
                    tried.append(f"{cand} ({exc})")
            if cdll is None:
                found = ctypes.util.find_library("kplm")
                if found:
                    try:
                        cdll = ctypes.CDLL(found)
                        chosen = found
                    except OSError as exc:
                        tried.append(f"find_library -> {found} ({exc})")
                else:
                    tried.append('ctypes.util.find_library("kplm") (not found)')
            if cdll is None:
                raise LibraryNotFoundError(
                    "libkplm not found. Build it (e.g. `swift build -c release --product kplm "
                    "-Xswiftc -static-stdlib`, or with CMake into build/) or set KPLM_LIBRARY "
                    "to the path of libkplm. Tried:\n  " + "\n  ".join(tried))
        try:
            _declare(cdll)
        except AttributeError as exc:
            raise LibraryNotFoundError(
                f"{chosen!r} is not a usable libkplm (missing symbol: {exc})") from exc
        _lib, _lib_path = cdll, chosen
        return cdll


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use), prototypes declared."""
    return _lib if _lib is not None else load_library()


def library_path() -> str:
    """Where the loaded library came from (loads it if needed)."""
    lib()
    assert _lib_path is not None
    return _lib_path


def status_string(status: Union[Status, int]) -> str:
    """``kplm_status_string``: the library's readable name of a status."""
    raw = lib().kplm_status_string(int(status))
    return raw.decode("utf-8", "replace") if raw is not None else f"kplm status {int(status)}"


def _safe_status_string(status: Union[Status, int]) -> str:
    try:
        return status_string(status)
    except Exception:  # library unavailable: still produce a message
        try:
            return f"KPLM_{Status(int(status)).name}"
        except ValueError:
            return f"kplm status {int(status)}"


def version() -> str:
    """``kplm_version``: the library's "MAJOR.MINOR.PATCH"."""
    return lib().kplm_version().decode("ascii")


def version_info() -> Tuple[int, int, int]:
    """The library's version as a tuple of ints."""
    major, minor, patch = version().split(".")
    return int(major), int(minor), int(patch)


def metric_unit(name: Optional[_StrLike]) -> Union[Unit, int]:
    """``kplm_metric_unit``: the KPL's unit of a metric name, :attr:`Unit.NONE` for any other name.

    Names compare byte for byte (``None`` gives :attr:`Unit.NONE`).
    """
    raw = lib().kplm_metric_unit(_encode(name, "name"))
    try:
        return Unit(raw)
    except ValueError:  # pragma: no cover - a later library's unit
        return raw


def metric_level(name: Optional[_StrLike]) -> Union[Level, int]:
    """``kplm_metric_level``: the KPL level of a metric name.

    :attr:`Level.SUMMARY` or :attr:`Level.DETAILED` for the KPL's metrics,
    :attr:`Level.DETAILED` for any other name (or ``None``).
    """
    raw = lib().kplm_metric_level(_encode(name, "name"))
    try:
        return Level(raw)
    except ValueError:  # pragma: no cover - a later library's level
        return raw


def unit_name(unit: Union[Unit, int]) -> str:
    """``kplm_unit_name``: the CloudWatch name of a unit ("Count"); "None" for an unknown value."""
    raw = lib().kplm_unit_name(_int_in("unit", unit, _INT32_MIN, _INT32_MAX))
    return raw.decode("ascii") if raw is not None else "None"


def cloudwatch_requests(snapshots: Iterable["Snapshot"], namespace: _StrLike,
                        wall_now: Optional[float] = None) -> Tuple[List[Tuple[str, int]], int]:
    """``kplm_cloudwatch_requests``: snapshots as CloudWatch PutMetricData requests.

    Returns ``(requests, dropped)``: each request is ``(body, datums)``, the
    AWS JSON 1.0 body (at most 1000 datums and 1,000,000 bytes) and its
    number of datums; ``dropped`` counts snapshots CloudWatch would refuse
    (count 0, out-of-range values or timestamps, bad dimensions). ``wall_now``
    defaults to the current Unix time. Raises :class:`InvalidArgumentError`
    for a bad namespace (empty, over 255 characters, "AWS/…").
    """
    items = list(snapshots)
    keep: List[Any] = []   # every buffer the C array points into
    array = (KplmSnapshot * max(1, len(items)))()
    for i, snap in enumerate(items):
        name = _encode(snap.name, "name")
        dims = (KplmDimension * max(1, len(snap.dimensions)))()
        for j, (dn, dv) in enumerate(snap.dimensions):
            dims[j].name = _encode(dn, "dimension name")
            dims[j].value = _encode(dv, "dimension value")
        keep.extend([name, dims])
        array[i] = KplmSnapshot(name, int(snap.count), float(snap.sum), float(snap.min), float(snap.max),
                                ctypes.cast(dims, ctypes.POINTER(KplmDimension)), len(snap.dimensions),
                                float(snap.window_start), float(snap.window_end), float(snap.timestamp_unix))
    bodies: List[Tuple[str, int]] = []

    def emit(_user_data: Any, body: Any, length: int, datums: int) -> int:
        bodies.append((ctypes.string_at(body, length).decode("utf-8"), int(datums)))
        return 0

    emit_c = CW_EMIT_FUNC(emit)   # referenced until the call returns
    dropped = ctypes.c_size_t(0)
    now = time.time() if wall_now is None else _number(wall_now)
    st = lib().kplm_cloudwatch_requests_sized(array, len(items), _encode(namespace, "namespace"), now, emit_c,
                                              None, ctypes.byref(dropped), ctypes.sizeof(KplmSnapshot))
    if st != Status.OK:
        raise KplmError.from_status(st, "kplm_cloudwatch_requests")
    return bodies, int(dropped.value)


_ConfigT = TypeVar("_ConfigT", bound=ctypes.Structure)


def _init_config(init_sized: Any, config: _ConfigT) -> _ConfigT:
    """``config`` filled by a ``kplm_*_config_init_sized`` function.

    The size passed is this module's layout of the struct: the library writes
    exactly that many bytes (fields this module does not know are never
    written, fields the library does not know are zero).
    """
    init_sized(ctypes.byref(config), ctypes.sizeof(config))
    return config


def default_config() -> KplmConfig:
    """A :class:`KplmConfig` filled by ``kplm_config_init`` (a copy; fields known here)."""
    return _init_config(lib().kplm_config_init_sized, KplmConfig())


# --------------------------------------------------------------------------
# Value conversions
# --------------------------------------------------------------------------

_StrLike = Union[str, bytes, bytearray, memoryview]


def _encode(value: Optional[_StrLike], what: str) -> Optional[bytes]:
    """str → UTF-8 bytes (surrogates passed through for the library to refuse)."""
    if value is None:
        return None
    if type(value) is str:
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, (bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str):
        data = str(value).encode("utf-8", "surrogatepass")
    else:
        raise TypeError(f"{what} must be str, bytes or None, not {type(value).__name__}")
    if b"\0" in data:
        raise InvalidArgumentError(Status.EINVAL, context=f"{what} {value!r} contains a NUL byte")
    return data


def _number(value: Any) -> float:
    t = type(value)
    if t is float:
        return value
    if t is int or isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"value must be a real number, not {type(value).__name__}")


def _decode(raw: Optional[bytes]) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "surrogateescape")


def _dims_from_c(ptr: Any, count: int) -> Tuple[Tuple[str, str], ...]:
    if not count or not ptr:
        return ()
    return tuple((_decode(ptr[i].name), _decode(ptr[i].value)) for i in range(count))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------

_DIM_FIELDS = (("stream", "stream"), ("shard", "shard_id"), ("error_code", "error_code"))
_DIM_TO_FIELD = dict(_DIM_FIELDS)


@dataclasses.dataclass(frozen=True)
class MetricKey:
    """Identity of a metric: name plus optional dimensions (hashable).

    ``extra`` holds dimensions this binding has no field for: the extra
    dimensions of :meth:`Manager.add_dimension`, and every dimension of a
    line shown with a :class:`Granularity` (whose names are the KPL's
    ``StreamName``, ``ShardId``, ``ErrorCode``). It is empty for every key of
    a manager with neither.
    """

    name: str
    stream: Optional[str] = None
    shard_id: Optional[str] = None
    error_code: Optional[str] = None
    extra: Tuple[Tuple[str, str], ...] = ()

    def dimensions(self) -> Tuple[Tuple[str, str], ...]:
        """The key rendered as the library does: stream, shard, error_code (absent omitted)."""
        dims = []
        for dim_name, field in _DIM_FIELDS:
            value = getattr(self, field)
            if value:  # "" is the same as absent
                dims.append((dim_name, value))
        return tuple(dims) + tuple(self.extra)

    @classmethod
    def from_dimensions(cls, name: str, dimensions: Iterable[Tuple[str, str]]) -> "MetricKey":
        """Rebuild a key from a name and rendered dimensions."""
        fields: dict = {}
        extra = []
        for dim_name, value in dimensions:
            field = _DIM_TO_FIELD.get(dim_name)
            if field is None or field in fields:
                extra.append((dim_name, value))
            else:
                fields[field] = value
        return cls(name, extra=tuple(extra), **fields)

    def formed(self, level: Union[Level, int]) -> "MetricKey":
        """The key the library forms from this one at ``level`` ("" → None, SUMMARY drops shard and error_code)."""
        stream = self.stream or None
        if int(level) == Level.SUMMARY:
            return MetricKey(self.name, stream)
        return MetricKey(self.name, stream, self.shard_id or None, self.error_code or None, self.extra)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Statistics of one metric key over ``[window_start, window_end)`` (manager-clock seconds)."""

    name: str
    count: int
    sum: float
    min: float
    max: float
    dimensions: Tuple[Tuple[str, str], ...]
    window_start: float
    window_end: float
    timestamp_unix: float

    @property
    def key(self) -> MetricKey:
        """The :class:`MetricKey` this snapshot belongs to."""
        return MetricKey.from_dimensions(self.name, self.dimensions)

    @property
    def stats(self) -> Tuple[int, float, float, float]:
        """``(count, sum, min, max)``."""
        return (self.count, self.sum, self.min, self.max)

    @classmethod
    def from_c(cls, s: KplmSnapshot) -> "Snapshot":
        """Copy a C ``kplm_snapshot`` (valid only during the callback) into Python."""
        return cls(
            name=_decode(s.name),
            count=int(s.count),
            sum=s.sum,
            min=s.min,
            max=s.max,
            dimensions=_dims_from_c(s.dimensions, s.dimension_count),
            window_start=s.window_start,
            window_end=s.window_end,
            timestamp_unix=s.timestamp_unix,
        )


@dataclasses.dataclass(frozen=True)
class Event:
    """One accepted observation, as handed to an eventful sink's ``record``."""

    name: str
    value: float
    timestamp: float
    dimensions: Tuple[Tuple[str, str], ...]

    @property
    def key(self) -> MetricKey:
        return MetricKey.from_dimensions(self.name, self.dimensions)

    @classmethod
    def from_c(cls, e: KplmEvent) -> "Event":
        """Copy a C ``kplm_event`` (valid only during the callback) into Python."""
        return cls(
            name=_decode(e.name),
            value=e.value,
            timestamp=e.timestamp,
            dimensions=_dims_from_c(e.dimensions, e.dimension_count),
        )


class Statistics(NamedTuple):
    """``(count, sum, min, max)`` returned by :meth:`Manager.query` and :meth:`Manager.query_name`.

    An immutable tuple, so it compares equal to the plain ``(count, sum, min,
    max)`` tuples of :attr:`Snapshot.stats`. All zero when nothing matched.
    """

    count: int
    sum: float
    min: float
    max: float

    @classmethod
    def from_c(cls, s: KplmStatistics) -> "Statistics":
        """Copy a C ``kplm_statistics``."""
        return cls(int(s.count), s.sum, s.min, s.max)


# --------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------


class ClockCallback:
    """Wraps a Python callable returning seconds as a C clock (``config.clock``).

    The callable is called from any thread (putting threads, the uploader)
    and must be monotonic. If it raises, the exception is logged and kept in
    :attr:`last_error`, and the last good reading (0.0 before any) is returned
    instead: an exception cannot cross into C.

    The :attr:`c_function` object must stay referenced while the library may
    call it; :class:`Manager` keeps its clock until it is freed.
    """

    def __init__(self, func: Callable[[], float]) -> None:
        if not callable(func):
            raise TypeError("clock must be callable")
        self.func = func
        self.last_error: Optional[BaseException] = None
        self._last = 0.0
        self._owner: Optional["weakref.ReferenceType[_Core]"] = None  # set by Manager
        self.c_function = CLOCK_FUNC(self._call)

    def _call(self, _user_data: Any) -> float:
        stack = _callback_stack()
        depth = len(stack)
        owner = None
        try:
            owner = self._owner() if self._owner is not None else None
            if owner is not None:
                stack.append((self._owner, "clock"))
            value = float(self.func())
            self._last = value
            return value
        except BaseException as exc:  # never let it cross into C
            self.last_error = exc
            if owner is not None and not isinstance(exc, Exception) and _on_main_thread():
                owner.defer(exc)  # SystemExit/KeyboardInterrupt: re-raised after the call
                return self._last
            logger.error("kplm clock %r raised; using last reading %r", self.func, self._last,
                         exc_info=exc)
            return self._last
        finally:
            del stack[depth:]
            owner = None

    def apply(self, config: KplmConfig) -> None:
        """Install this clock into a :class:`KplmConfig`."""
        config.clock = self.c_function
        config.clock_user_data = None

    def __call__(self) -> float:
        return float(self.func())


class ManualClock:
    """A settable clock for tests and simulations (thread-safe callable).

    >>> clock = ManualClock(100.0)
    >>> clock.advance(1.5); clock()
    101.5
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        return self()

    def set(self, now: float) -> None:
        with self._lock:
            self._now = float(now)

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += float(seconds)
            return self._now


# --------------------------------------------------------------------------
# Manager internals
# --------------------------------------------------------------------------

_tls = threading.local()

#: Callback kinds that run inside a put on the putting thread (record) or
#: inside any call on the calling thread (clock). On the main thread a signal
#: handler may interrupt them; a close or free it asks for is deferred until
#: the interrupted call returns (see :meth:`_Core.defer`).
_PUT_TIME_KINDS = ("record", "clock")


def _callback_enter(core: "_Core", kind: str = "callback") -> None:
    stack = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    stack.append((weakref.ref(core), kind))


def _callback_leave() -> None:
    _tls.stack.pop()


def _callback_stack() -> list:
    """This thread's stack of running callbacks: ``(weakref to core, kind)``.

    A trampoline notes ``len()`` before its ``try`` and pushes inside it, then
    trims back to that depth in ``finally``: an exception a signal handler
    raises on any bytecode never leaves a stale entry.
    """
    stack = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    return stack


def _callback_kind(core: "_Core") -> Optional[str]:
    """The kind of the innermost callback of ``core`` running on this thread, or None."""
    stack = getattr(_tls, "stack", None)
    if stack:
        for ref, kind in reversed(stack):
            if ref() is core:
                return kind
    return None


def _in_callback_of(core: "_Core") -> bool:
    return _callback_kind(core) is not None


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_live_cores: "weakref.WeakSet[_Core]" = weakref.WeakSet()

#: Sinks the library may still call although their manager was released (a
#: final export that outlived ``export_timeout_ms`` runs on, then the sink's
#: close callback runs). Keyed by ``id(entry)``; an entry is added when its
#: manager is released and removed by the sink's close trampoline, so a sink
#: object and its ctypes callbacks live until the library has run its close
#: callback, whatever the user drops and whenever the garbage collector runs.
#: Updated with single dict operations only (atomic under the GIL): no lock,
#: so a signal handler or a garbage collection can never deadlock on it.
_sink_registry: dict = {}

#: True once the interpreter-exit hook has run: managers are then left to the
#: process exit (no kplm_free during interpreter teardown).
_exiting = False


class _SinkEntry:
    """The ctypes callbacks (and what they call) of one Python sink given to the library.

    Held by its :class:`_Core` while the manager lives, then by
    :data:`_sink_registry` until the library has called the close
    trampoline (``done``). The trampolines refer to the core weakly only, so
    that the entry never keeps a manager alive.
    """

    __slots__ = ("keep", "done", "__weakref__")

    def __init__(self) -> None:
        self.keep: list = []
        self.done = False

    def publish(self) -> None:
        """Keep this entry alive process-wide until its close trampoline has run."""
        _sink_registry[id(self)] = self
        if self.done:   # close already ran (maybe on another thread just now)
            _sink_registry.pop(id(self), None)

    def retire(self) -> None:
        """Called by the close trampoline: the library will never call this sink again."""
        self.done = True
        # Dropping the last reference here frees the sink and its ctypes
        # callbacks once the close trampoline's Python frame has returned
        # (ctypes touches no callback object after the Python call returns).
        _sink_registry.pop(id(self), None)


class _Core:
    """State shared by a :class:`Manager`, its :class:`Metric` handles and its callbacks.

    Kept apart from the Manager so that the callbacks (which refer to this
    object only weakly) do not keep the Manager alive.

    Lifetime, without any lock on the put path: ``ptr`` (the C manager) is
    valid for as long as this object lives. Every call (put, metric put,
    flush…) holds a reference to the core while it is inside C, so the C
    manager is released (``kplm_free``, in :meth:`__del__`) only when no
    thread can be inside a call any more: when the last :class:`Manager` or
    :class:`Metric` reference and every call in flight are gone.
    :meth:`Manager.free` closes the manager and drops the Manager's reference
    (later calls through it raise :class:`ClosedError`; :class:`Metric`
    handles get ``KPLM_ECLOSED`` from the library). Once closed, the library
    refuses puts (``KPLM_ECLOSED``) and keeps handles valid until
    ``kplm_free``, so a put racing with close, free or a garbage collection
    on another thread is either recorded and exported, or refused.

    Deferred work: a close or free asked for from a record or clock callback
    of this manager on the main thread (typically by a signal handler that
    interrupted a put there), and a ``SystemExit``/``KeyboardInterrupt``
    raised in a callback on the main thread, are kept in :attr:`pending`
    and done (re-raised) right after the interrupted call returns.
    """

    def __init__(self, cdll: ctypes.CDLL) -> None:
        self.lib = cdll
        self.ptr: Optional[Any] = None
        self.keepalive: list = []  # the clock's ctypes callback, and replaced sinks' entries
        self.sink: Any = None
        self.sink_struct: Optional[KplmSink] = None
        self.sink_entry: Optional[_SinkEntry] = None
        self.error_lock = threading.Lock()
        self.last_sink_error: Optional[BaseException] = None
        self.sink_error_count = 0
        self.failed_exports = 0
        self.state = "new"
        self.started = False
        self.inherited = False     # set in a forked child: every call is refused
        self.rollup = False        # exported lines include KPL rollups (granularity set)
        #: Observations delivered per metric name by successful exports of a
        #: Python sink (None for built-in and null sinks: not observable).
        self.delivered: Optional[dict] = None
        #: Checked after every C call; True while :attr:`pending` holds work.
        self.deferred = False
        self.pending: dict = {}    # thread ident -> [action, ...]
        _live_cores.add(self)

    # -- calls ---------------------------------------------------------------
    def call(self, fn: Callable, *args: Any) -> int:
        ptr = self.ptr
        if ptr is None:
            raise ClosedError(Status.ECLOSED, context="the manager has been freed")
        status = fn(ptr, *args)
        if self.deferred:
            self.run_deferred()
        return status

    def close(self) -> int:
        """``kplm_close`` (or its deferral); returns the status."""
        if self.inherited:
            return Status.ESTATE
        ptr = self.ptr
        if ptr is None:
            return Status.OK
        kind = _callback_kind(self)
        if kind is not None:
            if kind in _PUT_TIME_KINDS and _on_main_thread():
                self.defer("close")
                return Status.OK
            return Status.ESTATE     # what kplm_close answers from a callback
        status = self.lib.kplm_close(ptr)
        if status == Status.ESTATE and _on_main_thread():
            # The library refuses a close made inside a put on this thread: a
            # signal handler that interrupted a record or clock callback
            # before it was marked as one. Close once that put has returned.
            self.defer("close")
            return Status.OK
        if status != Status.ESTATE:
            self.state = "closed"
        if self.deferred:
            self.run_deferred()
        return status

    # -- deferred work (signal handlers on the main thread) -------------------
    def defer(self, action: Any) -> None:
        self.pending.setdefault(threading.get_ident(), []).append(action)
        self.deferred = True

    def run_deferred(self) -> None:
        if _in_callback_of(self):
            return   # still inside a callback of this manager: later
        actions = self.pending.pop(threading.get_ident(), None)
        if not self.pending:
            self.deferred = False
            if self.pending:     # another thread deferred meanwhile
                self.deferred = True
        if not actions:
            return
        raised: Optional[BaseException] = None
        for action in actions:
            if isinstance(action, BaseException):
                raised = raised or action
            elif action == "close":
                status = self.close()
                if status not in (Status.OK, Status.ESTATE):
                    logger.error("kplm close (deferred from a callback or signal handler) "
                                 "failed: %s", _safe_status_string(status))
        if raised is not None:
            raise raised

    def callback_raised(self, what: str, exc: BaseException) -> None:
        """A Python callback raised ``exc``: log it, or keep an exit request for later."""
        if not isinstance(exc, Exception) and _on_main_thread():
            # SystemExit / KeyboardInterrupt (e.g. from a signal handler that
            # interrupted this callback): re-raised once the kplm call returns.
            self.defer(exc)
            if what == "export":
                with self.error_lock:
                    self.failed_exports += 1
            return
        self.sink_failed(what, exc)

    # -- sink error bookkeeping ------------------------------------------
    def sink_failed(self, what: str, exc: BaseException) -> None:
        with self.error_lock:
            self.last_sink_error = exc
            self.sink_error_count += 1
            if what == "export":
                self.failed_exports += 1
        logger.error("kplm sink %r: %s raised %s: %s", self.sink, what,
                     type(exc).__name__, exc, exc_info=exc)

    def count_delivered(self, batch: Sequence[Snapshot]) -> None:
        """Add a successfully exported batch to :attr:`delivered` (by metric name)."""
        delivered = self.delivered
        if delivered is None:
            return
        if not self.rollup:
            for snap in batch:
                delivered[snap.name] = delivered.get(snap.name, 0) + snap.count
            return
        # Rollup lines repeat the same observations at every level: count,
        # per name, the lines of the coarsest level only.
        coarsest: dict = {}
        for snap in batch:
            depth = len(snap.dimensions)
            best = coarsest.get(snap.name)
            if best is None or depth < best[0]:
                coarsest[snap.name] = [depth, snap.count]
            elif depth == best[0]:
                best[1] += snap.count
        for name, (_depth, count) in coarsest.items():
            delivered[name] = delivered.get(name, 0) + count

    def undelivered(self) -> Optional[int]:
        """Observations accepted but not (yet) delivered by the Python sink; None if unknown."""
        ptr = self.ptr
        if ptr is None or self.delivered is None:
            return None
        delivered = dict(self.delivered)
        names = set(delivered)

        def visit(_ud: Any, snap: Any) -> int:
            names.add(_decode(snap[0].name))
            return 0

        visitor = VISIT_FUNC(visit)
        self.lib.kplm_snapshots_sized(ptr, visitor, None, ctypes.sizeof(KplmSnapshot))
        total = 0
        for name in names:
            stats = KplmStatistics()
            if self.lib.kplm_query_name_sized(ptr, name.encode("utf-8", "surrogatepass"),
                                              CUMULATIVE, ctypes.byref(stats),
                                              ctypes.sizeof(stats)) == 0:
                total += max(0, int(stats.count) - delivered.get(name, 0))
        return total

    # -- release ----------------------------------------------------------
    def release(self) -> None:
        """Mark freed: close now (or once the interrupted call returns, see :meth:`close`)."""
        if self.inherited or self.ptr is None:
            self.state = "freed"
            return
        status = self.close()
        self.state = "freed"
        if status not in (Status.OK, Status.ESTATE, Status.ECLOSED):
            logger.warning("kplm: closing the manager at free failed: %s",
                           _safe_status_string(status))

    def __del__(self) -> None:
        # No thread can be inside a call any more (each holds a reference):
        # release the C manager, unless the process is exiting or this is an
        # inherited manager in a forked child (kplm_free would release nothing).
        ptr = self.ptr
        if ptr is None or _exiting or self.inherited:
            return
        self.ptr = None
        entry = self.sink_entry
        if entry is not None and self.started:
            entry.publish()   # the library may call it after kplm_free returns
        if isinstance(threading.current_thread(), threading._DummyThread):
            # On a library thread (the uploader), perhaps still inside one of
            # this manager's callbacks in C, where kplm_free does nothing:
            # release from a thread of our own.
            threading.Thread(target=self.lib.kplm_free, args=(ptr,),
                             name="kplm-deferred-free", daemon=True).start()
        else:
            self.lib.kplm_free(ptr)


def _close_all_at_exit() -> None:
    """Close every live manager before the interpreter tears down.

    What a close cannot deliver (its final export failed or outlived
    ``export_timeout_ms``) is reported as one warning on the ``kplm`` logger
    with the number of observations not delivered. Managers are then left to
    the process exit: the sinks still pending are kept alive for good.
    """
    global _exiting
    undelivered = 0
    unknown = 0
    failed = 0
    for core in list(_live_cores):
        if core.inherited or core.ptr is None or _in_callback_of(core):
            continue
        try:
            status = core.lib.kplm_close(core.ptr)
            if status in (Status.OK, Status.ESTATE, Status.ECLOSED):
                continue
            failed += 1
            count = core.undelivered()
            if count is None:
                unknown += 1
            else:
                undelivered += count
        except Exception:  # pragma: no cover - best effort at exit
            pass
    _exiting = True
    if failed:
        detail = f"{undelivered} observation(s) not delivered"
        if unknown:
            detail += f" (plus an unknown number from {unknown} built-in sink(s))"
        logger.warning("kplm: %s at interpreter exit: the final export of %d manager(s) "
                       "failed or did not finish within export_timeout_ms", detail, failed)
    # A final export still running in the background may call its sink after
    # the interpreter has cleared this module: keep those sinks for good.
    if _sink_registry:
        try:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(_sink_registry))
        except Exception:  # pragma: no cover
            pass


atexit.register(_close_all_at_exit)


def _after_fork_in_child() -> None:
    # The child has only the forking thread. Managers inherited from the
    # parent refuse every call (the library answers KPLM_ESTATE); nothing of
    # theirs is closed or freed here, and no lock a vanished thread held is
    # ever waited for.
    for core in list(_live_cores):
        core.inherited = True
        core.state = "inherited"
        core.error_lock = threading.Lock()
        core.pending = {}
        core.deferred = False
    _tls.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_previous_unraisablehook = sys.unraisablehook


def _unraisable_hook(unraisable: Any) -> None:
    # A signal handler may run on the first or last bytecode of a callback
    # trampoline, outside its try block: ctypes then reports the SystemExit
    # (or KeyboardInterrupt) as unraisable. Keep it for the interrupted call
    # to re-raise once it returns, as if the trampoline had caught it.
    exc = unraisable.exc_value
    obj = unraisable.object
    ref = getattr(obj, "_kplm_core", None)
    if ref is None and isinstance(getattr(obj, "__self__", None), ClockCallback):
        ref = obj.__self__._owner
    core = ref() if ref is not None else None
    if core is not None and exc is not None and not isinstance(exc, Exception) \
            and _on_main_thread():
        core.defer(exc)
        return
    _previous_unraisablehook(unraisable)


sys.unraisablehook = _unraisable_hook


def _build_sink(core: _Core, sink: Any) -> Tuple[KplmSink, Optional[_SinkEntry]]:
    """Wrap a Python sink object into a kplm_sink with trampolines."""
    if isinstance(sink, BuiltinSink):
        return sink._take(), None
    export = getattr(sink, "export", None)
    if not callable(export):
        raise TypeError("a sink needs a callable export(snapshots) method")
    open_ = getattr(sink, "open", None)
    record = getattr(sink, "record", None)
    close = getattr(sink, "close", None)
    core_ref = weakref.ref(core)
    entry = _SinkEntry()
    entry.keep.append(sink)

    def export_trampoline(_ud: Any, snaps: Any, n: int) -> int:
        stack = _callback_stack()
        depth = len(stack)
        owner = None
        try:
            owner = core_ref()
            if owner is not None:
                stack.append((core_ref, "export"))
            batch = [Snapshot.from_c(snaps[i]) for i in range(n)]
            export(batch)
            if owner is not None:
                owner.count_delivered(batch)
            return 0
        except BaseException as exc:
            if owner is not None:
                owner.callback_raised("export", exc)
            else:
                logger.error("kplm sink %r: export raised %s: %s", sink, type(exc).__name__, exc)
            return 1
        finally:
            del stack[depth:]
            owner = None

    struct = KplmSink()
    struct.user_data = None
    export_trampoline._kplm_core = core_ref  # type: ignore[attr-defined]
    struct.export_snapshots = EXPORT_FUNC(export_trampoline)
    entry.keep.append(struct.export_snapshots)

    if callable(open_):
        def open_trampoline(_ud: Any) -> int:
            stack = _callback_stack()
            depth = len(stack)
            owner = None
            try:
                owner = core_ref()
                if owner is not None:
                    stack.append((core_ref, "open"))
                open_()
                return 0
            except BaseException as exc:
                if owner is not None:
                    owner.callback_raised("open", exc)
                return 1
            finally:
                del stack[depth:]
                owner = None

        open_trampoline._kplm_core = core_ref  # type: ignore[attr-defined]
        struct.open = OPEN_FUNC(open_trampoline)
        entry.keep.append(struct.open)

    if callable(record):
        def record_trampoline(_ud: Any, event: Any) -> None:
            stack = _callback_stack()
            depth = len(stack)
            owner = None
            try:
                owner = core_ref()
                if owner is not None:
                    stack.append((core_ref, "record"))
                record(Event.from_c(event[0]))
            except BaseException as exc:
                if owner is not None:
                    owner.callback_raised("record", exc)
            finally:
                del stack[depth:]
                owner = None

        record_trampoline._kplm_core = core_ref  # type: ignore[attr-defined]
        struct.record = RECORD_FUNC(record_trampoline)
        entry.keep.append(struct.record)

    # Always a close trampoline, even for a sink without close(): it tells
    # when the library is done with this sink.
    def close_trampoline(_ud: Any) -> None:
        stack = _callback_stack()
        depth = len(stack)
        owner = None
        try:
            owner = core_ref()
            if owner is not None:
                stack.append((core_ref, "close"))
            if callable(close):
                close()
        except BaseException as exc:
            if owner is not None:
                owner.callback_raised("close", exc)
            else:
                logger.error("kplm sink %r: close raised %s: %s", sink, type(exc).__name__, exc)
        finally:
            del stack[depth:]
            owner = None
            entry.retire()

    close_trampoline._kplm_core = core_ref  # type: ignore[attr-defined]
    struct.close = CLOSE_FUNC(close_trampoline)
    entry.keep.append(struct.close)
    entry.keep.append(struct)
    return struct, entry


def _check(status: int, context: str) -> None:
    if status != 0:
        raise KplmError.from_status(status, context)


# --------------------------------------------------------------------------
# Public classes
# --------------------------------------------------------------------------


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


class Manager:
    """A kplm metrics manager (``kplm_manager``).

    Parameters mirror :class:`KplmConfig`, with the same defaults: the
    default ``level`` is :attr:`Level.NONE`, which records nothing — pass
    ``Level.SUMMARY`` or ``Level.DETAILED`` to collect metrics.

    ``clock``: ``None`` for the library's monotonic clock, or a callable
    returning seconds (e.g. :class:`ManualClock`), or a :class:`ClockCallback`.

    ``sink``: ``None`` for the null sink, or any object with
    ``export(snapshots: list[Snapshot])`` and optionally ``open()``,
    ``close()`` and ``record(event: Event)`` (an eventful sink). ``export``
    raising an exception is a failed export (the library keeps the data for
    the next flush); see :attr:`last_sink_error`.

    KPL parity (see :class:`Granularity`): ``granularity`` (a
    :class:`Granularity`, its ``int`` or its name) shows snapshots and
    exports as the KPL's rollup tree; ``kpl_level_filter=True`` shows only
    the metrics whose KPL level (:func:`metric_level`) is within ``level``;
    ``namespace`` (``None`` = :data:`DEFAULT_NAMESPACE`) is the namespace
    sinks publish under (:attr:`namespace`); ``extra_dimensions`` is an
    iterable of ``(name, value, granularity)`` applied with
    :meth:`add_dimension` right after creation.

    Use as a context manager: entering starts the manager, leaving closes it
    (the final flush reaches the sink). Closing does not free: the retained
    window stays readable with :meth:`snapshots`. :meth:`free` (also run when
    the object is garbage-collected, and at interpreter exit) releases it.
    """

    def __init__(self, level: Union[Level, int, str] = Level.NONE, *,
                 upload_interval_ms: float = DEFAULT_UPLOAD_INTERVAL_MS,
                 window_seconds: int = DEFAULT_WINDOW_SECONDS,
                 max_metrics: int = DEFAULT_MAX_METRICS,
                 export_timeout_ms: float = DEFAULT_EXPORT_TIMEOUT_MS,
                 clock: Optional[Union[Callable[[], float], ClockCallback]] = None,
                 sink: Any = None,
                 granularity: Union[Granularity, int, str] = Granularity.NONE,
                 kpl_level_filter: bool = False,
                 namespace: Optional[_StrLike] = None,
                 extra_dimensions: Iterable[Tuple[_StrLike, _StrLike,
                                                  Union[Granularity, int, str]]] = ()) -> None:
        self._core: Optional[_Core] = None
        cdll = lib()
        if isinstance(level, str):
            level = Level[level.upper()]
        level_int = _int_in("level", level, _INT32_MIN, _INT32_MAX)
        granularity_int = _granularity_int(granularity)
        # Referenced until kplm_new has returned (the library copies it).
        namespace_bytes = _encode(namespace, "namespace")
        extras = [tuple(extra) for extra in extra_dimensions]
        for extra in extras:
            if len(extra) != 3:
                raise TypeError("extra_dimensions items must be (name, value, granularity), "
                                f"not {extra!r}")
        window = _int_in("window_seconds", window_seconds, 0, _UINT32_MAX)
        cap = _int_in("max_metrics", max_metrics, 0, _UINT32_MAX)
        interval = _number(upload_interval_ms)

        cfg = _init_config(cdll.kplm_config_init_sized, KplmConfig())
        cfg.level = level_int
        cfg.upload_interval_ms = interval
        cfg.window_seconds = window
        cfg.max_metrics = cap
        cfg.export_timeout_ms = _number(export_timeout_ms)
        cfg.granularity = granularity_int
        cfg.kpl_level_filter = 1 if kpl_level_filter else 0
        cfg.metric_namespace = namespace_bytes

        core = _Core(cdll)
        clock_cb: Optional[ClockCallback] = None
        if clock is not None:
            clock_cb = clock if isinstance(clock, ClockCallback) else ClockCallback(clock)
            clock_cb._owner = weakref.ref(core)
            clock_cb.apply(cfg)
            core.keepalive.append(clock_cb.c_function)
            core.keepalive.append(clock_cb)

        out = ManagerPointer()
        status = cdll.kplm_new(ctypes.byref(cfg), ctypes.byref(out))
        del namespace_bytes
        _check(status, "kplm_new")
        core.ptr = out
        core.rollup = granularity_int != Granularity.NONE
        self._core = core
        self._final: Optional[Tuple[Optional[BaseException], int, int]] = None
        try:
            self._level = Level(level_int)
        except ValueError:  # pragma: no cover - kplm_new refuses unknown levels
            self._level = level_int
        try:
            self._granularity = Granularity(granularity_int)
        except ValueError:  # pragma: no cover - kplm_new refuses unknown granularities
            self._granularity = granularity_int
        self._kpl_level_filter = bool(kpl_level_filter)
        self._extra_dimensions: list = []
        self._window_seconds = window
        self._upload_interval_ms = interval
        self._max_metrics = cap
        self._clock = clock_cb
        try:
            for name, value, extra_granularity in extras:
                self.add_dimension(name, value, extra_granularity)
            if sink is not None:
                self.set_sink(sink)
        except BaseException:
            self._core = None
            core.release()
            raise

    # -- configuration / state -------------------------------------------
    @property
    def level(self) -> Level:
        return self._level

    @property
    def granularity(self) -> Granularity:
        """The KPL rollup granularity (:attr:`Granularity.NONE` = keys as recorded)."""
        return self._granularity

    @property
    def kpl_level_filter(self) -> bool:
        """Whether only metrics whose KPL level is within :attr:`level` are shown."""
        return self._kpl_level_filter

    @property
    def extra_dimensions(self) -> Tuple[Tuple[str, str, Granularity], ...]:
        """The ``(name, value, granularity)`` added with :meth:`add_dimension`, in order."""
        return tuple(self._extra_dimensions)

    @property
    def namespace(self) -> str:
        """The namespace sinks publish under (``kplm_namespace``).

        :data:`DEFAULT_NAMESPACE` unless ``namespace`` was given. Raises
        :class:`ClosedError` once the manager is freed.
        """
        core = self._need_core()
        raw = core.call(core.lib.kplm_namespace)
        if raw is None:  # pragma: no cover - only for a NULL manager
            raise ClosedError(Status.ECLOSED, context="kplm_namespace returned NULL")
        return _decode(raw)

    @property
    def window_seconds(self) -> int:
        return self._window_seconds

    @property
    def upload_interval_ms(self) -> float:
        return self._upload_interval_ms

    @property
    def max_metrics(self) -> int:
        return self._max_metrics

    @property
    def clock(self) -> Optional[ClockCallback]:
        """The injected clock (``None`` = the library's monotonic clock)."""
        return self._clock

    @property
    def sink(self) -> Any:
        """The Python sink object (``None`` = the null sink)."""
        return self._core.sink if self._core is not None else None

    @property
    def state(self) -> str:
        """"new", "started", "closed" or "freed", as seen through this object."""
        return self._core.state if self._core is not None else "freed"

    @property
    def last_sink_error(self) -> Optional[BaseException]:
        """The last exception raised by a sink callback (export, open, record, close)."""
        return self._errors()[0]

    @property
    def sink_error_count(self) -> int:
        """How many sink callbacks raised an exception."""
        return self._errors()[1]

    @property
    def failed_exports(self) -> int:
        """How many exports failed because the Python sink's export raised."""
        return self._errors()[2]

    def _errors(self) -> Tuple[Optional[BaseException], int, int]:
        core = self._core
        if core is None:
            return getattr(self, "_final", None) or (None, 0, 0)
        return core.last_sink_error, core.sink_error_count, core.failed_exports

    def clear_sink_error(self) -> None:
        """Forget :attr:`last_sink_error`."""
        if self._core is not None:
            with self._core.error_lock:
                self._core.last_sink_error = None

    def _need_core(self) -> _Core:
        core = self._core
        if core is None:
            raise ClosedError(Status.ECLOSED, context="the manager has been freed")
        return core

    # -- C calls -----------------------------------------------------------
    def set_sink(self, sink: Any) -> None:
        """Replace the sink (``kplm_set_sink``); allowed only before :meth:`start`."""
        core = self._need_core()
        struct, entry = _build_sink(core, sink)
        status = core.call(core.lib.kplm_set_sink_sized, ctypes.byref(struct), *_SINK_SIZES)
        if status and isinstance(sink, BuiltinSink):
            sink._struct = struct   # not taken: the caller still owns it
        _check(status, "kplm_set_sink")
        # The earlier sink's callbacks stay in keepalive until free: cheap,
        # and it never matters whether the library still refers to them.
        if core.sink_entry is not None:
            core.keepalive.append(core.sink_entry)
        core.sink_entry = entry
        core.delivered = {} if entry is not None else None
        core.sink = sink
        core.sink_struct = struct

    def start(self) -> None:
        """Open the sink and start the periodic uploader (``kplm_start``)."""
        core = self._need_core()
        _check(core.call(core.lib.kplm_start), "kplm_start")
        core.started = True
        if core.state == "new":
            core.state = "started"

    def put(self, name: _StrLike, value: float = 1.0, stream: Optional[_StrLike] = None,
            shard_id: Optional[_StrLike] = None, error_code: Optional[_StrLike] = None) -> None:
        """Record one observation (``kplm_put``). Raises :class:`KplmError` subclasses."""
        n = _encode(name, "name")
        s = _encode(stream, "stream")
        sh = _encode(shard_id, "shard_id")
        e = _encode(error_code, "error_code")
        v = _number(value)
        core = self._core  # referenced until the call returns: kplm_free waits for it
        if core is None:
            raise ClosedError(Status.ECLOSED, context="the manager has been freed")
        status = core.lib.kplm_put(core.ptr, n, v, s, sh, e)
        if core.deferred:
            core.run_deferred()
        if status:
            raise KplmError.from_status(status, f"kplm_put({_short(name)})")

    def metric(self, name: _StrLike, stream: Optional[_StrLike] = None,
               shard_id: Optional[_StrLike] = None,
               error_code: Optional[_StrLike] = None) -> Metric:
        """Resolve a key once (``kplm_metric_get``) for repeated :meth:`Metric.put`."""
        n = _encode(name, "name")
        s = _encode(stream, "stream")
        sh = _encode(shard_id, "shard_id")
        e = _encode(error_code, "error_code")
        core = self._need_core()
        out = MetricPointer()
        status = core.call(core.lib.kplm_metric_get, n, s, sh, e, ctypes.byref(out))
        _check(status, f"kplm_metric_get({_short(name)})")
        key = MetricKey(_decode(n), _decode(s) or None, _decode(sh) or None,
                        _decode(e) or None).formed(self._level)
        return Metric(core, out, key)

    def add_dimension(self, name: _StrLike, value: _StrLike,
                      granularity: Union[Granularity, int, str]) -> None:
        """Add a dimension to every exported and reported line (``kplm_add_dimension``).

        The KPL's AdditionalMetricsDimension: :attr:`Granularity.GLOBAL`
        extras go on every line, ``STREAM`` extras on per-stream and
        per-shard lines, ``SHARD`` extras on per-shard lines (without a
        configured granularity they are inserted in the "stream", "shard",
        "error_code" list the same way). Allowed only before :meth:`start`
        (:class:`StateError` after). :class:`InvalidArgumentError` for an
        empty, over-long or invalid name or value, or granularity ``NONE``.
        """
        n = _encode(name, "name")
        v = _encode(value, "value")
        g = _granularity_int(granularity)
        core = self._need_core()
        status = core.call(core.lib.kplm_add_dimension, n, v, g)
        _check(status, f"kplm_add_dimension({_short(name)})")
        self._extra_dimensions.append((_decode(n), _decode(v), Granularity(g)))

    def query(self, name: _StrLike, stream: Optional[_StrLike] = None,
              shard_id: Optional[_StrLike] = None, error_code: Optional[_StrLike] = None,
              seconds: int = CUMULATIVE) -> Statistics:
        """Statistics of one key (``kplm_query``), formed as :meth:`put` would form it.

        Over the last ``seconds`` seconds (1 to :attr:`window_seconds`, the
        current second included) or, with :data:`CUMULATIVE` (the default),
        since the manager was created (the KPL's getMetrics). An unknown key,
        or level NONE, gives ``Statistics(0, 0.0, 0.0, 0.0)``. Raises
        :class:`InvalidArgumentError` for a bad name or dimension, or
        ``seconds`` beyond the window.
        """
        n = _encode(name, "name")
        s = _encode(stream, "stream")
        sh = _encode(shard_id, "shard_id")
        e = _encode(error_code, "error_code")
        secs = _int_in("seconds", seconds, 0, _UINT32_MAX)
        core = self._need_core()
        out = KplmStatistics()
        status = core.call(core.lib.kplm_query_sized, n, s, sh, e, secs, ctypes.byref(out), ctypes.sizeof(out))
        _check(status, f"kplm_query({_short(name)})")
        return Statistics.from_c(out)

    def query_name(self, name: _StrLike, seconds: int = CUMULATIVE) -> Statistics:
        """:meth:`query` for every key of one metric name, merged (``kplm_query_name``)."""
        n = _encode(name, "name")
        secs = _int_in("seconds", seconds, 0, _UINT32_MAX)
        core = self._need_core()
        out = KplmStatistics()
        status = core.call(core.lib.kplm_query_name_sized, n, secs, ctypes.byref(out), ctypes.sizeof(out))
        _check(status, f"kplm_query_name({_short(name)})")
        return Statistics.from_c(out)

    def snapshots(self) -> list:
        """Rolling-window :class:`Snapshot` of every metric with a live bucket, in export order."""
        core = self._need_core()
        result: list = []
        failure: list = []

        def visit(_ud: Any, snap: Any) -> int:
            _callback_enter(core)
            try:
                result.append(Snapshot.from_c(snap[0]))
                return 0
            except BaseException as exc:  # stop the walk, re-raise below
                failure.append(exc)
                return 1
            finally:
                _callback_leave()

        visitor = VISIT_FUNC(visit)  # referenced until the call returns
        status = core.call(core.lib.kplm_snapshots_sized, visitor, None, ctypes.sizeof(KplmSnapshot))
        del visitor
        if failure:
            raise failure[0]
        _check(status, "kplm_snapshots")
        return result

    def snapshot(self) -> dict:
        """``{MetricKey: (count, sum, min, max)}`` over the live window."""
        return {snap.key: snap.stats for snap in self.snapshots()}

    def flush(self) -> None:
        """Export everything not yet exported, now, on this thread (``kplm_flush``)."""
        core = self._need_core()
        _check(core.call(core.lib.kplm_flush), "kplm_flush")

    def close(self) -> None:
        """Refuse further puts, final flush, stop the uploader, close the sink (idempotent).

        Raises :class:`SinkError` if the final export failed or did not
        finish within ``export_timeout_ms`` (the manager is closed all the
        same; a later close retries a failed final export). After
        :meth:`free` this does nothing. From a sink callback of this manager
        it raises :class:`StateError`; but from a record or clock callback on
        the main thread (e.g. a signal handler that interrupted a put) the
        close is done right after the interrupted put returns. Safe from a
        signal handler: it takes no lock that a put holds.
        """
        core = self._core
        if core is None:
            return
        _check(core.close(), "kplm_close")

    def free(self) -> None:
        """Close if needed and release the manager (idempotent).

        Called from one of this manager's own sink callbacks it does nothing,
        like ``kplm_free`` (from a record or clock callback on the main thread,
        e.g. a signal handler that interrupted a put, the close is done right
        after that put returns). Afterwards every call raises
        :class:`ClosedError`. The C manager is released once no thread is
        inside a call and no :class:`Metric` handle refers to it; the sink
        stays alive until the library has run its close callback.
        """
        core = self._core
        if core is None:
            return
        kind = _callback_kind(core)
        if kind is not None and not (kind in _PUT_TIME_KINDS and _on_main_thread()):
            return
        self._final = (core.last_sink_error, core.sink_error_count, core.failed_exports)
        self._core = None
        core.release()

    # -- protocol ------------------------------------------------------------
    def __enter__(self) -> "Manager":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except KplmError as close_exc:  # do not mask the exception in flight
            logger.error("kplm close failed while handling %s: %s", exc_type.__name__, close_exc)

    def __del__(self) -> None:
        # Close now; the C manager itself is released when the core goes
        # (at once, unless Metric handles or calls in flight still refer to it).
        core = getattr(self, "_core", None)
        if core is None or _exiting or core.inherited:
            return
        self._core = None
        try:
            core.release()
        except Exception:  # pragma: no cover - best effort
            pass

    def __repr__(self) -> str:
        return f"<kplm.Manager level={self._level!r} state={self.state}>"


def _int_in(what: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value.__index__()) if not isinstance(value, int) else int(value)
    except (AttributeError, TypeError):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if not low <= number <= high:
        raise InvalidArgumentError(Status.EINVAL,
                                   context=f"{what}={number} does not fit the C field")
    return number


def _granularity_int(value: Any) -> int:
    """A :class:`Granularity`, its ``int`` or its (case-insensitive) name, as the C int.

    Out-of-range ints are passed on for the library to refuse.
    """
    if isinstance(value, str):
        try:
            value = Granularity[value.upper()]
        except KeyError:
            raise InvalidArgumentError(Status.EINVAL,
                                       context=f"unknown granularity {value!r}") from None
    return _int_in("granularity", value, _INT32_MIN, _INT32_MAX)


class BuiltinSink:
    """A sink implemented by the library (``kplm_sink_dogstatsd``, ``kplm_sink_emf``).

    Pass it as a :class:`Manager`'s ``sink``: the manager then owns it. One
    never handed to a manager is released by :meth:`release` (or when
    garbage-collected). A built-in sink serves one manager only.
    """

    def __init__(self, struct: KplmSink, kind: str) -> None:
        self._struct: Optional[KplmSink] = struct
        self.kind = kind

    def _take(self) -> KplmSink:
        if self._struct is None:
            raise StateError(Status.ESTATE, context=f"this {self.kind} sink was already given to a manager or released")
        struct, self._struct = self._struct, None
        return struct

    def release(self) -> None:
        """``kplm_sink_release``: free the sink if no manager took it."""
        if self._struct is not None:
            struct, self._struct = self._struct, None
            lib().kplm_sink_release(ctypes.byref(struct))

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# ---- DogStatsD sink (kplm_sink_dogstatsd) ----


class KplmDogStatsDConfig(ctypes.Structure):
    """``kplm_dogstatsd_config``. Initialise with ``kplm_dogstatsd_config_init``."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("host", ctypes.c_char_p),
        ("port", ctypes.c_uint16),
        ("prefix", ctypes.c_char_p),
        ("tags", ctypes.POINTER(ctypes.c_char_p)),
        ("tag_count", ctypes.c_size_t),
        ("max_datagram_bytes", ctypes.c_uint32),
    ]




def dogstatsd_sink(host: Optional[_StrLike] = "127.0.0.1", port: int = 8125, prefix: Optional[_StrLike] = None,
                   tags: Iterable[_StrLike] = (), max_datagram_bytes: int = 1432) -> BuiltinSink:
    """``kplm_sink_dogstatsd``: a sink sending each flush to a DogStatsD agent over UDP.

    Each snapshot becomes the lines ``<prefix.><name>.count:<count>|c``,
    ``.sum:<sum>|c``, ``.min:<min>|g`` and ``.max:<max>|g``, tagged with
    ``tags`` then one ``name:value`` tag per dimension, sanitized, packed
    into datagrams of at most ``max_datagram_bytes`` (64..65507). ``host``
    (``None`` = the default) is resolved when the manager starts. Pass the
    result as a :class:`Manager`'s ``sink``. Raises
    :class:`InvalidArgumentError` for a bad host, port 0, an empty tag or a
    datagram size out of range.
    """
    if isinstance(tags, (str, bytes, bytearray, memoryview)):
        raise TypeError("tags must be an iterable of strings, not a single string")
    host_bytes = _encode(host, "host")
    prefix_bytes = _encode(prefix, "prefix")
    tag_list = []
    for tag in tags:
        if tag is None:
            raise TypeError("a DogStatsD tag must be a string, not None")
        tag_list.append(_encode(tag, "tag"))
    port_int = _int_in("port", port, 0, 0xFFFF)
    size = _int_in("max_datagram_bytes", max_datagram_bytes, 0, _UINT32_MAX)

    cdll = lib()
    cfg = _init_config(cdll.kplm_dogstatsd_config_init_sized, KplmDogStatsDConfig())
    if host_bytes is not None:
        cfg.host = host_bytes
    cfg.port = port_int
    cfg.prefix = prefix_bytes
    # Referenced until kplm_sink_dogstatsd has returned (the library copies them).
    tag_array = (ctypes.c_char_p * len(tag_list))(*tag_list)
    cfg.tags = ctypes.cast(tag_array, ctypes.POINTER(ctypes.c_char_p)) if tag_list else None
    cfg.tag_count = len(tag_list)
    cfg.max_datagram_bytes = size
    out = KplmSink()
    status = cdll.kplm_sink_dogstatsd(ctypes.byref(cfg), ctypes.byref(out))
    del tag_array, host_bytes, prefix_bytes
    _check(status, "kplm_sink_dogstatsd")
    return BuiltinSink(out, "dogstatsd")


# ---- EMF sink (kplm_sink_emf) ----


class EmfDestination(enum.IntEnum):
    """``kplm_emf_destination``: where an EMF sink writes."""

    STDOUT = 0  #: JSON lines on standard output
    FILE = 1    #: JSON lines appended to a file
    TCP = 2     #: a CloudWatch agent over TCP, newline-delimited
    UDP = 3     #: a CloudWatch agent over UDP, one event per datagram


class KplmEmfConfig(ctypes.Structure):
    """``kplm_emf_config``. Initialise with ``kplm_emf_config_init`` (see :func:`emf_sink`)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("destination", ctypes.c_int),
        ("path", ctypes.c_char_p),
        ("host", ctypes.c_char_p),
        ("port", ctypes.c_uint16),
        ("cw_namespace", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_double),
    ]


def emf_sink(destination: Union[EmfDestination, int, str] = "stdout", path: Any = None,
             host: _StrLike = "127.0.0.1", port: int = 25888, namespace: Optional[_StrLike] = None,
             timeout_ms: float = 2000) -> BuiltinSink:
    """A CloudWatch Embedded Metric Format sink (``kplm_sink_emf``).

    ``destination`` is ``"stdout"``, ``"file"`` (``path`` required, appended
    to), ``"tcp"`` or ``"udp"`` (a CloudWatch agent at ``host``:``port``), or
    an :class:`EmfDestination`. ``namespace`` ``None`` uses the manager's.
    ``timeout_ms`` bounds connecting and sending over TCP. A snapshot
    ``<Name>`` becomes the metrics ``<Name>`` (sum), ``<Name>.Count``,
    ``<Name>.Min`` and ``<Name>.Max``. Pass the result as a
    :class:`Manager`'s ``sink``. Raises :class:`InvalidArgumentError` for a
    bad configuration.
    """
    if isinstance(destination, str):
        try:
            destination = EmfDestination[destination.upper()]
        except KeyError:
            raise InvalidArgumentError(Status.EINVAL,
                                       context=f"unknown EMF destination {destination!r}") from None
    cdll = lib()
    config = _init_config(cdll.kplm_emf_config_init_sized, KplmEmfConfig())
    config.destination = _int_in("destination", destination, _INT32_MIN, _INT32_MAX)
    # Referenced until kplm_sink_emf has returned (the library copies them).
    path_bytes = _encode(os.fspath(path), "path") if path is not None else None
    host_bytes = _encode(host, "host")
    namespace_bytes = _encode(namespace, "namespace")
    config.path = path_bytes
    config.host = host_bytes
    config.port = _int_in("port", port, 0, 0xFFFF)
    config.cw_namespace = namespace_bytes
    config.timeout_ms = _number(timeout_ms)
    struct = KplmSink()
    _check(cdll.kplm_sink_emf(ctypes.byref(config), ctypes.byref(struct)), "kplm_sink_emf")
    return BuiltinSink(struct, "emf")


# ---- Prometheus sink (kplm_sink_prometheus) ----


class KplmPrometheusConfig(ctypes.Structure):
    """``kplm_prometheus_config``. Initialise with ``kplm_prometheus_config_init``."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("address", ctypes.c_char_p),
        ("port", ctypes.c_uint16),
        ("prefix", ctypes.c_char_p),
    ]




def prometheus_sink(address: Optional[_StrLike] = "127.0.0.1", port: int = 9464,
                    prefix: Optional[_StrLike] = None) -> BuiltinSink:
    """``kplm_sink_prometheus``: a sink serving ``GET /metrics`` to Prometheus.

    From the manager's start to its close, a thread of the library listens
    on ``address``:``port`` (``None`` = ``"127.0.0.1"``). Each metric is a
    summary ``<prefix><name>`` in snake_case (``kplm_user_records_put``;
    KPL metrics in milliseconds are served in ``_seconds``, bytes get
    ``_bytes``) whose ``_count`` and ``_sum`` are totals since start, plus
    ``_min`` and ``_max`` gauges of the last flush that had the key;
    dimensions become labels. ``prefix`` ``None`` means ``"kplm_"``, ``""``
    none. Serves the text format 0.0.4, or OpenMetrics 1.0 when the Accept
    header asks for it. Pass the result as a :class:`Manager`'s ``sink``; a
    port already in use makes the manager's start raise :class:`SinkError`.
    Raises :class:`InvalidArgumentError` for a bad address or port 0.
    """
    address_bytes = _encode(address, "address")
    prefix_bytes = _encode(prefix, "prefix")
    port_int = _int_in("port", port, 0, 0xFFFF)

    cdll = lib()
    cfg = _init_config(cdll.kplm_prometheus_config_init_sized, KplmPrometheusConfig())
    # Referenced until kplm_sink_prometheus has returned (the library copies them).
    if address_bytes is not None:
        cfg.address = address_bytes
    if prefix_bytes is not None:
        cfg.prefix = prefix_bytes
    cfg.port = port_int
    out = KplmSink()
    status = cdll.kplm_sink_prometheus(ctypes.byref(cfg), ctypes.byref(out))
    del address_bytes, prefix_bytes
    _check(status, "kplm_sink_prometheus")
    return BuiltinSink(out, "prometheus")


# ---- OTLP sink (kplm_sink_otlp) ----


class KplmOtlpConfig(ctypes.Structure):
    """``kplm_otlp_config``. Initialise with ``kplm_otlp_config_init`` (see :func:`otlp_sink`)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("endpoint", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_double),
        ("max_retries", ctypes.c_uint32),
        ("service_name", ctypes.c_char_p),
        # Added after 1.0.
        ("headers", ctypes.POINTER(ctypes.c_char_p)),
        ("header_count", ctypes.c_size_t),
        ("compression", ctypes.c_uint32),
    ]


#: ``kplm_otlp_compression`` values by name (``None`` = the environment, else none).
OTLP_COMPRESSIONS = {None: 0, "none": 1, "gzip": 2}




def otlp_sink(endpoint: Optional[_StrLike] = None, timeout_ms: Optional[float] = None,
              max_retries: int = 3, service_name: Optional[_StrLike] = None,
              headers: Optional[Union["collections.abc.Mapping[str, str]", Iterable[_StrLike]]] = None,
              compression: Optional[str] = None) -> BuiltinSink:
    """``kplm_sink_otlp``: a sink POSTing each flush to an OpenTelemetry collector (OTLP/HTTP, protobuf).

    Each export is one ``ExportMetricsServiceRequest`` sent to ``endpoint``
    (``http(s)://host[:port]/path``; https needs libcurl at run time).
    Each key is a delta histogram data point with count, sum, min and max
    (one bucket, no bounds), its dimensions as attributes. 429, 502, 503,
    504 and connection errors are retried up to ``max_retries`` times,
    honouring Retry-After; the whole export ends within ``timeout_ms``. A
    failed export makes the flush raise :class:`SinkError` and the data is
    kept for the next one. ``service_name`` (``None`` = "kplm") is the
    resource attribute ``service.name``. ``headers`` are extra request
    headers: a mapping of name to value, or ``"Name: value"`` strings.
    ``compression`` is ``"gzip"`` or ``"none"``. ``endpoint``,
    ``timeout_ms`` and ``compression`` left at ``None`` come from the
    OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT / _TIMEOUT / _COMPRESSION
    environment variables, else http://127.0.0.1:4318/v1/metrics, 5000 ms
    and none; OTEL_EXPORTER_OTLP_(METRICS_)HEADERS add headers not named in
    ``headers``. Pass the result as a :class:`Manager`'s ``sink``. Raises
    :class:`InvalidArgumentError` for a bad endpoint, header, compression or
    environment variable, or a timeout that is not finite and > 0;
    :class:`SinkError` for https without libcurl or gzip without zlib.
    """
    import collections.abc

    if compression not in OTLP_COMPRESSIONS:
        raise InvalidArgumentError(Status.EINVAL,
                                   context=f"compression must be 'gzip', 'none' or None, got {compression!r}")
    if headers is None:
        header_lines: List[_StrLike] = []
    elif isinstance(headers, collections.abc.Mapping):
        header_lines = [f"{name}: {value}" for name, value in headers.items()]
    else:
        header_lines = list(headers)
    cdll = lib()
    config = _init_config(cdll.kplm_otlp_config_init_sized, KplmOtlpConfig())
    # Referenced until kplm_sink_otlp has returned (the library copies them).
    endpoint_bytes = _encode(endpoint, "endpoint")
    service_bytes = _encode(service_name, "service_name")
    header_bytes = [_encode(line, "header") for line in header_lines]
    header_array = (ctypes.c_char_p * max(1, len(header_bytes)))(*header_bytes)
    if endpoint_bytes is not None:
        config.endpoint = endpoint_bytes
    if service_bytes is not None:
        config.service_name = service_bytes
    if timeout_ms is not None:
        config.timeout_ms = _number(timeout_ms)
    config.max_retries = _int_in("max_retries", max_retries, 0, _UINT32_MAX)
    if header_bytes:
        config.headers = ctypes.cast(header_array, ctypes.POINTER(ctypes.c_char_p))
        config.header_count = len(header_bytes)
    config.compression = OTLP_COMPRESSIONS[compression]
    struct = KplmSink()
    status = cdll.kplm_sink_otlp(ctypes.byref(config), ctypes.byref(struct))
    del endpoint_bytes, service_bytes, header_bytes, header_array
    _check(status, "kplm_sink_otlp")
    return BuiltinSink(struct, "otlp")


# ---- CloudWatch sink (kplm_sink_cloudwatch) ----


class KplmCloudWatchConfig(ctypes.Structure):
    """``kplm_cloudwatch_config``. Initialise with ``kplm_cloudwatch_config_init`` (see :func:`cloudwatch_sink`)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("region", ctypes.c_char_p),
        ("endpoint", ctypes.c_char_p),
        ("cw_namespace", ctypes.c_char_p),
        ("access_key_id", ctypes.c_char_p),
        ("secret_access_key", ctypes.c_char_p),
        ("session_token", ctypes.c_char_p),
        ("profile", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_double),
        ("max_retries", ctypes.c_uint32),
    ]




def cloudwatch_sink(region: Optional[_StrLike] = None, endpoint: Optional[_StrLike] = None,
                    namespace: Optional[_StrLike] = None, access_key_id: Optional[_StrLike] = None,
                    secret_access_key: Optional[_StrLike] = None, session_token: Optional[_StrLike] = None,
                    profile: Optional[_StrLike] = None, timeout_ms: float = 10000,
                    max_retries: int = 5) -> BuiltinSink:
    """``kplm_sink_cloudwatch``: a sink sending each flush to Amazon CloudWatch (PutMetricData).

    Each key becomes one datum with a statistic set (SampleCount, Sum,
    Minimum, Maximum), cut into SigV4-signed AWS JSON 1.0 requests of at most
    1000 datums / 1 MB (as :func:`cloudwatch_requests`); bodies over 8 KiB are
    gzipped for https endpoints (not for a plain ``http://`` override). ``region`` (``None`` = AWS_REGION, AWS_DEFAULT_REGION, then the
    profile's region) and ``endpoint`` (``None`` = https://monitoring.REGION.amazonaws.com;
    ``http://`` is allowed for a local endpoint). ``namespace`` ``None`` = the
    manager's. Credentials: the keys given here; else (without ``profile``)
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; else the
    profile (``profile``, AWS_PROFILE or "default") of the shared credentials
    and config files, all looked up at every export; else the ECS/EKS
    container credentials endpoint or the EC2 instance metadata service
    (IMDSv2; AWS_EC2_METADATA_DISABLED=true skips it), whose temporary
    credentials are cached until 5 minutes before they expire. Throttling, 429, 5xx
    and connection errors are retried up to ``max_retries`` times with
    exponential backoff and jitter, each call within ``timeout_ms``. A failed
    export makes the flush raise :class:`SinkError` and keeps the data. Raises
    :class:`InvalidArgumentError` for a bad configuration (no region, a bad
    endpoint or namespace, half a key pair, a timeout that is not > 0).
    """
    cdll = lib()
    config = _init_config(cdll.kplm_cloudwatch_config_init_sized, KplmCloudWatchConfig())
    # Referenced until kplm_sink_cloudwatch has returned (the library copies them).
    keep = []
    for field, value in (("region", region), ("endpoint", endpoint), ("cw_namespace", namespace),
                         ("access_key_id", access_key_id), ("secret_access_key", secret_access_key),
                         ("session_token", session_token), ("profile", profile)):
        encoded = _encode(value, "namespace" if field == "cw_namespace" else field)
        if encoded is not None:
            keep.append(encoded)
            setattr(config, field, encoded)
    config.timeout_ms = _number(timeout_ms)
    config.max_retries = _int_in("max_retries", max_retries, 0, _UINT32_MAX)
    struct = KplmSink()
    status = cdll.kplm_sink_cloudwatch(ctypes.byref(config), ctypes.byref(struct))
    del keep
    _check(status, "kplm_sink_cloudwatch")
    return BuiltinSink(struct, "cloudwatch")


class InMemorySink:
    """A sink keeping every exported batch in memory (thread-safe).

    ``batches`` is a list of exported batches (each a list of
    :class:`Snapshot`). With ``record_events=True`` the sink is eventful and
    keeps every :class:`Event` in ``events``. ``opened``/``closed`` count the
    open/close calls.
    """

    def __init__(self, record_events: bool = False) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._batches: list = []
        self._events: list = []
        self.opened = 0
        self.closed = 0
        if record_events:
            self.record = self._record  # eventful only when asked: record costs a call per put

    def open(self) -> None:
        with self._lock:
            self.opened += 1

    def export(self, snapshots: Sequence[Snapshot]) -> None:
        with self._lock:
            self._batches.append(list(snapshots))
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self.closed += 1
            self._lock.notify_all()

    def _record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def batches(self) -> list:
        """A copy of the list of exported batches."""
        with self._lock:
            return [list(b) for b in self._batches]

    @property
    def events(self) -> list:
        """A copy of the recorded events (eventful sinks only)."""
        with self._lock:
            return list(self._events)

    @property
    def export_count(self) -> int:
        with self._lock:
            return len(self._batches)

    def snapshots(self) -> list:
        """Every exported snapshot, batches concatenated."""
        with self._lock:
            return [s for b in self._batches for s in b]

    def totals(self) -> dict:
        """``{MetricKey: (count, sum, min, max)}`` merged over every exported batch."""
        merged: dict = {}
        for snap in self.snapshots():
            key = snap.key
            prev = merged.get(key)
            if prev is None:
                merged[key] = snap.stats
            else:
                merged[key] = (prev[0] + snap.count, prev[1] + snap.sum,
                               min(prev[2], snap.min), max(prev[3], snap.max))
        return merged

    def wait_for_exports(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` batches were exported; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._batches) >= count, timeout)

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._events.clear()
