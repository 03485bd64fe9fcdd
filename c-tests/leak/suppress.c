/* c-tests/leak/suppress.c -- suppressed leaks: the C library's own blocks
 * (suppressed by default, the same with and without leaks), and
 * MMPOOL_LEAK_SUPPRESS by function, by list, by module, and matching
 * nothing; suppressed leaks are counted apart in the summary.  See
 * leak.h. */
#include "leak.h"

/* default suppressions: stdout's buffer (allocated by printf) */
static void test_leak_libc_internal_suppressed(void)
{
    struct report *rp = &default_run()->rp;
    bool internal = false;
    for (int i = 0; i < rp->nsites; i++)
        for (int k = 0; k < rp->sites[i].nframes; k++)
            internal |= libc_internal(&rp->sites[i].fr[k]);
    CHECK(!internal && rp->sup && rp->sblocks >= 1 && rp->sbytes >= 1024 && rp->ssites >= 1,
          "internal frame listed %d; suppressed part %d (%zu bytes in %zu blocks from %zu "
          "sites)",
          internal, rp->sup, rp->sbytes, rp->sblocks, rp->ssites);
}

/* what is left without leaks is C-library-internal, and the same as with
 * leaks */
static void test_leak_none_suppressed_same_as_leaky(void)
{
    struct report *rp = &none_run()->rp;
    struct report *rp_default = &default_run()->rp;
    CHECK(rp->sblocks == rp_default->sblocks && rp->sbytes == rp_default->sbytes,
          "suppressed %zu bytes in %zu blocks, the leaky run %zu in %zu", rp->sbytes,
          rp->sblocks, rp_default->sbytes, rp_default->sblocks);
}

/* MMPOOL_LEAK_SUPPRESS: one case per row */
typedef struct {
    const char *name, *value;
    const char *gone[N_LEAKS + 1];
    size_t bytes, blocks, sites;
} suppress_case;

static suppress_case suppress_cases[] = {
    {"leak_suppress_function", "MMPOOL_LEAK_SUPPRESS=leak_nodes", {"leak_nodes", NULL}, 480,
     10, 1},
    {"leak_suppress_list", "MMPOOL_LEAK_SUPPRESS=no_such_name,thread_leaker,leak_calloc",
     {"thread_leaker", "leak_calloc", NULL}, 288 + 63, 4 + 1, 2},
    {"leak_suppress_module", "MMPOOL_LEAK_SUPPRESS=leaky_prog",
     {"leak_big", "leak_via_realloc", "leak_deep", "leak_nodes", "thread_leaker",
      "leak_aligned", "leak_strings", "leak_calloc", "leak_zero", NULL},
     TOTAL_BYTES, TOTAL_BLOCKS, N_LEAKS},
    {"leak_suppress_nomatch", "MMPOOL_LEAK_SUPPRESS=no_such_name", {NULL}, 0, 0, 0},
};

static void leak_suppress(void *arg)
{
    const suppress_case *c = (const suppress_case *)arg;
    struct report *base = &default_run()->rp;
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", c->value, NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    int still = 0;
    for (int g = 0; c->gone[g]; g++) {
        struct site *s;
        still += sites_with(&rp, c->gone[g], &s, NULL);
    }
    size_t want_bytes = TOTAL_BYTES - c->bytes;
    size_t want_blocks = TOTAL_BLOCKS - c->blocks;
    size_t want_sites = N_LEAKS - c->sites;
    size_t want_sb = base->sbytes + c->bytes, want_sbl = base->sblocks + c->blocks,
           want_ss = base->ssites + c->sites;
    CHECK(r.status == 0 && rp.summary && still == 0 && rp.bytes == want_bytes &&
              rp.blocks == want_blocks && rp.nsum == want_sites &&
              rp.nsites == (int)want_sites && rp.sup == (want_sbl > 0) &&
              rp.sbytes == want_sb && rp.sblocks == want_sbl && rp.ssites == want_ss,
          "status %d; %d suppressed sites still listed; got %zu bytes/%zu blocks/%zu sites "
          "(suppressed %zu/%zu/%zu), want %zu/%zu/%zu (suppressed %zu/%zu/%zu)",
          r.status, still, rp.bytes, rp.blocks, rp.nsum, rp.sbytes, rp.sblocks, rp.ssites,
          want_bytes, want_blocks, want_sites, want_sb, want_sbl, want_ss);
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    RUN(leak_libc_internal_suppressed);
    for (size_t i = 0; i < sizeof suppress_cases / sizeof suppress_cases[0]; i++)
        tu_run_case_with(suppress_cases[i].name, leak_suppress, &suppress_cases[i]);
    RUN(leak_none_suppressed_same_as_leaky);
    return tu_finish();
}
