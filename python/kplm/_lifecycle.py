"""Manager lifetime (SPEC §9): the _Core shared by a Manager and its handles, the sink registry, Python sinks' trampolines, and the exit, fork and unraisable-exception hooks.

Importing this module installs the hooks: :func:`_close_all_at_exit` with
:mod:`atexit`, :func:`_after_fork_in_child` with :func:`os.register_at_fork`,
and :func:`_unraisable_hook` as :data:`sys.unraisablehook`.
"""

from __future__ import annotations

import atexit
import ctypes
import inspect
import logging
import os
import sys
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._buffer import PutBuffers
from ._convert import _decode
from ._frames import (_PUT_TIME_KINDS, _callback_kind, _callback_stack, _in_callback_of,
                      _on_main_thread, _tls)
from ._native import (CLOSE_FUNC, EXPORT_FUNC, OPEN_FUNC, RECORD_FUNC, VISIT_FUNC, KplmSink,
                      KplmSnapshot, KplmStatistics)
from .clocks import ClockCallback
from .constants import CUMULATIVE
from .errors import ClosedError, Status, _safe_status_string
from .model import Event, Snapshot
from .sinks import BuiltinSink

logger = logging.getLogger("kplm")

_live_cores: "weakref.WeakSet[_Core]" = weakref.WeakSet()

#: Sinks the library may still call although their manager was released (a
#: final export that outlived ``export_timeout_ms`` runs on, then the sink's
#: close callback runs). Keyed by ``id(entry)``; an entry is added when its
#: manager is released and removed by the sink's close trampoline, so a sink
#: object and its ctypes callbacks live until the library has run its close
#: callback, whatever the user drops and whenever the garbage collector runs.
#: Updated with single dict operations only (atomic under the GIL): no lock,
#: so a signal handler or a garbage collection can never deadlock on it.
_sink_registry: Dict[int, "_SinkEntry"] = {}

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
        self.keep: List[Any] = []
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
        self.keepalive: List[Any] = []  # the clock's ctypes callback, and replaced sinks' entries
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
        self.delivered: Optional[Dict[str, int]] = None
        #: The put buffers (kplm._buffer), None when puts go to the library one by one.
        self.buffers: Optional[PutBuffers] = None
        #: Checked after every C call; True while :attr:`pending` holds work.
        self.deferred = False
        self.pending: Dict[int, List[Any]] = {}    # thread ident -> [action, ...]
        _live_cores.add(self)

    # -- calls ---------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
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
        buffers = self.buffers
        if buffers is not None:
            if buffers.busy_here():
                # A signal handler interrupted a hand-over of this thread's put.
                if _on_main_thread():
                    self.defer("close")
                    return Status.OK
                return Status.ESTATE
            buffers.stop()   # everything put so far reaches the final flush
        status: int = self.lib.kplm_close(ptr)
        if buffers is not None and status != Status.ESTATE:
            buffers.discard()
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
        coarsest: Dict[str, List[int]] = {}
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
            buffers = core.buffers
            if buffers is not None and not buffers.busy_here():
                buffers.stop()
            status = core.lib.kplm_close(core.ptr)
            if buffers is not None and status != Status.ESTATE:
                buffers.discard()
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
        if core.buffers is not None:
            core.buffers.forget_after_fork()
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


def _is_async_callable(fn: Any) -> bool:
    """True for a coroutine function (``async def``, also behind a partial or a ``__call__``)."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return call is not None and not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def _refuse_async_sink(sink: Any) -> None:
    """TypeError for a sink whose export, open, close or record is a coroutine function (SPEC §7, no silent loss)."""
    for method in ("export", "open", "close", "record"):
        fn = getattr(sink, method, None)
        if fn is not None and _is_async_callable(fn):
            raise TypeError(
                f"{type(sink).__name__}.{method} is a coroutine function: kplm.Manager calls sink "
                "methods synchronously on its own threads and would never await it. Use "
                "kplm.aiokpl.metrics.MetricsManager (asyncio/trio), which awaits an async "
                "sink's export on your event loop")


def _awaitable_result(what: str, result: Any) -> None:
    """Raise TypeError if a sink callback returned an awaitable (it was never run: a failure, not a success)."""
    if result is None or not inspect.isawaitable(result):
        return
    close = getattr(result, "close", None)
    if callable(close):
        close()   # a coroutine never awaited: close it, no RuntimeWarning
    raise TypeError(f"the sink's {what} returned an awaitable ({type(result).__name__}); "
                    "kplm.Manager never awaits it: use kplm.aiokpl for async sinks")


def _callback_failed(core_ref: "weakref.ReferenceType[_Core]", what: str, exc: BaseException,
                     sink: Any) -> None:
    """A sink callback raised ``exc``: hand it to its manager (see :meth:`_Core.callback_raised`).

    The manager is looked up here, not taken from the trampoline's local: a
    signal handler may raise (``sys.exit``) on the very line that would have
    set that local, and its exception must not be dropped.
    """
    owner = core_ref()
    if owner is not None:
        owner.callback_raised(what, exc)
    else:
        logger.error("kplm sink %r: %s raised %s: %s", sink, what, type(exc).__name__, exc)


def _build_sink(core: _Core, sink: Any) -> Tuple[KplmSink, Optional[_SinkEntry]]:
    """Wrap a Python sink object into a kplm_sink with trampolines.

    A sink with a coroutine-function export, open, close or record is refused
    (TypeError pointing to kplm.aiokpl); an awaitable returned anyway by a
    callback is closed and counts as that callback failing (an export's data
    is kept for the next flush).
    """
    if isinstance(sink, BuiltinSink):
        return sink._take(), None
    export = getattr(sink, "export", None)
    if not callable(export):
        raise TypeError("a sink needs a callable export(snapshots) method")
    _refuse_async_sink(sink)
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
            _awaitable_result("export", export(batch))
            if owner is not None:
                owner.count_delivered(batch)
            return 0
        except BaseException as exc:
            _callback_failed(core_ref, "export", exc, sink)
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
                _awaitable_result("open", open_())
                return 0
            except BaseException as exc:
                _callback_failed(core_ref, "open", exc, sink)
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
                _awaitable_result("record", record(Event.from_c(event[0])))
            except BaseException as exc:
                _callback_failed(core_ref, "record", exc, sink)
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
                _awaitable_result("close", close())
        except BaseException as exc:
            _callback_failed(core_ref, "close", exc, sink)
        finally:
            del stack[depth:]
            owner = None
            entry.retire()

    close_trampoline._kplm_core = core_ref  # type: ignore[attr-defined]
    struct.close = CLOSE_FUNC(close_trampoline)
    entry.keep.append(struct.close)
    entry.keep.append(struct)
    return struct, entry
