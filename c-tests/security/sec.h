/* c-tests/security/sec.h -- shared by cases.c and cases_cxx.cpp.
 *
 * A case program runs exactly one case, named by argv[1], and reports
 * on stdout with write(2) (never stdio: its buffers live on the heap the
 * case corrupts):
 *
 *   BUG: <case>            written just before the buggy operation; a
 *                          process that dies without it died in setup
 *   NOT STOPPED: <case>    the bug went through and the allocator did not
 *                          stop the program (written at the very end,
 *                          after the allocator had every chance to check:
 *                          frees, reallocs and more allocations); exit 0
 *   PROTECTED: <case>      property cases only (reuse, zeroing, impossible
 *                          sizes, executable heap): the allocator has the
 *                          property; exit 0
 *
 * Stopped = the process died by a signal (SIGABRT from an allocator check,
 * SIGSEGV/SIGBUS from a guard page or unmapped memory) or exited non-zero
 * after BUG and without NOT STOPPED; or PROTECTED.
 *
 * Every allocation goes through the volatile function pointers below, so
 * the compiler can neither remove a bug nor warn about it. */
#ifndef MMPOOL_SEC_H
#define MMPOOL_SEC_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SEC_UNUSED __attribute__((unused))

/* The three block kinds of mmpool: small <= 1 KiB (thread heaps), medium
 * 1-64 KiB (per-CPU heaps), large > 64 KiB (own mapping).  24 bytes is
 * 8 bytes short of mmpool's 32-byte class (glibc: exactly its usable
 * size); 3000 is 72 bytes short of mmpool's 3072 class; 200000 is 704
 * bytes short of the 49 pages a large block takes. */
#define SEC_SMALL ((size_t)24)
#define SEC_MEDIUM ((size_t)3000)
#define SEC_LARGE ((size_t)200000)

static void *(*volatile xmalloc)(size_t) SEC_UNUSED = malloc;
static void *(*volatile xcalloc)(size_t, size_t) SEC_UNUSED = calloc;
static void *(*volatile xrealloc)(void *, size_t) SEC_UNUSED = realloc;
static void *(*volatile xreallocarray)(void *, size_t, size_t) SEC_UNUSED = reallocarray;
static void (*volatile xfree)(void *) SEC_UNUSED = free;
static int (*volatile xposix_memalign)(void **, size_t, size_t) SEC_UNUSED = posix_memalign;
static size_t (*volatile xusable)(void *) SEC_UNUSED = malloc_usable_size;
static void *(*volatile xmemcpy)(void *, const void *, size_t) SEC_UNUSED = memcpy;
static void *(*volatile xmemset)(void *, int, size_t) SEC_UNUSED = memset;

/* The running case's name: on main's stack (a wild heap write cannot
 * reach it), pointed to from here. */
static const char *sec_case = "?";

static void sec_write(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(1, s, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

/* "<tag>: <case>[ (<detail>)]\n" in one write. */
static void sec_say(const char *tag, const char *detail)
{
    char line[512];
    size_t n = 0;
    const char *parts[5] = {tag, ": ", sec_case, detail ? " (" : "", detail ? detail : ""};
    for (int i = 0; i < 5; i++)
        for (const char *s = parts[i]; *s && n < sizeof line - 3; s++)
            line[n++] = *s;
    if (detail)
        line[n++] = ')';
    line[n++] = '\n';
    line[n] = 0;
    sec_write(line);
}

/* Just before the bug. */
static SEC_UNUSED void bug(void)
{
    sec_say("BUG", NULL);
}

/* The bug went through: the marker, then out without atexit handlers. */
static SEC_UNUSED __attribute__((noreturn)) void not_stopped(const char *detail)
{
    sec_say("NOT STOPPED", detail);
    _exit(0);
}

/* A property case found the allocator safe. */
static SEC_UNUSED __attribute__((noreturn)) void is_protected(const char *detail)
{
    sec_say("PROTECTED", detail);
    _exit(0);
}

/* Setup failed (malloc returned NULL before the bug...): not a result. */
static SEC_UNUSED __attribute__((noreturn)) void setup_failed(const char *why)
{
    sec_say("SETUP FAILED", why);
    _exit(3);
}

static SEC_UNUSED void *must_malloc(size_t size)
{
    void *p = xmalloc(size);
    if (!p)
        setup_failed("malloc returned NULL");
    return p;
}

/* "0x..." of a pointer, into buf. */
static SEC_UNUSED const char *sec_hex(const char *prefix, const void *p, char *buf, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    uintptr_t v = (uintptr_t)p;
    char tmp[2 + 2 * sizeof v + 1];
    size_t i = sizeof tmp - 1;
    tmp[i] = 0;
    do {
        tmp[--i] = digits[v & 15];
        v >>= 4;
    } while (v && i > 2);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    size_t n = 0;
    for (const char *s = prefix; *s && n + 1 < len; s++)
        buf[n++] = *s;
    for (const char *s = tmp + i; *s && n + 1 < len; s++)
        buf[n++] = *s;
    buf[n] = 0;
    return buf;
}

/* Give the allocator every chance to notice a corrupted heap: allocate,
 * free, reallocate and free again blocks of the victim's size (taking
 * back the freed victim and its neighbours) and of every other kind. */
static SEC_UNUSED void exercise(size_t size)
{
    enum { N = 32 };
    void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = xmalloc(size);
        if (v[i])
            xmemset(v[i], 0x11, size < 64 ? size : 64);
    }
    for (int i = 0; i < N; i += 2) {
        xfree(v[i]);
        v[i] = NULL;
    }
    for (int i = 0; i < N; i += 2) {
        v[i] = xmalloc(size);
        if (v[i])
            xmemset(v[i], 0x12, size);
    }
    v[1] = xrealloc(v[1], size * 2 + 1);
    v[3] = xrealloc(v[3], size / 2 + 1);
    for (int i = 0; i < N; i++)
        xfree(v[i]);
    static const size_t others[] = {16, 24, 48, 100, 1000, 3000, 20000, 200000};
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
        void *a = xmalloc(others[k]);
        void *b = xmalloc(others[k]);
        if (a)
            xmemset(a, 0x13, others[k]);
        if (b)
            xmemset(b, 0x14, others[k]);
        xfree(a);
        a = xmalloc(others[k]);
        xfree(b);
        xfree(a);
    }
}

/* Nine blocks of one size, allocated in a row and filled; the victim is
 * the middle one, so it has neighbours on both sides whatever direction
 * the allocator hands out addresses in. */
#define HOOD 9
#define VICTIM 4

static SEC_UNUSED char *alloc_hood(size_t size, void **v)
{
    for (int i = 0; i < HOOD; i++) {
        v[i] = must_malloc(size);
        xmemset(v[i], 0x33, size);
    }
    return (char *)v[VICTIM];
}

/* The victim first, then its neighbours (an allocator checking at free
 * time sees the victim's own canary or header, then the neighbours'). */
static SEC_UNUSED void free_hood(void **v)
{
    xfree(v[VICTIM]);
    for (int i = 0; i < HOOD; i++)
        if (i != VICTIM)
            xfree(v[i]);
}

/* A hood case's end once its bug went through: the hood freed, the
 * allocator exercised with the victim's size, then the marker. */
static SEC_UNUSED __attribute__((noreturn)) void hood_survived(void **v, size_t size,
                                                               const char *detail)
{
    free_hood(v);
    exercise(size);
    not_stopped(detail);
}

static SEC_UNUSED size_t size_of_kind(const char *kind)
{
    if (strcmp(kind, "small") == 0)
        return SEC_SMALL;
    if (strcmp(kind, "medium") == 0)
        return SEC_MEDIUM;
    return SEC_LARGE;
}

#endif
