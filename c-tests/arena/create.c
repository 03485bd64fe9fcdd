/* c-tests/arena/create.c -- mmpool_arena_create and mmpool_arena_destroy:
 * a fresh arena's one block and counters, the block size clamped to
 * 512 B .. 64 MiB (and a quarter of it bumped), thousands of arenas
 * destroyed in random order. */
#include "arena.h"

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
        CHECK(p && tu_aligned(p, 16), "create(%zu): alloc(%zu) = %p", bs, small, p);
        if (p)
            tu_fill_pages(p, small, bs);
        CHECK(stats_of(a).large_blocks == 0, "create(%zu): %zu bytes should be bumped", bs,
              small);
        CHECK(p && mmpool_arena_free(a, p) == -1, "create(%zu): bumped block freed", bs);
        void *q = mmpool_arena_nalloc(a, 3);
        CHECK(q != NULL, "create(%zu): nalloc(3)", bs);
        CHECK(p && tu_check_pages(p, small, bs), "create(%zu): contents", bs);
        mmpool_arena_destroy(a);
    }
}

static void test_create_many_destroy_random(void)
{
    size_t n = tu_full ? 50000 : 5000;
    void **v = malloc(n * sizeof *v);
    REQUIRE(v != NULL, "");
    tu_rng r;
    tu_rng_seed(&r, 11);
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
    tu_shuffle(v, n, &r);
    for (size_t i = 0; i < n; i++)
        mmpool_arena_destroy(v[i]);
    free(v);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(create_default);
    RUN(create_block_size_clamped);
    RUN(create_many_destroy_random);
    return tu_finish();
}
