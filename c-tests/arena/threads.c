/* c-tests/arena/threads.c -- arenas and threads or processes: one arena
 * per thread, an arena handed to another thread (and destroyed there), an
 * arena whose creating thread exited, arenas across fork(). */
#include "arena.h"

typedef struct {
    int id;
    int rounds;
    int errors;
} thr_arg_t;

static void *thread_worker(void *arg)
{
    thr_arg_t *t = arg;
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)t->id * 1000 + 1);
    mmpool_arena_t *a = mmpool_arena_create(t->id % 2 ? 4096 : 0);
    if (!a) {
        t->errors++;
        return NULL;
    }
    enum { N = 300 };
    void *p[N];
    size_t sz[N];
    for (int round = 0; round < t->rounds; round++) {
        mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
        for (int i = 0; i < N; i++) {
            sz[i] = tu_below(&r, 20) ? 1 + (size_t)tu_below(&r, 700)
                                     : 5000 + (size_t)tu_below(&r, 50000);
            mmpool_arena_t *where = (i % 3 == 0 && c) ? c : a;
            p[i] = mmpool_arena_alloc(where, sz[i]);
            if (!p[i]) {
                t->errors++;
                continue;
            }
            tu_fill_pages(p[i], sz[i], (uint64_t)(t->id * 100000 + i + round));
        }
        for (int i = 0; i < N; i++)
            if (p[i] && !tu_check_pages(p[i], sz[i], (uint64_t)(t->id * 100000 + i + round)))
                t->errors++;
        for (int i = 0; i < N; i += 7)
            if (p[i] && sz[i] >= 5000 && i % 3 != 0 && mmpool_arena_free(a, p[i]) != 0)
                t->errors++;
        mmpool_arena_reset(a);
    }
    mmpool_arena_destroy(a);
    return NULL;
}

static void test_threads_own_arenas(void)
{
    enum { T = 4 };
    pthread_t th[T];
    thr_arg_t args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (thr_arg_t){ i, tu_full ? 2000 : 200, 0 };
        REQUIRE(pthread_create(&th[i], NULL, thread_worker, &args[i]) == 0, "");
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].errors == 0, "thread %d: %d errors", i, args[i].errors);
    }
}

typedef struct {
    mmpool_arena_t *a;
    void *large;
    char *small;
    int ok;
} handoff_t;

static void *handoff_worker(void *arg)
{
    handoff_t *h = arg;
    h->ok = strcmp(h->small, "made in main") == 0 && mmpool_arena_free(h->a, h->large) == 0;
    for (int i = 0; i < 1000 && h->ok; i++)
        h->ok = mmpool_arena_alloc(h->a, 1 + (size_t)i * 13) != NULL;
    mmpool_arena_destroy(h->a); /* destroyed in another thread than its creator */
    return NULL;
}

static void test_arena_handoff_between_threads(void)
{
    for (int k = 0; k < (tu_full ? 200 : 20); k++) {
        handoff_t h = { mmpool_arena_create(0), NULL, NULL, 0 };
        REQUIRE(h.a, "");
        h.large = mmpool_arena_alloc(h.a, 100000);
        h.small = mmpool_arena_nalloc(h.a, 13);
        REQUIRE(h.large && h.small, "");
        memcpy(h.small, "made in main", 13);
        for (int i = 0; i < 100; i++)
            REQUIRE(mmpool_arena_alloc(h.a, 500), "");
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, handoff_worker, &h) == 0, "");
        pthread_join(t, NULL);
        CHECK(h.ok, "round %d: the arena did not work in the second thread", k);
    }
}

/* An arena whose creating thread has exited (its heap is abandoned):
 * still usable and destroyable from another thread. */
static void *create_in_thread(void *arg)
{
    mmpool_arena_t **out = arg;
    mmpool_arena_t *a = mmpool_arena_create(4096);
    if (a) {
        for (int i = 0; i < 200; i++)
            if (!mmpool_arena_alloc(a, 300))
                return NULL;
        void *big = mmpool_arena_alloc(a, 50000);
        if (big)
            memset(big, 0x42, 50000);
        if (!mmpool_arena_create_child(a, 0))
            return NULL;
    }
    *out = a;
    return NULL;
}

static void test_arena_outlives_creator_thread(void)
{
    for (int k = 0; k < (tu_full ? 200 : 20); k++) {
        mmpool_arena_t *a = NULL;
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, create_in_thread, &a) == 0, "");
        pthread_join(t, NULL);
        REQUIRE(a, "the thread could not build its arena");
        mmpool_arena_stats_t s = stats_of(a);
        CHECK(s.large_blocks == 1 && s.children == 1 && s.blocks > 1, "stats after the thread "
              "exited: large %zu children %zu blocks %zu", s.large_blocks, s.children, s.blocks);
        for (int i = 0; i < 100; i++)
            REQUIRE(mmpool_arena_alloc(a, 700), "");
        mmpool_arena_reset(a);
        REQUIRE(mmpool_arena_alloc(a, 100000), "");
        mmpool_arena_destroy(a);
    }
}

/* fork() with live arenas: both processes go on using and destroying
 * their copies. */
static void test_arena_after_fork(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    char *s = mmpool_arena_nalloc(a, 6);
    void *big = mmpool_arena_alloc(a, 200000);
    REQUIRE(s && big, "");
    memcpy(s, "hello", 6);
    tu_fill(big, 200000, 9);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        alarm(20);
        int bad = strcmp(s, "hello") != 0 || tu_check(big, 200000, 9) != (size_t)-1 ||
                  mmpool_arena_free(a, big) != 0;
        for (int i = 0; i < 1000 && !bad; i++)
            bad = mmpool_arena_alloc(a, 1 + (size_t)i * 7) == NULL;
        mmpool_arena_destroy(a);
        mmpool_arena_t *b = mmpool_arena_create(0);
        bad |= b == NULL || mmpool_arena_alloc(b, 64) == NULL;
        mmpool_arena_destroy(b);
        _exit(bad ? 1 : 0);
    }
    CHECK(mmpool_arena_free(a, big) == 0, "parent: free after fork");
    for (int i = 0; i < 1000; i++)
        REQUIRE(mmpool_arena_alloc(a, 1 + (size_t)i * 7), "");
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid, "");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child after fork: status %#x", st);
    CHECK(strcmp(s, "hello") == 0, "parent's data changed");
    mmpool_arena_destroy(a);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(threads_own_arenas);
    RUN(arena_handoff_between_threads);
    RUN(arena_outlives_creator_thread);
    RUN(arena_after_fork);
    return tu_finish();
}
