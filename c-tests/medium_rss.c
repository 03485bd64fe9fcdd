/* c-tests/medium_rss.c -- medium blocks of wandering sizes share memory.
 *
 * A per-request pattern: 1 to 3 blocks of random sizes from 8 to 32 KiB,
 * each written whole, then all freed, 200,000 times; at most 96 KiB is
 * live at once.  Each medium size class keeps the pages of its own
 * high-water mark, so before a class could take a free block of a bigger
 * one (heap::medium's borrowing) the sixteen classes of this range grew
 * the peak RSS by 1.1 MiB on the default build and 2.4 MiB on the secure
 * one (glibc: 0.16 MiB); with it, 0.34-0.48 and 1.27-1.34 MiB.  The peak
 * must grow by at most 768 KiB (secure build: 2 MiB, its quarantine holds
 * freed blocks too).  The process is pinned to one CPU, so one per-CPU
 * heap serves it. */
#include "testutil.h"

#include <sched.h>

static void test_wandering_medium_sizes_share_pages(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &set);
    REQUIRE(sched_setaffinity(0, sizeof set, &set) == 0, "sched_setaffinity: %s",
            strerror(errno));
    mmpool_stats_t st;
    mmpool_stats_get(&st);
    long bound = st.secure ? 2048 : 768;
    xfree(xmalloc(100));
    long base = tu_hwm_kib();
    unsigned long long x = 88172645463325252ULL;
    for (int r = 0; r < 200000; r++) {
        void *p[3];
        int k = 1 + r % 3;
        for (int i = 0; i < k; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t n = 8192 + (size_t)(x % (24 * 1024));
            p[i] = xmalloc(n);
            REQUIRE(p[i] != NULL, "malloc(%zu)", n);
            memset(p[i], r & 0xff, n);
        }
        for (int i = 0; i < k; i++)
            xfree(p[i]);
    }
    long growth = tu_hwm_kib() - base;
    printf("  peak RSS grew by %ld KiB (bound %ld KiB)\n", growth, bound);
    CHECK(growth <= bound,
          "peak RSS grew by %ld KiB for at most 96 KiB live: each medium class keeps its "
          "own high-water mark (bound %ld KiB)",
          growth, bound);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(wandering_medium_sizes_share_pages);
    return tu_finish();
}
