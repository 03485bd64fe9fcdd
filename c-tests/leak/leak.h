/* c-tests/leak/leak.h -- what the tests of c-tests/leak/ share: running
 * the helper programs, parsing mmpool's leak report, and what leaky_prog
 * leaks.
 *
 * The tests of mmpool's insight features seen from the outside: leak
 * reports (MMPOOL_LEAK_CHECK and friends: report.c, frames.c,
 * suppress.c, exitcode.c), statistics (MMPOOL_STATS, mmpool_stats_get,
 * mallinfo2, malloc_trim, malloc_stats: stats_table.c, stats_api.c) and
 * mtrace traces (MALLOC_TRACE with mtrace()/muntrace(), MMPOOL_TRACE:
 * mtrace.c), checked with glibc's own `mtrace` script and `addr2line`;
 * overhead.c prints what the instrumentation costs (informational).
 *
 *   LD_PRELOAD=$PWD/target/release/libmmpool.so \
 *       target/c/leak/NAME [--smoke|--full] [case...]
 *
 * They build nothing: they run the helper programs (the C-test runner
 * builds c-tests/leak/NAME_prog.c into target/c/leak/NAME_prog):
 * leaky_prog, stats_prog, mtrace_prog.  Each runs with LD_PRELOAD taken
 * from this process's environment (else $MMPOOL_LIB, else
 * target/release/libmmpool.so; see tu_preload) plus the variables under
 * test; MMPOOL_* and MALLOC_TRACE inherited from the caller are dropped
 * (tu_run_prog). */
#ifndef MMPOOL_LEAK_TESTS_H
#define MMPOOL_LEAK_TESTS_H

#include "../testutil.h"

/* ------------------------------------------------------------------ */
/* Running the helper programs                                          */

static const char *leak_lib; /* LD_PRELOAD value for the helpers */

/* The path of helper program `name` (checked by leak_init). */
static const char TU_UNUSED *helper(const char *name)
{
    char *p = tu_helper_path(name);
    return p ? p : tu_fmt("%s/%s", tu_self_dir(), name);
}

/* tu_init; the library the helpers run on; every helper built. */
static void TU_UNUSED leak_init(int argc, char **argv)
{
    tu_init(argc, argv);
    leak_lib = tu_preload();
    printf("%s: LD_PRELOAD=%s\n", argv[0], leak_lib ? leak_lib : "");
    if (leak_lib == NULL || strstr(leak_lib, "mmpool") == NULL)
        printf("note: LD_PRELOAD does not name libmmpool\n");
    static const char *const progs[] = {"leaky_prog", "stats_prog", "mtrace_prog"};
    bool missing = false;
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++)
        if (tu_helper_path(progs[i]) == NULL) {
            printf("FAIL setup: %s not built (the C-test runner builds c-tests/leak/%s.c)\n",
                   helper(progs[i]), progs[i]);
            tu_failed_cases++;
            missing = true;
        }
    if (missing)
        exit(tu_finish());
}

/* Run a helper program on the pool with `vars`; args after the name. */
static void TU_UNUSED run_prog(tu_prog_result *r, const char *const *vars, const char *prog,
                               const char *arg1, const char *arg2)
{
    const char *argv[] = {helper(prog), arg1, arg2, NULL};
    tu_prog_opts o;
    memset(&o, 0, sizeof o);
    o.vars = vars;
    o.preload = leak_lib;
    tu_run_prog(argv, &o, r);
}

/* ------------------------------------------------------------------ */
/* Parsing the leak report                                              */

#define MAX_SITES 64
#define MAX_FRAMES 17

struct frame {
    char fn[128];      /* function name, "??" when unknown */
    unsigned long fn_off;
    char module[256];  /* module path ("" when only an address) */
    unsigned long off; /* module offset */
};

struct site {
    size_t bytes, blocks;
    int nframes;
    bool no_stack;
    struct frame fr[MAX_FRAMES];
};

struct report {
    int nsites;
    struct site sites[MAX_SITES];
    bool summary;
    size_t bytes, blocks, nsum;
    bool sup;
    size_t sbytes, sblocks, ssites;
    bool more;
    size_t more_sites;
    int bad;          /* lines starting "mmpool:" or "    #" not understood */
    char first_bad[256];
    int summaries;    /* how many summary lines */
};

static void TU_UNUSED bad_line(struct report *rp, const char *line, size_t len)
{
    if (rp->bad++ == 0)
        snprintf(rp->first_bad, sizeof rp->first_bad, "%.*s", (int)len, line);
}

/* "name+0xoff (module+0xoffset)" or "?? (module+0xoffset)" or "... (0xaddr)" */
static bool TU_UNUSED parse_frame(const char *s, size_t len, struct frame *f)
{
    char tmp[1024];
    if (len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *open = strstr(tmp, " (");
    if (open == NULL || tmp[len - 1] != ')')
        return false;
    *open = '\0';
    char *where = open + 2;
    tmp[len - 1] = '\0';
    memset(f, 0, sizeof *f);
    if (strcmp(tmp, "??") == 0) {
        strcpy(f->fn, "??");
    } else {
        char *plus = strrchr(tmp, '+');
        if (plus == NULL || strncmp(plus, "+0x", 3) != 0 || plus == tmp)
            return false;
        *plus = '\0';
        char *end;
        f->fn_off = strtoul(plus + 3, &end, 16);
        if (*end != '\0' || strlen(tmp) >= sizeof f->fn)
            return false;
        strcpy(f->fn, tmp);
    }
    char *plus = strrchr(where, '+');
    if (plus == NULL) {
        /* no module: the bare address */
        char *end;
        if (strncmp(where, "0x", 2) != 0)
            return false;
        f->off = strtoul(where + 2, &end, 16);
        return *end == '\0';
    }
    if (strncmp(plus, "+0x", 3) != 0 || plus == where)
        return false;
    *plus = '\0';
    char *end;
    f->off = strtoul(plus + 3, &end, 16);
    if (*end != '\0' || strlen(where) >= sizeof f->module)
        return false;
    strcpy(f->module, where);
    return true;
}

static void TU_UNUSED parse_report(const char *err, struct report *rp)
{
    memset(rp, 0, sizeof *rp);
    struct site *cur = NULL;
    for (const char *line = err; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char l[1024];
        snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
        size_t a, b, c, d, e, f;
        char word[32];
        int consumed = 0;
        if (sscanf(l, "mmpool: leak of %zu bytes in %zu %31s allocated at:%n", &a, &b, word,
                   &consumed) == 3 &&
            consumed == (int)strlen(l)) {
            if (strcmp(word, b == 1 ? "block" : "blocks") != 0)
                bad_line(rp, line, len);
            if (rp->nsites < MAX_SITES) {
                cur = &rp->sites[rp->nsites++];
                cur->bytes = a;
                cur->blocks = b;
            } else {
                cur = NULL;
            }
        } else if (strncmp(l, "    #", 5) == 0) {
            int idx, n = 0;
            struct frame fr;
            if (cur == NULL || sscanf(l + 5, "%d %n", &idx, &n) != 1 || n == 0 ||
                idx != cur->nframes || !parse_frame(l + 5 + n, strlen(l + 5 + n), &fr))
                bad_line(rp, line, len);
            else if (cur->nframes < MAX_FRAMES)
                cur->fr[cur->nframes++] = fr;
        } else if (strncmp(l, "    (no stack", 13) == 0) {
            if (cur)
                cur->no_stack = true;
        } else if (sscanf(l, "mmpool: %zu bytes leaked in %zu blocks from %zu sites%n", &a, &b,
                          &c, &consumed) == 3) {
            rp->summary = true;
            rp->summaries++;
            rp->bytes = a;
            rp->blocks = b;
            rp->nsum = c;
            const char *rest = l + consumed;
            int n2 = 0;
            if (*rest == '\0') {
                rp->sup = false;
            } else if (sscanf(rest, " (suppressed: %zu bytes in %zu blocks from %zu sites)%n",
                              &d, &e, &f, &n2) == 3 &&
                       rest[n2] == '\0') {
                rp->sup = true;
                rp->sbytes = d;
                rp->sblocks = e;
                rp->ssites = f;
            } else {
                bad_line(rp, line, len);
            }
            cur = NULL;
        } else if (sscanf(l, "mmpool: ... and %zu more sites%n", &a, &consumed) == 1) {
            rp->more = true;
            rp->more_sites = a;
            cur = NULL;
        } else if (strncmp(l, "mmpool: leak", 12) == 0) {
            bad_line(rp, line, len);
        } else {
            cur = NULL; /* another line: ends the site */
        }
        line = nl ? nl + 1 : line + len;
    }
}

static bool TU_UNUSED fn_is(const char *have, const char *want)
{
    size_t n = strlen(want);
    /* gcc clones: name.part.0, name.constprop.0, name.isra.0 */
    return strncmp(have, want, n) == 0 && (have[n] == '\0' || have[n] == '.');
}

/* The sites with a frame in function `fn`; the first in *out. */
static int TU_UNUSED sites_with(struct report *rp, const char *fn, struct site **out, int *frame)
{
    int n = 0;
    for (int i = 0; i < rp->nsites; i++)
        for (int k = 0; k < rp->sites[i].nframes; k++)
            if (fn_is(rp->sites[i].fr[k].fn, fn)) {
                if (n++ == 0) {
                    *out = &rp->sites[i];
                    if (frame)
                        *frame = k;
                }
                break;
            }
    return n;
}

static size_t TU_UNUSED sum_bytes(struct report *rp)
{
    size_t s = 0;
    for (int i = 0; i < rp->nsites; i++)
        s += rp->sites[i].bytes;
    return s;
}

static size_t TU_UNUSED sum_blocks(struct report *rp)
{
    size_t s = 0;
    for (int i = 0; i < rp->nsites; i++)
        s += rp->sites[i].blocks;
    return s;
}

static int TU_UNUSED max_frames(struct report *rp)
{
    int m = 0;
    for (int i = 0; i < rp->nsites; i++)
        if (rp->sites[i].nframes > m)
            m = rp->sites[i].nframes;
    return m;
}

static int TU_UNUSED min_frames(struct report *rp)
{
    int m = MAX_FRAMES + 1;
    for (int i = 0; i < rp->nsites; i++)
        if (rp->sites[i].nframes < m)
            m = rp->sites[i].nframes;
    return rp->nsites ? m : 0;
}

/* ------------------------------------------------------------------ */
/* Expectations: what leaky_prog leaks (see c-tests/leaky_prog.c)        */

struct expected_leak {
    const char *fn;
    size_t bytes, blocks;
};

/* in the order the report must list them (bytes, largest first) */
static const struct expected_leak LEAKS[] = {
    {"leak_big", 200000, 1}, {"leak_via_realloc", 3000, 1}, {"leak_deep", 1000, 1},
    {"leak_nodes", 480, 10}, {"thread_leaker", 288, 4},     {"leak_aligned", 200, 1},
    {"leak_strings", 105, 5}, {"leak_calloc", 63, 1},       {"leak_zero", 0, 1},
};
#define N_LEAKS (sizeof LEAKS / sizeof LEAKS[0])
#define TOTAL_BYTES 205136u
#define TOTAL_BLOCKS 25u

/* C-library-internal names suppressed by default */
static bool TU_UNUSED libc_internal(const struct frame *f)
{
    return strstr(f->fn, "_IO_file_doallocate") || strstr(f->fn, "_nl_") ||
           strstr(f->fn, "_dl_") || strstr(f->module, "ld-linux");
}

static const char TU_UNUSED *report_excerpt(const tu_prog_result *r)
{
    return tu_excerpt(r->err, 600);
}

static bool TU_UNUSED done_line(const tu_prog_result *r, const char *mode)
{
    char *want = tu_fmt("leaky_prog: done %s\n", mode);
    bool okk = tu_ends_with(r->out, want);
    free(want);
    return okk;
}

/* ------------------------------------------------------------------ */
/* Runs of leaky_prog with MMPOOL_LEAK_CHECK=1 that several cases read  */
/* (each made once per process, by the first case that needs it)       */

typedef struct {
    tu_prog_result r;
    struct report rp;
} leak_run;

static void TU_UNUSED run_leaky(leak_run *d, const char *const *vars, const char *mode)
{
    run_prog(&d->r, vars, "leaky_prog", mode, NULL);
    parse_report(d->r.err, &d->rp);
}

/* `leaky_prog leak`: the default report, the base of later deltas */
static leak_run TU_UNUSED *default_run(void)
{
    static leak_run d;
    static bool done;
    if (!done) {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", NULL};
        run_leaky(&d, vars, "leak");
        done = true;
    }
    return &d;
}

/* `leaky_prog none`: the same workload, everything freed */
static leak_run TU_UNUSED *none_run(void)
{
    static leak_run d;
    static bool done;
    if (!done) {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", NULL};
        run_leaky(&d, vars, "none");
        done = true;
    }
    return &d;
}

/* ------------------------------------------------------------------ */
/* The statistics table (mmpool_stats_print, MMPOOL_STATS)              */

static bool TU_UNUSED table_complete(const char *t)
{
    return strstr(t, "mmpool statistics (pid ") &&
           strstr(t, "  class   block     allocs      frees       live  peak live  slabs       held") &&
           strstr(t, "  large   >") && strstr(t, "  large blocks: ") &&
           strstr(t, " maps, ") && strstr(t, " cache hits") && strstr(t, "  requested: ") &&
           strstr(t, " over the run); held: ") && strstr(t, "  spans: ") &&
           strstr(t, "  rss: ") && strstr(t, "; threads: ");
}

#endif /* MMPOOL_LEAK_TESTS_H */
