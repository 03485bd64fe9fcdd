/* c-tests/testutil.h -- the harness of every mmpool C test.
 *
 * A test binary is a flat list of named cases (like mimalloc's
 * test-api.c).  Each case prints `ok <name> (time)` or `FAIL <name>: why`;
 * the binary ends with `<argv0>: N passed, M failed` and exits 1 when any
 * case failed.
 *
 *   ./target/c/api/realloc                        all cases, smoke mode
 *   ./target/c/api/realloc --full                 all cases, full mode
 *                                                 (bigger loops)
 *   ./target/c/api/realloc realloc_random_walk    only the named case(s)
 *
 * What it offers, by file (c-tests/tu/, one concern a file; a test
 * includes only "testutil.h", which includes them all):
 * tu/harness.h
 *   RUN(name) / tu_run_case_with(name, fn, arg)   run a case (if selected)
 *   CHECK, REQUIRE, FAILF, SKIP                   failures inside a case
 *   tu_note(...)                                  text after a case's `ok`
 *   tu_verdict(cond, name, ...)                   a one-condition case, for
 *                                                 programs that check a
 *                                                 sequence of states
 *   tu_init / tu_init_with(flags) / tu_flag       options; tu_finish
 *   tu_alarm(s)                                   a timeout for the binary
 * tu/child.h
 *   tu_run_child(fn, arg, ...)                    fn in a forked child,
 *                                                 stderr captured
 *   tu_case_in_child(body, timeout_s)             a case's body in a
 *                                                 forked child
 * tu/prog.h
 *   tu_run_prog(argv, opts, ...)                  a program (a helper, a
 *                                                 tool, this binary again)
 *                                                 with stdout and stderr
 *                                                 captured, extra variables,
 *                                                 LD_PRELOAD chosen, timeout
 *   tu_relay(prefix, out)                         a child's verdicts as ours
 * tu/paths.h
 *   tu_helper_path, tu_preload, tu_tmpdir         where things are
 * tu/text.h
 *   tu_fmt, tu_excerpt, tu_count, tu_value_of...  reading program output
 * tu/rng.h, tu/pattern.h
 *   tu_rng, tu_shuffle, tu_fill/tu_check (and sparse variants)  test data
 * tu/memstat.h, tu/glibc.h
 *   tu_rss_kib, tu_class_slabs, tu_glibc, tu_glibc_sym...       probes
 *
 * Every allocation in the tests goes through the `x*` function pointers
 * below: they are volatile, so gcc -O2 can neither elide malloc/free
 * pairs, nor fold malloc(SIZE_MAX) to NULL, nor warn about them.
 *
 * The header (with c-tests/tu/) compiles as C and as C++ (c-tests/cxx.cpp)
 * and is self-contained: a test builds on its own with
 *   gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude c-tests/NAME.c
 *       -Ltarget/release -lmmpool -Wl,-rpath,$PWD/target/release -ldl
 * (tests in c-tests/DIR/ include "../testutil.h"). */
#ifndef MMPOOL_TESTUTIL_H
#define MMPOOL_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TU_NO_MMPOOL
#include "mmpool.h"
#endif

#define TU_UNUSED __attribute__((unused))

#ifndef KiB
#define KiB ((size_t)1 << 10)
#endif
#ifndef MiB
#define MiB ((size_t)1 << 20)
#endif
#ifndef GiB
#define GiB ((size_t)1 << 30)
#endif

extern char **environ;

/* ------------------------------------------------------------------ */
/* Opaque entry points (see the header comment).                       */

static void *(*volatile xmalloc)(size_t) TU_UNUSED = malloc;
static void *(*volatile xcalloc)(size_t, size_t) TU_UNUSED = calloc;
static void *(*volatile xrealloc)(void *, size_t) TU_UNUSED = realloc;
static void *(*volatile xreallocarray)(void *, size_t, size_t) TU_UNUSED = reallocarray;
static void (*volatile xfree)(void *) TU_UNUSED = free;
static int (*volatile xposix_memalign)(void **, size_t, size_t) TU_UNUSED = posix_memalign;
static void *(*volatile xaligned_alloc)(size_t, size_t) TU_UNUSED = aligned_alloc;
static void *(*volatile xmemalign)(size_t, size_t) TU_UNUSED = memalign;
static void *(*volatile xvalloc)(size_t) TU_UNUSED = valloc;
static void *(*volatile xpvalloc)(size_t) TU_UNUSED = pvalloc;
static size_t (*volatile xusable)(void *) TU_UNUSED = malloc_usable_size;

/* ------------------------------------------------------------------ */
/* The rest, one concern a file.  In this order, each uses only the     */
/* ones before it (and tu_finish calls paths.h's tu_tmpdir_cleanup,     */
/* declared in harness.h).                                              */

#include "tu/harness.h"
#include "tu/rng.h"
#include "tu/pattern.h"
#include "tu/memstat.h"
#include "tu/glibc.h"
#include "tu/text.h"
#include "tu/paths.h"
#include "tu/child.h"
#include "tu/prog.h"

#endif /* MMPOOL_TESTUTIL_H */
