#!/usr/bin/env bash
# Coverage-guided fuzzing of the C ABI of kplm with libFuzzer, AddressSanitizer
# and LeakSanitizer (Tests/fuzz/fuzz_abi.c; see Tests/fuzz/README.md).
#
# The Swift core (Sources/KPLM; the harness does not drive the network sinks
# of Sources/KPLMSinks) is compiled into the fuzz executable together
# with the harness, both instrumented (-sanitize=fuzzer,address), so the
# fuzzer is guided by the library's branches as well as the harness's. Only
# the Swift toolchain is needed: its swiftc, and the clang beside it.
#
#   scripts/fuzz.sh [SECONDS]         build, then fuzz for SECONDS (default 60)
#   scripts/fuzz.sh --replay          build, then run every input of
#                                     Tests/fuzz/corpus and Tests/fuzz/crashes once
#   scripts/fuzz.sh --build           build only
#   scripts/fuzz.sh --minimize FILE   build, then minimise a crashing input
#   scripts/fuzz.sh --merge           build, then add to Tests/fuzz/corpus the
#                                     inputs of the work corpus that add coverage
#   scripts/fuzz.sh --coverage [DIR]  source-based line coverage of the library
#                                     (llvm-cov) by the corpus, crashes and DIR
#
# The build and the work corpus live in $KPLM_FUZZ_DIR (default build-fuzz/,
# git-ignored); the committed corpus is only read (except by --merge). New
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
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
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
linker=()
if [ -x "$bindir/ld.lld" ] || command -v ld.lld > /dev/null; then linker=(-use-ld=lld); fi
export SWIFT_BACKTRACE=enable=no

# --------------------------------------------------------------------------
# Coverage report: the harness with a plain main (Tests/fuzz/replay_main.c),
# everything built with source-based coverage, run once over the inputs.
# --------------------------------------------------------------------------
if [ "$mode" = coverage ]; then
    cov=$out/coverage
    rm -rf "$cov" && mkdir -p "$cov"
    echo "== coverage build ($cov/fuzz_cov)"
    covflags=(-g -O1 -fprofile-instr-generate -fcoverage-mapping)
    "$clang" "${covflags[@]}" -Iinclude -c Tests/fuzz/fuzz_abi.c -o "$cov/fuzz_abi.o"
    "$clang" -g -O1 -c Tests/fuzz/replay_main.c -o "$cov/replay_main.o"
    "$clang" "${covflags[@]}" -ISources/CKPLMShims/include -c Sources/CKPLMShims/shims.c -o "$cov/shims.o"
    "$swiftc" -profile-generate -profile-coverage-mapping -parse-as-library -module-name KPLM \
        -package-name kplm -swift-version 6 -Onone -g -Iinclude -ISources/CKPLMShims/include \
        -module-cache-path "$out/module-cache" \
        "${linker[@]}" "${swift_sources[@]}" "$cov"/*.o -o "$cov/fuzz_cov"
    dirs=(Tests/fuzz/corpus)
    [ -d Tests/fuzz/crashes ] && dirs+=(Tests/fuzz/crashes)
    [ -n "${extra_dir:-}" ] && dirs+=("$extra_dir")
    echo "== run ${dirs[*]}"
    LLVM_PROFILE_FILE="$cov/run-%p.profraw" "$cov/fuzz_cov" "${dirs[@]}"
    "$bindir/llvm-profdata" merge -o "$cov/fuzz.profdata" "$cov"/run-*.profraw
    "$bindir/llvm-cov" report "$cov/fuzz_cov" -instr-profile="$cov/fuzz.profdata" Sources/KPLM Sources/CKPLMShims |
        awk 'NF == 13 && $1 != "Filename" { printf "%-34s lines %8s (%s of %s missed)   functions %8s\n", $1, $10, $9, $8, $7 }'
    echo "(details: $bindir/llvm-cov show $cov/fuzz_cov -instr-profile=$cov/fuzz.profdata Sources/KPLM)"
    exit 0
fi

# --------------------------------------------------------------------------
# Build: harness and shims with clang, the Swift core with swiftc, one link.
# --------------------------------------------------------------------------
cflags=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address -std=c11 -Wall -Wextra)

echo "== fuzz build ($out/fuzz_abi, ${#swift_sources[@]} Swift sources)"
"$clang" "${cflags[@]}" -Iinclude -c Tests/fuzz/fuzz_abi.c -o "$out/fuzz_abi.o"
"$clang" "${cflags[@]}" -ISources/CKPLMShims/include -c Sources/CKPLMShims/shims.c -o "$out/shims.o"
"$swiftc" -sanitize=fuzzer,address -parse-as-library -module-name KPLM -package-name kplm -swift-version 6 \
    -O -g -Iinclude -ISources/CKPLMShims/include \
    -module-cache-path "$out/module-cache" \
    "${linker[@]}" "${swift_sources[@]}" "$out/fuzz_abi.o" "$out/shims.o" -o "$out/fuzz_abi.new"
mv "$out/fuzz_abi.new" "$out/fuzz_abi"
[ "$mode" = build ] && exit 0

# --------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:handle_abort=1}
[ -x "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH=$symbolizer
# (SWIFT_BACKTRACE=enable=no above: the sanitizer reports crashes, the Swift
# runtime's own backtracer would only slow every abort down.)

corpus=Tests/fuzz/corpus
crashes=Tests/fuzz/crashes
dict=Tests/fuzz/abi.dict
inputs=("$root/$corpus")
if [ -d "$crashes" ] && [ -n "$(ls -A "$crashes" 2>/dev/null)" ]; then inputs+=("$root/$crashes"); fi
mkdir -p "$out/corpus" "$out/artifacts"
log=$out/fuzz.log
common=(-detect_leaks=1 -timeout=25 -rss_limit_mb=4096 -artifact_prefix="$out/artifacts/")

# Stack traces name Swift functions by their mangled names: demangle them.
show_failure() {
    echo "== fuzz.sh: FAILURE (full log: $log); the report, demangled:"
    sed -n '/==[0-9]*==ERROR\|fuzz_abi: invariant\|ERROR: libFuzzer\|SUMMARY:/,$p' "$log" | head -150 |
        if [ -x "$demangle" ]; then "$demangle" --simplified; else cat; fi
    ls -l "$out/artifacts" 2>/dev/null | tail -n +2 || true
}

status=0
case "$mode" in
replay)
    echo "== replay: every input of ${inputs[*]#$root/} once"
    # -runs=0: execute the given corpora (each input once), do not fuzz.
    "$out/fuzz_abi" "${common[@]}" -runs=0 "${inputs[@]}" > "$log" 2>&1 || status=$?
    ;;
minimize)
    echo "== minimise $crash_input"
    "$out/fuzz_abi" "${common[@]}" -minimize_crash=1 -max_total_time="${KPLM_FUZZ_MINIMIZE_SECONDS:-120}" \
        -exact_artifact_path="$out/artifacts/minimized" "$crash_input" > "$log" 2>&1 || true
    ls -l "$out/artifacts/minimized" && echo "replay it with: $out/fuzz_abi $out/artifacts/minimized"
    exit 0
    ;;
merge)
    echo "== merge $out/corpus into $corpus (only inputs that add coverage)"
    "$out/fuzz_abi" "${common[@]}" -merge=1 -max_len=4096 "$root/$corpus" "$out/corpus" > "$log" 2>&1 || status=$?
    ;;
fuzz)
    echo "== fuzz for ${seconds}s (one worker; work corpus $out/corpus, seeds ${inputs[*]#$root/})"
    # shellcheck disable=SC2086
    "$out/fuzz_abi" "${common[@]}" -max_total_time="$seconds" -max_len=4096 -dict="$root/$dict" \
        -print_final_stats=1 ${KPLM_FUZZ_FLAGS:-} "$out/corpus" "${inputs[@]}" > "$log" 2>&1 || status=$?
    ;;
esac

# Summary: executions and coverage (libFuzzer's INITED/DONE lines).
grep -E '^#[0-9]+\s+(INITED|DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true
grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb' "$log" || true
if grep -q 'NOTE: fuzzing was not performed\|INITED' "$log" && [ "$mode" = replay ]; then
    echo "replayed $(ls "${inputs[@]}" | grep -vc ':$\|^$') inputs"
fi
if [ "$status" -ne 0 ]; then
    show_failure
    exit "$status"
fi
echo "== fuzz.sh: no crash, leak, timeout or invariant violation"
