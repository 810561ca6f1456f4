#!/usr/bin/env bash
# A Swift package outside this repository (Tests/swift-consumer, copied to a
# scratch folder) depends on kplm by path and records through the
# swift-metrics API only: its exported totals and dimensions must be exact.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/consumer"
cp -R Tests/swift-consumer/. "$work/consumer/"
# A path dependency is named after its folder: reach the checkout as "kplm".
ln -s "$root" "$work/kplm"
cd "$work/consumer"
export KPLM_PATH="$work/kplm"
swift build -c release -j 2 > build.log 2>&1 || { cat build.log; exit 1; }
.build/release/consumer
