# mmpool — build, test, run, bench.
#   make            build target/release/libmmpool.so (with the malloc overrides)
#   make secure     build target/release/libmmpool-secure.so (the secure build)
#   make run        build and run the demo workload on the pool
#   make test       every test: Rust unit/integration, C tests and real
#                   programs on both builds, the heap-bug suite, make
#                   install/uninstall (into temporary prefixes)
#   make bench      benchmarks against glibc, jemalloc, mimalloc, tcmalloc;
#                   the secure build against the default one and scudo;
#                   the heap-bug suite under every allocator
#   make install    build and install both libraries (libmmpool.so and the
#                   secure libmmpool-secure.so), mmpool.h, mmpool.pc and
#                   mmpool-secure.pc, and bin/mmpool (mmpool --secure runs
#                   a program on the secure build); PREFIX (/usr/local),
#                   DESTDIR (staging), LIBDIR, INCLUDEDIR, BINDIR and
#                   PKGCONFIGDIR can be set: make install PREFIX=$HOME/.local
#   make uninstall  remove what `make install` installed (same variables)

CARGO  ?= cargo
CC     ?= gcc
LIB    := target/release/libmmpool.so
CFLAGS := -O2 -g -Wall -Wextra -Werror -pthread -Iinclude
BUILD  := target/c

# The version is written once, in Cargo.toml's [package] table; the
# library's file names derive from it (build.rs sets the same SONAME).
VERSION  := $(shell awk -F'"' '/^\[/ { p = ($$0 == "[package]") } p && /^version[ \t]*=/ { print $$2; exit }' Cargo.toml)
ifeq ($(VERSION),)
$(error no version = "..." in the [package] table of Cargo.toml)
endif
MAJOR    := $(firstword $(subst ., ,$(VERSION)))
SONAME   := libmmpool.so.$(MAJOR)
REALNAME := libmmpool.so.$(VERSION)
SECURE_SONAME   := libmmpool-secure.so.$(MAJOR)
SECURE_REALNAME := libmmpool-secure.so.$(VERSION)

# Install locations (autotools names; each can be set on the command line).
PREFIX       ?= /usr/local
DESTDIR      ?=
BINDIR       = $(PREFIX)/bin
LIBDIR       = $(PREFIX)/lib
INCLUDEDIR   = $(PREFIX)/include
PKGCONFIGDIR = $(LIBDIR)/pkgconfig
INSTALL      ?= install
# Run after a root install or uninstall without DESTDIR, so that the loader
# finds the new libmmpool.so.MAJOR at once (its cache covers /usr/local/lib
# on Debian); LDCONFIG= to skip.
LDCONFIG     ?= ldconfig

.PHONY: all lib secure run test test-shipped test-rust test-c test-programs test-secure test-security test-install lint header bench bench-quick \
	clean install uninstall

all: lib

# The shipped library alone (no rlib from the same compilation): then the
# crate's statics are local to it and its code reaches them without the
# GOT, and the slow paths are direct calls (text 102 -> 93 KB).
# --cfg mmpool_shipped makes it link no Rust std (src/lib.rs): only this
# build has it; the rlib that Rust programs depend on is a std crate.
# The SONAME link lets programs linked in the build tree (-Ltarget/release
# -lmmpool, which records libmmpool.so.MAJOR) find the library at run time.
SHIPPED := --cfg mmpool_shipped

lib:
	$(CARGO) rustc --release --locked --features override --lib --crate-type cdylib -- $(SHIPPED)
	ln -sf libmmpool.so target/release/$(SONAME)

# The secure build: the same sources with the `secure` feature, compiled
# in target/secure (its own artefacts), copied next to the default one
# under a new inode (a copy over the old file would rewrite pages that
# running programs have mapped: they die of SIGBUS).
SECURE_LIB := target/release/libmmpool-secure.so

secure:
	$(CARGO) rustc --release --locked --features override,secure --lib --crate-type cdylib \
		--target-dir target/secure -- $(SHIPPED)
	mkdir -p target/release
	cp target/secure/release/libmmpool.so $(SECURE_LIB).tmp
	mv -f $(SECURE_LIB).tmp $(SECURE_LIB)
	ln -sf libmmpool-secure.so target/release/$(SECURE_SONAME)

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/demo: c-tests/demo.c include/mmpool.h | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< -ldl

run: lib $(BUILD)/demo
	LD_PRELOAD=$(CURDIR)/$(LIB) $(BUILD)/demo

test: lib secure test-shipped lint test-rust test-c test-programs test-secure test-security test-install
	@echo "make test: all suites passed"

# The shipped library links no Rust std (--cfg mmpool_shipped): std's
# panic machinery would bring libgcc_s and some 250 KiB of text.
test-shipped: lib
	@if readelf -d $(LIB) | grep -q 'NEEDED.*libgcc_s' || nm $(LIB) | grep -q '3std9panicking'; then \
		echo "test-shipped: $(LIB) links Rust std (built without $(SHIPPED)?)" >&2; exit 1; \
	fi
	@echo "test-shipped: $(LIB) links no Rust std"

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features override -- -D warnings
	$(CARGO) clippy --locked --lib --features override -- -D warnings $(SHIPPED)
	$(CARGO) clippy --locked --all-targets --features override,secure -- -D warnings

test-rust:
	$(CARGO) test --locked
	$(CARGO) test --locked --features secure

test-c: lib
	scripts/run-c-tests.sh --smoke

test-programs: lib
	scripts/test-programs.sh

# The secure build passes the same C tests and real programs.
test-secure: secure
	MMPOOL_LIB=$(SECURE_LIB) scripts/run-c-tests.sh --smoke
	scripts/test-programs.sh $(SECURE_LIB)

# The heap-bug suite: each build stops what c-tests/security/expected.txt says.
test-security: lib secure
	scripts/security.sh --check

# make install/uninstall into temporary prefixes, pkg-config, bin/mmpool.
test-install: lib secure
	scripts/test-install.sh

# Benchmarks against glibc, jemalloc, mimalloc, tcmalloc, the secure build
# against the default one and scudo, and the heap-bug suite (never part of
# `make test`): tables and a chart in target/bench/.
bench: lib secure
	scripts/bench.sh

bench-quick: lib secure
	scripts/bench.sh --quick

# Regenerate include/mmpool.h from the Rust sources (a test fails when stale).
header:
	MMPOOL_UPDATE_HEADER=1 $(CARGO) test --locked --test header header_matches_the_sources

clean:
	$(CARGO) clean

# ---------------------------------------------------------------- install
# $(LIBDIR)/libmmpool.so.X.Y.Z (SONAME libmmpool.so.X) with the
# libmmpool.so.X and libmmpool.so links, the secure build beside it as
# $(LIBDIR)/libmmpool-secure.so.X.Y.Z (SONAME libmmpool-secure.so.X) with
# the libmmpool-secure.so.X and libmmpool-secure.so links (as mimalloc
# ships libmimalloc-secure), $(INCLUDEDIR)/mmpool.h (both export the same
# symbols), $(PKGCONFIGDIR)/mmpool.pc and mmpool-secure.pc (-lmmpool,
# -lmmpool-secure) and $(BINDIR)/mmpool (scripts/mmpool with both
# installed libraries' paths filled in and its source-tree part removed).
# The installed paths are PREFIX's; DESTDIR only stages them.  Builds both
# libraries first where cargo is found (not under a sudo whose PATH lacks
# it: then `make lib secure` first).
INSTALLED_FILES = $(LIBDIR)/$(REALNAME) $(LIBDIR)/$(SONAME) $(LIBDIR)/libmmpool.so \
	$(LIBDIR)/$(SECURE_REALNAME) $(LIBDIR)/$(SECURE_SONAME) $(LIBDIR)/libmmpool-secure.so \
	$(INCLUDEDIR)/mmpool.h $(PKGCONFIGDIR)/mmpool.pc $(PKGCONFIGDIR)/mmpool-secure.pc \
	$(BINDIR)/mmpool
# The paths the .pc files name, relative to ${prefix} where they are under it.
PC_LIBDIR     = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

# $(call install-pc,NAME,LIBRARY,VARIANT): scripts/mmpool.pc.in filled in,
# installed as $(PKGCONFIGDIR)/NAME.pc (Libs: -lLIBRARY; VARIANT ends the
# Description).
define install-pc
tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
		-e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@NAME@|$(1)|g' -e 's|@LIBRARY@|$(2)|g' -e 's|@VARIANT@|$(3)|g' \
		scripts/mmpool.pc.in >"$$tmp" && \
	$(INSTALL) -m 0644 "$$tmp" "$(DESTDIR)$(PKGCONFIGDIR)/$(1).pc"
endef

install: $(if $(shell command -v $(CARGO) 2>/dev/null),lib secure)
	@test -f $(LIB) || { echo "$(LIB) is not built: run make lib first" >&2; exit 1; }
	@test -f $(SECURE_LIB) || { echo "$(SECURE_LIB) is not built: run make secure first" >&2; exit 1; }
	@for d in "$(PREFIX)" "$(BINDIR)" "$(LIBDIR)" "$(INCLUDEDIR)" "$(PKGCONFIGDIR)"; do \
		case "$$d" in /*) ;; *) echo "install paths must be absolute: '$$d'" >&2; exit 1 ;; esac; \
	done
	@case "$(LIBDIR)" in *[:\ ]*) echo "LIBDIR cannot hold ':' or ' ' (LD_PRELOAD separators)" >&2; exit 1 ;; esac
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" \
		"$(DESTDIR)$(PKGCONFIGDIR)" "$(DESTDIR)$(BINDIR)"
	$(INSTALL) -m 0755 $(LIB) "$(DESTDIR)$(LIBDIR)/$(REALNAME)"
	ln -sf $(REALNAME) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(REALNAME) "$(DESTDIR)$(LIBDIR)/libmmpool.so"
	$(INSTALL) -m 0755 $(SECURE_LIB) "$(DESTDIR)$(LIBDIR)/$(SECURE_REALNAME)"
	ln -sf $(SECURE_REALNAME) "$(DESTDIR)$(LIBDIR)/$(SECURE_SONAME)"
	ln -sf $(SECURE_REALNAME) "$(DESTDIR)$(LIBDIR)/libmmpool-secure.so"
	$(INSTALL) -m 0644 include/mmpool.h "$(DESTDIR)$(INCLUDEDIR)/mmpool.h"
	$(call install-pc,mmpool,mmpool,)
	$(call install-pc,mmpool-secure,mmpool-secure,; the secure build (checks every block))
	tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	sed -e '/@source-tree-begin@/,/@source-tree-end@/d' \
		-e 's|@LIB@|$(LIBDIR)/$(SONAME)|g' -e 's|@SECURE_LIB@|$(LIBDIR)/$(SECURE_SONAME)|g' \
		-e 's|@VERSION@|$(VERSION)|g' \
		scripts/mmpool >"$$tmp" && \
	$(INSTALL) -m 0755 "$$tmp" "$(DESTDIR)$(BINDIR)/mmpool"
	$(run-ldconfig)

# Exactly the files `make install` writes; directories stay (they may be
# shared: /usr/local/lib), as with autotools.
uninstall:
	rm -f $(foreach f,$(INSTALLED_FILES),"$(DESTDIR)$(f)")
	$(run-ldconfig)

define run-ldconfig
@if [ -z "$(DESTDIR)" ] && [ -n "$(LDCONFIG)" ] && [ "$$(id -u)" -eq 0 ] && \
	command -v "$(LDCONFIG)" >/dev/null 2>&1; then echo "$(LDCONFIG)"; "$(LDCONFIG)"; fi
endef
