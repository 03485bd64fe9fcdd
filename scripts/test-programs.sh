#!/bin/bash
# Real programs under the pool: each program runs once natively and once
# with LD_PRELOAD=<lib>, with the same input, environment and working
# directory; stdout and the exit status must be identical.  Every case also
# proves that the preload took effect (LD_DEBUG: the library is loaded in
# every process of the family and malloc binds to it), so a broken
# LD_PRELOAD cannot pass silently.
#
# usage: scripts/test-programs.sh [path-to-lib.so]   (default: target/release/libmmpool.so)
#   MMPOOL_PROGRAMS="python git"   run only these cases
#   MMPOOL_PROGRAMS_TIMEOUT=90     seconds allowed per run (default 90)
#
# Output: "PASS name (1.3s)" (the time of the run under the preload) or
# "FAIL name: reason" with a short diff and the stderr tail; the last line
# is "programs: N passed, M failed"; the exit status is non-zero when
# anything failed.  Needs Debian 12 (installs missing packages with apt).
#
# The case commands below are single-quoted on purpose: they expand in the
# run's own shell, with the run's environment.
# shellcheck disable=SC2016
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=$ROOT/c-tests/programs
LIB_ARG=${1:-$ROOT/target/release/libmmpool.so}
RUN_TIMEOUT=${MMPOOL_PROGRAMS_TIMEOUT:-90}
ONLY=${MMPOOL_PROGRAMS:-}
PY=/usr/bin/python3

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s (%s)\n' "$1" "$2"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s: %s\n' "$1" "$2"; }
summary() {
    printf 'programs: %d passed, %d failed\n' "$passed" "$failed"
    [ "$failed" -eq 0 ]
}
indent() { sed -e 's/^/    /'; }

# ---------------------------------------------------------------- packages
# Install what is missing (fresh Debian 12, as root); apt-get update runs at
# most once, and only when something is missing.
ensure_packages() {
    local missing=()
    [ -x "$PY" ] || missing+=(python3)
    { command -v perl >/dev/null && perl -MDigest::MD5 -e 1 2>/dev/null; } || missing+=(perl)
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    command -v gcc >/dev/null || missing+=(gcc)
    [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
    command -v g++ >/dev/null || missing+=(g++)
    command -v git >/dev/null || missing+=(git)
    local c
    for c in sort sha256sum cksum timeout mktemp head tail; do
        command -v "$c" >/dev/null || { missing+=(coreutils); break; }
    done
    command -v cmp >/dev/null && command -v diff >/dev/null || missing+=(diffutils)
    command -v awk >/dev/null || missing+=(mawk)
    command -v tar >/dev/null || missing+=(tar)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v gzip >/dev/null || missing+=(gzip)
    command -v find >/dev/null || missing+=(findutils)
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "test-programs: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-programs: not root, cannot install: ${missing[*]}" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null &&
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if ! ensure_packages; then
    fail setup "could not install the packages the cases need"
    summary
    exit 1
fi

# ---------------------------------------------------------------- library
if [ ! -f "$LIB_ARG" ]; then
    fail setup "library not found: $LIB_ARG (run 'make lib' first)"
    summary
    exit 1
fi
LIB=$(readlink -f "$LIB_ARG")

# ---------------------------------------------------------------- workspace
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mmpool-programs.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
IN=$TMP/in    # shared, read-only inputs, generated once (natively)
W=$TMP/work   # the working directory of every run, recreated before each
mkdir -p "$IN" "$TMP/home"

# Inputs: a generated C file, a large text file for sort/awk/bash, a tree
# for tar.  Generated natively, before any run, so both runs read the same.
make_inputs() {
    set -e
    "$PY" "$PROG/gen_c.py" 200 > "$IN/big.c"
    "$PY" - "$IN/lines.txt" <<'EOF'
import random, sys
rng = random.Random(99)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(20000)]
with open(sys.argv[1], "w") as f:
    for i in range(400000):
        f.write("%d,%s,%.4f,%s\n" % (rng.randint(-10**6, 10**7), rng.choice(words), rng.uniform(-1e3, 1e3),
                                     " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))))
EOF
    mkdir -p "$IN/tree"
    cp -r "$PROG" "$IN/tree/programs"
    cp "$IN/big.c" "$IN/tree/"
    head -n 100000 "$IN/lines.txt" | split -l 25000 -d - "$IN/tree/part-"
    printf 'int main(void) { return 0; }\n' > "$IN/tiny.c"
    printf '#include <map>\n#include <string>\nint main() { std::map<std::string, int> m; m["a"] = 1; return m.size() == 1 ? 0 : 1; }\n' > "$IN/tiny.cpp"
}
# (not in an if or ||: set -e is ignored inside a tested command)
(make_inputs) > "$TMP/inputs.log" 2>&1
inputs_rc=$?
if [ "$inputs_rc" -ne 0 ]; then
    fail setup "could not generate the inputs:"
    tail -n 5 "$TMP/inputs.log" | indent
    summary
    exit 1
fi

# One fixed environment for both runs.  PATH is the standard one (no pyenv
# shims or other user tools); everything that could vary is pinned.
BASE_ENV=(
    env -i
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    HOME="$TMP/home" USER="$(id -un)" LOGNAME="$(id -un)" SHELL=/bin/bash
    LC_ALL=C LANG=C TZ=UTC
    PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1
    PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
    SOURCE_DATE_EPOCH=1700000000
    GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    TMPDIR="$W/tmp"
    PROG="$PROG" IN="$IN" PY="$PY"
)

# run_one MODE CMD -> $TMP/MODE.{out,err,rc,ms}; MODE is ref (native) or pre
run_one() {
    local mode=$1 cmd=$2 pre=() start end rc
    [ "$mode" = pre ] && pre=(LD_PRELOAD="$LIB")
    rm -rf "$W"
    mkdir -p "$W/tmp"
    start=$(date +%s%N)
    # (the outer 2>/dev/null hides this shell's own "Aborted"-style job
    # messages: timeout re-raises its child's fatal signal on itself)
    { (cd "$W" && exec timeout -k 5 "$RUN_TIMEOUT" "${BASE_ENV[@]}" "${pre[@]}" /bin/bash -c "set -eo pipefail; $cmd") \
        > "$TMP/$mode.out" 2> "$TMP/$mode.err" < /dev/null; } 2>/dev/null
    rc=$?
    end=$(date +%s%N)
    echo "$rc" > "$TMP/$mode.rc"
    echo $(( (end - start) / 1000000 )) > "$TMP/$mode.ms"
}

describe_rc() {
    local rc=$1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "timed out after ${RUN_TIMEOUT}s (rc $rc)"
    elif [ "$rc" -gt 128 ] && [ "$rc" -le 192 ]; then
        echo "exit status $rc (killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))?)"
    else
        echo "exit status $rc"
    fi
}

stderr_tail() {
    if [ -s "$TMP/$1.err" ]; then
        echo "  stderr tail ($1):"
        tail -n 8 "$TMP/$1.err" | cut -c1-200 | indent
    else
        echo "  stderr ($1): empty"
    fi
}

# check_preload CMD PROGRAM... : run CMD under the preload with LD_DEBUG and
# require that (a) every process loaded the library and bound malloc to it,
# and (b) each named PROGRAM (basename of what was exec'd) was among them.
# Prints the reason and returns 1 on failure.
check_preload() {
    local cmd=$1
    shift
    local dbg=$TMP/ld-debug
    rm -rf "$W" "$dbg"
    mkdir -p "$W/tmp" "$dbg"
    { (cd "$W" && exec timeout -k 5 "$RUN_TIMEOUT" "${BASE_ENV[@]}" LD_PRELOAD="$LIB" \
        LD_DEBUG=files,bindings LD_DEBUG_OUTPUT="$dbg/ld" /bin/bash -c "set -eo pipefail; $cmd") \
        > "$TMP/check.out" 2> "$TMP/check.err" < /dev/null; } 2>/dev/null
    local rc=$?
    if grep -q "cannot be preloaded" "$TMP/check.err"; then
        echo "ld.so could not preload the library:"
        grep -m 1 "cannot be preloaded" "$TMP/check.err" | indent
        return 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "preload check command failed: $(describe_rc "$rc")"
        tail -n 5 "$TMP/check.err" | cut -c1-200 | indent
        return 1
    fi
    # One process image = one load of libc.so.6 (per pid: exec starts a new
    # image in the same pid).  Every image must also have loaded the library
    # (before libc, as a preload) and bound some malloc reference to it.
    # (libc's own malloc reference is a GLOB_DAT relocation resolved at
    # startup; it may bind to the executable's PLT stub, e.g. in a non-PIE
    # python3, whose own reference then binds to the library.)
    local stats images loaded bound reached
    stats=$(cat "$dbg"/ld.* 2>/dev/null | awk -v lib="$LIB" '
        function prog(line) { sub(/.*needed by /, "", line); sub(/ \[0\]$/, "", line); sub(/.*\//, "", line); return line }
        { pid = $1 }
        index($0, "file=" lib " [0];  needed by ") { reached[prog($0)] = 1 }
        index($0, "file=libc.so.6 [0];  needed by ") { p = prog($0); if (p !~ /\.so/) exes[p] = 1 }
        index($0, "file=libc.so.6 [0];  generating link map") { images++; nimg[pid]++ }
        index($0, "file=" lib " [0];  generating link map") { loaded++ }
        /binding file / && index($0, " to " lib " [0]: normal symbol `malloc\047") { bound_img[pid ":" nimg[pid]] = 1 }
        END {
            for (k in bound_img) bound++
            printf "%d %d %d", images, loaded, bound
            for (r in reached) printf " %s", r
            for (e in exes) if (!(e in reached)) printf " !%s", e
        }')
    read -r images loaded bound reached <<< "$stats"
    if [ "$images" -eq 0 ]; then
        echo "preload check: no LD_DEBUG output (LD_DEBUG_OUTPUT ignored?)"
        return 1
    fi
    if [ "$loaded" -ne "$images" ] || [ "$bound" -lt "$images" ]; then
        echo "preload not in effect: of $images processes, $loaded loaded the library and $bound bound malloc to it (programs: $reached; ! = library not loaded)"
        return 1
    fi
    local want
    for want in "$@"; do
        case " $reached " in
            *" $want "*) ;;
            *) echo "preload check: no '$want' process ran with the library (saw: ${reached:-none})"
               return 1 ;;
        esac
    done
    return 0
}

# case NAME CHECK_CMD "CHECK_PROGRAMS" CMD
case_() {
    local name=$1 check_cmd=$2 check_progs=$3 cmd=$4
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
    local why
    # shellcheck disable=SC2086 # check_progs is a word list
    if ! why=$(check_preload "$check_cmd" $check_progs); then
        fail "$name" "$why"
        return
    fi
    run_one ref "$cmd"
    local ref_rc pre_rc
    ref_rc=$(cat "$TMP/ref.rc")
    if [ "$ref_rc" -ne 0 ]; then
        fail "$name" "reference run (no preload) failed: $(describe_rc "$ref_rc") -- harness or environment problem"
        stderr_tail ref
        return
    fi
    if [ ! -s "$TMP/ref.out" ]; then
        fail "$name" "reference run printed nothing"
        return
    fi
    run_one pre "$cmd"
    pre_rc=$(cat "$TMP/pre.rc")
    local secs
    secs=$(awk -v ms="$(cat "$TMP/pre.ms")" 'BEGIN { printf "%.1fs", ms / 1000 }')
    if [ "$pre_rc" -ne "$ref_rc" ]; then
        fail "$name" "under the preload: $(describe_rc "$pre_rc") (reference: 0) after $secs"
        if ! cmp -s "$TMP/ref.out" "$TMP/pre.out"; then
            echo "  stdout diff (reference vs preload):"
            diff "$TMP/ref.out" "$TMP/pre.out" | head -n 12 | cut -c1-200 | indent
        fi
        stderr_tail pre
        return
    fi
    if ! cmp -s "$TMP/ref.out" "$TMP/pre.out"; then
        fail "$name" "stdout differs under the preload ($(wc -l < "$TMP/ref.out") vs $(wc -l < "$TMP/pre.out") lines)"
        diff "$TMP/ref.out" "$TMP/pre.out" | head -n 16 | cut -c1-200 | indent
        stderr_tail pre
        return
    fi
    pass "$name" "$secs"
}

# ---------------------------------------------------------------- cases
# Each command runs under /bin/bash -c "set -eo pipefail; CMD" in the
# (empty) working directory, so any failing step fails the run; with the
# preload, bash and everything it starts inherit LD_PRELOAD.

# python: dict/list/str churn, json, classes, re, threads, fork (multiprocessing), subprocess.
# The check also asks the pool itself: malloc'd blocks must be its own.
case_ python \
    '"$PY" -c "
import ctypes, subprocess, sys
lib = ctypes.CDLL(None)
lib.mmpool_owns.restype = ctypes.c_bool
lib.mmpool_owns.argtypes = [ctypes.c_void_p]
lib.mmpool_version.restype = ctypes.c_char_p
lib.malloc.restype = ctypes.c_void_p
lib.malloc.argtypes = [ctypes.c_size_t]
lib.free.argtypes = [ctypes.c_void_p]
for n in (1, 24, 4096, 100000, 5 << 20):
    p = lib.malloc(n)
    assert p and lib.mmpool_owns(p), (\"malloc not served by the pool\", n)
    lib.free(p)
assert \"libmmpool\" in open(\"/proc/self/maps\").read()
subprocess.run([sys.executable, \"-c\", \"pass\"], check=True)
print(lib.mmpool_version().decode())
"' \
    "python3" \
    '"$PY" "$PROG/workload.py"'

# perl: hash/array/regex churn, sort, sprintf; digests.
case_ perl \
    'perl -e "open my \$m, q(<), q(/proc/self/maps) or die; local \$/; <\$m> =~ /libmmpool/ or die qq(not mapped\n)"' \
    "perl" \
    'perl "$PROG/workload.pl"'

# sqlite3: ~120k rows by recursive CTE, indexes, joins, group by, window
# functions, updates/deletes, VACUUM, integrity_check.
case_ sqlite3 \
    'sqlite3 :memory: "select sqlite_version();"' \
    "sqlite3" \
    'sqlite3 -batch test.db < "$PROG/workload.sql"
     sqlite3 test.db "PRAGMA integrity_check; SELECT count(*) FROM orders;"'

# gcc: a generated ~7000-line C file at -O2 -g; the assembly, the object,
# the linked executable and the executable's output must all be identical
# (gcc, cc1, as, collect2 and ld all run under the preload).
case_ gcc \
    'gcc -O2 -o tiny "$IN/tiny.c" && ./tiny' \
    "gcc cc1 as collect2 ld tiny" \
    'cp "$IN/big.c" . &&
     gcc -O2 -g -Wall -frandom-seed=mmpool -save-temps -c big.c &&
     gcc -O2 -o big big.o &&
     sha256sum big.i big.s big.o big &&
     ./big'

# g++: an STL/regex/threads program at -O2 (cc1plus under the preload), then
# the program itself (operator new/delete on the pool, 4 threads).
case_ g++ \
    'g++ -O2 -o tiny "$IN/tiny.cpp" && ./tiny' \
    "g++ cc1plus as collect2 ld tiny" \
    'cp "$PROG/stl.cpp" . &&
     g++ -O2 -Wall -Wextra -pthread -frandom-seed=mmpool -save-temps -c stl.cpp &&
     g++ -pthread -o stl stl.o &&
     sha256sum stl.ii stl.s stl.o stl &&
     ./stl'

# git: many files and commits with fixed identity and dates, branches,
# merges, log --stat, blame, grep, gc --aggressive, fsck, archive.
case_ git \
    'git init -q r && cd r && git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x && git gc -q && git fsck --no-progress' \
    "git bash" \
    'bash "$PROG/git-workload.sh"'

# sort: 400k lines (20 MB), plain/numeric/unique/keyed/general-numeric, and a
# tiny buffer that forces temporary files and a multi-way merge, 2 threads.
case_ sort \
    'sort --parallel=2 "$IN/lines.txt" >/dev/null' \
    "sort" \
    'L=$IN/lines.txt
     sort "$L" > a && sort -c a && sha256sum < a
     sort -n "$L" > b && sort -n -c b && sha256sum < b
     sort -u "$L" | sha256sum
     sort -t, -k2,2 "$L" | sha256sum
     sort -u -t, -k2,2 "$L" | wc -l
     sort -t, -k3,3g -k1,1nr "$L" | sha256sum
     sort -S 1M -T "$TMPDIR" --parallel=2 -t, -k4 "$L" > c && sha256sum < c
     sort -m a a | sha256sum
     sort -r -n -k1,1 -t, --parallel=2 "$L" | sed -n 1,5p'

# awk: associative arrays, split, gsub, sprintf over the same 400k lines.
case_ awk \
    'awk "BEGIN { while ((getline l < \"/proc/self/maps\") > 0) if (l ~ /libmmpool/) ok = 1; exit !ok }"' \
    "awk" \
    'awk -f "$PROG/workload.awk" "$IN/lines.txt"'

# tar + xz (2 threads) + gzip round trip with reproducible archive metadata,
# plus find.
case_ tar-xz \
    'tar -cJf t.tar.xz -C "$IN" tiny.c && xz -t t.tar.xz && gzip -c t.tar.xz > t.gz' \
    "tar xz gzip" \
    'cp -r "$IN/tree" tree &&
     tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -cf t.tar tree &&
     sha256sum t.tar &&
     xz -T2 --block-size=2MiB -6 -k t.tar && sha256sum t.tar.xz && xz -t t.tar.xz &&
     gzip -n -9 -c t.tar > t.tar.gz && sha256sum t.tar.gz &&
     mkdir x && tar -xJf t.tar.xz -C x && diff -r tree x/tree && echo "xz round trip ok" &&
     mkdir y && gzip -dc t.tar.gz | tar -xf - -C y && diff -r tree y/tree && echo "gzip round trip ok" &&
     find x -type f | sort | xargs sha256sum | sha256sum'

# bash: arrays, associative arrays, pattern substitution (realloc-heavy),
# command substitution (fork+exec).
case_ bash \
    'grep -q libmmpool /proc/$$/maps' \
    "bash" \
    'bash "$PROG/workload.bash"'

summary
