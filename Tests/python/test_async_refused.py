"""No silent loss in the sync API (issue 11 part 3).

kplm.Manager never awaits anything: a sink whose export, open, close or
record is a coroutine function is refused at construction with a TypeError
pointing to kplm.aiokpl, and an awaitable returned anyway by export is a
failed export (the data is kept for the next flush, no "never awaited"
warning), never a success.
"""

from __future__ import annotations

import functools
import gc
import warnings

import pytest

import kplm


class _Base:
    def export(self, snapshots):
        return None


class AsyncExport:
    async def export(self, snapshots):
        return None


class AsyncOpen(_Base):
    async def open(self):
        return None


class AsyncClose(_Base):
    async def close(self):
        return None


class AsyncRecord(_Base):
    async def record(self, event):
        return None


class _AsyncCallable:
    async def __call__(self, snapshots):
        return None


class CallableObjectExport:
    def __init__(self):
        self.export = _AsyncCallable()


class PartialExport:
    async def _export(self, snapshots, extra):
        return None

    def __init__(self):
        self.export = functools.partial(self._export, extra=1)


@pytest.mark.parametrize("sink_type", [AsyncExport, AsyncOpen, AsyncClose, AsyncRecord,
                                       CallableObjectExport, PartialExport])
def test_async_sink_refused_at_construction(sink_type):
    with pytest.raises(TypeError, match="kplm.aiokpl"):
        kplm.Manager(kplm.Level.DETAILED, sink=sink_type())


def test_async_sink_refused_by_set_sink():
    m = kplm.Manager(kplm.Level.DETAILED)
    with pytest.raises(TypeError, match="coroutine function"):
        m.set_sink(AsyncExport())
    m.free()


class SneakySink:
    """A sync export that returns a coroutine the first ``sneaky`` times."""

    def __init__(self, sneaky=1):
        self.sneaky = sneaky
        self.batches = []

    async def _really(self, snapshots):
        self.batches.append(list(snapshots))

    def export(self, snapshots):
        if self.sneaky:
            self.sneaky -= 1
            return self._really(snapshots)
        self.batches.append(list(snapshots))
        return None


def test_awaitable_returned_by_export_is_a_failed_export_and_data_is_kept():
    sink = SneakySink(sneaky=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with kplm.Manager(kplm.Level.DETAILED, sink=sink) as m:
            m.put("A", 1.0)
            with pytest.raises(kplm.SinkError):
                m.flush()
            assert sink.batches == []
            assert m.failed_exports == 1
            assert isinstance(m.last_sink_error, TypeError)
            assert "kplm.aiokpl" in str(m.last_sink_error)
            m.put("A", 2.0)
            m.flush()
        m.free()
        gc.collect()
    assert [(s.name, s.count, s.sum) for b in sink.batches for s in b] == [("A", 2, 3.0)]
    never_awaited = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert never_awaited == []


def test_sync_sink_still_accepted():
    sink = kplm.InMemorySink()
    with kplm.Manager(kplm.Level.DETAILED, sink=sink) as m:
        m.put("A")
    assert [s.name for s in sink.snapshots()] == ["A"]
