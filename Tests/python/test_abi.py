"""The raw C ABI: version, status strings, defaults, NULL handling, struct layout."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kplm


def test_version_format_matches_header(header_macros):
    text = kplm.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", text), text
    expected = (header_macros["KPLM_VERSION_MAJOR"], header_macros["KPLM_VERSION_MINOR"],
                header_macros["KPLM_VERSION_PATCH"])
    assert kplm.version_info() == expected
    assert text == "%d.%d.%d" % expected


def test_binding_constants_match_header(header_macros):
    assert kplm.ABI_VERSION == (header_macros["KPLM_VERSION_MAJOR"],
                                header_macros["KPLM_VERSION_MINOR"],
                                header_macros["KPLM_VERSION_PATCH"])
    assert kplm.NAME_MAX == header_macros["KPLM_NAME_MAX"]
    assert kplm.DIMENSION_VALUE_MAX == header_macros["KPLM_DIMENSION_VALUE_MAX"]
    assert kplm.DIMENSIONS_MAX == header_macros["KPLM_DIMENSIONS_MAX"]
    assert kplm.WINDOW_SECONDS_MIN == header_macros["KPLM_WINDOW_SECONDS_MIN"]
    assert kplm.WINDOW_SECONDS_MAX == header_macros["KPLM_WINDOW_SECONDS_MAX"]
    assert kplm.METRIC_REFUSED == header_macros["KPLM_METRIC_REFUSED"]


def test_version_is_a_static_string(library):
    raw = library["kplm_version"]  # a fresh function object: prototypes of lib() untouched
    raw.restype = ctypes.c_void_p
    raw.argtypes = []
    assert raw() == raw() != 0


@pytest.mark.parametrize("status", list(kplm.Status))
def test_status_strings_name_each_status(status):
    text = kplm.status_string(status)
    assert text.startswith(f"KPLM_{status.name}"), text
    others = [s for s in kplm.Status if s is not status]
    assert all(not text.startswith(f"KPLM_{o.name}:") and text != f"KPLM_{o.name}"
               for o in others)


@pytest.mark.parametrize("raw", [-1, 7, 99, 2 ** 31 - 1])
def test_status_string_of_unknown_status_is_never_null(library, raw):
    text = library.kplm_status_string(raw)
    assert text is not None and len(text) > 0


def test_status_strings_are_distinct():
    texts = {kplm.status_string(s) for s in kplm.Status}
    assert len(texts) == len(kplm.Status)


# Struct layouts (every struct of kplm.h, the sink configs included, against the
# C compiler): test_struct_layouts.py.


def test_config_init_defaults():
    cfg = kplm.default_config()
    assert cfg.struct_size == ctypes.sizeof(kplm.KplmConfig)
    assert cfg.level == kplm.Level.NONE
    assert cfg.upload_interval_ms == 60000.0
    assert cfg.window_seconds == 60
    assert not cfg.clock
    assert cfg.max_metrics == 100000


#: Every *_config_init of the ABI; each must ignore NULL.
CONFIG_INITS = ["kplm_config_init", "kplm_dogstatsd_config_init", "kplm_emf_config_init",
                "kplm_prometheus_config_init", "kplm_otlp_config_init", "kplm_cloudwatch_config_init"]


def test_config_init_null_is_ignored():
    # In a child interpreter, so a NULL dereference is a failed test (exit by
    # SIGSEGV) rather than the end of the session. The exported kplm_config_init
    # is the pre-1.0 entry point (C code calls the macro: Tests/c/test_config.c).
    calls = "".join(f"lib.{name}(None); lib.{name}_sized(None, 0); lib.{name}_sized(None, 4096)\n"
                    for name in CONFIG_INITS)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import kplm; lib = kplm.load_library()\n"
            + calls + "print('survived', flush=True)\n")
    child = subprocess.run([sys.executable, "-c", code, str(Path(kplm.__file__).resolve().parents[1])],
                           env=dict(os.environ, KPLM_LIBRARY=kplm.library_path()),
                           capture_output=True, text=True, timeout=60)
    assert (child.returncode, child.stdout) == (0, "survived\n"), child.stderr
    cfg = kplm.default_config()  # and the library still fills a real struct
    assert cfg.struct_size == ctypes.sizeof(kplm.KplmConfig) and cfg.window_seconds == 60


def _new_raw(library, cfg):
    out = kplm.ManagerPointer()
    status = library.kplm_new(ctypes.byref(cfg) if cfg is not None else None, ctypes.byref(out))
    return status, out


def test_new_with_null_config_uses_defaults(library):
    status, out = _new_raw(library, None)
    assert status == kplm.Status.OK and out
    # defaults: level NONE, so snapshots are empty and a put is accepted
    assert library.kplm_put(out, b"x", 1.0, None, None, None) == kplm.Status.OK
    library.kplm_free(out)


def test_new_with_null_out_is_einval(library):
    cfg = kplm.default_config()
    assert library.kplm_new(ctypes.byref(cfg), None) == kplm.Status.EINVAL


@pytest.mark.parametrize("size", [4, ctypes.sizeof(kplm.KplmConfig) - 1, ctypes.sizeof(kplm.KplmConfig) + 4])
def test_new_with_unknown_struct_size_is_einval(library, size):
    cfg = kplm.default_config()
    cfg.struct_size = size
    out = kplm.ManagerPointer()
    assert library.kplm_new(ctypes.byref(cfg), ctypes.byref(out)) == kplm.Status.EINVAL
    assert not out


def test_new_failure_sets_out_to_null(library):
    cfg = kplm.default_config()
    cfg.window_seconds = 0
    out = ctypes.cast(ctypes.c_void_p(0x1234), kplm.ManagerPointer)  # garbage to overwrite
    assert out
    assert library.kplm_new(ctypes.byref(cfg), ctypes.byref(out)) == kplm.Status.EINVAL
    assert not out


def test_null_manager_is_einval_everywhere(library):
    E = kplm.Status.EINVAL
    sink = kplm.KplmSink()
    keep = kplm.EXPORT_FUNC(lambda ud, s, n: 0)
    sink.export_snapshots = keep
    visit = kplm.VISIT_FUNC(lambda ud, s: 0)
    out = kplm.MetricPointer()
    assert library.kplm_set_sink(None, ctypes.byref(sink)) == E
    assert library.kplm_start(None) == E
    assert library.kplm_put(None, b"x", 1.0, None, None, None) == E
    assert library.kplm_metric_get(None, b"x", None, None, None, ctypes.byref(out)) == E
    assert library.kplm_metric_put(None, 1.0) == E
    assert library.kplm_snapshots(None, visit, None) == E
    assert library.kplm_flush(None) == E
    assert library.kplm_close(None) == E
    library.kplm_free(None)


@pytest.fixture
def raw_manager(library):
    cfg = kplm.default_config()
    cfg.level = kplm.Level.DETAILED
    cfg.upload_interval_ms = 3_600_000.0
    out = kplm.ManagerPointer()
    assert library.kplm_new(ctypes.byref(cfg), ctypes.byref(out)) == kplm.Status.OK
    yield out
    library.kplm_free(out)


def test_null_arguments_on_a_live_manager(library, raw_manager):
    E = kplm.Status.EINVAL
    m = raw_manager
    assert library.kplm_set_sink(m, None) == E
    assert library.kplm_snapshots(m, kplm.VISIT_FUNC(), None) == E
    assert library.kplm_put(m, None, 1.0, None, None, None) == E
    out = kplm.MetricPointer()
    assert library.kplm_metric_get(m, None, None, None, None, ctypes.byref(out)) == E
    assert not out
    assert library.kplm_metric_get(m, b"x", None, None, None, None) == E


def test_sink_without_export_is_einval(library, raw_manager):
    sink = kplm.KplmSink()  # every callback NULL
    opener = kplm.OPEN_FUNC(lambda ud: 0)
    sink.open = opener
    assert library.kplm_set_sink(raw_manager, ctypes.byref(sink)) == kplm.Status.EINVAL


def test_snapshots_visit_stops_early_with_ok(library, raw_manager):
    for name in (b"a", b"b", b"c"):
        assert library.kplm_put(raw_manager, name, 1.0, None, None, None) == 0
    seen = []

    def visit(_ud, snap):
        seen.append(snap[0].name)
        return 1  # stop after the first

    cb = kplm.VISIT_FUNC(visit)
    assert library.kplm_snapshots(raw_manager, cb, None) == kplm.Status.OK
    assert seen == [b"a"]


def test_snapshots_visit_receives_user_data(library, raw_manager):
    assert library.kplm_put(raw_manager, b"a", 1.0, None, None, None) == 0
    marker = ctypes.c_int(0)
    got = []

    def visit(ud, _snap):
        got.append(ud)
        return 0

    cb = kplm.VISIT_FUNC(visit)
    assert library.kplm_snapshots(raw_manager, cb, ctypes.addressof(marker)) == 0
    assert got == [ctypes.addressof(marker)]


def test_callback_sink_user_data_is_passed_back(library, raw_manager):
    marker = ctypes.c_int(0)
    seen = {}

    def export(ud, snaps, n):
        seen.setdefault("export", []).append((ud, n, snaps[0].name))
        return 0

    def open_(ud):
        seen["open"] = ud
        return 0

    def close(ud):
        seen["close"] = ud

    callbacks = (kplm.EXPORT_FUNC(export), kplm.OPEN_FUNC(open_), kplm.CLOSE_FUNC(close))
    sink = kplm.KplmSink(ctypes.addressof(marker), callbacks[1], callbacks[0],
                         kplm.RECORD_FUNC(), callbacks[2])
    assert library.kplm_set_sink(raw_manager, ctypes.byref(sink)) == 0
    del sink  # copied by set_sink
    assert library.kplm_start(raw_manager) == 0
    assert library.kplm_put(raw_manager, b"m", 2.0, None, None, None) == 0
    assert library.kplm_close(raw_manager) == 0
    addr = ctypes.addressof(marker)
    assert seen == {"open": addr, "export": [(addr, 1, b"m")], "close": addr}


def test_exported_config_init_writes_the_first_layout_only(library):
    # Binaries built before 1.0 call the symbol kplm_config_init with the
    # 48-byte layout of SPEC §2: nothing past it may be written.
    raw = library["kplm_config_init"]
    raw.restype = None
    raw.argtypes = [ctypes.c_void_p]
    buf = (ctypes.c_ubyte * 256)(*([0xA5] * 256))
    raw(ctypes.addressof(buf))
    first = kplm.KplmConfig.export_timeout_ms.offset
    assert first == 48
    assert bytes(buf[first:]) == b"\xa5" * (256 - first)
    cfg = kplm.KplmConfig.from_buffer_copy(bytes(buf[:ctypes.sizeof(kplm.KplmConfig)]))
    assert cfg.struct_size == first
    assert cfg.max_metrics == 100000 and cfg.window_seconds == 60


@pytest.mark.parametrize("size", [48, 72, 80, 200])
def test_sized_config_init_writes_exactly_size_bytes(library, size):
    # A later header's larger struct gets zeros where this library knows no field.
    raw = library["kplm_config_init_sized"]
    raw.restype = None
    raw.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    buf = (ctypes.c_ubyte * 256)(*([0xA5] * 256))
    raw(ctypes.addressof(buf), size)
    assert bytes(buf[size:]) == b"\xa5" * (256 - size)
    own = ctypes.sizeof(kplm.KplmConfig)
    if size > own:
        assert bytes(buf[own:size]) == b"\0" * (size - own)
    assert int.from_bytes(bytes(buf[:4]), "little") == size
