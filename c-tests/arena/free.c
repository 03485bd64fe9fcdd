/* c-tests/arena/free.c -- large blocks and mmpool_arena_free: the quarter
 * block threshold, large blocks freed (once, by their own arena only),
 * bumped blocks and pointers the arena does not own declined, O(1) frees
 * in random order, interleaved large allocations and frees with exact
 * counters. */
#include "arena.h"

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

static void test_free_large(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    void *p = mmpool_arena_alloc(a, 100000);
    REQUIRE(p, "");
    tu_fill(p, 100000, 3);
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
        tu_fill(p, s, s);
        mmpool_arena_stats_t b = stats_of(a);
        CHECK(mmpool_arena_free(a, p) == -1, "bumped alloc(%zu) accepted by free", s);
        void *q = mmpool_arena_nalloc(a, s);
        REQUIRE(q, "");
        CHECK(mmpool_arena_free(a, q) == -1, "bumped nalloc(%zu) accepted by free", s);
        mmpool_arena_stats_t m = stats_of(a);
        CHECK(m.large_blocks == 0 && m.bytes_requested == b.bytes_requested + s,
              "declined frees changed the stats");
        CHECK(tu_check(p, s, s) == (size_t)-1, "bumped block damaged by a declined free");
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
    tu_fill(pb, 100000, 8);
    CHECK(mmpool_arena_free(a, pb) == -1, "arena a freed arena b's block");
    CHECK(stats_of(a).large_blocks == 1 && stats_of(b).large_blocks == 1, "");
    CHECK(tu_check(pb, 100000, 8) == (size_t)-1, "b's block damaged");
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
    size_t n = tu_full ? 400000 : 100000;
    mmpool_arena_t *a = mmpool_arena_create(512); /* large above ~120 B */
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    void **v = malloc(n * sizeof *v);
    REQUIRE(v, "");
    tu_rng r;
    tu_rng_seed(&r, 1234);
    size_t total = 0;
    double t0 = tu_now();
    for (size_t i = 0; i < n; i++) {
        size_t s = 128 + (size_t)tu_below(&r, 385);
        uint64_t *p = mmpool_arena_alloc(a, s);
        REQUIRE(p, "alloc #%zu", i);
        p[0] = i;
        p[s / 8 - 1] = ~(uint64_t)i;
        v[i] = p;
        total += s;
    }
    double t1 = tu_now();
    mmpool_arena_stats_t m = stats_of(a);
    CHECK(m.large_blocks == n, "large_blocks %zu, want %zu", m.large_blocks, n);
    CHECK(m.bytes_requested == total, "bytes_requested %zu, want %zu", m.bytes_requested, total);
    CHECK(m.bytes_held >= b.bytes_held + total, "bytes_held %zu < %zu", m.bytes_held,
          b.bytes_held + total);
    CHECK(m.blocks == 1, "large allocations should not add bump blocks (%zu)", m.blocks);
    tu_shuffle(v, n, &r);
    double t2 = tu_now();
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (mmpool_arena_free(a, v[i]) != 0)
            bad++;
    double t3 = tu_now();
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
    tu_rng r;
    tu_rng_seed(&r, 77);
    int ops = tu_full ? 400000 : 40000;
    size_t base_held = stats_of(a).bytes_held;
    for (int op = 0; op < ops; op++) {
        if (nl < CAP && (nl == 0 || tu_below(&r, 100) < 55)) {
            size_t s = 300 + (size_t)tu_below(&r, tu_below(&r, 10) ? 3000 : 300000);
            void *p = mmpool_arena_alloc(a, s);
            REQUIRE(p, "");
            lkey[nl] = (uint64_t)op;
            tu_fill_pages(p, s, lkey[nl]);
            live[nl] = p;
            lsz[nl++] = s;
        } else {
            size_t i = (size_t)tu_below(&r, nl);
            if (!tu_check_pages(live[i], lsz[i], lkey[i]))
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

int main(int argc, char **argv)
{
    arena_init(argc, argv);
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
    return tu_finish();
}
