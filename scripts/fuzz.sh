#!/usr/bin/env bash
# Coverage-guided fuzzing of the C ABI of kplm with libFuzzer, AddressSanitizer
# and LeakSanitizer (see Tests/fuzz/README.md). Three targets:
#   abi    Tests/fuzz/fuzz_abi.c: managers, puts, reads, flushes, callback
#          sinks, against a model of the contract (the Swift core and its
#          C ABI, Sources/KPLM and Sources/KPLMCABI, compiled in);
#   sinks  Tests/fuzz/fuzz_sinks.c: the network sinks' C constructors and
#          the ownership of the sinks they return (Sources/KPLMSinks too);
#   prometheus  Tests/fuzz/fuzz_prometheus.swift: the Prometheus server's
#          HTTP request-head parser (PrometheusRequest.swift, compiled into
#          the target's own module; it is internal to the library).
# The Swift sources are compiled into the fuzz executables together with the
# harnesses, all instrumented (-sanitize=fuzzer,address), so the fuzzer is
# guided by the library's branches as well as the harness's. Only the Swift
# toolchain is needed: its swiftc, and the clang beside it (the sinks target
# does not link libcurl, libcrypto or zlib: the library dlopens them at run
# time, see Sources/CKPLMCloudWatch/kplm_shim_abi.h).
#
#   scripts/fuzz.sh [SECONDS]         build, then fuzz abi for SECONDS (default
#                                     60), sinks and prometheus for a third of
#                                     that each (>= 10 s)
#   scripts/fuzz.sh --replay          build, then run every committed input of
#                                     every target once
#   scripts/fuzz.sh --build           build only
#   scripts/fuzz.sh --minimize FILE   build, then minimise a crashing input
#   scripts/fuzz.sh --merge           build, then add to the committed corpus the
#                                     inputs of the work corpus that add coverage
#   scripts/fuzz.sh --coverage [DIR]  source-based line coverage of the library
#                                     (llvm-cov) by the corpus, crashes and DIR
#
# --minimize, --merge and --coverage work on one target: KPLM_FUZZ_TARGET=abi
# (default), sinks or prometheus. Committed inputs: Tests/fuzz/corpus and
# crashes (abi), Tests/fuzz/sinks-corpus and sinks-crashes (sinks),
# Tests/fuzz/prometheus-corpus and prometheus-crashes (prometheus).
# The build and the work corpora live in $KPLM_FUZZ_DIR (default build-fuzz/,
# git-ignored); the committed corpora are only read (except by --merge). New
# crashes, leaks and timeouts are written to $KPLM_FUZZ_DIR/artifacts/.
# Extra libFuzzer flags: KPLM_FUZZ_FLAGS="-use_value_profile=1 ...".
# Exit status: non-zero on any crash, leak, timeout or violated invariant.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

out=${KPLM_FUZZ_DIR:-build-fuzz}
mkdir -p "$out"
out=$(cd "$out" && pwd)

mode=fuzz
seconds=60
case "${1:-}" in
    --replay) mode=replay ;;
    --build) mode=build ;;
    --merge) mode=merge ;;
    --coverage) mode=coverage; extra_dir=${2:-} ;;
    --minimize)
        mode=minimize
        crash_input=${2:?usage: scripts/fuzz.sh --minimize FILE}
        crash_input=$(cd "$(dirname "$crash_input")" && pwd)/$(basename "$crash_input")
        ;;
    "") ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *)
        if [[ "$1" =~ ^[0-9]+$ ]]; then seconds=$1
        else echo "usage: scripts/fuzz.sh [SECONDS|--replay|--build|--merge|--minimize FILE]" >&2; exit 2
        fi
        ;;
esac

# --------------------------------------------------------------------------
# Toolchain: swiftc, and the clang of the same toolchain (one sanitizer and
# libFuzzer runtime for Swift and C).
# --------------------------------------------------------------------------
swiftc=${SWIFTC:-$(command -v swiftc || true)}
if [ -z "$swiftc" ] && [ -x /opt/swift/usr/bin/swiftc ]; then swiftc=/opt/swift/usr/bin/swiftc; fi
if [ -z "$swiftc" ]; then echo "fuzz.sh: swiftc not found (install the Swift toolchain)" >&2; exit 1; fi
# (not resolved: swiftc is a link whose name selects the driver mode)
bindir=$(dirname "$(readlink -f "$swiftc")")
clang=${FUZZ_CLANG:-$bindir/clang}
if [ ! -x "$clang" ]; then
    echo "fuzz.sh: $clang not found: the fuzz build needs the clang shipped with the Swift toolchain" >&2
    exit 1
fi
symbolizer=$bindir/llvm-symbolizer
demangle=$bindir/swift-demangle

swift_sources=()
while IFS= read -r f; do swift_sources+=("$f"); done < <(find Sources/KPLM -name '*.swift' | LC_ALL=C sort)
cabi_sources=()
while IFS= read -r f; do cabi_sources+=("$f"); done < <(find Sources/KPLMCABI -name '*.swift' | LC_ALL=C sort)
sink_sources=()
while IFS= read -r f; do sink_sources+=("$f"); done < <(find Sources/KPLMSinks -name '*.swift' | LC_ALL=C sort)
target=${KPLM_FUZZ_TARGET:-abi}
case "$target" in
    abi|sinks|prometheus) ;;
    *) echo "fuzz.sh: KPLM_FUZZ_TARGET must be abi, sinks or prometheus, not '$target'" >&2; exit 2 ;;
esac
linker=()
if [ -x "$bindir/ld.lld" ] || command -v ld.lld > /dev/null; then linker=(-use-ld=lld); fi
export SWIFT_BACKTRACE=enable=no

# --------------------------------------------------------------------------
# Coverage report: the harness with a plain main (Tests/fuzz/replay_main.c),
# everything built with source-based coverage, run once over the inputs.
# --------------------------------------------------------------------------
if [ "$mode" = coverage ]; then
    if [ "$target" != abi ]; then echo "fuzz.sh: --coverage measures the abi target only" >&2; exit 2; fi
    cov=$out/coverage
    rm -rf "$cov" && mkdir -p "$cov"
    echo "== coverage build ($cov/fuzz_cov)"
    covflags=(-g -O1 -fprofile-instr-generate -fcoverage-mapping)
    "$clang" "${covflags[@]}" -Iinclude -c Tests/fuzz/fuzz_abi.c -o "$cov/fuzz_abi.o"
    "$clang" -g -O1 -c Tests/fuzz/replay_main.c -o "$cov/replay_main.o"
    "$clang" "${covflags[@]}" -ISources/CKPLMShims/include -c Sources/CKPLMShims/shims.c -o "$cov/shims.o"
    covswift=(-profile-generate -profile-coverage-mapping -parse-as-library -package-name kplm -swift-version 6
              -Onone -g -Iinclude -ISources/CKPLMShims/include -module-cache-path "$out/module-cache")
    mkdir -p "$cov/swift"
    "$swiftc" "${covswift[@]}" -module-name KPLM -wmo -c "${swift_sources[@]}" -o "$cov/swift/kplm_core.o" \
        -emit-module -emit-module-path "$cov/swift/KPLM.swiftmodule"
    "$swiftc" "${covswift[@]}" -module-name KPLMCABI -I "$cov/swift" "${linker[@]}" "${cabi_sources[@]}" \
        "$cov/swift/kplm_core.o" "$cov"/*.o -o "$cov/fuzz_cov"
    dirs=(Tests/fuzz/corpus)
    [ -d Tests/fuzz/crashes ] && dirs+=(Tests/fuzz/crashes)
    [ -n "${extra_dir:-}" ] && dirs+=("$extra_dir")
    echo "== run ${dirs[*]}"
    LLVM_PROFILE_FILE="$cov/run-%p.profraw" "$cov/fuzz_cov" "${dirs[@]}"
    "$bindir/llvm-profdata" merge -o "$cov/fuzz.profdata" "$cov"/run-*.profraw
    "$bindir/llvm-cov" report "$cov/fuzz_cov" -instr-profile="$cov/fuzz.profdata" Sources/KPLM Sources/KPLMCABI \
        Sources/CKPLMShims |
        awk 'NF == 13 && $1 != "Filename" { printf "%-34s lines %8s (%s of %s missed)   functions %8s\n", $1, $10, $9, $8, $7 }'
    echo "(details: $bindir/llvm-cov show $cov/fuzz_cov -instr-profile=$cov/fuzz.profdata Sources/KPLM)"
    exit 0
fi

# --------------------------------------------------------------------------
# Build: harnesses and C shims with clang; the core (module KPLM), its C ABI
# (module KPLMCABI) and the sinks (module KPLMSinks) with swiftc, one object
# each; two links. The
# prometheus target: one swiftc call (the parser, Trimming.swift, the entry).
# --------------------------------------------------------------------------
cflags=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address -std=c11 -Wall -Wextra)
swiftflags=(-sanitize=fuzzer,address -parse-as-library -package-name kplm -swift-version 6 -O -g -wmo
            -Iinclude -ISources/CKPLMShims/include -module-cache-path "$out/module-cache")

# Up to date when every executable is newer than every input of the build
# (CI calls this script twice: replay, then fuzz).
up_to_date() {
    [ -x "$out/fuzz_abi" ] && [ -x "$out/fuzz_sinks" ] && [ -x "$out/fuzz_prometheus" ] || return 1
    [ -z "$(find Sources include Tests/fuzz scripts/fuzz.sh -type f \( -newer "$out/fuzz_abi" -o \
            -newer "$out/fuzz_sinks" -o -newer "$out/fuzz_prometheus" \) -print -quit)" ]
}
if up_to_date; then
    echo "== fuzz build: $out/fuzz_abi, $out/fuzz_sinks and $out/fuzz_prometheus are up to date"
else
echo "== fuzz build ($out/fuzz_abi, $out/fuzz_sinks, $out/fuzz_prometheus;" \
     "${#swift_sources[@]} + ${#cabi_sources[@]} + ${#sink_sources[@]} Swift sources)"
mkdir -p "$out/modules"
"$clang" "${cflags[@]}" -Iinclude -c Tests/fuzz/fuzz_abi.c -o "$out/fuzz_abi.o"
"$clang" "${cflags[@]}" -Iinclude -c Tests/fuzz/fuzz_sinks.c -o "$out/fuzz_sinks.o"
"$clang" "${cflags[@]}" -ISources/CKPLMShims/include -c Sources/CKPLMShims/shims.c -o "$out/shims.o"
"$clang" "${cflags[@]}" -ISources/CKPLMCloudWatch/include -c Sources/CKPLMCloudWatch/cloudwatch_shim.c \
    -o "$out/cloudwatch_shim.o"
"$swiftc" "${swiftflags[@]}" -module-name KPLM -c "${swift_sources[@]}" -o "$out/kplm_core.o" \
    -emit-module -emit-module-path "$out/modules/KPLM.swiftmodule"
"$swiftc" "${swiftflags[@]}" -module-name KPLMCABI -I "$out/modules" -c "${cabi_sources[@]}" -o "$out/kplm_cabi.o" \
    -emit-module -emit-module-path "$out/modules/KPLMCABI.swiftmodule"
"$swiftc" "${swiftflags[@]}" -module-name KPLMSinks -I "$out/modules" -ISources/CKPLMCloudWatch/include \
    -c "${sink_sources[@]}" -o "$out/kplm_sinks.o"
"$swiftc" -sanitize=fuzzer,address "${linker[@]}" "$out/fuzz_abi.o" "$out/kplm_cabi.o" "$out/kplm_core.o" "$out/shims.o" \
    -o "$out/fuzz_abi.new"
"$swiftc" -sanitize=fuzzer,address "${linker[@]}" "$out/fuzz_sinks.o" "$out/kplm_cabi.o" "$out/kplm_core.o" "$out/kplm_sinks.o" \
    "$out/shims.o" "$out/cloudwatch_shim.o" -o "$out/fuzz_sinks.new"
"$swiftc" "${swiftflags[@]}" -module-name KPLMFuzzPrometheus -c \
    Sources/KPLMSinks/Prometheus/PrometheusRequest.swift Sources/KPLMSinks/Transport/Trimming.swift \
    Tests/fuzz/fuzz_prometheus.swift -o "$out/fuzz_prometheus.o"
"$swiftc" -sanitize=fuzzer,address "${linker[@]}" "$out/fuzz_prometheus.o" -o "$out/fuzz_prometheus.new"
mv "$out/fuzz_abi.new" "$out/fuzz_abi"
mv "$out/fuzz_sinks.new" "$out/fuzz_sinks"
mv "$out/fuzz_prometheus.new" "$out/fuzz_prometheus"
fi
[ "$mode" = build ] && exit 0

# --------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:handle_abort=1}
[ -x "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH=$symbolizer
# (SWIFT_BACKTRACE=enable=no above: the sanitizer reports crashes, the Swift
# runtime's own backtracer would only slow every abort down.)
mkdir -p "$out/artifacts"
common=(-detect_leaks=1 -timeout=25 -rss_limit_mb=4096 -artifact_prefix="$out/artifacts/")

# The committed inputs of target $1: corpus and crashes directories.
corpus_of() { if [ "$1" = abi ]; then echo Tests/fuzz/corpus; else echo "Tests/fuzz/$1-corpus"; fi; }
crashes_of() { if [ "$1" = abi ]; then echo Tests/fuzz/crashes; else echo "Tests/fuzz/$1-crashes"; fi; }
dict_of() { echo "Tests/fuzz/$1.dict"; }
inputs_of() {
    local crashes
    crashes=$(crashes_of "$1")
    echo "$root/$(corpus_of "$1")"
    if [ -d "$crashes" ] && [ -n "$(ls -A "$crashes" 2>/dev/null)" ]; then echo "$root/$crashes"; fi
}

# Stack traces name Swift functions by their mangled names: demangle them.
show_failure() {
    echo "== fuzz.sh: FAILURE (full log: $1); the report, demangled:"
    sed -n '/==[0-9]*==ERROR\|fuzz_abi: invariant\|fuzz_sinks: invariant\|fuzz_prometheus: invariant\|ERROR: libFuzzer\|SUMMARY:/,$p' "$1" |
        head -150 | if [ -x "$demangle" ]; then "$demangle" --simplified; else cat; fi
    ls -l "$out/artifacts" 2>/dev/null | tail -n +2 || true
}

# run_target TARGET MODE [SECONDS]: one libFuzzer run; prints a summary.
run_target() {
    local t=$1 m=$2 secs=${3:-0} status=0 exe=$out/fuzz_$1 log=$out/fuzz_$1.log
    local inputs=()
    while IFS= read -r d; do inputs+=("$d"); done < <(inputs_of "$t")
    mkdir -p "$out/corpus-$t"
    case "$m" in
    replay)
        echo "== $t: replay every input of ${inputs[*]#$root/} once"
        # -runs=0: execute the given corpora (each input once), do not fuzz.
        "$exe" "${common[@]}" -runs=0 "${inputs[@]}" > "$log" 2>&1 || status=$?
        ;;
    minimize)
        echo "== $t: minimise $crash_input"
        "$exe" "${common[@]}" -minimize_crash=1 -max_total_time="${KPLM_FUZZ_MINIMIZE_SECONDS:-120}" \
            -exact_artifact_path="$out/artifacts/minimized" "$crash_input" > "$log" 2>&1 || true
        ls -l "$out/artifacts/minimized" && echo "replay it with: $exe $out/artifacts/minimized"
        return 0
        ;;
    merge)
        echo "== $t: merge $out/corpus-$t into $(corpus_of "$t") (only inputs that add coverage)"
        "$exe" "${common[@]}" -merge=1 -max_len=4096 "$root/$(corpus_of "$t")" "$out/corpus-$t" > "$log" 2>&1 ||
            status=$?
        ;;
    fuzz)
        echo "== $t: fuzz for ${secs}s (one worker; work corpus $out/corpus-$t, seeds ${inputs[*]#$root/})"
        # shellcheck disable=SC2086
        "$exe" "${common[@]}" -max_total_time="$secs" -max_len=4096 -dict="$root/$(dict_of "$t")" \
            -print_final_stats=1 ${KPLM_FUZZ_FLAGS:-} "$out/corpus-$t" "${inputs[@]}" > "$log" 2>&1 || status=$?
        ;;
    esac
    # Summary: executions and coverage (libFuzzer's INITED/DONE lines).
    grep -E '^#[0-9]+\s+(INITED|DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true
    grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb' "$log" || true
    if [ "$m" = replay ]; then
        echo "replayed $(ls "${inputs[@]}" | grep -vc ':$\|^$') inputs"
    fi
    if [ "$status" -ne 0 ]; then
        show_failure "$log"
        return "$status"
    fi
    return 0
}

# (Each run's status is checked here: a function called in a condition
# would not stop the script under set -e.)
case "$mode" in
replay)
    run_target abi replay || exit $?
    run_target sinks replay || exit $?
    run_target prometheus replay || exit $?
    ;;
fuzz)
    sink_seconds=$((seconds / 3))
    [ "$sink_seconds" -lt 10 ] && sink_seconds=10
    run_target abi fuzz "$seconds" || exit $?
    run_target sinks fuzz "$sink_seconds" || exit $?
    run_target prometheus fuzz "$sink_seconds" || exit $?
    ;;
*) run_target "$target" "$mode" || exit $? ;;
esac
echo "== fuzz.sh: no crash, leak, timeout or invariant violation"
