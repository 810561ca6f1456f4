"""The C ABI of include/kplm.h as ctypes declarations: structs, callback types and function prototypes.

Nothing here loads the library: :func:`_declare` sets ``restype`` and
``argtypes`` on a loaded :class:`ctypes.CDLL` (see :mod:`kplm._library`).
The built-in sinks' config structs live here too (their prototypes need
them); :mod:`kplm.sinks` re-exports them. ``Tests/python/test_struct_layouts.py``
checks every struct of this module against the C compiler's layout.
"""

from __future__ import annotations

import ctypes
from typing import Any, Sequence, TypeVar

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


class KplmBucket(ctypes.Structure):
    """``kplm_bucket``: one bucket of a distribution (value, count)."""

    _fields_ = [("value", ctypes.c_double), ("count", ctypes.c_uint64)]


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
        ("buckets", ctypes.POINTER(KplmBucket)),
        ("bucket_count", ctypes.c_size_t),
        ("relative_accuracy", ctypes.c_double),
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
        ("kpl_distributions", ctypes.c_int),
    ]


class KplmStatistics(ctypes.Structure):
    """``kplm_statistics``: what ``kplm_query`` returns (all zero when empty)."""

    _fields_ = [
        ("count", ctypes.c_uint64),
        ("sum", ctypes.c_double),
        ("min", ctypes.c_double),
        ("max", ctypes.c_double),
    ]


# ---- Built-in sinks' configurations (kplm_sink_dogstatsd, _emf, _prometheus, _otlp, _cloudwatch) ----


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


class KplmPrometheusConfig(ctypes.Structure):
    """``kplm_prometheus_config``. Initialise with ``kplm_prometheus_config_init``."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("address", ctypes.c_char_p),
        ("port", ctypes.c_uint16),
        ("prefix", ctypes.c_char_p),
    ]


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
    # Since 1.1 (free-form dimensions): a 1.0 library stays usable without
    # them (kplm._dimensions.require_dimensions says what is missing).
    for name, argtypes in (
            ("kplm_put_dims", [pm, s, ctypes.c_double, ctypes.POINTER(KplmDimension), ctypes.c_size_t]),
            ("kplm_metric_get_dims", [pm, s, ctypes.POINTER(KplmDimension), ctypes.c_size_t,
                                      ctypes.POINTER(MetricPointer)]),
            ("kplm_query_dims_sized", [pm, s, ctypes.POINTER(KplmDimension), ctypes.c_size_t, ctypes.c_uint32,
                                       ctypes.POINTER(KplmStatistics), ctypes.c_size_t]),
            ("kplm_set_dimension_granularity", [pm, s, ctypes.c_int]),
            # Since 1.2 (distributions).
            ("kplm_set_distribution", [pm, s, ctypes.c_double]),
            ("kplm_query_quantile", [pm, s, ctypes.POINTER(KplmDimension), ctypes.c_size_t, ctypes.c_uint32,
                                     ctypes.c_double, ctypes.POINTER(ctypes.c_double)])):
        if hasattr(cdll, name):
            proto(name, st, argtypes)
    proto("kplm_metric_put", st, [MetricPointer, ctypes.c_double])
    proto("kplm_metric_put_many", st, [MetricPointer, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_double])
    proto("kplm_set_flush_hook", st, [pm, ctypes.c_void_p, ctypes.c_void_p])
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


_ConfigT = TypeVar("_ConfigT", bound=ctypes.Structure)


def _init_config(init_sized: Any, config: _ConfigT) -> _ConfigT:
    """``config`` filled by a ``kplm_*_config_init_sized`` function.

    The size passed is this module's layout of the struct: the library writes
    exactly that many bytes (fields this module does not know are never
    written, fields the library does not know are zero).
    """
    init_sized(ctypes.byref(config), ctypes.sizeof(config))
    return config

