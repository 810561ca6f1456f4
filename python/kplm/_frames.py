"""Callback frames: which of a manager's callbacks (export, record, clock…) is running on this thread.

A close or free asked for from inside a callback is refused, or on the main
thread deferred (see :meth:`kplm._lifecycle._Core.defer`); these helpers tell
the binding where it is. Kept apart from :mod:`kplm._lifecycle` so that the
clock trampoline (:mod:`kplm.clocks`) can use them without an import cycle.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:
    from ._lifecycle import _Core

#: One running callback: (weak reference to its manager's core, kind).
_Frame = Tuple["weakref.ReferenceType[_Core]", str]

_tls = threading.local()

#: Callback kinds that run inside a put on the putting thread (record) or
#: inside any call on the calling thread (clock, the flush hook of
#: kplm._buffer). On the main thread a signal
#: handler may interrupt them; a close or free it asks for is deferred until
#: the interrupted call returns (see :meth:`_Core.defer`).
_PUT_TIME_KINDS = ("record", "clock", "flush_hook")


def _callback_enter(core: "_Core", kind: str = "callback") -> None:
    stack = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    stack.append((weakref.ref(core), kind))


def _callback_leave() -> None:
    _tls.stack.pop()


def _callback_stack() -> List[_Frame]:
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
                found: str = kind
                return found
    return None


def _in_callback_of(core: "_Core") -> bool:
    return _callback_kind(core) is not None


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()

