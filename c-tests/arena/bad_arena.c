/* c-tests/arena/bad_arena.c -- arenas that are not arenas: NULL, stack,
 * static and malloc memory, an arena's own allocations, a pointer to the
 * last bytes of a pool block (the check must not read past it), pointers
 * into every page around live pool blocks (the secure build's guard
 * pages among them), a destroyed arena's handle.  Every call must answer (NULL + EINVAL, -1,
 * zero statistics) or ignore them, never trust them. */
#include "arena.h"

/* Every call with an arena that is not one must be answered, not trusted:
 * NULL + EINVAL from the allocating calls, -1 from free/cleanup_remove,
 * zero statistics, and destroy/reset ignored. */
static void expect_rejected(mmpool_arena_t *bad, const char *what)
{
    void *p;
    errno = 0;
    p = mmpool_arena_alloc(bad, 16);
    CHECK(p == NULL && errno == EINVAL, "%s: alloc gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_nalloc(bad, 16);
    CHECK(p == NULL && errno == EINVAL, "%s: nalloc gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_calloc(bad, 16);
    CHECK(p == NULL && errno == EINVAL, "%s: calloc gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_memalign(bad, 16, 64);
    CHECK(p == NULL && errno == EINVAL, "%s: memalign gave %p errno %d", what, p, errno);
    errno = 0;
    p = mmpool_arena_alloc(bad, 1 * MiB);
    CHECK(p == NULL && errno == EINVAL, "%s: large alloc gave %p errno %d", what, p, errno);
    errno = 0;
    mmpool_arena_t *c = mmpool_arena_create_child(bad, 0);
    CHECK(c == NULL && errno == EINVAL, "%s: create_child gave %p errno %d", what,
          (void *)c, errno);
    errno = 0;
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(bad, log_handler, (void *)1);
    CHECK(h == NULL && errno == EINVAL, "%s: cleanup_add gave %p errno %d", what,
          (void *)h, errno);
    int x = 0;
    CHECK(mmpool_arena_free(bad, &x) == -1, "%s: free accepted", what);
    CHECK(mmpool_arena_free(bad, NULL) == -1, "%s: free(NULL) accepted", what);
    CHECK(mmpool_arena_cleanup_remove(bad, NULL) == -1, "%s: cleanup_remove accepted", what);
    mmpool_arena_stats_t s = stats_of(bad);
    CHECK(s.bytes_requested == 0 && s.bytes_held == 0 && s.blocks == 0 &&
              s.large_blocks == 0 && s.children == 0 && s.cleanups == 0,
          "%s: stats not all zero (held %zu blocks %zu)", what, s.bytes_held, s.blocks);
    mmpool_arena_reset(bad);   /* ignored */
    mmpool_arena_destroy(bad); /* ignored */
}

static void test_null_arena_alloc(void)
{
    errno = 0;
    void *p = mmpool_arena_alloc(NULL, 16);
    CHECK(p == NULL && errno == EINVAL, "alloc(NULL) = %p errno %d", p, errno);
    errno = 0;
    p = mmpool_arena_alloc(NULL, 1 * MiB);
    CHECK(p == NULL && errno == EINVAL, "alloc(NULL, 1M) = %p errno %d", p, errno);
}

static void test_null_arena_nalloc(void)
{
    errno = 0;
    void *p = mmpool_arena_nalloc(NULL, 5);
    CHECK(p == NULL && errno == EINVAL, "nalloc(NULL) = %p errno %d", p, errno);
}

static void test_null_arena_calloc(void)
{
    errno = 0;
    void *p = mmpool_arena_calloc(NULL, 5);
    CHECK(p == NULL && errno == EINVAL, "calloc(NULL) = %p errno %d", p, errno);
}

static void test_null_arena_memalign(void)
{
    errno = 0;
    void *p = mmpool_arena_memalign(NULL, 5, 64);
    CHECK(p == NULL && errno == EINVAL, "memalign(NULL) = %p errno %d", p, errno);
    errno = 0;
    p = mmpool_arena_memalign(NULL, 5, 3);
    CHECK(p == NULL && errno == EINVAL, "memalign(NULL, bad alignment) = %p errno %d", p, errno);
}

static void test_null_arena_create_child(void)
{
    errno = 0;
    mmpool_arena_t *c = mmpool_arena_create_child(NULL, 0);
    CHECK(c == NULL && errno == EINVAL, "create_child(NULL) = %p errno %d", (void *)c, errno);
}

static void test_null_arena_destroy_reset(void)
{
    mmpool_arena_destroy(NULL);
    mmpool_arena_reset(NULL);
}

static void test_null_arena_free(void)
{
    int x;
    CHECK(mmpool_arena_free(NULL, &x) == -1, "free(NULL arena) accepted");
    CHECK(mmpool_arena_free(NULL, NULL) == -1, "free(NULL, NULL) accepted");
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *big = mmpool_arena_alloc(a, 100000);
    REQUIRE(big, "");
    CHECK(mmpool_arena_free(NULL, big) == -1, "free(NULL arena, a real large block) accepted");
    CHECK(stats_of(a).large_blocks == 1, "");
    mmpool_arena_destroy(a);
}

static void test_null_arena_cleanup_add(void)
{
    errno = 0;
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(NULL, log_handler, NULL);
    CHECK(h == NULL && errno == EINVAL, "cleanup_add(NULL) = %p errno %d", (void *)h, errno);
}

static void test_null_arena_cleanup_remove(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    log_reset();
    mmpool_cleanup_t *h = mmpool_arena_cleanup_add(a, log_handler, (void *)1);
    REQUIRE(h, "");
    CHECK(mmpool_arena_cleanup_remove(NULL, h) == -1, "cleanup_remove(NULL arena) accepted");
    CHECK(mmpool_arena_cleanup_remove(NULL, NULL) == -1, "");
    mmpool_arena_destroy(a);
    CHECK(ev_n == 1, "handler removed through a NULL arena");
}

static void test_invalid_arena_stack(void)
{
    uint64_t fake[64];
    memset(fake, 0, sizeof fake);
    expect_rejected((mmpool_arena_t *)fake, "stack");
    memset(fake, 0xFF, sizeof fake);
    expect_rejected((mmpool_arena_t *)fake, "stack 0xff");
}

static char static_buf[4096] __attribute__((aligned(64)));

static void test_invalid_arena_static(void)
{
    expect_rejected((mmpool_arena_t *)static_buf, "static");
}

static void test_invalid_arena_malloc_block(void)
{
    static const size_t sizes[] = { 64, 1000, 20000, 1 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        REQUIRE(p, "");
        memset(p, 0x3C, sizes[i]);
        expect_rejected(p, "malloc block");
        memset(p, 0, sizes[i]);
        expect_rejected(p, "zeroed malloc block");
        free(p);
    }
}

static void test_invalid_arena_allocation(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    void *small = mmpool_arena_alloc(a, 256);
    void *big = mmpool_arena_alloc(a, 100000);
    REQUIRE(small && big, "");
    memset(small, 0x11, 256);
    memset(big, 0x22, 100000);
    expect_rejected(small, "arena allocation");
    expect_rejected(big, "large arena allocation");
    expect_rejected((mmpool_arena_t *)((char *)a + 16), "arena + 16");
    CHECK(stats_of(a).large_blocks == 1, "the real arena was affected");
    mmpool_arena_destroy(a);
}

/* In a child of the crash tests below: a bogus handle must be refused
 * by the arena calls (the child exits 4 if alloc accepts it); stats,
 * reset and destroy must ignore it. A crash kills the child. */
static void probe_bogus_handle(mmpool_arena_t *bad)
{
    errno = 0;
    void *r = mmpool_arena_alloc(bad, 16);
    if (r != NULL || errno != EINVAL)
        _exit(4);
    mmpool_arena_stats_t s;
    mmpool_arena_stats(bad, &s);
    mmpool_arena_reset(bad);
    mmpool_arena_destroy(bad);
}

/* Run `child` in a forked child; it must exit 0 (a crash or a refused
 * probe fails the case, described by `what`). */
static void expect_child_survives(void (*child)(void *), unsigned timeout, const char *what)
{
    tu_child_result r;
    REQUIRE(tu_run_child(child, NULL, timeout, &r), "fork");
    CHECK(r.exited && r.exit_code == 0, "%s %s %d", what,
          r.signaled ? "crashed with signal" : "exited", r.signaled ? r.sig : r.exit_code);
}

/* A pointer to the last bytes of a pool block, with nothing mapped after
 * it: validating it as an arena must not read past the block. Run in a
 * child process so a crash is a failure, not the end of the test. */
static void block_end_child(void *arg)
{
    (void)arg;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    for (int k = 0; k < 2; k++) {
        size_t n = k ? 8 * MiB : 100000;
        char *p = malloc(n);
        if (!p)
            _exit(3);
        char *e = p + malloc_usable_size(p);
        for (size_t guard = 0; guard < 2 * ps && mmpool_owns(e); guard++)
            e++;
        if (((uintptr_t)e & (ps - 1)) == 0) /* page-aligned end: put a guard there */
            (void)mmap(e, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                       -1, 0);
        for (int off = 1; off <= 8; off++)
            probe_bogus_handle((mmpool_arena_t *)(e - off));
    }
}

static void test_invalid_arena_block_end(void)
{
    expect_child_survives(block_end_child, 20,
                          "arena calls on a pointer to the last bytes of a pool block before an "
                          "unmapped page (the arena check must not read past the block):");
}

/* Pointers into every page of the pool's memory around live blocks (a
 * small block's 64 KiB span, a medium one's, a large block's mapping and
 * the granule before it): the secure build keeps guard pages there
 * (after a slab's header page, at a slab's end, around a large block),
 * and the arena check must not read them. In a child: a crash is a
 * failure. */
static void pool_pages_child(void *arg)
{
    (void)arg;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    const uintptr_t granule = 64 * 1024;
    static const size_t sizes[] = {64, 2000, 20000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *p = malloc(sizes[i]);
        if (!p)
            _exit(3);
        uintptr_t base = ((uintptr_t)p & ~(granule - 1)) - (sizes[i] > 100000 ? granule : 0);
        uintptr_t end = ((uintptr_t)p + sizes[i] + 2 * granule) & ~(granule - 1);
        for (uintptr_t pg = base; pg < end; pg += ps) {
            if (!mmpool_owns((void *)pg) && !mmpool_owns((void *)(pg + 16)))
                continue; /* not the pool's: the other tests cover that */
            for (uintptr_t off = 0; off < ps; off += ps / 4)
                probe_bogus_handle((mmpool_arena_t *)(pg + off + 16));
        }
        free(p);
    }
    _exit(0);
}

static void test_invalid_arena_any_pool_page(void)
{
    expect_child_survives(pool_pages_child, 60,
                          "arena calls on pointers into the pool's pages around a live block "
                          "(the arena check must not read a guard page, nor accept them):");
}

static void test_destroyed_arena_handle(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    REQUIRE(mmpool_arena_alloc(a, 100), "");
    mmpool_arena_destroy(a);
    /* use-after-destroy is a caller bug, but the handle check catches it
     * as long as the memory was not reused for another arena */
    errno = 0;
    void *p = mmpool_arena_alloc(a, 16);
    CHECK(p == NULL && errno == EINVAL, "alloc on a destroyed arena = %p errno %d", p, errno);
    mmpool_arena_destroy(a); /* double destroy: ignored */
    mmpool_arena_reset(a);
    CHECK(stats_of(a).blocks == 0, "destroyed arena still reports blocks");
}

/* A thread that destroys the arena it is handed. */
static void *destroy_it(void *a)
{
    mmpool_arena_destroy(a);
    return NULL;
}

/* The arena this thread used last is answered from a per-thread hint
 * (no page-map lookup): a destroy by another thread, or by this one, must
 * still make its handle invalid here, and an arena created where a
 * destroyed one was must be accepted. */
static void test_destroyed_arena_handle_hinted(void)
{
    mmpool_arena_t *a = mmpool_arena_create(0);
    REQUIRE(a, "");
    for (int i = 0; i < 3; i++)
        REQUIRE(mmpool_arena_alloc(a, 32), ""); /* `a` is this thread's hint */
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, destroy_it, a) == 0, "");
    pthread_join(t, NULL);
    errno = 0;
    void *p = mmpool_arena_alloc(a, 16);
    CHECK(p == NULL && errno == EINVAL,
          "alloc on an arena another thread destroyed = %p errno %d", p, errno);
    CHECK(mmpool_arena_free(a, NULL) == -1, "free on a destroyed arena accepted");
    /* New arenas, some likely where `a` was: each is valid until it goes. */
    for (int i = 0; i < 8; i++) {
        mmpool_arena_t *b = mmpool_arena_create(0);
        REQUIRE(b, "");
        CHECK(mmpool_arena_alloc(b, 16) != NULL, "alloc on a new arena %p failed", (void *)b);
        CHECK(mmpool_arena_alloc(b, 16) != NULL, "second alloc on %p failed", (void *)b);
        mmpool_arena_destroy(b);
        errno = 0;
        p = mmpool_arena_alloc(b, 16);
        CHECK(p == NULL && errno == EINVAL, "alloc on destroyed %p = %p errno %d", (void *)b,
              p, errno);
    }
}

/* A child is this thread's hint when its parent's reset destroys it: the
 * child's handle must be invalid afterwards, the parent's valid. */
static void test_child_destroyed_by_reset_while_hinted(void)
{
    mmpool_arena_t *parent = mmpool_arena_create(0);
    REQUIRE(parent, "");
    mmpool_arena_t *child = mmpool_arena_create_child(parent, 0);
    REQUIRE(child, "");
    REQUIRE(mmpool_arena_alloc(child, 32), ""); /* `child` is the hint */
    mmpool_arena_reset(parent);
    errno = 0;
    void *p = mmpool_arena_alloc(child, 16);
    CHECK(p == NULL && errno == EINVAL, "alloc on a child its parent's reset destroyed = %p errno %d",
          p, errno);
    CHECK(mmpool_arena_alloc(parent, 16) != NULL, "the parent is still valid after its reset");
    CHECK(stats_of(parent).children == 0, "the reset parent still counts a child");
    mmpool_arena_destroy(parent);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(null_arena_alloc);
    RUN(null_arena_nalloc);
    RUN(null_arena_calloc);
    RUN(null_arena_memalign);
    RUN(null_arena_create_child);
    RUN(null_arena_destroy_reset);
    RUN(null_arena_free);
    RUN(null_arena_cleanup_add);
    RUN(null_arena_cleanup_remove);
    RUN(invalid_arena_stack);
    RUN(invalid_arena_static);
    RUN(invalid_arena_malloc_block);
    RUN(invalid_arena_allocation);
    RUN(invalid_arena_block_end);
    RUN(invalid_arena_any_pool_page);
    RUN(destroyed_arena_handle);
    RUN(destroyed_arena_handle_hinted);
    RUN(child_destroyed_by_reset_while_hinted);
    return tu_finish();
}
