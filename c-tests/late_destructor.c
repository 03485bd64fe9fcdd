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
 *                          the main thread's heap is left, and no more
 *                          slabs than a single thread needs
 *   late_blocks_freeable   the blocks the destructors left behind can be
 *                          freed by the main thread
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmpool.h"

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

static int failed;
#define CHECK(cond, name, ...)                                                                 \
    do {                                                                                       \
        if (cond)                                                                              \
            printf("ok %s\n", name);                                                           \
        else {                                                                                 \
            printf("FAIL %s: ", name);                                                         \
            printf(__VA_ARGS__);                                                               \
            printf("\n");                                                                      \
            failed++;                                                                          \
        }                                                                                      \
    } while (0)

int main(void)
{
    pthread_key_create(&key, dtor);
    for (int i = 0; i < 100; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0) {
            printf("FAIL setup: pthread_create\n");
            return 1;
        }
        pthread_join(t, NULL);
    }
    malloc_trim(0); /* also reclaims heaps of threads that are gone */
    mmpool_stats_t s;
    mmpool_stats_get(&s);
    size_t slabs = 0;
    for (size_t i = 0; i < s.num_classes; i++)
        slabs += s.classes[i].slabs;
    CHECK(s.threads_live == 1, "late_heaps_reclaimed", "threads_live %zu (want 1), seen %zu",
          s.threads_live, s.threads_seen);
    CHECK(slabs <= 8, "late_heaps_slabs", "%zu slabs held after 100 threads (want a handful)", slabs);
    for (size_t i = 0; i < nleft; i++) {
        if (!mmpool_owns(leftovers[i])) {
            CHECK(0, "late_blocks_freeable", "leftover %zu not a pool block", i);
            return 1;
        }
        free(leftovers[i]);
    }
    CHECK(nleft >= 100, "late_blocks_freeable", "%zu leftover blocks", nleft);
    printf("late_destructor: %s\n", failed ? "FAILED" : "all passed");
    return failed != 0;
}
