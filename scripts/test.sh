#!/usr/bin/env bash
# Runs every test of kplm: the Swift XCTest suite (swift test), a Swift
# package outside the tree using kplm through swift-metrics, then the CMake
# build of libkplm.so with the C tests, the examples, the export check, the
# install + consumer check, the Python ctypes tests and the fuzz corpus replay,
# all under ctest; then the sanitizer stage and a bounded fuzzing run.
#
#   scripts/test.sh            # everything
#   KPLM_BUILD_DIR=dir scripts/test.sh   # CMake build folder (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${KPLM_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

# CMake, Ninja, pkg-config and pytest, if this machine lacks them.
scripts/bootstrap.sh

echo "== swift test (XCTest)"
swift test

echo "== SwiftPM product libkplm.so (static Swift runtime) and the demo"
swift build -c release --product kplm -Xswiftc -static-stdlib
lib=$(swift build -c release --show-bin-path)/libkplm.so
if ldd "$lib" | grep -q libswift; then
    echo "FAIL: $lib depends on the Swift runtime:"; ldd "$lib"; exit 1
fi
echo "ok: $lib has no libswift dependency"
sh cmake/check_needed.sh "$lib"   # only the C runtime: curl, crypto and zlib are dlopen'ed
swift run -c release kplm-demo --seconds 1 --interval-ms 400 --level summary > /dev/null
echo "ok: kplm-demo exported every observation it put"

echo "== a Swift package outside the tree, through swift-metrics only (KPLMMetrics)"
scripts/test_swift_consumer.sh
echo "== the example service (swift-metrics, ServiceLifecycle, Prometheus), scraped"
swift build -c release --product kplm-service-example
python3 scripts/check_service_example.py "$(swift build -c release --show-bin-path)/kplm-service-example"

echo "== cmake build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKPLM_FUZZ=ON
cmake --build "$build_dir" --parallel "$jobs"

echo "== ctest (C tests, examples, exports, install, Python)"
ctest --test-dir "$build_dir" --output-on-failure --timeout 300

# The pip package (scripts/test_package.sh): `pip install .` of a clean copy
# and `pip wheel .` in fresh venvs, run without Swift; KPLM_SKIP_PACKAGE=1 skips it.
if [[ ${KPLM_SKIP_PACKAGE:-0} != 1 ]]; then scripts/test_package.sh; fi

# TSan, ASan + leaks, valgrind (scripts/sanitize.sh); KPLM_SKIP_SANITIZERS=1 skips them.
if [[ ${KPLM_SKIP_SANITIZERS:-0} != 1 ]]; then scripts/sanitize.sh; fi

# libFuzzer on the C ABI and on the sink constructors (scripts/fuzz.sh,
# Tests/fuzz/): every committed input once, then a bounded coverage-guided run
# (KPLM_FUZZ_SECONDS for the C ABI, default 90, and a third of it for the
# sinks); KPLM_SKIP_FUZZ=1 skips it.
if [[ ${KPLM_SKIP_FUZZ:-0} != 1 ]]; then
    echo "== fuzz: replay of the committed corpora and findings"
    scripts/fuzz.sh --replay
    echo "== fuzz: ${KPLM_FUZZ_SECONDS:-90} s (+ a third for the sinks) of coverage-guided fuzzing"
    scripts/fuzz.sh "${KPLM_FUZZ_SECONDS:-90}"
fi
