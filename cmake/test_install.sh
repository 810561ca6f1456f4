#!/bin/sh
# Installs the kplm build tree into a scratch prefix, then builds and runs the
# consumer project Tests/consumer against that prefix two ways:
#   1. CMake: find_package(kplm CONFIG REQUIRED), target kplm::kplm;
#   2. pkg-config: cc consumer.c $(pkg-config --cflags --libs kplm).
# Each way builds the C consumer (consumer.c, <kplm.h>) and the C++ one
# (consumer.cpp, <kplm.hpp>).
# usage: test_install.sh CMAKE BUILD_DIR CONSUMER_SOURCE_DIR CC [MAKE_PROGRAM [CXX]]
set -eu

cmake=$1
build=$2
consumer=$3
cc=$4
make_program=${5:-}
cxx=${6:-c++}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kplm-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; exit 1; }

step "install into $prefix"
"$cmake" --install "$build" --prefix "$prefix"

step "installed files"
(cd "$prefix" && find . \( -type f -o -type l \) | sort)
for f in include/kplm.h include/kplm.hpp share/doc/kplm/LICENSE \
         lib/libkplm.so lib/libkplm.so.1 lib/libkplm.so.1.2.0 \
         lib/pkgconfig/kplm.pc \
         lib/cmake/kplm/kplmConfig.cmake \
         lib/cmake/kplm/kplmConfigVersion.cmake \
         lib/cmake/kplm/kplmTargets.cmake; do
    [ -e "$prefix/$f" ] || fail "missing $f"
done
[ -L "$prefix/lib/libkplm.so" ] || fail "lib/libkplm.so is not a symlink"
[ -L "$prefix/lib/libkplm.so.1" ] || fail "lib/libkplm.so.1 is not a symlink"
grep -q "^prefix=$prefix\$" "$prefix/lib/pkgconfig/kplm.pc" \
    || { cat "$prefix/lib/pkgconfig/kplm.pc"; fail "kplm.pc does not name the install prefix"; }

step "CMake consumer: configure + build"
gen_args="-G Ninja"
[ -n "$make_program" ] && gen_args="$gen_args -DCMAKE_MAKE_PROGRAM=$make_program"
# shellcheck disable=SC2086
"$cmake" -S "$consumer" -B "$tmp/build" $gen_args \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
"$cmake" --build "$tmp/build"

step "CMake consumer: run"
exe=$tmp/build/kplm_consumer
# The executable must find the installed library (build RPATH), not the
# build tree's.
ldd "$exe" | grep libkplm
ldd "$exe" | grep -q "libkplm.so.1 => $prefix/lib/libkplm.so.1" \
    || fail "the CMake consumer does not load $prefix/lib/libkplm.so.1"
"$exe"
"$tmp/build/kplm_consumer_cpp"

step "pkg-config consumer"
PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
pkg-config --validate kplm || fail "pkg-config --validate kplm"
grep -q '^License: Apache-2.0$' "$prefix/lib/pkgconfig/kplm.pc" || fail "kplm.pc has no License: Apache-2.0"
version=$(pkg-config --modversion kplm)
[ "$version" = "1.2.0" ] || fail "pkg-config --modversion kplm gave '$version'"
flags=$(pkg-config --cflags --libs kplm)
printf 'pkg-config --cflags --libs kplm: %s\n' "$flags"
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -o "$tmp/kplm_consumer_pc" "$consumer/consumer.c" $flags
LD_LIBRARY_PATH=$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/kplm_consumer_pc"
# shellcheck disable=SC2086
"$cxx" -std=c++17 -Wall -Wextra -o "$tmp/kplm_consumer_cpp_pc" "$consumer/consumer.cpp" $flags
LD_LIBRARY_PATH=$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/kplm_consumer_cpp_pc"

step "install test passed"
