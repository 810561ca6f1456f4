"""kplm.aiokpl's async contract (issue 11 part 2), under asyncio and trio (anyio's pytest plugin).

A raising export keeps its data for the next flush, merged; each observation
is exported exactly once across flushes; the sink's export runs on the
event loop's thread, and the loop keeps running while a flush waits; puts
racing with the exit on another thread never crash (in a subprocess).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

anyio = pytest.importorskip("anyio")
pytest.importorskip("trio")

from kplm.aiokpl.metrics import MetricsLevel, MetricsManager  # noqa: E402
from kplm.aiokpl.sinks import InMemorySink, MetricEvent, MetricSnapshot  # noqa: E402

pytestmark = pytest.mark.anyio

REPO_PYTHON = Path(__file__).resolve().parents[2] / "python"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


class FlakySink:
    """Records each export's thread; raises for the first ``failures`` exports."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches = []
        self.threads = []
        self.events = []

    async def export(self, snapshots):
        self.threads.append(threading.get_ident())
        await anyio.sleep(0)            # a real await on the running backend
        if self.failures:
            self.failures -= 1
            raise ConnectionError("sink down")
        self.batches.append(tuple(snapshots))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    def totals(self):
        out = {}
        for batch in self.batches:
            for s in batch:
                c, t = out.get((s.name, s.dimensions), (0, 0.0))
                out[(s.name, s.dimensions)] = (c + s.count, t + s.sum)
        return out


def manager(sink, **kw):
    # The upload loop never fires by itself: only explicit flushes and the exit's.
    return MetricsManager(level=MetricsLevel.DETAILED, sink=sink, sleep_fn=lambda _s: anyio.sleep_forever(), **kw)


async def test_raising_export_keeps_data_for_next_flush_merged():
    sink = FlakySink(failures=1)
    async with manager(sink) as m:
        m.put("A", 1.0, stream="s")
        with pytest.raises(ConnectionError):
            await m.flush()             # the user's exception, on the awaiting task
        assert sink.batches == []
        m.put("A", 2.0, stream="s")
        await m.flush()
        assert len(sink.batches) == 1
        (snap,) = sink.batches[0]
        assert isinstance(snap, MetricSnapshot)
        assert (snap.name, snap.count, snap.sum, snap.min, snap.max) == ("A", 2, 3.0, 1.0, 2.0)
        assert snap.dimensions == (("stream", "s"),)
    assert len(sink.batches) == 1       # nothing left for the final flush
    assert m.native.failed_exports == 1


async def test_each_observation_exported_exactly_once():
    sink = FlakySink()
    puts = 0
    async with manager(sink) as m:
        for round_ in range(5):
            for i in range(round_ + 1):
                m.put("N", float(i), shard_id=str(i % 2))
                puts += 1
            await m.flush()
            await m.flush()             # nothing new: no export
        m.put("N", 7.0, shard_id="0")   # left for the final flush at exit
        puts += 1
    assert len(sink.batches) == 6
    assert sum(s.count for b in sink.batches for s in b) == puts
    total = sum(c for c, _t in sink.totals().values())
    assert total == puts
    # The window still shows everything after the exit (snapshot is a window read).
    assert sum(v[0] for v in m.snapshot().values()) == puts


async def test_export_runs_on_the_event_loop_thread():
    loop_thread = threading.get_ident()
    sink = FlakySink()
    periodic = anyio.Event()

    async def sleep_once(seconds):
        if periodic.is_set():
            await anyio.sleep_forever()
        periodic.set()

    async with MetricsManager(level=MetricsLevel.SUMMARY, sink=sink, sleep_fn=sleep_once) as m:
        m.put("P")
        with anyio.fail_after(5):
            while not sink.batches:     # the periodic flush
                await anyio.sleep(0.01)
        m.put("Q")
        await m.flush()                 # an explicit flush
        m.put("R")
    # ... and the final flush at exit
    assert [s.name for b in sink.batches for s in b] == ["P", "Q", "R"]
    assert sink.threads and set(sink.threads) == {loop_thread}


async def test_loop_keeps_running_while_a_flush_waits():
    ticks = []

    class SlowSink(FlakySink):
        async def export(self, snapshots):
            await anyio.sleep(0.2)
            await super().export(snapshots)

    async def ticker():
        while True:
            ticks.append(1)
            await anyio.sleep(0.01)

    sink = SlowSink()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with manager(sink) as m:
            m.put("A")
            before = len(ticks)
            await m.flush()
            during = len(ticks) - before
        tg.cancel_scope.cancel()
    print(f"ticker ran {during} times during a 0.2 s export")
    assert during >= 3
    assert len(sink.batches) == 1


async def test_eventful_record_once_per_put_on_the_putting_thread():
    class Eventful(FlakySink):
        def record(self, event):
            self.events.append((threading.get_ident(), event))

    sink = Eventful()
    async with manager(sink) as m:
        m.put("X", 2.5, stream="s", shard_id="7")
        m.put("Y")
        worker = threading.Thread(target=m.put, args=("Z", 1.0))
        worker.start()
        worker.join()
    assert [e.name for _t, e in sink.events] == ["X", "Y", "Z"]
    first = sink.events[0][1]
    assert isinstance(first, MetricEvent)
    assert (first.value, first.dimensions) == (2.5, (("stream", "s"), ("shard", "7")))
    assert sink.events[0][0] == threading.get_ident() and sink.events[2][0] == worker.ident


async def test_upload_loop_uses_sleep_fn_and_no_native_uploader():
    slept = []
    done = anyio.Event()

    async def sleep_fn(seconds):
        slept.append(seconds)
        if len(slept) > 1:
            done.set()
            await anyio.sleep_forever()

    sink = InMemorySink()
    async with MetricsManager(level=MetricsLevel.DETAILED, sink=sink, upload_interval_ms=250,
                              sleep_fn=sleep_fn) as m:
        m.put("A")
        with anyio.fail_after(5):
            await done.wait()
        assert len(sink.exports) == 1    # the loop's flush, after the first sleep
        assert m.native.upload_interval_ms >= 1e9
    assert slept[0] == 0.25
    assert len(sink.exports) == 1        # exported once: nothing again at exit


async def test_refused_observations_do_not_raise():
    sink = InMemorySink()
    async with manager(sink) as m:
        m.put("A", float("nan"))
        m.put("", 1.0)
        m.put("A", 1.0)
    assert [(s.name, s.count) for s in sink.all_snapshots if s.name == "A"] == [("A", 1)]
    m.put("A", 1.0)                      # after exit: dropped, no exception


_RACE = textwrap.dedent("""
    import gc, sys, threading
    import anyio
    from kplm.aiokpl.metrics import MetricsLevel, MetricsManager
    from kplm.aiokpl.sinks import InMemorySink

    def putter(m, stop, puts, index):
        while not stop.is_set():
            m.put("R", 1.0, stream="s")
            puts[index] += 1

    async def one_round(round_):
        sink = InMemorySink()
        m = MetricsManager(level=MetricsLevel.DETAILED, sink=sink)
        stop = threading.Event()
        puts = [0, 0, 0]
        threads = [threading.Thread(target=putter, args=(m, stop, puts, i)) for i in range(3)]
        async with m:
            for t in threads:
                t.start()
            await anyio.sleep(0.01)
            if round_ % 2:
                await m.flush()
        # exited while the threads still put: later puts are dropped
        await anyio.sleep(0.005)
        if round_ % 3 == 0:
            m.native.free()     # released while the threads still put
            gc.collect()
            await anyio.sleep(0.005)
        stop.set()
        for t in threads:
            t.join()
        exported = sum(s.count for s in sink.all_snapshots)
        assert 0 < exported <= sum(puts), (exported, puts)

    async def main():
        for round_ in range(20):
            await one_round(round_)
        print("ok")

    anyio.run(main, backend=sys.argv[1])
""")


def test_put_racing_with_exit_and_free_never_crashes(anyio_backend):
    backend = anyio_backend
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_PYTHON),
                                                                    os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _RACE, backend], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"
