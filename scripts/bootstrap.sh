#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test kplm: CMake, Ninja,
# pkg-config and Prometheus (promtool and the server scrape the Prometheus
# sink in its tests) from Debian; pytest, aws-embedded-metrics (the EMF
# sink's output is compared with AWS's serializer) and opentelemetry-proto
# (the OTLP sink's requests are decoded with it) from PyPI. Safe to run again.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    # The archive can be briefly missing a file: one retry.
    $sudo apt-get install -y -qq "${missing[@]}" || $sudo apt-get install -y -qq "${missing[@]}"
fi

python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
python3 -c 'import aws_embedded_metrics' 2>/dev/null || python3 -m pip install -q aws-embedded-metrics
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install -q opentelemetry-proto
