#!/usr/bin/env bash
# scripts/security.sh -- the heap-bug suite: which bugs each allocator stops.
#
#   scripts/security.sh                 every case under every allocator;
#                                       prints the stopped counts per class
#                                       and writes target/security/results.{md,csv}
#   scripts/security.sh --check         mmpool builds only, against
#                                       c-tests/security/expected.txt (make test;
#                                       about 5 s)
#
# Options:
#   --allocators LIST   comma-separated subset of
#                       glibc,jemalloc,mimalloc,tcmalloc,scudo,mmpool,mmpool-secure
#                       (default: all; with --check: mmpool,mmpool-secure)
#   --cases PATTERN     only the cases whose name matches the shell pattern
#                       (e.g. 'double_free_*'); --check then skips the
#                       "every case has an expectation" test
#   --check             compare the mmpool builds with expected.txt; exit 1
#                       listing every mismatch (outputs go to
#                       target/security/check.{md,csv})
#   --timeout S         per-case limit in seconds (default 5)
#   --no-install        never call apt-get
#   --no-build          do not run `make lib` when libmmpool.so is missing
#
# Every case (c-tests/security/cases.c, cases_cxx.cpp; built into
# target/security/) runs as its own process, once per allocator, through
# LD_PRELOAD (glibc: no preload), with the allocators' tuning variables
# (MALLOC_*, GLIBC_TUNABLES, MALLOC_CONF, MIMALLOC_*, TCMALLOC_*,
# SCUDO_OPTIONS, MMPOOL_*) removed from the environment: every allocator
# runs with its defaults.  Outcomes:
#   SIGABRT, SIGSEGV, ...  stopped: died by that signal ("+msg": an mmpool
#                          build printed a line starting with `mmpool: `)
#   exit N                 stopped: exited with status N after the bug
#   held                   stopped: a property case found the allocator safe
#                          (address not reused, memory cleared, NULL for an
#                          impossible size, heap not executable)
#   NOT STOPPED            the program went on after the bug
#   timeout, setup         not stopped: hung, or died before the bug
#   n/a                    the allocator is not available here
# --check puts each mmpool outcome in expected.txt's words (stop: stopped
# with an `mmpool: ` line naming an address; fault: SIGSEGV/SIGBUS without
# one; glibc: stopped by glibc's free after mmpool handed it the pointer;
# held; pass) and compares; the file's header says more.  A few outcomes
# (the 1 MiB overflows) depend on the address-space layout ASLR picks, so
# they can differ between runs.
#
# Allocators: glibc (the system's), jemalloc (libjemalloc2), mimalloc
# (libmimalloc2.0), tcmalloc (libtcmalloc-minimal4), scudo (the standalone
# scudo of libclang-rt-14-dev), mmpool (target/release/libmmpool.so) and
# mmpool-secure (target/release/libmmpool-secure.so, a build that may not
# exist yet).  Missing Debian packages are installed with apt-get; what
# cannot be installed or found is marked n/a.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SRC="c-tests/security"
OUT=target/security
EXPECTED=$SRC/expected.txt
ALL_ALLOCATORS=glibc,jemalloc,mimalloc,tcmalloc,scudo,mmpool,mmpool-secure
COMMAND="scripts/security.sh${*:+ $*}"

CHECK=0 ALLOCATORS="" PATTERN="" TIMEOUT=5 INSTALL=1 BUILD_LIB=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || { echo "security: $1 needs a value" >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --check) CHECK=1 ;;
        --allocators) need_arg "$@"; ALLOCATORS=$2; shift ;;
        --cases) need_arg "$@"; PATTERN=$2; shift ;;
        --timeout) need_arg "$@"; TIMEOUT=$2; shift ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD_LIB=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "security: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -ge 1 ]] || { echo "security: --timeout wants seconds" >&2; exit 2; }

if [[ $CHECK == 1 ]]; then
    ALLOCATORS=${ALLOCATORS:-mmpool,mmpool-secure}
else
    ALLOCATORS=${ALLOCATORS:-$ALL_ALLOCATORS}
fi
IFS=, read -r -a ALLOCS <<<"$ALLOCATORS"
for a in "${ALLOCS[@]}"; do
    case ",$ALL_ALLOCATORS," in
        *",$a,"*) ;;
        *) echo "security: unknown allocator '$a' (known: $ALL_ALLOCATORS)" >&2; exit 2 ;;
    esac
    if [[ $CHECK == 1 && $a != mmpool* ]]; then
        echo "security: --check runs the mmpool builds only (not '$a')" >&2
        exit 2
    fi
done

# Every allocator runs with its defaults, and nothing is preloaded into
# this script's own children but what a case asks for.
for v in $(compgen -e); do
    case $v in
        MALLOC_* | GLIBC_TUNABLES | JE_MALLOC_CONF | MIMALLOC_* | TCMALLOC_* | \
            SCUDO_OPTIONS | MMPOOL_* | LD_PRELOAD) unset "$v" ;;
    esac
done
ulimit -c 0 2>/dev/null || true

mkdir -p "$OUT/runs"

# ---------------------------------------------------------------- packages
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
LIBDIR=/usr/lib/${MULTIARCH:-x86_64-linux-gnu}
ARCH=$(uname -m)

scudo_path() {
    local f
    f=$(dpkg -L libclang-rt-14-dev 2>/dev/null | grep "/libclang_rt.scudo_standalone-$ARCH.so\$" | head -n 1 || true)
    if [[ -z $f ]]; then
        local g
        for g in /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-"$ARCH".so; do
            [[ -f $g ]] && f=$g
        done
    fi
    echo "$f"
}

# allocator -> Debian package
package_of() {
    case $1 in
        jemalloc) echo libjemalloc2 ;;
        mimalloc) echo libmimalloc2.0 ;;
        tcmalloc) echo libtcmalloc-minimal4 ;;
        scudo) echo libclang-rt-14-dev ;;
    esac
}

# allocator -> library to preload ("" for glibc; a missing path if none)
lib_of() {
    case $1 in
        glibc) echo "" ;;
        jemalloc) echo "$LIBDIR/libjemalloc.so.2" ;;
        mimalloc) echo "$LIBDIR/libmimalloc.so.2" ;;
        tcmalloc) echo "$LIBDIR/libtcmalloc_minimal.so.4" ;;
        scudo) local f; f=$(scudo_path); echo "${f:-/nonexistent/libclang_rt.scudo_standalone-$ARCH.so}" ;;
        mmpool) echo "$ROOT/target/release/libmmpool.so" ;;
        mmpool-secure) echo "$ROOT/target/release/libmmpool-secure.so" ;;
    esac
}

missing=()
for a in "${ALLOCS[@]}"; do
    pkg=$(package_of "$a")
    [[ -n $pkg ]] || continue
    lib=$(lib_of "$a")
    [[ -e $lib ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $INSTALL == 1 ]]; then
        echo "security: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 ||
            echo "security: could not install ${missing[*]}; those columns are n/a" >&2
    else
        echo "security: not installed: ${missing[*]} (--no-install); those columns are n/a" >&2
    fi
fi
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v timeout >/dev/null || missing+=(coreutils)
if [[ ${#missing[@]} -gt 0 && $INSTALL == 1 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 || true
fi

# ---------------------------------------------------------------- build
if [[ ! -f target/release/libmmpool.so && $BUILD_LIB == 1 && ",$ALLOCATORS," == *,mmpool,* ]]; then
    echo "security: target/release/libmmpool.so missing; make lib" >&2
    make lib >&2 || echo "security: make lib failed; the mmpool column is n/a" >&2
fi

CC=${CC:-gcc}
CXX=${CXX:-g++}
# -O0 and the volatile function pointers of sec.h: the bugs stay as
# written.  -Werror: a case that draws a warning is a broken case.
CFLAGS=(-O0 -g -Wall -Wextra -Werror -pthread)
build() { # src out compiler
    if [[ ! -x $2 || $1 -nt $2 || $SRC/sec.h -nt $2 ]]; then
        "$3" "${CFLAGS[@]}" -o "$2" "$1" || { echo "security: build of $1 failed" >&2; exit 1; }
    fi
}
build "$SRC/cases.c" "$OUT/cases" "$CC"
build "$SRC/cases_cxx.cpp" "$OUT/cases_cxx" "$CXX"

CASES=()
declare -A BIN_OF=()
for bin in cases cases_cxx; do
    while read -r c; do
        [[ -n $c ]] || continue
        # shellcheck disable=SC2053
        [[ -z $PATTERN || $c == $PATTERN ]] || continue
        CASES+=("$c")
        BIN_OF[$c]=$OUT/$bin
    done < <("$OUT/$bin" --list)
done
[[ ${#CASES[@]} -gt 0 ]] || { echo "security: no case matches '$PATTERN'" >&2; exit 2; }

# ---------------------------------------------------------------- availability
declare -A LIB=() AVAIL=() WHY=() VERSION=()
for a in "${ALLOCS[@]}"; do
    lib=$(lib_of "$a")
    LIB[$a]=$lib
    if [[ -n $lib && ! -f $lib ]]; then
        AVAIL[$a]=0
        WHY[$a]="${lib#"$ROOT"/} not found"
        continue
    fi
    # The allocator must at least run a program that does nothing wrong.
    if ! env ${lib:+LD_PRELOAD="$lib"} "$OUT/cases" --list >/dev/null 2>"$OUT/runs/$a.smoke.err"; then
        AVAIL[$a]=0
        WHY[$a]="a correct program fails under it: $(head -n 1 "$OUT/runs/$a.smoke.err")"
        continue
    fi
    AVAIL[$a]=1
    case $a in
        glibc) VERSION[$a]="glibc $(dpkg-query -W -f '${Version}' libc6 2>/dev/null || ldd --version | head -n 1)" ;;
        mmpool*) VERSION[$a]="$a ${lib#"$ROOT"/} (commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))" ;;
        *) VERSION[$a]="$a $(dpkg-query -W -f '${Version}' "$(package_of "$a")" 2>/dev/null || echo '?') ${lib}" ;;
    esac
done

# ---------------------------------------------------------------- run
# Outcome of one run, in globals:
#   KIND     pass | held | signal | exit | timeout | setup
#   STOPPED  1 when the allocator stopped the bug (signal, exit, held)
#   CELL     the table's text
#   MSG      first `mmpool: ` line of stderr ("" if none; mmpool builds)
#   FIRST    first line of stderr
#   DETAIL   what the case said after its marker
classify() { # rc stdout stderr allocator
    local rc=$1 o=$2 e=$3 a=$4
    KIND="" STOPPED=0 CELL="" DETAIL=""
    FIRST=$(head -n 1 "$e" | tr -d '\r' | cut -c 1-160)
    MSG=""
    if [[ $a == mmpool* ]]; then
        MSG=$(grep -m 1 '^mmpool: ' "$e" | cut -c 1-160 || true)
    fi
    if grep -q '^NOT STOPPED: ' "$o"; then
        KIND=pass CELL="NOT STOPPED"
        DETAIL=$(sed -n 's/^NOT STOPPED: [^ ]* *(\(.*\))$/\1/p' "$o" | head -n 1)
    elif grep -q '^PROTECTED: ' "$o"; then
        KIND=held STOPPED=1 CELL=held
        DETAIL=$(sed -n 's/^PROTECTED: [^ ]* *(\(.*\))$/\1/p' "$o" | head -n 1)
    elif ! grep -q '^BUG: ' "$o" || grep -q '^SETUP FAILED: ' "$o"; then
        KIND=setup CELL="setup (rc $rc)"
        DETAIL=$(sed -n 's/^SETUP FAILED: [^ ]* *(\(.*\))$/\1/p' "$o" | head -n 1)
    elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
        KIND=timeout CELL=timeout
    elif [[ $rc -gt 128 ]]; then
        KIND=signal STOPPED=1 CELL="SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
    elif [[ $rc -ne 0 ]]; then
        KIND=exit STOPPED=1 CELL="exit $rc"
    else
        KIND=setup CELL="exit 0, no marker"
    fi
    if [[ -n $MSG && $STOPPED == 1 && $KIND != held ]]; then
        CELL+="+msg"
    fi
}

# For --check: the outcome in expected.txt's words (see that file).
label() {
    case $KIND in
        pass) echo pass ;;
        held) echo held ;;
        timeout) echo timeout ;;
        setup) echo setup ;;
        signal | exit)
            if [[ -n $MSG ]]; then
                if [[ $MSG =~ 0x[0-9a-f]+ ]]; then echo stop; else echo stop-without-address; fi
            elif [[ $CELL == SIGSEGV* || $CELL == SIGBUS* ]]; then
                echo fault
            else
                echo glibc
            fi
            ;;
    esac
}

declare -A R_STOP=() R_CELL=() R_MSG=() R_FIRST=() R_DETAIL=() R_LABEL=() R_RC=()
START=$SECONDS
for a in "${ALLOCS[@]}"; do
    if [[ ${AVAIL[$a]} != 1 ]]; then
        echo "security: $a n/a: ${WHY[$a]}" >&2
        continue
    fi
    echo "security: ${#CASES[@]} cases under $a" >&2
    lib=${LIB[$a]}
    mkdir -p "$OUT/runs/$a"
    for c in "${CASES[@]}"; do
        o=$OUT/runs/$a/$c.out e=$OUT/runs/$a/$c.err
        rc=0
        # The subshell reaps the case, so bash reports no "Aborted" here.
        (
            timeout -k 2 "$TIMEOUT" env ${lib:+LD_PRELOAD="$lib"} "${BIN_OF[$c]}" "$c" >"$o" 2>"$e"
            exit $?
        ) 2>/dev/null || rc=$?
        classify "$rc" "$o" "$e" "$a"
        k="$a|$c"
        R_STOP[$k]=$STOPPED R_CELL[$k]=$CELL R_MSG[$k]=$MSG
        R_FIRST[$k]=$FIRST R_DETAIL[$k]=$DETAIL R_RC[$k]=$rc
        [[ $a == mmpool* ]] && R_LABEL[$k]=$(label)
    done
done
ELAPSED=$((SECONDS - START))

# ---------------------------------------------------------------- report
class_of() {
    case $1 in
        double_free_*) echo "double free" ;;
        invalid_free_*) echo "invalid free" ;;
        overflow_*) echo "overflow" ;;
        underflow_*) echo "underflow" ;;
        write_after_free_*) echo "write after free" ;;
        malloc0_*) echo "malloc(0) read/write" ;;
        reuse_immediate_*) echo "immediate reuse" ;;
        not_zeroed_after_free_*) echo "not zeroed after free" ;;
        not_zeroed_*) echo "not zeroed" ;;
        impossible_*) echo "impossible size" ;;
        exec_heap_*) echo "executable heap" ;;
        delete_* | sized_delete_*) echo "new/delete mismatch" ;;
        *) echo other ;;
    esac
}

if [[ $CHECK == 1 ]]; then
    MD=$OUT/check.md CSV=$OUT/check.csv
else
    MD=$OUT/results.md CSV=$OUT/results.csv
fi

csvq() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }
{
    echo "case,class,allocator,outcome,stopped,exit_status,mmpool_message,stderr_first_line,detail,label"
    for a in "${ALLOCS[@]}"; do
        for c in "${CASES[@]}"; do
            k="$a|$c"
            if [[ ${AVAIL[$a]} != 1 ]]; then
                echo "$c,$(csvq "$(class_of "$c")"),$a,n/a,,,,,,"
                continue
            fi
            printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$c" "$(csvq "$(class_of "$c")")" "$a" \
                "$(csvq "${R_CELL[$k]}")" "${R_STOP[$k]}" "${R_RC[$k]}" "$(csvq "${R_MSG[$k]}")" \
                "$(csvq "${R_FIRST[$k]}")" "$(csvq "${R_DETAIL[$k]}")" "${R_LABEL[$k]:-}"
        done
    done
} >"$CSV"

cell() { # allocator case
    if [[ ${AVAIL[$1]} != 1 ]]; then echo "n/a"; else echo "${R_CELL[$1|$2]}"; fi
}
stopped_count() { # allocator [class]
    local n=0 c
    for c in "${CASES[@]}"; do
        [[ -z ${2:-} || $(class_of "$c") == "$2" ]] || continue
        [[ ${R_STOP[$1|$c]:-0} == 1 ]] && n=$((n + 1))
    done
    echo "$n"
}
class_total() {
    local n=0 c
    for c in "${CASES[@]}"; do [[ $(class_of "$c") == "$1" ]] && n=$((n + 1)); done
    echo "$n"
}

class_table() {
    local a c cl seen=" "
    printf '| class | cases |'
    for a in "${ALLOCS[@]}"; do printf ' %s |' "$a"; done
    echo
    printf '| --- | ---: |'
    for a in "${ALLOCS[@]}"; do printf ' ---: |'; done
    echo
    for c in "${CASES[@]}"; do
        cl=$(class_of "$c")
        [[ $seen == *" $cl;"* ]] && continue
        seen+="$cl; "
        printf '| %s | %s |' "$cl" "$(class_total "$cl")"
        for a in "${ALLOCS[@]}"; do
            if [[ ${AVAIL[$a]} == 1 ]]; then printf ' %s |' "$(stopped_count "$a" "$cl")"; else printf ' n/a |'; fi
        done
        echo
    done
    printf '| **stopped** | **%s** |' "${#CASES[@]}"
    for a in "${ALLOCS[@]}"; do
        if [[ ${AVAIL[$a]} == 1 ]]; then printf ' **%s** |' "$(stopped_count "$a")"; else printf ' n/a |'; fi
    done
    echo
}

{
    echo "# Heap-bug suite: what each allocator stops"
    echo
    echo "\`$COMMAND\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), ${#CASES[@]} cases, ${ELAPSED}s."
    echo "Each case is its own process doing one heap bug (c-tests/security/); every"
    echo "allocator runs with its default settings."
    echo
    for a in "${ALLOCS[@]}"; do
        if [[ ${AVAIL[$a]} == 1 ]]; then echo "- ${VERSION[$a]}"; else echo "- $a: n/a (${WHY[$a]})"; fi
    done
    echo
    echo "Cells: a signal (SIGABRT: an allocator check; SIGSEGV/SIGBUS: a guard page"
    echo "or unmapped memory) or \`exit N\`: stopped; \`+msg\`: an mmpool build printed a"
    echo "\`mmpool: \` line; \`held\`: a property case found the allocator safe;"
    echo "\`NOT STOPPED\`: the program went on; \`timeout\`, \`setup\`: hung, or died"
    echo "before the bug (not stopped)."
    echo
    echo "## Stopped, per class"
    echo
    class_table
    echo
    echo "## Every case"
    echo
    printf '| case |'
    for a in "${ALLOCS[@]}"; do printf ' %s |' "$a"; done
    echo
    printf '| --- |'
    for a in "${ALLOCS[@]}"; do printf ' --- |'; done
    echo
    for c in "${CASES[@]}"; do
        printf '| %s |' "$c"
        for a in "${ALLOCS[@]}"; do printf ' %s |' "$(cell "$a" "$c")"; done
        echo
    done
    printf '| **total** |'
    for a in "${ALLOCS[@]}"; do
        if [[ ${AVAIL[$a]} == 1 ]]; then
            printf ' stopped %s of %s |' "$(stopped_count "$a")" "${#CASES[@]}"
        else
            printf ' n/a |'
        fi
    done
    echo
    if [[ ${AVAIL[glibc]:-0} == 1 ]]; then
        for m in mmpool mmpool-secure; do
            [[ ${AVAIL[$m]:-0} == 1 ]] || continue
            echo
            echo "## Stopped by glibc, not by $m"
            echo
            n=0
            for c in "${CASES[@]}"; do
                if [[ ${R_STOP[glibc|$c]} == 1 && ${R_STOP[$m|$c]} != 1 ]]; then
                    echo "- $c (glibc: ${R_CELL[glibc|$c]}${R_FIRST[glibc|$c]:+, \`${R_FIRST[glibc|$c]}\`})"
                    n=$((n + 1))
                fi
            done
            [[ $n -gt 0 ]] || echo "(none)"
        done
    fi
    avail=()
    for a in "${ALLOCS[@]}"; do [[ ${AVAIL[$a]} == 1 ]] && avail+=("$a"); done
    if [[ ${#avail[@]} -gt 1 ]]; then
        echo
        echo "## Stopped by none of ${avail[*]}"
        echo
        n=0
        for c in "${CASES[@]}"; do
            any=0
            for a in "${avail[@]}"; do [[ ${R_STOP[$a|$c]} == 1 ]] && any=1; done
            if [[ $any == 0 ]]; then echo "- $c"; n=$((n + 1)); fi
        done
        [[ $n -gt 0 ]] || echo "(none)"
    fi
} >"$MD"

# ---------------------------------------------------------------- summary
if [[ $CHECK == 0 ]]; then
    echo "Heap-bug cases stopped, per class ($MD has every case):"
    echo
    class_table
    echo
fi
printf 'security: stopped, of %s cases:' "${#CASES[@]}"
for a in "${ALLOCS[@]}"; do
    if [[ ${AVAIL[$a]} == 1 ]]; then printf ' %s %s,' "$a" "$(stopped_count "$a")"; else printf ' %s n/a,' "$a"; fi
done
echo " (${ELAPSED}s; $MD, $CSV)"

[[ $CHECK == 1 ]] || exit 0

# ---------------------------------------------------------------- --check
if [[ ! -f $EXPECTED ]]; then
    echo "security --check: $EXPECTED missing" >&2
    exit 1
fi
if [[ ${AVAIL[mmpool]:-0} != 1 && ",$ALLOCATORS," == *,mmpool,* ]]; then
    echo "security --check: FAIL: mmpool n/a (${WHY[mmpool]}); build it with make lib"
    exit 1
fi
declare -A EXP_DEFAULT=() EXP_SECURE=()
bad_lines=()
while read -r name def sec rest; do
    [[ -z $name || $name == \#* ]] && continue
    one='(stop|fault|glibc|held|pass)'
    if [[ ! $def =~ ^$one(\|$one)*$ || ! $sec =~ ^$one(\|$one)*$ || (-n $rest && $rest != \#*) ]]; then
        bad_lines+=("$name $def $sec $rest")
        continue
    fi
    EXP_DEFAULT[$name]=$def EXP_SECURE[$name]=$sec
done <"$EXPECTED"

mismatches=()
for l in ${bad_lines[@]+"${bad_lines[@]}"}; do
    mismatches+=("expected.txt: malformed line: $l")
done
if [[ -z $PATTERN ]]; then
    for c in "${!EXP_DEFAULT[@]}"; do
        [[ -n ${BIN_OF[$c]:-} ]] || mismatches+=("expected.txt names $c, which is no case")
    done
fi
checked=0
for a in "${ALLOCS[@]}"; do
    if [[ ${AVAIL[$a]} != 1 ]]; then
        echo "security --check: $a n/a (${WHY[$a]}): its column of expected.txt is not checked"
        continue
    fi
    checked=$((checked + 1))
    for c in "${CASES[@]}"; do
        if [[ -z ${EXP_DEFAULT[$c]:-} ]]; then
            [[ $a == mmpool ]] && mismatches+=("$c: no line in expected.txt")
            continue
        fi
        if [[ $a == mmpool ]]; then want=${EXP_DEFAULT[$c]}; else want=${EXP_SECURE[$c]}; fi
        got=${R_LABEL[$a|$c]}
        [[ "|$want|" == *"|$got|"* ]] && continue
        k="$a|$c"
        how="${R_CELL[$k]}"
        [[ -n ${R_DETAIL[$k]} ]] && how+=": ${R_DETAIL[$k]}"
        [[ -n ${R_FIRST[$k]} ]] && how+="; stderr: ${R_FIRST[$k]}"
        mismatches+=("$c: $a expected $want, got $got ($how)")
    done
done
if [[ ${#mismatches[@]} -gt 0 ]]; then
    echo "security --check: FAIL: ${#mismatches[@]} mismatch(es) with $EXPECTED:"
    printf '  %s\n' "${mismatches[@]}"
    echo "  (outputs: $OUT/runs/<allocator>/<case>.{out,err}; a better outcome than expected"
    echo "   is a mismatch too: update expected.txt so that it is kept)"
    exit 1
fi
echo "security --check: ${#CASES[@]} cases as expected for $checked mmpool build(s)"
