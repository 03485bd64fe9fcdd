/* c-tests/arena/memalign.c -- mmpool_arena_memalign: every power of two up
 * to 1 MiB (large blocks when the alignment or size is above a quarter
 * block, freeable), alignments below 16, alignments that are not powers of
 * two (EINVAL), huge alignments (ENOMEM or EINVAL, never a crash). */
#include "arena.h"

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
            CHECK(tu_aligned(p, al), "memalign(%zu, %zu) = %p", s, al, p);
            tu_fill(p, s, al + s);
            mmpool_arena_stats_t m = stats_of(a);
            CHECK(m.bytes_requested == b.bytes_requested + s,
                  "memalign(%zu, %zu): bytes_requested +%zu", s, al,
                  m.bytes_requested - b.bytes_requested);
            /* an alignment above a quarter block cannot be bumped */
            if (al > 4 * KiB || s > 4 * KiB) {
                CHECK(m.large_blocks == b.large_blocks + 1,
                      "memalign(%zu, %zu) should be a large block", s, al);
                CHECK(tu_check(p, s, al + s) == (size_t)-1, "");
                CHECK(mmpool_arena_free(a, p) == 0, "memalign(%zu, %zu) large not freed", s, al);
                mmpool_arena_stats_t f = stats_of(a);
                CHECK(f.large_blocks == b.large_blocks && f.bytes_held == b.bytes_held,
                      "after free of memalign(%zu, %zu): large %zu held %zu (before %zu)", s, al,
                      f.large_blocks, f.bytes_held, b.bytes_held);
            } else {
                CHECK(tu_check(p, s, al + s) == (size_t)-1, "");
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
            CHECK(p != NULL && tu_aligned(p, al), "memalign(%zu, %zu) = %p", s, al, p);
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
            CHECK(tu_aligned(p, al[i]), "memalign(16, %zu) = %p", al[i], p);
            CHECK(mmpool_arena_free(a, p) == 0, "");
        } else {
            CHECK(errno == ENOMEM || errno == EINVAL, "memalign(16, %zu): errno %d", al[i], errno);
        }
    }
    CHECK(mmpool_arena_alloc(a, 16) != NULL, "arena unusable after huge alignments");
    mmpool_arena_destroy(a);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(memalign_alignments);
    RUN(memalign_small_alignments);
    RUN(memalign_not_power_of_two);
    RUN(memalign_huge_alignment);
    return tu_finish();
}
