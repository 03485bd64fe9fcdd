#!/usr/bin/env bash
# callgrind.sh - instructions per malloc/free pair, deterministic.
#
#   scripts/callgrind.sh [LIB...]
#
# Runs c-tests/bench/callloop (modes lifo32 and mix, N and 2N iterations)
# under `valgrind --tool=callgrind` with each LIB preloaded (default: the
# shipped target/release/libmmpool.so; `glibc` for the system malloc) and
# prints (Ir(2N) - Ir(N)) / N per mode, so start-up and exit cancel. The
# loop itself costs about 10 instructions per pair (`make bench` measures
# it as the mode `empty`). N is $CALLGRIND_ITERS (default 200000).
# The same numbers as `make bench`'s callgrind table, in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${CALLGRIND_ITERS:-200000}
BIN=target/bench/bin
mkdir -p "$BIN"
if [[ ! -x $BIN/callloop || c-tests/bench/callloop.c -nt $BIN/callloop ]]; then
    gcc -O2 -g -Wall -Wextra -Werror -pthread -o "$BIN/callloop" c-tests/bench/callloop.c
fi
command -v valgrind >/dev/null || {
    echo "callgrind.sh: valgrind is missing (apt-get install valgrind)" >&2
    exit 2
}
libs=("$@")
[[ ${#libs[@]} -gt 0 ]] || libs=(target/release/libmmpool.so)
ir() { # LIB MODE ITERS -> total instructions
    local out
    out=$(mktemp)
    if [[ $1 == glibc ]]; then
        valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/callloop" "$2" "$3" >/dev/null 2>&1
    else
        LD_PRELOAD=$(realpath "$1") valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$BIN/callloop" "$2" "$3" >/dev/null 2>&1
    fi
    sed -n 's/^totals: \([0-9]*\).*/\1/p; s/^summary: \([0-9]*\).*/\1/p' "$out" | head -n 1
    rm -f "$out"
}
for lib in "${libs[@]}"; do
    line="$lib:"
    for mode in lifo32 mix; do
        a=$(ir "$lib" "$mode" "$N")
        b=$(ir "$lib" "$mode" $((2 * N)))
        line+=$(awk -v a="$a" -v b="$b" -v n="$N" -v m="$mode" 'BEGIN { printf "  %s %.1f", m, (b - a) / n }')
    done
    echo "$line"
done
