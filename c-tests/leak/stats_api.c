/* c-tests/leak/stats_api.c -- the statistics API seen from C, through
 * stats_prog (mmpool_stats_get deltas around a known workload, mallinfo2,
 * malloc_trim, malloc_stats, mmpool_stats_print), with MMPOOL_STATS=1
 * (detailed counts) and without.  stats_prog checks itself: its verdicts
 * are relayed as stats_prog_detailed/NAME and stats_prog_plain/NAME (by
 * the case that checks its exit).  See leak.h. */
#include "leak.h"

/* stats_prog with MMPOOL_STATS=1 (made once) */
static tu_prog_result *detailed_run(void)
{
    static tu_prog_result r;
    static bool done;
    if (!done) {
        const char *vars[] = {"MMPOOL_STATS=1", NULL};
        run_prog(&r, vars, "stats_prog", NULL, NULL);
        done = true;
    }
    return &r;
}

/* stats_prog without MMPOOL_STATS (made once) */
static tu_prog_result *plain_run(void)
{
    static tu_prog_result r;
    static bool done;
    if (!done) {
        run_prog(&r, NULL, "stats_prog", NULL, NULL);
        done = true;
    }
    return &r;
}

static void test_stats_prog_detailed_exit(void)
{
    tu_prog_result *r = detailed_run();
    tu_relay("stats_prog_detailed", r->out);
    CHECK(r->status == 0 && strstr(r->out, "stats_prog: detailed=1") &&
              strstr(r->out, "stats_prog: 0 failed"),
          "status %d; stdout: %s; stderr: %s", r->status, tu_excerpt(r->out, 300),
          tu_excerpt(r->err, 300));
}

static void test_stats_print_fd1_detailed(void)
{
    tu_prog_result *r = detailed_run();
    const char *t = strstr(r->out, "--- table ---\n");
    const char *e = t ? strstr(t, "--- end ---\n") : NULL;
    char *table = t && e ? tu_fmt("%.*s", (int)(e - t), t) : tu_fmt("%s", "");
    CHECK(table_complete(table) && strstr(table, "need MMPOOL_STATS") == NULL, "table: %s",
          tu_excerpt(table, 400));
}

/* malloc_stats() and the report at exit, both on stderr */
static void test_malloc_stats_and_exit_table(void)
{
    tu_prog_result *r = detailed_run();
    CHECK(tu_count(r->err, "mmpool statistics") == 2 && table_complete(r->err), "stderr: %s",
          tu_excerpt(r->err, 400));
}

static void test_stats_prog_plain_exit(void)
{
    tu_prog_result *r = plain_run();
    tu_relay("stats_prog_plain", r->out);
    CHECK(r->status == 0 && strstr(r->out, "stats_prog: detailed=0") &&
              strstr(r->out, "stats_prog: 0 failed"),
          "status %d; stdout: %s; stderr: %s", r->status, tu_excerpt(r->out, 300),
          tu_excerpt(r->err, 300));
}

static void test_malloc_stats_plain(void)
{
    tu_prog_result *r = plain_run();
    CHECK(tu_count(r->err, "mmpool statistics") == 1 && table_complete(r->err) &&
              strstr(r->err, "allocation counts need MMPOOL_STATS=1"),
          "stderr: %s", tu_excerpt(r->err, 400));
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    RUN(stats_prog_detailed_exit);
    RUN(stats_print_fd1_detailed);
    RUN(malloc_stats_and_exit_table);
    RUN(stats_prog_plain_exit);
    RUN(malloc_stats_plain);
    return tu_finish();
}
