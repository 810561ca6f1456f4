#!/usr/bin/env bash
# Builds libkplm.so (CMake, Release) and runs the benchmark: each figure as a
# ratio to a relaxed atomic add measured in the same run.
#
#   scripts/bench.sh [--quick] [--json FILE]    (default JSON: build/bench.json)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
build_dir=${KPLM_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build_dir" --target kplm_bench > /dev/null
args=("$@")
[[ " ${args[*]:-} " == *" --json "* ]] || args+=(--json "$build_dir/bench.json")
"$build_dir/kplm_bench" "${args[@]}"
