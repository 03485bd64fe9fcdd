/* c-tests/arena/stats.c -- mmpool_arena_stats: exact bytes_requested and
 * large_blocks through a random mix of calls, cleanups and children
 * counted, NULL arena and NULL output. */
#include "arena.h"

static void test_stats_consistency(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    tu_rng r;
    tu_rng_seed(&r, 42);
    size_t req = 0, large = 0;
    enum { CAP = 512 };
    void *lp[CAP];
    size_t ls[CAP];
    size_t nl = 0;
    for (int i = 0; i < 5000; i++) {
        uint64_t k = tu_below(&r, 100);
        size_t s;
        void *p;
        if (k < 70) {
            s = (size_t)tu_below(&r, 900);
            p = (i & 1) ? mmpool_arena_nalloc(a, s) : mmpool_arena_alloc(a, s);
        } else if (k < 85) {
            s = (size_t)tu_below(&r, 900);
            p = mmpool_arena_memalign(a, s, (size_t)1 << tu_below(&r, 9));
        } else if (k < 95 || nl == 0) {
            s = 1100 + (size_t)tu_below(&r, 40000);
            p = mmpool_arena_calloc(a, s);
            if (p && nl < CAP) {
                lp[nl] = p;
                ls[nl++] = s;
            }
            large++;
        } else {
            size_t j = (size_t)tu_below(&r, nl);
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

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(stats_consistency);
    RUN(stats_cleanups_children);
    RUN(stats_null_arena);
    RUN(stats_null_out);
    return tu_finish();
}
