/* c-tests/introspection/mallinfo.c -- mallinfo2 and mallinfo with glibc's
 * meanings (see introspection.h): blocks freed in any thread no longer
 * count, small, medium and large blocks are counted where glibc counts
 * them, the fields are consistent, with and without MMPOOL_STATS. */
#include "introspection.h"

static char *self_exe;

/* ------------------------------------------------------------------ */
/* 6. mallinfo2                                                          */

/* (a) malloc + free of one small block leaves uordblks where it was. */
static void unchanged_after_free_body(void)
{
    static const size_t sizes[] = {24, 100, 200, 500, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct mallinfo2 a = mi();
        void *p = xmalloc(sizes[i]);
        REQUIRE(p != NULL, "malloc(%zu)", sizes[i]);
        memset(p, 1, sizes[i]);
        xfree(p);
        struct mallinfo2 b = mi();
        note("malloc(%zu) + free: uordblks %zu -> %zu", sizes[i], a.uordblks, b.uordblks);
        CHECK(labs_ll(d(b.uordblks, a.uordblks)) <= (long long)SLACK,
              "malloc(%zu) + free moved uordblks by %lld bytes (%zu -> %zu); want at most %zu",
              sizes[i], d(b.uordblks, a.uordblks), a.uordblks, b.uordblks, SLACK);
    }
}

static void test_mallinfo_unchanged_after_free(void)
{
    tu_case_in_child(unchanged_after_free_body, 10);
}

static void *one_block_thread(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    void *p = xmalloc(n);
    if (p)
        memset(p, 2, n);
    xfree(p);
    return p;
}

/* (a) in fresh threads (each joined before the next starts). */
static void unchanged_after_thread_body(void)
{
    static const size_t sizes[] = {100, 100, 700, 5000};
    struct mallinfo2 a = mi();
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        pthread_t t;
        void *ret;
        REQUIRE(pthread_create(&t, NULL, one_block_thread, (void *)(uintptr_t)sizes[i]) == 0,
                "pthread_create");
        pthread_join(t, &ret);
        REQUIRE(ret != NULL, "malloc(%zu) failed in the thread", sizes[i]);
        struct mallinfo2 b = mi();
        note("after thread %zu (malloc(%zu) + free): uordblks %zu -> %zu", i + 1, sizes[i],
             a.uordblks, b.uordblks);
        CHECK(labs_ll(d(b.uordblks, a.uordblks)) <= (long long)SLACK,
              "%zu fresh thread(s), each malloc(n) + free (n = 100, 100, 700, 5000), moved "
              "uordblks by %lld bytes (%zu -> %zu); want at most %zu", i + 1,
              d(b.uordblks, a.uordblks), a.uordblks, b.uordblks, SLACK);
    }
}

static void test_mallinfo_unchanged_after_thread_free(void)
{
    tu_case_in_child(unchanged_after_thread_body, 10);
}

/* (b), (c): n blocks live raise uordblks by about their bytes; freeing
 * them brings it back. */
static void *blocks[1000];

static void counts_blocks(size_t n, size_t (*size_of)(size_t), const char *what)
{
    struct mallinfo2 a = mi();
    size_t req = 0, usable = 0;
    for (size_t i = 0; i < n; i++) {
        size_t s = size_of(i);
        blocks[i] = xmalloc(s);
        REQUIRE(blocks[i] != NULL, "malloc(%zu)", s);
        memset(blocks[i], 3, s);
        req += s;
        usable += xusable(blocks[i]);
    }
    struct mallinfo2 b = mi();
    for (size_t i = 0; i < n; i++)
        xfree(blocks[i]);
    struct mallinfo2 c = mi();
    long long live = d(b.uordblks, a.uordblks), left = d(c.uordblks, a.uordblks);
    long long lo = (long long)req - (long long)SLACK;
    long long hi = (long long)(usable + HEADER * n + SLACK);
    note("%s: requested %zu, usable %zu; uordblks %zu -> %zu (live, %+lld) -> %zu (freed, "
         "%+lld); hblks %zu -> %zu", what, req, usable, a.uordblks, b.uordblks, live,
         c.uordblks, left, a.hblks, b.hblks);
    CHECK(live >= lo && live <= hi, "%s live: uordblks rose by %lld bytes (%zu -> %zu); want "
          "between %lld (requested - 4 KiB) and %lld (usable + 16 per block + 4 KiB)", what,
          live, a.uordblks, b.uordblks, lo, hi);
    CHECK(labs_ll(left) <= (long long)SLACK, "%s freed: uordblks is %lld bytes off where it "
          "started (%zu -> %zu -> %zu); want at most 4 KiB", what, left, a.uordblks,
          b.uordblks, c.uordblks);
    CHECK(b.hblks == a.hblks, "%s: hblks changed (%zu -> %zu): blocks below 32 KiB are not "
          "mmapped blocks", what, a.hblks, b.hblks);
}

static size_t size_100(size_t i)
{
    (void)i;
    return 100;
}

static size_t size_medium(size_t i)
{
    return 2000 + (i * 7919) % 18001; /* 2000 .. 20000 */
}

static void counts_small_body(void)
{
    counts_blocks(1000, size_100, "1000 blocks of 100 bytes");
}

static void test_mallinfo_counts_small_blocks(void)
{
    tu_case_in_child(counts_small_body, 10);
}

static void counts_medium_body(void)
{
    counts_blocks(200, size_medium, "200 blocks of 2000-20000 bytes");
}

static void test_mallinfo_counts_medium_blocks(void)
{
    tu_case_in_child(counts_medium_body, 10);
}

/* (c) large blocks: counted in hblks/hblkhd, not in uordblks. */
static void counts_large_body(void)
{
    enum { N = 8 };
    void *p[N];
    struct mallinfo2 a = mi();
    size_t req = 0, usable = 0;
    for (int i = 0; i < N; i++) {
        size_t s = 256 * KiB + (size_t)i * 100 * KiB; /* 256 KiB .. 956 KiB */
        p[i] = xmalloc(s);
        REQUIRE(p[i] != NULL, "malloc(%zu)", s);
        memset(p[i], 4, 4096);
        req += s;
        usable += xusable(p[i]);
    }
    struct mallinfo2 b = mi();
    for (int i = 0; i < N; i++)
        xfree(p[i]);
    struct mallinfo2 c = mi();
    note("8 large blocks, requested %zu, usable %zu: hblks %zu -> %zu -> %zu, hblkhd %zu -> "
         "%zu -> %zu, uordblks %zu -> %zu -> %zu", req, usable, a.hblks, b.hblks, c.hblks,
         a.hblkhd, b.hblkhd, c.hblkhd, a.uordblks, b.uordblks, c.uordblks);
    CHECK(b.hblks == a.hblks + N, "8 live blocks of 256-956 KiB: hblks %zu -> %zu, want +8",
          a.hblks, b.hblks);
    long long dh = d(b.hblkhd, a.hblkhd);
    CHECK(dh >= (long long)req && dh <= (long long)(usable + LARGE_ROUND * N),
          "8 live blocks of 256-956 KiB (requested %zu, usable %zu): hblkhd rose by %lld; want "
          "at least the requested bytes and at most usable + 64 KiB per block", req, usable,
          dh);
    CHECK(labs_ll(d(b.uordblks, a.uordblks)) <= (long long)SLACK,
          "8 live mmapped blocks moved uordblks by %lld (%zu -> %zu): glibc counts them in "
          "hblkhd only", d(b.uordblks, a.uordblks), a.uordblks, b.uordblks);
    CHECK(c.hblks == a.hblks && c.hblkhd == a.hblkhd, "after freeing the 8 large blocks: "
          "hblks %zu (was %zu), hblkhd %zu (was %zu)", c.hblks, a.hblks, c.hblkhd, a.hblkhd);
    CHECK(labs_ll(d(c.uordblks, a.uordblks)) <= (long long)SLACK,
          "after freeing the 8 large blocks uordblks is %lld off (%zu -> %zu)",
          d(c.uordblks, a.uordblks), a.uordblks, c.uordblks);
}

static void test_mallinfo_counts_large_blocks(void)
{
    tu_case_in_child(counts_large_body, 10);
}

/* (d) consistency. */
static bool check_consistent(const struct mallinfo2 *m, const char *when, bool quiescent)
{
    const size_t f[] = {m->arena, m->ordblks, m->smblks, m->hblks, m->hblkhd,
                        m->usmblks, m->fsmblks, m->uordblks, m->fordblks, m->keepcost};
    static const char *names[] = {"arena", "ordblks", "smblks", "hblks", "hblkhd",
                                  "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"};
    for (int i = 0; i < 10; i++)
        if (f[i] >= HUGE_VALUE) {
            FAILF("%s: mallinfo2.%s = %zu (%#zx): wrapped or nonsense", when, names[i], f[i],
                  f[i]);
            return false;
        }
    if (m->uordblks + m->fordblks > m->arena + m->hblkhd) {
        FAILF("%s: uordblks %zu + fordblks %zu = %zu > arena %zu + hblkhd %zu = %zu", when,
              m->uordblks, m->fordblks, m->uordblks + m->fordblks, m->arena, m->hblkhd,
              m->arena + m->hblkhd);
        return false;
    }
    if (m->keepcost > m->fordblks) {
        FAILF("%s: keepcost %zu > fordblks %zu (the releasable bytes are free bytes)", when,
              m->keepcost, m->fordblks);
        return false;
    }
    if (quiescent && m->hblkhd < m->hblks * 4096) {
        FAILF("%s: hblkhd %zu for %zu mmapped blocks (less than a page each)", when, m->hblkhd,
              m->hblks);
        return false;
    }
    return true;
}

static void int_agrees(const char *when)
{
    struct mallinfo2 m = mi();
    struct mallinfo o = mi_int();
    const size_t f2[] = {m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd,
                         m.usmblks, m.fsmblks, m.uordblks, m.fordblks, m.keepcost};
    const int f1[] = {o.arena, o.ordblks, o.smblks, o.hblks, o.hblkhd,
                      o.usmblks, o.fsmblks, o.uordblks, o.fordblks, o.keepcost};
    static const char *names[] = {"arena", "ordblks", "smblks", "hblks", "hblkhd",
                                  "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"};
    for (int i = 0; i < 10; i++)
        if (f2[i] <= INT_MAX)
            CHECK(f1[i] == (int)f2[i], "%s: mallinfo().%s = %d, mallinfo2().%s = %zu", when,
                  names[i], f1[i], names[i], f2[i]);
}

static volatile int churn_stop;

static void *churn_thread(void *arg)
{
    enum { SLOTS = 32 };
    void *slot[SLOTS] = {0};
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    while (!__atomic_load_n(&churn_stop, __ATOMIC_RELAXED)) {
        int s = (int)tu_below(&r, SLOTS);
        if (slot[s]) {
            xfree(slot[s]);
            slot[s] = NULL;
            continue;
        }
        uint64_t k = tu_below(&r, 100);
        size_t n = k < 60 ? 1 + tu_below(&r, 1024)
                 : k < 90 ? 1024 + tu_below(&r, 31 * 1024) : 40 * KiB + tu_below(&r, MiB);
        slot[s] = xmalloc(n);
        if (slot[s])
            memset(slot[s], 5, n < 256 ? n : 256);
    }
    for (int s = 0; s < SLOTS; s++)
        xfree(slot[s]);
    return NULL;
}

static void consistent_body(void)
{
    struct mallinfo2 m = mi();
    if (!check_consistent(&m, "at start", true))
        return;
    int_agrees("at start");
    static void *small[500], *large[6];
    for (int i = 0; i < 500; i++)
        small[i] = xmalloc(16 + (size_t)i * 37 % 20000);
    for (int i = 0; i < 6; i++)
        large[i] = xmalloc(300 * KiB + (size_t)i * 4096);
    m = mi();
    if (!check_consistent(&m, "with 500 small/medium and 6 large blocks live", true))
        return;
    int_agrees("with blocks live");
    note("live: arena %zu uordblks %zu fordblks %zu hblks %zu hblkhd %zu keepcost %zu",
         m.arena, m.uordblks, m.fordblks, m.hblks, m.hblkhd, m.keepcost);
    for (int i = 0; i < 500; i++)
        xfree(small[i]);
    for (int i = 0; i < 6; i++)
        xfree(large[i]);
    m = mi();
    if (!check_consistent(&m, "after freeing them", true))
        return;
    int_agrees("after freeing them");
    note("freed: arena %zu uordblks %zu fordblks %zu hblks %zu hblkhd %zu keepcost %zu",
         m.arena, m.uordblks, m.fordblks, m.hblks, m.hblkhd, m.keepcost);

    /* while two threads allocate and free (small, medium, large) */
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(i + 1)) == 0,
                "pthread_create");
    double t0 = tu_now();
    long samples = 0;
    while (tu_now() - t0 < (tu_full ? 3.0 : 0.5)) {
        m = mi();
        samples++;
        if (!check_consistent(&m, "while two threads allocate and free", false))
            break;
    }
    __atomic_store_n(&churn_stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    note("%ld samples during the churn", samples);
    m = mi();
    check_consistent(&m, "after the threads exited", true);
}

static void test_mallinfo_consistent(void)
{
    tu_case_in_child(consistent_body, 15);
}

/* The cases above again with MMPOOL_STATS set (allocation counting on;
 * the table goes to /dev/null): mallinfo2 must mean the same with and
 * without it.  (glibc ignores the variable.) */
static void with_stats_body(void)
{
    int pfd[2];
    REQUIRE(pipe(pfd) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        setenv("MMPOOL_STATS", "/dev/null", 1);
        char *argv[] = {self_exe, (char *)"mallinfo_unchanged_after_free",
                        (char *)"mallinfo_unchanged_after_thread_free",
                        (char *)"mallinfo_counts_small_blocks",
                        (char *)"mallinfo_counts_medium_blocks",
                        (char *)"mallinfo_counts_large_blocks", (char *)"mallinfo_consistent",
                        NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(pfd[1]);
    static char out[16384];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pfd[0], out + len, sizeof out - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = 0;
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    const char *f = strstr(out, "FAIL ");
    if (f) {
        size_t l = strcspn(f, "\n");
        FAILF("with MMPOOL_STATS set: %.*s", (int)(l > 400 ? 400 : l), f);
        return;
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "with MMPOOL_STATS set the run ended with "
          "status %#x: %.300s", st, out);
    int oks = 0;
    for (const char *p = out; (p = strstr(p, "ok mallinfo_")) != NULL; p++)
        oks++;
    CHECK(oks == 6, "with MMPOOL_STATS set: %d of the 6 cases passed: %.300s", oks, out);
}

static void test_mallinfo_with_mmpool_stats(void)
{
    tu_case_in_child(with_stats_body, 30);
}

int main(int argc, char **argv)
{
    self_exe = argv[0];
    tu_init(argc, argv);
    RUN(mallinfo_unchanged_after_free);
    RUN(mallinfo_unchanged_after_thread_free);
    RUN(mallinfo_counts_small_blocks);
    RUN(mallinfo_counts_medium_blocks);
    RUN(mallinfo_counts_large_blocks);
    RUN(mallinfo_consistent);
    RUN(mallinfo_with_mmpool_stats);
    return tu_finish();
}
