#!/bin/sh
# Checks that the core (Swift module KPLM, combined by the CMake build into
# one object) stands on its own: linked alone into a shared library, with the
# Swift runtime linked in statically and no other library named, every
# reference resolves, and the result needs nothing beyond the C runtime. The
# network sinks' libraries (libcurl, libcrypto, zlib) must not be needed.
# usage: check_core.sh path/to/swiftc path/to/kplm_core.o scratch-dir [linker]
set -u

swiftc=$1
core=$2
scratch=$3
linker=${4:-}
fail=0

say() { printf '%s\n' "$*"; }
bad() { say "FAIL: $*"; fail=1; }

[ -f "$core" ] || { say "FAIL: no such file: $core"; exit 1; }
mkdir -p "$scratch" || exit 1
out="$scratch/libkplm_core_alone.so"
rm -f "$out"

set -- -emit-library -static-stdlib "$core" -o "$out" -Xlinker --no-undefined
[ -n "$linker" ] && set -- "$@" "-use-ld=$linker"
if ! "$swiftc" "$@"; then
    bad "the core does not link on its own (see the errors above)"
    exit 1
fi

# What the core-only library needs at run time: the C runtime only.
allowed='^(linux-vdso\.so|ld-linux[-a-z0-9_.]*\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libstdc\+\+\.so|libgcc_s\.so)'
needed=$(readelf -d "$out" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || bad "readelf -d found no NEEDED entry in $out"
for lib in $needed; do
    printf '%s\n' "$lib" | grep -Eq "$allowed" || bad "the core needs $lib"
done

# No reference to the CloudWatch helpers or the libraries behind them.
leaks=$(nm -u "$core" | awk '{ print $2 }' | grep -E '^(kplmshim_cw_|curl_|EVP_|HMAC|SHA256|deflate|inflate|gz)' || true)
[ -z "$leaks" ] || bad "the core refers to network-sink symbols: $(printf '%s' "$leaks" | tr '\n' ' ')"

if [ "$fail" -eq 0 ]; then
    say "OK: the core links alone; it needs only: $(printf '%s' "$needed" | tr '\n' ' ')"
fi
exit "$fail"
