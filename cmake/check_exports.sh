#!/bin/sh
# Checks the shared library the CMake build produced:
#   - its dynamic symbol table defines the kplm_* functions of kplm.h and
#     nothing else (no Swift-mangled symbols, no kplmshim_* helpers);
#   - it does not depend on any libswift* shared object;
#   - its SONAME is the expected one.
# usage: check_exports.sh path/to/libkplm.so.X.Y.Z libkplm.so.X path/to/kplm.h
set -u

lib=$1
want_soname=$2
header=$3
fail=0

say() { printf '%s\n' "$*"; }
bad() { say "FAIL: $*"; fail=1; }

[ -f "$lib" ] || { say "FAIL: no such file: $lib"; exit 1; }

for tool in nm readelf ldd; do
    command -v "$tool" >/dev/null 2>&1 || { say "FAIL: $tool not found"; exit 1; }
done

# Defined dynamic symbols (name only, version suffix dropped).
symbols=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
[ -n "$symbols" ] || bad "nm -D --defined-only printed no symbols"

# Symbols the linker or libc machinery may add by itself.
ignored='^(_init|_fini|_edata|_end|__bss_start|_DYNAMIC|_GLOBAL_OFFSET_TABLE_)$'

extra=$(printf '%s\n' "$symbols" | grep -v '^kplm_' | grep -Ev "$ignored" || true)
if [ -n "$extra" ]; then
    bad "symbols exported besides kplm_*:"
    printf '%s\n' "$extra" | head -n 40 | sed 's/^/    /'
fi

# Every kplm_* symbol is a function (text), not data.
nonfunc=$(nm -D --defined-only "$lib" | awk 'NF >= 3 && $3 ~ /^kplm_/ && $2 !~ /^[TtWi]$/ { print $2, $3 }')
if [ -n "$nonfunc" ]; then
    bad "kplm_* symbols that are not functions:"
    printf '%s\n' "$nonfunc" | sed 's/^/    /'
fi

# Every function kplm.h declares (a declaration starts a line: a return
# type, then kplm_NAME and "(") is there and is a function (type T).
declared=$(grep -oE '^[a-z_][a-z0-9_ *]*[ *]kplm_[a-z0-9_]+\(' "$header" | grep -oE 'kplm_[a-z0-9_]+\($' | tr -d '(' | sort -u)
[ -n "$declared" ] || bad "no function declarations found in $header"
for f in $declared; do
    if ! nm -D --defined-only "$lib" | awk '{ print $2, $3 }' | grep -Eq "^[Tt] $f(@.*)?\$"; then
        bad "function $f is not exported"
    fi
done

# No Swift runtime at run time.
deps=$(ldd "$lib" 2>&1)
if printf '%s\n' "$deps" | grep -q 'libswift'; then
    bad "ldd shows a Swift runtime dependency:"
    printf '%s\n' "$deps" | grep 'libswift' | sed 's/^/    /'
fi
if printf '%s\n' "$deps" | grep -q 'not found'; then
    bad "ldd shows unresolved dependencies:"
    printf '%s\n' "$deps" | grep 'not found' | sed 's/^/    /'
fi

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" != "$want_soname" ]; then
    bad "SONAME is '$soname', expected '$want_soname'"
fi

if [ "$fail" -ne 0 ]; then
    say "--- nm -D --defined-only $lib (first 40 lines)"
    nm -D --defined-only "$lib" | head -n 40
    exit 1
fi
say "OK: $(printf '%s\n' "$symbols" | grep -c '^kplm_') kplm_* symbols ($(printf '%s\n' "$declared" | wc -l) declared in kplm.h, all present), no others; no libswift dependency; SONAME $soname"
exit 0
