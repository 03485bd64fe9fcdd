/* c-tests/limits.c -- allocation under limits: RLIMIT_AS, the kernel's
 * overcommit policy, and errno on every failed allocation (glibc's
 * behaviour, case by case).
 *
 * rlimit_as_*: with RLIMIT_AS set to the address space in use plus
 *   2 MiB, small allocations must still succeed (glibc grows its heap by
 *   a few pages; an allocator that needs a 4 MiB mapping for its first
 *   small block fails them all).
 * overcommit_*: malloc(1 TiB) on a machine with less memory: glibc's
 *   mmap is refused by the kernel's heuristic overcommit check (mode 0)
 *   or by strict accounting (mode 2), so it returns NULL with ENOMEM; a
 *   MAP_NORESERVE mapping skips the check and "succeeds".  The
 *   expectation is taken from glibc's own malloc in the same process
 *   (tu_glibc), so on a machine where glibc gets 1 TiB, or with
 *   vm.overcommit_memory = 1, the cases are skipped with the reason.
 * *_errno: every allocation function with impossible sizes and bad
 *   alignments, compared with glibc's own function called in the same
 *   process (dlsym on libc's handle): NULL or not, the return value of
 *   posix_memalign, errno afterwards (or errno left alone), *memptr left
 *   alone, the block of a failed realloc intact.
 *
 * Every case that could hang or leave the process changed (rlimits,
 * 1 TiB mappings) runs in a forked child with an alarm() watchdog.
 *
 * On plain glibc (no libmmpool at all) every case must pass too:
 *   gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude c-tests/limits.c \
 *       -o target/c/limits.glibc -ldl && target/c/limits.glibc
 * (a binary linked with -lmmpool gets mmpool's malloc even without
 * LD_PRELOAD: libmmpool comes before libc in its lookup order.) */
#include "testutil.h"
#include "mmpool.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define TiB ((size_t)1 << 40)
#define PDMAX ((size_t)PTRDIFF_MAX)
#define SENTINEL ((void *)(uintptr_t)0x5e5e5e50)
#define ERRNO_MARK 4242 /* errno before each call: "unchanged" means still this */

static char *self_exe;

static const char *errname(int e)
{
    switch (e) {
    case ERRNO_MARK: return "unchanged";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case 0: return "0";
    default: return strerror(e);
    }
}

/* /proc/self/status's VmSize in KiB, read without allocating (no stdio:
 * the rlimit cases must not make the allocator map anything before the
 * limit is set). */
static long vmsize_kib_noalloc(void)
{
    static char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    const char *p = strstr(buf, "\nVmSize:");
    return p ? strtol(p + 8, NULL, 10) : -1;
}

/* ------------------------------------------------------------------ */
/* 3. RLIMIT_AS = address space in use + 2 MiB.                         */

/* Sets the limit to the address space in use plus `extra` bytes; false
 * (and a failure or skip recorded) when it cannot. */
static bool set_as_limit(long *vm_kib, rlim_t extra)
{
    long kib = vmsize_kib_noalloc();
    *vm_kib = kib;
    if (kib <= 0) {
        FAILF("cannot read VmSize from /proc/self/status");
        return false;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) {
        FAILF("getrlimit(RLIMIT_AS): %s", strerror(errno));
        return false;
    }
    rlim_t want = (rlim_t)kib * 1024 + extra;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        SKIP("the hard RLIMIT_AS (%llu) is below VmSize + %llu KiB",
             (unsigned long long)rl.rlim_max, (unsigned long long)extra / 1024);
        return false;
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        FAILF("setrlimit(RLIMIT_AS, %llu): %s", (unsigned long long)want, strerror(errno));
        return false;
    }
    return true;
}

static bool set_tight_as_limit(long *vm_kib)
{
    return set_as_limit(vm_kib, 2 * MiB);
}

/* malloc(256) first, then a handful of other sizes (small, medium, one
 * of 100 KB), calloc, a realloc that grows, everything written, freed,
 * and malloc(256) again: about 150 KB in all, well inside the 2 MiB. */
static void small_allocs_under_limit(long vm_kib, const char *where)
{
    static const size_t sizes[] = {256, 16, 48, 100, 200, 512, 1000, 1500,
                                   3000, 8000, 20000, 100000};
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *p[N] = {0};
    for (size_t i = 0; i < N; i++) {
        errno = 0;
        p[i] = xmalloc(sizes[i]);
        if (!p[i]) {
            FAILF("%s: malloc(%zu) returned NULL (errno %s) with RLIMIT_AS = VmSize "
                  "(%ld KiB) + 2 MiB", where, sizes[i], errname(errno), vm_kib);
            break;
        }
        memset(p[i], (int)i + 1, sizes[i]);
    }
    void *c = xcalloc(10, 30);
    CHECK(c != NULL && tu_all_zero(c, 300), "%s: calloc(10, 30) = %p under the limit",
          where, c);
    void *r = xmalloc(100);
    CHECK(r != NULL, "%s: malloc(100) failed under the limit", where);
    if (r) {
        memset(r, 7, 100);
        void *r2 = xrealloc(r, 5000);
        CHECK(r2 != NULL, "%s: realloc(100 -> 5000) failed under the limit", where);
        if (r2) {
            unsigned char *b = r2;
            CHECK(b[0] == 7 && b[99] == 7, "%s: realloc lost the contents", where);
            r = r2;
        }
    }
    for (size_t i = 0; i < N; i++) {
        if (p[i]) {
            unsigned char *b = p[i];
            CHECK(b[0] == (unsigned char)(i + 1) && b[sizes[i] - 1] == (unsigned char)(i + 1),
                  "%s: block of %zu bytes corrupted", where, sizes[i]);
        }
        xfree(p[i]);
    }
    xfree(c);
    xfree(r);
    void *again = xmalloc(256);
    CHECK(again != NULL, "%s: malloc(256) after the frees returned NULL", where);
    xfree(again);
}

/* Runs in a freshly exec'd copy of the test (see main): the limit is set
 * before the program's first allocation, like a program started under
 * `ulimit -v`. */
static void rlimit_fresh_body(void)
{
    long vm;
    if (!set_tight_as_limit(&vm))
        return;
    small_allocs_under_limit(vm, "fresh process");
}

/* Run this test again, freshly exec'd, as `mode` (main's first lines). */
static void exec_self(const char *mode)
{
    char *argv[] = {self_exe, (char *)mode, NULL};
    execv("/proc/self/exe", argv);
    FAILF("execv(/proc/self/exe): %s", strerror(errno));
}

static void exec_rlimit_child(void)
{
    exec_self("--rlimit-as-child");
}

/* The user's report: `ulimit -v $((VmSize + 2 MiB))`-like limits make
 * the first malloc(256) of a program fail (it needs a 4 MiB span). */
static void test_rlimit_as_small_malloc(void)
{
    tu_case_in_child(exec_rlimit_child, 20);
}

/* The same after the allocator has been in use (a forked child of this
 * process: size classes already have slabs, others do not). */
static void rlimit_warm_body(void)
{
    long vm;
    if (!set_tight_as_limit(&vm))
        return;
    small_allocs_under_limit(vm, "after earlier use");
}

static void test_rlimit_as_small_malloc_after_use(void)
{
    tu_case_in_child(rlimit_warm_body, 20);
}

/* The biggest medium classes under the limit: a block of 54-64 KiB
 * does not fit in a one-granule slab beside the header (the secure
 * build's header and guard pages take 12 KiB), so their fallback slab is
 * two granules. Each size is allocated, written and freed eight times
 * (a slab of one granule held no block: every malloc failed and left a
 * slab behind, until the address space was gone), then other sizes must
 * still work. */
static void rlimit_big_medium_body(void)
{
    long vm;
    if (!set_tight_as_limit(&vm))
        return;
    static const size_t sizes[] = {50000, 54000, 58000, 61440, 64000, 65528};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int k = 0; k < 8; k++) {
            errno = 0;
            unsigned char *p = xmalloc(sizes[i]);
            if (!p) {
                FAILF("malloc(%zu) returned NULL (errno %s), try %d, with RLIMIT_AS = VmSize "
                      "(%ld KiB) + 2 MiB", sizes[i], errname(errno), k + 1, vm);
                return;
            }
            memset(p, 0x5a, sizes[i]);
            xfree(p);
        }
    }
    /* What is left of the 2 MiB still serves other sizes (each slab of
     * one granule that held no block used up 64 KiB of it). */
    static const size_t after[] = {256, 3000, 100000};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        errno = 0;
        void *p = xmalloc(after[i]);
        CHECK(p != NULL, "malloc(%zu) after the biggest medium classes returned NULL (errno %s)",
              after[i], errname(errno));
        xfree(p);
    }
}

static void exec_big_medium_child(void)
{
    exec_self("--rlimit-big-child");
}

/* In a freshly exec'd process, as rlimit_as_small_malloc: there the pool
 * has no span with room left, so every slab is mapped under the limit. */
static void test_rlimit_as_big_medium_classes(void)
{
    tu_case_in_child(exec_big_medium_child, 20);
}

/* A large block of 3 MiB with RLIMIT_AS = address space in use +
 * 3.75 MiB: its mapping of whole 64 KiB granules fits (with room for a
 * page-map leaf), the 4 MiB that blocks of 2 MiB and more are rounded
 * to (2 MiB units, for mremap) does not: the allocator falls back to
 * granules instead of failing, and a realloc to a little more stays in
 * them; so does a block aligned to 128 KiB. Twice: the second one takes the first
 * one's range, or (the secure build, whose quarantine holds freed ranges
 * back) fresh memory once the cached ranges went back to the OS. */
static void rlimit_large_body(void)
{
    long vm;
    if (!set_as_limit(&vm, 3 * MiB + 768 * 1024))
        return;
    for (int k = 0; k < 2; k++) {
        errno = 0;
        unsigned char *p = xmalloc(3 * MiB);
        if (!p) {
            FAILF("malloc(3 MiB) returned NULL (errno %s), try %d, with RLIMIT_AS = VmSize "
                  "(%ld KiB) + 3.75 MiB", errname(errno), k + 1, vm);
            return;
        }
        memset(p, 0x5a, 3 * MiB);
        CHECK(p[0] == 0x5a && p[3 * MiB - 1] == 0x5a, "the 3 MiB block does not hold its bytes");
        /* A little more still fits in its granules: no new mapping. */
        errno = 0;
        unsigned char *q = xrealloc(p, 3 * MiB + 1000);
        if (!q) {
            FAILF("realloc(3 MiB -> 3 MiB + 1000) returned NULL (errno %s), try %d, under the limit",
                  errname(errno), k + 1);
            xfree(p);
            return;
        }
        CHECK(q[0] == 0x5a && q[3 * MiB - 1] == 0x5a, "realloc lost the 3 MiB block's bytes");
        q[3 * MiB + 999] = 1;
        xfree(q);
        /* The same with an alignment above a granule's 64 KiB. */
        void *al = NULL;
        int rc = posix_memalign(&al, 128 * 1024, 3 * MiB);
        if (rc != 0) {
            FAILF("posix_memalign(128 KiB, 3 MiB) = %s, try %d, under the limit", errname(rc),
                  k + 1);
            return;
        }
        CHECK(((uintptr_t)al & (128 * 1024 - 1)) == 0, "posix_memalign gave %p", al);
        memset(al, 0x33, 3 * MiB);
        free(al);
    }
}

static void test_rlimit_as_large_block(void)
{
    tu_case_in_child(rlimit_large_body, 20);
}

/* A thread started before the limit (its stack is mapped then) makes its
 * first allocations after it. */
static long thread_vm;
static pthread_barrier_t thread_go;

static void *limited_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&thread_go);
    small_allocs_under_limit(thread_vm, "new thread");
    return NULL;
}

static void rlimit_thread_body(void)
{
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * KiB);
    pthread_barrier_init(&thread_go, NULL, 2);
    pthread_t t;
    int rc = pthread_create(&t, &at, limited_thread, NULL);
    REQUIRE(rc == 0, "pthread_create: %s", strerror(rc));
    bool ok = set_tight_as_limit(&thread_vm);
    pthread_barrier_wait(&thread_go); /* the thread runs the allocations either way */
    pthread_join(t, NULL);
    (void)ok;
}

static void test_rlimit_as_small_malloc_new_thread(void)
{
    tu_case_in_child(rlimit_thread_body, 20);
}

/* ------------------------------------------------------------------ */
/* 4. Overcommit: what glibc's malloc is refused, ours must refuse too. */

static int overcommit_mode(void)
{
    FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
    int m = -1;
    if (f) {
        if (fscanf(f, "%d", &m) != 1)
            m = -1;
        fclose(f);
    }
    return m;
}

/* True when the case applies: glibc's own allocation of 1 TiB (through
 * `glibc_try`) fails here with ENOMEM.  Otherwise records a skip (or a
 * failure) and returns false. */
static bool glibc_refuses(const char *what, bool glibc_failed, int glibc_errno)
{
    int mode = overcommit_mode();
    if (mode == 1) {
        SKIP("vm.overcommit_memory = 1 (always overcommit): the kernel grants any "
             "mapping, so nothing is refused");
        return false;
    }
    if (!glibc_failed) {
        SKIP("glibc's own %s succeeds on this machine (vm.overcommit_memory = %d, "
             "%ld KiB of RAM): nothing to refuse", what, mode,
             sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGESIZE) / 1024));
        return false;
    }
    if (glibc_errno != ENOMEM) {
        FAILF("glibc's own %s failed with errno %s, not ENOMEM", what, errname(glibc_errno));
        return false;
    }
    return true;
}

#define OVERCOMMIT_WHY "glibc refuses it (NULL, ENOMEM) under vm.overcommit_memory = %d " \
                       "(MAP_NORESERVE skips the kernel's overcommit check)"

static void overcommit_malloc_body(void)
{
    tu_glibc_api g;
    REQUIRE(tu_glibc(&g), "glibc's malloc functions not found");
    errno = ERRNO_MARK;
    void *gp = g.malloc(TiB);
    int ge = errno;
    if (gp)
        g.free(gp);
    if (!glibc_refuses("malloc(1 TiB)", gp == NULL, ge))
        return;
    errno = ERRNO_MARK;
    void *p = xmalloc(TiB);
    int e = errno;
    CHECK(p == NULL, "malloc(1 TiB) = %p, but " OVERCOMMIT_WHY, p, overcommit_mode());
    CHECK(p != NULL || e == ENOMEM, "malloc(1 TiB) = NULL with errno %s, want ENOMEM",
          errname(e));
    xfree(p);
    void *q = xmalloc(100);
    CHECK(q != NULL, "malloc(100) after the refused 1 TiB returned NULL");
    xfree(q);
}

static void test_overcommit_impossible_malloc(void)
{
    tu_case_in_child(overcommit_malloc_body, 20);
}

/* An impossible request does not empty the secure build's quarantine
 * of freed large ranges (only a request that the cached bytes could
 * make room for gives them back): the next block of a freed block's size
 * does not take its address. It did when every failed large mapping
 * emptied the cache. */
static void impossible_keeps_quarantine_body(void)
{
    void (*get)(mmpool_stats_t *) =
        (void (*)(mmpool_stats_t *))dlsym(RTLD_DEFAULT, "mmpool_stats_get");
    mmpool_stats_t st;
    memset(&st, 0, sizeof st);
    if (get)
        get(&st);
    if (!st.secure) {
        SKIP("only the secure build has a quarantine of large ranges (this is %s)",
             get ? "the default build" : "not mmpool");
        return;
    }
    unsigned char *a = xmalloc(3 * MiB);
    REQUIRE(a != NULL, "malloc(3 MiB) failed");
    memset(a, 1, 3 * MiB);
    xfree(a);
    errno = ERRNO_MARK;
    void *huge = xmalloc((size_t)1 << 46);
    int e = errno;
    if (huge) {
        xfree(huge);
        SKIP("the kernel granted 64 TiB (vm.overcommit_memory = %d)", overcommit_mode());
        return;
    }
    CHECK(e == ENOMEM, "malloc(64 TiB) = NULL with errno %s, want ENOMEM", errname(e));
    unsigned char *b = xmalloc(3 * MiB);
    CHECK(b != NULL && b != a,
          "malloc(3 MiB) after a failed malloc(64 TiB) = %p, the block freed before it: "
          "the quarantine was emptied", (void *)b);
    xfree(b);
}

static void test_impossible_malloc_keeps_quarantine(void)
{
    tu_case_in_child(impossible_keeps_quarantine_body, 20);
}

static void overcommit_calloc_body(void)
{
    tu_glibc_api g;
    REQUIRE(tu_glibc(&g), "glibc's malloc functions not found");
    errno = ERRNO_MARK;
    void *gp = g.calloc(1, TiB);
    int ge = errno;
    if (gp)
        g.free(gp);
    if (!glibc_refuses("calloc(1, 1 TiB)", gp == NULL, ge))
        return;
    errno = ERRNO_MARK;
    void *p = xcalloc(1, TiB);
    int e = errno;
    CHECK(p == NULL, "calloc(1, 1 TiB) = %p, but " OVERCOMMIT_WHY, p, overcommit_mode());
    CHECK(p != NULL || e == ENOMEM, "calloc(1, 1 TiB) = NULL with errno %s, want ENOMEM",
          errname(e));
    xfree(p);
    errno = ERRNO_MARK;
    p = xcalloc(MiB, MiB); /* 1 TiB as a product */
    e = errno;
    CHECK(p == NULL && e == ENOMEM, "calloc(1 MiB, 1 MiB) = %p (errno %s), but " OVERCOMMIT_WHY,
          p, errname(e), overcommit_mode());
    xfree(p);
}

static void test_overcommit_impossible_calloc(void)
{
    tu_case_in_child(overcommit_calloc_body, 20);
}

static void overcommit_realloc_body(void)
{
    tu_glibc_api g;
    REQUIRE(tu_glibc(&g), "glibc's malloc functions not found");
    void *gb = g.malloc(100);
    REQUIRE(gb != NULL, "glibc malloc(100)");
    errno = ERRNO_MARK;
    void *gp = g.realloc(gb, TiB);
    int ge = errno;
    g.free(gp ? gp : gb);
    if (!glibc_refuses("realloc(100-byte block, 1 TiB)", gp == NULL, ge))
        return;
    for (size_t from = 100; from <= 200 * KiB; from *= 2000) { /* small, then large */
        unsigned char *b = xmalloc(from);
        REQUIRE(b != NULL, "malloc(%zu)", from);
        tu_fill(b, from, 5);
        errno = ERRNO_MARK;
        void *p = xrealloc(b, TiB);
        int e = errno;
        CHECK(p == NULL, "realloc(block of %zu, 1 TiB) = %p, but " OVERCOMMIT_WHY, from, p,
              overcommit_mode());
        if (p) {
            xfree(p);
            continue;
        }
        CHECK(e == ENOMEM, "realloc(block of %zu, 1 TiB) = NULL with errno %s, want ENOMEM",
              from, errname(e));
        CHECK(tu_check(b, from, 5) == (size_t)-1,
              "the block of %zu bytes changed after the failed realloc", from);
        xfree(b);
    }
}

static void test_overcommit_impossible_realloc(void)
{
    tu_case_in_child(overcommit_realloc_body, 20);
}

static void overcommit_posix_memalign_body(void)
{
    tu_glibc_api g;
    REQUIRE(tu_glibc(&g), "glibc's malloc functions not found");
    void *gp = SENTINEL;
    int grc = g.posix_memalign(&gp, 64, TiB);
    if (grc == 0)
        g.free(gp);
    if (!glibc_refuses("posix_memalign(64, 1 TiB)", grc != 0, grc))
        return;
    static const size_t aligns[] = {64, 4096, 2 * MiB};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, aligns[i], TiB);
        CHECK(rc == ENOMEM, "posix_memalign(&p, %zu, 1 TiB) = %d (p %p), but glibc's returns "
              "ENOMEM under vm.overcommit_memory = %d", aligns[i], rc, p, overcommit_mode());
        CHECK(rc == 0 || p == SENTINEL, "posix_memalign wrote *p on failure");
        if (rc == 0)
            xfree(p);
    }
}

static void test_overcommit_impossible_posix_memalign(void)
{
    tu_case_in_child(overcommit_posix_memalign_body, 20);
}

/* aligned_alloc, memalign, valloc, pvalloc of 1 TiB. */
static void overcommit_aligned_body(void)
{
    tu_glibc_api g;
    REQUIRE(tu_glibc(&g), "glibc's malloc functions not found");
    errno = ERRNO_MARK;
    void *gp = g.memalign(4096, TiB);
    int ge = errno;
    if (gp)
        g.free(gp);
    if (!glibc_refuses("memalign(4096, 1 TiB)", gp == NULL, ge))
        return;
    static const char *names[] = {"aligned_alloc(4096, 1 TiB)", "memalign(4096, 1 TiB)",
                                  "valloc(1 TiB)", "pvalloc(1 TiB)"};
    for (int fn = 0; fn < 4; fn++) {
        errno = ERRNO_MARK;
        void *p = fn == 0 ? xaligned_alloc(4096, TiB)
                : fn == 1 ? xmemalign(4096, TiB)
                : fn == 2 ? xvalloc(TiB) : xpvalloc(TiB);
        int e = errno;
        CHECK(p == NULL, "%s = %p, but " OVERCOMMIT_WHY, names[fn], p, overcommit_mode());
        CHECK(p != NULL || e == ENOMEM, "%s = NULL with errno %s, want ENOMEM", names[fn],
              errname(e));
        xfree(p);
    }
}

static void test_overcommit_impossible_aligned(void)
{
    tu_case_in_child(overcommit_aligned_body, 20);
}

/* ------------------------------------------------------------------ */
/* 5. errno on failure: the program's function against glibc's own.      */

enum fn_id {
    F_MALLOC, F_CALLOC, F_REALLOC, F_REALLOC_NULL, F_REALLOCARRAY, F_REALLOCARRAY_NULL,
    F_POSIX_MEMALIGN, F_ALIGNED_ALLOC, F_MEMALIGN, F_VALLOC, F_PVALLOC,
};

typedef struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    void (*free)(void *);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
} api_t;

typedef struct {
    enum fn_id fn;
    size_t a, b;
} call_t;

typedef struct {
    bool ptr;          /* returned a block (posix_memalign: returned 0) */
    int ret;           /* posix_memalign's return value */
    int err;           /* errno afterwards (ERRNO_MARK: unchanged) */
    bool wrote_memptr; /* posix_memalign wrote *memptr although it failed */
    bool lost_block;   /* a failed realloc changed or freed the old block */
} outcome_t;

static api_t prog_api(void)
{
    api_t a = {xmalloc, xcalloc, xrealloc, xreallocarray, xfree, xposix_memalign,
               xaligned_alloc, xmemalign, xvalloc, xpvalloc};
    return a;
}

static bool glibc_api(api_t *a)
{
    *(void **)&a->malloc = tu_glibc_sym("malloc");
    *(void **)&a->calloc = tu_glibc_sym("calloc");
    *(void **)&a->realloc = tu_glibc_sym("realloc");
    *(void **)&a->reallocarray = tu_glibc_sym("reallocarray");
    *(void **)&a->free = tu_glibc_sym("free");
    *(void **)&a->posix_memalign = tu_glibc_sym("posix_memalign");
    *(void **)&a->aligned_alloc = tu_glibc_sym("aligned_alloc");
    *(void **)&a->memalign = tu_glibc_sym("memalign");
    *(void **)&a->valloc = tu_glibc_sym("valloc");
    *(void **)&a->pvalloc = tu_glibc_sym("pvalloc");
    return a->malloc && a->calloc && a->realloc && a->reallocarray && a->free &&
           a->posix_memalign && a->aligned_alloc && a->memalign && a->valloc && a->pvalloc;
}

static outcome_t do_call(const api_t *api, const call_t *c)
{
    outcome_t o = {0};
    void *p = NULL;
    unsigned char *old = NULL;
    switch (c->fn) {
    case F_REALLOC:
    case F_REALLOCARRAY:
        old = api->malloc(100);
        if (old)
            tu_fill(old, 100, 9);
        break;
    default:
        break;
    }
    errno = ERRNO_MARK;
    switch (c->fn) {
    case F_MALLOC: p = api->malloc(c->a); break;
    case F_CALLOC: p = api->calloc(c->a, c->b); break;
    case F_REALLOC: p = old ? api->realloc(old, c->a) : NULL; break;
    case F_REALLOC_NULL: p = api->realloc(NULL, c->a); break;
    case F_REALLOCARRAY: p = old ? api->reallocarray(old, c->a, c->b) : NULL; break;
    case F_REALLOCARRAY_NULL: p = api->reallocarray(NULL, c->a, c->b); break;
    case F_POSIX_MEMALIGN: {
        void *m = SENTINEL;
        o.ret = api->posix_memalign(&m, c->a, c->b);
        o.wrote_memptr = o.ret != 0 && m != SENTINEL;
        p = o.ret == 0 ? m : NULL;
        break;
    }
    case F_ALIGNED_ALLOC: p = api->aligned_alloc(c->a, c->b); break;
    case F_MEMALIGN: p = api->memalign(c->a, c->b); break;
    case F_VALLOC: p = api->valloc(c->a); break;
    case F_PVALLOC: p = api->pvalloc(c->a); break;
    }
    o.err = errno;
    o.ptr = p != NULL;
    if (p)
        api->free(p);
    else if (old) {
        o.lost_block = tu_check(old, 100, 9) != (size_t)-1;
        api->free(old);
    }
    return o;
}

static void describe_call(const call_t *c, char *buf, size_t n)
{
    switch (c->fn) {
    case F_MALLOC: snprintf(buf, n, "malloc(%#zx)", c->a); break;
    case F_CALLOC: snprintf(buf, n, "calloc(%#zx, %#zx)", c->a, c->b); break;
    case F_REALLOC: snprintf(buf, n, "realloc(block, %#zx)", c->a); break;
    case F_REALLOC_NULL: snprintf(buf, n, "realloc(NULL, %#zx)", c->a); break;
    case F_REALLOCARRAY: snprintf(buf, n, "reallocarray(block, %#zx, %#zx)", c->a, c->b); break;
    case F_REALLOCARRAY_NULL:
        snprintf(buf, n, "reallocarray(NULL, %#zx, %#zx)", c->a, c->b);
        break;
    case F_POSIX_MEMALIGN: snprintf(buf, n, "posix_memalign(&p, %#zx, %#zx)", c->a, c->b); break;
    case F_ALIGNED_ALLOC: snprintf(buf, n, "aligned_alloc(%#zx, %#zx)", c->a, c->b); break;
    case F_MEMALIGN: snprintf(buf, n, "memalign(%#zx, %#zx)", c->a, c->b); break;
    case F_VALLOC: snprintf(buf, n, "valloc(%#zx)", c->a); break;
    case F_PVALLOC: snprintf(buf, n, "pvalloc(%#zx)", c->a); break;
    }
}

static void describe_outcome(const call_t *c, const outcome_t *o, char *buf, size_t n)
{
    if (c->fn == F_POSIX_MEMALIGN)
        snprintf(buf, n, "returns %d (%s), errno %s%s", o->ret,
                 o->ret == 0 ? "0" : errname(o->ret), errname(o->err),
                 o->wrote_memptr ? ", wrote *memptr" : "");
    else
        snprintf(buf, n, "%s, errno %s%s", o->ptr ? "a block" : "NULL", errname(o->err),
                 o->lost_block ? ", the old block lost" : "");
}

/* Each call on the program's allocator must end like the same call on
 * glibc's own functions. */
static void compare_with_glibc(const call_t *calls, size_t n)
{
    api_t g, p = prog_api();
    REQUIRE(glibc_api(&g), "glibc's allocation functions not found in libc.so.6");
    for (size_t i = 0; i < n; i++) {
        outcome_t og = do_call(&g, &calls[i]);
        outcome_t op = do_call(&p, &calls[i]);
        if (og.ptr == op.ptr && og.ret == op.ret && og.err == op.err &&
            og.wrote_memptr == op.wrote_memptr && og.lost_block == op.lost_block)
            continue;
        char call[96], got[96], want[96];
        describe_call(&calls[i], call, sizeof call);
        describe_outcome(&calls[i], &op, got, sizeof got);
        describe_outcome(&calls[i], &og, want, sizeof want);
        FAILF("%s: %s; glibc: %s", call, got, want);
    }
}

#define COMPARE(...)                                                        \
    do {                                                                    \
        static const call_t calls_[] = {__VA_ARGS__};                       \
        compare_with_glibc(calls_, sizeof calls_ / sizeof calls_[0]);       \
    } while (0)

/* Impossible everywhere (beyond PTRDIFF_MAX, or 1 PiB: more than the
 * 47-bit address space), whatever the overcommit mode. */
#define PIB ((size_t)1 << 50)

static void test_malloc_errno(void)
{
    COMPARE({F_MALLOC, SIZE_MAX, 0}, {F_MALLOC, PDMAX + 1, 0}, {F_MALLOC, PDMAX, 0},
            {F_MALLOC, SIZE_MAX - 4095, 0}, {F_MALLOC, PIB, 0});
}

static void test_calloc_errno(void)
{
    COMPARE({F_CALLOC, SIZE_MAX, 2}, {F_CALLOC, 2, SIZE_MAX / 2 + 1}, {F_CALLOC, 1, SIZE_MAX},
            {F_CALLOC, 1, PDMAX + 1}, {F_CALLOC, (size_t)1 << 33, (size_t)1 << 33},
            {F_CALLOC, PIB, 1});
}

static void test_realloc_errno(void)
{
    COMPARE({F_REALLOC, SIZE_MAX, 0}, {F_REALLOC, PDMAX + 1, 0}, {F_REALLOC, PIB, 0},
            {F_REALLOC_NULL, SIZE_MAX, 0}, {F_REALLOC_NULL, PDMAX + 1, 0});
}

static void test_reallocarray_errno(void)
{
    COMPARE({F_REALLOCARRAY, SIZE_MAX, 2}, {F_REALLOCARRAY, 2, PDMAX / 2 + 1},
            {F_REALLOCARRAY, (size_t)1 << 33, (size_t)1 << 33},
            {F_REALLOCARRAY_NULL, SIZE_MAX, 2}, {F_REALLOCARRAY_NULL, 3, SIZE_MAX / 2});
}

/* glibc sets errno = ENOMEM as well as returning ENOMEM. */
static void test_posix_memalign_errno(void)
{
    COMPARE({F_POSIX_MEMALIGN, 64, SIZE_MAX}, {F_POSIX_MEMALIGN, 64, PDMAX + 1},
            {F_POSIX_MEMALIGN, 4096, SIZE_MAX - 100}, {F_POSIX_MEMALIGN, 16, PIB},
            {F_POSIX_MEMALIGN, SIZE_MAX / 2 + 1, 64}, {F_POSIX_MEMALIGN, (size_t)1 << 62, 64});
}

/* EINVAL (not a power-of-two multiple of sizeof(void *)): glibc returns
 * EINVAL and leaves errno alone. */
static void test_posix_memalign_einval_errno(void)
{
    COMPARE({F_POSIX_MEMALIGN, 0, 64}, {F_POSIX_MEMALIGN, 3, 64}, {F_POSIX_MEMALIGN, 4, 64},
            {F_POSIX_MEMALIGN, 24, 64}, {F_POSIX_MEMALIGN, 4097, 64},
            {F_POSIX_MEMALIGN, SIZE_MAX / 2 + 2, 64}, {F_POSIX_MEMALIGN, 0, SIZE_MAX});
}

static void test_aligned_alloc_errno(void)
{
    COMPARE({F_ALIGNED_ALLOC, 64, SIZE_MAX}, {F_ALIGNED_ALLOC, 64, PDMAX + 1},
            {F_ALIGNED_ALLOC, 4096, PIB}, {F_ALIGNED_ALLOC, SIZE_MAX / 2 + 1, 64},
            {F_ALIGNED_ALLOC, SIZE_MAX / 2 + 2, 64}, {F_ALIGNED_ALLOC, (size_t)1 << 62, 64});
}

/* aligned_alloc with an alignment that is not a power of two: glibc 2.36
 * rounds it up and succeeds (errno left alone); glibc >= 2.38 returns
 * NULL with EINVAL.  Either is accepted (as in api/aligned.c's
 * aligned_alloc_odd_alignment); a NULL with any other errno is not. */
static void test_aligned_alloc_bad_alignment_errno(void)
{
    static const size_t odd[] = {0, 3, 24, 100, 4097};
    void *(*g_aligned_alloc)(size_t, size_t);
    void (*g_free)(void *);
    *(void **)&g_aligned_alloc = tu_glibc_sym("aligned_alloc");
    *(void **)&g_free = tu_glibc_sym("free");
    REQUIRE(g_aligned_alloc != NULL && g_free != NULL, "glibc's aligned_alloc/free not found");
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        errno = ERRNO_MARK;
        void *gp = g_aligned_alloc(odd[i], 64);
        int ge = errno;
        errno = ERRNO_MARK;
        void *p = xaligned_alloc(odd[i], 64);
        int e = errno;
        if (p)
            CHECK(e == ERRNO_MARK, "aligned_alloc(%zu, 64) succeeded but set errno to %s",
                  odd[i], errname(e));
        else
            CHECK(e == EINVAL, "aligned_alloc(%zu, 64) = NULL with errno %s, want EINVAL "
                  "(glibc here: %s, errno %s)", odd[i], errname(e), gp ? "a block" : "NULL",
                  errname(ge));
        xfree(p);
        g_free(gp);
    }
}

static void test_memalign_errno(void)
{
    COMPARE({F_MEMALIGN, 64, SIZE_MAX}, {F_MEMALIGN, 64, PDMAX + 1}, {F_MEMALIGN, 4096, PIB},
            {F_MEMALIGN, SIZE_MAX / 2 + 1, 64}, {F_MEMALIGN, SIZE_MAX / 2 + 2, 64},
            {F_MEMALIGN, (size_t)1 << 62, 64}, {F_MEMALIGN, 3, 64}, {F_MEMALIGN, 0, 64});
}

static void test_valloc_errno(void)
{
    COMPARE({F_VALLOC, SIZE_MAX, 0}, {F_VALLOC, PDMAX + 1, 0}, {F_VALLOC, SIZE_MAX - 4095, 0},
            {F_VALLOC, PIB, 0});
}

static void test_pvalloc_errno(void)
{
    COMPARE({F_PVALLOC, SIZE_MAX, 0}, {F_PVALLOC, SIZE_MAX - 4095, 0}, {F_PVALLOC, PDMAX + 1, 0},
            {F_PVALLOC, PDMAX - 4095, 0}, {F_PVALLOC, PIB, 0});
}

int main(int argc, char **argv)
{
    self_exe = argv[0];
    if (argc == 2 && strcmp(argv[1], "--rlimit-as-child") == 0) {
        /* the freshly exec'd child of rlimit_as_small_malloc: nothing
         * allocated yet (no stdio before this point) */
        tu_case_body b = {rlimit_fresh_body};
        tu_case_child_main(&b);
    }
    if (argc == 2 && strcmp(argv[1], "--rlimit-big-child") == 0) {
        tu_case_body b = {rlimit_big_medium_body};
        tu_case_child_main(&b);
    }
    tu_init(argc, argv);
    RUN(rlimit_as_small_malloc);
    RUN(rlimit_as_small_malloc_after_use);
    RUN(rlimit_as_large_block);
    RUN(rlimit_as_small_malloc_new_thread);
    RUN(rlimit_as_big_medium_classes);
    RUN(overcommit_impossible_malloc);
    RUN(impossible_malloc_keeps_quarantine);
    RUN(overcommit_impossible_calloc);
    RUN(overcommit_impossible_realloc);
    RUN(overcommit_impossible_posix_memalign);
    RUN(overcommit_impossible_aligned);
    RUN(malloc_errno);
    RUN(calloc_errno);
    RUN(realloc_errno);
    RUN(reallocarray_errno);
    RUN(posix_memalign_errno);
    RUN(posix_memalign_einval_errno);
    RUN(aligned_alloc_errno);
    RUN(aligned_alloc_bad_alignment_errno);
    RUN(memalign_errno);
    RUN(valloc_errno);
    RUN(pvalloc_errno);
    return tu_finish();
}
