/* c-tests/leak/stats_table.c -- the statistics table at exit
 * (MMPOOL_STATS=1 on stderr, MMPOOL_STATS=path in a file) of leaky_prog:
 * complete, its 48-byte class and large-block rows and its thread counts
 * matching the workload; together with the leak report.  See leak.h. */
#include "leak.h"

/* The numbers of the stats table's row of the class that serves requests
 * of `size` bytes: the smallest block of at least `size` (plus the size
 * record the secure build keeps in every block, which its table names). */
static bool class_row(const char *text, size_t size, size_t v[6])
{
    size_t record = 0;
    const char *sec = strstr(text, "  secure build: every block keeps a ");
    if (sec && sscanf(sec, "  secure build: every block keeps a %zu-byte", &record) == 1) {
        size += record;
        if (size < 32)
            size = 32;
    }
    size_t w[6];
    bool found = false;
    size_t best = SIZE_MAX;
    for (const char *line = text; line && *line;) {
        size_t cls, blk;
        if (sscanf(line, " %zu %zu %zu %zu %zu %zu %zu", &cls, &blk, &w[0], &w[1], &w[2], &w[3],
                   &w[4]) == 7 &&
            blk >= size && blk < best) {
            best = blk;
            memcpy(v, w, sizeof w);
            found = true;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return found;
}

static bool large_row(const char *text, size_t v[4])
{
    /* ">64K" (">32K" in the secure build: its slab limit) */
    const char *p = strstr(text, "  large   >");
    return p && sscanf(p, "  large   >%*uK %zu %zu %zu %zu", &v[0], &v[1], &v[2], &v[3]) == 4;
}

/* `leaky_prog leak` with MMPOOL_STATS=1: the table on stderr (made once) */
static tu_prog_result *stderr_run(void)
{
    static tu_prog_result r;
    static bool done;
    if (!done) {
        const char *vars[] = {"MMPOOL_STATS=1", NULL};
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        done = true;
    }
    return &r;
}

/* `leaky_prog leak` with MMPOOL_STATS=<file> (made once) */
typedef struct {
    tu_prog_result r;
    char *t; /* the file */
    bool exists;
} file_run_t;

static file_run_t *file_run(void)
{
    static file_run_t f;
    static bool done;
    if (!done) {
        char *path = tu_fmt("%s/stats.txt", tu_tmpdir());
        const char *vars[] = {tu_fmt("MMPOOL_STATS=%s", path), NULL};
        run_prog(&f.r, vars, "leaky_prog", "leak", NULL);
        f.t = tu_read_file(path, &f.exists);
        done = true;
    }
    return &f;
}

static void test_stats_env_stderr(void)
{
    tu_prog_result *r = stderr_run();
    CHECK(r->status == 0 && done_line(r, "leak") && tu_count(r->err, "mmpool statistics") == 1 &&
              strstr(r->err, "leaked in") == NULL && strstr(r->err, "need MMPOOL_STATS") == NULL,
          "status %d; stderr: %s", r->status, tu_excerpt(r->err, 400));
}

static void test_stats_env_file(void)
{
    file_run_t *f = file_run();
    CHECK(f->r.status == 0 && f->exists && strstr(f->r.err, "mmpool statistics") == NULL,
          "status %d, file exists %d; stderr: %s", f->r.status, f->exists,
          tu_excerpt(f->r.err, 300));
}

/* The checks of one table, as cases <prefix>_table_rows, _class48_row,
 * _large_row, _threads. */
typedef struct {
    const char *prefix;
    const char *(*text)(void);
} table_source;

static const char *stderr_table(void) { return stderr_run()->err; }
static const char *file_table(void) { return file_run()->t; }

static table_source env_table = {"stats_env", stderr_table};
static table_source file_table_src = {"stats_file", file_table};

static void table_rows(void *arg)
{
    const char *t = ((const table_source *)arg)->text();
    CHECK(table_complete(t), "table: %s", tu_excerpt(t, 800));
}

/* leak_nodes: 10 blocks of 48 bytes still live at exit */
static void table_class48_row(void *arg)
{
    const char *t = ((const table_source *)arg)->text();
    size_t v[6] = {0};
    bool row = class_row(t, 48, v);
    CHECK(row && v[0] >= 10 && v[2] >= 10 && v[3] >= v[2] && v[0] - v[1] == v[2],
          "row %d: allocs %zu frees %zu live %zu peak %zu", row, v[0], v[1], v[2], v[3]);
}

/* large: 2 x 500000 (freed) + 200000 (leaked) */
static void table_large_row(void *arg)
{
    const char *t = ((const table_source *)arg)->text();
    size_t lg[4] = {0};
    bool lrow = large_row(t, lg);
    size_t maps = 0, hits = 0;
    const char *lb = strstr(t, "  large blocks: ");
    bool lbp = lb && sscanf(lb, "  large blocks: %zu maps, %zu cache hits", &maps, &hits) == 2;
    CHECK(lrow && lg[0] == 3 && lg[1] == 2 && lg[2] == 1 && lg[3] >= 1 && lbp &&
              maps + hits == 3,
          "large row %d: %zu allocs %zu frees %zu live %zu peak; "
          "%zu maps + %zu cache hits (want 3 in all)",
          lrow, lg[0], lg[1], lg[2], lg[3], maps, hits);
}

static void table_threads(void *arg)
{
    const char *t = ((const table_source *)arg)->text();
    size_t seen = 0, live = 0;
    const char *th = strstr(t, "; threads: ");
    bool thp = th && sscanf(th, "; threads: %zu seen, %zu live", &seen, &live) == 2;
    CHECK(thp && seen >= 5 && live >= 1 && live <= seen, "threads: %zu seen, %zu live", seen,
          live);
}

static void run_table_cases(table_source *s)
{
    tu_run_case_with(tu_fmt("%s_table_rows", s->prefix), table_rows, s);
    tu_run_case_with(tu_fmt("%s_class48_row", s->prefix), table_class48_row, s);
    tu_run_case_with(tu_fmt("%s_large_row", s->prefix), table_large_row, s);
    tu_run_case_with(tu_fmt("%s_threads", s->prefix), table_threads, s);
}

/* statistics and leak report together */
static void test_stats_with_leak_check(void)
{
    const char *vars[] = {"MMPOOL_STATS=1", "MMPOOL_LEAK_CHECK=1", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    CHECK(r.status == 0 && table_complete(r.err) && rp.bytes == TOTAL_BYTES &&
              rp.blocks == TOTAL_BLOCKS && rp.nsum == N_LEAKS && rp.bad == 0,
          "status %d; summary %zu/%zu/%zu", r.status, rp.bytes, rp.blocks, rp.nsum);
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    RUN(stats_env_stderr);
    run_table_cases(&env_table);
    RUN(stats_env_file);
    run_table_cases(&file_table_src);
    RUN(stats_with_leak_check);
    return tu_finish();
}
