/* c-tests/leak/exitcode.c -- MMPOOL_LEAK_EXITCODE: the exit status of a
 * program with leaks (stdout still flushed, the report complete), 0
 * without leaks or with only suppressed ones, and nothing at all without
 * MMPOOL_LEAK_CHECK.  See leak.h. */
#include "leak.h"

/* `leaky_prog leak` with MMPOOL_LEAK_EXITCODE=42 (made once) */
static leak_run *exit42_run(void)
{
    static leak_run d;
    static bool done;
    if (!done) {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_EXITCODE=42", NULL};
        run_leaky(&d, vars, "leak");
        done = true;
    }
    return &d;
}

static void test_leak_exitcode_42(void)
{
    tu_prog_result *r = &exit42_run()->r;
    CHECK(r->status == 42, "status %d", r->status);
}

static void test_leak_exitcode_stdout_flushed(void)
{
    tu_prog_result *r = &exit42_run()->r;
    CHECK(done_line(r, "leak") && tu_count(r->out, "filler ") == 100 &&
              tu_value_of(r->out, "line leak_nodes") > 0,
          "stdout (%zu bytes): %s", strlen(r->out), tu_excerpt(r->out, 200));
}

static void test_leak_exitcode_report_complete(void)
{
    leak_run *d = exit42_run();
    struct report *rp = &d->rp;
    CHECK(rp->summary && rp->bytes == TOTAL_BYTES && rp->nsites == (int)N_LEAKS, "%s",
          report_excerpt(&d->r));
}

static void test_leak_exitcode_without_leaks_is_0(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_EXITCODE=42", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "none", NULL);
    CHECK(r.status == 0 && done_line(&r, "none"), "status %d", r.status);
}

/* only leaks that are suppressed: not a failure */
static void test_leak_exitcode_suppressed_leaks_is_0(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_EXITCODE=42",
                          "MMPOOL_LEAK_SUPPRESS=leaky_prog", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    CHECK(r.status == 0, "status %d", r.status);
}

static void test_leak_exitcode_needs_leak_check(void)
{
    const char *vars[] = {"MMPOOL_LEAK_EXITCODE=42", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    CHECK(r.status == 0 && strstr(r.err, "mmpool") == NULL, "status %d; stderr: %s", r.status,
          report_excerpt(&r));
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    RUN(leak_exitcode_42);
    RUN(leak_exitcode_stdout_flushed);
    RUN(leak_exitcode_report_complete);
    RUN(leak_exitcode_without_leaks_is_0);
    RUN(leak_exitcode_suppressed_leaks_is_0);
    RUN(leak_exitcode_needs_leak_check);
    return tu_finish();
}
