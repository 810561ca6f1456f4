"""Process lifecycle of the Python binding (SPEC §9): slow sinks, fork, signals, exit.

Every scenario runs in a fresh interpreter (a subprocess) with a timeout, so
a crash shows as a signal exit status and a hang as a timeout: both fail the
test. The child prints what it saw; the parent checks it.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import kplm

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = os.environ.get("KPLM_TEST_PYTHON_DIR", str(REPO_ROOT / "python"))

PRELUDE = """
import gc, os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import kplm
"""


def child_command(*parts: str) -> list:
    code = textwrap.dedent(PRELUDE) + "".join(textwrap.dedent(part) for part in parts)
    return [sys.executable, "-c", code, PYTHON_DIR]


def child_env() -> dict:
    return dict(os.environ, KPLM_LIBRARY=kplm.library_path())


def run_child(*parts: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(child_command(*parts), capture_output=True, text=True,
                              env=child_env(), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"child hung (no exit within {timeout} s); stdout: {exc.stdout!r} "
                    f"stderr: {exc.stderr!r}")


def run_children(bodies: list, timeout: float = 60.0, parallel: int = 5) -> list:
    """Run several children, ``parallel`` at a time; a child still running at its timeout is killed."""
    results = [None] * len(bodies)
    pending = list(enumerate(bodies))
    running: list = []
    while pending or running:
        while pending and len(running) < parallel:
            index, body = pending.pop(0)
            proc = subprocess.Popen(child_command(body), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=child_env())
            running.append((index, proc, time.monotonic()))
        index, proc, started = running.pop(0)
        try:
            out, err = proc.communicate(timeout=max(0.1, started + timeout - time.monotonic()))
            results[index] = (proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results[index] = ("hung", out, err)
    return results


def crashed(returncode) -> bool:
    return returncode == "hung" or (isinstance(returncode, int) and returncode < 0)


# ---------------------------------------------------------------------------
# A final export slower than export_timeout_ms, then the manager is dropped
# ---------------------------------------------------------------------------

SLOW_SINK = """
class SlowSink:
    def export(self, snapshots):
        print("export start", sum(s.count for s in snapshots), flush=True)
        time.sleep(2.0)
        print("export done", flush=True)
    def close(self):
        print("close ran", flush=True)
"""


@pytest.mark.parametrize("ending", ["with-block", "free", "close-free", "drop"])
def test_slow_final_export_then_drop_does_not_crash(ending):
    """The sink and its callbacks outlive the manager until the library has run close."""
    endings = {
        # leaving the block: close times out (SinkError), then the manager is dropped
        "with-block": """
            try:
                with kplm.Manager(level=kplm.Level.DETAILED, sink=SlowSink(),
                                  export_timeout_ms=500, upload_interval_ms=3_600_000) as m:
                    for _ in range(100):
                        m.put("UserRecordsPut", stream="s")
            except kplm.SinkError:
                print("close timed out", flush=True)
            del m
        """,
        "free": """
            m = kplm.Manager(level=kplm.Level.DETAILED, sink=SlowSink(),
                             export_timeout_ms=500, upload_interval_ms=3_600_000)
            m.start()
            for _ in range(100):
                m.put("UserRecordsPut", stream="s")
            m.free()
            print("close timed out", flush=True)
            del m
        """,
        "close-free": """
            m = kplm.Manager(level=kplm.Level.DETAILED, sink=SlowSink(),
                             export_timeout_ms=500, upload_interval_ms=3_600_000)
            m.start()
            for _ in range(100):
                m.put("UserRecordsPut", stream="s")
            try:
                m.close()
            except kplm.SinkError:
                print("close timed out", flush=True)
            m.free()
            del m
        """,
        "drop": """
            m = kplm.Manager(level=kplm.Level.DETAILED, sink=SlowSink(),
                             export_timeout_ms=500, upload_interval_ms=3_600_000)
            m.start()
            for _ in range(100):
                m.put("UserRecordsPut", stream="s")
            del m          # the garbage collector closes: the export times out
            print("close timed out", flush=True)
        """,
    }
    out = run_child(SLOW_SINK, endings[ending], """
        for _ in range(3):
            gc.collect()
            garbage = [bytearray(4096) for _ in range(2000)]   # reuse freed memory
            del garbage
            time.sleep(0.1)
        time.sleep(2.5)   # the export runs on, then close
        gc.collect()
        print("end", flush=True)
    """, timeout=60)
    assert not crashed(out.returncode), (out.returncode, out.stdout, out.stderr)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "close timed out" in lines, out.stdout
    assert "export start 100" in lines and "export done" in lines, out.stdout
    assert lines.count("close ran") == 1, out.stdout
    assert lines.index("export done") < lines.index("close ran") < lines.index("end"), out.stdout


def test_sink_referring_back_to_its_manager_is_still_collected_after_a_slow_close():
    out = run_child(SLOW_SINK, """
        import weakref
        class BackRef(SlowSink):
            manager = None
        sink = BackRef()
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, export_timeout_ms=300,
                         upload_interval_ms=3_600_000)
        sink.manager = m
        m.start()
        m.put("UserRecordsPut")
        alive = weakref.ref(sink)
        del m, sink
        gc.collect()
        time.sleep(2.5)
        gc.collect()
        print("sink alive after close:", alive() is not None, flush=True)
    """)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert "close ran" in out.stdout
    assert "sink alive after close: False" in out.stdout, out.stdout


# ---------------------------------------------------------------------------
# fork() while threads put
# ---------------------------------------------------------------------------

def test_fork_while_threads_put_children_exit_and_refuse_inherited_managers():
    out = run_child("""
        class Counting:
            def __init__(self):
                self.total = 0
                self.lock = threading.Lock()
            def export(self, snapshots):
                with self.lock:
                    self.total += sum(s.count for s in snapshots if s.name == "UserRecordsPut")
        sink = Counting()
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=20)
        m.start()
        handle = m.metric("UserRecordsPut", stream="h")
        stop = threading.Event()
        accepted = [0] * 4
        def putter(i):
            while not stop.is_set():
                m.put("UserRecordsPut", stream="s")
                accepted[i] += 1
        threads = [threading.Thread(target=putter, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        children = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                # the child: every call on the inherited manager is refused
                refused = 0
                calls = [lambda: m.put("UserRecordsPut"), lambda: handle.put(1), m.flush,
                         m.close, m.snapshots, lambda: m.query_name("UserRecordsPut")]
                for call in calls:
                    try:
                        call()
                    except kplm.KplmError:
                        refused += 1
                m.free()   # releases nothing, never blocks
                # a new manager works in the child
                fresh = kplm.InMemorySink()
                with kplm.Manager(level=kplm.Level.SUMMARY, sink=fresh) as n:
                    n.put("UserRecordsPut")
                ok = refused == len(calls) and fresh.totals()
                sys.exit(0 if ok else 3)   # a normal interpreter exit (atexit hooks run)
            children.append(pid)
            time.sleep(0.01)
        statuses = []
        deadline = time.monotonic() + 30
        for pid in children:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    statuses.append("hung")
                    break
                time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
        m.close()
        print("children", statuses, flush=True)
        print("parent accepted", sum(accepted), "exported", sink.total, flush=True)
    """, timeout=90)
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    match = re.search(r"children \[(.*)\]", out.stdout)
    assert match, out.stdout
    statuses = [s.strip() for s in match.group(1).split(",")]
    print("child exit statuses:", statuses)
    assert statuses == ["0"] * 20, out.stdout + out.stderr
    accepted, exported = map(int, re.search(r"parent accepted (\d+) exported (\d+)",
                                            out.stdout).groups())
    assert accepted > 0 and exported == accepted, out.stdout


# ---------------------------------------------------------------------------
# SIGTERM while the main thread puts
# ---------------------------------------------------------------------------

SIGNAL_BODY = """
import random
ACTION = {action!r}
class Sink:
    def __init__(self):
        self.total = 0
        self.lock = threading.Lock()
    def export(self, snapshots):
        with self.lock:
            self.total += sum(s.count for s in snapshots if s.name == "UserRecordsPut")
    def close(self):
        print("exported", self.total, flush=True)
{record}
sink = Sink()
m = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=10)
m.start()
def handler(signum, frame):
    if ACTION == "exit":
        sys.exit(0)
    elif ACTION == "close":
        m.close()
    else:
        m.free()
signal.signal(signal.SIGTERM, handler)
threading.Timer(random.uniform(0.05, 0.4), os.kill, (os.getpid(), signal.SIGTERM)).start()
accepted = 0
try:
    while True:
        try:
            m.put("UserRecordsPut", stream="s")
        except kplm.KplmError:
            break      # closed or freed by the handler
        accepted += 1
finally:
    print("accepted", accepted, flush=True)
"""

RECORD = """
    def record(self, event):
        pass   # eventful: the handler often runs inside this callback, inside the put
"""


@pytest.mark.parametrize("eventful", [False, True], ids=["plain", "eventful"])
@pytest.mark.parametrize("action", ["exit", "close", "free"])
def test_sigterm_handler_while_the_main_thread_puts(action, eventful):
    body = SIGNAL_BODY.format(action=action, record=RECORD if eventful else "")
    started = time.monotonic()
    results = run_children([body] * 15, timeout=60)
    print(f"15 runs of {action} ({'eventful' if eventful else 'plain'}) "
          f"in {time.monotonic() - started:.1f} s")
    failures = []
    for returncode, out, err in results:
        accepted = re.search(r"accepted (\d+)", out)
        exported = re.search(r"exported (\d+)", out)
        ok = (returncode == 0 and accepted and exported
              and 0 <= int(exported.group(1)) - int(accepted.group(1)) <= 1)
        if not ok:
            failures.append((returncode, out, err[-2000:]))
    assert not failures, f"{len(failures)} of 15 runs failed; first: {failures[0]!r}"


def test_asyncio_signal_handler_closes_from_the_loop():
    out = run_child("""
        import asyncio
        sink = kplm.InMemorySink()
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=50)
        m.start()
        async def main():
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)
            n = 0
            while not stop.is_set():
                m.put("UserRecordsPut")
                n += 1
                await asyncio.sleep(0)
            m.close()
            return n
        n = asyncio.run(main())
        exported = sum(s.count for s in sink.snapshots() if s.name == "UserRecordsPut")
        print("accepted", n, "exported", exported, flush=True)
    """)
    assert out.returncode == 0, out.stderr
    accepted, exported = re.search(r"accepted (\d+) exported (\d+)", out.stdout).groups()
    assert int(accepted) > 0 and accepted == exported


# ---------------------------------------------------------------------------
# Interpreter exit
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sink_kind", ["slow", "failing"])
def test_exit_with_an_undeliverable_final_export_warns_once_with_the_count(sink_kind):
    out = run_child("""
        class Slow:
            def export(self, snapshots):
                time.sleep(2.0)
        class Failing:
            def export(self, snapshots):
                raise RuntimeError("backend down")
        Sink = Slow if {kind!r} == "slow" else Failing
        a = kplm.Manager(level=kplm.Level.DETAILED, sink=Sink(), export_timeout_ms=300,
                         upload_interval_ms=3_600_000)
        b = kplm.Manager(level=kplm.Level.DETAILED, sink=Sink(), export_timeout_ms=300,
                         upload_interval_ms=3_600_000)
        a.start(); b.start()
        for _ in range(1000):
            a.put("UserRecordsPut", stream="s")
        for i in range(500):
            b.put("BufferingTime", i, stream="s", shard_id=str(i % 7))
        print("exiting", flush=True)
    """.replace("{kind!r}", repr(sink_kind)), timeout=60)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert "exiting" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if "not delivered" in line]
    print("warnings:", warnings)
    assert len(warnings) == 1, out.stderr
    assert "1500 observation(s) not delivered" in warnings[0], warnings


def test_exit_flushes_live_managers_without_a_warning():
    out = run_child("""
        class Sink:
            def export(self, snapshots):
                print("exported", sum(s.count for s in snapshots), flush=True)
            def close(self):
                print("closed", flush=True)
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=Sink(), upload_interval_ms=3_600_000)
        m.start()
        handle = m.metric("UserRecordsPut", stream="h")
        for _ in range(700):
            m.put("UserRecordsPut", stream="s")
        for _ in range(300):
            handle.put()
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["exported 1000", "closed"], out.stdout
    assert "not delivered" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_garbage_collected_manager_exports_and_closes_before_exit():
    out = run_child("""
        class Sink:
            def export(self, snapshots):
                print("exported", sum(s.count for s in snapshots), flush=True)
            def close(self):
                print("closed", flush=True)
        def work():
            m = kplm.Manager(level=kplm.Level.DETAILED, sink=Sink(), upload_interval_ms=3_600_000)
            m.start()
            for _ in range(250):
                m.put("UserRecordsPut")
        work()        # the manager is dropped on return
        gc.collect()
        print("after gc", flush=True)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["exported 250", "closed", "after gc"], out.stdout


def test_metric_handle_keeps_the_library_manager_until_it_is_dropped():
    out = run_child("""
        sink = kplm.InMemorySink()
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=sink)
        m.start()
        handle = m.metric("UserRecordsPut")
        handle.put()
        m.free()                  # closes; the handle keeps the C manager alive
        try:
            handle.put()
        except kplm.ClosedError:
            print("refused after free", flush=True)
        del handle
        gc.collect()
        print("closed", sink.closed, "exported", sink.totals(), flush=True)
    """)
    assert out.returncode == 0, out.stderr
    assert "refused after free" in out.stdout, out.stdout
    assert "closed 1" in out.stdout, out.stdout


def test_threads_putting_while_another_thread_frees_never_crash():
    out = run_child("""
        for round in range(30):
            sink = kplm.InMemorySink()
            m = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=5)
            m.start()
            handle = m.metric("UserRecordsPut", stream="h")
            accepted = [0] * 3
            def putter(i, m=m, handle=handle):
                try:
                    while True:
                        (m.put("UserRecordsPut", stream="s") if i else handle.put())
                        accepted[i] += 1
                except kplm.KplmError:
                    pass
            threads = [threading.Thread(target=putter, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.02)
            m.free()
            del m, handle
            for t in threads:
                t.join(10)
                assert not t.is_alive()
            gc.collect()
            exported = sum(s.count for s in sink.snapshots() if s.name == "UserRecordsPut")
            assert exported == sum(accepted), (exported, accepted)
        print("ok", flush=True)
    """, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    assert "ok" in out.stdout
