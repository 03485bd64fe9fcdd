/* c-tests/security/cases.c -- heap-bug cases in C, one per process.
 *
 *   target/security/cases <case>     run one case (see sec.h for the output)
 *   target/security/cases --list     the case names, one a line
 *
 * Each case does exactly one heap bug on a small (24 bytes), medium (3000)
 * or large (200000) block, then exercises the allocator and prints
 * `NOT STOPPED: <case>` when the program was not stopped.  The C++ cases
 * (new/delete mismatches) are in cases_cxx.cpp.  scripts/security.sh
 * builds and runs them under every allocator; c-tests/security/expected.txt
 * holds what mmpool must do with each. */
#include "sec.h"

#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

typedef void (*case_fn)(size_t size, long arg);

/* ------------------------------------------------------------------ */
/* Double free                                                          */

/* free(p); free(p) */
static void double_free_now(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    bug();
    xfree(p);
    v[VICTIM] = NULL;
    hood_survived(v, size, NULL);
}

/* free(p), then blocks of other sizes come and go, then free(p) again. */
static void double_free_delayed(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    size_t other = size + size / 2 + 512; /* another class of the same kind */
    void *o[64];
    for (int i = 0; i < 64; i++)
        o[i] = must_malloc(i % 2 ? other : 40);
    for (int i = 0; i < 64; i++)
        xfree(o[i]);
    bug();
    xfree(p);
    v[VICTIM] = NULL;
    hood_survived(v, size, NULL);
}

/* free(p); free(q); free(p): the classic a-b-a that passes a check of
 * the most recently freed block only. */
static void double_free_interleaved(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    char *q = (char *)v[VICTIM + 1];
    xfree(p);
    xfree(q);
    bug();
    xfree(p);
    v[VICTIM] = v[VICTIM + 1] = NULL;
    hood_survived(v, size, NULL);
}

/* free(p); the address is handed out again (q); the stale free(p) frees
 * q's block under its owner, who goes on using it and frees it later. */
static void double_free_reused(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    v[VICTIM] = NULL;
    void *got[32];
    int n = 0, owner = -1;
    while (n < 32) {
        got[n] = must_malloc(size);
        if (got[n] == p)
            owner = n;
        n++;
        if (owner >= 0)
            break;
    }
    bug();
    xfree(p);
    if (owner >= 0)
        xmemset(got[owner], 0x44, size); /* the owner goes on using it */
    void *r1 = xmalloc(size), *r2 = xmalloc(size);
    if (r1)
        xmemset(r1, 0x45, size);
    if (r2)
        xmemset(r2, 0x46, size);
    for (int i = 0; i < n; i++)
        xfree(got[i]);
    xfree(r1);
    xfree(r2);
    hood_survived(v, size,
                  owner >= 0 ? "the address was handed out again" : "the address did not come back");
}

static void *remote_free(void *p)
{
    bug();
    xfree(p);
    return NULL;
}

/* free(p) by its owner thread, then again by another thread. */
static void double_free_thread(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    v[VICTIM] = NULL;
    pthread_t t;
    if (pthread_create(&t, NULL, remote_free, p) != 0)
        setup_failed("pthread_create");
    pthread_join(t, NULL);
    hood_survived(v, size, NULL);
}

static void *plain_free(void *p)
{
    xfree(p);
    return NULL;
}

/* free(p) by another thread (the block waits to go back to its owner),
 * then again by the owner thread. */
static void double_free_remote_first(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    v[VICTIM] = NULL;
    pthread_t t;
    if (pthread_create(&t, NULL, plain_free, p) != 0)
        setup_failed("pthread_create");
    pthread_join(t, NULL);
    bug();
    xfree(p);
    hood_survived(v, size, NULL);
}

/* realloc() of a freed block. */
static void double_free_realloc(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    v[VICTIM] = NULL;
    bug();
    void *q = xrealloc(p, size * 2);
    if (q)
        xmemset(q, 0x47, size * 2);
    free_hood(v);
    xfree(q);
    exercise(size);
    not_stopped(NULL);
}

/* ------------------------------------------------------------------ */
/* Invalid free                                                         */

/* A stack array of the block's size. */
static void invalid_free_stack(size_t size, long arg)
{
    (void)arg;
    char buf[size];
    xmemset(buf, 0x30, size);
    bug();
    xfree(buf);
    exercise(size);
    not_stopped(NULL);
}

static void invalid_free_alloca(size_t size, long arg)
{
    (void)arg;
    char *buf = alloca(size);
    xmemset(buf, 0x31, size);
    bug();
    xfree(buf);
    exercise(size);
    not_stopped(NULL);
}

static char global_buf[4096] __attribute__((aligned(64)));

static void invalid_free_global(size_t size, long arg)
{
    (void)arg;
    xmemset(global_buf, 0x32, sizeof global_buf);
    bug();
    xfree(global_buf + 64);
    exercise(size);
    not_stopped(NULL);
}

/* arg: how far into the block the freed pointer is; -1: a 16-aligned
 * address a few blocks past it (a block: the usable size rounded up to
 * 16) that is none of the case's live blocks: where a block of the same
 * class that nobody allocated, or a free one, would start. */
static void invalid_free_offset(size_t size, long arg)
{
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    char *bad = p + arg;
    if (arg < 0) {
        size_t stride = (xusable(p) + 15) & ~(size_t)15;
        for (size_t k = 4;; k++) {
            bad = p + k * stride;
            int live = 0;
            for (int i = 0; i < HOOD; i++)
                live |= (char *)v[i] == bad;
            if (!live)
                break;
        }
    }
    bug();
    xfree(bad);
    hood_survived(v, size, NULL);
}

static int unmapped(void *page)
{
    unsigned char vec;
    return mincore(page, 4096, &vec) != 0 && errno == ENOMEM;
}

/* An address far from anything mapped. */
static void invalid_free_unmapped(size_t size, long arg)
{
    (void)arg;
    static const uintptr_t candidates[] = {
        0x100000000000, 0x123400000000, 0x200000000000, 0x3ff000000000, 0x10000000,
    };
    char *a = NULL;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !a; i++)
        if (unmapped((void *)candidates[i]))
            a = (char *)candidates[i];
    if (!a)
        setup_failed("no unmapped candidate address");
    bug();
    xfree(a + 64);
    exercise(size);
    not_stopped(NULL);
}

/* A page from mmap(), which no allocator handed out. */
static void invalid_free_mmap(size_t size, long arg)
{
    (void)arg;
    char *m = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        setup_failed("mmap");
    bug();
    xfree(m + (16 << 10));
    exercise(size);
    not_stopped(NULL);
}

/* ------------------------------------------------------------------ */
/* Overflow and underflow                                               */

#define OV_MEMCPY (1L << 40)
#define OV_UNDER (1L << 41)
#define OV_USABLE (1L << 42)
#define OV_BYTES(arg) ((size_t)((arg) & ((1L << 40) - 1)))
#define MIB ((size_t)1 << 20)

static char *source(size_t n)
{
    char *s = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        setup_failed("mmap");
    xmemset(s, 0x41, n);
    return s;
}

/* arg: OV_BYTES bytes, past the end (or OV_UNDER: before the start), by
 * byte stores (or OV_MEMCPY: one memcpy); OV_USABLE: past
 * malloc_usable_size() instead of the requested size. */
static void overflow(size_t size, long arg)
{
    size_t n = OV_BYTES(arg);
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    size_t end = arg & OV_USABLE ? xusable(p) : size;
    char *src = source(end + n);
    bug();
    if (arg & OV_UNDER) {
        if (arg & OV_MEMCPY)
            xmemcpy(p - n, src, n);
        else
            for (size_t i = 1; i <= n; i++)
                ((volatile char *)p)[-(ptrdiff_t)i] = 0x41;
    } else {
        if (arg & OV_MEMCPY)
            xmemcpy(p, src, end + n);
        else
            for (size_t i = 0; i < n; i++)
                ((volatile char *)p)[end + i] = 0x41;
    }
    hood_survived(v, size, NULL);
}

/* ------------------------------------------------------------------ */
/* Write after free                                                     */

static char forged[4096] __attribute__((aligned(64)));

/* arg 0: fill the freed block; 1: overwrite its first word (where free
 * lists keep their link) with the address of a global buffer; 2: the
 * block was handed out again before the write. */
static void write_after_free(size_t size, long arg)
{
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    v[VICTIM] = NULL;
    void *q = NULL;
    if (arg == 2)
        q = must_malloc(size);
    bug();
    if (arg == 1) {
        void *link = forged + 64;
        xmemcpy(p, &link, sizeof link);
    } else {
        xmemset(p, 0x42, size);
    }
    /* Allocations of the victim's size: a poisoned free list hands out
     * the forged address here. */
    int forged_out = 0;
    void *got[16];
    for (int i = 0; i < 16; i++) {
        got[i] = xmalloc(size);
        if (got[i] && (char *)got[i] >= forged && (char *)got[i] < forged + sizeof forged)
            forged_out = 1;
        else if (got[i])
            xmemset(got[i], 0x43, size);
    }
    for (int i = 0; i < 16; i++)
        if (!((char *)got[i] >= forged && (char *)got[i] < forged + sizeof forged))
            xfree(got[i]);
    xfree(q);
    hood_survived(v, size, forged_out ? "malloc returned the forged address" : NULL);
}

/* ------------------------------------------------------------------ */
/* malloc(0)                                                            */

/* arg bit 0: read (else write) 16 bytes; bit 1: after free. */
static void malloc0(size_t size, long arg)
{
    (void)size;
    void *v[HOOD];
    for (int i = 0; i < HOOD; i++)
        v[i] = xmalloc(0);
    volatile char *p = v[VICTIM];
    if (!p)
        is_protected("malloc(0) returned NULL");
    if (arg & 2) {
        xfree((void *)p);
        v[VICTIM] = NULL;
    }
    bug();
    volatile char sink = 0;
    for (int i = 0; i < 16; i++) {
        if (arg & 1)
            sink = (char)(sink + p[i]);
        else
            p[i] = 0x48;
    }
    hood_survived(v, 16, NULL);
}

/* ------------------------------------------------------------------ */
/* Properties                                                           */

/* free(p); malloc(same size) == p? */
static void reuse_immediate(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xfree(p);
    v[VICTIM] = NULL;
    bug();
    void *q = must_malloc(size);
    if (q == p)
        not_stopped("malloc returned the address just freed");
    is_protected("another address");
}

static size_t count_byte(const volatile unsigned char *p, size_t from, size_t to, unsigned char b)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        n += p[i] == b;
    return n;
}

/* A block that reuses freed memory still holds the old bytes: fill a
 * batch of blocks, free them all, allocate as many again (an allocator
 * that keeps frees apart from its allocation list for a while still
 * hands the memory out again within the batch). */
static void not_zeroed(size_t size, long arg)
{
    (void)arg;
    enum { N = 64 };
    int n = size > 100000 ? 16 : N;
    void *v[N];
    for (int i = 0; i < n; i++) {
        v[i] = must_malloc(size);
        xmemset(v[i], 0xa5, size);
    }
    for (int i = 0; i < n; i++)
        xfree(v[i]);
    bug();
    for (int i = 0; i < n; i++) {
        unsigned char *q = must_malloc(size);
        if (count_byte(q, 16, size, 0xa5) > (size - 16) / 2)
            not_stopped("a new block holds the bytes of a freed one");
    }
    is_protected("no new block holds the freed bytes");
}

static void gone(int sig)
{
    (void)sig;
    is_protected("reading the freed block faults");
}

/* After free the old bytes are still readable at the address. */
static void freed_readable(size_t size, long arg)
{
    (void)arg;
    void *v[HOOD];
    char *p = alloc_hood(size, v);
    xmemset(p, 0xa5, size);
    xfree(p);
    v[VICTIM] = NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = gone;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    bug();
    if (count_byte((unsigned char *)p, 16, size, 0xa5) > (size - 16) / 2)
        not_stopped("the freed bytes are still there");
    is_protected("the freed bytes are gone");
}

/* malloc and friends of sizes no machine can hold must return NULL. */
static void impossible_size(size_t size, long arg)
{
    (void)size;
    void *p = NULL, *old = NULL;
    if (arg == 6)
        old = must_malloc(100);
    bug();
    switch (arg) {
    case 0: p = xmalloc(SIZE_MAX); break;
    case 1: p = xmalloc((size_t)-4096); break;
    case 2: p = xmalloc(SIZE_MAX / 2 + 1); break;  /* PTRDIFF_MAX + 1 */
    case 3: p = xmalloc(PTRDIFF_MAX); break;
    /* 2^32 * (2^32 + 1) wraps to 4 GiB: an unchecked product succeeds */
    case 4: p = xcalloc((size_t)1 << 32, ((size_t)1 << 32) + 1); break;
    case 5: p = xreallocarray(NULL, (size_t)1 << 32, ((size_t)1 << 32) + 1); break;
    case 6: p = xrealloc(old, SIZE_MAX / 2); break;
    case 7:
        if (xposix_memalign(&p, 4096, SIZE_MAX - 4096) != 0)
            p = NULL;
        break;
    }
    if (p) {
        char buf[64];
        not_stopped(sec_hex("returned ", p, buf, sizeof buf));
    }
    is_protected("NULL");
}

static char maps[1 << 20];

/* Is the page holding a block executable? */
static void exec_heap(size_t size, long arg)
{
    (void)arg;
    char *p = must_malloc(size);
    bug();
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0)
        setup_failed("open /proc/self/maps");
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, maps + len, sizeof maps - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    maps[len] = 0;
    uintptr_t a = (uintptr_t)p;
    for (char *line = maps; *line;) {
        char *end;
        uintptr_t lo = strtoull(line, &end, 16);
        uintptr_t hi = strtoull(end + 1, &end, 16);
        if (lo <= a && a < hi) {
            if (end[3] == 'x')
                not_stopped("the block's page is executable");
            is_protected("not executable");
        }
        char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    setup_failed("the block is in no mapping of /proc/self/maps");
}

/* ------------------------------------------------------------------ */
/* The table                                                            */

struct case_entry {
    const char *name;
    case_fn fn;
    size_t size;
    long arg;
};

#define KINDS(name, fn, arg)                                \
    {name "_small", fn, SEC_SMALL, arg},                    \
    {name "_medium", fn, SEC_MEDIUM, arg},                  \
    {name "_large", fn, SEC_LARGE, arg}

#define OVERFLOWS(dir, flags)                                                   \
    KINDS(dir "_1_store", overflow, 1 | (flags)),                               \
    KINDS(dir "_1_memcpy", overflow, 1 | OV_MEMCPY | (flags)),                  \
    KINDS(dir "_32_store", overflow, 32 | (flags)),                             \
    KINDS(dir "_32_memcpy", overflow, 32 | OV_MEMCPY | (flags)),                \
    KINDS(dir "_1mib_store", overflow, (long)MIB | (flags)),                    \
    KINDS(dir "_1mib_memcpy", overflow, (long)MIB | OV_MEMCPY | (flags))

static const struct case_entry cases[] = {
    KINDS("double_free_now", double_free_now, 0),
    KINDS("double_free_delayed", double_free_delayed, 0),
    KINDS("double_free_interleaved", double_free_interleaved, 0),
    KINDS("double_free_reused", double_free_reused, 0),
    KINDS("double_free_thread", double_free_thread, 0),
    KINDS("double_free_remote_first", double_free_remote_first, 0),
    KINDS("double_free_realloc", double_free_realloc, 0),

    KINDS("invalid_free_stack", invalid_free_stack, 0),
    {"invalid_free_alloca_small", invalid_free_alloca, SEC_SMALL, 0},
    {"invalid_free_global_small", invalid_free_global, SEC_SMALL, 0},
    KINDS("invalid_free_interior", invalid_free_offset, 16),
    KINDS("invalid_free_unaligned", invalid_free_offset, 1),
    KINDS("invalid_free_blocks_off", invalid_free_offset, -1),
    {"invalid_free_unmapped", invalid_free_unmapped, SEC_SMALL, 0},
    {"invalid_free_mmap", invalid_free_mmap, SEC_SMALL, 0},

    OVERFLOWS("overflow", 0),
    KINDS("overflow_1_past_usable", overflow, 1 | OV_USABLE),
    OVERFLOWS("underflow", OV_UNDER),

    KINDS("write_after_free", write_after_free, 0),
    KINDS("write_after_free_link", write_after_free, 1),
    KINDS("write_after_free_reused", write_after_free, 2),

    {"malloc0_write", malloc0, 0, 0},
    {"malloc0_read", malloc0, 0, 1},
    {"malloc0_write_after_free", malloc0, 0, 2},
    {"malloc0_read_after_free", malloc0, 0, 3},

    KINDS("reuse_immediate", reuse_immediate, 0),
    KINDS("not_zeroed", not_zeroed, 0),
    KINDS("not_zeroed_after_free", freed_readable, 0),

    {"impossible_malloc_size_max", impossible_size, 0, 0},
    {"impossible_malloc_minus_4096", impossible_size, 0, 1},
    {"impossible_malloc_ptrdiff_max_plus_1", impossible_size, 0, 2},
    {"impossible_malloc_ptrdiff_max", impossible_size, 0, 3},
    {"impossible_calloc_wraps", impossible_size, 0, 4},
    {"impossible_reallocarray_wraps", impossible_size, 0, 5},
    {"impossible_realloc_half", impossible_size, 0, 6},
    {"impossible_posix_memalign", impossible_size, 0, 7},

    KINDS("exec_heap", exec_heap, 0),
};

int main(int argc, char **argv)
{
    size_t n = sizeof cases / sizeof cases[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) {
            sec_write(cases[i].name);
            sec_write("\n");
        }
        return 0;
    }
    if (argc != 2) {
        sec_write("usage: cases <case> | --list\n");
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            sec_case = argv[1];
            cases[i].fn(cases[i].size, cases[i].arg);
            setup_failed("the case returned");
        }
    }
    sec_write("cases: no such case\n");
    return 2;
}
