"""Manager: a kplm metrics manager (kplm_manager) as a context manager, and default_config."""

from __future__ import annotations

import ctypes
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from . import _lifecycle
from ._convert import _StrLike, _decode, _encode, _granularity_int, _int_in, _number, _short
from ._frames import _PUT_TIME_KINDS, _callback_enter, _callback_kind, _callback_leave, _on_main_thread
from ._buffer import PutBuffers, put_many_function
from ._dimensions import Dimensions, EncodedDimensions, encode_dimensions, require_dimensions
from ._features import require_symbol
from ._library import lib, library_path
from ._lifecycle import _build_sink, _Core
from ._native import (VISIT_FUNC, KplmConfig, KplmSnapshot, KplmStatistics, ManagerPointer,
                      MetricPointer, _init_config, _SINK_SIZES)
from .clocks import ClockCallback
from .constants import (CUMULATIVE, DEFAULT_EXPORT_TIMEOUT_MS, DEFAULT_MAX_METRICS,
                        DEFAULT_UPLOAD_INTERVAL_MS, DEFAULT_WINDOW_SECONDS, Granularity, Level,
                        _INT32_MAX, _INT32_MIN, _UINT32_MAX)
from .errors import ClosedError, KplmError, Status, _check
from .metric import Metric
from .model import MetricKey, Snapshot, Statistics
from .sinks import BuiltinSink

logger = logging.getLogger("kplm")

_monotonic = time.monotonic


def default_config() -> KplmConfig:
    """A :class:`KplmConfig` filled by ``kplm_config_init`` (a copy; fields known here)."""
    return _init_config(lib().kplm_config_init_sized, KplmConfig())


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
    :meth:`add_dimension` right after creation; ``distributions`` maps
    metric names to a relative accuracy, applied with
    :meth:`set_distribution` (:data:`KPL_DISTRIBUTIONS` is the KPL's list).

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
                                                  Union[Granularity, int, str]]] = (),
                 distributions: Optional[Mapping[_StrLike, float]] = None) -> None:
        self._core: Optional[_Core] = None
        cdll = lib()
        if isinstance(level, str):
            level = Level[level.upper()]
        level_int = _int_in("level", level, _INT32_MIN, _INT32_MAX)
        granularity_int = _granularity_int(granularity)
        # Referenced until kplm_new has returned (the library copies it).
        namespace_bytes = _encode(namespace, "namespace")
        extras: List[Tuple[Any, ...]] = [tuple(extra) for extra in extra_dimensions]
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
        #: Manager.put's handles, by the exact arguments they were put with
        #: (only while puts are buffered: see kplm._buffer).
        self._by_args: Dict[Tuple[Any, ...], Metric] = {}
        self._by_args_cap = cap + 1024
        if level_int != Level.NONE and clock is None:
            # The flush hook is installed by start(), if still buffering then.
            core.buffers = PutBuffers(core, put_many_function(library_path()))
        self._final: Optional[Tuple[Optional[BaseException], int, int]] = None
        try:
            self._level = Level(level_int)
        except ValueError:  # pragma: no cover - kplm_new refuses unknown levels
            self._level = level_int  # type: ignore[assignment]
        try:
            self._granularity = Granularity(granularity_int)
        except ValueError:  # pragma: no cover - kplm_new refuses unknown granularities
            self._granularity = granularity_int  # type: ignore[assignment]
        self._kpl_level_filter = bool(kpl_level_filter)
        self._extra_dimensions: List[Tuple[str, str, Granularity]] = []
        self._window_seconds = window
        self._upload_interval_ms = interval
        self._max_metrics = cap
        self._clock = clock_cb
        try:
            for name, value, extra_granularity in extras:
                self.add_dimension(name, value, extra_granularity)
            for dist_name, accuracy in (distributions or {}).items():
                self.set_distribution(dist_name, accuracy)
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
        if core.buffers is not None and callable(getattr(sink, "record", None)):
            # An eventful sink: record runs inside each put, so no buffering.
            core.buffers.stop()
            core.buffers.discard()
            core.buffers = None
            self._by_args.clear()
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
        buffers = core.buffers
        if buffers is not None and buffers.hook not in core.keepalive:
            hook = ctypes.cast(buffers.hook, ctypes.c_void_p)
            _check(core.call(core.lib.kplm_set_flush_hook, hook, None), "kplm_set_flush_hook")
            core.keepalive.append(buffers.hook)
        _check(core.call(core.lib.kplm_start), "kplm_start")
        core.started = True
        if core.state == "new":
            core.state = "started"

    def put(self, name: _StrLike, value: float = 1.0, stream: Optional[_StrLike] = None,
            shard_id: Optional[_StrLike] = None, error_code: Optional[_StrLike] = None, *,
            dimensions: Optional[Dimensions] = None) -> None:
        """Record one observation (``kplm_put``). Raises :class:`KplmError` subclasses.

        Thread-safe. Arguments put before are found in a dictionary and the
        value appended to that key's buffer (see :class:`Metric`); the first
        put of each argument tuple goes through ``kplm_put``.

        ``dimensions``: free-form dimensions (``kplm_put_dims``), a mapping
        or (name, value) pairs in any order; the key is the name plus the
        set of pairs, ``stream``/``shard_id``/``error_code`` given too being
        the pairs "stream", "shard", "error_code". Up to 30 pairs, names
        unique (:class:`InvalidArgumentError` otherwise). Such a put goes to
        the library each time: for many puts of one key, hold a
        :meth:`metric`.
        """
        if dimensions is not None:
            self._put_with_dimensions(name, value, stream, shard_id, error_code, dimensions)
            return
        # Hot path (see Metric.put): these arguments were put before.
        try:
            handle = self._by_args.get((name, stream, shard_id, error_code))
            if handle is not None and value - value == 0.0 and _monotonic() < handle._end:
                handle._buf.append(value)
                return
        except TypeError:
            pass
        self._put_slow(name, value, stream, shard_id, error_code)

    def _put_slow(self, name: _StrLike, value: float, stream: Optional[_StrLike],
                  shard_id: Optional[_StrLike], error_code: Optional[_StrLike]) -> None:
        handle = self._handle_for(name, stream, shard_id, error_code)
        if handle is not None:
            handle._put_slow(value)
            return
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
        buffers = core.buffers
        if buffers is not None and buffers.enabled and len(self._by_args) < self._by_args_cap:
            # Accepted: later puts of these arguments take the hot path.
            try:
                args = (name, stream, shard_id, error_code)
                hash(args)
            except TypeError:
                return
            self._by_args[args] = self.metric(name, stream, shard_id, error_code)

    def _put_with_dimensions(self, name: _StrLike, value: float, stream: Optional[_StrLike],
                             shard_id: Optional[_StrLike], error_code: Optional[_StrLike],
                             dimensions: Dimensions) -> None:
        """:meth:`put` with ``dimensions``: arguments put before (the same
        pairs in the same order) take the buffered path of :meth:`put`;
        others go through ``kplm_put_dims``, then get a handle."""
        # One pass over `dimensions` (it may be an iterator).
        try:
            pairs = tuple(dimensions.items()) if isinstance(dimensions, Mapping) else tuple(dimensions)
        except TypeError:
            raise TypeError("dimensions must be a mapping or an iterable of (name, value) pairs") from None
        key: Tuple[Any, ...] = (name, pairs, stream, shard_id, error_code)
        args: Optional[Tuple[Any, ...]] = key
        try:
            handle = self._by_args.get(key)
        except TypeError:   # unhashable arguments: no cache
            args, handle = None, None
        if handle is not None:
            if value - value == 0.0 and _monotonic() < handle._end:
                handle._buf.append(value)
            else:
                handle._put_slow(value)
            return
        dims = encode_dimensions(pairs, stream, shard_id, error_code)
        n = _encode(name, "name")
        v = _number(value)
        core = self._need_core()
        require_dimensions(core.lib)
        status = core.call(core.lib.kplm_put_dims, n, v, dims.array, dims.count)
        _check(status, f"kplm_put_dims({_short(name)})")
        buffers = core.buffers
        if args is not None and buffers is not None and buffers.enabled and len(self._by_args) < self._by_args_cap:
            self._by_args[args] = self.metric(name, dimensions=pairs, stream=stream, shard_id=shard_id,
                                              error_code=error_code)

    def _handle_for(self, name: _StrLike, stream: Optional[_StrLike], shard_id: Optional[_StrLike],
                    error_code: Optional[_StrLike]) -> Optional[Metric]:
        try:
            return self._by_args.get((name, stream, shard_id, error_code))
        except TypeError:
            return None

    def metric(self, name: _StrLike, stream: Optional[_StrLike] = None,
               shard_id: Optional[_StrLike] = None,
               error_code: Optional[_StrLike] = None, *,
               dimensions: Optional[Dimensions] = None) -> Metric:
        """Resolve a key once (``kplm_metric_get``) for repeated :meth:`Metric.put`.

        With ``dimensions``, the key :meth:`put` forms from them
        (``kplm_metric_get_dims``).
        """
        if dimensions is not None:
            dims = encode_dimensions(dimensions, stream, shard_id, error_code)
            n = _encode(name, "name")
            core = self._need_core()
            require_dimensions(core.lib)
            out = MetricPointer()
            status = core.call(core.lib.kplm_metric_get_dims, n, dims.array, dims.count, ctypes.byref(out))
            _check(status, f"kplm_metric_get_dims({_short(name)})")
            return Metric(core, out, dims.key(n or b"", self._level))
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

    def set_dimension_granularity(self, name: _StrLike, granularity: Union[Granularity, int, str]) -> None:
        """Attach the free-form dimension ``name`` at ``granularity`` of the
        KPL's tree (``kplm_set_dimension_granularity``) instead of the global
        level: ``STREAM`` puts it on per-stream and per-shard lines only,
        ``SHARD`` on per-shard lines only. Only with a configured
        granularity; before :meth:`start` (:class:`StateError` after).
        :class:`InvalidArgumentError` for an empty, over-long or invalid
        name, or granularity ``NONE``.
        """
        n = _encode(name, "name")
        g = _granularity_int(granularity)
        core = self._need_core()
        require_dimensions(core.lib)
        status = core.call(core.lib.kplm_set_dimension_granularity, n, g)
        _check(status, f"kplm_set_dimension_granularity({_short(name)})")

    def set_distribution(self, name: _StrLike, relative_accuracy: float) -> None:
        """Make ``name`` a distribution metric (``kplm_set_distribution``):
        its observations also feed a distribution with relative accuracy
        ``relative_accuracy`` (0 < a <= 0.1), read by :meth:`query_quantile`.
        Before :meth:`start` and before the first put of that name
        (:class:`StateError` otherwise); :class:`InvalidArgumentError` for a
        bad name or accuracy.
        """
        n = _encode(name, "name")
        a = float(relative_accuracy)
        core = self._need_core()
        _require_distributions(core.lib)
        status = core.call(core.lib.kplm_set_distribution, n, a)
        _check(status, f"kplm_set_distribution({_short(name)})")

    def query_quantile(self, name: _StrLike, q: float, dimensions: Optional[Dimensions] = None,
                       seconds: int = CUMULATIVE) -> float:
        """The value at quantile ``q`` (0 to 1) of one key of a distribution
        metric (``kplm_query_quantile``), the key formed as :meth:`put` forms
        it from ``dimensions``: within ``a·|x|`` of the exact sample quantile
        ``x`` (rank ``floor(q·(n−1))`` of the sorted observations), over the
        last ``seconds`` seconds or, with :data:`CUMULATIVE` (the default),
        since the key was created. ``nan`` when there is no observation.
        :class:`InvalidArgumentError` for a bad name, dimension, ``q`` or
        ``seconds``, or a name that is not a distribution metric.
        """
        n = _encode(name, "name")
        dims = encode_dimensions(dimensions or {}, None, None, None)
        secs = _int_in("seconds", seconds, 0, _UINT32_MAX)
        core = self._need_core()
        _require_distributions(core.lib)
        self._drain(core)
        out = ctypes.c_double(float("nan"))
        status = core.call(core.lib.kplm_query_quantile, n, dims.array, dims.count, secs, float(q),
                           ctypes.byref(out))
        _check(status, f"kplm_query_quantile({_short(name)})")
        return out.value

    def query(self, name: _StrLike, stream: Optional[_StrLike] = None,
              shard_id: Optional[_StrLike] = None, error_code: Optional[_StrLike] = None,
              seconds: int = CUMULATIVE, *, dimensions: Optional[Dimensions] = None) -> Statistics:
        """Statistics of one key (``kplm_query``), formed as :meth:`put` would form it.

        Over the last ``seconds`` seconds (1 to :attr:`window_seconds`, the
        current second included) or, with :data:`CUMULATIVE` (the default),
        since the manager was created (the KPL's getMetrics). An unknown key,
        or level NONE, gives ``Statistics(0, 0.0, 0.0, 0.0)``. Raises
        :class:`InvalidArgumentError` for a bad name or dimension, or
        ``seconds`` beyond the window. With ``dimensions``, the key
        :meth:`put` forms from them (``kplm_query_dims``).
        """
        if dimensions is not None:
            return self._query_dims(name, encode_dimensions(dimensions, stream, shard_id, error_code), seconds)
        n = _encode(name, "name")
        s = _encode(stream, "stream")
        sh = _encode(shard_id, "shard_id")
        e = _encode(error_code, "error_code")
        secs = _int_in("seconds", seconds, 0, _UINT32_MAX)
        core = self._need_core()
        self._drain(core)
        out = KplmStatistics()
        status = core.call(core.lib.kplm_query_sized, n, s, sh, e, secs, ctypes.byref(out), ctypes.sizeof(out))
        _check(status, f"kplm_query({_short(name)})")
        return Statistics.from_c(out)

    def _query_dims(self, name: _StrLike, dims: EncodedDimensions, seconds: int) -> Statistics:
        n = _encode(name, "name")
        secs = _int_in("seconds", seconds, 0, _UINT32_MAX)
        core = self._need_core()
        require_dimensions(core.lib)
        self._drain(core)
        out = KplmStatistics()
        status = core.call(core.lib.kplm_query_dims_sized, n, dims.array, dims.count, secs, ctypes.byref(out),
                           ctypes.sizeof(out))
        _check(status, f"kplm_query_dims({_short(name)})")
        return Statistics.from_c(out)

    def query_name(self, name: _StrLike, seconds: int = CUMULATIVE) -> Statistics:
        """:meth:`query` for every key of one metric name, merged (``kplm_query_name``)."""
        n = _encode(name, "name")
        secs = _int_in("seconds", seconds, 0, _UINT32_MAX)
        core = self._need_core()
        self._drain(core)
        out = KplmStatistics()
        status = core.call(core.lib.kplm_query_name_sized, n, secs, ctypes.byref(out), ctypes.sizeof(out))
        _check(status, f"kplm_query_name({_short(name)})")
        return Statistics.from_c(out)

    def snapshots(self) -> List[Snapshot]:
        """Rolling-window :class:`Snapshot` of every metric with a live bucket, in export order."""
        core = self._need_core()
        self._drain(core)
        result: List[Snapshot] = []
        failure: List[BaseException] = []

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

    @staticmethod
    def _drain(core: _Core) -> None:
        """Hand buffered puts to the library before a read (see kplm._buffer)."""
        buffers = core.buffers
        if buffers is not None:
            buffers.drain()

    def snapshot(self) -> Dict[MetricKey, Tuple[int, float, float, float]]:
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
        if core is None or _lifecycle._exiting or core.inherited:
            return
        self._core = None
        try:
            core.release()
        except Exception:  # pragma: no cover - best effort
            pass

    def __repr__(self) -> str:
        return f"<kplm.Manager level={self._level!r} state={self.state}>"


def _require_distributions(native: Any) -> None:
    """Raise :class:`StateError` when the loaded library predates
    distributions (libkplm 1.2 added ``kplm_set_distribution``)."""
    require_symbol(native, "kplm_set_distribution", "distribution metrics", "1.2")