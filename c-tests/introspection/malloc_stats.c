/* c-tests/introspection/malloc_stats.c -- malloc_stats with glibc's
 * meanings (see introspection.h): not a cancellation point, and glibc's
 * lines first, agreeing with mallinfo2. */
#include "introspection.h"

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

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(malloc_stats_not_cancellation_point);
    RUN(malloc_stats_glibc_format);
    return tu_finish();
}
