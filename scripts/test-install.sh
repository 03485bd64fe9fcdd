#!/usr/bin/env bash
# scripts/test-install.sh -- `make install` / `make uninstall` into temporary
# prefixes, as a C programmer who uses the installed library would.
#
#   scripts/test-install.sh
#
# Builds both libraries (make lib secure), then:
#   - the build tree: SONAMEs libmmpool.so.MAJOR and libmmpool-secure.so.MAJOR
#     and their target/release links; the in-tree scripts/mmpool, with and
#     without --secure, and when it runs make (in a stand-in tree)
#   - DESTDIR=stage PREFIX=/opt/...: every file, mode, link and SONAME under
#     the stage (both libraries), the final (not the staged) paths in
#     mmpool.pc, mmpool-secure.pc and bin/mmpool, pkg-config with
#     PKG_CONFIG_SYSROOT_DIR, uninstall
#   - PREFIX=tmp (already holding other files): pkg-config's answers for
#     mmpool and mmpool-secure, a C program built with
#     `pkg-config --cflags --libs mmpool` alone and run (mmpool_owns,
#     mmpool_version, malloc served by the pool), the same with mmpool-secure
#     (linked to and run on libmmpool-secure), a program run through the
#     installed bin/mmpool and bin/mmpool --secure (malloc resolves to the
#     installed library, LD_PRELOAD kept, MMPOOL_STATS passed through), then
#     uninstall leaves the prefix as it was (but for empty directories)
#   - LIBDIR/INCLUDEDIR/BINDIR/PKGCONFIGDIR overrides; a relative PREFIX and
#     a LIBDIR holding ':' are refused
#
# Output: `PASS name` / `FAIL name: why` per check, last
# `install: N passed, M failed`; exit status 1 when anything failed.
# Needs gcc, binutils and pkg-config (installs the missing ones with apt).
set -uo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
summary() {
    echo "install: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
indent() { sed -e 's/^/    /'; }
# norm STRING: the words of STRING, one space apart (pkg-config's output
# may end in a space)
norm() { printf '%s' "$1" | tr -s ' \t\n' ' ' | sed -e 's/^ //' -e 's/ $//'; }

# ---------------------------------------------------------------- tools
missing=()
command -v gcc >/dev/null || missing+=(gcc)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
{ command -v readelf >/dev/null && command -v nm >/dev/null; } || missing+=(binutils)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-install: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 ||
        echo "test-install: could not install ${missing[*]}" >&2
fi
for tool in gcc readelf nm pkg-config; do
    if ! command -v "$tool" >/dev/null; then
        fail setup "$tool not found"
        summary
        exit 1
    fi
done

# ---------------------------------------------------------------- build
VERSION=$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version[ \t]*=/ { print $2; exit }' Cargo.toml)
MAJOR=${VERSION%%.*}
SONAME=libmmpool.so.$MAJOR
REALNAME=libmmpool.so.$VERSION
LIB=$ROOT/target/release/libmmpool.so
SECURE_SONAME=libmmpool-secure.so.$MAJOR
SECURE_REALNAME=libmmpool-secure.so.$VERSION
SECURE_LIB=$ROOT/target/release/libmmpool-secure.so

T=$(mktemp -d "${TMPDIR:-/tmp}/mmpool-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

# make, free of the caller's make variables (make test PREFIX=... would
# otherwise reach these installs through MAKEFLAGS), with a stand-in for
# ldconfig that only records its runs (the system's cache stays as it is)
printf '#!/bin/sh\necho "ldconfig $*" >>"%s/ldconfig.log"\n' "$T" >"$T/ldconfig"
chmod 755 "$T/ldconfig"
mk() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u DESTDIR -u PREFIX \
        make --no-print-directory -C "$ROOT" "$@" LDCONFIG="$T/ldconfig"
}
ldconfig_runs() { if [ -f "$T/ldconfig.log" ]; then wc -l <"$T/ldconfig.log"; else echo 0; fi; }

if ! mk -s lib secure >"$T/build.log" 2>&1; then
    fail build "make lib secure failed:"
    tail -n 20 "$T/build.log" | indent
    summary
    exit 1
fi

soname_of() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p'; }

# the build tree: SONAME and the link programs linked here need
why=""
[ "$(soname_of "$LIB")" = "$SONAME" ] || why="SONAME of $LIB is '$(soname_of "$LIB")', want $SONAME"
[ -z "$why" ] && [ "$(readlink "target/release/$SONAME")" != libmmpool.so ] &&
    why="target/release/$SONAME is not a link to libmmpool.so"
[ -z "$why" ] && [ "$(soname_of "$SECURE_LIB")" != "$SECURE_SONAME" ] &&
    why="SONAME of $SECURE_LIB is '$(soname_of "$SECURE_LIB")', want $SECURE_SONAME"
[ -z "$why" ] && [ "$(readlink "target/release/$SECURE_SONAME")" != libmmpool-secure.so ] &&
    why="target/release/$SECURE_SONAME is not a link to libmmpool-secure.so"
if [ -z "$why" ]; then pass build-tree-soname; else fail build-tree-soname "$why"; fi

# helper programs (built natively, not linked with the library)
cat >"$T/whichmalloc.c" <<'EOF'
/* Prints the file that defines malloc for this process (as the program's
 * own calls resolve it) and LD_PRELOAD; then mallocs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    char real[PATH_MAX];
    if (sym == NULL || !dladdr(sym, &info) || info.dli_fname == NULL)
        return 1;
    printf("malloc %s\n", realpath(info.dli_fname, real) ? real : info.dli_fname);
    const char *lp = getenv("LD_PRELOAD");
    printf("LD_PRELOAD %s\n", lp ? lp : "(unset)");
    free(malloc(100));
    return 0;
}
EOF
if ! gcc -O1 -Wall -Wextra -Werror -o "$T/whichmalloc" "$T/whichmalloc.c" -ldl >"$T/cc.log" 2>&1; then
    fail setup "cannot build the helper program:"
    indent <"$T/cc.log"
    summary
    exit 1
fi

# the in-tree wrapper
out=$(scripts/mmpool --version 2>&1)
want=$(printf 'mmpool %s\nlibrary: %s\nsecure library: %s' "$VERSION" "$LIB" "$SECURE_LIB")
out2=$(cd / && "$ROOT/scripts/mmpool" "$T/whichmalloc" 2>&1)
out3=$(cd / && "$ROOT/scripts/mmpool" --secure "$T/whichmalloc" 2>&1)
if [ "$out" != "$want" ]; then
    fail tree-wrapper "scripts/mmpool --version: '$out', want '$want'"
elif [ "$(sed -n 's/^malloc //p' <<<"$out2")" != "$(readlink -f "$LIB")" ]; then
    fail tree-wrapper "scripts/mmpool: malloc not served by $LIB: $out2"
elif [ "$(sed -n 's/^malloc //p' <<<"$out3")" != "$(readlink -f "$SECURE_LIB")" ]; then
    fail tree-wrapper "scripts/mmpool --secure: malloc not served by $SECURE_LIB: $out3"
else
    pass tree-wrapper
fi

# When the in-tree wrapper runs make: in a stand-in tree (scripts/mmpool,
# Cargo.toml, build.rs, src/ and a Makefile whose lib and secure targets
# record their runs and copy the built libraries), so that the real
# target/release is never rebuilt under a running test.  Missing -> built,
# up to date -> not, older than src/ -> built again; --secure builds
# (make secure) and runs only the secure library, and the default only lib.
F=$T/tree
mkdir -p "$F/scripts" "$F/src"
cp scripts/mmpool "$F/scripts/mmpool"
cp Cargo.toml build.rs "$F/"
touch "$F/src/lib.rs"
touch -d '2020-01-01 00:00' "$F/Cargo.toml" "$F/build.rs" "$F/src/lib.rs"
printf 'lib:\n\techo lib >>calls.log; mkdir -p target/release; cp %s target/release/libmmpool.so\n' \
    "$LIB" >"$F/Makefile"
printf 'secure:\n\techo secure >>calls.log; mkdir -p target/release; cp %s target/release/libmmpool-secure.so\n' \
    "$SECURE_LIB" >>"$F/Makefile"
runs=()
for args in "--secure" "--secure" "--secure" "" ""; do
    if [ ${#runs[@]} -eq 2 ]; then
        touch -d '2019-01-01 00:00' "$F/target/release/libmmpool-secure.so"
    fi
    # shellcheck disable=SC2086 # no argument or --secure
    runs+=("$(cd / && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "$F/scripts/mmpool" $args "$T/whichmalloc" 2>&1 |
        sed -n 's/^malloc //p')|$(tr '\n' ' ' <"$F/calls.log" 2>/dev/null)")
done
want_runs=("$F/target/release/libmmpool-secure.so|secure "
    "$F/target/release/libmmpool-secure.so|secure "
    "$F/target/release/libmmpool-secure.so|secure secure "
    "$F/target/release/libmmpool.so|secure secure lib "
    "$F/target/release/libmmpool.so|secure secure lib ")
if [ "${runs[*]}" = "${want_runs[*]}" ]; then pass tree-wrapper-build; else
    fail tree-wrapper-build "malloc|make runs after each of --secure (missing, up to date, older than src/) and default (missing, up to date):"
    for i in "${!want_runs[@]}"; do echo "got '${runs[$i]}', want '${want_runs[$i]}'"; done | indent
fi

# snapshot DIR: every entry under DIR, one a line: type, mode, size, mtime,
# path and link target (directories only by name)
snapshot() {
    find "$1" -mindepth 1 \( -type d -printf 'd %P\n' \) -o \( -type l -printf 'l %P -> %l\n' \) \
        -o -printf '%y %m %s %T@ %P\n' | LC_ALL=C sort
}
# files DIR: the non-directory entries, type mode path [-> target]
files() {
    find "$1" -mindepth 1 ! -type d \( \( -type l -printf 'l %P -> %l\n' \) -o -printf '%y %m %P\n' \) |
        LC_ALL=C sort
}
# expected_files LIBDIR INCLUDEDIR PKGCONFIGDIR BINDIR (relative to a root)
expected_files() {
    {
        echo "f 755 $1/$REALNAME"
        echo "l $1/$SONAME -> $REALNAME"
        echo "l $1/libmmpool.so -> $REALNAME"
        echo "f 755 $1/$SECURE_REALNAME"
        echo "l $1/$SECURE_SONAME -> $SECURE_REALNAME"
        echo "l $1/libmmpool-secure.so -> $SECURE_REALNAME"
        echo "f 644 $2/mmpool.h"
        echo "f 644 $3/mmpool.pc"
        echo "f 644 $3/mmpool-secure.pc"
        echo "f 755 $4/mmpool"
    } | LC_ALL=C sort
}
# check_lib FILE [secure] -> why, empty when the installed library (the
# secure one with `secure`) is right
check_lib() {
    local so=$1 built=$LIB soname=$SONAME
    if [ "${2-}" = secure ]; then built=$SECURE_LIB soname=$SECURE_SONAME; fi
    if ! cmp -s "$so" "$built"; then
        echo "$so differs from $built"
    elif [ "$(soname_of "$so")" != "$soname" ]; then
        echo "SONAME of $so is '$(soname_of "$so")', want $soname"
    elif ! nm -D --defined-only "$so" | grep -qw malloc; then
        echo "$so does not export malloc (not built with the override feature)"
    fi
}
# check_wrapper FILE LIBDIR -> why, empty when the installed bin/mmpool is
# self-contained and names the libraries in LIBDIR
check_wrapper() {
    local w=$1 want=$2/$SONAME want_secure=$2/$SECURE_SONAME line line2
    line=$(grep -m 1 "^lib=" "$w")
    line2=$(grep -m 1 "^secure_lib=" "$w")
    if [ "$line" != "lib='$want'" ]; then
        echo "$w: '$line', want lib='$want'"
    elif [ "$line2" != "secure_lib='$want_secure'" ]; then
        echo "$w: '$line2', want secure_lib='$want_secure'"
    elif grep -qE "@[A-Z_]+@|source-tree" "$w"; then
        echo "$w keeps template parts: $(grep -nE "@[A-Z_]+@|source-tree" "$w" | head -n 1)"
    elif grep -qF -e "$ROOT" -e target/release -e Cargo.toml -e "make " "$w"; then
        echo "$w refers to the source tree: $(grep -nF -e "$ROOT" -e target/release -e Cargo.toml -e "make " "$w" | head -n 1)"
    elif ! sh -n "$w" 2>"$T/sh.log"; then
        echo "$w: $(head -n 1 "$T/sh.log")"
    fi
}

# ---------------------------------------------------------------- DESTDIR
STAGE=$T/stage
FINAL=/opt/mmpool-test-$$
rel=${FINAL#/}
if ! mk install DESTDIR="$STAGE" PREFIX="$FINAL" >"$T/install1.log" 2>&1; then
    fail destdir-install "make install DESTDIR=$STAGE PREFIX=$FINAL failed:"
    tail -n 15 "$T/install1.log" | indent
else
    pass destdir-install
    exp=$(expected_files "$rel/lib" "$rel/include" "$rel/lib/pkgconfig" "$rel/bin")
    got=$(files "$STAGE")
    if [ "$got" = "$exp" ]; then pass destdir-files; else
        fail destdir-files "under DESTDIR (< expected, > installed):"
        diff <(echo "$exp") <(echo "$got") | grep '^[<>]' | indent
    fi
    if [ -e "$FINAL" ]; then fail destdir-files "$FINAL was created outside DESTDIR"; fi
    why=$(check_lib "$STAGE$FINAL/lib/$REALNAME")
    [ -z "$why" ] && why=$(check_lib "$STAGE$FINAL/lib/$SECURE_REALNAME" secure)
    if [ -z "$why" ]; then pass destdir-soname; else fail destdir-soname "$why"; fi
    if cmp -s include/mmpool.h "$STAGE$FINAL/include/mmpool.h"; then pass destdir-header; else
        fail destdir-header "the installed mmpool.h differs from include/mmpool.h"
    fi
    # the final paths, never the stage's
    pc=$STAGE$FINAL/lib/pkgconfig/mmpool.pc
    spc=$STAGE$FINAL/lib/pkgconfig/mmpool-secure.pc
    if grep -qF "$STAGE" "$pc" "$spc" "$STAGE$FINAL/bin/mmpool"; then
        fail destdir-paths "DESTDIR leaked into: $(grep -lF "$STAGE" "$pc" "$spc" "$STAGE$FINAL/bin/mmpool" | tr '\n' ' ')"
    elif [ "$(sed -n 's/^prefix=//p' "$pc")" != "$FINAL" ]; then
        fail destdir-paths "mmpool.pc: $(grep '^prefix=' "$pc"), want prefix=$FINAL"
    elif [ "$(sed -n 's/^prefix=//p' "$spc")" != "$FINAL" ]; then
        fail destdir-paths "mmpool-secure.pc: $(grep '^prefix=' "$spc"), want prefix=$FINAL"
    elif why=$(check_wrapper "$STAGE$FINAL/bin/mmpool" "$FINAL/lib") && [ -n "$why" ]; then
        fail destdir-paths "$why"
    else
        pass destdir-paths
    fi
    # a staged tree is usable with pkg-config's sysroot
    why=""
    for m in mmpool mmpool-secure; do
        flags=$(PKG_CONFIG_PATH="$STAGE$FINAL/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$STAGE" \
            pkg-config --cflags --libs "$m" 2>&1)
        want="-I$STAGE$FINAL/include -L$STAGE$FINAL/lib -l$m"
        [ -z "$why" ] && [ "$(norm "$flags")" != "$want" ] &&
            why="pkg-config --cflags --libs $m: '$flags', want '$want'"
    done
    if [ -z "$why" ]; then pass destdir-pkg-config-sysroot; else fail destdir-pkg-config-sysroot "$why"; fi
    if ! mk uninstall DESTDIR="$STAGE" PREFIX="$FINAL" >"$T/uninstall1.log" 2>&1; then
        fail destdir-uninstall "make uninstall failed:"
        tail -n 15 "$T/uninstall1.log" | indent
    elif [ -n "$(files "$STAGE")" ]; then
        fail destdir-uninstall "left behind: $(files "$STAGE" | tr '\n' ' ')"
    else
        pass destdir-uninstall
    fi
    if [ "$(ldconfig_runs)" -ne 0 ]; then
        fail destdir-no-ldconfig "ldconfig ran for a DESTDIR install or uninstall"
    else
        pass destdir-no-ldconfig
    fi
fi

# ---------------------------------------------------------------- PREFIX
# The prefix already holds other packages' files, which must stay.
P=$T/prefix
mkdir -p "$P/lib" "$P/include" "$P/bin" "$P/share"
echo other >"$P/lib/libother.so.1"
ln -s libother.so.1 "$P/lib/libother.so"
echo '/* other */' >"$P/include/other.h"
printf '#!/bin/sh\n' >"$P/bin/other" && chmod 755 "$P/bin/other"
touch -d '2020-01-01 00:00' "$P/lib/libother.so.1" "$P/include/other.h" "$P/bin/other"
before=$(snapshot "$P")

if ! mk install PREFIX="$P" >"$T/install2.log" 2>&1; then
    fail prefix-install "make install PREFIX=$P failed:"
    tail -n 15 "$T/install2.log" | indent
    summary
    exit 1
fi
pass prefix-install
# as root (only), ldconfig refreshes the loader's cache
want=0
[ "$(id -u)" -eq 0 ] && want=1
if [ "$(ldconfig_runs)" -eq "$want" ]; then pass ldconfig; else
    fail ldconfig "ran $(ldconfig_runs) times for an install without DESTDIR as uid $(id -u), want $want"
fi
exp=$({
    expected_files lib include lib/pkgconfig bin
    echo "f 644 include/other.h"
    echo "f 755 bin/other"
    echo "f 644 lib/libother.so.1"
    echo "l lib/libother.so -> libother.so.1"
} | LC_ALL=C sort)
got=$(files "$P")
why=$(check_lib "$P/lib/$REALNAME")
[ -z "$why" ] && why=$(check_lib "$P/lib/$SECURE_REALNAME" secure)
if [ "$got" != "$exp" ]; then
    fail prefix-files "under PREFIX (< expected, > installed):"
    diff <(echo "$exp") <(echo "$got") | grep '^[<>]' | indent
elif [ -n "$why" ]; then
    fail prefix-files "$why"
elif why=$(check_wrapper "$P/bin/mmpool" "$P/lib") && [ -n "$why" ]; then
    fail prefix-files "$why"
else
    pass prefix-files
fi

# pkg-config's answers, for the default and the secure build
export PKG_CONFIG_PATH=$P/lib/pkgconfig
for m in mmpool mmpool-secure; do
    why=""
    v=$(pkg-config --modversion "$m" 2>&1)
    [ "$v" = "$VERSION" ] || why="--modversion $m: '$v', want $VERSION"
    c=$(pkg-config --cflags "$m" 2>&1)
    [ -z "$why" ] && [ "$(norm "$c")" != "-I$P/include" ] && why="--cflags $m: '$c', want -I$P/include"
    l=$(pkg-config --libs "$m" 2>&1)
    [ -z "$why" ] && [ "$(norm "$l")" != "-L$P/lib -l$m" ] && why="--libs $m: '$l', want -L$P/lib -l$m"
    d=$(pkg-config --variable=libdir "$m" 2>&1)
    [ -z "$why" ] && [ "$d" != "$P/lib" ] && why="--variable=libdir $m: '$d', want $P/lib"
    [ -z "$why" ] && ! pkg-config --validate "$m" >"$T/validate.log" 2>&1 &&
        why="--validate $m: $(head -n 3 "$T/validate.log")"
    if [ -z "$why" ]; then pass "pkg-config-$m"; else fail "pkg-config-$m" "$why"; fi
done

# A C program built from outside the source tree with pkg-config's flags
# alone (plus an rpath to the library's directory, which is no system one).
cat >"$T/prog.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <mmpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    int bad = 0;
    const char *v = mmpool_version();
    if (strcmp(v, WANT_VERSION) != 0) {
        printf("mmpool_version() is %s, want %s\n", v, WANT_VERSION);
        bad = 1;
    }
    void *p = mmpool_malloc(100);
    if (p == NULL || !mmpool_owns(p)) {
        printf("mmpool_owns(mmpool_malloc(100)) is false\n");
        bad = 1;
    }
    mmpool_free(p);
    /* linked ahead of libc, the library serves malloc too */
    void *q = malloc(100);
    if (q == NULL || !mmpool_owns(q)) {
        printf("malloc(100) is not the pool's\n");
        bad = 1;
    }
    free(q);
    Dl_info info;
    char real[PATH_MAX];
    if (dladdr((void *)mmpool_version, &info) && info.dli_fname != NULL)
        printf("library %s\n", realpath(info.dli_fname, real) ? real : info.dli_fname);
    return bad;
}
EOF
# c_program NAME PKG SONAME REALNAME: prog.c built as $T/NAME with
# `pkg-config --cflags --libs PKG`, needs SONAME and runs on REALNAME
c_program() {
    local name=$1 m=$2 soname=$3 realname=$4 out
    # shellcheck disable=SC2046 # pkg-config's flags are words
    if ! (cd "$T" && gcc -O1 -Wall -Wextra -Werror -DWANT_VERSION="\"$VERSION\"" -o "$name" prog.c \
        $(pkg-config --cflags --libs "$m") -Wl,-rpath,"$(pkg-config --variable=libdir "$m")") \
        >"$T/$name.log" 2>&1; then
        fail "$name" "build with pkg-config's flags for $m failed:"
        head -n 20 "$T/$name.log" | indent
    elif ! readelf -d "$T/$name" | grep -q "NEEDED.*\[$soname\]"; then
        fail "$name" "$name does not need $soname: $(readelf -d "$T/$name" | grep NEEDED | tr -s ' ' | tr '\n' ' ')"
    elif ! out=$(cd / && env -u LD_PRELOAD -u LD_LIBRARY_PATH "$T/$name" 2>&1); then
        fail "$name" "$name failed: $(echo "$out" | tr '\n' ' ')"
    elif [ "$(sed -n 's/^library //p' <<<"$out")" != "$P/lib/$realname" ]; then
        fail "$name" "$name ran on the wrong library: $out"
    else
        pass "$name"
    fi
}
c_program c-program mmpool "$SONAME" "$REALNAME"
c_program c-program-secure mmpool-secure "$SECURE_SONAME" "$SECURE_REALNAME"

# the installed bin/mmpool
out=$("$P/bin/mmpool" --version 2>&1)
want=$(printf 'mmpool %s\nlibrary: %s\nsecure library: %s' "$VERSION" "$P/lib/$SONAME" "$P/lib/$SECURE_SONAME")
if [ "$out" = "$want" ]; then pass bin-mmpool-version; else
    fail bin-mmpool-version "'$out', want '$want'"
fi
if out=$("$P/bin/mmpool" --help 2>&1) && grep -q "^usage: mmpool \[--secure\]" <<<"$out" &&
    grep -qF -e "--secure   run PROGRAM on the secure build" <<<"$out" && grep -qF "$P/lib/$SECURE_SONAME" <<<"$out"; then
    pass bin-mmpool-help
else
    fail bin-mmpool-help "$(head -n 2 <<<"$out")"
fi
rc=0
"$P/bin/mmpool" >/dev/null 2>&1 || rc=$?
rc2=0
"$P/bin/mmpool" --bogus >/dev/null 2>&1 || rc2=$?
if [ "$rc" -eq 2 ] && [ "$rc2" -eq 2 ]; then pass bin-mmpool-usage; else
    fail bin-mmpool-usage "exit status $rc without a program, $rc2 for an unknown option (want 2)"
fi

# a program (not linked with the library) run through it, from outside the
# source tree, with an LD_PRELOAD already set and MMPOOL_STATS; with
# --secure, on the installed secure library
other=$(gcc -print-file-name=libm.so.6)
# bin_mmpool_run NAME SONAME REALNAME [OPTION]
bin_mmpool_run() {
    local name=$1 soname=$2 realname=$3 out rc=0
    shift 3
    out=$(cd / && env -u LD_LIBRARY_PATH LD_PRELOAD="$other" MMPOOL_STATS=1 \
        "$P/bin/mmpool" "$@" -- "$T/whichmalloc" 2>"$T/$name.err") || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$name" "exit status $rc: $(tail -n 3 "$T/$name.err")"
    elif [ "$(sed -n 's/^malloc //p' <<<"$out")" != "$P/lib/$realname" ]; then
        fail "$name" "malloc not served by the installed $realname: $out"
    elif [ "$(sed -n 's/^LD_PRELOAD //p' <<<"$out")" != "$P/lib/$soname:$other" ]; then
        fail "$name" "LD_PRELOAD is '$(sed -n 's/^LD_PRELOAD //p' <<<"$out")', want '$P/lib/$soname:$other'"
    elif ! grep -q "^mmpool statistics" "$T/$name.err"; then
        fail "$name" "MMPOOL_STATS=1 printed no statistics: $(head -n 3 "$T/$name.err")"
    else
        pass "$name"
    fi
}
bin_mmpool_run bin-mmpool-run "$SONAME" "$REALNAME"
bin_mmpool_run bin-mmpool-secure-run "$SECURE_SONAME" "$SECURE_REALNAME" --secure
rc=0
"$P/bin/mmpool" sh -c 'exit 7' || rc=$?
rc2=0
"$P/bin/mmpool" --secure sh -c 'exit 7' || rc2=$?
if [ "$rc" -eq 7 ] && [ "$rc2" -eq 7 ]; then pass bin-mmpool-exit-status; else
    fail bin-mmpool-exit-status "exit status $rc, with --secure $rc2, want the program's 7"
fi

# uninstall: the prefix as it was (the other files untouched), but for the
# directories install created, which stay (empty) as with autotools
if ! mk uninstall PREFIX="$P" >"$T/uninstall2.log" 2>&1; then
    fail uninstall "make uninstall PREFIX=$P failed:"
    tail -n 15 "$T/uninstall2.log" | indent
else
    after=$(snapshot "$P")
    extra=$(comm -13 <(echo "$before") <(echo "$after"))
    gone=$(comm -23 <(echo "$before") <(echo "$after"))
    if [ -n "$gone" ]; then
        fail uninstall "removed or changed: $(echo "$gone" | tr '\n' ' ')"
    elif [ "$extra" != "d lib/pkgconfig" ]; then
        fail uninstall "left behind: $(echo "$extra" | tr '\n' ' ')"
    else
        pass uninstall
    fi
    if mk uninstall PREFIX="$P" >"$T/uninstall3.log" 2>&1 && [ "$(snapshot "$P")" = "$after" ]; then
        pass uninstall-again
    else
        fail uninstall-again "a second make uninstall failed or changed the prefix"
    fi
fi
unset PKG_CONFIG_PATH

# ---------------------------------------------------------------- overrides
# LIBDIR outside PREFIX (named as is in mmpool.pc), the others inside it
# (relative to ${prefix}).
Q=$T/custom
if ! mk install PREFIX="$Q" LIBDIR="$T/elsewhere/lib64" INCLUDEDIR="$Q/include/mm" \
    BINDIR="$Q/sbin" PKGCONFIGDIR="$Q/share/pkgconfig" >"$T/install3.log" 2>&1; then
    fail custom-dirs "make install with LIBDIR, INCLUDEDIR, BINDIR, PKGCONFIGDIR failed:"
    tail -n 15 "$T/install3.log" | indent
else
    exp=$({
        echo "f 755 elsewhere/lib64/$REALNAME"
        echo "l elsewhere/lib64/$SONAME -> $REALNAME"
        echo "l elsewhere/lib64/libmmpool.so -> $REALNAME"
        echo "f 755 elsewhere/lib64/$SECURE_REALNAME"
        echo "l elsewhere/lib64/$SECURE_SONAME -> $SECURE_REALNAME"
        echo "l elsewhere/lib64/libmmpool-secure.so -> $SECURE_REALNAME"
        echo "f 644 custom/include/mm/mmpool.h"
        echo "f 644 custom/share/pkgconfig/mmpool.pc"
        echo "f 644 custom/share/pkgconfig/mmpool-secure.pc"
        echo "f 755 custom/sbin/mmpool"
    } | LC_ALL=C sort)
    got=$(files "$T" | grep -E ' (custom|elsewhere)/')
    pc=$Q/share/pkgconfig/mmpool.pc
    flags=$(PKG_CONFIG_PATH=$Q/share/pkgconfig pkg-config --cflags --libs mmpool 2>&1)
    want="-I$Q/include/mm -L$T/elsewhere/lib64 -lmmpool"
    sflags=$(PKG_CONFIG_PATH=$Q/share/pkgconfig pkg-config --cflags --libs mmpool-secure 2>&1)
    swant="-I$Q/include/mm -L$T/elsewhere/lib64 -lmmpool-secure"
    if [ "$got" != "$exp" ]; then
        fail custom-dirs "installed (< expected, > installed):"
        diff <(echo "$exp") <(echo "$got") | grep '^[<>]' | indent
    elif ! grep -qx "libdir=$T/elsewhere/lib64" "$pc" || ! grep -qxF "includedir=\${prefix}/include/mm" "$pc"; then
        fail custom-dirs "mmpool.pc: $(grep -E '^(libdir|includedir)=' "$pc" | tr '\n' ' ')"
    elif [ "$(norm "$flags")" != "$want" ]; then
        fail custom-dirs "pkg-config --cflags --libs: '$flags', want '$want'"
    elif [ "$(norm "$sflags")" != "$swant" ]; then
        fail custom-dirs "pkg-config --cflags --libs mmpool-secure: '$sflags', want '$swant'"
    elif why=$(check_wrapper "$Q/sbin/mmpool" "$T/elsewhere/lib64") && [ -n "$why" ]; then
        fail custom-dirs "$why"
    elif ! mk uninstall PREFIX="$Q" LIBDIR="$T/elsewhere/lib64" INCLUDEDIR="$Q/include/mm" \
        BINDIR="$Q/sbin" PKGCONFIGDIR="$Q/share/pkgconfig" >"$T/uninstall4.log" 2>&1; then
        fail custom-dirs "make uninstall failed: $(tail -n 3 "$T/uninstall4.log")"
    elif [ -n "$(files "$Q")$(files "$T/elsewhere")" ]; then
        fail custom-dirs "left behind: $(files "$Q") $(files "$T/elsewhere")"
    else
        pass custom-dirs
    fi
fi

# a relative PREFIX would put relative paths into mmpool.pc and bin/mmpool
if mk install PREFIX=relative-prefix >"$T/install4.log" 2>&1; then
    fail relative-prefix "make install PREFIX=relative-prefix succeeded"
elif [ -e "$ROOT/relative-prefix" ]; then
    fail relative-prefix "make install PREFIX=relative-prefix created $ROOT/relative-prefix"
    rm -rf "$ROOT/relative-prefix"
else
    pass relative-prefix
fi
# a LIBDIR with an LD_PRELOAD separator would break bin/mmpool
if mk install PREFIX="$T/sep" LIBDIR="$T/sep/a:b" >"$T/install5.log" 2>&1; then
    fail libdir-separator "make install LIBDIR=$T/sep/a:b succeeded"
elif [ -e "$T/sep" ]; then
    fail libdir-separator "make install LIBDIR=$T/sep/a:b created $T/sep"
else
    pass libdir-separator
fi

summary
