/* c-tests/arena/alloc.c -- mmpool_arena_alloc, _nalloc and _calloc: 16-byte
 * alignment, no overlap across blocks (every byte checked), size 0,
 * unaligned packing of nalloc, calloc zeroing memory reused after a reset
 * or a free, and arena memory being pool memory (mmpool_owns). */
#include "arena.h"

static void test_alloc_aligned_distinct(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    enum { N = 3000 };
    static void *p[N];
    static size_t sz[N];
    tu_rng r;
    tu_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        sz[i] = 1 + (size_t)tu_below(&r, i % 10 == 0 ? 3000 : 300);
        p[i] = mmpool_arena_alloc(a, sz[i]);
        REQUIRE(p[i] != NULL, "alloc(%zu) #%d errno %d", sz[i], i, errno);
        CHECK(tu_aligned(p[i], 16), "alloc(%zu) = %p not 16-aligned", sz[i], p[i]);
        tu_fill(p[i], sz[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        CHECK(tu_check(p[i], sz[i], (uint64_t)i) == (size_t)-1,
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
    CHECK(p == NULL || tu_aligned(p, 16), "alloc(0) = %p", p);
    CHECK(c == NULL || tu_aligned(c, 16), "calloc(0) = %p", c);
    CHECK(m == NULL || tu_aligned(m, 256), "memalign(0, 256) = %p", m);
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
    size_t n = tu_full ? 40000 : 8000;
    void **p = malloc(n * sizeof *p);
    size_t *sz = malloc(n * sizeof *sz);
    REQUIRE(p && sz, "");
    tu_rng r;
    tu_rng_seed(&r, 99);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = tu_below(&r, 100);
        size_t s;
        if (k < 60)
            s = 1 + (size_t)tu_below(&r, 128);
        else if (k < 90)
            s = 128 + (size_t)tu_below(&r, 1900);
        else if (k < 98)
            s = 2048 + (size_t)tu_below(&r, 6000);
        else
            s = 8192 + (size_t)tu_below(&r, 100000);
        void *q;
        switch (i % 4) {
        case 0: q = mmpool_arena_alloc(a, s); break;
        case 1: q = mmpool_arena_nalloc(a, s); break;
        case 2:
            q = mmpool_arena_calloc(a, s);
            if (q && !tu_all_zero(q, s))
                FAILF("calloc(%zu) not zeroed", s);
            break;
        default: q = mmpool_arena_memalign(a, s, (size_t)1 << tu_below(&r, 10)); break;
        }
        REQUIRE(q != NULL, "allocation #%zu of %zu bytes failed", i, s);
        p[i] = q;
        sz[i] = s;
        tu_fill_pages(q, s, i * 31 + 5);
    }
    for (size_t i = 0; i < n; i++)
        if (!tu_check_pages(p[i], sz[i], i * 31 + 5)) {
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
    CHECK(q && tu_aligned(q, 16), "alloc after nalloc = %p", q);
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
        CHECK(tu_aligned(p, 16), "calloc(%zu) = %p", sizes[i], (void *)p);
        CHECK(tu_all_zero(p, sizes[i]), "calloc(%zu) not zeroed", sizes[i]);
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
    int rounds = tu_full ? 2000 : 200;
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
        CHECK(tu_all_zero(z, 200), "round %d: calloc over reused memory not zeroed", r);
        for (int i = 0; i < 40; i++) {
            size_t s = 16 + (size_t)i * 17;
            unsigned char *q = mmpool_arena_calloc(a, s);
            REQUIRE(q, "");
            if (!tu_all_zero(q, s)) {
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
        CHECK(tu_all_zero(z, s), "calloc(%zu) after free not zeroed", s);
        memset(z, 0x77, s);
        mmpool_arena_reset(a);
    }
    mmpool_arena_destroy(a);
}

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

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(alloc_aligned_distinct);
    RUN(alloc_zero_size);
    RUN(alloc_mixed_no_overlap);
    RUN(nalloc_unaligned_packing);
    RUN(nalloc_strings);
    RUN(calloc_zeroes);
    RUN(calloc_zero_after_reset);
    RUN(calloc_large_zero_after_reuse);
    RUN(owns_arena_allocations);
    return tu_finish();
}
