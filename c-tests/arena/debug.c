/* c-tests/arena/debug.c -- MMPOOL_ARENA_DEBUG=1: every allocation its own
 * block.  The case debug_mode re-executes this binary with the variable
 * set (and --arena-debug-child), where the debug_* cases run; their lines
 * are relayed as `  debug: ...`. */
#include "arena.h"

/* Runs the debug_* cases in this binary re-executed with
 * MMPOOL_ARENA_DEBUG=1, and relays what it prints. */
static void test_debug_mode(void)
{
    const char *vars[] = { "MMPOOL_ARENA_DEBUG=1", NULL };
    const char *argv[] = { tu_self_exe(), "--arena-debug-child", tu_full ? "--full" : "--smoke",
                           NULL };
    tu_prog_opts o;
    memset(&o, 0, sizeof o);
    o.vars = vars;
    o.inherit_env = true;
    o.timeout_s = tu_full ? 900 : 240;
    tu_prog_result r;
    REQUIRE(tu_run_prog(argv, &o, &r), "%s", r.err);
    int oks = 0, fails = 0;
    const char *texts[] = { r.out, r.err };
    for (int k = 0; k < 2; k++)
        for (const char *line = texts[k]; line && *line;) {
            const char *nl = strchr(line, '\n');
            int len = nl ? (int)(nl - line) : (int)strlen(line);
            printf("  debug: %.*s\n", len, line);
            if (strncmp(line, "ok ", 3) == 0)
                oks++;
            else if (strncmp(line, "FAIL ", 5) == 0)
                fails++;
            line = nl ? nl + 1 : NULL;
        }
    CHECK(r.status == 0, "debug child: status %d (%d ok, %d failed)", r.status, oks, fails);
    CHECK(oks >= 3 && fails == 0, "debug child: %d ok, %d failed", oks, fails);
}

static void test_debug_mode_active(void)
{
    const char *e = getenv("MMPOOL_ARENA_DEBUG");
    REQUIRE(e && strcmp(e, "1") == 0, "MMPOOL_ARENA_DEBUG not set in the child");
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *p = mmpool_arena_alloc(a, 16);
    REQUIRE(p, "");
    CHECK(stats_of(a).large_blocks == 1, "MMPOOL_ARENA_DEBUG=1 but a 16-byte allocation was "
          "bumped (is the library preloaded/linked?)");
    CHECK(mmpool_arena_free(a, p) == 0, "a 16-byte debug allocation is not its own block");
    mmpool_arena_destroy(a);
}

static void test_debug_each_alloc_own_block(void)
{
    mmpool_arena_t *a = mmpool_arena_create(4096);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    enum { N = 2000 };
    static void *p[N];
    static size_t sz[N];
    tu_rng r;
    tu_rng_seed(&r, 17);
    size_t req = 0;
    for (int i = 0; i < N; i++) {
        size_t s = 1 + (size_t)tu_below(&r, i % 50 == 0 ? 20000 : 200);
        void *q;
        switch (i % 5) {
        case 0: q = mmpool_arena_alloc(a, s); break;
        case 1: q = mmpool_arena_nalloc(a, s); break;
        case 2:
            q = mmpool_arena_calloc(a, s);
            if (q && !tu_all_zero(q, s))
                FAILF("calloc(%zu) not zeroed", s);
            break;
        case 3: q = mmpool_arena_memalign(a, s, 64); break;
        default: q = mmpool_arena_memalign(a, s, 4096); break;
        }
        REQUIRE(q, "allocation #%d", i);
        CHECK(tu_aligned(q, i % 5 == 4 ? 4096 : i % 5 == 3 ? 64 : i % 5 == 1 ? 1 : 16),
              "allocation #%d misaligned", i);
        CHECK(mmpool_owns(q), "allocation #%d not a pool block", i);
        p[i] = q;
        sz[i] = s;
        req += s;
        tu_fill(q, s, (uint64_t)i);
    }
    mmpool_arena_stats_t m = stats_of(a);
    CHECK(m.large_blocks == N, "large_blocks %zu, want %d (one per allocation)", m.large_blocks, N);
    CHECK(m.blocks == b.blocks, "bump blocks grew to %zu in debug mode", m.blocks);
    CHECK(m.bytes_requested == req, "bytes_requested %zu want %zu", m.bytes_requested, req);
    CHECK(m.bytes_held >= b.bytes_held + req, "bytes_held %zu", m.bytes_held);
    for (int i = 0; i < N; i++)
        CHECK(tu_check(p[i], sz[i], (uint64_t)i) == (size_t)-1, "allocation #%d overwritten", i);
    /* each one is its own block: freeable one by one, even 1-byte ones */
    int refused = 0;
    for (int i = N - 1; i >= 0; i -= 2)
        refused += mmpool_arena_free(a, p[i]) != 0;
    for (int i = N - 2; i >= 0; i -= 2)
        refused += mmpool_arena_free(a, p[i]) != 0;
    CHECK(refused == 0, "%d allocations were not separate blocks (free refused)", refused);
    mmpool_arena_stats_t f = stats_of(a);
    CHECK(f.large_blocks == 0 && f.bytes_held == b.bytes_held && f.bytes_requested == 0,
          "after freeing all: large %zu held %zu (base %zu) req %zu", f.large_blocks, f.bytes_held,
          b.bytes_held, f.bytes_requested);
    mmpool_arena_destroy(a);
}

static void test_debug_reset_and_destroy(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    log_reset();
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 100; i++)
            REQUIRE(mmpool_arena_alloc(a, 24), "");
        mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
        REQUIRE(c, "");
        for (int i = 0; i < 10; i++)
            REQUIRE(mmpool_arena_nalloc(c, 5), "");
        CHECK(stats_of(c).large_blocks == 10, "child large_blocks %zu", stats_of(c).large_blocks);
        REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)round), "");
        CHECK(stats_of(a).large_blocks >= 100, "large_blocks %zu", stats_of(a).large_blocks);
        mmpool_arena_reset(a);
        mmpool_arena_stats_t s = stats_of(a);
        CHECK(s.large_blocks == 0 && s.bytes_held == b.bytes_held && s.children == 0,
              "round %d after reset: large %zu held %zu (base %zu)", round, s.large_blocks,
              s.bytes_held, b.bytes_held);
    }
    CHECK(ev_n == 20, "cleanups in debug mode: %d ran", ev_n);
    mmpool_arena_destroy(a);
}

int main(int argc, char **argv)
{
    static const char *const flags[] = { "--arena-debug-child", NULL };
    tu_init_with(argc, argv, flags);
    tu_alarm(tu_full ? 900 : 240);
    if (tu_flag("--arena-debug-child")) {
        /* re-executed by debug_mode, with MMPOOL_ARENA_DEBUG=1 */
        RUN(debug_mode_active);
        RUN(debug_each_alloc_own_block);
        RUN(debug_reset_and_destroy);
        return tu_finish();
    }
    arena_refuse_debug_env(argv[0]);
    RUN(debug_mode);
    return tu_finish();
}
