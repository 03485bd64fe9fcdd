/* c-tests/leak/report.c -- the leak report (MMPOOL_LEAK_CHECK=1) of
 * leaky_prog: its summary, its sites (bytes, blocks, order) and its
 * format; the site limit (MMPOOL_LEAK_MAX_SITES); leaks from threads that
 * free each other's blocks; a run without leaks; no report unless asked
 * for.  See leak.h. */
#include "leak.h"

static void test_leak_default_exit_status(void)
{
    tu_prog_result *r = &default_run()->r;
    CHECK(r->status == 0, "status %d; stderr: %s", r->status, report_excerpt(r));
}

static void test_leak_default_stdout_complete(void)
{
    tu_prog_result *r = &default_run()->r;
    CHECK(done_line(r, "leak") && tu_count(r->out, "filler ") == 100, "stdout: %s",
          tu_excerpt(r->out, 300));
}

static void test_leak_summary_present(void)
{
    leak_run *d = default_run();
    struct report *rp = &d->rp;
    CHECK(rp->summary && rp->summaries == 1, "%d summary lines; stderr: %s", rp->summaries,
          report_excerpt(&d->r));
}

static void test_leak_report_format(void)
{
    struct report *rp = &default_run()->rp;
    CHECK(rp->bad == 0, "%d lines not understood, first: %s", rp->bad, rp->first_bad);
}

static void test_leak_summary_totals(void)
{
    struct report *rp = &default_run()->rp;
    CHECK(rp->bytes == TOTAL_BYTES && rp->blocks == TOTAL_BLOCKS && rp->nsum == N_LEAKS,
          "summary %zu bytes in %zu blocks from %zu sites, want %u in %u from %zu", rp->bytes,
          rp->blocks, rp->nsum, TOTAL_BYTES, TOTAL_BLOCKS, N_LEAKS);
}

static void test_leak_sites_add_up_to_summary(void)
{
    struct report *rp = &default_run()->rp;
    CHECK(rp->nsites == (int)rp->nsum && sum_bytes(rp) == rp->bytes &&
              sum_blocks(rp) == rp->blocks,
          "%d sites listed, %zu bytes in %zu blocks; summary %zu/%zu/%zu", rp->nsites,
          sum_bytes(rp), sum_blocks(rp), rp->bytes, rp->blocks, rp->nsum);
}

/* leak_site_<function>: one case per row of LEAKS */
static void leak_site(void *arg)
{
    const struct expected_leak *want = (const struct expected_leak *)arg;
    struct report *rp = &default_run()->rp;
    struct site *s = NULL;
    int n = sites_with(rp, want->fn, &s, NULL);
    CHECK(n == 1 && s->bytes == want->bytes && s->blocks == want->blocks,
          "%d sites with the function; %zu bytes in %zu blocks, want %zu in %zu", n,
          s ? s->bytes : 0, s ? s->blocks : 0, want->bytes, want->blocks);
}

static void test_leak_sites_sorted_by_bytes(void)
{
    struct report *rp = &default_run()->rp;
    bool sorted = true;
    for (int i = 1; i < rp->nsites; i++)
        if (rp->sites[i].bytes > rp->sites[i - 1].bytes)
            sorted = false;
    bool order = rp->nsites == (int)N_LEAKS;
    for (int i = 0; order && i < (int)N_LEAKS; i++) {
        bool has = false;
        for (int k = 0; k < rp->sites[i].nframes; k++)
            has |= fn_is(rp->sites[i].fr[k].fn, LEAKS[i].fn);
        order = has;
    }
    CHECK(sorted && order, "sorted %d, expected order %d", sorted, order);
}

static void test_leak_max_sites(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_MAX_SITES=2", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    CHECK(r.status == 0 && rp.nsites == 2 && rp.sites[0].bytes == 200000 &&
              rp.sites[1].bytes == 3000 && rp.more && rp.more_sites == N_LEAKS - 2 &&
              rp.bytes == TOTAL_BYTES && rp.blocks == TOTAL_BLOCKS && rp.nsum == N_LEAKS,
          "status %d, %d sites printed, more line %d (%zu), summary %zu/%zu/%zu; %s", r.status,
          rp.nsites, rp.more, rp.more_sites, rp.bytes, rp.blocks, rp.nsum, report_excerpt(&r));
}

static void test_leak_none_reports_zero(void)
{
    leak_run *d = none_run();
    tu_prog_result *r = &d->r;
    struct report *rp = &d->rp;
    bool line = strstr(r->err, "mmpool: 0 bytes leaked in 0 blocks from 0 sites") != NULL;
    CHECK(r->status == 0 && done_line(r, "none") && line && rp->summaries == 1 &&
              rp->nsites == 0 && rp->bytes == 0 && rp->blocks == 0 && rp->bad == 0,
          "status %d; stderr: %s", r->status, report_excerpt(r));
}

static void test_leak_off_by_default(void)
{
    tu_prog_result r;
    run_prog(&r, NULL, "leaky_prog", "leak", NULL);
    CHECK(r.status == 0 && done_line(&r, "leak") && r.err[0] == '\0', "status %d; stderr: %s",
          r.status, report_excerpt(&r));
}

static void test_leak_check_0_is_off(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=0", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    CHECK(r.status == 0 && strstr(r.err, "mmpool") == NULL, "status %d; stderr: %s", r.status,
          report_excerpt(&r));
}

static void test_leak_threads_cross_frees(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "mt", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    struct site *s = NULL;
    int n = sites_with(&rp, "mt_leak", &s, NULL);
    CHECK(r.status == 0 && done_line(&r, "mt") && n == 1 && s->bytes == 32000 &&
              s->blocks == 800 && rp.bytes == 32000 && rp.blocks == 800 && rp.nsum == 1,
          "status %d, %d mt_leak sites, %zu/%zu; summary %zu/%zu/%zu; %s", r.status, n,
          s ? s->bytes : 0, s ? s->blocks : 0, rp.bytes, rp.blocks, rp.nsum,
          report_excerpt(&r));
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    RUN(leak_default_exit_status);
    RUN(leak_default_stdout_complete);
    RUN(leak_summary_present);
    RUN(leak_report_format);
    RUN(leak_summary_totals);
    RUN(leak_sites_add_up_to_summary);
    for (size_t i = 0; i < N_LEAKS; i++)
        tu_run_case_with(tu_fmt("leak_site_%s", LEAKS[i].fn), leak_site, (void *)&LEAKS[i]);
    RUN(leak_sites_sorted_by_bytes);
    RUN(leak_max_sites);
    RUN(leak_none_reports_zero);
    RUN(leak_off_by_default);
    RUN(leak_check_0_is_off);
    RUN(leak_threads_cross_frees);
    return tu_finish();
}
