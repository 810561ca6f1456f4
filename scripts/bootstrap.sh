#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test kplm: CMake, Ninja,
# pkg-config, python3-venv (scripts/test_package.sh) and Prometheus
# (promtool and the server scrape the Prometheus sink in its tests), the
# run-time libraries libcurl, libcrypto and zlib (the CloudWatch and OTLP
# sinks' tests) and their -dev headers (test only: ctest c_shim_abi) from
# Debian; pytest, aws-embedded-metrics (the EMF
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
# python3 -m venv with pip (scripts/test_package.sh): Debian's python3 needs python3-venv.
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# libkplm links neither libcurl, libcrypto nor zlib: the CloudWatch and OTLP
# sinks open them with dlopen (libcurl.so.4, libcrypto.so.3, libz.so.1), so
# building needs none of them. Their tests need the run-time libraries (the
# package name changed in Debian 13: the first one apt knows is installed).
runtime=()
has_lib() { ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$1 "; }
has_lib libcurl.so.4 || runtime+=("libcurl4t64 libcurl4")
has_lib libcrypto.so.3 || runtime+=("libssl3t64 libssl3")
has_lib libz.so.1 || runtime+=("zlib1g")
# Test only: ctest c_shim_abi compares the shim's own declarations of their
# ABI (Sources/CKPLMCloudWatch/kplm_shim_abi.h) with the real headers.
[[ -f /usr/include/zlib.h ]] || missing+=(zlib1g-dev)
[[ -f /usr/include/openssl/evp.h ]] || missing+=(libssl-dev)
{ [[ -f /usr/include/curl/curl.h ]] || ls /usr/include/*/curl/curl.h >/dev/null 2>&1; } \
    || missing+=(libcurl4-openssl-dev)
if ((${#missing[@]} + ${#runtime[@]})); then
    if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    for choices in "${runtime[@]}"; do
        for package in $choices; do
            if apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [^(]'; then
                missing+=("$package")
                break
            fi
        done
    done
    # The archive can be briefly missing a file: one retry.
    $sudo apt-get install -y -qq "${missing[@]}" || $sudo apt-get install -y -qq "${missing[@]}"
fi

python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
python3 -c 'import mypy' 2>/dev/null || python3 -m pip install -q mypy   # ctest python_mypy
# kplm.aiokpl (tests/test_aiokpl_contract.py, ctest python_aiokpl): anyio with its
# from_thread token (4.11+) and trio for the second backend.
python3 -c 'import anyio.from_thread, inspect, trio, sys; sys.exit("token" not in inspect.signature(anyio.from_thread.run).parameters)' 2>/dev/null \
    || python3 -m pip install -q 'anyio>=4.11' 'trio>=0.26.1'
python3 -c 'import aws_embedded_metrics' 2>/dev/null || python3 -m pip install -q aws-embedded-metrics
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install -q opentelemetry-proto
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install -q boto3
# moto's server mode needs its [server] extra (flask, werkzeug): check for it.
{ command -v moto_server >/dev/null && python3 -c 'import moto, flask, flask_cors' 2>/dev/null; } \
    || python3 -m pip install -q 'moto[server]'
