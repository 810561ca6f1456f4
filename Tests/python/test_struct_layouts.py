"""Every ctypes struct of the kplm package against the C compiler's layout of include/kplm.h.

A tiny C program, compiled at test time with the C compiler on PATH (``$CC``
if set, else ``cc``, ``gcc`` or ``clang``), prints ``sizeof`` of every
``typedef struct {...} kplm_*;`` of the header and ``offsetof``/``sizeof``
of each of its fields; each ctypes mirror must have the same size and the
same fields, in the same order, at the same offsets and sizes. The header's
field names are read from the header itself, so a field missing from (or
added to, renamed or moved in) a ctypes struct fails here.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import kplm

INCLUDE_DIR = Path(__file__).resolve().parents[2] / "include"
HEADER = INCLUDE_DIR / "kplm.h"

#: The C struct each ctypes struct of the package mirrors.
C_NAMES = {
    "KplmStatistics": "kplm_statistics",
    "KplmDimension": "kplm_dimension",
    "KplmSnapshot": "kplm_snapshot",
    "KplmBucket": "kplm_bucket",
    "KplmEvent": "kplm_event",
    "KplmSink": "kplm_sink",
    "KplmConfig": "kplm_config",
    "KplmDogStatsDConfig": "kplm_dogstatsd_config",
    "KplmEmfConfig": "kplm_emf_config",
    "KplmPrometheusConfig": "kplm_prometheus_config",
    "KplmOtlpConfig": "kplm_otlp_config",
    "KplmCloudWatchConfig": "kplm_cloudwatch_config",
}


def package_structs() -> dict:
    """``{class name: class}`` of every ctypes struct with fields declared in a module of the package."""
    found = {}
    for info in pkgutil.iter_modules(kplm.__path__, "kplm."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, (ctypes.Structure, ctypes.Union))
                    and value.__module__ == module.__name__ and "_fields_" in vars(value)):
                found[value.__name__] = value
    return found


def header_structs() -> dict:
    """``{C name: [field, ...]}`` of every ``typedef struct { ... } kplm_x;`` of kplm.h, fields in order."""
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    structs = {}
    for body, name in re.findall(r"typedef\s+struct\s*\{([^{}]*)\}\s*(kplm_\w+)\s*;", text):
        fields = []
        for decl in body.split(";"):
            decl = " ".join(line for line in decl.splitlines() if not line.strip().startswith("#")).strip()
            if not decl:
                continue
            pointer_to_function = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
            if pointer_to_function:
                fields.append(pointer_to_function.group(1))
                continue
            for declarator in decl.split(","):
                declarator = re.sub(r"\[[^\]]*\]", "", declarator)
                fields.append(re.findall(r"\w+", declarator)[-1])
        structs[name] = fields
    return structs


def find_compiler():
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate.split()[0]):
            return candidate.split()
    return None


@pytest.fixture(scope="module")
def c_layouts(tmp_path_factory):
    """``{C name: (sizeof, {field: (offsetof, sizeof)})}`` as the C compiler lays them out."""
    compiler = find_compiler()
    if compiler is None:
        pytest.skip("no C compiler on PATH (cc, gcc or clang; or $CC): cannot check the struct layouts")
    structs = header_structs()
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "kplm.h"', "int main(void) {"]
    for name, fields in structs.items():
        lines.append(f'    printf("S {name} %zu\\n", sizeof({name}));')
        for field in fields:
            lines.append(f'    printf("F {name} {field} %zu %zu\\n", offsetof({name}, {field}), '
                         f"sizeof((({name} *)0)->{field}));")
    lines += ["    return 0;", "}"]
    folder = tmp_path_factory.mktemp("layouts")
    source, program = folder / "layouts.c", folder / "layouts"
    source.write_text("\n".join(lines) + "\n")
    build = subprocess.run([*compiler, "-std=c11", "-I", str(INCLUDE_DIR), "-o", str(program), str(source)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, f"cannot compile the layout probe:\n{build.stderr}\n{source.read_text()}"
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, check=True)
    layouts: dict = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if parts[0] == "S":
            layouts[parts[1]] = (int(parts[2]), {})
        else:
            layouts[parts[1]][1][parts[2]] = (int(parts[3]), int(parts[4]))
    return layouts


def test_every_package_struct_has_a_c_counterpart():
    assert sorted(package_structs()) == sorted(C_NAMES), \
        "a ctypes struct of the package is not in C_NAMES (or one listed there is gone): add it"


def test_every_header_struct_is_mirrored():
    assert sorted(header_structs()) == sorted(C_NAMES.values())


@pytest.mark.parametrize("py_name", sorted(C_NAMES))
def test_struct_layout_matches_c(py_name, c_layouts):
    cls = package_structs()[py_name]
    c_name = C_NAMES[py_name]
    c_size, c_fields = c_layouts[c_name]
    py_fields = [field[0] for field in cls._fields_]
    print(f"{py_name} = {c_name}: sizeof {c_size}, fields {list(c_fields)}")
    assert py_fields == list(c_fields), f"{py_name}: fields {py_fields}, C {c_name} has {list(c_fields)}"
    for field in py_fields:
        descriptor = getattr(cls, field)
        assert (descriptor.offset, descriptor.size) == c_fields[field], \
            f"{py_name}.{field}: ctypes (offset, size) {(descriptor.offset, descriptor.size)}, C {c_fields[field]}"
    assert ctypes.sizeof(cls) == c_size, f"sizeof({py_name}) {ctypes.sizeof(cls)} != sizeof({c_name}) {c_size}"
