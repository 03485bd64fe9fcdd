#!/usr/bin/env bash
# bench.sh - mmpool against glibc, jemalloc, mimalloc and tcmalloc; the
# secure build against the default one and scudo; the heap-bug suite.
#
#   scripts/bench.sh            full run (make bench): 5 runs per cell, scale 1
#   scripts/bench.sh --quick    short run (make bench-quick): 3 runs, scale 0.2
#
# Phases, in this order:
#   security  scripts/security.sh: the heap-bug suite (c-tests/security/,
#             about 45 s) under glibc, jemalloc, mimalloc, tcmalloc, scudo
#             and both mmpool builds; its per-class table goes into
#             results.md and is printed at the end
#   main      every workload under glibc, jemalloc, mimalloc, tcmalloc and
#             mmpool, interleaved; then the callgrind fast-path count
#   scaling   with --threads: 1-16 threads, fewer runs, half the scale
#   secure    the C and real-program workloads (not rust) under glibc (the
#             reference), mmpool, mmpool-secure (target/release/libmmpool-secure.so,
#             `make secure`) and scudo (libclang-rt-14-dev), interleaved,
#             min(runs, 3) runs (--quick: 2) at the same scale; the report
#             compares the secure build's time and peak RSS with the default
#             build's (bars: geomeans at most 1.3x and 1.5x) and scudo's
#
# Options:
#   --runs N            runs per workload and allocator (medians; default 5, quick 3)
#   --scale X           work multiplier for every workload (default 1, quick 0.2)
#   --threads           add a thread-scaling run (1, 2, 4, 8, 16 threads)
#   --threads-only      only the thread-scaling run (no secure, no security phase)
#   --no-secure         skip the secure-build phase
#   --secure-only       only the secure-build phase (and the heap-bug suite, unless
#                       --no-security): no main matrix, callgrind or scaling run
#   --secure-runs N     runs per cell of the secure phase (default min(runs, 3);
#                       quick min(runs, 2))
#   --no-security       skip the heap-bug suite (scripts/security.sh)
#   --workloads LIST    comma-separated subset, e.g. fastpath,redis,rust
#   --allocators LIST   comma-separated subset of glibc,jemalloc,mimalloc,tcmalloc,mmpool
#                       (glibc is always needed: it is the reference); the
#                       secure phase always runs its own four
#   --no-callgrind      skip the callgrind instructions-per-pair measurement
#   --callgrind-iters N iterations of the shorter callgrind run (default 1000000)
#   --timeout S         per-run limit in seconds (default: adaptive, 15x the slowest
#                       successful run of the same workload, at least 20 s)
#   --rebuild           run `make lib` (and `make secure`) even when the library exists
#   --no-install        never call apt-get (here nor in scripts/security.sh)
#
# Installs what is missing (libjemalloc2, libmimalloc2.0, libtcmalloc-minimal4,
# valgrind, redis-server, redis-tools, sqlite3; libclang-rt-14-dev for scudo
# when the secure or security phase runs) with apt-get, compiles the
# workloads in c-tests/bench/ into target/bench/bin/, builds mmpool with
# `make lib` and the secure build with `make secure` if they are missing (the
# latter only for the secure and security phases), builds the Rust workload
# (c-tests/bench/rust-workload, once per global allocator; cargo fetches the
# mimalloc and tikv-jemallocator crates and compiles their C code the first
# time: a few minutes) into target/bench/rust/, and writes
# target/bench/results.{md,csv,json,svg} (the heap-bug suite also writes
# target/security/results.{md,csv}).
# Anything that cannot be installed or built shows up as FAIL (or n/a) cells.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=target/bench
BIN=$OUT/bin
SRC=c-tests/bench
PY=/usr/bin/python3
MMPOOL_LIB=target/release/libmmpool.so
SECURE_LIB=target/release/libmmpool-secure.so
CFLAGS="-O2 -g -Wall -Wextra -Werror -pthread"
COMMAND="scripts/bench.sh${*:+ $*}"

QUICK=0 RUNS="" SCALE="" SECURE_RUNS="" THREADS=0 THREADS_ONLY=0 WORKLOADS="" ALLOCATORS=""
CALLGRIND=1 CG_ITERS="" TIMEOUT=0 REBUILD=0 INSTALL=1 SECURE=1 SECURE_ONLY=0 SECURITY=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || { echo "bench: $1 needs a value" >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --runs) need_arg "$@"; RUNS=$2; shift ;;
        --scale) need_arg "$@"; SCALE=$2; shift ;;
        --threads) THREADS=1 ;;
        --threads-only) THREADS_ONLY=1 ;;
        --no-secure) SECURE=0 ;;
        --secure-only) SECURE_ONLY=1 ;;
        --secure-runs) need_arg "$@"; SECURE_RUNS=$2; shift ;;
        --no-security) SECURITY=0 ;;
        --workloads) need_arg "$@"; WORKLOADS=$2; shift ;;
        --allocators) need_arg "$@"; ALLOCATORS=$2; shift ;;
        --no-callgrind) CALLGRIND=0 ;;
        --callgrind-iters) need_arg "$@"; CG_ITERS=$2; shift ;;
        --timeout) need_arg "$@"; TIMEOUT=$2; shift ;;
        --rebuild) REBUILD=1 ;;
        --no-install) INSTALL=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $RUNS =~ ^[0-9]*$ ]] || { echo "bench: --runs wants a number" >&2; exit 2; }
[[ $SECURE_RUNS =~ ^[0-9]*$ ]] || { echo "bench: --secure-runs wants a number" >&2; exit 2; }
# The secure phase runs min(runs, 3) times per cell; --quick: min(runs, 2),
# which keeps what it adds to bench-quick near a minute and a half.
SECURE_CAP=3
if [[ $QUICK == 1 ]]; then
    RUNS=${RUNS:-3} SCALE=${SCALE:-0.2} CG_ITERS=${CG_ITERS:-100000} SECURE_CAP=2
fi
RUNS=${RUNS:-5} SCALE=${SCALE:-1} CG_ITERS=${CG_ITERS:-1000000}
SECURE_RUNS=${SECURE_RUNS:-$((RUNS < SECURE_CAP ? RUNS : SECURE_CAP))}
[[ $RUNS -ge 1 ]] || { echo "bench: --runs must be at least 1" >&2; exit 2; }
[[ $SECURE_RUNS -ge 1 ]] || { echo "bench: --secure-runs must be at least 1" >&2; exit 2; }
if [[ $SECURE_ONLY == 1 && ($SECURE == 0 || $THREADS_ONLY == 1) ]]; then
    echo "bench: --secure-only goes with neither --no-secure nor --threads-only" >&2
    exit 2
fi
# --threads-only is only the scaling run; --secure-only drops main and scaling.
[[ $THREADS_ONLY == 1 ]] && SECURE=0 SECURITY=0
[[ $SECURE_ONLY == 1 ]] && THREADS=0
# The secure build is needed by the secure phase and by the heap-bug suite.
NEED_SECURE=0
[[ $SECURE == 1 || $SECURITY == 1 ]] && NEED_SECURE=1

START=$SECONDS
mkdir -p "$BIN"

# ---------------------------------------------------------------- packages
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
LIBDIR=/usr/lib/${MULTIARCH:-x86_64-linux-gnu}
ARCH=$(uname -m)

# scudo: the standalone scudo of libclang-rt-14-dev (as scripts/security.sh
# finds it); "" when not installed.
scudo_path() {
    local f g
    f=$(dpkg -L libclang-rt-14-dev 2>/dev/null | grep "/libclang_rt.scudo_standalone-$ARCH.so\$" | head -n 1 || true)
    if [[ -z $f ]]; then
        for g in /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-"$ARCH".so; do
            [[ -f $g ]] && f=$g
        done
    fi
    echo "$f"
}

install_missing() {
    local missing=()
    [[ -e $LIBDIR/libjemalloc.so.2 ]] || missing+=(libjemalloc2)
    [[ -e $LIBDIR/libmimalloc.so.2 ]] || missing+=(libmimalloc2.0)
    [[ -e $LIBDIR/libtcmalloc_minimal.so.4 ]] || missing+=(libtcmalloc-minimal4)
    command -v valgrind >/dev/null || missing+=(valgrind)
    command -v redis-server >/dev/null || missing+=(redis-server)
    { command -v redis-benchmark && command -v redis-cli; } >/dev/null || missing+=(redis-tools)
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    [[ $NEED_SECURE == 0 || -n $(scudo_path) ]] || missing+=(libclang-rt-14-dev)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $INSTALL == 0 ]]; then
        echo "bench: missing ${missing[*]} (--no-install): those rows will show FAIL" >&2
        return 0
    fi
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "bench: missing ${missing[*]}, and not root: those rows will show FAIL" >&2
            return 0
        fi
    fi
    echo "bench: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq ||
        echo "bench: apt-get update failed" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        echo "bench: could not install ${missing[*]}: those rows will show FAIL" >&2
}
install_missing

# --------------------------------------------------------------- workloads
echo "bench: compiling $SRC/*.c -> $BIN/"
for src in "$SRC"/*.c; do
    name=$(basename "$src" .c)
    if [[ ! -x $BIN/$name || $src -nt $BIN/$name || $SRC/common.h -nt $BIN/$name ]]; then
        # shellcheck disable=SC2086
        if [[ $name == measure ]]; then
            # static: the wrapper's own pages count in the child's ru_maxrss
            gcc $CFLAGS -static -o "$BIN/$name" "$src" 2>/dev/null ||
                gcc $CFLAGS -o "$BIN/$name" "$src"
        else
            gcc $CFLAGS -o "$BIN/$name" "$src" -ldl
        fi
    fi
done

# ------------------------------------------------------------------ mmpool
MMPOOL_NOTE=""
if [[ -z $ALLOCATORS || ,$ALLOCATORS, == *,mmpool,* ]]; then
    if [[ ! -e $MMPOOL_LIB || $REBUILD == 1 ]]; then
        echo "bench: building mmpool (make lib, log in $OUT/mmpool-build.log)"
        if ! make lib >"$OUT/mmpool-build.log" 2>&1; then
            MMPOOL_NOTE="make lib failed (see $OUT/mmpool-build.log)"
            echo "bench: $MMPOOL_NOTE; mmpool cells will show FAIL" >&2
        fi
    fi
    [[ -n $MMPOOL_NOTE || -e $MMPOOL_LIB ]] || MMPOOL_NOTE="$MMPOOL_LIB not built"
fi
SECURE_NOTE=""
if [[ $NEED_SECURE == 1 ]]; then
    if [[ ! -e $SECURE_LIB || $REBUILD == 1 ]]; then
        echo "bench: building mmpool's secure build (make secure, log in $OUT/mmpool-secure-build.log)"
        if ! make secure >"$OUT/mmpool-secure-build.log" 2>&1; then
            SECURE_NOTE="make secure failed (see $OUT/mmpool-secure-build.log)"
            echo "bench: $SECURE_NOTE; mmpool-secure cells will show FAIL" >&2
        fi
    fi
    [[ -n $SECURE_NOTE || -e $SECURE_LIB ]] || SECURE_NOTE="$SECURE_LIB not built"
fi
SCUDO_LIB=$(scudo_path)

# -------------------------------------------------------------------- rust
RUST_DIR=$SRC/rust-workload
RUST_NOTE=""
if [[ $SECURE_ONLY == 0 && (-z $WORKLOADS || ,$WORKLOADS, == *,rust,*) ]]; then
    echo "bench: building $RUST_DIR (cargo, log in $OUT/rust-build.log)"
    if ! command -v "${CARGO:-cargo}" >/dev/null; then
        RUST_NOTE="cargo not found"
    elif ! "${CARGO:-cargo}" build --release --locked --manifest-path "$RUST_DIR/Cargo.toml" \
            --target-dir "$OUT/rust" >"$OUT/rust-build.log" 2>&1; then
        RUST_NOTE="cargo build of $RUST_DIR failed (see $OUT/rust-build.log)"
    fi
    [[ -z $RUST_NOTE ]] || echo "bench: $RUST_NOTE; the rust row will show FAIL" >&2
fi

# ---------------------------------------------------------- heap-bug suite
# Before the timed runs, so that its table goes into results.md; the suite
# writes target/security/results.md, whose per-class table bench-run.py keeps.
SECURITY_MD=target/security/results.md
SECURITY_LOG=$OUT/security.log
SECURITY_NOTE="" SECURITY_S=0
if [[ $SECURITY == 1 ]]; then
    echo "bench: heap-bug suite (scripts/security.sh, about 45 s, log in $SECURITY_LOG)"
    sec_args=()
    [[ $INSTALL == 0 ]] && sec_args+=(--no-install)
    rm -f "$SECURITY_MD"
    t0=$SECONDS
    sec_rc=0
    scripts/security.sh ${sec_args[@]+"${sec_args[@]}"} >"$SECURITY_LOG" 2>&1 || sec_rc=$?
    SECURITY_S=$((SECONDS - t0))
    if [[ $sec_rc != 0 || ! -f $SECURITY_MD ]]; then
        SECURITY_NOTE="scripts/security.sh failed (exit $sec_rc; see $SECURITY_LOG)"
        echo "bench: $SECURITY_NOTE" >&2
    else
        tail -n 1 "$SECURITY_LOG"
    fi
fi

# --------------------------------------------------------------------- run
args=(--repo "$ROOT" --bin "$BIN" --src "$SRC" --out "$OUT" --libdir "$LIBDIR"
      --mmpool "$MMPOOL_LIB" --mmpool-note "$MMPOOL_NOTE" --rust-bin "$OUT/rust/release"
      --rust-note "$RUST_NOTE" --runs "$RUNS" --scale "$SCALE"
      --callgrind-iters "$CG_ITERS" --timeout "$TIMEOUT" --command "$COMMAND"
      --secure-lib "$SECURE_LIB" --secure-note "$SECURE_NOTE" --scudo "$SCUDO_LIB"
      --secure-runs "$SECURE_RUNS")
[[ $QUICK == 1 ]] && args+=(--quick)
[[ $THREADS == 1 ]] && args+=(--threads)
[[ $THREADS_ONLY == 1 ]] && args+=(--threads-only)
[[ $CALLGRIND == 0 ]] && args+=(--no-callgrind)
[[ -n $WORKLOADS ]] && args+=(--workloads "$WORKLOADS")
[[ -n $ALLOCATORS ]] && args+=(--allocators "$ALLOCATORS")
[[ $SECURE == 0 ]] && args+=(--no-secure)
[[ $SECURE_ONLY == 1 ]] && args+=(--secure-only)
if [[ $SECURITY == 1 ]]; then
    args+=(--security-md "$SECURITY_MD" --security-note "$SECURITY_NOTE"
           --security-seconds "$SECURITY_S")
fi

rc=0
"$PY" scripts/bench-run.py "${args[@]}" || rc=$?

# The secure-build and heap-bug sections of results.md, on the terminal.
section() { # heading: from "## heading" to the next "## "
    awk -v h="## $1" '$0 == h { p = 1; print; next } p && /^## / { exit } p' "$OUT/results.md"
}
if [[ $rc == 0 && -f $OUT/results.md && ($SECURE == 1 || $SECURITY == 1) ]]; then
    echo
    [[ $SECURE == 1 ]] && section "Secure build"
    [[ $SECURITY == 1 ]] && section "Heap-bug suite"
fi
echo "bench: done in $((SECONDS - START)) s; see $OUT/results.md"
exit "$rc"
