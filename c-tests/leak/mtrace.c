/* c-tests/leak/mtrace.c -- mtrace-format traces: MALLOC_TRACE with
 * mtrace()/muntrace() and MMPOOL_TRACE (a whole run), of mtrace_prog (with
 * and without leaks) and of the multi-threaded leaky_prog: the trace's
 * frame, operations, callers and sizes, and glibc's own `mtrace` script
 * finding exactly the leaks, at their source lines.  See leak.h. */
#include "leak.h"

struct trace_ops {
    int start, end, plus, minus, lt, gt, other, lines;
    bool starts_ok, ends_ok;
};

static void parse_trace(const char *t, struct trace_ops *o)
{
    memset(o, 0, sizeof *o);
    o->starts_ok = strncmp(t, "= Start\n", 8) == 0;
    o->ends_ok = tu_ends_with(t, "\n= End\n");
    for (const char *line = t; line && *line;) {
        const char *nl = strchr(line, '\n');
        char l[1024];
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
        o->lines++;
        /* "@ where op args" or "op args" */
        char *p = l;
        if (strncmp(p, "@ ", 2) == 0) {
            p = strchr(p + 2, ' ');
            p = p ? p + 1 : l + strlen(l);
        }
        if (strcmp(p, "= Start") == 0)
            o->start++;
        else if (strcmp(p, "= End") == 0)
            o->end++;
        else if (strncmp(p, "+ 0x", 4) == 0)
            o->plus++;
        else if (strncmp(p, "- 0x", 4) == 0)
            o->minus++;
        else if (strncmp(p, "< 0x", 4) == 0)
            o->lt++;
        else if (strncmp(p, "> 0x", 4) == 0)
            o->gt++;
        else
            o->other++;
        line = nl ? nl + 1 : NULL;
    }
}

/* glibc's mtrace script (NULL: not installed) */
static const char *mtrace_tool;

/* Run glibc's mtrace script on `trace` (off the pool). */
static void run_mtrace(tu_prog_result *r, const char *prog, const char *trace)
{
    const char *argv[] = {mtrace_tool, prog, trace, NULL};
    tu_run_prog(argv, NULL, r);
}

/* Entries "0x... 0x...  at WHERE" of mtrace's "Memory not freed" list. */
static int not_freed(const char *out)
{
    return tu_count(out, "  at ");
}

static bool mentions_line(const char *out, const char *file, long line)
{
    char *pat = tu_fmt("%s:%ld", file, line);
    bool found = false;
    for (const char *p = out; (p = strstr(p, pat)) != NULL; p++) {
        char after = p[strlen(pat)];
        if (after == '\n' || after == ' ' || after == '\0') {
            found = true;
            break;
        }
    }
    free(pat);
    return found;
}

/* A traced run of mtrace_prog MODE with VAR=<trace file> (made once, by
 * the first case that needs it). */
typedef struct {
    const char *mode, *var;
    bool done;
    tu_prog_result r;
    char *path;
    char *t; /* the trace */
    bool exists;
    struct trace_ops o;
} trace_run;

static trace_run *traced(trace_run *tr)
{
    if (!tr->done) {
        tr->path = tu_fmt("%s/trace-%s.log", tu_tmpdir(), tr->mode);
        const char *vars[] = {tu_fmt("%s=%s", tr->var, tr->path), NULL};
        run_prog(&tr->r, vars, "mtrace_prog", tr->mode, NULL);
        tr->t = tu_read_file(tr->path, &tr->exists);
        parse_trace(tr->t, &tr->o);
        tr->done = true;
    }
    return tr;
}

/* Runs with two leaks: cases mtrace_<mode>_ran, _start_end, _ops,
 * _callers_and_sizes, _tool. */
static trace_run leak_runs[] = {
    {.mode = "mtrace", .var = "MALLOC_TRACE"},
    {.mode = "auto", .var = "MMPOOL_TRACE"},
};

static void leaks_ran(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    CHECK(tr->r.status == 0 && tr->exists, "status %d, trace file exists %d; stderr: %s",
          tr->r.status, tr->exists, tu_excerpt(tr->r.err, 300));
}

static void leaks_start_end(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    struct trace_ops o = tr->o;
    CHECK(o.starts_ok && o.ends_ok && o.start == 1 && o.end == 1,
          "begins with '= Start' %d, ends with '= End' %d (%d/%d); trace: %s", o.starts_ok,
          o.ends_ok, o.start, o.end, tu_excerpt(tr->t, 300));
}

/* workload: 5 mallocs/callocs, 3 reallocs (< and >), 3 frees */
static void leaks_ops(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    struct trace_ops o = tr->o;
    CHECK(o.plus == 5 && o.minus == 3 && o.lt == 3 && o.gt == 3 && o.other == 0,
          "+ %d, - %d, < %d, > %d, other %d (want 5, 3, 3, 3, 0); trace: %s", o.plus, o.minus,
          o.lt, o.gt, o.other, tu_excerpt(tr->t, 600));
}

static void leaks_callers_and_sizes(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    const char *t = tr->t;
    CHECK(strstr(t, "mtrace_prog:(workload+0x") && strstr(t, " 0x4d\n") &&
              strstr(t, " 0xd05\n"),
          "trace: %s", tu_excerpt(t, 400));
}

static void leaks_tool(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    if (mtrace_tool == NULL) {
        /* scripts/run-c-tests.sh installs it: a check that did not run
         * must not pass silently */
        FAILF("not run: glibc's mtrace script not installed (Debian: libc-devtools)");
        return;
    }
    tu_prog_result m;
    run_mtrace(&m, helper("mtrace_prog"), tr->path);
    const char *out = tr->r.out;
    long l0 = tu_value_of(out, "leak_line"), l1 = -1;
    const char *second = strstr(out, "leak_line ");
    if (second)
        second = strstr(second + 1, "leak_line ");
    if (second)
        l1 = strtol(second + 10, NULL, 10);
    CHECK(m.status == 1 && strstr(m.out, "Memory not freed") && not_freed(m.out) == 2 &&
              l0 > 0 && l1 > 0 && mentions_line(m.out, "mtrace_prog.c", l0) &&
              mentions_line(m.out, "mtrace_prog.c", l1),
          "mtrace status %d, %d entries, want mtrace_prog.c:%ld and :%ld; output: %s %s",
          m.status, not_freed(m.out), l0, l1, tu_excerpt(m.out, 500), tu_excerpt(m.err, 200));
}

/* Runs that free everything: cases mtrace_<mode>_trace, _no_leaks. */
static trace_run clean_runs[] = {
    {.mode = "clean", .var = "MALLOC_TRACE"},
    {.mode = "clean-auto", .var = "MMPOOL_TRACE"},
};

static void clean_trace(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    struct trace_ops o = tr->o;
    CHECK(tr->r.status == 0 && tr->exists && o.starts_ok && o.ends_ok && o.plus == 3 &&
              o.minus == 3 && o.lt == 2 && o.gt == 2 && o.other == 0,
          "status %d, exists %d, start %d end %d, + %d - %d < %d > %d other %d; %s",
          tr->r.status, tr->exists, o.starts_ok, o.ends_ok, o.plus, o.minus, o.lt, o.gt,
          o.other, tu_excerpt(tr->t, 400));
}

static void clean_no_leaks(void *arg)
{
    trace_run *tr = traced((trace_run *)arg);
    if (mtrace_tool == NULL) {
        FAILF("not run: glibc's mtrace script not installed");
        return;
    }
    tu_prog_result m;
    run_mtrace(&m, helper("mtrace_prog"), tr->path);
    CHECK(m.status == 0 && strstr(m.out, "No memory leaks.") && !strstr(m.out, "not freed"),
          "mtrace status %d; output: %s", m.status, tu_excerpt(m.out, 400));
}

/* MALLOC_TRACE alone traces nothing until mtrace() is called */
static void test_mtrace_needs_mtrace_call(void)
{
    char *path = tu_fmt("%s/trace-never.log", tu_tmpdir());
    const char *vars[] = {tu_fmt("MALLOC_TRACE=%s", path), NULL};
    tu_prog_result r;
    run_prog(&r, vars, "mtrace_prog", "clean-auto", NULL);
    bool exists;
    tu_read_file(path, &exists);
    CHECK(r.status == 0 && !exists, "status %d, trace file written %d", r.status, exists);
}

/* a whole multi-threaded run: every leak of leaky_prog, at its line
 * (MMPOOL_TRACE; made once) */
static trace_run *threads_run(void)
{
    static trace_run tr;
    if (!tr.done) {
        tr.path = tu_fmt("%s/trace-leaky.log", tu_tmpdir());
        const char *vars[] = {tu_fmt("MMPOOL_TRACE=%s", tr.path), NULL};
        run_prog(&tr.r, vars, "leaky_prog", "leak", NULL);
        tr.t = tu_read_file(tr.path, &tr.exists);
        parse_trace(tr.t, &tr.o);
        tr.done = true;
    }
    return &tr;
}

static void test_mtrace_threads_trace(void)
{
    trace_run *tr = threads_run();
    struct trace_ops o = tr->o;
    CHECK(tr->r.status == 0 && tr->exists && o.starts_ok && o.ends_ok && o.other == 0 &&
              o.plus > 100 && o.minus > 100 && o.lt > 0 && o.gt == o.lt,
          "status %d, exists %d, start %d end %d, + %d - %d < %d > %d other %d", tr->r.status,
          tr->exists, o.starts_ok, o.ends_ok, o.plus, o.minus, o.lt, o.gt, o.other);
}

static void test_mtrace_threads_tool(void)
{
    trace_run *tr = threads_run();
    if (mtrace_tool == NULL) {
        FAILF("not run: glibc's mtrace script not installed");
        return;
    }
    tu_prog_result m;
    run_mtrace(&m, helper("leaky_prog"), tr->path);
    /* strdup's blocks are attributed to strdup (1 frame): 25 - 5 */
    static const struct {
        const char *fn;
        int n;
    } at[] = {{"leak_big", 1},      {"leak_via_realloc", 1}, {"leak_deep", 1},
              {"leak_nodes", 10},   {"thread_leaker", 4},    {"leak_aligned", 1},
              {"leak_calloc", 1},   {"leak_zero", 1}};
    bool good = m.status == 1 && strstr(m.out, "Memory not freed");
    char why[512] = "";
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        long line = tu_value_of(tr->r.out, tu_fmt("line %s", at[i].fn));
        char *pat = tu_fmt("leaky_prog.c:%ld\n", line);
        char *pat2 = tu_fmt("leaky_prog.c:%ld ", line);
        int n = tu_count(m.out, pat) + tu_count(m.out, pat2);
        if (n != at[i].n) {
            good = false;
            snprintf(why + strlen(why), sizeof why - strlen(why), " %s:%ld x%d (want %d)",
                     at[i].fn, line, n, at[i].n);
        }
    }
    int ours = tu_count(m.out, "leaky_prog.c:");
    CHECK(good && ours == 20,
          "mtrace status %d, %d entries at leaky_prog.c (want 20);%s; output: %s", m.status,
          ours, why, tu_excerpt(m.out, 600));
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    if (access("/usr/bin/mtrace", X_OK) == 0)
        mtrace_tool = "/usr/bin/mtrace";
    for (size_t i = 0; i < sizeof leak_runs / sizeof leak_runs[0]; i++) {
        trace_run *tr = &leak_runs[i];
        tu_run_case_with(tu_fmt("mtrace_%s_ran", tr->mode), leaks_ran, tr);
        tu_run_case_with(tu_fmt("mtrace_%s_start_end", tr->mode), leaks_start_end, tr);
        tu_run_case_with(tu_fmt("mtrace_%s_ops", tr->mode), leaks_ops, tr);
        tu_run_case_with(tu_fmt("mtrace_%s_callers_and_sizes", tr->mode), leaks_callers_and_sizes,
                         tr);
        tu_run_case_with(tu_fmt("mtrace_%s_tool", tr->mode), leaks_tool, tr);
    }
    for (size_t i = 0; i < sizeof clean_runs / sizeof clean_runs[0]; i++) {
        trace_run *tr = &clean_runs[i];
        tu_run_case_with(tu_fmt("mtrace_%s_trace", tr->mode), clean_trace, tr);
        tu_run_case_with(tu_fmt("mtrace_%s_no_leaks", tr->mode), clean_no_leaks, tr);
    }
    RUN(mtrace_needs_mtrace_call);
    RUN(mtrace_threads_trace);
    RUN(mtrace_threads_tool);
    return tu_finish();
}
