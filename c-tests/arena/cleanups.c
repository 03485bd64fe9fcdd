/* c-tests/arena/cleanups.c -- cleanup handlers: LIFO order, run once,
 * removal (and removing twice, through the wrong arena, NULL), NULL
 * handlers, and handlers that add cleanups, allocate, create children,
 * remove pending handlers or destroy an already destroyed child while
 * their arena is being reset or destroyed. */
#include "arena.h"

static void test_cleanup_lifo(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    for (int i = 1; i <= 100; i++)
        REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)i), "");
    CHECK(stats_of(a).cleanups == 100, "cleanups %zu", stats_of(a).cleanups);
    mmpool_arena_reset(a);
    REQUIRE(ev_n == 100, "%d handlers ran at reset, want 100", ev_n);
    for (int i = 0; i < 100; i++)
        CHECK(ev_log[i] == 100 - i, "position %d ran handler %d, want %d (LIFO)", i, ev_log[i],
              100 - i);
    CHECK(stats_of(a).cleanups == 0, "reset did not clear the cleanups");
    /* destroy runs them LIFO too */
    log_reset();
    for (int i = 1; i <= 5; i++)
        REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)i), "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 5 && ev_log[0] == 5 && ev_log[4] == 1, "destroy: %d ran, first %d", ev_n,
          ev_n ? ev_log[0] : -1);
}

static void test_cleanup_runs_once(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)7), "");
    mmpool_arena_reset(a);
    mmpool_arena_reset(a);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 1, "handler ran %d times (reset forgets nothing, runs nothing twice)", ev_n);
}

static void test_cleanup_remove(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *h[6];
    for (int i = 0; i < 6; i++)
        REQUIRE(h[i] = mmpool_arena_cleanup_add(a, log_handler, (void *)(intptr_t)i), "");
    CHECK(mmpool_arena_cleanup_remove(a, h[5]) == 0, "remove newest");
    CHECK(mmpool_arena_cleanup_remove(a, h[2]) == 0, "remove middle");
    CHECK(mmpool_arena_cleanup_remove(a, h[0]) == 0, "remove oldest");
    CHECK(stats_of(a).cleanups == 3, "cleanups %zu, want 3", stats_of(a).cleanups);
    mmpool_arena_reset(a);
    CHECK(ev_n == 3 && ev_log[0] == 4 && ev_log[1] == 3 && ev_log[2] == 1,
          "ran %d: %d %d %d, want 4 3 1", ev_n, ev_log[0], ev_log[1], ev_log[2]);
    /* handles of cleanups that already ran are not registered any more */
    CHECK(mmpool_arena_cleanup_remove(a, h[4]) == -1, "handle of a cleanup that ran accepted");
    mmpool_arena_destroy(a);
}

static void test_cleanup_remove_twice(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(a, log_handler, (void *)1);
    REQUIRE(h, "");
    CHECK(mmpool_arena_cleanup_remove(a, h) == 0, "");
    CHECK(mmpool_arena_cleanup_remove(a, h) == -1, "second remove accepted");
    CHECK(stats_of(a).cleanups == 0, "cleanups %zu", stats_of(a).cleanups);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 0, "a removed handler ran");
}

static void test_cleanup_remove_wrong_arena(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0), *b = mmpool_arena_create(0);
    REQUIRE(a && b, "");
    mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
    REQUIRE(c, "");
    log_reset();
    mmpool_cleanup_t *ha = mmpool_arena_cleanup_add(a, log_handler, (void *)1);
    mmpool_cleanup_t *hc = mmpool_arena_cleanup_add(c, log_handler, (void *)2);
    REQUIRE(ha && hc, "");
    CHECK(mmpool_arena_cleanup_remove(b, ha) == -1, "b removed a's handler");
    CHECK(mmpool_arena_cleanup_remove(c, ha) == -1, "child removed parent's handler");
    CHECK(mmpool_arena_cleanup_remove(a, hc) == -1, "parent removed child's handler");
    CHECK(stats_of(a).cleanups == 1 && stats_of(c).cleanups == 1, "");
    mmpool_arena_destroy(b);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 2 && ev_log[0] == 2 && ev_log[1] == 1, "ran %d handlers", ev_n);
}

static void test_cleanup_remove_null(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    CHECK(mmpool_arena_cleanup_remove(a, NULL) == -1, "remove(NULL) accepted");
    mmpool_arena_destroy(a);
}

static void test_cleanup_null_handler(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    errno = 0;
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(a, NULL, (void *)1);
    /* Either accepted (and skipped when run) or refused with EINVAL. */
    CHECK(h != NULL || errno == EINVAL, "cleanup_add(NULL handler): NULL errno %d", errno);
    mmpool_arena_reset(a);
    mmpool_arena_destroy(a);
}

/* Handler state for the re-entrant cases. */
typedef struct {
    mmpool_arena_t *a;
    int id;
    int depth;
} reent_t;

static void adding_handler(void *data)
{
    reent_t *r = data;
    log_handler((void *)(intptr_t)r->id);
    if (r->depth > 0) {
        reent_t *n = mmpool_arena_alloc(r->a, sizeof *n);
        if (!n) {
            log_handler((void *)(intptr_t)-1);
            return;
        }
        *n = (reent_t){ r->a, r->id + 1, r->depth - 1 };
        if (!mmpool_arena_cleanup_add(r->a, adding_handler, n))
            log_handler((void *)(intptr_t)-1);
    }
}

static void test_cleanup_add_during_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    reent_t *r = mmpool_arena_alloc(a, sizeof *r);
    REQUIRE(r, "");
    *r = (reent_t){ a, 10, 5 };
    REQUIRE(mmpool_arena_cleanup_add(a, adding_handler, r), "");
    REQUIRE(mmpool_arena_cleanup_add(a, log_handler, (void *)1), "");
    mmpool_arena_reset(a);
    /* 1 first (LIFO), then 10, whose handler adds 11, ... up to 15 */
    CHECK(ev_n == 7, "%d handlers ran, want 7 (1, 10..15)", ev_n);
    CHECK(log_count(-1) == 0, "cleanup_add failed inside a handler");
    CHECK(ev_n >= 1 && ev_log[0] == 1, "first handler %d, want 1", ev_log[0]);
    for (int i = 1; i < ev_n && i < 7; i++)
        CHECK(ev_log[i] == 9 + i, "position %d: %d, want %d", i, ev_log[i], 9 + i);
    CHECK(stats_of(a).cleanups == 0, "cleanups added during reset survived it: %zu",
          stats_of(a).cleanups);
    log_reset();
    mmpool_arena_reset(a);
    CHECK(ev_n == 0, "second reset ran %d handlers", ev_n);
    mmpool_arena_destroy(a);
    CHECK(ev_n == 0, "destroy ran %d handlers", ev_n);
}

static void test_cleanup_add_during_destroy(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    reent_t *r = mmpool_arena_alloc(a, sizeof *r);
    REQUIRE(r, "");
    *r = (reent_t){ a, 20, 3 };
    REQUIRE(mmpool_arena_cleanup_add(a, adding_handler, r), "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 4 && log_pos(20) == 0 && log_pos(23) == 3,
          "destroy ran %d handlers, want 20..23 in order", ev_n);
    CHECK(log_count(-1) == 0, "cleanup_add failed inside a handler");
}

typedef struct {
    mmpool_arena_t *a;
    void *large;
} alloc_in_cleanup_t;

static void allocating_handler(void *data)
{
    alloc_in_cleanup_t *c = data;
    void *s = mmpool_arena_alloc(c->a, 100);
    c->large = mmpool_arena_alloc(c->a, 200000);
    if (s)
        memset(s, 1, 100);
    if (c->large)
        memset(c->large, 2, 200000);
    log_handler((void *)(intptr_t)(s && c->large ? 1 : -1));
}

static void test_cleanup_allocates_during_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    mmpool_arena_stats_t b = stats_of(a);
    log_reset();
    alloc_in_cleanup_t *c = mmpool_arena_alloc(a, sizeof *c);
    REQUIRE(c, "");
    c->a = a;
    c->large = NULL;
    REQUIRE(mmpool_arena_cleanup_add(a, allocating_handler, c), "");
    mmpool_arena_reset(a);
    CHECK(ev_n == 1 && ev_log[0] == 1, "handler could not allocate during reset");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.large_blocks == 0 && s.bytes_held == b.bytes_held && s.bytes_requested == 0 &&
              s.blocks == 1,
          "memory allocated by a cleanup survived the reset: large %zu held %zu (was %zu) "
          "req %zu",
          s.large_blocks, s.bytes_held, b.bytes_held, s.bytes_requested);
    /* and during destroy: must not leak or crash */
    alloc_in_cleanup_t *d = mmpool_arena_alloc(a, sizeof *d);
    REQUIRE(d, "");
    d->a = a;
    d->large = NULL;
    REQUIRE(mmpool_arena_cleanup_add(a, allocating_handler, d), "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 2 && ev_log[1] == 1, "handler could not allocate during destroy");
}

/* A cleanup handler that creates a child of the arena being reset or
 * destroyed: the child belongs to the arena, so it must be destroyed with
 * it (its own cleanups run) and not outlive it. */
static void child_creating_handler(void *data)
{
    mmpool_arena_t *a = data;
    mmpool_arena_t *c = mmpool_arena_create_child(a, 0);
    if (!c || !mmpool_arena_cleanup_add(c, log_handler, (void *)(intptr_t)42))
        log_handler((void *)(intptr_t)-1);
    else
        log_handler((void *)(intptr_t)41);
}

static void test_cleanup_creates_child_during_reset(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(a, child_creating_handler, a), "");
    mmpool_arena_reset(a);
    CHECK(log_count(41) == 1, "handler did not run or could not create a child");
    mmpool_arena_stats_t s = stats_of(a);
    CHECK(s.children == 0 && log_count(42) == 1,
          "a child created by a cleanup handler survived reset (children %zu, its cleanup "
          "ran %d times)",
          s.children, log_count(42));
    mmpool_arena_destroy(a);
    CHECK(log_count(42) == 1, "the child's cleanup ran %d times in all", log_count(42));
}

static void test_cleanup_creates_child_during_destroy(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(a, child_creating_handler, a), "");
    mmpool_arena_destroy(a);
    CHECK(log_count(41) == 1, "handler did not run or could not create a child");
    CHECK(log_count(42) == 1,
          "a child created by a cleanup during destroy was never destroyed (its cleanup ran "
          "%d times): leaked, with a dangling parent",
          log_count(42));
}

/* A handler that removes another pending handler of the same arena. */
typedef struct {
    mmpool_arena_t *a;
    mmpool_cleanup_t *victim;
} remover_t;

static void removing_handler(void *data)
{
    remover_t *r = data;
    log_handler((void *)(intptr_t)(mmpool_arena_cleanup_remove(r->a, r->victim) == 0 ? 30 : 31));
}

static void test_cleanup_removes_pending(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *victim = mmpool_arena_cleanup_add(a, log_handler, (void *)99);
    REQUIRE(victim, "");
    remover_t *r = mmpool_arena_alloc(a, sizeof *r);
    REQUIRE(r, "");
    r->a = a;
    r->victim = victim;
    REQUIRE(mmpool_arena_cleanup_add(a, removing_handler, r), "");
    mmpool_arena_reset(a);
    CHECK(ev_n == 1 && ev_log[0] == 30, "ran %d handlers, first %d (want only the remover, "
          "which removes the pending one)", ev_n, ev_n ? ev_log[0] : 0);
    mmpool_arena_destroy(a);
}

/* A parent's cleanup handler holding a pointer to a child: children go
 * first, so by then the child is destroyed and the handle is stale; the
 * destroy it attempts must be ignored, not run the child twice. */
typedef struct {
    mmpool_arena_t *child;
} stale_child_t;

static void destroy_child_handler(void *data)
{
    stale_child_t *sc = data;
    mmpool_arena_destroy(sc->child);
    log_handler((void *)(intptr_t)50);
}

static void test_cleanup_destroys_destroyed_child(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *C = mmpool_arena_create_child(P, 0);
    REQUIRE(C, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(C, log_handler, (void *)(intptr_t)51), "");
    stale_child_t *sc = mmpool_arena_alloc(P, sizeof *sc);
    REQUIRE(sc, "");
    sc->child = C;
    REQUIRE(mmpool_arena_cleanup_add(P, destroy_child_handler, sc), "");
    mmpool_arena_destroy(P);
    CHECK(ev_n == 2 && ev_log[0] == 51 && ev_log[1] == 50,
          "ran %d handlers (%d, %d): want the child's once, then the parent's", ev_n,
          ev_n > 0 ? ev_log[0] : 0, ev_n > 1 ? ev_log[1] : 0);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(cleanup_lifo);
    RUN(cleanup_runs_once);
    RUN(cleanup_remove);
    RUN(cleanup_remove_twice);
    RUN(cleanup_remove_wrong_arena);
    RUN(cleanup_remove_null);
    RUN(cleanup_null_handler);
    RUN(cleanup_add_during_reset);
    RUN(cleanup_add_during_destroy);
    RUN(cleanup_allocates_during_reset);
    RUN(cleanup_creates_child_during_reset);
    RUN(cleanup_creates_child_during_destroy);
    RUN(cleanup_removes_pending);
    RUN(cleanup_destroys_destroyed_child);
    return tu_finish();
}
