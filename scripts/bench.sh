#!/usr/bin/env bash
# bench.sh - mmpool against glibc, jemalloc, mimalloc and tcmalloc.
#
#   scripts/bench.sh            full run (make bench): 5 runs per cell, scale 1
#   scripts/bench.sh --quick    short run (make bench-quick): 3 runs, scale 0.2
#
# Options:
#   --runs N            runs per workload and allocator (medians; default 5, quick 3)
#   --scale X           work multiplier for every workload (default 1, quick 0.2)
#   --threads           add a thread-scaling run (1, 2, 4, 8, 16 threads)
#   --threads-only      only the thread-scaling run
#   --workloads LIST    comma-separated subset, e.g. fastpath,redis,rust
#   --allocators LIST   comma-separated subset of glibc,jemalloc,mimalloc,tcmalloc,mmpool
#                       (glibc is always needed: it is the reference)
#   --no-callgrind      skip the callgrind instructions-per-pair measurement
#   --callgrind-iters N iterations of the shorter callgrind run (default 1000000)
#   --timeout S         per-run limit in seconds (default: adaptive, 15x the slowest
#                       successful run of the same workload, at least 20 s)
#   --rebuild           run `make lib` even when target/release/libmmpool.so exists
#   --no-install        never call apt-get
#
# Installs what is missing (libjemalloc2, libmimalloc2.0, libtcmalloc-minimal4,
# valgrind, redis-server, redis-tools, sqlite3) with apt-get, compiles the
# workloads in c-tests/bench/ into target/bench/bin/, builds mmpool with
# `make lib` if it is missing, builds the Rust workload (c-tests/bench/rust-workload,
# once per global allocator; cargo fetches the mimalloc and tikv-jemallocator
# crates and compiles their C code the first time: a few minutes) into
# target/bench/rust/, and writes target/bench/results.{md,csv,json,svg}.
# Anything that cannot be installed or built shows up as FAIL cells.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=target/bench
BIN=$OUT/bin
SRC=c-tests/bench
PY=/usr/bin/python3
MMPOOL_LIB=target/release/libmmpool.so
CFLAGS="-O2 -g -Wall -Wextra -Werror -pthread"
COMMAND="scripts/bench.sh${*:+ $*}"

QUICK=0 RUNS="" SCALE="" THREADS=0 THREADS_ONLY=0 WORKLOADS="" ALLOCATORS=""
CALLGRIND=1 CG_ITERS="" TIMEOUT=0 REBUILD=0 INSTALL=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || { echo "bench: $1 needs a value" >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --runs) need_arg "$@"; RUNS=$2; shift ;;
        --scale) need_arg "$@"; SCALE=$2; shift ;;
        --threads) THREADS=1 ;;
        --threads-only) THREADS_ONLY=1 ;;
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
if [[ $QUICK == 1 ]]; then
    RUNS=${RUNS:-3} SCALE=${SCALE:-0.2} CG_ITERS=${CG_ITERS:-100000}
fi
RUNS=${RUNS:-5} SCALE=${SCALE:-1} CG_ITERS=${CG_ITERS:-1000000}
[[ $RUNS -ge 1 ]] || { echo "bench: --runs must be at least 1" >&2; exit 2; }

START=$SECONDS
mkdir -p "$BIN"

# ---------------------------------------------------------------- packages
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
LIBDIR=/usr/lib/${MULTIARCH:-x86_64-linux-gnu}

install_missing() {
    local missing=()
    [[ -e $LIBDIR/libjemalloc.so.2 ]] || missing+=(libjemalloc2)
    [[ -e $LIBDIR/libmimalloc.so.2 ]] || missing+=(libmimalloc2.0)
    [[ -e $LIBDIR/libtcmalloc_minimal.so.4 ]] || missing+=(libtcmalloc-minimal4)
    command -v valgrind >/dev/null || missing+=(valgrind)
    command -v redis-server >/dev/null || missing+=(redis-server)
    { command -v redis-benchmark && command -v redis-cli; } >/dev/null || missing+=(redis-tools)
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
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

# -------------------------------------------------------------------- rust
RUST_DIR=$SRC/rust-workload
RUST_NOTE=""
if [[ -z $WORKLOADS || ,$WORKLOADS, == *,rust,* ]]; then
    echo "bench: building $RUST_DIR (cargo, log in $OUT/rust-build.log)"
    if ! command -v "${CARGO:-cargo}" >/dev/null; then
        RUST_NOTE="cargo not found"
    elif ! "${CARGO:-cargo}" build --release --locked --manifest-path "$RUST_DIR/Cargo.toml" \
            --target-dir "$OUT/rust" >"$OUT/rust-build.log" 2>&1; then
        RUST_NOTE="cargo build of $RUST_DIR failed (see $OUT/rust-build.log)"
    fi
    [[ -z $RUST_NOTE ]] || echo "bench: $RUST_NOTE; the rust row will show FAIL" >&2
fi

# --------------------------------------------------------------------- run
args=(--repo "$ROOT" --bin "$BIN" --src "$SRC" --out "$OUT" --libdir "$LIBDIR"
      --mmpool "$MMPOOL_LIB" --mmpool-note "$MMPOOL_NOTE" --rust-bin "$OUT/rust/release"
      --rust-note "$RUST_NOTE" --runs "$RUNS" --scale "$SCALE"
      --callgrind-iters "$CG_ITERS" --timeout "$TIMEOUT" --command "$COMMAND")
[[ $QUICK == 1 ]] && args+=(--quick)
[[ $THREADS == 1 ]] && args+=(--threads)
[[ $THREADS_ONLY == 1 ]] && args+=(--threads-only)
[[ $CALLGRIND == 0 ]] && args+=(--no-callgrind)
[[ -n $WORKLOADS ]] && args+=(--workloads "$WORKLOADS")
[[ -n $ALLOCATORS ]] && args+=(--allocators "$ALLOCATORS")

rc=0
"$PY" scripts/bench-run.py "${args[@]}" || rc=$?
echo "bench: done in $((SECONDS - START)) s; see $OUT/results.md"
exit "$rc"
