#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test kplm: CMake, Ninja,
# pkg-config and Prometheus (promtool and the server scrape the Prometheus
# sink in its tests), libssl-dev, zlib1g-dev and libcurl4-openssl-dev (the
# CloudWatch sink) from Debian; pytest, aws-embedded-metrics (the EMF
# sink's output is compared with AWS's serializer) and opentelemetry-proto
# (the OTLP sink's requests are decoded with it), boto3 and moto[server] (the
# CloudWatch sink's round trips run against a moto server) from PyPI. Safe to run again.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v promtool >/dev/null || missing+=(prometheus)
# abidw and abidiff: the 1.0 ABI baseline check (Tests/abi/abi.sh).
command -v abidiff >/dev/null || missing+=(abigail-tools)
# The CloudWatch sink (module KPLMSinks) links OpenSSL's libcrypto (SigV4), zlib (gzip) and
# libcurl (HTTPS), in both the SwiftPM and the CMake build.
pkg-config --exists libcrypto 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
pkg-config --exists libcurl 2>/dev/null || missing+=(libcurl4-openssl-dev)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    # The archive can be briefly missing a file: one retry.
    $sudo apt-get install -y -qq "${missing[@]}" || $sudo apt-get install -y -qq "${missing[@]}"
fi

python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
python3 -c 'import aws_embedded_metrics' 2>/dev/null || python3 -m pip install -q aws-embedded-metrics
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install -q opentelemetry-proto
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install -q boto3
# moto's server mode needs its [server] extra (flask, werkzeug): check for it.
{ command -v moto_server >/dev/null && python3 -c 'import moto, flask, flask_cors' 2>/dev/null; } \
    || python3 -m pip install -q 'moto[server]'
