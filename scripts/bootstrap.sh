#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test kplm: CMake, Ninja,
# pkg-config (Debian packages) and pytest (PyPI). Safe to run again.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    # The archive can be briefly missing a file: one retry.
    $sudo apt-get install -y -qq "${missing[@]}" || $sudo apt-get install -y -qq "${missing[@]}"
fi

python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
