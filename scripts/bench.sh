#!/usr/bin/env bash
# Builds libkplm.so (CMake, Release) and runs the benchmark: each figure as a
# ratio to a relaxed atomic add measured in the same run; the RSS of 1,000,000
# keys passing through max_metrics 100000 (benchmarks/key_churn_rss.c); kplm next
# to a naive C store from 1,000 to 1,000,000 keys (benchmarks/bench_scale.c,
# JSON: build/bench-scale.json); swift-metrics through KPLMMetrics next to
# swift-prometheus (KPLM_BENCH_SWIFT=0 skips it). Then the Python
# puts (benchmarks/bench_python.py) next to aiokpl 0.2.0 in the same process,
# from a venv (build/bench-venv) that gets aiokpl from PyPI; KPLM_BENCH_PYTHON=0
# skips that part.
#
#   scripts/bench.sh [--quick] [--json FILE]    (default JSON: build/bench.json)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
build_dir=${KPLM_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build_dir" --target kplm_bench kplm_bench_scale kplm_key_churn_rss kplm_key_bytes_worst \
    kplm_flush_alone kplm_window_roll > /dev/null
args=("$@")
[[ " ${args[*]:-} " == *" --json "* ]] || args+=(--json "$build_dir/bench.json")
"$build_dir/kplm_bench" "${args[@]}"
# kplm next to a naive one-mutex C store, 1,000 to 1,000,000 keys
# (benchmarks/bench_scale.c; --quick: up to 100,000).
scale_args=(--json "$build_dir/bench-scale.json")
[[ " ${args[*]} " == *" --quick "* ]] && scale_args+=(--quick)
"$build_dir/kplm_bench_scale" "${scale_args[@]}"
"$build_dir/kplm_key_churn_rss"   # RSS of 1M keys through max_metrics 100000
"$build_dir/kplm_key_bytes_worst"   # worst-case bytes per key
"$build_dir/kplm_flush_alone"   # a flush of 100,000 keys and snapshots, alone (for A/B runs)
"$build_dir/kplm_flush_alone" 100000 30 1 2   # the same, each key with two clean cells of other threads
"$build_dir/kplm_flush_alone" 100000 30 10 0 1   # ten live seconds, keys created in a random order
"$build_dir/kplm_window_roll"   # 100,000 keys whose full 60-second windows roll every second

# swift-metrics handlers through KPLMMetrics next to swift-prometheus 2.x
# (benchmarks/swift-metrics/main.swift); KPLM_BENCH_SWIFT=0 skips it.
if [[ ${KPLM_BENCH_SWIFT:-1} != 0 ]]; then
    swift build -c release --product kplm-metrics-bench > /dev/null
    metrics_args=(--json "$build_dir/bench-swift-metrics.json")
    [[ " ${args[*]} " == *" --quick "* ]] && metrics_args+=(--quick)
    "$(swift build -c release --show-bin-path)/kplm-metrics-bench" "${metrics_args[@]}"
fi

if [[ ${KPLM_BENCH_PYTHON:-1} != 0 ]]; then
    venv="$build_dir/bench-venv"
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q aiokpl==0.2.0 anyio
    fi
    rounds=7
    [[ " ${args[*]} " == *" --quick "* ]] && rounds=3
    KPLM_LIBRARY="$build_dir/libkplm.so" "$venv/bin/python" benchmarks/bench_python.py \
        --rounds "$rounds" --json "$build_dir/bench-python.json"
fi
