"""The KPL metric catalogue, one table (Tests/kpl_catalogue.csv), against its copies.

The table lists every KPL metric once: its ``KPLM_METRIC_*`` macro, name,
unit and KPL level. Checked here: the header's macros (names, values, order,
and their ``/**< Unit, Level */`` comments), the Python constants
(``kplm.METRIC_*``, ``KPL_METRICS`` and the ``#: Unit, Level.`` comments of
constants.py) and ``kplm.metric_unit`` / ``kplm.metric_level``. The library's
answers (KPLMetrics.swift behind the C ABI) are also checked from C, by
Tests/c/test_kpl_catalogue.c, which CMake builds from the same table.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

import kplm
from conftest import HEADER, REPO_ROOT

TABLE = REPO_ROOT / "Tests" / "kpl_catalogue.csv"
CONSTANTS = Path(kplm.__file__).resolve().parent / "constants.py"
#: Metrics kplm keeps by itself: KPLM_METRIC_* macros that are not KPL metrics.
OWN_METRICS = {"KPLM_METRIC_REFUSED", "KPLM_METRIC_SINK_DROPPED"}


def load_table(path: Path = TABLE) -> list:
    """``[(macro, name, unit, level)]`` of the table, in its order."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.reader(lines))
    assert rows[0] == ["macro", "name", "unit", "level"], rows[0]
    for row in rows[1:]:
        assert len(row) == 4 and all(row), f"malformed row {row} in {path}"
    return [tuple(row) for row in rows[1:]]


@pytest.fixture(scope="module")
def table() -> list:
    rows = load_table()
    assert rows, "the catalogue is empty"
    for macro, name, unit, level in rows:
        assert macro.startswith("KPLM_METRIC_") and macro not in OWN_METRICS, macro
        assert unit in ("Count", "Bytes", "Milliseconds"), (name, unit)
        assert level in ("Summary", "Detailed"), (name, level)
    for column in range(2):
        values = [row[column] for row in rows]
        assert len(set(values)) == len(values), f"a duplicate in column {column}: {values}"
    return rows


def header_entries() -> list:
    """``[(macro, name, unit, level)]`` of every KPLM_METRIC_* define of kplm.h but kplm's own, in order.

    A define without a ``/**< Unit, Level */`` comment gets ``None`` for both.
    """
    found = []
    for macro, value, comment in re.findall(
            r'^\s*#define\s+(KPLM_METRIC_\w+)\s+"([^"]*)"[ \t]*(/\*\*<[^\n]*\*/)?', HEADER.read_text(), re.M):
        if macro in OWN_METRICS:
            continue
        match = re.fullmatch(r"/\*\*<\s*(\w+),\s*(\w+)\s*\*/", comment)
        found.append((macro, value) + (match.groups() if match else (None, None)))
    return found


def constants_comments() -> dict:
    """``{constant: "Unit, Level"}`` from the ``#: Unit, Level.`` comment above each METRIC_* of constants.py."""
    return {name: f"{unit}, {level}" for unit, level, name in re.findall(
        r"^#: (\w+), (\w+)\.\n(METRIC_\w+) = ", CONSTANTS.read_text(), re.M)}


def test_header_macros_match_the_table(table):
    assert header_entries() == table


def test_python_constants_match_the_table(table):
    for macro, name, _unit, _level in table:
        constant = macro[len("KPLM_"):]
        assert getattr(kplm, constant, None) == name, f"kplm.{constant}"
    assert kplm.KPL_METRICS == tuple(name for _m, name, _u, _l in table)
    declared = sorted(n for n in vars(kplm.constants) if n.startswith("METRIC_") and n != "METRIC_REFUSED")
    assert declared == sorted(macro[len("KPLM_"):] for macro, *_ in table)


def test_python_constant_comments_match_the_table(table):
    assert constants_comments() == {macro[len("KPLM_"):]: f"{unit}, {level}"
                                    for macro, _name, unit, level in table}


def test_library_unit_and_level_match_the_table(table):
    for _macro, name, unit, level in table:
        assert kplm.metric_unit(name) is kplm.Unit[unit.upper()], name
        assert kplm.unit_name(kplm.metric_unit(name)) == unit, name
        assert kplm.metric_level(name) is kplm.Level[level.upper()], name
        assert kplm.metric_unit(name.encode()) is kplm.Unit[unit.upper()], name  # bytes work too


def test_own_metrics_are_not_kpl_metrics(header_macros):
    for macro in OWN_METRICS:
        name = header_macros[macro]
        assert kplm.metric_unit(name) is kplm.Unit.NONE
        assert kplm.metric_level(name) is kplm.Level.DETAILED
