#!/bin/sh
# Checks that libkplm.so needs only the C runtime (readelf -d NEEDED): the
# network sinks open libcurl, libcrypto and zlib with dlopen when one is
# created, so a program that uses none of them does not pay for them.
# usage: check_needed.sh path/to/libkplm.so
set -u
lib=$1
[ -f "$lib" ] || { echo "FAIL: no such file: $lib"; exit 1; }
allowed='^(ld-linux[-a-z0-9_.]*\.so(\.[0-9]+)?|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6)$'
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || { echo "FAIL: readelf -d found no NEEDED entry in $lib"; exit 1; }
fail=0
for n in $needed; do
    printf '%s\n' "$n" | grep -Eq "$allowed" || { echo "FAIL: $lib needs $n (only the C runtime is allowed)"; fail=1; }
done
if [ "$fail" -eq 0 ]; then
    echo "OK: $lib needs only: $(printf '%s' "$needed" | tr '\n' ' ')"
fi
exit "$fail"
