/* c-tests/thread_exit.c -- allocation at and after thread exit.
 *
 * key_destructor_allocates: pthread keys created by the program after the
 *   pool initialised run their destructors after the pool's own thread
 *   exit hook (keys are destroyed in index order); those destructors
 *   free, malloc and re-arm themselves (several destructor rounds).
 * many_keys: more than 32 keys (pthread_setspecific then calls calloc
 *   for its second-level array) with destructors that free.
 * detached_threads: detached threads allocate and exit while the main
 *   thread keeps allocating.
 * pthread_exit_nested: pthread_exit from deep inside with live blocks.
 * atexit_and_destructor: an atexit handler and a destructor function free
 *   blocks of exited threads and allocate (checked through the exit
 *   status of a child).
 * parked_heap: an exited thread's heap is parked with its slabs, the next
 *   new thread takes it over (no new heap is made), frees of its blocks
 *   from other threads land there, and malloc_trim and the one-second
 *   expiry give parked heaps up.
 * parked_heap_keeps_current_slabs: a heap is parked with its current
 *   slabs only; its other slabs with live blocks are abandoned, so a live
 *   thread short of their class takes them over instead of new slabs.
 * park_trim_race: threads exit leaving blocks that another thread frees
 *   while the main thread keeps giving parked heaps up (malloc_trim): no
 *   block may be lost, so afterwards no slab of the sizes used is left.
 * remote_free_retry: remote frees racing with heaps being given up and
 *   their slabs adopted: no false double-free report (see the case). */
#include "testutil.h"

enum { NKEYS = 40 };

static pthread_key_t late_key;
static pthread_key_t keys[NKEYS];
static pthread_mutex_t leftover_lock = PTHREAD_MUTEX_INITIALIZER;
static void *leftover[4096];
static int nleftover;
static volatile int dtor_calls, dtor_errors;

static void keep_for_main(void *p)
{
    pthread_mutex_lock(&leftover_lock);
    if (nleftover < 4096)
        leftover[nleftover++] = p;
    else
        xfree(p);
    pthread_mutex_unlock(&leftover_lock);
}

typedef struct {
    int round;
    char payload[100];
} armed;

static void late_dtor(void *v)
{
    armed *a = v;
    __atomic_add_fetch(&dtor_calls, 1, __ATOMIC_RELAXED);
    if (tu_check(a->payload, sizeof a->payload, (uint64_t)a->round) != (size_t)-1)
        __atomic_add_fetch(&dtor_errors, 1, __ATOMIC_RELAXED);
    int round = a->round;
    xfree(a);
    /* allocate after the pool's own exit hook may have run */
    for (int i = 0; i < 20; i++) {
        void *p = xmalloc((size_t)(i * 50 + 1));
        if (!p) {
            __atomic_add_fetch(&dtor_errors, 1, __ATOMIC_RELAXED);
            return;
        }
        memset(p, i, (size_t)(i * 50 + 1));
        if (i % 5 == 0)
            keep_for_main(p);
        else
            xfree(p);
    }
    if (round < 2) {             /* re-arm: the destructor runs again */
        armed *b = xmalloc(sizeof *b);
        if (!b) {
            __atomic_add_fetch(&dtor_errors, 1, __ATOMIC_RELAXED);
            return;
        }
        b->round = round + 1;
        tu_fill(b->payload, sizeof b->payload, (uint64_t)b->round);
        pthread_setspecific(late_key, b);
    }
}

static void *late_thread(void *arg)
{
    (void)arg;
    void *v[32];
    for (int i = 0; i < 32; i++)
        v[i] = xmalloc((size_t)(i * 16 + 8));
    armed *a = xmalloc(sizeof *a);
    if (!a)
        return (void *)1;
    a->round = 0;
    tu_fill(a->payload, sizeof a->payload, 0);
    pthread_setspecific(late_key, a);
    for (int i = 0; i < 32; i += 2)
        xfree(v[i]);
    for (int i = 1; i < 32; i += 2)
        keep_for_main(v[i]);
    return NULL;
}

static void free_leftovers(void)
{
    pthread_mutex_lock(&leftover_lock);
    for (int i = 0; i < nleftover; i++)
        xfree(leftover[i]);
    nleftover = 0;
    pthread_mutex_unlock(&leftover_lock);
}

static void test_key_destructor_allocates(void)
{
    /* make sure the pool is initialised before the key is created */
    xfree(xmalloc(1));
    REQUIRE(pthread_key_create(&late_key, late_dtor) == 0, "pthread_key_create");
    dtor_calls = 0;
    dtor_errors = 0;
    int n = tu_full ? 500 : 100;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        void *ret = NULL;
        REQUIRE(pthread_create(&t, NULL, late_thread, NULL) == 0, "");
        pthread_join(t, &ret);
        CHECK(ret == NULL, "thread allocation failed");
        free_leftovers();
    }
    CHECK(dtor_errors == 0, "%d errors in key destructors", dtor_errors);
    CHECK(dtor_calls == 3 * n, "%d destructor calls, want %d", dtor_calls, 3 * n);
    pthread_key_delete(late_key);
}

static void many_dtor(void *v)
{
    size_t k;
    memcpy(&k, v, sizeof k);
    if (k >= NKEYS)
        __atomic_add_fetch(&dtor_errors, 1, __ATOMIC_RELAXED);
    xfree(v);
    __atomic_add_fetch(&dtor_calls, 1, __ATOMIC_RELAXED);
}

static void *many_thread(void *arg)
{
    (void)arg;
    for (size_t k = 0; k < NKEYS; k++) {
        void *v = xmalloc(24 + k);
        if (!v)
            return (void *)1;
        memcpy(v, &k, sizeof k);
        if (pthread_setspecific(keys[k], v) != 0)
            return (void *)2;
    }
    return NULL;
}

static void test_many_keys(void)
{
    for (int k = 0; k < NKEYS; k++)
        REQUIRE(pthread_key_create(&keys[k], many_dtor) == 0, "pthread_key_create #%d", k);
    dtor_calls = 0;
    dtor_errors = 0;
    int n = tu_full ? 1000 : 200;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        void *ret = NULL;
        REQUIRE(pthread_create(&t, NULL, many_thread, NULL) == 0, "");
        pthread_join(t, &ret);
        CHECK(ret == NULL, "thread: %s", ret == (void *)1 ? "malloc" : "setspecific");
    }
    CHECK(dtor_errors == 0 && dtor_calls == n * NKEYS, "%d destructor calls (want %d), "
          "%d errors", dtor_calls, n * NKEYS, dtor_errors);
    for (int k = 0; k < NKEYS; k++)
        pthread_key_delete(keys[k]);
}

static volatile int detached_left;

static void *detached_thread(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    void *v[64];
    for (int i = 0; i < 64; i++) {
        v[i] = xmalloc((size_t)((i * 13 + (int)id) % 2000 + 1));
        if (v[i])
            memset(v[i], 1, (size_t)((i * 13 + (int)id) % 2000 + 1));
    }
    for (int i = 0; i < 64; i++)
        if (i % 4)
            xfree(v[i]);
        else if (v[i])
            keep_for_main(v[i]);
    __atomic_sub_fetch(&detached_left, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_detached_threads(void)
{
    int n = tu_full ? 5000 : 500;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    detached_left = n;
    void *mine[256] = {0};
    for (int i = 0; i < n; i++) {
        pthread_t t;
        int rc;
        while ((rc = pthread_create(&t, &attr, detached_thread, (void *)(uintptr_t)i)) ==
               EAGAIN)
            sched_yield();
        REQUIRE(rc == 0, "pthread_create: %s", strerror(rc));
        int j = i % 256;
        xfree(mine[j]);
        mine[j] = xmalloc((size_t)(i % 500 + 1));
        if (i % 64 == 0)
            free_leftovers();
    }
    double t0 = tu_now();
    while (__atomic_load_n(&detached_left, __ATOMIC_ACQUIRE) > 0 && tu_now() - t0 < 60)
        usleep(1000);
    CHECK(detached_left == 0, "%d detached threads did not finish", detached_left);
    usleep(20000);          /* let the last ones run their exit hooks */
    free_leftovers();
    for (int j = 0; j < 256; j++)
        xfree(mine[j]);
    pthread_attr_destroy(&attr);
}

static void nested_exit(int depth, void **keep)
{
    if (depth > 15)
        return;
    void *p = xmalloc((size_t)depth * 100 + 1);
    if (p)
        memset(p, depth, (size_t)depth * 100 + 1);
    keep[depth] = p;
    if (depth == 15)
        pthread_exit(NULL);
    else
        nested_exit(depth + 1, keep);
}

static void *exit_thread(void *arg)
{
    nested_exit(0, arg);
    return (void *)1;
}

static void test_pthread_exit_nested(void)
{
    for (int i = 0; i < 100; i++) {
        void *keep[16] = {0};
        pthread_t t;
        void *ret = (void *)2;
        REQUIRE(pthread_create(&t, NULL, exit_thread, keep) == 0, "");
        pthread_join(t, &ret);
        CHECK(ret == NULL, "pthread_exit value");
        for (int d = 0; d < 16; d++) {
            CHECK(keep[d] != NULL, "malloc before pthread_exit");
            xfree(keep[d]);
        }
    }
}

/* ---- atexit / destructor, in a child so the exit status tells ---- */

static void *ae_blocks[64];

static void *ae_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 64; i++) {
        ae_blocks[i] = xmalloc((size_t)(i * 30 + 1));
        if (ae_blocks[i])
            tu_fill(ae_blocks[i], (size_t)(i * 30 + 1), (uint64_t)i);
    }
    return NULL;
}

static void ae_handler(void)
{
    for (int i = 0; i < 64; i++) {
        if (!ae_blocks[i] ||
            tu_check(ae_blocks[i], (size_t)(i * 30 + 1), (uint64_t)i) != (size_t)-1)
            _exit(40);
        xfree(ae_blocks[i]);
    }
    for (int i = 0; i < 100; i++) {
        void *p = xmalloc((size_t)i * 77 + 5);
        if (!p)
            _exit(41);
        xfree(p);
    }
    /* leave one allocated on purpose */
    if (!xmalloc(33))
        _exit(42);
}

static void atexit_child(void *arg)
{
    (void)arg;
    pthread_t t;
    if (pthread_create(&t, NULL, ae_thread, NULL) != 0)
        _exit(43);
    pthread_join(t, NULL);
    atexit(ae_handler);
    exit(0);                      /* runs ae_handler, then destructors */
}

__attribute__((destructor)) static void late_destructor(void)
{
    void *p = xmalloc(1000);
    if (p) {
        memset(p, 9, 1000);
        xfree(p);
    }
    p = xcalloc(10, 10);
    xfree(p);
}

static void test_atexit_and_destructor(void)
{
    tu_child_result r;
    REQUIRE(tu_run_child(atexit_child, NULL, 20, &r), "fork");
    CHECK(!r.signaled, "child killed by signal %d at exit; stderr \"%.200s\"", r.sig, r.err);
    CHECK(r.signaled || r.exit_code == 0, "exit status %d (40: corrupted, 41/42: malloc "
          "failed in atexit)", r.exit_code);
}

static void *park_blocks[64];

static void *park_thread(void *arg)
{
    int keep = arg != NULL;
    void *v[128];
    for (int i = 0; i < 128; i++) {
        v[i] = xmalloc(64 + (size_t)(i % 4) * 1000);
        if (!v[i])
            return (void *)1;
        tu_fill(v[i], 64, (uint64_t)i);
    }
    for (int i = 0; i < 128; i++) {
        if (keep && i % 2 == 0)
            park_blocks[i / 2] = v[i];
        else
            xfree(v[i]);
    }
    return NULL;
}

static void run_park_thread(int keep)
{
    pthread_t t;
    void *ret = NULL;
    REQUIRE(pthread_create(&t, NULL, park_thread, keep ? (void *)1 : NULL) == 0, "");
    pthread_join(t, &ret);
    CHECK(ret == NULL, "thread allocation failed");
}

static void test_parked_heap(void)
{
    mmpool_stats_t s0, s1, s2, s3;
    mmpool_stats_get(&s0);
    run_park_thread(1); /* leaves 64 blocks for main, its heap is parked */
    mmpool_stats_get(&s1);
    CHECK(s1.heaps_parked >= 1, "no heap parked after a thread exit");
    CHECK(s1.threads_live == s0.threads_live, "threads live %zu, was %zu", s1.threads_live,
          s0.threads_live);
    run_park_thread(0); /* takes the parked heap over: no new heap */
    mmpool_stats_get(&s2);
    CHECK(s2.heaps_made == s1.heaps_made, "a new thread made a heap (%zu -> %zu) although "
          "%zu were parked", s1.heaps_made, s2.heaps_made, s1.heaps_parked);
    for (int i = 0; i < 64; i++) { /* remote frees into the parked heap */
        CHECK(tu_check(park_blocks[i], 64, (uint64_t)(2 * i)) == (size_t)-1, "block %d of an exited "
              "thread corrupted", i);
        xfree(park_blocks[i]);
    }
    malloc_trim(0);
    mmpool_stats_get(&s3);
    CHECK(s3.heaps_parked == 0, "%zu heaps still parked after malloc_trim", s3.heaps_parked);
    /* Expiry: a heap parked for over a second is given up by another
       thread's slow paths. */
    run_park_thread(0);
    mmpool_stats_get(&s1);
    CHECK(s1.heaps_parked >= 1, "no heap parked after a thread exit");
    struct timespec ts = { 1, 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    for (int round = 0; round < 200; round++) {
        void *v[256];
        for (int i = 0; i < 256; i++)
            v[i] = xmalloc(48);
        for (int i = 0; i < 256; i++)
            xfree(v[i]);
    }
    mmpool_stats_get(&s2);
    CHECK(s2.heaps_parked == 0, "%zu heaps still parked a second later", s2.heaps_parked);
}

/* A thread leaves 3,000 blocks of 440 B (about 20 slabs of their class),
   every other one freed, and exits. Its heap, parked, keeps only its
   current slab of the class; the others are abandoned. The main thread
   then allocates 1,400 blocks of that size: it adopts the half-free slabs
   instead of making about ten new ones. (A heap parked with all its slabs
   kept their free space from every live thread: in a larson-style server,
   where each thread frees its exited predecessor's blocks, the bench's
   xserver peaked at 1.5x glibc's RSS.) */
enum { SPREAD_N = 3000, SPREAD_TAKE = 1400, SPREAD_SIZE = 440 };
static void *spread_blocks[SPREAD_N];

static void *spread_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < SPREAD_N; i++) {
        spread_blocks[i] = xmalloc(SPREAD_SIZE);
        if (!spread_blocks[i])
            return (void *)1;
        tu_fill(spread_blocks[i], SPREAD_SIZE, (uint64_t)i);
    }
    for (int i = 1; i < SPREAD_N; i += 2) {
        xfree(spread_blocks[i]);
        spread_blocks[i] = NULL;
    }
    return NULL;
}

static void test_parked_heap_keeps_current_slabs(void)
{
    malloc_trim(0); /* no parked heap of an earlier case for the thread */
    pthread_t t;
    void *ret = NULL;
    REQUIRE(pthread_create(&t, NULL, spread_thread, NULL) == 0, "");
    pthread_join(t, &ret);
    REQUIRE(ret == NULL, "thread allocation failed");
    mmpool_stats_t st;
    mmpool_stats_get(&st);
    CHECK(st.heaps_parked >= 1, "no heap parked after a thread exit");
    size_t before = tu_class_slabs(SPREAD_SIZE, SPREAD_SIZE + 15);
    CHECK(before >= 10, "%zu slabs for %d blocks of %d B", before, SPREAD_N, SPREAD_SIZE);
    static void *mine[SPREAD_TAKE];
    for (int i = 0; i < SPREAD_TAKE; i++) {
        mine[i] = xmalloc(SPREAD_SIZE);
        REQUIRE(mine[i] != NULL, "malloc failed");
        tu_fill(mine[i], SPREAD_SIZE, (uint64_t)(SPREAD_N + i));
    }
    size_t after = tu_class_slabs(SPREAD_SIZE, SPREAD_SIZE + 15);
    CHECK(after <= before + 2, "%d blocks made %zu new slabs of their class (%zu before) while "
          "the exited thread's slabs held %d free blocks", SPREAD_TAKE, after - before, before,
          SPREAD_N / 2);
    for (int i = 0; i < SPREAD_N; i += 2) {
        CHECK(tu_check(spread_blocks[i], SPREAD_SIZE, (uint64_t)i) == (size_t)-1,
              "block %d of the exited thread corrupted", i);
        xfree(spread_blocks[i]);
    }
    for (int i = 0; i < SPREAD_TAKE; i++) {
        CHECK(tu_check(mine[i], SPREAD_SIZE, (uint64_t)(SPREAD_N + i)) == (size_t)-1,
              "block %d corrupted", i);
        xfree(mine[i]);
    }
}

enum { RACE_RING = 4096 };
static void *race_ring[RACE_RING];
static size_t race_head, race_tail;
static int race_done;
static pthread_mutex_t race_lock = PTHREAD_MUTEX_INITIALIZER;

static void *race_worker(void *arg)
{
    uintptr_t seed = (uintptr_t)arg;
    for (int i = 0; i < 64; i++) {
        size_t n = 600 + (size_t)((seed * 31 + (uintptr_t)i * 7) % 400);
        unsigned char *p = xmalloc(n);
        if (!p)
            return (void *)1;
        p[0] = (unsigned char)i;
        p[n - 1] = (unsigned char)i;
        pthread_mutex_lock(&race_lock);
        if (race_head - race_tail < RACE_RING)
            race_ring[race_head++ % RACE_RING] = p;
        else
            xfree(p);
        pthread_mutex_unlock(&race_lock);
    }
    return NULL;
}

static void *race_freer(void *arg)
{
    (void)arg;
    for (;;) {
        void *p = NULL;
        int done;
        pthread_mutex_lock(&race_lock);
        if (race_tail < race_head)
            p = race_ring[race_tail++ % RACE_RING];
        done = race_done;
        pthread_mutex_unlock(&race_lock);
        if (p)
            xfree(p);
        else if (done)
            return NULL;
        else
            sched_yield();
    }
}

static size_t race_slabs(void)
{
    return tu_class_slabs(600, 1024);
}

static void test_park_trim_race(void)
{
    malloc_trim(0);
    CHECK(race_slabs() == 0, "slabs of 600 B-1 KiB blocks before the test: %zu", race_slabs());
    pthread_t freer;
    REQUIRE(pthread_create(&freer, NULL, race_freer, NULL) == 0, "");
    int rounds = tu_full ? 3000 : 400;
    for (int r = 0; r < rounds; r++) {
        pthread_t t;
        void *ret = NULL;
        REQUIRE(pthread_create(&t, NULL, race_worker, (void *)(uintptr_t)r) == 0, "");
        pthread_join(t, &ret);
        CHECK(ret == NULL, "worker allocation failed");
        if (r % 3 == 0)
            malloc_trim(0);
    }
    pthread_mutex_lock(&race_lock);
    race_done = 1;
    pthread_mutex_unlock(&race_lock);
    pthread_join(freer, NULL);
    malloc_trim(0);
    CHECK(race_slabs() == 0, "%zu slabs of 600 B-1 KiB blocks left after every block was "
          "freed: a remote free was lost", race_slabs());
}

/* ---- remote_free_retry ----
 * Blocks of short-lived threads (bursts of 24: more than the 8 heaps
 * that can be parked, so heaps are given up) are freed by other threads
 * while further threads adopt the abandoned slabs. A remote free that
 * finds its owner's queue closed looks again; it marked the block free
 * before its first try, and must not take its own mark for a double free
 * when the slab has a new owner by then. */
enum { RR_RING = 1 << 16, RR_SZ = 64 };
static void *rr_ring[RR_RING];
static size_t rr_head, rr_tail;
static pthread_mutex_t rr_mu = PTHREAD_MUTEX_INITIALIZER;
static int rr_stop;

static void *rr_producer(void *a)
{
    (void)a;
    void *tmp[256];
    for (int i = 0; i < 256; i++) {
        tmp[i] = xmalloc(RR_SZ);
        if (!tmp[i])
            return (void *)1;
        memset(tmp[i], 0x5a, RR_SZ);
    }
    for (int i = 0; i < 256; i++) {
        pthread_mutex_lock(&rr_mu);
        if (rr_head - rr_tail < RR_RING) {
            rr_ring[rr_head++ % RR_RING] = tmp[i];
            tmp[i] = NULL;
        }
        pthread_mutex_unlock(&rr_mu);
        xfree(tmp[i]);
    }
    return NULL;
}

static void *rr_freer(void *a)
{
    (void)a;
    void *b[64];
    for (;;) {
        int k = 0;
        pthread_mutex_lock(&rr_mu);
        while (k < 64 && rr_tail < rr_head)
            b[k++] = rr_ring[rr_tail++ % RR_RING];
        int stop = __atomic_load_n(&rr_stop, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&rr_mu);
        for (int i = 0; i < k; i++)
            xfree(b[i]);
        if (k == 0 && stop)
            return NULL;
    }
}

static void *rr_adopter(void *a)
{
    (void)a;
    enum { KEEP = 4096 };
    void **keep = xmalloc(KEEP * sizeof *keep);
    if (!keep)
        return (void *)1;
    while (!__atomic_load_n(&rr_stop, __ATOMIC_RELAXED)) {
        for (int i = 0; i < KEEP; i++)
            keep[i] = xmalloc(RR_SZ);
        for (int i = 0; i < KEEP; i++)
            xfree(keep[i]);
    }
    xfree(keep);
    return NULL;
}

static void test_remote_free_retry(void)
{
    pthread_t f[6], ad[3];
    for (int i = 0; i < 6; i++)
        REQUIRE(pthread_create(&f[i], NULL, rr_freer, NULL) == 0, "");
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&ad[i], NULL, rr_adopter, NULL) == 0, "");
    time_t end = time(NULL) + (tu_full ? 20 : 2);
    while (time(NULL) < end && !tu_case_failed) {
        pthread_t p[24];
        for (int i = 0; i < 24; i++)
            REQUIRE(pthread_create(&p[i], NULL, rr_producer, NULL) == 0, "");
        for (int i = 0; i < 24; i++) {
            void *ret = NULL;
            pthread_join(p[i], &ret);
            CHECK(ret == NULL, "producer allocation failed");
        }
    }
    __atomic_store_n(&rr_stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 6; i++)
        pthread_join(f[i], NULL);
    for (int i = 0; i < 3; i++) {
        void *ret = NULL;
        pthread_join(ad[i], &ret);
        CHECK(ret == NULL, "adopter allocation failed");
    }
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(key_destructor_allocates);
    RUN(many_keys);
    RUN(detached_threads);
    RUN(pthread_exit_nested);
    RUN(atexit_and_destructor);
    RUN(parked_heap);
    RUN(parked_heap_keeps_current_slabs);
    RUN(park_trim_race);
    RUN(remote_free_retry);
    free_leftovers();
    return tu_finish();
}
