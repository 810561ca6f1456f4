"""Put buffers: observations a put leaves in Python, handed to the library in batches.

A ctypes call costs more than everything else a put does, so a put through
the library's own clock appends its value to its handle's buffer (an
``array('d')``) and returns; the buffer is handed to the library with one
``kplm_metric_put_many`` call, stamped with the second its values were put
in. It is handed over when:

- a put finds the buffer's slice over (at most :data:`SLICE_SECONDS`, never
  past the end of its second), so every value lands in the second it was
  put in;
- any flush starts (periodic, :meth:`Manager.flush`, close's final flush):
  the library calls the flush hook (``kplm_set_flush_hook``);
- a read (snapshots, query) or a close begins, and at interpreter exit.

Buffering is off (every put is one ctypes call) at level NONE, with an
injected clock and with an eventful sink (``record`` runs inside the put).

Thread-safety: appends rely on the GIL (one ``array.append`` is atomic);
hand-overs take :attr:`PutBuffers.lock` and call the library through
``PyDLL`` (the GIL stays held, so no append can move the array's memory
during the call), then delete the values handed over. A signal handler
that interrupts a hand-over on its own thread and asks for a close gets it
deferred until the hand-over is done (see :meth:`PutBuffers.busy_here`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from ._frames import _callback_stack
from .errors import Status

if TYPE_CHECKING:
    from ._lifecycle import _Core
    from .metric import Metric

logger = logging.getLogger("kplm")

#: Longest a buffer collects values before a put hands it over (seconds):
#: bounds its memory (a tight loop appends a few million values a second).
SLICE_SECONDS = 0.25

#: ``void (*hook)(void *user_data)`` for ``kplm_set_flush_hook``.
FLUSH_HOOK_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

_monotonic = time.monotonic


@functools.lru_cache(maxsize=None)
def put_many_function(path: str) -> Callable[..., int]:
    """``kplm_metric_put_many`` through ``PyDLL``: called with the GIL held."""
    from ._native import MetricPointer
    fn = ctypes.PyDLL(path).kplm_metric_put_many
    fn.argtypes = [MetricPointer, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_double]
    fn.restype = ctypes.c_int
    result: Callable[..., int] = fn
    return result


class PutBuffers:
    """The buffering handles of one manager, and how they are handed over.

    Owned by the manager's :class:`~kplm._lifecycle._Core` (``core.buffers``).
    """

    def __init__(self, core: _Core, put_many: Callable[..., int]) -> None:
        self._core_ref = weakref.ref(core)
        self._put_many = put_many
        #: Held by a hand-over; re-entrant so that :meth:`busy_here` can ask.
        self.lock = threading.RLock()
        #: Every handle that buffers (strong references while buffering is on;
        #: cleared when it stops, which breaks the handle → core cycle).
        self.metrics: List[Metric] = []
        #: False once the manager closes (or in a forked child): puts then go
        #: to the library one by one and get its answer.
        self.enabled = True
        #: Observations the library refused at a hand-over (a put that raced
        #: with close on another thread).
        self.refused = 0
        self.hook = FLUSH_HOOK_FUNC(self._on_flush)

    def busy_here(self) -> bool:
        """Whether this thread is inside a hand-over (a signal handler interrupted it)."""
        owned: bool = self.lock._is_owned()  # type: ignore[attr-defined]
        return owned

    def add(self, metric: Metric) -> None:
        """Start buffering the puts of ``metric``."""
        with self.lock:
            if self.enabled:
                self.metrics.append(metric)

    def rotate(self, metric: Metric) -> bool:
        """Hand over ``metric``'s buffer and open a new slice at the current second.

        Returns False (nothing opened) once buffering is off.
        """
        with self.lock:
            if not self.enabled:
                return False
            self._hand_over(metric)
            now = _monotonic()
            second = math.floor(now)
            metric._at = float(second)
            metric._end = min(second + 1.0, now + SLICE_SECONDS)
            return True

    def drain(self) -> None:
        """Hand over every buffer (before a read, a flush or a close)."""
        if self.busy_here():
            return   # a signal handler that interrupted a hand-over on this thread
        with self.lock:
            for metric in self.metrics:
                if metric._buf:
                    self._hand_over(metric)

    def stop(self) -> None:
        """Hand over everything and stop buffering (close, or an eventful sink).

        A put that raced with this on another thread and appended after it
        is handed over at the next :meth:`drain` of a later hand-over, or
        counted as refused by :meth:`discard`.
        """
        with self.lock:
            self.enabled = False
            for metric in self.metrics:
                metric._end = -math.inf
            for metric in self.metrics:
                if metric._buf:
                    self._hand_over(metric)

    def discard(self) -> None:
        """Forget every handle (after close): what a racing put left is refused."""
        with self.lock:
            self.enabled = False
            for metric in self.metrics:
                if metric._buf:
                    self._hand_over(metric)
            self.metrics = []
        if self.refused:
            logger.warning("kplm: %d observation(s) put while the manager was closing were "
                           "refused (not exported)", self.refused)
            self.refused = 0

    def forget_after_fork(self) -> None:
        """In a forked child: the parent hands its own values over; drop the copies."""
        self.lock = threading.RLock()
        self.enabled = False
        for metric in self.metrics:
            metric._end = -math.inf
            del metric._buf[:]
        self.metrics = []

    def _hand_over(self, metric: Metric) -> None:
        # Lock held. The GIL stays held through the PyDLL call, so no append
        # can reallocate the array meanwhile; values appended after it stay.
        buf = metric._buf
        n = len(buf)
        if not n:
            return
        address = buf.buffer_info()[0]
        status = self._put_many(metric._ptr, address, n, metric._at)
        del buf[:n]
        if status == Status.ECLOSED:
            self.refused += n

    def _on_flush(self, _user_data: Any) -> None:
        # The flush hook, on the flushing thread (the uploader's too). Never
        # raises into the library.
        stack = _callback_stack()
        depth = len(stack)
        try:
            core = self._core_ref()
            if core is None:
                return
            stack.append((self._core_ref, "flush_hook"))
            self.drain()
        except BaseException as exc:  # pragma: no cover - defensive
            core = self._core_ref()
            if core is not None:
                core.callback_raised("flush hook", exc)
        finally:
            del stack[depth:]
