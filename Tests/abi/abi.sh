#!/bin/sh
# The frozen 1.0 ABI of libkplm.so, checked with abidiff (Debian's
# abigail-tools) against the committed baseline Tests/abi/libkplm-1.0.abi.
#
#   Tests/abi/abi.sh check  [header] [work-dir]   # fails on any change but added functions
#   Tests/abi/abi.sh update [header] [work-dir]   # rewrites the baseline (a new version)
#
# The ABI is read from a C stub built from the header (make_abi_stub.py: the
# library itself is Swift, whose DWARF libabigail cannot read), so it covers
# every function kplm.h declares with its prototype and every struct with its
# layout; cmake/check_exports.sh checks that libkplm.so exports exactly those
# functions. abidiff's verdict: functions added are fine; a removed or changed
# function, or a struct whose layout changed (even one that grew by the rules
# of kplm.h), fails. Growing a struct is a deliberate act: make the change,
# pass Tests/abi/test_abi.c, then update the baseline in the same commit.
set -eu
mode=${1:?usage: abi.sh check|update [header] [work-dir]}
here=$(cd "$(dirname "$0")" && pwd)
header=${2:-$here/../../include/kplm.h}
work=${3:-$(mktemp -d)}
baseline=$here/libkplm-1.0.abi
cc=${CC:-cc}

for tool in abidw abidiff python3 "$cc"; do
    command -v "$tool" >/dev/null || { echo "abi.sh: $tool not found (Debian: abigail-tools)"; exit 1; }
done
mkdir -p "$work"
python3 "$here/make_abi_stub.py" "$header" "$work/kplm_abi_stub.c"
# Compiled from inside the work folder: no machine's path in the ABI file.
(cd "$work" && "$cc" -g -O0 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC \
    -Wl,-soname,libkplm.so.1 -o libkplm.so.1 kplm_abi_stub.c)
abidw --no-corpus-path --no-comp-dir-path --no-show-locs \
    --out-file "$work/current.abi" "$work/libkplm.so.1"

case $mode in
update)
    cp "$work/current.abi" "$baseline"
    echo "abi.sh: baseline written: $baseline"
    ;;
check)
    status=0
    abidiff --no-added-syms "$baseline" "$work/current.abi" > "$work/abidiff.txt" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$work/abidiff.txt"
        echo "abi.sh: FAIL: the ABI differs from Tests/abi/libkplm-1.0.abi (abidiff exit $status)"
        exit 1
    fi
    echo "abi.sh: ok: the ABI of $header matches the 1.0 baseline (functions added only)"
    ;;
*)
    echo "abi.sh: unknown mode $mode"; exit 2 ;;
esac
