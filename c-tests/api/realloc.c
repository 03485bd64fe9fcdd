/* c-tests/api/realloc.c -- realloc's and reallocarray's edge cases (glibc
 * semantics): NULL and 0 arguments, failures that keep the block,
 * contents kept across every size range, overflowing products. */
#include "api.h"

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

/* A medium block lent by a bigger class (a free 30000-byte block serves
 * an 11000-byte request before fresh pages are touched: heap::medium's
 * loans) stays in place when realloc keeps or grows its size within the
 * block, and moves when it shrinks below half of it (the big block is
 * released). While the rule was "at least half the room" alone, every
 * realloc of such a block copied it. */
static void test_realloc_lent_block_in_place(void)
{
    mmpool_stats_t st;
    mmpool_stats_get(&st);
    if (st.secure) {
        SKIP("the secure build quarantines freed blocks: no loan right after a free");
        return;
    }
    malloc_trim(0); /* the thread's medium cache holds nothing now */
    void *big = xmalloc(30000);
    xfree(big);
    unsigned char *p = xmalloc(11000);
    REQUIRE(p == big, "11000 bytes did not borrow the free 30000-byte block (%p, freed %p)",
            (void *)p, big);
    tu_fill(p, 11000, 31);
    unsigned char *q = xrealloc(p, 11000);
    CHECK(q == p, "realloc to the same size moved the block (%p -> %p)", (void *)p, (void *)q);
    q = xrealloc(q, 11500);
    CHECK(q == p, "realloc growing within the block moved it (%p -> %p)", (void *)p, (void *)q);
    CHECK(tu_check(q, 11000, 31) == (size_t)-1, "contents lost in place");
    unsigned char *r = xrealloc(q, 3000);
    CHECK(r != NULL && r != q, "a shrink to 3000 bytes kept the 30000-byte block");
    if (r)
        CHECK(tu_check(r, 3000, 31) == (size_t)-1, "contents lost by the move");
    xfree(r ? r : q);
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

int main(int argc, char **argv)
{
    api_init(argc, argv);
    RUN(realloc_null_is_malloc);
    RUN(realloc_zero_frees);
    RUN(realloc_fail_keeps_block);
    RUN(realloc_preserves_contents);
    RUN(realloc_random_walk);
    RUN(realloc_lent_block_in_place);
    RUN(reallocarray);
    return tu_finish();
}
