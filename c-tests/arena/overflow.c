/* c-tests/arena/overflow.c -- overflowing sizes (SIZE_MAX and its
 * neighbours) given to every allocating call: NULL with ENOMEM, no change
 * to the statistics, live allocations intact, the arena still usable. */
#include "arena.h"

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
    tu_fill(keep, 100, 1);
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
    CHECK(tu_check(keep, 100, 1) == (size_t)-1, "live allocation damaged");
    void *q = mmpool_arena_alloc(a, 100);
    CHECK(q != NULL, "arena unusable after overflowing requests");
    mmpool_arena_destroy(a);
}

static void test_alloc_overflow(void) { overflow_case(0); }

static void test_nalloc_overflow(void) { overflow_case(1); }

static void test_calloc_overflow(void) { overflow_case(2); }

static void test_memalign_overflow(void) { overflow_case(3); }

static void test_memalign_overflow_big_alignment(void) { overflow_case(4); }

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(alloc_overflow);
    RUN(nalloc_overflow);
    RUN(calloc_overflow);
    RUN(memalign_overflow);
    RUN(memalign_overflow_big_alignment);
    return tu_finish();
}
