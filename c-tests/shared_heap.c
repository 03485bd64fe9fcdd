/* c-tests/shared_heap.c -- medium blocks (1.25-64 KiB) come from per-CPU
 * heaps shared by all threads, not from the threads' own heaps.
 *
 * cross_thread_free_reused: blocks one thread allocates and another frees
 *   are reused by the main thread at once (no remote queue of an exited
 *   thread's heap keeps them), so the class grows no new slabs.
 * slabs_bounded_by_cpus: many threads, each with medium blocks live at
 *   once, exit: what stays is at most one slab per CPU (a per-thread
 *   design keeps one per thread heap, parked or not; the blocks each
 *   thread's medium cache kept went back at its exit), and malloc_trim
 *   gives those back too.
 * ping_pong: threads pass medium blocks of every medium class to each
 *   other through rings, checking contents, with realloc moves between
 *   medium and small sizes; afterwards nothing of those classes is left.
 *
 * The sizes are chosen away from 4 KiB and 8 KiB blocks: stdio's buffers
 * live in those classes. */
#include "testutil.h"

static size_t ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_CONF);
    return n < 1 ? 1 : (size_t)n;
}

/* ---- cross_thread_free_reused ---- */

enum { XN = 600, XSIZE = 3000 };
static void *xblocks[XN];

static void *x_alloc(void *arg)
{
    (void)arg;
    for (int i = 0; i < XN; i++) {
        xblocks[i] = xmalloc(XSIZE);
        if (!xblocks[i])
            return (void *)1;
        tu_fill(xblocks[i], XSIZE, (uint64_t)i);
    }
    return NULL;
}

static void *x_free(void *arg)
{
    (void)arg;
    for (int i = 0; i < XN; i++) {
        if (tu_check(xblocks[i], XSIZE, (uint64_t)i) != (size_t)-1)
            return (void *)1;
        xfree(xblocks[i]);
    }
    return NULL;
}

static void *run_thread(void *(*fn)(void *))
{
    pthread_t t;
    void *ret = (void *)1;
    if (pthread_create(&t, NULL, fn, NULL) != 0)
        return ret;
    pthread_join(t, &ret);
    return ret;
}

static void test_cross_thread_free_reused(void)
{
    malloc_trim(0);
    size_t before = tu_class_slabs(2561, 3072);
    CHECK(before == 0, "%zu slabs of 3 KiB blocks before the test", before);
    REQUIRE(run_thread(x_alloc) == NULL, "allocating thread failed");
    size_t peak = tu_class_slabs(2561, 3072);
    CHECK(peak >= 1, "600 blocks of 3000 B live but no slab of their class");
    REQUIRE(run_thread(x_free) == NULL, "freeing thread found a block corrupted");
    /* Both threads are gone; the main thread (its own heap all along)
       allocates as many again. */
    REQUIRE(x_alloc(NULL) == NULL, "allocation failed");
    size_t again = tu_class_slabs(2561, 3072);
    CHECK(again <= peak + 1, "the blocks freed by another thread were not reused: %zu slabs "
          "of 3 KiB blocks, %zu at the first peak", again, peak);
    REQUIRE(run_thread(x_free) == NULL, "freeing thread found a block corrupted");
    malloc_trim(0);
    size_t after = tu_class_slabs(2561, 3072);
    CHECK(after == 0, "%zu slabs of 3 KiB blocks left after every block was freed and "
          "malloc_trim", after);
}

/* ---- slabs_bounded_by_cpus ---- */

enum { BT = 16, BPER = 4, BSIZE = 6000 };
static pthread_barrier_t b_all;

static void *b_thread(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    void *v[BPER];
    int bad = 0;
    /* a small block first: the thread gets a heap of its own, and with it
       a medium cache that must go back when the thread exits */
    char *small = xmalloc(64);
    if (!small)
        bad = 1;
    for (int i = 0; i < BPER; i++) {
        v[i] = xmalloc(BSIZE);
        if (!v[i])
            bad = 1;
        else
            tu_fill(v[i], BSIZE, id * 16 + (uint64_t)i);
    }
    pthread_barrier_wait(&b_all); /* all blocks of all threads live at once */
    for (int i = 0; i < BPER; i++) {
        if (v[i] && tu_check(v[i], BSIZE, id * 16 + (uint64_t)i) != (size_t)-1)
            bad = 1;
        xfree(v[i]);
    }
    xfree(small);
    return bad ? (void *)1 : NULL;
}

static void test_slabs_bounded_by_cpus(void)
{
    malloc_trim(0);
    REQUIRE(pthread_barrier_init(&b_all, NULL, BT) == 0, "");
    pthread_t t[BT];
    for (int i = 0; i < BT; i++)
        REQUIRE(pthread_create(&t[i], NULL, b_thread, (void *)(uintptr_t)i) == 0, "");
    for (int i = 0; i < BT; i++) {
        void *ret = NULL;
        pthread_join(t[i], &ret);
        CHECK(ret == NULL, "thread %d: allocation failed or block corrupted", i);
    }
    pthread_barrier_destroy(&b_all);
    size_t cpus = ncpus() < 64 ? ncpus() : 64;
    size_t left = tu_class_slabs(5121, 6144);
    CHECK(left <= cpus, "%d threads exited with their 6000 B blocks freed, but %zu slabs of "
          "that class stay (at most one per CPU, %zu CPUs, expected)", BT, left, cpus);
    mmpool_stats_t s;
    mmpool_stats_get(&s);
    CHECK(s.shared_heaps >= 1 && s.shared_heaps <= cpus, "%zu per-CPU heaps on %zu CPUs",
          s.shared_heaps, cpus);
    malloc_trim(0);
    left = tu_class_slabs(5121, 6144);
    CHECK(left == 0, "malloc_trim left %zu empty slabs of 6000 B blocks", left);
}

/* ---- ping_pong ---- */

enum { PT = 4, RING = 256 };

typedef struct {
    pthread_mutex_t mu;
    void *p[RING];
    size_t n[RING];
    uint64_t seed[RING];
    size_t head, tail;
} ring_t;

static ring_t rings[PT];

/* A medium size, or now and then a small one (realloc crosses the line). */
static size_t pp_size(tu_rng *r)
{
    switch (tu_below(r, 8)) {
    case 0: return 100 + tu_below(r, 900);      /* small */
    case 1: return 9000 + tu_below(r, 23000);   /* 16 and 32 KiB classes */
    default: return 1100 + tu_below(r, 2900);   /* 1.25-4 KiB classes, not 4 KiB itself */
    }
}

static void *pp_thread(void *arg)
{
    int id = (int)(uintptr_t)arg;
    tu_rng r;
    tu_rng_seed(&r, 1234 + (uint64_t)id);
    int rounds = tu_full ? 200000 : 20000;
    long bad = 0;
    for (int k = 0; k < rounds; k++) {
        /* take one from our ring (put there by the previous thread) */
        ring_t *in = &rings[id];
        void *p = NULL;
        size_t n = 0;
        uint64_t seed = 0;
        pthread_mutex_lock(&in->mu);
        if (in->tail < in->head) {
            size_t i = in->tail++ % RING;
            p = in->p[i], n = in->n[i], seed = in->seed[i];
        }
        pthread_mutex_unlock(&in->mu);
        if (p) {
            if (tu_check(p, n, seed) != (size_t)-1)
                bad++;
            if (tu_below(&r, 4) == 0) {
                size_t m = pp_size(&r);
                p = xrealloc(p, m);
                if (!p) {
                    bad++;
                    continue;
                }
                if (tu_check(p, n < m ? n : m, seed) != (size_t)-1)
                    bad++;
                tu_fill(p, m, seed);
                n = m;
            } else {
                xfree(p);
                p = NULL;
            }
        }
        if (!p) {
            n = pp_size(&r);
            seed = ((uint64_t)id << 40) | (uint64_t)k;
            p = xmalloc(n);
            if (!p) {
                bad++;
                continue;
            }
            tu_fill(p, n, seed);
        }
        /* hand it to the next thread, or free it here if its ring is full */
        ring_t *out = &rings[(id + 1) % PT];
        pthread_mutex_lock(&out->mu);
        if (out->head - out->tail < RING) {
            size_t i = out->head++ % RING;
            out->p[i] = p, out->n[i] = n, out->seed[i] = seed;
            p = NULL;
        }
        pthread_mutex_unlock(&out->mu);
        xfree(p);
    }
    return (void *)(uintptr_t)(bad != 0);
}

static void test_ping_pong(void)
{
    for (int i = 0; i < PT; i++) {
        pthread_mutex_init(&rings[i].mu, NULL);
        rings[i].head = rings[i].tail = 0;
    }
    pthread_t t[PT];
    for (int i = 0; i < PT; i++)
        REQUIRE(pthread_create(&t[i], NULL, pp_thread, (void *)(uintptr_t)i) == 0, "");
    for (int i = 0; i < PT; i++) {
        void *ret = NULL;
        pthread_join(t[i], &ret);
        CHECK(ret == NULL, "thread %d found a block corrupted or an allocation failed", i);
    }
    for (int i = 0; i < PT; i++) {
        ring_t *g = &rings[i];
        for (; g->tail < g->head; g->tail++) {
            size_t j = g->tail % RING;
            CHECK(tu_check(g->p[j], g->n[j], g->seed[j]) == (size_t)-1, "block left in a "
                  "ring corrupted");
            xfree(g->p[j]);
        }
    }
    malloc_trim(0);
    size_t left = tu_class_slabs(1025, 4095) + tu_class_slabs(8193, 32768);
    CHECK(left == 0, "%zu slabs of the medium classes used left after every block was freed",
          left);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(cross_thread_free_reused);
    RUN(slabs_bounded_by_cpus);
    RUN(ping_pong);
    return tu_finish();
}
