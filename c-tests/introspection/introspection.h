/* c-tests/introspection/introspection.h -- what the tests of
 * c-tests/introspection/ share: glibc's introspection API with glibc's
 * meanings, one concern a file: mallinfo/mallinfo2 (mallinfo.c),
 * malloc_stats (malloc_stats.c), mallopt and malloc_info
 * (mallopt_info.c).
 *
 * mallinfo2 (the fields a program or a monitoring agent reads):
 *   uordblks  bytes in allocated blocks (not counting mmapped ones)
 *   fordblks  free bytes the allocator holds
 *   arena     bytes obtained from the OS (not counting mmapped blocks)
 *   hblks     number of mmapped ("large") blocks live
 *   hblkhd    bytes of those mappings
 *   keepcost  free bytes that could be given back at once (part of
 *             fordblks)
 * so a block that is freed no longer counts, whichever thread freed it,
 * and a thread that exits leaves uordblks where it found it.  These must
 * hold always, with or without MMPOOL_STATS.
 *
 * The bounds (chosen so that glibc 2.36 meets them too; its tcache keeps
 * up to 7 freed blocks per size counted as allocated, and every chunk
 * carries an 8-16 byte header counted in uordblks):
 *   SLACK = 4 KiB       noise allowed in uordblks around any sequence
 *   n blocks of sizes s_i live: requested - SLACK <= delta uordblks
 *                               <= sum of malloc_usable_size + 16 n + SLACK
 *   large blocks (>= 256 KiB, mmapped by glibc below its 32 MiB dynamic
 *   threshold cap only if the process has not freed such a block before:
 *   each case runs in a fresh child, large blocks first):
 *     delta hblks == n,  requested <= delta hblkhd <= usable + 64 KiB n,
 *     |delta uordblks| <= SLACK, and all back to the start after free.
 *
 * malloc_stats: not a cancellation point (glibc writes with cancellation
 *   disabled), and its output starts with glibc's lines, which scripts
 *   parse, before anything of the allocator's own.
 * mallopt / malloc_info: defined by the allocator that serves malloc (not
 *   glibc's, answering for its unused heap); mallopt returns what glibc's
 *   returns for each parameter; M_MMAP_THRESHOLD has the effect described
 *   at test_mallopt_mmap_threshold (mallopt_info.c); malloc_info writes
 *   well-formed XML whose numbers agree with mallinfo2.
 *
 * Every case runs in a forked child (tu_case_in_child): its allocations,
 * threads and mallopt settings stay there.
 *
 * On plain glibc (no libmmpool at all) every case must pass too:
 *   gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude \
 *       c-tests/introspection/NAME.c -o target/c/introspection/NAME.glibc -ldl
 *   target/c/introspection/NAME.glibc
 * (a binary linked with -lmmpool gets mmpool's malloc even without
 * LD_PRELOAD: libmmpool comes before libc in its lookup order.)
 * TU_VERBOSE=1 prints the numbers each case measured. */
#ifndef MMPOOL_INTROSPECTION_TESTS_H
#define MMPOOL_INTROSPECTION_TESTS_H

#include "../testutil.h"

#include <limits.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define SLACK (4 * KiB)
#define HEADER 16            /* glibc's per-chunk overhead allowed per block */
#define LARGE_ROUND (64 * KiB) /* per mapping: page/granule rounding, headers */
#define HUGE_VALUE ((size_t)1 << 47) /* no field is ever this big here */
#define ERRNO_MARK 4242

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void note(const char *fmt, ...)
{
    if (!getenv("TU_VERBOSE"))
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("    [%s] %s\n", tu_case_name, buf);
}

static struct mallinfo2 TU_UNUSED mi(void)
{
    return mallinfo2();
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static struct mallinfo TU_UNUSED mi_int(void)
{
    return mallinfo();
}
#pragma GCC diagnostic pop

static long long TU_UNUSED d(size_t after, size_t before)
{
    return (long long)after - (long long)before;
}

static long long TU_UNUSED labs_ll(long long v)
{
    return v < 0 ? -v : v;
}

#endif /* MMPOOL_INTROSPECTION_TESTS_H */
