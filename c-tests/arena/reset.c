/* c-tests/arena/reset.c -- mmpool_arena_reset: one block kept and reused,
 * resetting an empty arena, and many request-like cycles with flat memory
 * (held bytes and RSS). */
#include "arena.h"

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
    tu_rng r;
    tu_rng_seed(&r, 3);
    int cycles = tu_full ? 100000 : 10000;
    long rss0 = 0;
    size_t peak_held = 0;
    for (int c = 0; c < cycles; c++) {
        int n = 20 + (int)tu_below(&r, 200);
        for (int i = 0; i < n; i++) {
            size_t s = tu_below(&r, 50) ? 8 + (size_t)tu_below(&r, 500)
                                        : 5000 + (size_t)tu_below(&r, 60000);
            char *p = mmpool_arena_alloc(a, s);
            REQUIRE(p, "");
            p[0] = 1;
            p[s - 1] = 2;
        }
        if (tu_below(&r, 10) == 0) {
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
            rss0 = tu_rss_kib();
    }
    long rss1 = tu_rss_kib();
    CHECK(rss1 - rss0 < 32 * 1024, "RSS grew from %ld to %ld KiB over %d reset cycles", rss0,
          rss1, cycles);
    fprintf(stderr, "  reset_repeated_bounded: %d cycles, peak held %zu KiB, RSS %ld -> %ld KiB\n",
            cycles, peak_held / 1024, rss0, rss1);
    mmpool_arena_destroy(a);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(reset_keeps_one_block);
    RUN(reset_empty);
    RUN(reset_repeated_bounded);
    return tu_finish();
}
