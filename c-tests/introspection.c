/* c-tests/introspection.c -- glibc's introspection API with glibc's
 * meanings: mallinfo/mallinfo2, malloc_stats, mallopt, malloc_info.
 *
 * mallinfo2 (the fields a program or a monitoring agent reads):
 *   uordblks  bytes in allocated blocks (not counting mmapped ones)
 *   fordblks  free bytes the allocator holds
 *   arena     bytes obtained from the OS (not counting mmapped blocks)
 *   hblks     number of mmapped ("large") blocks live
 *   hblkhd    bytes of those mappings
 *   keepcost  free bytes that could be given back at once (part of
 *             fordblks)
 * so a block that is freed no longer counts, whichever thread freed it,
 * and a thread that exits leaves uordblks where it found it.  These must
 * hold always, with or without MMPOOL_STATS.
 *
 * The bounds (chosen so that glibc 2.36 meets them too; its tcache keeps
 * up to 7 freed blocks per size counted as allocated, and every chunk
 * carries an 8-16 byte header counted in uordblks):
 *   SLACK = 4 KiB       noise allowed in uordblks around any sequence
 *   n blocks of sizes s_i live: requested - SLACK <= delta uordblks
 *                               <= sum of malloc_usable_size + 16 n + SLACK
 *   large blocks (>= 256 KiB, mmapped by glibc below its 32 MiB dynamic
 *   threshold cap only if the process has not freed such a block before:
 *   each case runs in a fresh child, large blocks first):
 *     delta hblks == n,  requested <= delta hblkhd <= usable + 64 KiB n,
 *     |delta uordblks| <= SLACK, and all back to the start after free.
 *
 * malloc_stats: not a cancellation point (glibc writes with cancellation
 *   disabled), and its output starts with glibc's lines, which scripts
 *   parse, before anything of the allocator's own.
 * mallopt / malloc_info: defined by the allocator that serves malloc (not
 *   glibc's, answering for its unused heap); mallopt returns what glibc's
 *   returns for each parameter; M_MMAP_THRESHOLD has the effect described
 *   at test_mallopt_mmap_threshold; malloc_info writes well-formed XML
 *   whose numbers agree with mallinfo2.
 *
 * Every case runs in a forked child (tu_case_in_child): its allocations,
 * threads and mallopt settings stay there.
 *
 * On plain glibc (no libmmpool at all) every case must pass too:
 *   gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude \
 *       c-tests/introspection.c -o target/c/introspection.glibc -ldl
 *   target/c/introspection.glibc
 * (a binary linked with -lmmpool gets mmpool's malloc even without
 * LD_PRELOAD: libmmpool comes before libc in its lookup order.)
 * TU_VERBOSE=1 prints the numbers each case measured. */
#include "testutil.h"

#include <limits.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define SLACK (4 * KiB)
#define HEADER 16            /* glibc's per-chunk overhead allowed per block */
#define LARGE_ROUND (64 * KiB) /* per mapping: page/granule rounding, headers */
#define HUGE_VALUE ((size_t)1 << 47) /* no field is ever this big here */
#define ERRNO_MARK 4242

static char *self_exe;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (!getenv("TU_VERBOSE"))
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("    [%s] %s\n", tu_case_name, buf);
}

static struct mallinfo2 mi(void)
{
    return mallinfo2();
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static struct mallinfo mi_int(void)
{
    return mallinfo();
}
#pragma GCC diagnostic pop

static long long d(size_t after, size_t before)
{
    return (long long)after - (long long)before;
}

static long long labs_ll(long long v)
{
    return v < 0 ? -v : v;
}

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

/* ------------------------------------------------------------------ */
/* 7. malloc_stats                                                       */

static volatile int stats_returned, after_testcancel;

static void *cancelled_thread(void *arg)
{
    (void)arg;
    pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
    pthread_cancel(pthread_self()); /* pending from now on */
    malloc_stats();                 /* must not act on it */
    stats_returned = 1;
    pthread_testcancel();           /* acts on it */
    after_testcancel = 1;
    return NULL;
}

static void not_cancellation_point_body(void)
{
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    REQUIRE(saved >= 0 && devnull >= 0, "dup/open");
    dup2(devnull, 2); /* malloc_stats' output */
    pthread_t t;
    void *ret = NULL;
    int rc = pthread_create(&t, NULL, cancelled_thread, NULL);
    if (rc == 0)
        pthread_join(t, &ret);
    dup2(saved, 2);
    REQUIRE(rc == 0, "pthread_create: %s", strerror(rc));
    CHECK(stats_returned, "a thread with a cancellation request pending was cancelled inside "
          "malloc_stats() (it writes with cancellation enabled: write(2) is a cancellation "
          "point; glibc disables cancellation while it prints)");
    CHECK(ret == PTHREAD_CANCELED && !after_testcancel,
          "the thread was not cancelled at pthread_testcancel() (returned %p)", ret);
}

static void test_malloc_stats_not_cancellation_point(void)
{
    tu_case_in_child(not_cancellation_point_body, 10);
}

/* "key = number" -> number; -1 when the line is not that. */
static long long stats_value(const char *line, const char *key)
{
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) != 0)
        return -1;
    const char *p = line + kl;
    while (*p == ' ')
        p++;
    if (*p != '=')
        return -1;
    p++;
    while (*p == ' ')
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    return strtoll(p, NULL, 10);
}

static void stats_format_body(void)
{
    static void *large[3];
    for (int i = 0; i < 3; i++)
        large[i] = xmalloc(300 * KiB);
    char path[] = "/tmp/mmpool-malloc-stats-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    int saved = dup(2);
    struct mallinfo2 m = mi();
    dup2(fd, 2);
    malloc_stats();
    dup2(saved, 2);
    close(saved);
    static char out[65536];
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    close(fd);
    REQUIRE(n > 0, "malloc_stats() wrote nothing on stderr");
    out[n] = 0;
    for (int i = 0; i < 3; i++)
        xfree(large[i]);

    /* glibc:  Arena 0: / system bytes = / in use bytes = / [Arena 1: ...]
     *         Total (incl. mmap): / system bytes = / in use bytes =
     *         max mmap regions = / max mmap bytes = */
    char first[80];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(out, "\n"), out);
    REQUIRE(strcmp(first, "Arena 0:") == 0, "malloc_stats() output starts with \"%s\", not "
            "glibc's \"Arena 0:\"", first);
    static const char *want[] = {"Total (incl. mmap):", "system bytes", "in use bytes",
                                 "max mmap regions", "max mmap bytes"};
    long long total_sys = -1, total_used = -1, max_regions = -1, max_bytes = -1;
    long long arena0_sys = -1, arena0_used = -1;
    int stage = 0, arena_lines = 0; /* stage: index into want after Total */
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line && stage < 5;
         line = strtok_r(NULL, "\n", &save)) {
        if (stage == 0) {
            if (strncmp(line, "Arena ", 6) == 0) {
                arena_lines = 0;
                continue;
            }
            if (strcmp(line, want[0]) == 0) {
                stage = 1;
                continue;
            }
            long long v = stats_value(line, arena_lines == 0 ? "system bytes" : "in use bytes");
            REQUIRE(v >= 0, "malloc_stats(): unexpected line \"%s\" in an arena's block", line);
            if (arena0_sys < 0)
                arena0_sys = v;
            else if (arena0_used < 0)
                arena0_used = v;
            arena_lines++;
            continue;
        }
        long long v = stats_value(line, want[stage]);
        REQUIRE(v >= 0, "malloc_stats(): \"%s\" where glibc prints \"%s = <number>\"", line,
                want[stage]);
        if (stage == 1)
            total_sys = v;
        else if (stage == 2)
            total_used = v;
        else if (stage == 3)
            max_regions = v;
        else
            max_bytes = v;
        stage++;
    }
    REQUIRE(stage == 5, "malloc_stats(): glibc's lines end before \"%s\"", want[stage]);
    note("arena 0 %lld/%lld, total %lld/%lld, max mmap %lld/%lld; mallinfo2 arena %zu "
         "uordblks %zu hblks %zu hblkhd %zu", arena0_sys, arena0_used, total_sys, total_used,
         max_regions, max_bytes, m.arena, m.uordblks, m.hblks, m.hblkhd);
    CHECK(arena0_used >= 0 && arena0_used <= arena0_sys,
          "Arena 0: in use bytes %lld > system bytes %lld", arena0_used, arena0_sys);
    CHECK(total_used <= total_sys, "Total: in use bytes %lld > system bytes %lld", total_used,
          total_sys);
    /* glibc prints these with %10u: compare modulo 2^32 */
    const long long m32 = 1LL << 32, tol = 64 * 1024;
    long long want_sys = (long long)((m.arena + m.hblkhd) % (size_t)m32);
    long long want_used = (long long)((m.uordblks + m.hblkhd) % (size_t)m32);
    CHECK(labs_ll(total_sys - want_sys) <= tol, "Total system bytes %lld, but mallinfo2 "
          "arena + hblkhd = %lld", total_sys, want_sys);
    CHECK(labs_ll(total_used - want_used) <= tol, "Total in use bytes %lld, but mallinfo2 "
          "uordblks + hblkhd = %lld", total_used, want_used);
    CHECK(max_regions >= (long long)m.hblks && max_regions >= 3,
          "max mmap regions %lld with %zu mmapped blocks live", max_regions, m.hblks);
    CHECK(max_bytes >= (long long)(m.hblkhd % (size_t)m32) && max_bytes >= 900 * 1024,
          "max mmap bytes %lld with %zu bytes of mmapped blocks live", max_bytes, m.hblkhd);
}

static void test_malloc_stats_glibc_format(void)
{
    tu_case_in_child(stats_format_body, 10);
}

/* ------------------------------------------------------------------ */
/* 8. mallopt, malloc_info                                               */

/* The glibc extensions must come from the allocator that serves malloc
 * (today mallopt and malloc_info are glibc's: they answer for glibc's
 * heap, which holds none of the program's blocks). */
static void test_mallopt_malloc_info_exported(void)
{
    static const char *syms[] = {"mallopt", "malloc_info", "mallinfo2", "mallinfo",
                                 "malloc_stats", "malloc_trim", "malloc_usable_size"};
    char owner[512];
    snprintf(owner, sizeof owner, "%s", tu_symbol_owner("malloc"));
    REQUIRE(owner[0] != 0, "cannot tell which object defines malloc");
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        const char *o = tu_symbol_owner(syms[i]);
        CHECK(strcmp(o, owner) == 0, "%s is defined by %s, malloc by %s", syms[i],
              o[0] ? o : "nobody", owner);
    }
}

/* mallopt's return value for each parameter and value: what glibc's own
 * mallopt returns (it returns 1 for most, including unknown parameters,
 * and 0 for an M_MXFAST out of range). */
static void mallopt_values_body(void)
{
    int (*g_mallopt)(int, int);
    *(void **)&g_mallopt = tu_glibc_sym("mallopt");
    REQUIRE(g_mallopt != NULL, "glibc's mallopt not found");
    static const struct {
        int param, value;
        const char *name;
    } c[] = {
        {M_MMAP_THRESHOLD, 1 << 20, "M_MMAP_THRESHOLD"}, {M_MMAP_THRESHOLD, 0, "M_MMAP_THRESHOLD"},
        {M_MMAP_THRESHOLD, 64 << 20, "M_MMAP_THRESHOLD"}, {M_MMAP_THRESHOLD, -1, "M_MMAP_THRESHOLD"},
        {M_TRIM_THRESHOLD, 1 << 20, "M_TRIM_THRESHOLD"}, {M_TRIM_THRESHOLD, -1, "M_TRIM_THRESHOLD"},
        {M_TOP_PAD, 64 << 10, "M_TOP_PAD"}, {M_TOP_PAD, 0, "M_TOP_PAD"},
        {M_MMAP_MAX, 65536, "M_MMAP_MAX"}, {M_MMAP_MAX, 0, "M_MMAP_MAX"},
        {M_MMAP_MAX, 65536, "M_MMAP_MAX"},
        {M_ARENA_MAX, 4, "M_ARENA_MAX"}, {M_ARENA_MAX, 0, "M_ARENA_MAX"},
        {M_ARENA_TEST, 2, "M_ARENA_TEST"}, {M_ARENA_TEST, 0, "M_ARENA_TEST"},
        {M_PERTURB, 0x55, "M_PERTURB"}, {M_PERTURB, 0, "M_PERTURB"},
        {M_MXFAST, 64, "M_MXFAST"}, {M_MXFAST, 0, "M_MXFAST"}, {M_MXFAST, 160, "M_MXFAST"},
        {M_MXFAST, 161, "M_MXFAST"}, {M_MXFAST, -1, "M_MXFAST"},
        {M_CHECK_ACTION, 3, "M_CHECK_ACTION"}, {M_CHECK_ACTION, 0, "M_CHECK_ACTION"},
        {12345, 1, "unknown 12345"}, {-100, 1, "unknown -100"}, {0, 0, "unknown 0"},
        {M_MMAP_THRESHOLD, 128 << 10, "M_MMAP_THRESHOLD"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        errno = ERRNO_MARK;
        int r = mallopt(c[i].param, c[i].value);
        int e = errno;
        errno = ERRNO_MARK;
        int g = g_mallopt(c[i].param, c[i].value);
        int ge = errno;
        note("mallopt(%s (%d), %d) = %d, glibc %d", c[i].name, c[i].param, c[i].value, r, g);
        CHECK(r == g, "mallopt(%s (%d), %d) = %d; glibc's returns %d", c[i].name, c[i].param,
              c[i].value, r, g);
        CHECK(e == ge, "mallopt(%s, %d) left errno %d; glibc's leaves %d", c[i].name,
              c[i].value, e, ge);
    }
}

static void test_mallopt_return_values(void)
{
    tu_case_in_child(mallopt_values_body, 10);
}

/* M_MMAP_THRESHOLD, the meaning this test pins down (glibc's, as far as
 * mallinfo2 shows it): once mallopt(M_MMAP_THRESHOLD, T) has returned 1,
 * a block requested with n >= T bytes is a large ("mmapped") block: it is
 * counted in hblks/hblkhd and not in uordblks; a block with n < T is
 * served from the heap: counted in uordblks, not in hblks/hblkhd.
 * (glibc compares its chunk size, n + 8 rounded up to 16, with T; an
 * implementation may round too, so the sizes here stay far from T.)
 * Setting T again takes effect for the blocks allocated after. */
static void mmap_threshold_body(void)
{
    REQUIRE(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt(M_MMAP_THRESHOLD, 1 MiB) != 1");
    struct mallinfo2 a = mi();
    void *below = xmalloc(200 * KiB);
    REQUIRE(below != NULL, "malloc(200 KiB)");
    memset(below, 1, 200 * KiB);
    struct mallinfo2 b = mi();
    note("threshold 1 MiB, malloc(200 KiB): hblks %zu -> %zu, hblkhd %zu -> %zu, uordblks %zu "
         "-> %zu", a.hblks, b.hblks, a.hblkhd, b.hblkhd, a.uordblks, b.uordblks);
    CHECK(b.hblks == a.hblks && b.hblkhd == a.hblkhd, "M_MMAP_THRESHOLD = 1 MiB: a 200 KiB "
          "block was counted as mmapped (hblks %zu -> %zu, hblkhd %zu -> %zu); want it below "
          "the threshold, in the heap", a.hblks, b.hblks, a.hblkhd, b.hblkhd);
    CHECK(d(b.uordblks, a.uordblks) >= (long long)(200 * KiB - SLACK),
          "M_MMAP_THRESHOLD = 1 MiB: a 200 KiB heap block raised uordblks by %lld only",
          d(b.uordblks, a.uordblks));
    void *above = xmalloc(2 * MiB);
    REQUIRE(above != NULL, "malloc(2 MiB)");
    struct mallinfo2 c = mi();
    CHECK(c.hblks == b.hblks + 1 && d(c.hblkhd, b.hblkhd) >= (long long)(2 * MiB),
          "M_MMAP_THRESHOLD = 1 MiB: a 2 MiB block is not counted as mmapped (hblks %zu -> "
          "%zu, hblkhd %zu -> %zu)", b.hblks, c.hblks, b.hblkhd, c.hblkhd);
    REQUIRE(mallopt(M_MMAP_THRESHOLD, 64 << 10) == 1, "mallopt(M_MMAP_THRESHOLD, 64 KiB) != 1");
    void *now_above = xmalloc(200 * KiB);
    REQUIRE(now_above != NULL, "malloc(200 KiB)");
    struct mallinfo2 e = mi();
    note("threshold 64 KiB, malloc(200 KiB): hblks %zu -> %zu, hblkhd %zu -> %zu", c.hblks,
         e.hblks, c.hblkhd, e.hblkhd);
    CHECK(e.hblks == c.hblks + 1 && d(e.hblkhd, c.hblkhd) >= (long long)(200 * KiB),
          "M_MMAP_THRESHOLD = 64 KiB: a 200 KiB block is not counted as mmapped (hblks %zu -> "
          "%zu, hblkhd %zu -> %zu)", c.hblks, e.hblks, c.hblkhd, e.hblkhd);
    xfree(below);
    xfree(above);
    xfree(now_above);
    struct mallinfo2 f = mi();
    CHECK(f.hblks == a.hblks && f.hblkhd == a.hblkhd, "after the frees: hblks %zu (was %zu), "
          "hblkhd %zu (was %zu)", f.hblks, a.hblks, f.hblkhd, a.hblkhd);
}

static void test_mallopt_mmap_threshold(void)
{
    tu_case_in_child(mmap_threshold_body, 10);
}

/* A minimal XML check: nested elements, quoted attributes, no text but
 * whitespace.  Returns NULL when well-formed, else what is wrong. */
static const char *xml_problem(const char *s, char *why, size_t whyn)
{
    char stack[32][32];
    int depth = 0, roots = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        if (*p != '<') {
            snprintf(why, whyn, "text outside a tag at offset %td: \"%.20s\"", p - s, p);
            return why;
        }
        p++;
        bool closing = *p == '/';
        if (closing)
            p++;
        char name[32];
        size_t n = 0;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (n > 0 && ((*p >= '0' && *p <= '9') || *p == '-')))
            if (n < sizeof name - 1)
                name[n++] = *p++;
            else
                p++;
        name[n] = 0;
        if (n == 0) {
            snprintf(why, whyn, "bad tag name at offset %td", p - s);
            return why;
        }
        if (closing) {
            if (*p != '>' || depth == 0 || strcmp(stack[depth - 1], name) != 0) {
                snprintf(why, whyn, "</%s> at offset %td does not close <%s>", name, p - s,
                         depth ? stack[depth - 1] : "(nothing)");
                return why;
            }
            depth--;
            p++;
            continue;
        }
        if (depth == 0 && roots++ > 0) {
            snprintf(why, whyn, "a second root element <%s>", name);
            return why;
        }
        for (;;) {
            while (*p == ' ' || *p == '\n')
                p++;
            if (*p == '/' && p[1] == '>') {
                p += 2;
                break;
            }
            if (*p == '>') {
                if (depth == 32) {
                    snprintf(why, whyn, "too deep");
                    return why;
                }
                snprintf(stack[depth++], sizeof stack[0], "%s", name);
                p++;
                break;
            }
            size_t an = 0;
            while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')
                p++, an++;
            if (an == 0 || *p != '=' || p[1] != '"') {
                snprintf(why, whyn, "bad attribute in <%s> at offset %td", name, p - s);
                return why;
            }
            p += 2;
            while (*p && *p != '"' && *p != '<')
                p++;
            if (*p != '"') {
                snprintf(why, whyn, "unterminated attribute value in <%s>", name);
                return why;
            }
            p++;
        }
    }
    if (depth != 0) {
        snprintf(why, whyn, "<%s> is never closed", stack[depth - 1]);
        return why;
    }
    if (roots != 1) {
        snprintf(why, whyn, "no root element");
        return why;
    }
    return NULL;
}

/* The value of attribute `attr` of the first element starting with
 * `prefix` at or after `from`; -1 when absent. */
static long long xml_attr(const char *from, const char *prefix, const char *attr)
{
    const char *e = strstr(from, prefix);
    if (!e)
        return -1;
    const char *end = strchr(e, '>');
    char key[40];
    snprintf(key, sizeof key, " %s=\"", attr);
    const char *a = strstr(e, key);
    if (!a || (end && a > end))
        return -1;
    return strtoll(a + strlen(key), NULL, 10);
}

static void malloc_info_body(void)
{
    static void *large[3], *small[100];
    for (int i = 0; i < 3; i++)
        large[i] = xmalloc(300 * KiB);
    for (int i = 0; i < 100; i++)
        small[i] = xmalloc(50 + (size_t)i * 10);
    FILE *fp = tmpfile();
    REQUIRE(fp != NULL, "tmpfile: %s", strerror(errno));
    static char fbuf[1 << 16];
    setvbuf(fp, fbuf, _IOFBF, sizeof fbuf); /* no allocation while it prints */
    struct mallinfo2 a = mi();
    errno = ERRNO_MARK;
    int rc = malloc_info(0, fp);
    int e = errno;
    struct mallinfo2 b = mi();
    fflush(fp);
    static char out[1 << 18];
    ssize_t n = pread(fileno(fp), out, sizeof out - 1, 0);
    fclose(fp);
    for (int i = 0; i < 3; i++)
        xfree(large[i]);
    for (int i = 0; i < 100; i++)
        xfree(small[i]);
    REQUIRE(rc == 0, "malloc_info(0, fp) = %d (errno %d), want 0", rc, e);
    REQUIRE(n > 0, "malloc_info(0, fp) wrote nothing");
    out[n] = 0;
    CHECK(strncmp(out, "<malloc version=\"", 17) == 0, "malloc_info output starts with "
          "\"%.30s\", not <malloc version=\"...\">", out);
    char why[200];
    const char *bad = xml_problem(out, why, sizeof why);
    CHECK(bad == NULL, "malloc_info output is not well-formed XML: %s", bad);
    CHECK(strstr(out, "<heap nr=\"") != NULL, "no <heap nr=\"...\"> element");
    /* the totals: after the last </heap> (at the top level) */
    const char *top = out, *h;
    while ((h = strstr(top, "</heap>")) != NULL)
        top = h + 7;
    long long mcount = xml_attr(top, "<total type=\"mmap\"", "count");
    long long msize = xml_attr(top, "<total type=\"mmap\"", "size");
    long long cur = xml_attr(top, "<system type=\"current\"", "size");
    note("malloc_info: mmap count %lld size %lld, system current %lld; mallinfo2 hblks %zu "
         "hblkhd %zu uordblks %zu arena %zu", mcount, msize, cur, a.hblks, a.hblkhd,
         a.uordblks, a.arena);
    REQUIRE(mcount >= 0 && msize >= 0, "no top-level <total type=\"mmap\" count=... size=...>");
    REQUIRE(cur >= 0, "no top-level <system type=\"current\" size=...>");
    CHECK(a.hblks == b.hblks && a.hblkhd == b.hblkhd, "mallinfo2 changed around malloc_info");
    CHECK(mcount == (long long)a.hblks && msize == (long long)a.hblkhd,
          "malloc_info: <total type=\"mmap\" count=\"%lld\" size=\"%lld\">, but mallinfo2 says "
          "hblks %zu, hblkhd %zu (3 blocks of 300 KiB live)", mcount, msize, a.hblks, a.hblkhd);
    CHECK(cur >= (long long)a.uordblks, "malloc_info: <system type=\"current\" size=\"%lld\"> "
          "is less than mallinfo2's uordblks (bytes in use) %zu", cur, a.uordblks);
}

static void test_malloc_info_xml(void)
{
    tu_case_in_child(malloc_info_body, 10);
}

/* options != 0: what glibc's does (it returns EINVAL, leaves errno alone
 * and writes nothing). */
static void malloc_info_options_body(void)
{
    int (*g_malloc_info)(int, FILE *);
    *(void **)&g_malloc_info = tu_glibc_sym("malloc_info");
    REQUIRE(g_malloc_info != NULL, "glibc's malloc_info not found");
    FILE *fp = tmpfile();
    REQUIRE(fp != NULL, "tmpfile");
    errno = ERRNO_MARK;
    int r = malloc_info(1, fp);
    int e = errno;
    fflush(fp);
    long wrote = ftell(fp);
    errno = ERRNO_MARK;
    int g = g_malloc_info(1, fp);
    int ge = errno;
    fflush(fp);
    long gwrote = ftell(fp) - wrote;
    fclose(fp);
    note("malloc_info(1, fp) = %d errno %d wrote %ld; glibc %d errno %d wrote %ld", r, e, wrote,
         g, ge, gwrote);
    CHECK(r == g && e == ge, "malloc_info(1, fp) = %d, errno %d; glibc's: %d, errno %d "
          "(%d = unchanged)", r, e, g, ge, ERRNO_MARK);
    CHECK(wrote == gwrote, "malloc_info(1, fp) wrote %ld bytes; glibc's writes %ld", wrote,
          gwrote);
}

static void test_malloc_info_bad_options(void)
{
    tu_case_in_child(malloc_info_options_body, 10);
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
    RUN(malloc_stats_not_cancellation_point);
    RUN(malloc_stats_glibc_format);
    RUN(mallopt_malloc_info_exported);
    RUN(mallopt_return_values);
    RUN(mallopt_mmap_threshold);
    RUN(malloc_info_xml);
    RUN(malloc_info_bad_options);
    return tu_finish();
}
