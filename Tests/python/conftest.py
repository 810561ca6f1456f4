"""Shared fixtures of the Python test suite of libkplm.

The binding (the package python/kplm/) is imported from the repository; it
finds the library through $KPLM_LIBRARY or the usual build folders. A missing library
fails the whole session with the binding's explanation instead of skipping.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "python"))

import kplm  # noqa: E402  (needs the sys.path entry above)

HEADER = REPO_ROOT / "include" / "kplm.h"


def pytest_report_header(config):
    try:
        return f"libkplm: {kplm.library_path()} (version {kplm.version()})"
    except kplm.LibraryNotFoundError as exc:
        return f"libkplm: NOT FOUND ({exc})"


@pytest.fixture(scope="session", autouse=True)
def library():
    """Load libkplm once; fail every test with a clear message if it cannot be loaded."""
    try:
        return kplm.load_library()
    except kplm.LibraryNotFoundError as exc:
        pytest.fail(f"cannot load libkplm: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def header_macros():
    """``{macro: value}`` of the simple ``#define NAME value`` lines of include/kplm.h."""
    macros = {}
    for match in re.finditer(r"^\s*#define\s+(KPLM_\w+)\s+(\S.*?)\s*$",
                             HEADER.read_text(), re.MULTILINE):
        name, value = match.groups()
        if value.endswith("\\"):
            continue
        if value.startswith('"'):
            macros[name] = value.strip('"')
        else:
            try:
                macros[name] = int(value, 0)
            except ValueError:
                macros[name] = value
    return macros


@pytest.fixture
def clock():
    """A manual clock starting at 1000.0 seconds."""
    return kplm.ManualClock(1000.0)


@pytest.fixture
def make_manager():
    """Factory of managers that are all freed at the end of the test.

    Defaults: DETAILED, no periodic upload during a test (1 h interval).
    """
    created = []

    def factory(**kwargs):
        kwargs.setdefault("level", kplm.Level.DETAILED)
        kwargs.setdefault("upload_interval_ms", 3_600_000.0)
        manager = kplm.Manager(**kwargs)
        created.append(manager)
        return manager

    yield factory
    for manager in created:
        manager.free()


def run_with_timeout(fn, timeout=10.0):
    """Run fn on a daemon thread; fail the test (instead of hanging) if it does not return."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"call did not return within {timeout} s (deadlock?)", pytrace=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class RecordingSink:
    """A sink recording every callback; export can be told to fail.

    ``calls`` lists callback names in order; ``attempts`` every batch handed to
    export (failed or not), ``batches`` only the accepted ones.
    """

    def __init__(self, fail=False, eventful=True):
        self.lock = threading.Lock()
        self.fail = fail
        self.calls = []
        self.attempts = []
        self.batches = []
        self.events = []
        if eventful:
            self.record = self._record

    def open(self):
        with self.lock:
            self.calls.append("open")

    def export(self, snapshots):
        with self.lock:
            self.calls.append("export")
            self.attempts.append(list(snapshots))
            if self.fail:
                raise RuntimeError("sink export failed on purpose")
            self.batches.append(list(snapshots))

    def _record(self, event):
        with self.lock:
            self.calls.append("record")
            self.events.append(event)

    def close(self):
        with self.lock:
            self.calls.append("close")

    def count(self, name):
        with self.lock:
            return self.calls.count(name)


@pytest.fixture
def recording_sink():
    return RecordingSink()


def stats_by_key(snapshots):
    """``{MetricKey: (count, sum, min, max)}`` of one batch (keys must be unique)."""
    result = {}
    for snap in snapshots:
        assert snap.key not in result, f"key {snap.key} twice in one batch"
        result[snap.key] = snap.stats
    return result
