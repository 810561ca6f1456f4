#!/usr/bin/env bash
# Runs kplm's tests under ThreadSanitizer, AddressSanitizer (+ LeakSanitizer)
# and valgrind. scripts/test.sh calls it after ctest; alone:
#
#   scripts/sanitize.sh                 # every stage
#   scripts/sanitize.sh swift-tsan cmake-asan valgrind   # some stages
#
# Stages:
#   swift-tsan   swift test --sanitize=thread   (scratch path .build-tsan)
#   swift-asan   swift test --sanitize=address  (scratch path .build-asan;
#                leak detection off: XCTest and Foundation leak by themselves)
#   cmake-tsan   CMake build with -DKPLM_SANITIZE=thread in build-tsan/, then
#                ctest: every C test (the 5 s soak included) and the
#                examples (this build links the shared Swift runtime, whose
#                TSan hooks a statically linked runtime hides: CMakeLists.txt)
#   cmake-asan   the same with -DKPLM_SANITIZE=address in build-asan/, with
#                leak detection ON (each C sub-test runs its own leak check)
#   valgrind     memcheck of the C and C++ examples of the normal build
#                ($KPLM_BUILD_DIR, default build/), errors and definite or
#                possible leaks fatal; scripts/valgrind.supp holds the one,
#                narrow, justified suppression
#
# A stage fails on a non-zero exit status and also whenever its output
# contains a sanitizer report (belt and braces: halt_on_error makes any
# report fatal anyway). Every stage runs even if an earlier one failed; the
# summary at the end has one line per stage, and the exit status is
# non-zero if any stage failed. Each stage's output is also kept in
# build-sanitize-logs/ (git-ignored, like every build-*/ folder).
set -uo pipefail
cd "$(dirname "$0")/.."

build_dir=${KPLM_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
logs=build-sanitize-logs   # matches build-*/ in .gitignore
mkdir -p "$logs"

# The sanitized C/C++ code must use the Swift toolchain's clang, whose
# sanitizer runtimes are the ones swiftc links.
swiftc_path=$(command -v swiftc)
toolchain_bin=$(dirname "$(readlink -f "$swiftc_path")")
cc="$toolchain_bin/clang"
cxx="$toolchain_bin/clang++"

tsan_options="halt_on_error=1:second_deadlock_stack=1"
# c_fork makes a manager, hence an uploader thread, in the child of a
# multi-threaded parent on purpose. TSan does not support that (by default
# it kills such a child: die_after_fork), and with it allowed, the child's
# Swift runtime (the shared libswiftCore a TSan build uses) intermittently
# waits for ever in a one-time initialisation another parent thread was
# running at the fork. So c_fork is left out of the TSan stage; it runs in
# the plain ctest and under ASan. die_after_fork=0 stays for any other test.
tsan_options_c="$tsan_options:die_after_fork=0"
asan_options_swift="halt_on_error=1:detect_leaks=0"
asan_options_c="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1"

all_stages=(swift-tsan swift-asan cmake-tsan cmake-asan valgrind)
if (($#)); then stages=("$@"); else stages=("${all_stages[@]}"); fi

summary=()
failed=0

# Sanitizer reports, which fail a stage even with exit status 0.
report_pattern='WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: (Thread|Address|Leak)Sanitizer'

# run_stage NAME LOG COMMAND...: runs COMMAND with its output in LOG (and on
# the terminal), times it, and records the verdict.
run_stage() {
    local name=$1 log=$2
    shift 2
    echo
    echo "== sanitize: $name"
    local start=$SECONDS status
    "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    local verdict=PASS detail="exit 0"
    if ((status != 0)); then
        verdict=FAIL detail="exit $status"
    fi
    local reports
    reports=$(grep -Ec "$report_pattern" "$log" || true)
    if ((reports > 0)); then
        verdict=FAIL detail="$detail, $reports sanitizer report line(s)"
    fi
    if [[ $verdict == FAIL ]]; then failed=1; fi
    summary+=("$(printf '%-4s %-11s %4ds  %s  (log: %s)' "$verdict" "$name" "$took" "$detail" "$log")")
}

swift_tsan() {
    TSAN_OPTIONS=$tsan_options swift test --sanitize=thread --scratch-path .build-tsan
}

swift_asan() {
    ASAN_OPTIONS=$asan_options_swift swift test --sanitize=address --scratch-path .build-asan
}

# cmake_sanitized thread|address DIR: configure, build, then ctest (the
# Python, exports and install tests are not registered in such a build).
cmake_sanitized() {
    local kind=$1 dir=$2
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DKPLM_SANITIZE="$kind" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" &&
        cmake --build "$dir" --parallel "$jobs" &&
        TSAN_OPTIONS=$tsan_options_c ASAN_OPTIONS=$asan_options_c \
            ctest --test-dir "$dir" --output-on-failure --timeout 300 \
            $([[ $kind == thread ]] && echo "-E ^c_fork\$") \
            --output-log "$dir/ctest-full.log" &&
        # ctest shows a passing test's output only in the full log.
        ! grep -E "$report_pattern" "$dir/ctest-full.log"
}

valgrind_examples() {
    if ! command -v valgrind >/dev/null; then
        if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
        $sudo apt-get update -qq && $sudo apt-get install -y -qq valgrind || return 1
    fi
    # The normal build (scripts/test.sh has just built it; a no-op then).
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build "$build_dir" --parallel "$jobs" --target kplm_example_c kplm_example_cpp ||
        return 1
    local rc=0 exe
    for exe in producer_c producer_cpp; do
        echo "-- valgrind memcheck: $build_dir/$exe"
        valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
            --show-leak-kinds=definite,possible --errors-for-leak-kinds=definite,possible \
            --suppressions=scripts/valgrind.supp --num-callers=30 \
            "$build_dir/$exe" >/dev/null || { echo "FAIL: valgrind on $exe"; rc=1; }
    done
    return $rc
}

for stage in "${stages[@]}"; do
    case $stage in
    swift-tsan) run_stage swift-tsan "$logs/swift-tsan.log" swift_tsan ;;
    swift-asan) run_stage swift-asan "$logs/swift-asan.log" swift_asan ;;
    cmake-tsan) run_stage cmake-tsan "$logs/cmake-tsan.log" cmake_sanitized thread build-tsan ;;
    cmake-asan) run_stage cmake-asan "$logs/cmake-asan.log" cmake_sanitized address build-asan ;;
    valgrind) run_stage valgrind "$logs/valgrind.log" valgrind_examples ;;
    *)
        echo "unknown stage '$stage' (stages: ${all_stages[*]})" >&2
        exit 2
        ;;
    esac
done

echo
echo "== sanitize: summary"
printf '%s\n' "${summary[@]}"
if ((failed)); then
    echo "sanitize: FAILED"
    exit 1
fi
echo "sanitize: all stages passed"
