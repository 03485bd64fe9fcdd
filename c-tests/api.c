/* c-tests/api.c -- the malloc API edge cases, by name (glibc semantics). */
#include "testutil.h"

#define PDMAX ((size_t)PTRDIFF_MAX)
#define SENTINEL ((void *)(uintptr_t)0x5e5e5e50)

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* The alignment a block of `size` bytes must have. */
static size_t min_align(size_t size)
{
    if (size >= 16)
        return 16;
    size_t a = 1;
    while (a * 2 <= size)
        a *= 2;
    return a;
}

static void check_block(void *p, size_t size, size_t align, const char *what)
{
    if (!p) {
        FAILF("%s(%zu) returned NULL", what, size);
        return;
    }
    if (!tu_aligned(p, align))
        FAILF("%s(%zu) = %p not aligned to %zu", what, size, p, align);
    size_t u = xusable(p);
    if (u < size)
        FAILF("%s(%zu): malloc_usable_size %zu understates", what, size, u);
}

/* ------------------------------------------------------------------ */

static void test_malloc_zero_unique(void)
{
    enum { N = 1000 };
    void **v = xmalloc(N * sizeof *v);
    REQUIRE(v != NULL, "");
    for (int i = 0; i < N; i++) {
        v[i] = xmalloc(0);
        CHECK(v[i] != NULL, "malloc(0) #%d returned NULL", i);
    }
    /* unique: sort-free O(N^2) is fine for 1000 */
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            if (v[i] && v[i] == v[j]) {
                FAILF("malloc(0) returned %p twice (#%d, #%d)", v[i], i, j);
                i = N;
                break;
            }
    for (int i = 0; i < N; i++)
        xfree(v[i]);
    void *p = xrealloc(NULL, 0);
    CHECK(p != NULL, "realloc(NULL, 0) should act as malloc(0)");
    xfree(p);
    xfree(v);
}

/* Every size 0..1024, then a geometric walk with +-1 neighbours up to
 * 4 MiB: alignment, usable size, fill each block to its usable size and
 * check that all the neighbours are intact. */
static void test_malloc_sizes_fill_usable(void)
{
    enum { K = 8 };
    size_t sizes[4096];
    size_t ns = 0;
    for (size_t s = 0; s <= 1024; s++)
        sizes[ns++] = s;
    for (size_t s = 1040; s <= 4 * MiB; s += s / 8 + 16) {
        sizes[ns++] = s - 1;
        sizes[ns++] = s;
        sizes[ns++] = s + 1;
    }
    for (size_t i = 0; i < ns; i++) {
        size_t size = sizes[i];
        int k = size > 256 * KiB ? 2 : K;
        void *b[K];
        size_t u[K];
        for (int j = 0; j < k; j++) {
            b[j] = xmalloc(size);
            check_block(b[j], size, min_align(size), "malloc");
            if (!b[j])
                return;
            u[j] = xusable(b[j]);
            tu_fill(b[j], u[j], size * K + (size_t)j);
        }
        for (int j = 0; j < k; j++) {
            size_t bad = tu_check(b[j], u[j], size * K + (size_t)j);
            if (bad != (size_t)-1) {
                FAILF("malloc(%zu) block %d (usable %zu) corrupted at offset %zu "
                      "by a neighbour's fill", size, j, u[j], bad);
                break;
            }
        }
        for (int j = 0; j < k; j += 2)
            xfree(b[j]);
        for (int j = 1; j < k; j += 2)
            xfree(b[j]);
        if (tu_case_failed)
            return;
    }
}

/* Three consecutive blocks; the middle one is filled to its usable size
 * with a second pattern after the outer ones were filled. */
static void test_usable_size_neighbours(void)
{
    for (size_t size = 1; size <= 70000; size += (size < 600 ? 1 : size / 16)) {
        void *a = xmalloc(size), *b = xmalloc(size), *c = xmalloc(size);
        REQUIRE(a && b && c, "malloc(%zu) failed", size);
        size_t ua = xusable(a), ub = xusable(b), uc = xusable(c);
        CHECK(ua >= size && ub >= size && uc >= size, "usable size < %zu", size);
        tu_fill(a, ua, 1);
        tu_fill(c, uc, 3);
        tu_fill(b, ub, 2);
        CHECK(tu_check(a, ua, 1) == (size_t)-1, "size %zu: filling the middle block "
              "to its usable size %zu corrupted the previous block", size, ub);
        CHECK(tu_check(c, uc, 3) == (size_t)-1, "size %zu: filling the middle block "
              "to its usable size %zu corrupted the next block", size, ub);
        CHECK(tu_check(b, ub, 2) == (size_t)-1, "size %zu: middle block corrupted", size);
        xfree(b);
        xfree(a);
        xfree(c);
        if (tu_case_failed)
            return;
    }
}

static void test_usable_size_null(void)
{
    CHECK(xusable(NULL) == 0, "malloc_usable_size(NULL) = %zu", xusable(NULL));
    CHECK(mmpool_usable_size(NULL) == 0, "mmpool_usable_size(NULL) = %zu",
          mmpool_usable_size(NULL));
}

static const size_t huge_sizes[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4096, SIZE_MAX / 2,
    PDMAX + 1, PDMAX, PDMAX - 4096, (size_t)1 << 50, (size_t)1 << 47,
};
#define NHUGE (sizeof huge_sizes / sizeof huge_sizes[0])

static void test_malloc_enomem(void)
{
    for (size_t i = 0; i < NHUGE; i++) {
        errno = 0;
        void *p = xmalloc(huge_sizes[i]);
        CHECK(p == NULL, "malloc(%#zx) succeeded", huge_sizes[i]);
        CHECK(errno == ENOMEM, "malloc(%#zx): errno %d, want ENOMEM", huge_sizes[i], errno);
        if (p)
            xfree(p);
        errno = 0;
        p = mmpool_malloc(huge_sizes[i]);
        CHECK(p == NULL, "mmpool_malloc(%#zx) succeeded", huge_sizes[i]);
        CHECK(errno == ENOMEM, "mmpool_malloc(%#zx): errno %d, want ENOMEM",
              huge_sizes[i], errno);
        if (p)
            mmpool_free(p);
    }
    /* the allocator still works afterwards */
    void *p = xmalloc(100);
    CHECK(p != NULL, "malloc(100) after ENOMEM failed");
    xfree(p);
}

static const size_t calloc_sizes[] = {
    1, 7, 8, 15, 16, 17, 24, 32, 48, 64, 80, 96, 100, 127, 128, 160, 192, 255, 256,
    320, 384, 448, 512, 640, 768, 1000, 1024, 1500, 2048, 3000, 4095, 4096, 4097,
    8192, 10000, 16384, 32768, 65536, 100000, 131072, 262144, 524288 + 3, MiB,
    4 * MiB + 5, 16 * MiB,
};
#define NCALLOC (sizeof calloc_sizes / sizeof calloc_sizes[0])

static void test_calloc_zero(void)
{
    for (size_t i = 0; i < NCALLOC; i++) {
        size_t n = calloc_sizes[i];
        void *a = xcalloc(n, 1), *b = xcalloc(1, n), *c = xcalloc(n / 8 + 1, 8);
        check_block(a, n, min_align(n), "calloc(n,1)");
        check_block(b, n, min_align(n), "calloc(1,n)");
        check_block(c, n / 8 * 8 + 8, 16, "calloc(n/8+1,8)");
        if (!a || !b || !c)
            return;
        CHECK(tu_all_zero(a, n), "calloc(%zu,1) not zeroed", n);
        CHECK(tu_all_zero(b, n), "calloc(1,%zu) not zeroed", n);
        CHECK(tu_all_zero(c, n / 8 * 8 + 8), "calloc(%zu,8) not zeroed", n / 8 + 1);
        xfree(a);
        xfree(b);
        xfree(c);
    }
}

/* Dirty blocks of every size, free them, calloc the same sizes: the
 * recycled memory must come back zeroed (also for cached large blocks). */
static void test_calloc_zero_after_reuse(void)
{
    enum { K = 64 };
    static void *b[K];
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < NCALLOC; i++) {
            size_t n = calloc_sizes[i];
            int k = n >= MiB ? 3 : K;
            for (int j = 0; j < k; j++) {
                b[j] = xmalloc(n);
                REQUIRE(b[j] != NULL, "malloc(%zu)", n);
                memset(b[j], 0xA5, xusable(b[j]));
            }
            for (int j = 0; j < k; j++)
                xfree(b[j]);
            for (int j = 0; j < k; j++) {
                /* round 1: a slightly smaller request reusing the same slot */
                size_t m = round ? n - n / 16 : n;
                b[j] = xcalloc(1, m);
                REQUIRE(b[j] != NULL, "calloc(1,%zu)", m);
                if (!tu_all_zero(b[j], m)) {
                    FAILF("calloc(1,%zu) returned dirty recycled memory "
                          "(after freeing blocks of %zu)", m, n);
                }
            }
            for (int j = 0; j < k; j++)
                xfree(b[j]);
            if (tu_case_failed)
                return;
        }
    }
    /* dirty via realloc growth, then calloc */
    void *p = xmalloc(100);
    REQUIRE(p != NULL, "");
    memset(p, 0xEE, 100);
    p = xrealloc(p, 3000);
    REQUIRE(p != NULL, "");
    memset(p, 0xEE, xusable(p));
    xfree(p);
    p = xcalloc(3000, 1);
    REQUIRE(p != NULL, "");
    CHECK(tu_all_zero(p, 3000), "calloc after realloc'd dirty block not zeroed");
    xfree(p);
    /* mmpool_calloc too */
    p = mmpool_malloc(2000);
    REQUIRE(p != NULL, "");
    memset(p, 0x77, 2000);
    mmpool_free(p);
    p = mmpool_calloc(250, 8);
    REQUIRE(p != NULL, "");
    CHECK(tu_all_zero(p, 2000), "mmpool_calloc returned dirty memory");
    mmpool_free(p);
}

static void test_calloc_overflow(void)
{
    static const size_t cases[][2] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX, SIZE_MAX},
        {((size_t)1 << 32) + 1, (size_t)1 << 32}, {(size_t)1 << 32, (size_t)1 << 32},
        {PDMAX / 2 + 1, 2}, {2, PDMAX / 2 + 1}, {(size_t)1 << 25, (size_t)1 << 25},
        {1, SIZE_MAX}, {SIZE_MAX, 1}, {PDMAX + 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        void *p = xcalloc(cases[i][0], cases[i][1]);
        CHECK(p == NULL, "calloc(%#zx, %#zx) succeeded", cases[i][0], cases[i][1]);
        CHECK(errno == ENOMEM, "calloc(%#zx, %#zx): errno %d, want ENOMEM",
              cases[i][0], cases[i][1], errno);
        if (p)
            xfree(p);
        errno = 0;
        p = mmpool_calloc(cases[i][0], cases[i][1]);
        CHECK(p == NULL && errno == ENOMEM, "mmpool_calloc(%#zx, %#zx): %p errno %d",
              cases[i][0], cases[i][1], p, errno);
        if (p)
            mmpool_free(p);
    }
}

static void test_calloc_zero_count(void)
{
    static const size_t cases[][2] = {{0, 0}, {0, 1}, {1, 0}, {0, SIZE_MAX}, {SIZE_MAX, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *p = xcalloc(cases[i][0], cases[i][1]);
        CHECK(p != NULL, "calloc(%#zx, %#zx) returned NULL (glibc returns a unique "
              "pointer)", cases[i][0], cases[i][1]);
        xfree(p);
    }
}

static void test_realloc_null_is_malloc(void)
{
    static const size_t sizes[] = {0, 1, 16, 100, 4096, 100000, 2 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = xrealloc(NULL, sizes[i]);
        check_block(p, sizes[i], min_align(sizes[i]), "realloc(NULL, n)");
        if (p) {
            tu_fill(p, sizes[i], 9);
            xfree(p);
        }
        p = mmpool_realloc(NULL, sizes[i]);
        check_block(p, sizes[i], min_align(sizes[i]), "mmpool_realloc(NULL, n)");
        if (p)
            mmpool_free(p);
    }
}

/* realloc(p, 0) frees p and returns NULL (glibc).  Checked through RSS:
 * a leak of the loop's blocks would show as hundreds of MiB. */
static void test_realloc_zero_frees(void)
{
    static const struct { size_t size; int iters; } c[] = {
        {24, 200000}, {4000, 100000}, {100000, 4000}, {MiB, 400},
    };
    long rss0 = tu_rss_kib();
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        for (int it = 0; it < c[i].iters; it++) {
            void *p = xmalloc(c[i].size);
            REQUIRE(p != NULL, "malloc(%zu)", c[i].size);
            memset(p, 1, c[i].size);
            void *q = (it & 1) ? mmpool_realloc(p, 0) : xrealloc(p, 0);
            if (q != NULL) {
                FAILF("%srealloc(p of %zu bytes, 0) = %p, want NULL (block freed)",
                      (it & 1) ? "mmpool_" : "", c[i].size, q);
                xfree(q);
                return;
            }
        }
    }
    long grow = tu_rss_kib() - rss0;
    CHECK(grow < 128 * 1024, "RSS grew by %ld KiB over ~1.6 GiB of realloc(p, 0): "
          "blocks are not freed", grow);
}

static void test_realloc_fail_keeps_block(void)
{
    static const size_t sizes[] = {1, 100, 3000, 100000, 4 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p = xmalloc(n);
        REQUIRE(p != NULL, "malloc(%zu)", n);
        size_t u = xusable(p);
        tu_fill(p, n, n);
        for (size_t h = 0; h < NHUGE; h++) {
            errno = 0;
            void *q = (h & 1) ? mmpool_realloc(p, huge_sizes[h]) : xrealloc(p, huge_sizes[h]);
            if (q != NULL) {
                FAILF("realloc(p, %#zx) succeeded", huge_sizes[h]);
                xfree(q);
                return;
            }
            CHECK(errno == ENOMEM, "realloc(p, %#zx): errno %d, want ENOMEM",
                  huge_sizes[h], errno);
            CHECK(tu_check(p, n, n) == (size_t)-1,
                  "failed realloc(p of %zu, %#zx) changed the old block", n, huge_sizes[h]);
            CHECK(xusable(p) == u, "usable size changed by a failed realloc");
        }
        /* reallocarray overflow leaves the block too */
        errno = 0;
        void *q = xreallocarray(p, SIZE_MAX / 2 + 1, 2);
        CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow: %p errno %d", q, errno);
        CHECK(tu_check(p, n, n) == (size_t)-1, "failed reallocarray changed the block");
        /* and the block still works */
        q = xrealloc(p, n * 2 + 10);
        REQUIRE(q != NULL, "realloc after failures");
        CHECK(tu_check(q, n, n) == (size_t)-1, "contents lost");
        xfree(q);
    }
}

/* small -> large -> small: every size range, contents kept. */
static void test_realloc_preserves_contents(void)
{
    static const size_t walk[] = {
        16, 17, 24, 31, 48, 100, 255, 256, 513, 1000, 2048, 4000, 4096, 4097,
        10000, 32768, 65536, 100000, 262144 + 7, 500000, MiB, 2 * MiB + 1,
        4 * MiB + 13, 16 * MiB, 33 * MiB, 64 * MiB,
    };
    const size_t nw = sizeof walk / sizeof walk[0];
    size_t seq[3 * sizeof walk / sizeof walk[0] + 8];
    size_t n = 0;
    for (size_t i = 0; i < nw; i++)
        seq[n++] = walk[i];              /* grow through every range */
    for (size_t i = nw; i-- > 0;)
        seq[n++] = walk[i];              /* shrink back */
    seq[n++] = 64 * MiB;                 /* jumps */
    seq[n++] = 16;
    seq[n++] = 5 * MiB;
    seq[n++] = 3000;
    seq[n++] = 64 * MiB + 1;
    seq[n++] = 100;
    seq[n++] = 16;

    for (int variant = 0; variant < 2; variant++) {
        void *p = variant ? mmpool_malloc(seq[0]) : xmalloc(seq[0]);
        REQUIRE(p != NULL, "");
        size_t cur = seq[0];
        tu_fill(p, cur, 77);
        for (size_t i = 1; i < n; i++) {
            size_t next = seq[i];
            void *q = variant ? mmpool_realloc(p, next) : xrealloc(p, next);
            REQUIRE(q != NULL, "realloc(%zu -> %zu) failed", cur, next);
            check_block(q, next, 16, "realloc");
            size_t keep = cur < next ? cur : next;
            size_t bad = tu_check(q, keep, 77);
            if (bad != (size_t)-1) {
                FAILF("%srealloc %zu -> %zu lost contents at offset %zu",
                      variant ? "mmpool_" : "", cur, next, bad);
                xfree(q);
                return;
            }
            tu_fill(q, next, 77);        /* same seed: prefix unchanged */
            p = q;
            cur = next;
        }
        if (variant)
            mmpool_free(p);
        else
            xfree(p);
    }
}

/* 16 blocks, random sizes (log-uniform 1 B .. 2 MiB), random reallocs. */
static void test_realloc_random_walk(void)
{
    enum { SLOTS = 16 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    tu_rng r;
    tu_rng_seed(&r, 12345);
    int steps = tu_full ? 200000 : 20000;
    for (int s = 0; s < steps; s++) {
        int i = (int)tu_below(&r, SLOTS);
        size_t next = (size_t)1 << tu_below(&r, 22);
        next += tu_below(&r, next);
        void *q = xrealloc(p[i], next);
        REQUIRE(q != NULL, "realloc(%zu)", next);
        size_t keep = sz[i] < next ? sz[i] : next;
        size_t bad = tu_check(q, keep, (uint64_t)i);
        if (bad != (size_t)-1) {
            FAILF("step %d: realloc %zu -> %zu lost contents at %zu", s, sz[i], next, bad);
            return;
        }
        CHECK(tu_aligned(q, 16) && xusable(q) >= next, "realloc(%zu): bad block", next);
        tu_fill(q, next, (uint64_t)i);
        p[i] = q;
        sz[i] = next;
    }
    for (int i = 0; i < SLOTS; i++)
        xfree(p[i]);
}

static void test_reallocarray(void)
{
    void *p = xreallocarray(NULL, 3, 5);
    check_block(p, 15, 8, "reallocarray(NULL,3,5)");
    REQUIRE(p != NULL, "");
    tu_fill(p, 15, 5);
    void *q = xreallocarray(p, 1000, 10);
    check_block(q, 10000, 16, "reallocarray(p,1000,10)");
    REQUIRE(q != NULL, "");
    CHECK(tu_check(q, 15, 5) == (size_t)-1, "reallocarray lost contents");
    tu_fill(q, 10000, 6);
    static const size_t ovf[][2] = {
        {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 33, (size_t)1 << 33}, {SIZE_MAX, SIZE_MAX},
        {PDMAX / 4 + 1, 4},
    };
    for (size_t i = 0; i < sizeof ovf / sizeof ovf[0]; i++) {
        errno = 0;
        void *x = xreallocarray(q, ovf[i][0], ovf[i][1]);
        CHECK(x == NULL, "reallocarray(p, %#zx, %#zx) succeeded", ovf[i][0], ovf[i][1]);
        CHECK(errno == ENOMEM, "reallocarray(p, %#zx, %#zx): errno %d, want ENOMEM",
              ovf[i][0], ovf[i][1], errno);
        CHECK(tu_check(q, 10000, 6) == (size_t)-1, "failed reallocarray changed the block");
        errno = 0;
        x = xreallocarray(NULL, ovf[i][0], ovf[i][1]);
        CHECK(x == NULL && errno == ENOMEM, "reallocarray(NULL, %#zx, %#zx): %p errno %d",
              ovf[i][0], ovf[i][1], x, errno);
    }
    q = xreallocarray(q, 10, 1);
    REQUIRE(q != NULL, "shrink");
    CHECK(tu_check(q, 10, 6) == (size_t)-1, "reallocarray shrink lost contents");
    xfree(q);
}

static void test_free_null(void)
{
    xfree(NULL);
    mmpool_free(NULL);
    errno = 0;
    xfree(NULL);
    CHECK(errno == 0, "free(NULL) set errno %d", errno);
}

/* glibc >= 2.33 (and POSIX 2024): free() never changes errno. */
static void test_free_preserves_errno(void)
{
    static const size_t sizes[] = {8, 100, 5000, 200000, 8 * MiB, 64 * MiB};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = xmalloc(sizes[i]);
            REQUIRE(p != NULL, "");
            memset(p, 1, sizes[i]);
            errno = 4321;
            xfree(p);
            CHECK(errno == 4321, "free(block of %zu) changed errno to %d", sizes[i], errno);
            p = xaligned_alloc(4096, sizes[i]);
            REQUIRE(p != NULL, "");
            errno = 4321;
            xfree(p);
            CHECK(errno == 4321, "free(aligned block of %zu) changed errno to %d",
                  sizes[i], errno);
        }
}

static void test_posix_memalign_einval(void)
{
    static const size_t bad[] = {
        0, 1, 2, 4, 3, 12, 24, 40, 48, 96, 4095, 4097, 3 * MiB, SIZE_MAX,
        SIZE_MAX / 2, SIZE_MAX / 2 + 2, SIZE_MAX - 7, ((size_t)1 << 40) + 8,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(alignment %#zx) = %d, want EINVAL", bad[i], rc);
        CHECK(p == SENTINEL, "posix_memalign(alignment %#zx) wrote *p on failure", bad[i]);
        if (rc == 0 && p != SENTINEL)
            xfree(p);
    }
}

static void test_posix_memalign_enomem(void)
{
    static const size_t c[][2] = {
        {16, SIZE_MAX}, {16, PDMAX + 1}, {4096, SIZE_MAX - 4096}, {64, (size_t)1 << 50},
        {(size_t)1 << 62, 1}, {(size_t)1 << 63, 1}, {GiB, PDMAX}, {8, SIZE_MAX - 7},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, c[i][0], c[i][1]);
        CHECK(rc == ENOMEM, "posix_memalign(align %#zx, size %#zx) = %d, want ENOMEM",
              c[i][0], c[i][1], rc);
        CHECK(p == SENTINEL, "posix_memalign(align %#zx, size %#zx) wrote *p on failure",
              c[i][0], c[i][1]);
        if (rc == 0 && p != SENTINEL)
            xfree(p);
    }
}

static void test_posix_memalign_zero_size(void)
{
    for (size_t a = sizeof(void *); a <= 65536; a *= 2) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, a, 0);
        CHECK(rc == 0, "posix_memalign(&p, %zu, 0) = %d", a, rc);
        if (rc == 0) {
            CHECK(p != SENTINEL && tu_aligned(p, a), "posix_memalign(&p, %zu, 0) -> %p", a, p);
            xfree(p);
        }
        p = xaligned_alloc(a, 0);
        CHECK(p != NULL && tu_aligned(p, a), "aligned_alloc(%zu, 0) -> %p", a, p);
        xfree(p);
    }
}

enum { AL_ALIGNED_ALLOC, AL_MEMALIGN, AL_POSIX_MEMALIGN, AL_MMPOOL, AL_N };
static const char *const al_names[AL_N] = {
    "aligned_alloc", "memalign", "posix_memalign", "mmpool_aligned_alloc"};

static void *al_alloc(int fn, size_t align, size_t size)
{
    void *p = NULL;
    switch (fn) {
    case AL_ALIGNED_ALLOC: return xaligned_alloc(align, size);
    case AL_MEMALIGN: return xmemalign(align, size);
    case AL_POSIX_MEMALIGN: return xposix_memalign(&p, align, size) == 0 ? p : NULL;
    default: return mmpool_aligned_alloc(align, size);
    }
}

/* Every power-of-two alignment from 8 bytes to 1 GiB, through each
 * aligned entry point, a few sizes each; then realloc and free. */
static void test_aligned_every_alignment(void)
{
    for (size_t a = 8; a <= GiB; a *= 2) {
        size_t sizes[4] = {1, 100, a, a + a / 2 + 3};
        for (int fn = 0; fn < AL_N; fn++) {
            for (int si = 0; si < 4; si++) {
                size_t n = sizes[si];
                if (n > 64 * MiB)
                    continue;
                void *p = al_alloc(fn, a, n);
                if (!p) {
                    FAILF("%s(align %zu, size %zu) returned NULL", al_names[fn], a, n);
                    return;
                }
                CHECK(tu_aligned(p, a), "%s(align %zu, size %zu) = %p misaligned",
                      al_names[fn], a, n, p);
                size_t u = xusable(p);
                CHECK(u >= n, "%s(align %zu, size %zu): usable %zu", al_names[fn], a, n, u);
                if (fn == AL_MMPOOL)
                    CHECK(mmpool_usable_size(p) >= n, "mmpool_usable_size understates");
                tu_fill_sparse(p, n, a + n);
                if (u <= 4 * MiB)       /* writing up to the usable size is safe */
                    memset((char *)p + n, 0xCC, u - n);
                /* grow and shrink the aligned block with realloc */
                size_t grow = n < 32 * MiB ? n * 2 + 1000 : n + 4096;
                void *q = (fn == AL_MMPOOL) ? mmpool_realloc(p, grow) : xrealloc(p, grow);
                if (!q) {
                    FAILF("realloc(%s block align %zu size %zu -> %zu) failed",
                          al_names[fn], a, n, grow);
                    xfree(p);
                    return;
                }
                size_t bad = tu_check_sparse(q, n, a + n);
                CHECK(bad == (size_t)-1, "realloc of %s(align %zu, size %zu) block lost "
                      "contents at %zu", al_names[fn], a, n, bad);
                void *r = xrealloc(q, n / 2 + 1);
                REQUIRE(r != NULL, "shrinking realloc failed");
                if (n <= 3 * 65536) {   /* dense pattern: any prefix checks */
                    bad = tu_check(r, n / 2 + 1, a + n);
                    CHECK(bad == (size_t)-1, "shrinking realloc of an aligned block lost "
                          "contents at %zu", bad);
                }
                if (fn == AL_MMPOOL)
                    mmpool_free(r);
                else
                    xfree(r);
                if (tu_case_failed)
                    return;
            }
        }
    }
}

/* Alignments that are not powers of two: glibc 2.36 rounds up for both
 * (aligned_alloc == memalign), glibc >= 2.38 fails aligned_alloc with
 * EINVAL.  Accept either, never a misaligned block. */
static void test_aligned_alloc_odd_alignment(void)
{
    static const size_t odd[] = {0, 3, 24, 48, 100, 1000, 4097};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        size_t a = odd[i], pow2 = 1;
        while (pow2 < a)
            pow2 *= 2;
        for (int fn = 0; fn < 2; fn++) {
            errno = 0;
            void *p = fn ? xmemalign(a, 64) : xaligned_alloc(a, 64);
            if (p) {
                CHECK(tu_aligned(p, pow2), "%s(%zu, 64) = %p not aligned to %zu",
                      fn ? "memalign" : "aligned_alloc", a, p, pow2);
                CHECK(xusable(p) >= 64, "usable size");
                memset(p, 3, 64);
                xfree(p);
            } else {
                CHECK(errno == EINVAL, "%s(%zu, 64) = NULL with errno %d, want EINVAL",
                      fn ? "memalign" : "aligned_alloc", a, errno);
            }
        }
    }
    for (size_t a = 1; a < 8; a *= 2) {
        void *p = xmemalign(a, 10);
        CHECK(p != NULL, "memalign(%zu, 10) returned NULL", a);
        xfree(p);
        p = xaligned_alloc(a, 10);
        CHECK(p != NULL, "aligned_alloc(%zu, 10) returned NULL", a);
        xfree(p);
    }
}

static void test_aligned_enomem(void)
{
    static const size_t c[][2] = {
        {64, SIZE_MAX}, {4096, PDMAX}, {64, SIZE_MAX - 32}, {4096, (size_t)1 << 50},
        {16, PDMAX + 1}, {GiB, SIZE_MAX - GiB},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        for (int fn = 0; fn < AL_N; fn++) {
            if (fn == AL_POSIX_MEMALIGN)
                continue;
            errno = 0;
            void *p = al_alloc(fn, c[i][0], c[i][1]);
            CHECK(p == NULL, "%s(%#zx, %#zx) succeeded", al_names[fn], c[i][0], c[i][1]);
            CHECK(errno == ENOMEM, "%s(%#zx, %#zx): errno %d, want ENOMEM", al_names[fn],
                  c[i][0], c[i][1], errno);
            if (p)
                xfree(p);
        }
    }
}

/* A power-of-two alignment too large to satisfy is ENOMEM in glibc
 * (EINVAL is only for alignments that are not powers of two). */
static void test_huge_alignment_enomem(void)
{
    for (int sh = 62; sh <= 63; sh++) {
        size_t a = (size_t)1 << sh;
        errno = 0;
        void *p = xmemalign(a, 48);
        CHECK(p == NULL && errno == ENOMEM, "memalign(1<<%d, 48) = %p errno %d, want ENOMEM",
              sh, p, errno);
        errno = 0;
        p = xaligned_alloc(a, 48);
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(1<<%d, 48) = %p errno %d, "
              "want ENOMEM", sh, p, errno);
    }
}

static void test_valloc_page_aligned(void)
{
    size_t pg = page_size();
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 65536 + 1, 3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = xvalloc(sizes[i]);
        check_block(p, sizes[i], pg, "valloc");
        if (!p)
            return;
        tu_fill(p, xusable(p), 4);
        void *q = xrealloc(p, sizes[i] + 5000);
        REQUIRE(q != NULL, "realloc of a valloc block");
        CHECK(tu_check(q, sizes[i], 4) == (size_t)-1, "realloc of valloc block lost data");
        xfree(q);
    }
}

static void test_pvalloc_rounds_to_pages(void)
{
    size_t pg = page_size();
    static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 65536 + 1, 3 * MiB + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        size_t rounded = (n + pg - 1) / pg * pg;
        void *p = xpvalloc(n);
        check_block(p, rounded, pg, "pvalloc (rounded size)");
        if (!p)
            return;
        size_t u = xusable(p);
        tu_fill(p, u, 5);
        CHECK(tu_check(p, u, 5) == (size_t)-1, "pvalloc block");
        xfree(p);
    }
    void *p = xpvalloc(0);
    CHECK(p != NULL && tu_aligned(p, pg), "pvalloc(0) = %p", p);
    xfree(p);
}

static void test_valloc_pvalloc_enomem(void)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4094, SIZE_MAX - 8192, PDMAX + 1,
                                   (size_t)1 << 50};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        void *p = xvalloc(sizes[i]);
        CHECK(p == NULL && errno == ENOMEM, "valloc(%#zx) = %p errno %d", sizes[i], p, errno);
        if (p)
            xfree(p);
        errno = 0;
        p = xpvalloc(sizes[i]);
        CHECK(p == NULL && errno == ENOMEM, "pvalloc(%#zx) = %p errno %d (page rounding "
              "must not wrap)", sizes[i], p, errno);
        if (p)
            xfree(p);
    }
}

typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

static void test_free_sized(void)
{
    free_sized_fn fs;
    free_aligned_sized_fn fas;
    *(void **)&fs = dlsym(RTLD_DEFAULT, "free_sized");
    *(void **)&fas = dlsym(RTLD_DEFAULT, "free_aligned_sized");
    REQUIRE(fs != NULL, "free_sized is not exported");
    REQUIRE(fas != NULL, "free_aligned_sized is not exported");
    long rss0 = tu_rss_kib();
    for (int it = 0; it < 2000; it++) {
        size_t n = (size_t)(it * 37 % 5000) + 1;
        if (it % 10 == 0)
            n = MiB + (size_t)it;
        void *p = xmalloc(n);
        REQUIRE(p != NULL, "");
        memset(p, 1, n);
        fs(p, n);
        p = xcalloc(n, 1);
        REQUIRE(p != NULL, "");
        fs(p, n);
        size_t a = (size_t)16 << (it % 9);
        size_t an = (n + a - 1) / a * a;
        p = xaligned_alloc(a, an);
        REQUIRE(p != NULL, "");
        CHECK(tu_aligned(p, a), "aligned_alloc");
        memset(p, 2, an);
        fas(p, a, an);
    }
    fs(NULL, 0);
    fas(NULL, 64, 0);
    long grow = tu_rss_kib() - rss0;
    CHECK(grow < 128 * 1024, "RSS grew by %ld KiB: free_sized does not free", grow);
}

typedef struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
} libc_aliases;

static void test_libc_aliases(void)
{
    static const char *const names[] = {"__libc_malloc", "__libc_free", "__libc_calloc",
                                        "__libc_realloc", "__libc_memalign",
                                        "__posix_memalign"};
    libc_aliases la;
    void **slots[] = {(void **)&la.malloc, (void **)&la.free, (void **)&la.calloc,
                      (void **)&la.realloc, (void **)&la.memalign,
                      (void **)&la.posix_memalign};
    bool pool = tu_malloc_is_mmpool();
    for (int i = 0; i < 6; i++) {
        *slots[i] = dlsym(RTLD_DEFAULT, names[i]);
        REQUIRE(*slots[i] != NULL, "%s is not exported", names[i]);
        if (pool)
            CHECK(strstr(tu_symbol_owner(names[i]), "libmmpool") != NULL,
                  "%s resolves to %s, not libmmpool", names[i], tu_symbol_owner(names[i]));
    }
    void *p = la.malloc(100);
    REQUIRE(p != NULL, "__libc_malloc");
    tu_fill(p, 100, 1);
    p = xrealloc(p, 5000);
    REQUIRE(p != NULL, "realloc of __libc_malloc block");
    CHECK(tu_check(p, 100, 1) == (size_t)-1, "contents");
    la.free(p);
    p = xmalloc(300);
    REQUIRE(p != NULL, "");
    p = la.realloc(p, 70000);
    REQUIRE(p != NULL, "__libc_realloc");
    xfree(p);
    p = la.calloc(10, 100);
    REQUIRE(p != NULL, "__libc_calloc");
    CHECK(tu_all_zero(p, 1000), "__libc_calloc not zeroed");
    xfree(p);
    p = la.memalign(256, 1000);
    REQUIRE(p != NULL && tu_aligned(p, 256), "__libc_memalign -> %p", p);
    la.free(p);
    p = SENTINEL;
    CHECK(la.posix_memalign(&p, 4096, 10) == 0 && tu_aligned(p, 4096),
          "__posix_memalign");
    xfree(p);
    p = SENTINEL;
    CHECK(la.posix_memalign(&p, 24, 10) == EINVAL && p == SENTINEL,
          "__posix_memalign(24) must be EINVAL");
    errno = 0;
    p = la.malloc(SIZE_MAX);
    CHECK(p == NULL && errno == ENOMEM, "__libc_malloc(SIZE_MAX)");
    if (pool) {
        p = la.malloc(64);
        CHECK(mmpool_owns(p), "__libc_malloc block not served by the pool");
        la.free(p);
    }
}

/* Every standard name resolves, as the program sees it, to libmmpool. */
static void test_exports_interposed(void)
{
    static const char *const names[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
        "free_sized", "free_aligned_sized", "__libc_malloc", "__libc_free",
        "__libc_calloc", "__libc_realloc", "__libc_memalign", "__posix_memalign",
        "mmpool_malloc", "mmpool_calloc", "mmpool_realloc", "mmpool_free",
        "mmpool_aligned_alloc", "mmpool_usable_size", "mmpool_owns", "mmpool_version",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *owner = tu_symbol_owner(names[i]);
        CHECK(strstr(owner, "libmmpool") != NULL, "%s resolves to '%s', not libmmpool",
              names[i], owner);
    }
}

static void test_mmpool_twins(void)
{
    void *p = mmpool_malloc(100);
    REQUIRE(p != NULL, "mmpool_malloc(100)");
    CHECK(tu_aligned(p, 16), "mmpool_malloc alignment");
    CHECK(mmpool_usable_size(p) >= 100, "mmpool_usable_size");
    CHECK(mmpool_usable_size(p) == xusable(p), "mmpool_usable_size %zu != "
          "malloc_usable_size %zu", mmpool_usable_size(p), xusable(p));
    CHECK(mmpool_owns(p), "mmpool_owns(mmpool_malloc block) false");
    tu_fill(p, 100, 8);
    p = mmpool_realloc(p, 10000);
    REQUIRE(p != NULL, "");
    CHECK(tu_check(p, 100, 8) == (size_t)-1, "mmpool_realloc lost contents");
    xfree(p);                                   /* mixed: mmpool_malloc -> free */
    p = xmalloc(50);
    REQUIRE(p != NULL, "");
    mmpool_free(p);                             /* mixed: malloc -> mmpool_free */
    p = mmpool_calloc(7, 9);
    REQUIRE(p != NULL && tu_all_zero(p, 63), "mmpool_calloc");
    mmpool_free(p);
    p = mmpool_aligned_alloc(4096, 10);
    REQUIRE(p != NULL && tu_aligned(p, 4096), "mmpool_aligned_alloc(4096)");
    mmpool_free(p);
    p = mmpool_malloc(0);
    CHECK(p != NULL, "mmpool_malloc(0) returned NULL");
    mmpool_free(p);
    p = mmpool_malloc(10);
    REQUIRE(p != NULL, "");
    CHECK(mmpool_realloc(p, 0) == NULL, "mmpool_realloc(p, 0) should free and return NULL");
    mmpool_free(NULL);
    const char *v = mmpool_version();
    CHECK(v != NULL && v[0] != 0, "mmpool_version() empty");
}

/* A million live small blocks; each records its own index, so any
 * overlap or double hand-out shows as a wrong index. */
static void test_many_live_blocks(void)
{
    size_t n = tu_full ? (size_t)4 << 20 : (size_t)1 << 20;
    static const size_t sz[] = {16, 32, 48, 64, 100, 24, 8, 200};
    void **v = xmalloc(n * sizeof *v);
    REQUIRE(v != NULL, "");
    for (size_t i = 0; i < n; i++) {
        size_t s = sz[i % 8];
        v[i] = xmalloc(s);
        REQUIRE(v[i] != NULL, "malloc #%zu", i);
        memcpy(v[i], &i, sizeof i);
        if (s >= 16)
            memset((char *)v[i] + 8, (int)(i & 0xff), s - 8);
    }
    for (size_t i = 0; i < n; i++) {
        size_t got;
        memcpy(&got, v[i], sizeof got);
        if (got != i) {
            FAILF("block #%zu at %p holds index %zu: blocks overlap", i, v[i], got);
            break;
        }
    }
    tu_rng r;
    tu_rng_seed(&r, 99);
    tu_shuffle(v, n, &r);                      /* shuffle, then free */
    for (size_t i = 0; i < n; i++)
        xfree(v[i]);
    xfree(v);
}

/* A loop of malloc/free of ~1 MiB blocks (the large-block cache path). */
static void test_large_malloc_free_loop(void)
{
    long rss0 = tu_rss_kib();
    int iters = tu_full ? 50000 : 5000;
    for (int i = 0; i < iters; i++) {
        size_t n = MiB + (size_t)(i % 7) * 4096 + (size_t)(i % 3);
        unsigned char *p = xmalloc(n);
        REQUIRE(p != NULL, "malloc(%zu)", n);
        p[0] = 1;
        p[n / 2] = 2;
        p[n - 1] = 3;
        if (i % 64 == 0) {
            void *q = xmalloc(n * 3);
            REQUIRE(q != NULL, "");
            memset(q, 5, n * 3);
            xfree(q);
        }
        CHECK(p[0] == 1 && p[n / 2] == 2 && p[n - 1] == 3, "large block contents");
        xfree(p);
    }
    long grow = tu_rss_kib() - rss0;
    CHECK(grow < 128 * 1024, "RSS grew by %ld KiB in a malloc/free loop", grow);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    if (!tu_malloc_is_mmpool())
        printf("note: malloc is served by '%s', not libmmpool\n", tu_symbol_owner("malloc"));
    RUN(malloc_zero_unique);
    RUN(malloc_sizes_fill_usable);
    RUN(usable_size_neighbours);
    RUN(usable_size_null);
    RUN(malloc_enomem);
    RUN(calloc_zero);
    RUN(calloc_zero_after_reuse);
    RUN(calloc_overflow);
    RUN(calloc_zero_count);
    RUN(realloc_null_is_malloc);
    RUN(realloc_zero_frees);
    RUN(realloc_fail_keeps_block);
    RUN(realloc_preserves_contents);
    RUN(realloc_random_walk);
    RUN(reallocarray);
    RUN(free_null);
    RUN(free_preserves_errno);
    RUN(posix_memalign_einval);
    RUN(posix_memalign_enomem);
    RUN(posix_memalign_zero_size);
    RUN(aligned_every_alignment);
    RUN(aligned_alloc_odd_alignment);
    RUN(aligned_enomem);
    RUN(huge_alignment_enomem);
    RUN(valloc_page_aligned);
    RUN(pvalloc_rounds_to_pages);
    RUN(valloc_pvalloc_enomem);
    RUN(free_sized);
    RUN(libc_aliases);
    RUN(exports_interposed);
    RUN(mmpool_twins);
    RUN(many_live_blocks);
    RUN(large_malloc_free_loop);
    return tu_finish();
}
