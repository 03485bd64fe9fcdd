/* c-tests/leak/frames.c -- the stack frames of leak report sites: the
 * innermost frame is the caller of malloc (through strdup too), 8 frames
 * by default, MMPOOL_LEAK_FRAMES=1..16 (clamped), and every leak's module
 * offset resolving with addr2line to the leaking line of leaky_prog.c.
 * See leak.h. */
#include "leak.h"

/* the innermost frame of a direct malloc is the leaking function, in
 * the program's own module */
static void test_leak_frame0_is_caller_of_malloc(void)
{
    struct report *rp = &default_run()->rp;
    struct site *s = NULL;
    int fi = -1;
    if (sites_with(rp, "leak_nodes", &s, &fi) == 1) {
        struct frame *f = &s->fr[0];
        CHECK(fi == 0 && tu_ends_with(f->module, "/leaky_prog") && f->off > 0 && f->fn_off > 0,
              "frame #%d; #0 is %s+0x%lx (%s+0x%lx)", fi, f->fn, f->fn_off, f->module, f->off);
    } else {
        FAILF("no leak_nodes site");
    }
}

/* strdup: the report names both strdup (in libc) and the caller */
static void test_leak_frames_through_strdup(void)
{
    struct report *rp = &default_run()->rp;
    struct site *s = NULL;
    int fi = -1;
    if (sites_with(rp, "leak_strings", &s, &fi) == 1)
        CHECK(fi >= 1 && strstr(s->fr[0].fn, "strdup") != NULL,
              "leak_strings at frame #%d, frame #0 is %s", fi, s->fr[0].fn);
    else
        FAILF("no leak_strings site");
}

static void test_leak_default_frames_8(void)
{
    struct report *rp = &default_run()->rp;
    int mf = max_frames(rp);
    struct site *deep = NULL;
    sites_with(rp, "leak_deep", &deep, NULL);
    CHECK(mf <= 8 && deep && deep->nframes == 8, "most frames %d, leak_deep has %d", mf,
          deep ? deep->nframes : -1);
}

static void test_leak_deep_frames_recursive(void)
{
    struct report *rp = &default_run()->rp;
    struct site *deep = NULL;
    sites_with(rp, "leak_deep", &deep, NULL);
    bool deep_all = deep != NULL;
    for (int k = 0; deep && k < deep->nframes; k++)
        deep_all &= fn_is(deep->fr[k].fn, "leak_deep");
    CHECK(deep_all, "not all 8 frames are leak_deep");
}

/* Is addr2line there?  (asked once) */
static bool have_addr2line(void)
{
    static int have = -1;
    if (have < 0) {
        const char *argv[] = {"addr2line", "--version", NULL};
        tu_prog_result r;
        tu_run_prog(argv, NULL, &r);
        have = r.status == 0;
    }
    return have;
}

/* leak_addr2line_<function>: the module offsets resolve with addr2line
 * to the leaking lines (one case per row of LEAKS) */
static void leak_addr2line(void *arg)
{
    const struct expected_leak *leak = (const struct expected_leak *)arg;
    if (!have_addr2line()) {
        /* scripts/run-c-tests.sh installs it: a check that did not run
         * must not pass silently */
        FAILF("not run: addr2line not found");
        return;
    }
    leak_run *d = default_run();
    struct report *rp = &d->rp;
    long want = tu_value_of(d->r.out, tu_fmt("line %s", leak->fn));
    struct site *ls = NULL;
    int k = -1;
    if (sites_with(rp, leak->fn, &ls, &k) != 1 || want <= 0) {
        FAILF("no site or no line for %s (line %ld)", leak->fn, want);
        return;
    }
    struct frame *f = &ls->fr[k];
    const char *argv[] = {"addr2line", "-e", f->module, tu_fmt("0x%lx", f->off), NULL};
    tu_prog_result a;
    tu_run_prog(argv, NULL, &a);
    char *suffix = tu_fmt("leaky_prog.c:%ld", want);
    /* "/path/leaky_prog.c:61" or "... (discriminator 3)" */
    char *at = strstr(a.out, suffix);
    bool good = a.status == 0 && at != NULL &&
                (at[strlen(suffix)] == '\n' || at[strlen(suffix)] == ' ');
    CHECK(good, "addr2line -e %s 0x%lx gave '%s', want ...%s", f->module, f->off,
          tu_excerpt(a.out, 200), suffix);
}

/* MMPOOL_LEAK_FRAMES: one case per row */
typedef struct {
    const char *name, *value;
    int want; /* frames of leak_deep (deeper than any limit) */
} frames_case;

static frames_case frames_cases[] = {
    {"leak_frames_1", "MMPOOL_LEAK_FRAMES=1", 1},
    {"leak_frames_3", "MMPOOL_LEAK_FRAMES=3", 3},
    {"leak_frames_16", "MMPOOL_LEAK_FRAMES=16", 16},
    {"leak_frames_clamped_to_16", "MMPOOL_LEAK_FRAMES=100", 16},
};

static void leak_frames(void *arg)
{
    const frames_case *c = (const frames_case *)arg;
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", c->value, NULL};
    tu_prog_result r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    int deep_frames = -1;
    for (int s = 0; s < rp.nsites; s++)
        if (rp.sites[s].bytes == 1000 && rp.sites[s].nframes > 0 &&
            fn_is(rp.sites[s].fr[0].fn, "leak_deep"))
            deep_frames = rp.sites[s].nframes;
    bool one = c->want == 1 ? (min_frames(&rp) == 1 && max_frames(&rp) == 1) : true;
    /* 1 frame: every leak has its own immediate caller, so still 7 sites */
    CHECK(r.status == 0 && rp.bad == 0 && one && max_frames(&rp) <= c->want &&
              deep_frames == c->want && rp.bytes == TOTAL_BYTES &&
              rp.blocks == TOTAL_BLOCKS && rp.nsum == N_LEAKS,
          "status %d, %d bad lines, frames per site %d..%d, leak_deep %d (want %d); "
          "summary %zu/%zu/%zu",
          r.status, rp.bad, min_frames(&rp), max_frames(&rp), deep_frames, c->want, rp.bytes,
          rp.blocks, rp.nsum);
}

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    RUN(leak_frame0_is_caller_of_malloc);
    RUN(leak_frames_through_strdup);
    RUN(leak_default_frames_8);
    RUN(leak_deep_frames_recursive);
    for (size_t i = 0; i < N_LEAKS; i++)
        tu_run_case_with(tu_fmt("leak_addr2line_%s", LEAKS[i].fn), leak_addr2line,
                         (void *)&LEAKS[i]);
    for (size_t i = 0; i < sizeof frames_cases / sizeof frames_cases[0]; i++)
        tu_run_case_with(frames_cases[i].name, leak_frames, &frames_cases[i]);
    return tu_finish();
}
