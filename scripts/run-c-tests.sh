#!/usr/bin/env bash
# scripts/run-c-tests.sh -- build and run the C/C++ tests in c-tests/.
#
#   scripts/run-c-tests.sh [--smoke|--full] [test|folder...]
#
#   --smoke   (default) CI sized: the whole run takes well under 2 minutes
#             on 2 cores
#   --full    bigger loops, more threads, more forks (minutes)
#   test...   run only these tests: a test's name (`owns`, `api/realloc`)
#             or a folder's (`arena`: every test in c-tests/arena/)
#
# Tests: every c-tests/NAME.c / NAME.cpp (but demo.c) is the test NAME,
# and every c-tests/DIR/NAME.c / NAME.cpp the test DIR/NAME (DIR any
# folder but bench/ and programs/, which hold benchmarks and the programs
# of scripts/test-programs.sh, and tu/, the harness's headers).  A file
# named *_prog.c is a helper program that tests drive: it is only built
# (target/c/[DIR/]NAME), before any test runs.  The tests' harness is
# c-tests/testutil.h, which includes c-tests/tu/*.h (arena_example is a
# plain program: README.md shows it).
#
# Every test is compiled with -Wall -Wextra -Werror (a warning fails it),
# linked against libmmpool and run with LD_PRELOAD=libmmpool.so under a
# 300 s timeout.  thread_churn also runs on plain glibc (built without
# libmmpool, no LD_PRELOAD) and the two peak RSS figures are printed side
# by side.  dlopen is built without libmmpool and loads it with dlopen().
#
# Environment:
#   MMPOOL_LIB   the library to test (default target/release/libmmpool.so;
#                build it with `make lib`; target/release/libmmpool-secure.so
#                with `make secure`)
#   CC, CXX      compilers (default gcc, g++)
#
# Output: one line per test (`PASS name (1.2s)` / `FAIL name`), the failing
# cases of a failed test, and last `c-tests: N passed, M failed`.  Full
# logs are in target/c/<test>.log.  Exit status 1 when anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MODE=--smoke
ONLY=()
for arg in "$@"; do
    case "$arg" in
        --smoke | --full) MODE=$arg ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "unknown option: $arg" >&2
            exit 2
            ;;
        *) ONLY+=("$arg") ;;
    esac
done

# Tools the tests use: g++ (cxx), addr2line (leak frames), glibc's mtrace
# script (trace checks). Install what is missing (Debian packages).
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v addr2line >/dev/null || missing+=(binutils)
command -v mtrace >/dev/null || missing+=(libc-devtools)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        echo "warning: could not install ${missing[*]}; the tests that need them will fail" >&2
fi

CC=${CC:-gcc}
CXX=${CXX:-g++}
LIB=${MMPOOL_LIB:-$ROOT/target/release/libmmpool.so}
case "$LIB" in /*) ;; *) LIB=$ROOT/$LIB ;; esac
LIBDIR=$(dirname "$LIB")
# The tests link the library they run on: libmmpool-secure.so (make
# secure) is -lmmpool-secure, and its tests build in target/c-mmpool-secure.
LIBNAME=$(basename "$LIB" .so)
LIBNAME=${LIBNAME#lib}
BUILD=$ROOT/target/c
[[ $LIBNAME == mmpool ]] || BUILD=$ROOT/target/c-$LIBNAME
CFLAGS=(-O2 -g -Wall -Wextra -Werror -pthread -Iinclude)
LINK_POOL=(-L"$LIBDIR" -l"$LIBNAME" -Wl,-rpath,"$LIBDIR" -ldl)
TIMEOUT=300

# name  kind: pool (linked, LD_PRELOAD) | churn (pool + glibc run) |
#             dlopen (not linked, no preload) | cxx (C++, pool)
# The other tests (see the header) are added after these, pool tests
# (cxx for *.cpp), in c-tests/ first, then folder by folder.
TESTS=(
    "owns pool"
    "errors pool"
    "first_call_in_thread pool"
    "thread_exit pool"
    "random_ops pool"
    "stress pool"
    "fork pool"
    "thread_churn churn"
    "rss_return pool"
    "dlopen dlopen"
    "cxx cxx"
)
# folders of c-tests/ that hold no tests
NOT_TEST_DIRS=" bench programs security tu "

HELPERS=()
known=" demo "
for entry in "${TESTS[@]}"; do
    known+="${entry%% *} "
done
FOLDERS=" "
SOURCES=(c-tests/*.c c-tests/*.cpp)
for dir in c-tests/*/; do
    dir=${dir%/}
    dir=${dir#c-tests/}
    [[ $NOT_TEST_DIRS == *" $dir "* ]] && continue
    FOLDERS+="$dir "
    SOURCES+=("c-tests/$dir"/*.c "c-tests/$dir"/*.cpp)
done
for src in "${SOURCES[@]}"; do
    [[ -f $src ]] || continue
    name=${src#c-tests/}
    name=${name%.*}
    [[ $known == *" $name "* ]] && continue
    kind=pool
    [[ $src == *.cpp ]] && kind=cxx
    if [[ $name == *_prog ]]; then
        HELPERS+=("$name $kind")
    else
        TESTS+=("$name $kind")
        known+="$name "
    fi
done

for o in ${ONLY[@]+"${ONLY[@]}"}; do
    o=${o%/}
    if [[ ($known != *" $o "* || $o == demo) && $FOLDERS != *" $o "* ]]; then
        echo "run-c-tests: no test or folder named '$o' (tests:$known; folders:$FOLDERS)" >&2
        exit 2
    fi
done

mkdir -p "$BUILD"
ulimit -c 0 2>/dev/null || true

if [[ ! -f $LIB ]]; then
    echo "run-c-tests: $LIB not found; build it with 'make lib' (or set MMPOOL_LIB)" >&2
    echo "c-tests: 0 passed, 1 failed"
    exit 1
fi

passed=0
failed=0
churn_pool=""
churn_glibc=""

# selected NAME: named on the command line, or its folder is (or nothing is)
selected() {
    local name=$1
    [[ ${#ONLY[@]} -eq 0 ]] && return 0
    local o
    for o in "${ONLY[@]}"; do
        o=${o%/}
        [[ $o == "$name" || $name == "$o"/* ]] && return 0
    done
    return 1
}

# build NAME KIND -> 0 on success; compiler output in $BUILD/NAME.build.log
# (NAME may be DIR/NAME: built into $BUILD/DIR/)
build() {
    local name=$1 kind=$2 log=$BUILD/$1.build.log dir
    dir=$(dirname "$BUILD/$name")
    # a binary left by an earlier test of the folder's name is in the way
    [[ -f $dir ]] && rm -f "$dir"
    mkdir -p "$dir"
    : >"$log"
    case "$kind" in
        pool)
            "$CC" "${CFLAGS[@]}" "c-tests/$name.c" -o "$BUILD/$name" "${LINK_POOL[@]}" \
                >>"$log" 2>&1
            ;;
        churn)
            "$CC" "${CFLAGS[@]}" "c-tests/$name.c" -o "$BUILD/$name" "${LINK_POOL[@]}" \
                >>"$log" 2>&1 &&
                "$CC" "${CFLAGS[@]}" "c-tests/$name.c" -o "$BUILD/$name.glibc" -ldl \
                    >>"$log" 2>&1
            ;;
        dlopen)
            "$CC" "${CFLAGS[@]}" "c-tests/$name.c" -o "$BUILD/$name" -ldl >>"$log" 2>&1
            ;;
        cxx)
            "$CXX" "${CFLAGS[@]}" "c-tests/$name.cpp" -o "$BUILD/$name" "${LINK_POOL[@]}" \
                >>"$log" 2>&1
            ;;
    esac
}

# run LOG CMD... -> exit status of CMD (under timeout), seconds in $elapsed
run() {
    local log=$1
    shift
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    timeout "$TIMEOUT" "$@" >"$log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    return "$rc"
}

report_failure() {
    local log=$1 rc=$2
    if [[ $rc -eq 124 ]]; then
        echo "    timed out after ${TIMEOUT}s"
    elif [[ $rc -gt 128 ]]; then
        echo "    killed by signal $((rc - 128))"
    fi
    # the failing cases, else the tail of the log
    if grep -q '^FAIL ' "$log"; then
        grep '^FAIL ' "$log" | sed 's/^/    /'
    else
        tail -n 15 "$log" | sed 's/^/    /'
    fi
    echo "    (log: ${log#"$ROOT"/})"
}

for entry in ${HELPERS[@]+"${HELPERS[@]}"}; do
    read -r name kind <<<"$entry"
    if ! build "$name" "$kind"; then
        echo "FAIL $name (build of a helper program)"
        sed 's/^/    /' "$BUILD/$name.build.log" | head -n 40
        failed=$((failed + 1))
    fi
done

for entry in "${TESTS[@]}"; do
    read -r name kind <<<"$entry"
    selected "$name" || continue
    if ! build "$name" "$kind"; then
        echo "FAIL $name (build)"
        sed 's/^/    /' "$BUILD/$name.build.log" | head -n 40
        failed=$((failed + 1))
        continue
    fi
    log=$BUILD/$name.log
    rc=0
    case "$kind" in
        dlopen)
            run "$log" env MMPOOL_LIB="$LIB" "$BUILD/$name" "$MODE" || rc=$?
            ;;
        *)
            run "$log" env LD_PRELOAD="$LIB" "$BUILD/$name" "$MODE" || rc=$?
            ;;
    esac
    if [[ $rc -eq 0 ]]; then
        echo "PASS $name (${elapsed}s)"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        echo "    after ${elapsed}s, exit status $rc"
        report_failure "$log" "$rc"
        failed=$((failed + 1))
    fi
    if [[ $kind == churn ]]; then
        churn_pool=$(sed -n 's/^thread_churn peak_rss_kib=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
        grc=0
        run "$BUILD/$name.glibc.log" "$BUILD/$name.glibc" "$MODE" || grc=$?
        churn_glibc=$(sed -n 's/^thread_churn peak_rss_kib=\([0-9]*\).*/\1/p' \
            "$BUILD/$name.glibc.log" | tail -n 1)
        [[ $grc -eq 0 ]] || echo "    note: the glibc run of thread_churn failed too (exit $grc)"
        echo "    thread_churn peak RSS: mmpool ${churn_pool:-?} KiB, glibc ${churn_glibc:-?} KiB"
    fi
done

echo "c-tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
