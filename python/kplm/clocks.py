"""Clocks: ClockCallback (a Python callable as the manager's C clock) and ManualClock (a settable clock for tests)."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._frames import _callback_stack, _on_main_thread
from ._native import CLOCK_FUNC, KplmConfig

if TYPE_CHECKING:
    from ._lifecycle import _Core

logger = logging.getLogger("kplm")


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
                stack.append((self._owner, "clock"))  # type: ignore[arg-type]  # not None: owner is
            value = float(self.func())
            self._last = value
            return value
        except BaseException as exc:  # never let it cross into C
            self.last_error = exc
            if owner is None and self._owner is not None:
                owner = self._owner()   # a signal handler raised before the try set it
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
