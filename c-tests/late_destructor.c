/*
 * late_destructor: memory of threads whose pthread-key destructors keep
 * allocating until glibc's last destructor round is reclaimed.
 *
 * glibc runs key destructors at most PTHREAD_DESTRUCTOR_ITERATIONS (4)
 * rounds. A destructor that allocates and re-arms itself every round gives
 * the thread a heap after mmpool's own exit destructor ran for the last
 * time; mmpool must still abandon that heap once the thread is gone.
 *
 * Cases:
 *   late_heaps_reclaimed   100 such threads, then malloc_trim(0): only
 *                          the main thread's heap is left
 *   late_heaps_slabs       and no more slabs than a single thread needs
 *   late_blocks_freeable   the blocks the destructors left behind can be
 *                          freed by the main thread
 */
#include "testutil.h"

static pthread_key_t key;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *leftovers[4096];
static size_t nleft;

static void dtor(void *v)
{
    free(v);
    void *n = malloc(40);
    memset(n, 0x5a, 40);
    pthread_mutex_lock(&lock);
    if (nleft < sizeof leftovers / sizeof *leftovers)
        leftovers[nleft++] = malloc(24); /* a block allocated in a late round */
    pthread_mutex_unlock(&lock);
    pthread_setspecific(key, n); /* re-arm: glibc gives up after 4 rounds */
}

static void *thread_main(void *arg)
{
    (void)arg;
    pthread_setspecific(key, malloc(40));
    return NULL;
}

/* The 100 threads, then malloc_trim(0) and a statistics snapshot: made
 * once, by the first case (nothing is printed before the snapshot). */
static bool threads_ran;
static mmpool_stats_t stats;
static size_t slabs;

static bool run_threads(void)
{
    static bool done;
    if (done)
        return threads_ran;
    done = true;
    pthread_key_create(&key, dtor);
    for (int i = 0; i < 100; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0)
            return false;
        pthread_join(t, NULL);
    }
    /* malloc_trim also reclaims the heaps of threads that are gone. A
     * joined thread can still exist for a moment (the kernel wakes the
     * joiner before it releases the thread): ask again while one is
     * counted live, for at most a second. */
    for (int tries = 0; tries < 100; tries++) {
        malloc_trim(0);
        mmpool_stats_get(&stats);
        if (stats.threads_live == 1)
            break;
        usleep(10 * 1000);
    }
    for (size_t i = 0; i < stats.num_classes; i++)
        slabs += stats.classes[i].slabs;
    threads_ran = true;
    return true;
}

static void test_late_heaps_reclaimed(void)
{
    REQUIRE(run_threads(), "pthread_create");
    CHECK(stats.threads_live == 1, "threads_live %zu (want 1), seen %zu", stats.threads_live,
          stats.threads_seen);
}

static void test_late_heaps_slabs(void)
{
    REQUIRE(run_threads(), "pthread_create");
    CHECK(slabs <= 8, "%zu slabs held after 100 threads (want a handful)", slabs);
}

static void test_late_blocks_freeable(void)
{
    REQUIRE(run_threads(), "pthread_create");
    for (size_t i = 0; i < nleft; i++) {
        REQUIRE(mmpool_owns(leftovers[i]), "leftover %zu not a pool block", i);
        free(leftovers[i]);
    }
    CHECK(nleft >= 100, "%zu leftover blocks", nleft);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(late_heaps_reclaimed);
    RUN(late_heaps_slabs);
    RUN(late_blocks_freeable);
    return tu_finish();
}
