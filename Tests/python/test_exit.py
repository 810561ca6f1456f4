"""Interpreter exit with live managers: no hang, no crash, nothing lost.

Each scenario runs in a fresh interpreter (subprocess) that exits without
closing its manager; the parent checks the exit status, that it exited in
bounded time, and what the child printed from its sink.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import kplm

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_child(body: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    code = textwrap.dedent("""
        import sys, threading, time
        sys.path.insert(0, sys.argv[1])
        import kplm
    """) + textwrap.dedent(body)
    env = dict(os.environ, KPLM_LIBRARY=kplm.library_path())
    return subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "python")],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_exit_with_a_started_manager_flushes_and_exits():
    out = run_child("""
        class Sink:
            def export(self, snapshots):
                total = sum(s.count for s in snapshots)
                print("exported", total, flush=True)
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=Sink(), upload_interval_ms=3_600_000)
        m.start()
        for _ in range(1000):
            m.put("UserRecordsPut", stream="s")
        # no close: the interpreter exits with the manager live
    """)
    assert out.returncode == 0, out.stderr
    assert "exported 1000" in out.stdout, (out.stdout, out.stderr)


def test_exit_while_threads_put_and_the_uploader_runs():
    out = run_child("""
        exported = [0]
        lock = threading.Lock()
        class Sink:
            def export(self, snapshots):
                with lock:
                    exported[0] += sum(s.count for s in snapshots)
            def record(self, event):
                pass   # eventful: a Python callback inside every put
        m = kplm.Manager(level=kplm.Level.DETAILED, sink=Sink(), upload_interval_ms=5)
        m.start()
        def putter():
            try:
                while True:
                    m.put("UserRecordsPut", stream="s")
            except kplm.KplmError:
                pass   # closed (or freed) at exit: refused, never a crash
        for _ in range(3):
            threading.Thread(target=putter, daemon=True).start()
        time.sleep(0.3)
        print("exiting", flush=True)
    """)
    assert out.returncode == 0, out.stderr
    assert "exiting" in out.stdout
    assert "Fatal Python error" not in out.stderr


def test_exit_with_a_manager_never_started():
    out = run_child("""
        m = kplm.Manager(level=kplm.Level.SUMMARY)
        m.put("UserRecordsPut")
        print("done", flush=True)
    """)
    assert out.returncode == 0, out.stderr
    assert "done" in out.stdout
