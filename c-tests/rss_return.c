/* c-tests/rss_return.c -- freed memory goes back to the OS.
 *
 * Each case touches a few hundred MiB, frees it all, then samples RSS
 * for up to 3 seconds (until it is back within 16 MiB of where it
 * started) while doing a little malloc/free, so a purge that runs after a
 * delay, on a later call, gets its chance.  It passes when RSS is back
 * within 96 MiB of where it started (room for a bounded cache of freed
 * blocks; a leak of the freed memory is 128-256 MiB).  Bookkeeping arrays
 * are mmap'd so they do not count against the allocator. */
#include "testutil.h"

#define TARGET_KIB (16L * 1024)
#define SLACK_KIB (96L * 1024)

static void **map_array(size_t n)
{
    void *m = mmap(NULL, n * sizeof(void *), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : (void **)m;
}

static void unmap_array(void **a, size_t n)
{
    munmap(a, n * sizeof(void *));
}

/* Waits up to 3 s for RSS <= limit; returns the last RSS seen. */
static long settle(long limit)
{
    long rss = tu_rss_kib();
    double t0 = tu_now();
    while (rss > limit && tu_now() - t0 < 3.0) {
        for (int i = 0; i < 100; i++) {
            void *p = xmalloc((size_t)(i * 40 + 16));
            xfree(p);
        }
        usleep(10000);
        rss = tu_rss_kib();
    }
    return rss;
}

static void check_returned(const char *what, long base, long peak)
{
    long rss = settle(base + TARGET_KIB);
    printf("  %s: RSS base %ld KiB, with blocks %ld KiB, after free %ld KiB\n", what, base,
           peak, rss);
    CHECK(rss <= base + SLACK_KIB, "%s: RSS %ld KiB after freeing everything, started at "
          "%ld KiB (peak %ld KiB): freed memory is not returned", what, rss, base, peak);
}

static void test_large_blocks_returned(void)
{
    enum { N = 64 };
    void *v[N];
    long base = tu_rss_kib();
    for (int i = 0; i < N; i++) {
        size_t n = 4 * MiB + (size_t)i * 4096;
        v[i] = xmalloc(n);
        REQUIRE(v[i] != NULL, "malloc(%zu)", n);
        memset(v[i], 1, n);
    }
    long peak = tu_rss_kib();
    for (int i = 0; i < N; i++)
        xfree(v[i]);
    check_returned("64 x 4 MiB", base, peak);
}

static void small_blocks(bool shuffle, size_t size, const char *what)
{
    size_t n = (256 * MiB) / size;
    void **v = map_array(n);
    REQUIRE(v != NULL, "mmap");
    long base = tu_rss_kib();
    for (size_t i = 0; i < n; i++) {
        v[i] = xmalloc(size);
        REQUIRE(v[i] != NULL, "malloc(%zu)", size);
        memset(v[i], 2, size);
    }
    long peak = tu_rss_kib();
    if (shuffle) {
        tu_rng r;
        tu_rng_seed(&r, 5);
        tu_shuffle(v, n, &r);
    }
    for (size_t i = 0; i < n; i++)
        xfree(v[i]);
    unmap_array(v, n);
    check_returned(what, base, peak);
}

static void test_small_blocks_returned(void)
{
    small_blocks(false, 64, "256 MiB of 64-byte blocks");
}

static void test_small_blocks_returned_random_order(void)
{
    small_blocks(true, 48, "256 MiB of 48-byte blocks, random free order");
}

static void test_medium_blocks_returned(void)
{
    small_blocks(true, 3000, "256 MiB of 3000-byte blocks, random free order");
}

typedef struct {
    void **v;
    size_t n, size;
    bool free_them;
} th_arg;

static void *alloc_thread(void *a)
{
    th_arg *t = a;
    for (size_t i = 0; i < t->n; i++) {
        t->v[i] = xmalloc(t->size);
        if (!t->v[i])
            return (void *)1;
        memset(t->v[i], 3, t->size);
    }
    if (t->free_them)
        for (size_t i = 0; i < t->n; i++)
            xfree(t->v[i]);
    return NULL;
}

static void thread_case(bool thread_frees, const char *what)
{
    th_arg t = {NULL, (128 * MiB) / 80, 80, thread_frees};
    t.v = map_array(t.n);
    REQUIRE(t.v != NULL, "mmap");
    long base = tu_rss_kib();
    pthread_t th;
    void *ret = NULL;
    REQUIRE(pthread_create(&th, NULL, alloc_thread, &t) == 0, "");
    pthread_join(th, &ret);
    REQUIRE(ret == NULL, "malloc failed in the thread");
    long peak = tu_hwm_kib();
    if (!thread_frees)
        for (size_t i = 0; i < t.n; i++)
            xfree(t.v[i]);
    unmap_array(t.v, t.n);
    check_returned(what, base, peak);
}

static void test_exited_thread_memory_returned(void)
{
    thread_case(true, "128 MiB freed by its thread, which exits");
}

static void test_blocks_of_exited_thread_freed_by_main(void)
{
    thread_case(false, "128 MiB of an exited thread, freed by main");
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(large_blocks_returned);
    RUN(small_blocks_returned);
    RUN(small_blocks_returned_random_order);
    RUN(medium_blocks_returned);
    RUN(exited_thread_memory_returned);
    RUN(blocks_of_exited_thread_freed_by_main);
    return tu_finish();
}
