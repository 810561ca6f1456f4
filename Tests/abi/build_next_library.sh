#!/bin/sh
# Builds libkplm.so from this tree's sources against the header of a
# simulated later version (make_next_header.py: one more field at the end of
# every struct), for the test abi_v1_on_next: the frozen 1.0 test program
# run against a later library. Same compiler options as the CMake release
# build (whole-module, the Swift runtime linked in, only kplm_* exported).
#
# usage: build_next_library.sh path/to/swiftc out-dir [linker]
set -eu
swiftc=$1
out=$2
linker=${3:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out/include"

python3 "$root/Tests/abi/make_next_header.py" "$root/include/kplm.h" "$out/include"
cp "$root/include/module.modulemap" "$out/include/module.modulemap"

includes="-I $out/include -I $root/Sources/CKPLMShims/include -I $root/Sources/CKPLMCloudWatch/include"
swift_flags="-parse-as-library -package-name kplm -swift-version 6 -O -wmo"

# The core (module KPLM) as one object, then the C helpers.
# shellcheck disable=SC2046,SC2086
"$swiftc" $swift_flags $includes -module-name KPLM -emit-module -emit-module-path "$out/KPLM.swiftmodule" \
    -parse-as-library -c -o "$out/kplm_core.o" $(find "$root/Sources/KPLM" -name '*.swift' | sort)
# The core's C ABI (module KPLMCABI) likewise.
# shellcheck disable=SC2046,SC2086
"$swiftc" $swift_flags $includes -I "$out" -module-name KPLMCABI -emit-module \
    -emit-module-path "$out/KPLMCABI.swiftmodule" -Xfrontend -disable-autolink-library -Xfrontend kplm_core \
    -c -o "$out/kplm_cabi.o" $(find "$root/Sources/KPLMCABI" -name '*.swift' | sort)
for c in "$root/Sources/CKPLMShims/shims.c" "$root/Sources/CKPLMCloudWatch/cloudwatch_shim.c"; do
    # shellcheck disable=SC2086
    cc -O2 -fPIC -fvisibility=hidden $includes -c "$c" -o "$out/$(basename "$c" .c).o"
done

# The sinks (module KPLMSinks) and the library.
set --
[ -n "$linker" ] && set -- "-use-ld=$linker"
# shellcheck disable=SC2046,SC2086
"$swiftc" $swift_flags $includes -I "$out" -module-name KPLMSinks -emit-library -static-stdlib \
    -Xfrontend -disable-autolink-library -Xfrontend kplm_core \
    -Xfrontend -disable-autolink-library -Xfrontend kplm_cabi \
    -Xlinker --version-script="$root/cmake/kplm.map" -Xlinker -soname=libkplm.so.1 \
    "$@" -o "$out/libkplm.so.1" \
    $(find "$root/Sources/KPLMSinks" -name '*.swift' | sort) \
    "$out/kplm_cabi.o" "$out/kplm_core.o" "$out/shims.o" "$out/cloudwatch_shim.o"
echo "build_next_library.sh: $out/libkplm.so.1"
