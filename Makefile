# mmpool — build, test, run, bench.
#   make            build target/release/libmmpool.so (with the malloc overrides)
#   make run        build and run the demo workload on the pool
#   make test       every test: Rust unit/integration, C tests, real programs
#   make bench      benchmarks against glibc, jemalloc, mimalloc, tcmalloc

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

.PHONY: all lib run test test-rust test-c test-programs lint header bench bench-quick clean

all: lib

# The shipped library alone (no rlib from the same compilation): then the
# crate's statics are local to it and its code reaches them without the
# GOT, and the slow paths are direct calls (text 102 -> 93 KB).
# The SONAME link lets programs linked in the build tree (-Ltarget/release
# -lmmpool, which records libmmpool.so.MAJOR) find the library at run time.
lib:
	$(CARGO) rustc --release --locked --features override --lib --crate-type cdylib
	ln -sf libmmpool.so target/release/$(SONAME)

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/demo: c-tests/demo.c include/mmpool.h | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< -ldl

run: lib $(BUILD)/demo
	LD_PRELOAD=$(CURDIR)/$(LIB) $(BUILD)/demo

test: lib lint test-rust test-c test-programs
	@echo "make test: all suites passed"

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features override -- -D warnings
	$(CARGO) clippy --locked --lib --features override -- -D warnings

test-rust:
	$(CARGO) test --locked

test-c: lib
	scripts/run-c-tests.sh --smoke

test-programs: lib
	scripts/test-programs.sh

# Benchmarks against glibc, jemalloc, mimalloc, tcmalloc (never part of
# `make test`): tables and a chart in target/bench/.
bench: lib
	scripts/bench.sh

bench-quick: lib
	scripts/bench.sh --quick

# Regenerate include/mmpool.h from the Rust sources (a test fails when stale).
header:
	MMPOOL_UPDATE_HEADER=1 $(CARGO) test --locked --test header header_matches_the_sources

clean:
	$(CARGO) clean
