/* c-tests/arena.c -- the arena API (mmpool_arena_*), case by case.
 *
 * A flat list of named cases, like mimalloc's test-api.c: every arena
 * function, every bad input the header documents (NULL or invalid arena,
 * non-power-of-two alignment, overflowing sizes, pointers the arena does
 * not own), children and grandchildren, cleanup handlers (LIFO, removal,
 * handlers that add cleanups, allocate or create children while the arena
 * is being reset or destroyed), O(1) large frees, memalign up to 1 MiB,
 * calloc over dirty reused memory, statistics, threads, and
 * MMPOOL_ARENA_DEBUG=1 (the test re-executes itself with the variable
 * set: `debug_mode`).
 *
 *   arena                   all cases, smoke mode
 *   arena --full            bigger loops
 *   arena free_large_o1     only the named case(s)
 *
 * Build: gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude c-tests/arena.c
 *        -Ltarget/release -lmmpool -Wl,-rpath,$PWD/target/release -ldl
 * Run:   LD_PRELOAD=$PWD/target/release/libmmpool.so ./arena
 *
 * Output: `ok <case> (time)` or `FAIL <case>: why` per case, then a
 * summary line; exit status 1 when a case failed.  Self-contained (no
 * testutil.h) so it builds on its own. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mmpool.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define UNUSED __attribute__((unused))

/* ------------------------------------------------------------------ */
/* Harness.                                                            */

static int full_mode;
static int debug_child;             /* re-executed with MMPOOL_ARENA_DEBUG=1 */
static int n_failed, n_passed;
static int case_failed;
static char case_why[600];
static int g_argc;
static char **g_argv;

static void fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(const char *file, int line, const char *fmt, ...)
{
    if (case_failed++ == 0) {
        int n = snprintf(case_why, sizeof case_why, "%s:%d: ", file, line);
        if (n < 0 || (size_t)n >= sizeof case_why)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(case_why + n, sizeof case_why - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

#define FAILF(...) fail_at(__FILE__, __LINE__, __VA_ARGS__)
/* CHECK(cond, "fmt", ...): record a failure (first one wins), go on. */
#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        if (!(cond)) {                                                   \
            char m_[400];                                                \
            snprintf(m_, sizeof m_, " " __VA_ARGS__);                    \
            fail_at(__FILE__, __LINE__, "`%s` failed:%s", #cond, m_);    \
        }                                                                \
    } while (0)
/* REQUIRE: as CHECK, but leaves the case. */
#define REQUIRE(cond, ...)                                               \
    do {                                                                 \
        if (!(cond)) {                                                   \
            char m_[400];                                                \
            snprintf(m_, sizeof m_, " " __VA_ARGS__);                    \
            fail_at(__FILE__, __LINE__, "`%s` failed:%s", #cond, m_);    \
            return;                                                      \
        }                                                                \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool selected(const char *name)
{
    int named = 0;
    for (int i = 1; i < g_argc; i++) {
        if (g_argv[i][0] == '-')
            continue;
        named = 1;
        if (strcmp(g_argv[i], name) == 0)
            return true;
    }
    return !named;
}

static void run_case(const char *name, void (*fn)(void))
{
    if (!selected(name))
        return;
    case_failed = 0;
    case_why[0] = 0;
    double t0 = now_s();
    fn();
    double dt = now_s() - t0;
    if (case_failed) {
        n_failed++;
        printf("FAIL %s: %s\n", name, case_why);
    } else {
        n_passed++;
        printf("ok %s (%.2fs)\n", name, dt);
    }
    fflush(stdout);
}

#define RUN(name) run_case(#name, test_##name)

/* ------------------------------------------------------------------ */
/* Helpers.                                                            */

typedef struct { uint64_t s; } rng_t;

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t rnd(rng_t *r) { return mix64(r->s++); }
static uint64_t below(rng_t *r, uint64_t n) { return rnd(r) % n; }

/* Byte i of a block filled with key k depends on (k, i) only. */
static void fill(void *p, size_t n, uint64_t key)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(mix64(key + (i >> 3)) >> (8 * (i & 7)));
}

/* Offset of the first wrong byte, or (size_t)-1. */
static size_t check_fill(const void *p, size_t n, uint64_t key)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(mix64(key + (i >> 3)) >> (8 * (i & 7))))
            return i;
    return (size_t)-1;
}

/* Sparse variants for big blocks: the first and last 256 bytes plus one
 * byte per 4 KiB. */
static void fill_sparse(void *p, size_t n, uint64_t key)
{
    unsigned char *b = p;
    if (n <= 4096) {
        fill(p, n, key);
        return;
    }
    fill(b, 256, key);
    fill(b + n - 256, 256, key + 1);
    for (size_t o = 4096; o < n - 256; o += 4096)
        b[o] = (unsigned char)mix64(key + o);
}

static bool check_sparse(const void *p, size_t n, uint64_t key)
{
    const unsigned char *b = p;
    if (n <= 4096)
        return check_fill(p, n, key) == (size_t)-1;
    if (check_fill(b, 256, key) != (size_t)-1 ||
        check_fill(b + n - 256, 256, key + 1) != (size_t)-1)
        return false;
    for (size_t o = 4096; o < n - 256; o += 4096)
        if (b[o] != (unsigned char)mix64(key + o))
            return false;
    return true;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static bool aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static mmpool_arena_stats_t stats_of(const mmpool_arena_t *a)
{
    mmpool_arena_stats_t s;
    memset(&s, 0xA5, sizeof s);
    mmpool_arena_stats(a, &s);
    return s;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void shuffle(void **v, size_t n, rng_t *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)below(r, i);
        void *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* A log of events (cleanup handlers append their id). */
static int ev_log[16384];
static int ev_n;

static void log_reset(void) { ev_n = 0; }
static void log_handler(void *data)
{
    if (ev_n < (int)(sizeof ev_log / sizeof ev_log[0]))
        ev_log[ev_n++] = (int)(intptr_t)data;
}
static int log_pos(int id)
{
    for (int i = 0; i < ev_n; i++)
        if (ev_log[i] == id)
            return i;
    return -1;
}
static int log_count(int id)
{
    int c = 0;
    for (int i = 0; i < ev_n; i++)
        c += ev_log[i] == id;
    return c;
}

/* Every call with an arena that is not one must be answered, not trusted:
 * NULL + EINVAL from the allocating calls, -1 from free/cleanup_remove,
 * zero statistics, and destroy/reset ignored. */
static void expect_rejected(mmpool_arena_t *bad, const char *what)
{
    void *p;
    errno = 0;
    p = mmpool_arena_alloc(bad, 16);
    CHECK(p == NULL && errno == EINVAL, "%s: alloc gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_nalloc(bad, 16);
    CHECK(p == NULL && errno == EINVAL, "%s: nalloc gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_calloc(bad, 16);
    CHECK(p == NULL && errno == EINVAL, "%s: calloc gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_memalign(bad, 16, 64);
    CHECK(p == NULL && errno == EINVAL, "%s: memalign gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_alloc(bad, 1 * MiB);
    CHECK(p == NULL && errno == EINVAL, "%s: large alloc gave %p errno %d", what, p, errno);
    errno = 0;
    mmpool_arena_t *c = mmpool_arena_create_child(bad, 0);
    CHECK(c == NULL && errno == EINVAL, "%s: create_child gave %p errno %d", what,
          (void *)c, errno);
    errno = 0;
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(bad, log_handler, (void *)1);
    CHECK(h == NULL && errno == EINVAL, "%s: cleanup_add gave %p errno %d", what,
          (void *)h, errno);
    int x = 0;
    CHECK(mmpool_arena_free(bad, &x) == -1, "%s: free accepted", what);
    CHECK(mmpool_arena_free(bad, NULL) == -1, "%s: free(NULL) accepted", what);
    CHECK(mmpool_arena_cleanup_remove(bad, NULL) == -1, "%s: cleanup_remove accepted", what);
    mmpool_arena_stats_t s = stats_of(bad);
    CHECK(s.bytes_requested == 0 && s.bytes_held == 0 && s.blocks == 0 &&
              s.large_blocks == 0 && s.children == 0 && s.cleanups == 0,
          "%s: stats not all zero (held %zu blocks %zu)", what, s.bytes_held, s.blocks);
    mmpool_arena_reset(bad);   /* ignored */
    mmpool_arena_destroy(bad); /* ignored */
}

/* ------------------------------------------------------------------ */
/* create                                                              */

static void test_create_default(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a != NULL, "errno %d", errno);
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.blocks == 1, "blocks %zu", s.blocks);
    CHECK(s.bytes_held >= 16 * KiB && s.bytes_held < 32 * KiB, "held %zu for a 16 KiB block",
          s.bytes_held);
    CHECK(s.bytes_requested == 0 && s.large_blocks == 0 && s.children == 0 && s.cleanups == 0,
          "fresh arena counters: req %zu large %zu children %zu cleanups %zu",
          s.bytes_requested, s.large_blocks, s.children, s.cleanups);
    CHECK(mmpool_owns(a), "the arena itself should live in the pool");
    mmpool_arena_destroy(a);
}

static void test_create_block_size_clamped(void)
{
    static const size_t sizes[] = { 1, 17, 511, 512, 513, 1000, 4096, 65536, 1 * MiB,
                                    64 * MiB, 64 * MiB + 1, 256 * MiB, SIZE_MAX };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t bs = sizes[i];
        mmpool_arena_t *a = mmpool_arena_create(bs);
        REQUIRE(a != NULL, "create(%zu) failed errno %d", bs, errno);
        mmpool_arena_stats_t s = stats_of(a);
        size_t want = bs < 512 ? 512 : bs > 64 * MiB ? 64 * MiB : bs;
        CHECK(s.blocks == 1, "create(%zu): blocks %zu", bs, s.blocks);
        CHECK(s.bytes_held >= want && s.bytes_held <= want + want / 4 + 64,
              "create(%zu): held %zu, want about %zu (clamped to 512 B .. 64 MiB)", bs,
              s.bytes_held, want);
        /* a quarter of the (clamped) block minus headers is bumped */
        size_t small = want / 4 - 64;
        void *p = mmpool_arena_alloc(a, small);
        CHECK(p && aligned(p, 16), "create(%zu): alloc(%zu) = %p", bs, small, p);
        if (p)
            fill_sparse(p, small, bs);
        CHECK(stats_of(a).large_blocks == 0, "create(%zu): %zu bytes should be bumped", bs,
              small);
        CHECK(p && mmpool_arena_free(a, p) == -1, "create(%zu): bumped block freed", bs);
        void *q = mmpool_arena_nalloc(a, 3);
        CHECK(q != NULL, "create(%zu): nalloc(3)", bs);
        CHECK(p && check_sparse(p, small, bs), "create(%zu): contents", bs);
        mmpool_arena_destroy(a);
    }
}

static void test_create_many_destroy_random(void)
{
    size_t n = full_mode ? 50000 : 5000;
    void **v = malloc(n * sizeof *v);
    REQUIRE(v != NULL, "");
    rng_t r = { 11 };
    for (size_t i = 0; i < n; i++) {
        mmpool_arena_t *a = mmpool_arena_create(i % 3 == 0 ? 512 : i % 3 == 1 ? 0 : 8192);
        v[i] = a;
        if (!a) {
            FAILF("create #%zu failed", i);
            n = i;
            break;
        }
        uint64_t *x = mmpool_arena_alloc(a, 8);
        if (x)
            *x = i;
        else
            FAILF("alloc in arena #%zu", i);
    }
    shuffle(v, n, &r);
    for (size_t i = 0; i < n; i++)
        mmpool_arena_destroy(v[i]);
    free(v);
}

/* ------------------------------------------------------------------ */
/* alloc / nalloc / calloc                                             */

static void test_alloc_aligned_distinct(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    enum { N = 3000 };
    static void *p[N];
    static size_t sz[N];
    rng_t r = { 7 };
    for (int i = 0; i < N; i++) {
        sz[i] = 1 + (size_t)below(&r, i % 10 == 0 ? 3000 : 300);
        p[i] = mmpool_arena_alloc(a, sz[i]);
        REQUIRE(p[i] != NULL, "alloc(%zu) #%d errno %d", sz[i], i, errno);
        CHECK(aligned(p[i], 16), "alloc(%zu) = %p not 16-aligned", sz[i], p[i]);
        fill(p[i], sz[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        CHECK(check_fill(p[i], sz[i], (uint64_t)i) == (size_t)-1,
              "allocation #%d (%zu bytes) overwritten: overlapping blocks", i, sz[i]);
    mmpool_arena_destroy(a);
}

static void test_alloc_zero_size(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *p = mmpool_arena_alloc(a, 0);
    void *q = mmpool_arena_nalloc(a, 0);
    void *c = mmpool_arena_calloc(a, 0);
    void *m = mmpool_arena_memalign(a, 0, 256);
    /* NULL or a valid pointer; never a crash, never counted as large */
    CHECK(p == NULL || aligned(p, 16), "alloc(0) = %p", p);
    CHECK(c == NULL || aligned(c, 16), "calloc(0) = %p", c);
    CHECK(m == NULL || aligned(m, 256), "memalign(0, 256) = %p", m);
    (void)q;
    CHECK(stats_of(a).large_blocks == 0, "zero-size allocations became large blocks");
    void *after = mmpool_arena_alloc(a, 32);
    CHECK(after != NULL, "");
    mmpool_arena_destroy(a);
}

/* Random mix of every allocating call, small and large, across several
 * blocks; every byte of every block is checked at the end (no overlap,
 * no header written over user data). */
static void test_alloc_mixed_no_overlap(void)
{
    mmpool_arena_t *a = mmpool_arena_create(8192);
    REQUIRE(a, "");
    size_t n = full_mode ? 40000 : 8000;
    void **p = malloc(n * sizeof *p);
    size_t *sz = malloc(n * sizeof *sz);
    REQUIRE(p && sz, "");
    rng_t r = { 99 };
    for (size_t i = 0; i < n; i++) {
        uint64_t k = below(&r, 100);
        size_t s;
        if (k < 60)
            s = 1 + (size_t)below(&r, 128);
        else if (k < 90)
            s = 128 + (size_t)below(&r, 1900);
        else if (k < 98)
            s = 2048 + (size_t)below(&r, 6000);
        else
            s = 8192 + (size_t)below(&r, 100000);
        void *q;
        switch (i % 4) {
        case 0: q = mmpool_arena_alloc(a, s); break;
        case 1: q = mmpool_arena_nalloc(a, s); break;
        case 2:
            q = mmpool_arena_calloc(a, s);
            if (q && !all_zero(q, s))
                FAILF("calloc(%zu) not zeroed", s);
            break;
        default: q = mmpool_arena_memalign(a, s, (size_t)1 << below(&r, 10)); break;
        }
        REQUIRE(q != NULL, "allocation #%zu of %zu bytes failed", i, s);
        p[i] = q;
        sz[i] = s;
        fill_sparse(q, s, i * 31 + 5);
    }
    for (size_t i = 0; i < n; i++)
        if (!check_sparse(p[i], sz[i], i * 31 + 5)) {
            FAILF("allocation #%zu (%zu bytes at %p) overwritten", i, sz[i], p[i]);
            break;
        }
    mmpool_arena_destroy(a);
    free(p);
    free(sz);
}

static void test_nalloc_unaligned_packing(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    mmpool_arena_stats_t s0 = stats_of(a);
    /* 1000 three-byte strings fit in one 4 KiB block when nalloc does
     * not pad them to 16 bytes (16 KiB if it did). */
    enum { N = 1000 };
    static char *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = mmpool_arena_nalloc(a, 3);
        REQUIRE(v[i], "nalloc #%d", i);
        v[i][0] = (char)('a' + i % 26);
        v[i][1] = (char)('A' + i % 23);
        v[i][2] = (char)i;
    }
    for (int i = 0; i < N; i++)
        CHECK(v[i][0] == (char)('a' + i % 26) && v[i][1] == (char)('A' + i % 23) &&
                  v[i][2] == (char)i,
              "string #%d overwritten", i);
    mmpool_arena_stats_t s1 = stats_of(a);
    CHECK(s1.blocks <= 2, "3000 bytes of nalloc took %zu blocks of 4 KiB (padded?)", s1.blocks);
    CHECK(s1.bytes_requested - s0.bytes_requested == 3 * N, "bytes_requested grew by %zu",
          s1.bytes_requested - s0.bytes_requested);
    /* nalloc after odd sizes still gives alloc() its 16-byte alignment */
    void *q = mmpool_arena_alloc(a, 24);
    CHECK(q && aligned(q, 16), "alloc after nalloc = %p", q);
    mmpool_arena_destroy(a);
}

static void test_nalloc_strings(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    enum { N = 5000 };
    static char *v[N];
    char buf[64];
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof buf, "key-%d=value-%x", i, i * 7919);
        v[i] = mmpool_arena_nalloc(a, (size_t)n + 1);
        REQUIRE(v[i], "");
        memcpy(v[i], buf, (size_t)n + 1);
    }
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof buf, "key-%d=value-%x", i, i * 7919);
        if (strcmp(v[i], buf) != 0) {
            FAILF("string #%d is '%s', want '%s'", i, v[i], buf);
            break;
        }
    }
    mmpool_arena_destroy(a);
}

static void test_calloc_zeroes(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    static const size_t sizes[] = { 1, 15, 16, 17, 100, 1000, 1016, 2000, 4096, 100000, 1 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = mmpool_arena_calloc(a, sizes[i]);
        REQUIRE(p, "calloc(%zu)", sizes[i]);
        CHECK(aligned(p, 16), "calloc(%zu) = %p", sizes[i], (void *)p);
        CHECK(all_zero(p, sizes[i]), "calloc(%zu) not zeroed", sizes[i]);
        memset(p, 0xEE, sizes[i]);
    }
    mmpool_arena_destroy(a);
}

/* After a reset the kept block is reused: it is full of old data, and
 * calloc must zero it. */
static void test_calloc_zero_after_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    int rounds = full_mode ? 2000 : 200;
    for (int r = 0; r < rounds; r++) {
        unsigned char *first = mmpool_arena_alloc(a, 200);
        REQUIRE(first, "");
        memset(first, 0xAB, 200);
        for (int i = 0; i < 40; i++) {
            unsigned char *q = mmpool_arena_alloc(a, 16 + (size_t)i * 17);
            REQUIRE(q, "");
            memset(q, 0xCD, 16 + (size_t)i * 17);
        }
        mmpool_arena_reset(a);
        unsigned char *z = mmpool_arena_calloc(a, 200);
        REQUIRE(z, "");
        if (r == 0)
            CHECK(z == first, "first allocation after reset at %p, before at %p: the kept "
                  "block is not reused", (void *)z, (void *)first);
        CHECK(all_zero(z, 200), "round %d: calloc over reused memory not zeroed", r);
        for (int i = 0; i < 40; i++) {
            size_t s = 16 + (size_t)i * 17;
            unsigned char *q = mmpool_arena_calloc(a, s);
            REQUIRE(q, "");
            if (!all_zero(q, s)) {
                FAILF("round %d: calloc(%zu) #%d over reused memory not zeroed", r, s, i);
                return;
            }
        }
        mmpool_arena_reset(a);
    }
    mmpool_arena_destroy(a);
}

/* Large blocks come back from the global pool dirty: calloc zeroes them
 * too. */
static void test_calloc_large_zero_after_reuse(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    for (int r = 0; r < 50; r++) {
        size_t s = 2000 + (size_t)r * 997;
        unsigned char *p = mmpool_arena_alloc(a, s);
        REQUIRE(p, "");
        memset(p, 0x5A, s);
        CHECK(mmpool_arena_free(a, p) == 0, "large block not freed");
        unsigned char *z = mmpool_arena_calloc(a, s);
        REQUIRE(z, "");
        CHECK(all_zero(z, s), "calloc(%zu) after free not zeroed", s);
        memset(z, 0x77, s);
        mmpool_arena_reset(a);
    }
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */
/* memalign                                                            */

static void test_memalign_alignments(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    static const size_t sizes[] = { 1, 8, 100, 4000, 5000, 70000 };
    for (size_t al = 8; al <= 1 * MiB; al *= 2) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t s = sizes[k];
            mmpool_arena_stats_t b = stats_of(a);
            errno = 0;
            void *p = mmpool_arena_memalign(a, s, al);
            REQUIRE(p, "memalign(%zu, %zu) errno %d", s, al, errno);
            CHECK(aligned(p, al), "memalign(%zu, %zu) = %p", s, al, p);
            fill(p, s, al + s);
            mmpool_arena_stats_t m = stats_of(a);
            CHECK(m.bytes_requested == b.bytes_requested + s,
                  "memalign(%zu, %zu): bytes_requested +%zu", s, al,
                  m.bytes_requested - b.bytes_requested);
            /* an alignment above a quarter block cannot be bumped */
            if (al > 4 * KiB || s > 4 * KiB) {
                CHECK(m.large_blocks == b.large_blocks + 1,
                      "memalign(%zu, %zu) should be a large block", s, al);
                CHECK(check_fill(p, s, al + s) == (size_t)-1, "");
                CHECK(mmpool_arena_free(a, p) == 0, "memalign(%zu, %zu) large not freed", s, al);
                mmpool_arena_stats_t f = stats_of(a);
                CHECK(f.large_blocks == b.large_blocks && f.bytes_held == b.bytes_held,
                      "after free of memalign(%zu, %zu): large %zu held %zu (before %zu)", s, al,
                      f.large_blocks, f.bytes_held, b.bytes_held);
            } else {
                CHECK(check_fill(p, s, al + s) == (size_t)-1, "");
            }
        }
    }
    mmpool_arena_destroy(a);
}

static void test_memalign_small_alignments(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    for (size_t al = 1; al <= 4; al *= 2)
        for (size_t s = 0; s < 40; s++) {
            void *p = mmpool_arena_memalign(a, s, al);
            CHECK(p != NULL && aligned(p, al), "memalign(%zu, %zu) = %p", s, al, p);
        }
    mmpool_arena_destroy(a);
}

static void test_memalign_not_power_of_two(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    static const size_t bad[] = { 0, 3, 5, 6, 12, 24, 48, 100, 4095, 4097, 3 * MiB,
                                  SIZE_MAX, ((size_t)1 << 63) + 1, ((size_t)1 << 63) | 64 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = mmpool_arena_memalign(a, 64, bad[i]);
        CHECK(p == NULL && errno == EINVAL, "memalign(64, %zu) = %p errno %d", bad[i], p, errno);
    }
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.bytes_requested == b.bytes_requested && s.large_blocks == 0,
          "rejected memalign calls changed the stats");
    mmpool_arena_destroy(a);
}

static void test_memalign_huge_alignment(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    static const size_t al[] = { (size_t)1 << 32, (size_t)1 << 62, (size_t)1 << 63 };
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        errno = 0;
        void *p = mmpool_arena_memalign(a, 16, al[i]);
        if (p) {
            CHECK(aligned(p, al[i]), "memalign(16, %zu) = %p", al[i], p);
            CHECK(mmpool_arena_free(a, p) == 0, "");
        } else {
            CHECK(errno == ENOMEM || errno == EINVAL, "memalign(16, %zu): errno %d", al[i], errno);
        }
    }
    CHECK(mmpool_arena_alloc(a, 16) != NULL, "arena unusable after huge alignments");
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */
/* Overflowing sizes                                                   */

static const size_t huge_sizes[] = {
    SIZE_MAX,           SIZE_MAX - 1,        SIZE_MAX - 15,     SIZE_MAX - 47,
    SIZE_MAX - 48,      SIZE_MAX - 4096,     SIZE_MAX / 2 + 1,  (size_t)PTRDIFF_MAX,
    (size_t)1 << 62,    ((size_t)1 << 62) + 12345,
};
#define N_HUGE (sizeof huge_sizes / sizeof huge_sizes[0])

static void overflow_case(int which)
{
    static const char *names[] = { "alloc", "nalloc", "calloc", "memalign(64)", "memalign(1M)" };
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *keep = mmpool_arena_alloc(a, 100);
    REQUIRE(keep, "");
    fill(keep, 100, 1);
    mmpool_arena_stats_t b = stats_of(a);
    for (size_t i = 0; i < N_HUGE; i++) {
        size_t s = huge_sizes[i];
        errno = 0;
        void *p;
        switch (which) {
        case 0: p = mmpool_arena_alloc(a, s); break;
        case 1: p = mmpool_arena_nalloc(a, s); break;
        case 2: p = mmpool_arena_calloc(a, s); break;
        case 3: p = mmpool_arena_memalign(a, s, 64); break;
        default: p = mmpool_arena_memalign(a, s, 1 * MiB); break;
        }
        CHECK(p == NULL && errno == ENOMEM, "%s(%zu) = %p errno %d", names[which], s, p, errno);
    }
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(memcmp(&s, &b, sizeof s) == 0,
          "%s: failed requests changed the stats (req %zu->%zu, held %zu->%zu, large %zu->%zu)",
          names[which], b.bytes_requested, s.bytes_requested, b.bytes_held, s.bytes_held,
          b.large_blocks, s.large_blocks);
    CHECK(check_fill(keep, 100, 1) == (size_t)-1, "live allocation damaged");
    void *q = mmpool_arena_alloc(a, 100);
    CHECK(q != NULL, "arena unusable after overflowing requests");
    mmpool_arena_destroy(a);
}

static void test_alloc_overflow(void) { overflow_case(0); }
static void test_nalloc_overflow(void) { overflow_case(1); }
static void test_calloc_overflow(void) { overflow_case(2); }
static void test_memalign_overflow(void) { overflow_case(3); }
static void test_memalign_overflow_big_alignment(void) { overflow_case(4); }

/* ------------------------------------------------------------------ */
/* Small/large threshold                                               */

static void test_quarter_block_threshold(void)
{
    static const size_t blocks[] = { 512, 4096, 16384, 65536, 1 * MiB };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        size_t bs = blocks[i];
        mmpool_arena_t *a = mmpool_arena_create(bs);
        REQUIRE(a, "");
        size_t small = bs / 4 - 64, large = bs / 4 + 1;
        void *p = mmpool_arena_alloc(a, small);
        REQUIRE(p, "");
        CHECK(stats_of(a).large_blocks == 0, "block %zu: %zu bytes not bumped", bs, small);
        CHECK(mmpool_arena_free(a, p) == -1, "block %zu: bumped %zu bytes freed", bs, small);
        void *q = mmpool_arena_alloc(a, large);
        REQUIRE(q, "");
        CHECK(stats_of(a).large_blocks == 1, "block %zu: %zu bytes not large", bs, large);
        CHECK(mmpool_arena_free(a, q) == 0, "block %zu: large %zu bytes not freed", bs, large);
        void *n = mmpool_arena_nalloc(a, large);
        CHECK(n && stats_of(a).large_blocks == 1, "block %zu: nalloc(%zu) not large", bs, large);
        CHECK(n && mmpool_arena_free(a, n) == 0, "");
        mmpool_arena_destroy(a);
    }
}

/* ------------------------------------------------------------------ */
/* free                                                                */

static void test_free_large(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    void *p = mmpool_arena_alloc(a, 100000);
    REQUIRE(p, "");
    fill(p, 100000, 3);
    mmpool_arena_stats_t m = stats_of(a);
    CHECK(m.large_blocks == 1 && m.bytes_held >= b.bytes_held + 100000 &&
              m.bytes_requested == 100000,
          "large: %zu blocks held %zu req %zu", m.large_blocks, m.bytes_held, m.bytes_requested);
    CHECK(mmpool_owns(p), "a large arena block should come from the pool");
    CHECK(mmpool_arena_free(a, p) == 0, "free of a large block refused");
    mmpool_arena_stats_t f = stats_of(a);
    CHECK(memcmp(&f, &b, sizeof f) == 0, "stats after free: held %zu (was %zu), req %zu, large %zu",
          f.bytes_held, b.bytes_held, f.bytes_requested, f.large_blocks);
    mmpool_arena_destroy(a);
}

static void test_free_large_twice(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *keep = mmpool_arena_alloc(a, 50000);
    void *p = mmpool_arena_alloc(a, 100000);
    REQUIRE(p && keep, "");
    CHECK(mmpool_arena_free(a, p) == 0, "");
    CHECK(mmpool_arena_free(a, p) == -1, "second free of the same block accepted");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.large_blocks == 1, "large_blocks %zu after double free", s.large_blocks);
    CHECK(mmpool_arena_free(a, keep) == 0, "");
    mmpool_arena_destroy(a);
}

static void test_free_bumped_declined(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    for (size_t s = 1; s < 4000; s += 97) {
        void *p = mmpool_arena_alloc(a, s);
        REQUIRE(p, "");
        fill(p, s, s);
        mmpool_arena_stats_t b = stats_of(a);
        CHECK(mmpool_arena_free(a, p) == -1, "bumped alloc(%zu) accepted by free", s);
        void *q = mmpool_arena_nalloc(a, s);
        REQUIRE(q, "");
        CHECK(mmpool_arena_free(a, q) == -1, "bumped nalloc(%zu) accepted by free", s);
        mmpool_arena_stats_t m = stats_of(a);
        CHECK(m.large_blocks == 0 && m.bytes_requested == b.bytes_requested + s,
              "declined frees changed the stats");
        CHECK(check_fill(p, s, s) == (size_t)-1, "bumped block damaged by a declined free");
    }
    mmpool_arena_destroy(a);
}

static void test_free_other_arena_declined(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0), *b = mmpool_arena_create(0);
    REQUIRE(a && b, "");
    void *pb = mmpool_arena_alloc(b, 100000);
    void *pa = mmpool_arena_alloc(a, 100000);
    REQUIRE(pa && pb, "");
    fill(pb, 100000, 8);
    CHECK(mmpool_arena_free(a, pb) == -1, "arena a freed arena b's block");
    CHECK(stats_of(a).large_blocks == 1 && stats_of(b).large_blocks == 1, "");
    CHECK(check_fill(pb, 100000, 8) == (size_t)-1, "b's block damaged");
    CHECK(mmpool_arena_free(b, pa) == -1, "arena b freed arena a's block");
    CHECK(mmpool_arena_free(b, pb) == 0, "");
    CHECK(mmpool_arena_free(a, pa) == 0, "");
    mmpool_arena_destroy(a);
    mmpool_arena_destroy(b);
}

static void test_free_child_parent_declined(void)
{
    mmpool_arena_t *p = mmpool_arena_create(0);
    REQUIRE(p, "");
    mmpool_arena_t *c = mmpool_arena_create_child(p, 0);
    REQUIRE(c, "");
    void *pc = mmpool_arena_alloc(c, 70000), *pp = mmpool_arena_alloc(p, 70000);
    REQUIRE(pc && pp, "");
    CHECK(mmpool_arena_free(p, pc) == -1, "parent freed its child's block");
    CHECK(mmpool_arena_free(c, pp) == -1, "child freed its parent's block");
    CHECK(mmpool_arena_free(c, pc) == 0, "");
    CHECK(mmpool_arena_free(p, pp) == 0, "");
    mmpool_arena_destroy(p);
}

static void test_free_null_pointer(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    CHECK(mmpool_arena_free(a, NULL) == -1, "free(a, NULL) should return -1");
    mmpool_arena_destroy(a);
}

static void test_free_stack_pointer(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    char buf[256];
    memset(buf, 0, sizeof buf);
    CHECK(mmpool_arena_free(a, buf) == -1, "stack pointer accepted");
    CHECK(mmpool_arena_free(a, buf + 64) == -1, "stack pointer accepted");
    mmpool_arena_destroy(a);
}

static char static_buf[4096] __attribute__((aligned(64)));

static void test_free_static_pointer(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    CHECK(mmpool_arena_free(a, static_buf + 64) == -1, "static pointer accepted");
    CHECK(mmpool_arena_free(a, (void *)test_free_static_pointer) == -1, "code pointer accepted");
    CHECK(mmpool_arena_free(a, (void *)(uintptr_t)0x1000) == -1, "low address accepted");
    CHECK(mmpool_arena_free(a, (void *)(uintptr_t)-4096) == -1, "high address accepted");
    mmpool_arena_destroy(a);
}

static void test_free_malloc_pointer(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    static const size_t sizes[] = { 16, 100, 5000, 100000, 2 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *p = malloc(sizes[i]);
        REQUIRE(p, "");
        memset(p, 0, sizes[i]);
        CHECK(mmpool_arena_free(a, p) == -1, "malloc(%zu) block accepted", sizes[i]);
        if (sizes[i] > 64)
            CHECK(mmpool_arena_free(a, p + 48) == -1, "malloc(%zu)+48 accepted", sizes[i]);
        free(p);
    }
    mmpool_arena_destroy(a);
}

static void test_free_interior_pointer(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    char *p = mmpool_arena_alloc(a, 100000);
    REQUIRE(p, "");
    memset(p, 0, 100000);
    static const size_t offs[] = { 1, 8, 15, 16, 32, 48, 64, 4096, 65536, 99999 };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        CHECK(mmpool_arena_free(a, p + offs[i]) == -1, "interior pointer p+%zu accepted", offs[i]);
    CHECK(mmpool_arena_free(a, p - 16) == -1, "p-16 accepted");
    CHECK(stats_of(a).large_blocks == 1, "");
    CHECK(mmpool_arena_free(a, p) == 0, "");
    mmpool_arena_destroy(a);
}

static void test_free_after_reset_declined(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *p = mmpool_arena_alloc(a, 100000);
    void *q = mmpool_arena_alloc(a, 6000);
    REQUIRE(p && q, "");
    mmpool_arena_reset(a);
    CHECK(mmpool_arena_free(a, p) == -1, "a large block freed by reset was accepted");
    CHECK(mmpool_arena_free(a, q) == -1, "a large block freed by reset was accepted");
    CHECK(stats_of(a).large_blocks == 0, "");
    mmpool_arena_destroy(a);
}

/* 100k large blocks freed in random order: an O(n) unlink (nginx's
 * ngx_pfree walks its list) would take billions of steps. */
static void test_free_large_o1(void)
{
    size_t n = full_mode ? 400000 : 100000;
    mmpool_arena_t *a = mmpool_arena_create(512); /* large above ~120 B */
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    void **v = malloc(n * sizeof *v);
    REQUIRE(v, "");
    rng_t r = { 1234 };
    size_t total = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        size_t s = 128 + (size_t)below(&r, 385);
        uint64_t *p = mmpool_arena_alloc(a, s);
        REQUIRE(p, "alloc #%zu", i);
        p[0] = i;
        p[s / 8 - 1] = ~(uint64_t)i;
        v[i] = p;
        total += s;
    }
    double t1 = now_s();
    mmpool_arena_stats_t m = stats_of(a);
    CHECK(m.large_blocks == n, "large_blocks %zu, want %zu", m.large_blocks, n);
    CHECK(m.bytes_requested == total, "bytes_requested %zu, want %zu", m.bytes_requested, total);
    CHECK(m.bytes_held >= b.bytes_held + total, "bytes_held %zu < %zu", m.bytes_held,
          b.bytes_held + total);
    CHECK(m.blocks == 1, "large allocations should not add bump blocks (%zu)", m.blocks);
    shuffle(v, n, &r);
    double t2 = now_s();
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (mmpool_arena_free(a, v[i]) != 0)
            bad++;
    double t3 = now_s();
    CHECK(bad == 0, "%zu frees refused", bad);
    mmpool_arena_stats_t f = stats_of(a);
    CHECK(memcmp(&f, &b, sizeof f) == 0, "after freeing all: large %zu held %zu (was %zu) req %zu",
          f.large_blocks, f.bytes_held, b.bytes_held, f.bytes_requested);
    CHECK(t3 - t2 < 1.5, "%zu random-order frees took %.3f s (not O(1)?)", n, t3 - t2);
    fprintf(stderr, "  free_large_o1: %zu allocs %.3f s, %zu random frees %.3f s (%.0f ns/free)\n",
            n, t1 - t0, n, t3 - t2, (t3 - t2) * 1e9 / (double)n);
    mmpool_arena_destroy(a);
    free(v);
}

/* Random interleaving of large allocations and frees, contents checked,
 * counters exact at every step. */
static void test_free_large_interleaved(void)
{
    mmpool_arena_t *a = mmpool_arena_create(1024);
    REQUIRE(a, "");
    enum { CAP = 2000 };
    static void *live[CAP];
    static size_t lsz[CAP];
    static uint64_t lkey[CAP];
    size_t nl = 0;
    rng_t r = { 77 };
    int ops = full_mode ? 400000 : 40000;
    size_t base_held = stats_of(a).bytes_held;
    for (int op = 0; op < ops; op++) {
        if (nl < CAP && (nl == 0 || below(&r, 100) < 55)) {
            size_t s = 300 + (size_t)below(&r, below(&r, 10) ? 3000 : 300000);
            void *p = mmpool_arena_alloc(a, s);
            REQUIRE(p, "");
            lkey[nl] = (uint64_t)op;
            fill_sparse(p, s, lkey[nl]);
            live[nl] = p;
            lsz[nl++] = s;
        } else {
            size_t i = (size_t)below(&r, nl);
            if (!check_sparse(live[i], lsz[i], lkey[i]))
                FAILF("op %d: block of %zu bytes damaged", op, lsz[i]);
            REQUIRE(mmpool_arena_free(a, live[i]) == 0, "op %d: free refused", op);
            live[i] = live[--nl];
            lsz[i] = lsz[nl];
            lkey[i] = lkey[nl];
        }
        if (op % 1000 == 0)
            REQUIRE(stats_of(a).large_blocks == nl, "op %d: large_blocks %zu, live %zu", op,
                    stats_of(a).large_blocks, nl);
    }
    while (nl > 0)
        REQUIRE(mmpool_arena_free(a, live[--nl]) == 0, "");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.large_blocks == 0 && s.bytes_held == base_held && s.bytes_requested == 0,
          "end: large %zu held %zu (base %zu) req %zu", s.large_blocks, s.bytes_held, base_held,
          s.bytes_requested);
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */
/* Cleanups                                                            */

static void test_cleanup_lifo(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    for (int i = 1; i <= 100; i++)
        REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)i), "");
    CHECK(stats_of(a).cleanups == 100, "cleanups %zu", stats_of(a).cleanups);
    mmpool_arena_reset(a);
    REQUIRE(ev_n == 100, "%d handlers ran at reset, want 100", ev_n);
    for (int i = 0; i < 100; i++)
        CHECK(ev_log[i] == 100 - i, "position %d ran handler %d, want %d (LIFO)", i, ev_log[i],
              100 - i);
    CHECK(stats_of(a).cleanups == 0, "reset did not clear the cleanups");
    /* destroy runs them LIFO too */
    log_reset();
    for (int i = 1; i <= 5; i++)
        REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)i), "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 5 && ev_log[0] == 5 && ev_log[4] == 1, "destroy: %d ran, first %d", ev_n,
          ev_n ? ev_log[0] : -1);
}

static void test_cleanup_runs_once(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)7), "");
    mmpool_arena_reset(a);
    mmpool_arena_reset(a);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 1, "handler ran %d times (reset forgets nothing, runs nothing twice)", ev_n);
}

static void test_cleanup_remove(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *h[6];
    for (int i = 0; i < 6; i++)
        REQUIRE(h[i] = mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)i), "");
    CHECK(mmpool_arena_cleanup_remove(a, h[5]) == 0, "remove newest");
    CHECK(mmpool_arena_cleanup_remove(a, h[2]) == 0, "remove middle");
    CHECK(mmpool_arena_cleanup_remove(a, h[0]) == 0, "remove oldest");
    CHECK(stats_of(a).cleanups == 3, "cleanups %zu, want 3", stats_of(a).cleanups);
    mmpool_arena_reset(a);
    CHECK(ev_n == 3 && ev_log[0] == 4 && ev_log[1] == 3 && ev_log[2] == 1,
          "ran %d: %d %d %d, want 4 3 1", ev_n, ev_log[0], ev_log[1], ev_log[2]);
    /* handles of cleanups that already ran are not registered any more */
    CHECK(mmpool_arena_cleanup_remove(a, h[4]) == -1, "handle of a cleanup that ran accepted");
    mmpool_arena_destroy(a);
}

static void test_cleanup_remove_twice(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(a, log_handler, (void *)1);
    REQUIRE(h, "");
    CHECK(mmpool_arena_cleanup_remove(a, h) == 0, "");
    CHECK(mmpool_arena_cleanup_remove(a, h) == -1, "second remove accepted");
    CHECK(stats_of(a).cleanups == 0, "cleanups %zu", stats_of(a).cleanups);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 0, "a removed handler ran");
}

static void test_cleanup_remove_wrong_arena(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0), *b = mmpool_arena_create(0);
    REQUIRE(a && b, "");
    mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
    REQUIRE(c, "");
    log_reset();
    mmpool_cleanup_t *ha = mmpool_arena_cleanup_add(a, log_handler, (void *)1);
    mmpool_cleanup_t *hc = mmpool_arena_cleanup_add(c, log_handler, (void *)2);
    REQUIRE(ha && hc, "");
    CHECK(mmpool_arena_cleanup_remove(b, ha) == -1, "b removed a's handler");
    CHECK(mmpool_arena_cleanup_remove(c, ha) == -1, "child removed parent's handler");
    CHECK(mmpool_arena_cleanup_remove(a, hc) == -1, "parent removed child's handler");
    CHECK(stats_of(a).cleanups == 1 && stats_of(c).cleanups == 1, "");
    mmpool_arena_destroy(b);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 2 && ev_log[0] == 2 && ev_log[1] == 1, "ran %d handlers", ev_n);
}

static void test_cleanup_remove_null(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    CHECK(mmpool_arena_cleanup_remove(a, NULL) == -1, "remove(NULL) accepted");
    mmpool_arena_destroy(a);
}

static void test_cleanup_null_handler(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    errno = 0;
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(a, NULL, (void *)1);
    /* Either accepted (and skipped when run) or refused with EINVAL. */
    CHECK(h != NULL || errno == EINVAL, "cleanup_add(NULL handler): NULL errno %d", errno);
    mmpool_arena_reset(a);
    mmpool_arena_destroy(a);
}

/* Handler state for the re-entrant cases. */
typedef struct {
    mmpool_arena_t *a;
    int id;
    int depth;
} reent_t;

static void adding_handler(void *data)
{
    reent_t *r = data;
    log_handler((void *)(intptr_t)r->id);
    if (r->depth > 0) {
        reent_t *n = mmpool_arena_alloc(r->a, sizeof *n);
        if (!n) {
            log_handler((void *)(intptr_t)-1);
            return;
        }
        *n = (reent_t){ r->a, r->id + 1, r->depth - 1 };
        if (!mmpool_arena_cleanup_add(r->a, adding_handler, n))
            log_handler((void *)(intptr_t)-1);
    }
}

static void test_cleanup_add_during_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    reent_t *r = mmpool_arena_alloc(a, sizeof *r);
    REQUIRE(r, "");
    *r = (reent_t){ a, 10, 5 };
    REQUIRE(mmpool_arena_cleanup_add(a, adding_handler, r), "");
    REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)1), "");
    mmpool_arena_reset(a);
    /* 1 first (LIFO), then 10, whose handler adds 11, ... up to 15 */
    CHECK(ev_n == 7, "%d handlers ran, want 7 (1, 10..15)", ev_n);
    CHECK(log_count(-1) == 0, "cleanup_add failed inside a handler");
    CHECK(ev_n >= 1 && ev_log[0] == 1, "first handler %d, want 1", ev_log[0]);
    for (int i = 1; i < ev_n && i < 7; i++)
        CHECK(ev_log[i] == 9 + i, "position %d: %d, want %d", i, ev_log[i], 9 + i);
    CHECK(stats_of(a).cleanups == 0, "cleanups added during reset survived it: %zu",
          stats_of(a).cleanups);
    log_reset();
    mmpool_arena_reset(a);
    CHECK(ev_n == 0, "second reset ran %d handlers", ev_n);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 0, "destroy ran %d handlers", ev_n);
}

static void test_cleanup_add_during_destroy(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    reent_t *r = mmpool_arena_alloc(a, sizeof *r);
    REQUIRE(r, "");
    *r = (reent_t){ a, 20, 3 };
    REQUIRE(mmpool_arena_cleanup_add(a, adding_handler, r), "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 4 && log_pos(20) == 0 && log_pos(23) == 3,
          "destroy ran %d handlers, want 20..23 in order", ev_n);
    CHECK(log_count(-1) == 0, "cleanup_add failed inside a handler");
}

typedef struct {
    mmpool_arena_t *a;
    void *large;
} alloc_in_cleanup_t;

static void allocating_handler(void *data)
{
    alloc_in_cleanup_t *c = data;
    void *s = mmpool_arena_alloc(c->a, 100);
    c->large = mmpool_arena_alloc(c->a, 200000);
    if (s)
        memset(s, 1, 100);
    if (c->large)
        memset(c->large, 2, 200000);
    log_handler((void *)(intptr_t)(s && c->large ? 1 : -1));
}

static void test_cleanup_allocates_during_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    log_reset();
    alloc_in_cleanup_t *c = mmpool_arena_alloc(a, sizeof *c);
    REQUIRE(c, "");
    c->a = a;
    c->large = NULL;
    REQUIRE(mmpool_arena_cleanup_add(a, allocating_handler, c), "");
    mmpool_arena_reset(a);
    CHECK(ev_n == 1 && ev_log[0] == 1, "handler could not allocate during reset");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.large_blocks == 0 && s.bytes_held == b.bytes_held && s.bytes_requested == 0 &&
              s.blocks == 1,
          "memory allocated by a cleanup survived the reset: large %zu held %zu (was %zu) "
          "req %zu",
          s.large_blocks, s.bytes_held, b.bytes_held, s.bytes_requested);
    /* and during destroy: must not leak or crash */
    alloc_in_cleanup_t *d = mmpool_arena_alloc(a, sizeof *d);
    REQUIRE(d, "");
    d->a = a;
    d->large = NULL;
    REQUIRE(mmpool_arena_cleanup_add(a, allocating_handler, d), "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 2 && ev_log[1] == 1, "handler could not allocate during destroy");
}

/* A cleanup handler that creates a child of the arena being reset or
 * destroyed: the child belongs to the arena, so it must be destroyed with
 * it (its own cleanups run) and not outlive it. */
static void child_creating_handler(void *data)
{
    mmpool_arena_t *a = data;
    mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
    if (!c || !mmpool_arena_cleanup_add(c, log_handler, (void *)(intptr_t)42))
        log_handler((void *)(intptr_t)-1);
    else
        log_handler((void *)(intptr_t)41);
}

static void test_cleanup_creates_child_during_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(a, child_creating_handler, a), "");
    mmpool_arena_reset(a);
    CHECK(log_count(41) == 1, "handler did not run or could not create a child");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.children == 0 && log_count(42) == 1,
          "a child created by a cleanup handler survived reset (children %zu, its cleanup "
          "ran %d times)",
          s.children, log_count(42));
    mmpool_arena_destroy(a);
    CHECK(log_count(42) == 1, "the child's cleanup ran %d times in all", log_count(42));
}

static void test_cleanup_creates_child_during_destroy(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(a, child_creating_handler, a), "");
    mmpool_arena_destroy(a);
    CHECK(log_count(41) == 1, "handler did not run or could not create a child");
    CHECK(log_count(42) == 1,
          "a child created by a cleanup during destroy was never destroyed (its cleanup ran "
          "%d times): leaked, with a dangling parent",
          log_count(42));
}

/* A handler that removes another pending handler of the same arena. */
typedef struct {
    mmpool_arena_t *a;
    mmpool_cleanup_t *victim;
} remover_t;

static void removing_handler(void *data)
{
    remover_t *r = data;
    log_handler((void *)(intptr_t)(mmpool_arena_cleanup_remove(r->a, r->victim) == 0 ? 30 : 31));
}

static void test_cleanup_removes_pending(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *victim = mmpool_arena_cleanup_add(a, log_handler, (void *)99);
    REQUIRE(victim, "");
    remover_t *r = mmpool_arena_alloc(a, sizeof *r);
    REQUIRE(r, "");
    r->a = a;
    r->victim = victim;
    REQUIRE(mmpool_arena_cleanup_add(a, removing_handler, r), "");
    mmpool_arena_reset(a);
    CHECK(ev_n == 1 && ev_log[0] == 30, "ran %d handlers, first %d (want only the remover, "
          "which removes the pending one)", ev_n, ev_n ? ev_log[0] : 0);
    mmpool_arena_destroy(a);
}

/* A parent's cleanup handler holding a pointer to a child: children go
 * first, so by then the child is destroyed and the handle is stale; the
 * destroy it attempts must be ignored, not run the child twice. */
typedef struct {
    mmpool_arena_t *child;
} stale_child_t;

static void destroy_child_handler(void *data)
{
    stale_child_t *sc = data;
    mmpool_arena_destroy(sc->child);
    log_handler((void *)(intptr_t)50);
}

static void test_cleanup_destroys_destroyed_child(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *C = mmpool_arena_create_child(P, 0);
    REQUIRE(C, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(C, log_handler, (void *)(intptr_t)51), "");
    stale_child_t *sc = mmpool_arena_alloc(P, sizeof *sc);
    REQUIRE(sc, "");
    sc->child = C;
    REQUIRE(mmpool_arena_cleanup_add(P, destroy_child_handler, sc), "");
    mmpool_arena_destroy(P);
    CHECK(ev_n == 2 && ev_log[0] == 51 && ev_log[1] == 50,
          "ran %d handlers (%d, %d): want the child's once, then the parent's", ev_n,
          ev_n > 0 ? ev_log[0] : 0, ev_n > 1 ? ev_log[1] : 0);
}

/* ------------------------------------------------------------------ */
/* Children                                                            */

static void test_children_count(void)
{
    mmpool_arena_t *p = mmpool_arena_create(0);
    REQUIRE(p, "");
    mmpool_arena_stats_t b = stats_of(p);
    mmpool_arena_t *c[10];
    for (int i = 0; i < 10; i++)
        REQUIRE(c[i] = mmpool_arena_create_child(p, 0), "");
    mmpool_arena_t *g = mmpool_arena_create_child(c[3], 0);
    REQUIRE(g, "");
    mmpool_arena_stats_t s = stats_of(p);
    CHECK(s.children == 10, "children %zu, want 10 (direct children only)", s.children);
    CHECK(s.bytes_held == b.bytes_held && s.blocks == b.blocks,
          "children's memory counted in the parent (held %zu, was %zu)", s.bytes_held,
          b.bytes_held);
    CHECK(stats_of(c[3]).children == 1, "");
    mmpool_arena_destroy(c[3]);
    mmpool_arena_destroy(c[7]);
    CHECK(stats_of(p).children == 8, "children %zu after two destroys", stats_of(p).children);
    mmpool_arena_destroy(p);
}

/* Every arena's cleanups run after all of its descendants' (children
 * first), each arena's own handlers LIFO, the root's last. */
static void test_children_destroy_order(void)
{
    /* ids: P=1, C1=10, C2=20, G11=11, G12=12, G21=21, GG=111 (child of G11) */
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *C1 = mmpool_arena_create_child(P, 0);
    mmpool_arena_t *C2 = mmpool_arena_create_child(P, 1024);
    REQUIRE(C1 && C2, "");
    mmpool_arena_t *G11 = mmpool_arena_create_child(C1, 0);
    mmpool_arena_t *G12 = mmpool_arena_create_child(C1, 0);
    mmpool_arena_t *G21 = mmpool_arena_create_child(C2, 0);
    REQUIRE(G11 && G12 && G21, "");
    mmpool_arena_t *GG = mmpool_arena_create_child(G11, 0);
    REQUIRE(GG, "");
    struct { mmpool_arena_t *a; int id; } all[] = {
        { P, 1 }, { C1, 10 }, { C2, 20 }, { G11, 11 }, { G12, 12 }, { G21, 21 }, { GG, 111 },
    };
    log_reset();
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        /* two handlers per arena: id*1000+1 then id*1000+2 (runs first) */
        REQUIRE(mmpool_arena_cleanup_add(all[i].a, log_handler,
                                         (void *)(intptr_t)(all[i].id * 1000 + 1)), "");
        REQUIRE(mmpool_arena_cleanup_add(all[i].a, log_handler,
                                         (void *)(intptr_t)(all[i].id * 1000 + 2)), "");
        void *big = mmpool_arena_alloc(all[i].a, 50000);
        REQUIRE(big, "");
        memset(big, (int)i, 50000);
    }
    mmpool_arena_destroy(P);
    REQUIRE(ev_n == 14, "%d handlers ran, want 14", ev_n);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        int id = all[i].id;
        int p1 = log_pos(id * 1000 + 1), p2 = log_pos(id * 1000 + 2);
        CHECK(p1 >= 0 && p2 >= 0 && p2 < p1, "arena %d: its handlers ran at %d,%d (LIFO?)", id,
              p2, p1);
    }
    /* descendant before ancestor */
    static const int edges[][2] = { { 10, 1 }, { 20, 1 }, { 11, 10 }, { 12, 10 },
                                    { 21, 20 }, { 111, 11 }, { 111, 10 }, { 111, 1 } };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        int d = edges[i][0], an = edges[i][1];
        CHECK(log_pos(d * 1000 + 1) < log_pos(an * 1000 + 2),
              "descendant %d's cleanups ran after ancestor %d's", d, an);
    }
    CHECK(log_pos(1002) == 12 && log_pos(1001) == 13, "the root's cleanups did not run last");
}

static void test_child_destroy_early(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *C = mmpool_arena_create_child(P, 0);
    REQUIRE(C, "");
    mmpool_arena_t *G = mmpool_arena_create_child(C, 0);
    mmpool_arena_t *C2 = mmpool_arena_create_child(P, 0);
    REQUIRE(G && C2, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(P, log_handler, (void *)1), "");
    REQUIRE(mmpool_arena_cleanup_add(C, log_handler, (void *)2), "");
    REQUIRE(mmpool_arena_cleanup_add(G, log_handler, (void *)3), "");
    REQUIRE(mmpool_arena_cleanup_add(C2, log_handler, (void *)4), "");
    mmpool_arena_destroy(C);
    CHECK(ev_n == 2 && ev_log[0] == 3 && ev_log[1] == 2, "destroy(C): ran %d, want G then C", ev_n);
    CHECK(stats_of(P).children == 1, "P children %zu after destroying C", stats_of(P).children);
    void *x = mmpool_arena_alloc(C2, 100);
    CHECK(x != NULL, "sibling unusable after destroying C");
    mmpool_arena_destroy(P);
    CHECK(ev_n == 4 && ev_log[2] == 4 && ev_log[3] == 1, "destroy(P): %d ran", ev_n);
    CHECK(log_count(2) == 1 && log_count(3) == 1, "an early-destroyed child was destroyed twice");
}

static void test_child_reset_parent(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    log_reset();
    for (int round = 0; round < 3; round++) {
        REQUIRE(mmpool_arena_cleanup_add(P, log_handler, (void *)1), "");
        for (int i = 0; i < 5; i++) {
            mmpool_arena_t *c = mmpool_arena_create_child(P, 0);
            REQUIRE(c, "");
            mmpool_arena_t *g = mmpool_arena_create_child(c, 0);
            REQUIRE(g, "");
            REQUIRE(mmpool_arena_cleanup_add(c, log_handler, (void *)2), "");
            REQUIRE(mmpool_arena_cleanup_add(g, log_handler, (void *)3), "");
            REQUIRE(mmpool_arena_alloc(g, 100000), "");
        }
        CHECK(stats_of(P).children == 5, "");
        int before = ev_n;
        mmpool_arena_reset(P);
        CHECK(ev_n - before == 11, "reset ran %d handlers, want 11", ev_n - before);
        CHECK(ev_log[ev_n - 1] == 1, "the parent's cleanup did not run after its children's");
        mmpool_arena_stats_t s = stats_of(P);
        CHECK(s.children == 0 && s.cleanups == 0, "after reset: children %zu cleanups %zu",
              s.children, s.cleanups);
        CHECK(mmpool_arena_alloc(P, 100) != NULL, "parent unusable after reset");
    }
    mmpool_arena_destroy(P);
    CHECK(ev_n == 33, "destroy after resets ran handlers again (%d)", ev_n);
}

static void test_child_block_size(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *c = mmpool_arena_create_child(P, 1 * MiB);
    REQUIRE(c, "");
    mmpool_arena_stats_t s = stats_of(c);
    CHECK(s.bytes_held >= 1 * MiB && s.blocks == 1, "child held %zu", s.bytes_held);
    void *p = mmpool_arena_alloc(c, 200 * KiB); /* bumped in a 1 MiB block */
    CHECK(p && stats_of(c).large_blocks == 0, "200 KiB in a 1 MiB-block child not bumped");
    mmpool_arena_t *d = mmpool_arena_create_child(P, 1);
    REQUIRE(d, "");
    CHECK(stats_of(d).bytes_held >= 512, "child of block 1 not clamped");
    mmpool_arena_destroy(P);
}

/* A deep chain: destroying the root destroys every level. */
static void test_child_deep_chain(void)
{
    int depth = full_mode ? 5000 : 1000;
    mmpool_arena_t *root = mmpool_arena_create(512);
    REQUIRE(root, "");
    log_reset();
    mmpool_arena_t *cur = root;
    for (int i = 0; i < depth; i++) {
        mmpool_arena_t *c = mmpool_arena_create_child(cur, 512);
        REQUIRE(c, "level %d", i);
        REQUIRE(mmpool_arena_cleanup_add(c, log_handler, (void *)(intptr_t)i), "");
        cur = c;
    }
    mmpool_arena_destroy(root);
    REQUIRE(ev_n == depth, "%d of %d levels' cleanups ran", ev_n, depth);
    for (int i = 0; i < depth; i++)
        if (ev_log[i] != depth - 1 - i) {
            FAILF("position %d ran level %d, want %d (deepest first)", i, ev_log[i],
                  depth - 1 - i);
            break;
        }
}

static void test_child_many_siblings(void)
{
    size_t n = full_mode ? 50000 : 5000;
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    void **v = malloc(n * sizeof *v);
    REQUIRE(v, "");
    for (size_t i = 0; i < n; i++) {
        v[i] = mmpool_arena_create_child(P, 512);
        REQUIRE(v[i], "child %zu", i);
        REQUIRE(mmpool_arena_alloc(v[i], 64), "");
    }
    CHECK(stats_of(P).children == n, "");
    rng_t r = { 5 };
    shuffle(v, n, &r);
    for (size_t i = 0; i < n / 2; i++)
        mmpool_arena_destroy(v[i]);
    CHECK(stats_of(P).children == n - n / 2, "children %zu after destroying half",
          stats_of(P).children);
    for (size_t i = n / 2; i < n; i++)
        REQUIRE(mmpool_arena_alloc(v[i], 64), "surviving child unusable");
    mmpool_arena_destroy(P);
    free(v);
}

/* ------------------------------------------------------------------ */
/* Reset                                                               */

static void test_reset_keeps_one_block(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    void *first = mmpool_arena_alloc(a, 64);
    REQUIRE(first, "");
    for (int i = 0; i < 500; i++)
        REQUIRE(mmpool_arena_alloc(a, 500), "");
    for (int i = 0; i < 10; i++)
        REQUIRE(mmpool_arena_alloc(a, 20000), "");
    mmpool_arena_stats_t m = stats_of(a);
    CHECK(m.blocks > 10 && m.large_blocks == 10, "blocks %zu large %zu", m.blocks, m.large_blocks);
    mmpool_arena_reset(a);
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.blocks == 1 && s.large_blocks == 0 && s.bytes_requested == 0,
          "after reset: blocks %zu large %zu req %zu", s.blocks, s.large_blocks,
          s.bytes_requested);
    CHECK(s.bytes_held == b.bytes_held, "after reset held %zu, fresh %zu", s.bytes_held,
          b.bytes_held);
    void *again = mmpool_arena_alloc(a, 64);
    CHECK(again == first, "first allocation after reset %p, before %p (block not reused)", again,
          first);
    mmpool_arena_destroy(a);
}

static void test_reset_empty(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    for (int i = 0; i < 100; i++)
        mmpool_arena_reset(a);
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(memcmp(&s, &b, sizeof s) == 0, "resetting an empty arena changed its stats");
    mmpool_arena_destroy(a);
}

/* Many request-like cycles: memory held stays flat, RSS does not creep. */
static void test_reset_repeated_bounded(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    rng_t r = { 3 };
    int cycles = full_mode ? 100000 : 10000;
    long rss0 = 0;
    size_t peak_held = 0;
    for (int c = 0; c < cycles; c++) {
        int n = 20 + (int)below(&r, 200);
        for (int i = 0; i < n; i++) {
            size_t s = below(&r, 50) ? 8 + (size_t)below(&r, 500) : 5000 + (size_t)below(&r, 60000);
            char *p = mmpool_arena_alloc(a, s);
            REQUIRE(p, "");
            p[0] = 1;
            p[s - 1] = 2;
        }
        if (below(&r, 10) == 0) {
            mmpool_arena_t *ch = mmpool_arena_create_child(a, 0);
            REQUIRE(ch && mmpool_arena_alloc(ch, 300), "");
        }
        size_t held = stats_of(a).bytes_held;
        if (held > peak_held)
            peak_held = held;
        mmpool_arena_reset(a);
        mmpool_arena_stats_t s = stats_of(a);
        if (s.bytes_held != b.bytes_held || s.blocks != 1 || s.children != 0) {
            FAILF("cycle %d: held %zu blocks %zu children %zu after reset", c, s.bytes_held,
                  s.blocks, s.children);
            break;
        }
        if (c == cycles / 10)
            rss0 = rss_kib();
    }
    long rss1 = rss_kib();
    CHECK(rss1 - rss0 < 32 * 1024, "RSS grew from %ld to %ld KiB over %d reset cycles", rss0,
          rss1, cycles);
    fprintf(stderr, "  reset_repeated_bounded: %d cycles, peak held %zu KiB, RSS %ld -> %ld KiB\n",
            cycles, peak_held / 1024, rss0, rss1);
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */
/* Stats                                                               */

static void test_stats_consistency(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    rng_t r = { 42 };
    size_t req = 0, large = 0;
    enum { CAP = 512 };
    void *lp[CAP];
    size_t ls[CAP];
    size_t nl = 0;
    for (int i = 0; i < 5000; i++) {
        uint64_t k = below(&r, 100);
        size_t s;
        void *p;
        if (k < 70) {
            s = (size_t)below(&r, 900);
            p = (i & 1) ? mmpool_arena_nalloc(a, s) : mmpool_arena_alloc(a, s);
        } else if (k < 85) {
            s = (size_t)below(&r, 900);
            p = mmpool_arena_memalign(a, s, (size_t)1 << below(&r, 9));
        } else if (k < 95 || nl == 0) {
            s = 1100 + (size_t)below(&r, 40000);
            p = mmpool_arena_calloc(a, s);
            if (p && nl < CAP) {
                lp[nl] = p;
                ls[nl++] = s;
            }
            large++;
        } else {
            size_t j = (size_t)below(&r, nl);
            REQUIRE(mmpool_arena_free(a, lp[j]) == 0, "");
            req -= ls[j];
            large--;
            lp[j] = lp[--nl];
            ls[j] = ls[nl];
            continue;
        }
        REQUIRE(p || s == 0, "allocation of %zu failed", s);
        req += s;
        mmpool_arena_stats_t st = stats_of(a);
        if (st.bytes_requested != req || st.large_blocks != large) {
            FAILF("step %d: bytes_requested %zu (want %zu) large_blocks %zu (want %zu)", i,
                  st.bytes_requested, req, st.large_blocks, large);
            break;
        }
        if (st.bytes_held < st.bytes_requested || st.blocks < 1 ||
            st.bytes_held < st.blocks * 4096) {
            FAILF("step %d: held %zu < requested %zu or blocks %zu", i, st.bytes_held,
                  st.bytes_requested, st.blocks);
            break;
        }
    }
    mmpool_arena_destroy(a);
}

static void test_stats_cleanups_children(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_cleanup_t *h[10];
    for (int i = 0; i < 10; i++)
        REQUIRE(h[i] = mmpool_arena_cleanup_add(a, log_handler, (void *)0), "");
    for (int i = 0; i < 3; i++)
        REQUIRE(mmpool_arena_create_child(a, 0), "");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.cleanups == 10 && s.children == 3, "cleanups %zu children %zu", s.cleanups,
          s.children);
    CHECK(mmpool_arena_cleanup_remove(a, h[4]) == 0, "");
    CHECK(stats_of(a).cleanups == 9, "");
    log_reset();
    mmpool_arena_reset(a);
    s = stats_of(a);
    CHECK(s.cleanups == 0 && s.children == 0 && ev_n == 9, "after reset: cleanups %zu children "
          "%zu ran %d", s.cleanups, s.children, ev_n);
    mmpool_arena_destroy(a);
}

static void test_stats_null_arena(void)
{
    mmpool_arena_stats_t s = stats_of(NULL);
    CHECK(s.bytes_requested == 0 && s.bytes_held == 0 && s.blocks == 0 && s.large_blocks == 0 &&
              s.children == 0 && s.cleanups == 0,
          "stats(NULL) not all zero");
}

static void test_stats_null_out(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats(a, NULL);
    mmpool_arena_stats(NULL, NULL);
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */
/* NULL and invalid arenas                                             */

static void test_null_arena_alloc(void)
{
    errno = 0;
    void *p = mmpool_arena_alloc(NULL, 16);
    CHECK(p == NULL && errno == EINVAL, "alloc(NULL) = %p errno %d", p, errno);
    errno = 0;
    p = mmpool_arena_alloc(NULL, 1 * MiB);
    CHECK(p == NULL && errno == EINVAL, "alloc(NULL, 1M) = %p errno %d", p, errno);
}

static void test_null_arena_nalloc(void)
{
    errno = 0;
    void *p = mmpool_arena_nalloc(NULL, 5);
    CHECK(p == NULL && errno == EINVAL, "nalloc(NULL) = %p errno %d", p, errno);
}

static void test_null_arena_calloc(void)
{
    errno = 0;
    void *p = mmpool_arena_calloc(NULL, 5);
    CHECK(p == NULL && errno == EINVAL, "calloc(NULL) = %p errno %d", p, errno);
}

static void test_null_arena_memalign(void)
{
    errno = 0;
    void *p = mmpool_arena_memalign(NULL, 5, 64);
    CHECK(p == NULL && errno == EINVAL, "memalign(NULL) = %p errno %d", p, errno);
    errno = 0;
    p = mmpool_arena_memalign(NULL, 5, 3);
    CHECK(p == NULL && errno == EINVAL, "memalign(NULL, bad alignment) = %p errno %d", p, errno);
}

static void test_null_arena_create_child(void)
{
    errno = 0;
    mmpool_arena_t *c = mmpool_arena_create_child(NULL, 0);
    CHECK(c == NULL && errno == EINVAL, "create_child(NULL) = %p errno %d", (void *)c, errno);
}

static void test_null_arena_destroy_reset(void)
{
    mmpool_arena_destroy(NULL);
    mmpool_arena_reset(NULL);
}

static void test_null_arena_free(void)
{
    int x;
    CHECK(mmpool_arena_free(NULL, &x) == -1, "free(NULL arena) accepted");
    CHECK(mmpool_arena_free(NULL, NULL) == -1, "free(NULL, NULL) accepted");
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *big = mmpool_arena_alloc(a, 100000);
    REQUIRE(big, "");
    CHECK(mmpool_arena_free(NULL, big) == -1, "free(NULL arena, a real large block) accepted");
    CHECK(stats_of(a).large_blocks == 1, "");
    mmpool_arena_destroy(a);
}

static void test_null_arena_cleanup_add(void)
{
    errno = 0;
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(NULL, log_handler, NULL);
    CHECK(h == NULL && errno == EINVAL, "cleanup_add(NULL) = %p errno %d", (void *)h, errno);
}

static void test_null_arena_cleanup_remove(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(a, log_handler, (void *)1);
    REQUIRE(h, "");
    CHECK(mmpool_arena_cleanup_remove(NULL, h) == -1, "cleanup_remove(NULL arena) accepted");
    CHECK(mmpool_arena_cleanup_remove(NULL, NULL) == -1, "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 1, "handler removed through a NULL arena");
}

static void test_invalid_arena_stack(void)
{
    uint64_t fake[64];
    memset(fake, 0, sizeof fake);
    expect_rejected((mmpool_arena_t *)fake, "stack");
    memset(fake, 0xFF, sizeof fake);
    expect_rejected((mmpool_arena_t *)fake, "stack 0xff");
}

static void test_invalid_arena_static(void)
{
    expect_rejected((mmpool_arena_t *)static_buf, "static");
}

static void test_invalid_arena_malloc_block(void)
{
    static const size_t sizes[] = { 64, 1000, 20000, 1 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        REQUIRE(p, "");
        memset(p, 0x3C, sizes[i]);
        expect_rejected(p, "malloc block");
        memset(p, 0, sizes[i]);
        expect_rejected(p, "zeroed malloc block");
        free(p);
    }
}

static void test_invalid_arena_allocation(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *small = mmpool_arena_alloc(a, 256);
    void *big = mmpool_arena_alloc(a, 100000);
    REQUIRE(small && big, "");
    memset(small, 0x11, 256);
    memset(big, 0x22, 100000);
    expect_rejected(small, "arena allocation");
    expect_rejected(big, "large arena allocation");
    expect_rejected((mmpool_arena_t *)((char *)a + 16), "arena + 16");
    CHECK(stats_of(a).large_blocks == 1, "the real arena was affected");
    mmpool_arena_destroy(a);
}

/* A pointer to the last bytes of a pool block, with nothing mapped after
 * it: validating it as an arena must not read past the block. Run in a
 * child process so a crash is a failure, not the end of the test. */
static void test_invalid_arena_block_end(void)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        alarm(20);
        size_t ps = (size_t)sysconf(_SC_PAGESIZE);
        for (int k = 0; k < 2; k++) {
            size_t n = k ? 8 * MiB : 100000;
            char *p = malloc(n);
            if (!p)
                _exit(3);
            char *e = p + malloc_usable_size(p);
            for (size_t guard = 0; guard < 2 * ps && mmpool_owns(e); guard++)
                e++;
            if (((uintptr_t)e & (ps - 1)) == 0) /* page-aligned end: put a guard there */
                (void)mmap(e, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                           -1, 0);
            for (int off = 1; off <= 8; off++) {
                errno = 0;
                void *r = mmpool_arena_alloc((mmpool_arena_t *)(e - off), 16);
                if (r != NULL || errno != EINVAL)
                    _exit(4);
                mmpool_arena_stats_t s;
                mmpool_arena_stats((mmpool_arena_t *)(e - off), &s);
                mmpool_arena_destroy((mmpool_arena_t *)(e - off));
            }
        }
        _exit(0);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "mmpool_arena_alloc(pointer to the last bytes of a pool block before an unmapped "
          "page) %s %d (the arena check reads past the block)",
          WIFSIGNALED(st) ? "crashed with signal" : "exited", WIFSIGNALED(st) ? WTERMSIG(st)
                                                                           : WEXITSTATUS(st));
}

static void test_destroyed_arena_handle(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    REQUIRE(mmpool_arena_alloc(a, 100), "");
    mmpool_arena_destroy(a);
    /* use-after-destroy is a caller bug, but the handle check catches it
     * as long as the memory was not reused for another arena */
    errno = 0;
    void *p = mmpool_arena_alloc(a, 16);
    CHECK(p == NULL && errno == EINVAL, "alloc on a destroyed arena = %p errno %d", p, errno);
    mmpool_arena_destroy(a); /* double destroy: ignored */
    mmpool_arena_reset(a);
    CHECK(stats_of(a).blocks == 0, "destroyed arena still reports blocks");
}

/* ------------------------------------------------------------------ */
/* Ownership, threads                                                  */

static void test_owns_arena_allocations(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *s = mmpool_arena_alloc(a, 32), *n = mmpool_arena_nalloc(a, 7),
         *l = mmpool_arena_alloc(a, 1 * MiB), *m = mmpool_arena_memalign(a, 10, 64 * KiB);
    REQUIRE(s && n && l && m, "");
    CHECK(mmpool_owns(s) && mmpool_owns(n) && mmpool_owns(l) && mmpool_owns(m),
          "arena memory should be pool memory");
    CHECK(mmpool_arena_free(a, l) == 0, "");
    mmpool_arena_destroy(a);
}

typedef struct {
    int id;
    int rounds;
    int errors;
} thr_arg_t;

static void *thread_worker(void *arg)
{
    thr_arg_t *t = arg;
    rng_t r = { (uint64_t)t->id * 1000 + 1 };
    mmpool_arena_t *a = mmpool_arena_create(t->id % 2 ? 4096 : 0);
    if (!a) {
        t->errors++;
        return NULL;
    }
    enum { N = 300 };
    void *p[N];
    size_t sz[N];
    for (int round = 0; round < t->rounds; round++) {
        mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
        for (int i = 0; i < N; i++) {
            sz[i] = below(&r, 20) ? 1 + (size_t)below(&r, 700) : 5000 + (size_t)below(&r, 50000);
            mmpool_arena_t *where = (i % 3 == 0 && c) ? c : a;
            p[i] = mmpool_arena_alloc(where, sz[i]);
            if (!p[i]) {
                t->errors++;
                continue;
            }
            fill_sparse(p[i], sz[i], (uint64_t)(t->id * 100000 + i + round));
        }
        for (int i = 0; i < N; i++)
            if (p[i] && !check_sparse(p[i], sz[i], (uint64_t)(t->id * 100000 + i + round)))
                t->errors++;
        for (int i = 0; i < N; i += 7)
            if (p[i] && sz[i] >= 5000 && i % 3 != 0 && mmpool_arena_free(a, p[i]) != 0)
                t->errors++;
        mmpool_arena_reset(a);
    }
    mmpool_arena_destroy(a);
    return NULL;
}

static void test_threads_own_arenas(void)
{
    enum { T = 4 };
    pthread_t th[T];
    thr_arg_t args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (thr_arg_t){ i, full_mode ? 2000 : 200, 0 };
        REQUIRE(pthread_create(&th[i], NULL, thread_worker, &args[i]) == 0, "");
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].errors == 0, "thread %d: %d errors", i, args[i].errors);
    }
}

typedef struct {
    mmpool_arena_t *a;
    void *large;
    char *small;
    int ok;
} handoff_t;

static void *handoff_worker(void *arg)
{
    handoff_t *h = arg;
    h->ok = strcmp(h->small, "made in main") == 0 && mmpool_arena_free(h->a, h->large) == 0;
    for (int i = 0; i < 1000 && h->ok; i++)
        h->ok = mmpool_arena_alloc(h->a, 1 + (size_t)i * 13) != NULL;
    mmpool_arena_destroy(h->a); /* destroyed in another thread than its creator */
    return NULL;
}

static void test_arena_handoff_between_threads(void)
{
    for (int k = 0; k < (full_mode ? 200 : 20); k++) {
        handoff_t h = { mmpool_arena_create(0), NULL, NULL, 0 };
        REQUIRE(h.a, "");
        h.large = mmpool_arena_alloc(h.a, 100000);
        h.small = mmpool_arena_nalloc(h.a, 13);
        REQUIRE(h.large && h.small, "");
        memcpy(h.small, "made in main", 13);
        for (int i = 0; i < 100; i++)
            REQUIRE(mmpool_arena_alloc(h.a, 500), "");
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, handoff_worker, &h) == 0, "");
        pthread_join(t, NULL);
        CHECK(h.ok, "round %d: the arena did not work in the second thread", k);
    }
}

/* An arena whose creating thread has exited (its heap is abandoned):
 * still usable and destroyable from another thread. */
static void *create_in_thread(void *arg)
{
    mmpool_arena_t **out = arg;
    mmpool_arena_t *a = mmpool_arena_create(4096);
    if (a) {
        for (int i = 0; i < 200; i++)
            if (!mmpool_arena_alloc(a, 300))
                return NULL;
        void *big = mmpool_arena_alloc(a, 50000);
        if (big)
            memset(big, 0x42, 50000);
        if (!mmpool_arena_create_child(a, 0))
            return NULL;
    }
    *out = a;
    return NULL;
}

static void test_arena_outlives_creator_thread(void)
{
    for (int k = 0; k < (full_mode ? 200 : 20); k++) {
        mmpool_arena_t *a = NULL;
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, create_in_thread, &a) == 0, "");
        pthread_join(t, NULL);
        REQUIRE(a, "the thread could not build its arena");
        mmpool_arena_stats_t s = stats_of(a);
        CHECK(s.large_blocks == 1 && s.children == 1 && s.blocks > 1, "stats after the thread "
              "exited: large %zu children %zu blocks %zu", s.large_blocks, s.children, s.blocks);
        for (int i = 0; i < 100; i++)
            REQUIRE(mmpool_arena_alloc(a, 700), "");
        mmpool_arena_reset(a);
        REQUIRE(mmpool_arena_alloc(a, 100000), "");
        mmpool_arena_destroy(a);
    }
}

/* fork() with live arenas: both processes go on using and destroying
 * their copies. */
static void test_arena_after_fork(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    char *s = mmpool_arena_nalloc(a, 6);
    void *big = mmpool_arena_alloc(a, 200000);
    REQUIRE(s && big, "");
    memcpy(s, "hello", 6);
    fill(big, 200000, 9);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        alarm(20);
        int bad = strcmp(s, "hello") != 0 || check_fill(big, 200000, 9) != (size_t)-1 ||
                  mmpool_arena_free(a, big) != 0;
        for (int i = 0; i < 1000 && !bad; i++)
            bad = mmpool_arena_alloc(a, 1 + (size_t)i * 7) == NULL;
        mmpool_arena_destroy(a);
        mmpool_arena_t *b = mmpool_arena_create(0);
        bad |= b == NULL || mmpool_arena_alloc(b, 64) == NULL;
        mmpool_arena_destroy(b);
        _exit(bad ? 1 : 0);
    }
    CHECK(mmpool_arena_free(a, big) == 0, "parent: free after fork");
    for (int i = 0; i < 1000; i++)
        REQUIRE(mmpool_arena_alloc(a, 1 + (size_t)i * 7), "");
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid, "");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child after fork: status %#x", st);
    CHECK(strcmp(s, "hello") == 0, "parent's data changed");
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */
/* MMPOOL_ARENA_DEBUG=1 (run in a re-executed child)                   */

static void test_debug_each_alloc_own_block(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    enum { N = 2000 };
    static void *p[N];
    static size_t sz[N];
    rng_t r = { 17 };
    size_t req = 0;
    for (int i = 0; i < N; i++) {
        size_t s = 1 + (size_t)below(&r, i % 50 == 0 ? 20000 : 200);
        void *q;
        switch (i % 5) {
        case 0: q = mmpool_arena_alloc(a, s); break;
        case 1: q = mmpool_arena_nalloc(a, s); break;
        case 2:
            q = mmpool_arena_calloc(a, s);
            if (q && !all_zero(q, s))
                FAILF("calloc(%zu) not zeroed", s);
            break;
        case 3: q = mmpool_arena_memalign(a, s, 64); break;
        default: q = mmpool_arena_memalign(a, s, 4096); break;
        }
        REQUIRE(q, "allocation #%d", i);
        CHECK(aligned(q, i % 5 == 4 ? 4096 : i % 5 == 3 ? 64 : i % 5 == 1 ? 1 : 16),
              "allocation #%d misaligned", i);
        CHECK(mmpool_owns(q), "allocation #%d not a pool block", i);
        p[i] = q;
        sz[i] = s;
        req += s;
        fill(q, s, (uint64_t)i);
    }
    mmpool_arena_stats_t m = stats_of(a);
    CHECK(m.large_blocks == N, "large_blocks %zu, want %d (one per allocation)", m.large_blocks, N);
    CHECK(m.blocks == b.blocks, "bump blocks grew to %zu in debug mode", m.blocks);
    CHECK(m.bytes_requested == req, "bytes_requested %zu want %zu", m.bytes_requested, req);
    CHECK(m.bytes_held >= b.bytes_held + req, "bytes_held %zu", m.bytes_held);
    for (int i = 0; i < N; i++)
        CHECK(check_fill(p[i], sz[i], (uint64_t)i) == (size_t)-1, "allocation #%d overwritten", i);
    /* each one is its own block: freeable one by one, even 1-byte ones */
    int refused = 0;
    for (int i = N - 1; i >= 0; i -= 2)
        refused += mmpool_arena_free(a, p[i]) != 0;
    for (int i = N - 2; i >= 0; i -= 2)
        refused += mmpool_arena_free(a, p[i]) != 0;
    CHECK(refused == 0, "%d allocations were not separate blocks (free refused)", refused);
    mmpool_arena_stats_t f = stats_of(a);
    CHECK(f.large_blocks == 0 && f.bytes_held == b.bytes_held && f.bytes_requested == 0,
          "after freeing all: large %zu held %zu (base %zu) req %zu", f.large_blocks, f.bytes_held,
          b.bytes_held, f.bytes_requested);
    mmpool_arena_destroy(a);
}

static void test_debug_reset_and_destroy(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    log_reset();
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 100; i++)
            REQUIRE(mmpool_arena_alloc(a, 24), "");
        mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
        REQUIRE(c, "");
        for (int i = 0; i < 10; i++)
            REQUIRE(mmpool_arena_nalloc(c, 5), "");
        CHECK(stats_of(c).large_blocks == 10, "child large_blocks %zu", stats_of(c).large_blocks);
        REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)round), "");
        CHECK(stats_of(a).large_blocks >= 100, "large_blocks %zu", stats_of(a).large_blocks);
        mmpool_arena_reset(a);
        mmpool_arena_stats_t s = stats_of(a);
        CHECK(s.large_blocks == 0 && s.bytes_held == b.bytes_held && s.children == 0,
              "round %d after reset: large %zu held %zu (base %zu)", round, s.large_blocks,
              s.bytes_held, b.bytes_held);
    }
    CHECK(ev_n == 20, "cleanups in debug mode: %d ran", ev_n);
    mmpool_arena_destroy(a);
}

static void test_debug_mode(void)
{
    if (debug_child)
        return;
    int fds[2];
    REQUIRE(pipe(fds) == 0, "");
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        setenv("MMPOOL_ARENA_DEBUG", "1", 1);
        char *args[] = { g_argv[0], "--arena-debug-child", full_mode ? "--full" : "--smoke",
                         NULL };
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    REQUIRE(f, "");
    char line[1024];
    int oks = 0, fails = 0;
    while (fgets(line, sizeof line, f)) {
        printf("  debug: %s", line);
        if (strncmp(line, "ok ", 3) == 0)
            oks++;
        else if (strncmp(line, "FAIL ", 5) == 0)
            fails++;
    }
    fclose(f);
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid, "");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "debug child: status %#x (%d ok, %d failed)", st,
          oks, fails);
    CHECK(oks >= 3 && fails == 0, "debug child: %d ok, %d failed", oks, fails);
}

static void test_debug_mode_active(void)
{
    const char *e = getenv("MMPOOL_ARENA_DEBUG");
    REQUIRE(e && strcmp(e, "1") == 0, "MMPOOL_ARENA_DEBUG not set in the child");
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *p = mmpool_arena_alloc(a, 16);
    REQUIRE(p, "");
    CHECK(stats_of(a).large_blocks == 1, "MMPOOL_ARENA_DEBUG=1 but a 16-byte allocation was "
          "bumped (is the library preloaded/linked?)");
    CHECK(mmpool_arena_free(a, p) == 0, "a 16-byte debug allocation is not its own block");
    mmpool_arena_destroy(a);
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    g_argc = argc;
    g_argv = argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--full") == 0)
            full_mode = 1;
        else if (strcmp(argv[i], "--smoke") == 0)
            full_mode = 0;
        else if (strcmp(argv[i], "--arena-debug-child") == 0)
            debug_child = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--smoke|--full] [case...]\n", argv[0]);
            return 2;
        }
    }
    alarm(full_mode ? 900 : 240);

    if (debug_child) {
        RUN(debug_mode_active);
        RUN(debug_each_alloc_own_block);
        RUN(debug_reset_and_destroy);
        printf("%s (MMPOOL_ARENA_DEBUG=1): %d passed, %d failed\n", argv[0], n_passed, n_failed);
        return n_failed ? 1 : 0;
    }
    if (getenv("MMPOOL_ARENA_DEBUG") && strcmp(getenv("MMPOOL_ARENA_DEBUG"), "0") != 0) {
        fprintf(stderr, "%s: run without MMPOOL_ARENA_DEBUG (debug_mode sets it itself)\n",
                argv[0]);
        return 2;
    }

    RUN(create_default);
    RUN(create_block_size_clamped);
    RUN(create_many_destroy_random);

    RUN(alloc_aligned_distinct);
    RUN(alloc_zero_size);
    RUN(alloc_mixed_no_overlap);
    RUN(nalloc_unaligned_packing);
    RUN(nalloc_strings);
    RUN(calloc_zeroes);
    RUN(calloc_zero_after_reset);
    RUN(calloc_large_zero_after_reuse);

    RUN(memalign_alignments);
    RUN(memalign_small_alignments);
    RUN(memalign_not_power_of_two);
    RUN(memalign_huge_alignment);

    RUN(alloc_overflow);
    RUN(nalloc_overflow);
    RUN(calloc_overflow);
    RUN(memalign_overflow);
    RUN(memalign_overflow_big_alignment);
    RUN(quarter_block_threshold);

    RUN(free_large);
    RUN(free_large_twice);
    RUN(free_bumped_declined);
    RUN(free_other_arena_declined);
    RUN(free_child_parent_declined);
    RUN(free_null_pointer);
    RUN(free_stack_pointer);
    RUN(free_static_pointer);
    RUN(free_malloc_pointer);
    RUN(free_interior_pointer);
    RUN(free_after_reset_declined);
    RUN(free_large_o1);
    RUN(free_large_interleaved);

    RUN(cleanup_lifo);
    RUN(cleanup_runs_once);
    RUN(cleanup_remove);
    RUN(cleanup_remove_twice);
    RUN(cleanup_remove_wrong_arena);
    RUN(cleanup_remove_null);
    RUN(cleanup_null_handler);
    RUN(cleanup_add_during_reset);
    RUN(cleanup_add_during_destroy);
    RUN(cleanup_allocates_during_reset);
    RUN(cleanup_creates_child_during_reset);
    RUN(cleanup_creates_child_during_destroy);
    RUN(cleanup_removes_pending);
    RUN(cleanup_destroys_destroyed_child);

    RUN(children_count);
    RUN(children_destroy_order);
    RUN(child_destroy_early);
    RUN(child_reset_parent);
    RUN(child_block_size);
    RUN(child_deep_chain);
    RUN(child_many_siblings);

    RUN(reset_keeps_one_block);
    RUN(reset_empty);
    RUN(reset_repeated_bounded);

    RUN(stats_consistency);
    RUN(stats_cleanups_children);
    RUN(stats_null_arena);
    RUN(stats_null_out);

    RUN(null_arena_alloc);
    RUN(null_arena_nalloc);
    RUN(null_arena_calloc);
    RUN(null_arena_memalign);
    RUN(null_arena_create_child);
    RUN(null_arena_destroy_reset);
    RUN(null_arena_free);
    RUN(null_arena_cleanup_add);
    RUN(null_arena_cleanup_remove);
    RUN(invalid_arena_stack);
    RUN(invalid_arena_static);
    RUN(invalid_arena_malloc_block);
    RUN(invalid_arena_allocation);
    RUN(invalid_arena_block_end);
    RUN(destroyed_arena_handle);

    RUN(owns_arena_allocations);
    RUN(threads_own_arenas);
    RUN(arena_handoff_between_threads);
    RUN(arena_outlives_creator_thread);
    RUN(arena_after_fork);

    RUN(debug_mode);

    printf("%s: %d passed, %d failed\n", argv[0], n_passed, n_failed);
    return n_failed ? 1 : 0;
}
