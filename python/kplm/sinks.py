"""Sinks: the library's built-in sinks (BuiltinSink and its five factories), cloudwatch_requests, and InMemorySink.

The five factories share one path (:func:`_builtin_sink`): the config struct
initialised by its ``kplm_*_config_init_sized`` function, its fields set by
the factory, ``kplm_sink_*`` called, the result wrapped in a
:class:`BuiltinSink` that a :class:`~kplm.Manager` takes over. The config
structs themselves are declared in :mod:`kplm._native` (the prototypes need
them) and re-exported here.
"""

from __future__ import annotations

import collections.abc
import ctypes
import enum
import os
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union

from ._convert import _StrLike, _encode, _int_in, _number
from ._library import lib
from ._native import (CW_EMIT_FUNC, KplmCloudWatchConfig, KplmDimension, KplmDogStatsDConfig, KplmEmfConfig,
                      KplmOtlpConfig, KplmPrometheusConfig, KplmSink, KplmSnapshot, _ConfigT, _init_config)
from .constants import _INT32_MAX, _INT32_MIN, _UINT32_MAX
from .errors import InvalidArgumentError, KplmError, StateError, Status, _check
from .model import Event, MetricKey, Snapshot

__all__ = [
    "BuiltinSink", "InMemorySink", "cloudwatch_requests",
    "KplmDogStatsDConfig", "dogstatsd_sink",
    "KplmEmfConfig", "EmfDestination", "emf_sink",
    "KplmPrometheusConfig", "prometheus_sink",
    "KplmOtlpConfig", "OTLP_COMPRESSIONS", "otlp_sink",
    "KplmCloudWatchConfig", "cloudwatch_sink",
]


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


def _builtin_sink(kind: str, config_type: Type[_ConfigT], fill: Callable[[_ConfigT], object]) -> BuiltinSink:
    """A built-in sink: ``kplm_<kind>_config_init_sized``, then ``fill``, then ``kplm_sink_<kind>``.

    ``fill`` sets the fields of the initialised config and returns whatever
    the config points into (buffers, arrays): it stays referenced until
    ``kplm_sink_<kind>`` has returned (the library copies it). Raises the
    :class:`KplmError` of a refused configuration.
    """
    cdll = lib()
    config = _init_config(getattr(cdll, f"kplm_{kind}_config_init_sized"), config_type())
    keep = fill(config)
    struct = KplmSink()
    status = getattr(cdll, f"kplm_sink_{kind}")(ctypes.byref(config), ctypes.byref(struct))
    del keep
    _check(status, f"kplm_sink_{kind}")
    return BuiltinSink(struct, kind)


# ---- DogStatsD sink (kplm_sink_dogstatsd) ----


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
    tag_list: List[Optional[bytes]] = []
    for tag in tags:
        if tag is None:
            raise TypeError("a DogStatsD tag must be a string, not None")
        tag_list.append(_encode(tag, "tag"))
    port_int = _int_in("port", port, 0, 0xFFFF)
    size = _int_in("max_datagram_bytes", max_datagram_bytes, 0, _UINT32_MAX)

    def fill(cfg: KplmDogStatsDConfig) -> object:
        if host_bytes is not None:
            cfg.host = host_bytes
        cfg.port = port_int
        cfg.prefix = prefix_bytes
        tag_array = (ctypes.c_char_p * len(tag_list))(*tag_list)
        cfg.tags = ctypes.cast(tag_array, ctypes.POINTER(ctypes.c_char_p)) if tag_list else None
        cfg.tag_count = len(tag_list)
        cfg.max_datagram_bytes = size
        return (tag_array, host_bytes, prefix_bytes)

    return _builtin_sink("dogstatsd", KplmDogStatsDConfig, fill)


# ---- EMF sink (kplm_sink_emf) ----


class EmfDestination(enum.IntEnum):
    """``kplm_emf_destination``: where an EMF sink writes."""

    STDOUT = 0  #: JSON lines on standard output
    FILE = 1    #: JSON lines appended to a file
    TCP = 2     #: a CloudWatch agent over TCP, newline-delimited
    UDP = 3     #: a CloudWatch agent over UDP, one event per datagram


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
    destination_value: Union[EmfDestination, int] = destination

    def fill(config: KplmEmfConfig) -> object:
        config.destination = _int_in("destination", destination_value, _INT32_MIN, _INT32_MAX)
        path_bytes = _encode(os.fspath(path), "path") if path is not None else None
        host_bytes = _encode(host, "host")
        namespace_bytes = _encode(namespace, "namespace")
        config.path = path_bytes
        config.host = host_bytes
        config.port = _int_in("port", port, 0, 0xFFFF)
        config.cw_namespace = namespace_bytes
        config.timeout_ms = _number(timeout_ms)
        return (path_bytes, host_bytes, namespace_bytes)

    return _builtin_sink("emf", KplmEmfConfig, fill)


# ---- Prometheus sink (kplm_sink_prometheus) ----


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

    def fill(cfg: KplmPrometheusConfig) -> object:
        if address_bytes is not None:
            cfg.address = address_bytes
        if prefix_bytes is not None:
            cfg.prefix = prefix_bytes
        cfg.port = port_int
        return (address_bytes, prefix_bytes)

    return _builtin_sink("prometheus", KplmPrometheusConfig, fill)


# ---- OTLP sink (kplm_sink_otlp) ----


#: ``kplm_otlp_compression`` values by name (``None`` = the environment, else none).
OTLP_COMPRESSIONS: Dict[Optional[str], int] = {None: 0, "none": 1, "gzip": 2}


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
    if compression not in OTLP_COMPRESSIONS:
        raise InvalidArgumentError(Status.EINVAL,
                                   context=f"compression must be 'gzip', 'none' or None, got {compression!r}")
    header_lines: List[_StrLike]
    if headers is None:
        header_lines = []
    elif isinstance(headers, collections.abc.Mapping):
        header_lines = [f"{name}: {value}" for name, value in headers.items()]
    else:
        header_lines = list(headers)

    def fill(config: KplmOtlpConfig) -> object:
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
        return (endpoint_bytes, service_bytes, header_bytes, header_array)

    return _builtin_sink("otlp", KplmOtlpConfig, fill)


# ---- CloudWatch sink (kplm_sink_cloudwatch) ----


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
    def fill(config: KplmCloudWatchConfig) -> object:
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
        return keep

    return _builtin_sink("cloudwatch", KplmCloudWatchConfig, fill)


# ---- CloudWatch requests (kplm_cloudwatch_requests) ----


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


class InMemorySink:
    """A sink keeping every exported batch in memory (thread-safe).

    ``batches`` is a list of exported batches (each a list of
    :class:`Snapshot`). With ``record_events=True`` the sink is eventful and
    keeps every :class:`Event` in ``events``. ``opened``/``closed`` count the
    open/close calls.
    """

    def __init__(self, record_events: bool = False) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._batches: List[List[Snapshot]] = []
        self._events: List[Event] = []
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
    def batches(self) -> List[List[Snapshot]]:
        """A copy of the list of exported batches."""
        with self._lock:
            return [list(b) for b in self._batches]

    @property
    def events(self) -> List[Event]:
        """A copy of the recorded events (eventful sinks only)."""
        with self._lock:
            return list(self._events)

    @property
    def export_count(self) -> int:
        with self._lock:
            return len(self._batches)

    def snapshots(self) -> List[Snapshot]:
        """Every exported snapshot, batches concatenated."""
        with self._lock:
            return [s for b in self._batches for s in b]

    def totals(self) -> Dict[MetricKey, Tuple[int, float, float, float]]:
        """``{MetricKey: (count, sum, min, max)}`` merged over every exported batch."""
        merged: Dict[MetricKey, Tuple[int, float, float, float]] = {}
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
