/* c-tests/arena/children.c -- child arenas: counted in their parent,
 * destroyed before it (descendants' cleanups first), destroyed early,
 * reset with the parent, their own block size, deep chains and thousands
 * of siblings. */
#include "arena.h"

static void test_children_count(void)
{
    mmpool_arena_t *p = mmpool_arena_create(0);
    REQUIRE(p, "");
    mmpool_arena_stats_t b = stats_of(p);
    mmpool_arena_t *c[10];
    for (int i = 0; i < 10; i++)
        REQUIRE(c[i] = mmpool_arena_create_child(p, 0), "");
    mmpool_arena_t *g = mmpool_arena_create_child(c[3], 0);
    REQUIRE(g, "");
    mmpool_arena_stats_t s = stats_of(p);
    CHECK(s.children == 10, "children %zu, want 10 (direct children only)", s.children);
    CHECK(s.bytes_held == b.bytes_held && s.blocks == b.blocks,
          "children's memory counted in the parent (held %zu, was %zu)", s.bytes_held,
          b.bytes_held);
    CHECK(stats_of(c[3]).children == 1, "");
    mmpool_arena_destroy(c[3]);
    mmpool_arena_destroy(c[7]);
    CHECK(stats_of(p).children == 8, "children %zu after two destroys", stats_of(p).children);
    mmpool_arena_destroy(p);
}

/* Every arena's cleanups run after all of its descendants' (children
 * first), each arena's own handlers LIFO, the root's last. */
static void test_children_destroy_order(void)
{
    /* ids: P=1, C1=10, C2=20, G11=11, G12=12, G21=21, GG=111 (child of G11) */
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *C1 = mmpool_arena_create_child(P, 0);
    mmpool_arena_t *C2 = mmpool_arena_create_child(P, 1024);
    REQUIRE(C1 && C2, "");
    mmpool_arena_t *G11 = mmpool_arena_create_child(C1, 0);
    mmpool_arena_t *G12 = mmpool_arena_create_child(C1, 0);
    mmpool_arena_t *G21 = mmpool_arena_create_child(C2, 0);
    REQUIRE(G11 && G12 && G21, "");
    mmpool_arena_t *GG = mmpool_arena_create_child(G11, 0);
    REQUIRE(GG, "");
    struct { mmpool_arena_t *a; int id; } all[] = {
        { P, 1 }, { C1, 10 }, { C2, 20 }, { G11, 11 }, { G12, 12 }, { G21, 21 }, { GG, 111 },
    };
    log_reset();
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        /* two handlers per arena: id*1000+1 then id*1000+2 (runs first) */
        REQUIRE(mmpool_arena_cleanup_add(all[i].a, log_handler,
                                         (void *)(intptr_t)(all[i].id * 1000 + 1)), "");
        REQUIRE(mmpool_arena_cleanup_add(all[i].a, log_handler,
                                         (void *)(intptr_t)(all[i].id * 1000 + 2)), "");
        void *big = mmpool_arena_alloc(all[i].a, 50000);
        REQUIRE(big, "");
        memset(big, (int)i, 50000);
    }
    mmpool_arena_destroy(P);
    REQUIRE(ev_n == 14, "%d handlers ran, want 14", ev_n);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        int id = all[i].id;
        int p1 = log_pos(id * 1000 + 1), p2 = log_pos(id * 1000 + 2);
        CHECK(p1 >= 0 && p2 >= 0 && p2 < p1, "arena %d: its handlers ran at %d,%d (LIFO?)", id,
              p2, p1);
    }
    /* descendant before ancestor */
    static const int edges[][2] = { { 10, 1 }, { 20, 1 }, { 11, 10 }, { 12, 10 },
                                    { 21, 20 }, { 111, 11 }, { 111, 10 }, { 111, 1 } };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        int d = edges[i][0], an = edges[i][1];
        CHECK(log_pos(d * 1000 + 1) < log_pos(an * 1000 + 2),
              "descendant %d's cleanups ran after ancestor %d's", d, an);
    }
    CHECK(log_pos(1002) == 12 && log_pos(1001) == 13, "the root's cleanups did not run last");
}

static void test_child_destroy_early(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *C = mmpool_arena_create_child(P, 0);
    REQUIRE(C, "");
    mmpool_arena_t *G = mmpool_arena_create_child(C, 0);
    mmpool_arena_t *C2 = mmpool_arena_create_child(P, 0);
    REQUIRE(G && C2, "");
    log_reset();
    REQUIRE(mmpool_arena_cleanup_add(P, log_handler, (void *)1), "");
    REQUIRE(mmpool_arena_cleanup_add(C, log_handler, (void *)2), "");
    REQUIRE(mmpool_arena_cleanup_add(G, log_handler, (void *)3), "");
    REQUIRE(mmpool_arena_cleanup_add(C2, log_handler, (void *)4), "");
    mmpool_arena_destroy(C);
    CHECK(ev_n == 2 && ev_log[0] == 3 && ev_log[1] == 2, "destroy(C): ran %d, want G then C", ev_n);
    CHECK(stats_of(P).children == 1, "P children %zu after destroying C", stats_of(P).children);
    void *x = mmpool_arena_alloc(C2, 100);
    CHECK(x != NULL, "sibling unusable after destroying C");
    mmpool_arena_destroy(P);
    CHECK(ev_n == 4 && ev_log[2] == 4 && ev_log[3] == 1, "destroy(P): %d ran", ev_n);
    CHECK(log_count(2) == 1 && log_count(3) == 1, "an early-destroyed child was destroyed twice");
}

static void test_child_reset_parent(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    log_reset();
    for (int round = 0; round < 3; round++) {
        REQUIRE(mmpool_arena_cleanup_add(P, log_handler, (void *)1), "");
        for (int i = 0; i < 5; i++) {
            mmpool_arena_t *c = mmpool_arena_create_child(P, 0);
            REQUIRE(c, "");
            mmpool_arena_t *g = mmpool_arena_create_child(c, 0);
            REQUIRE(g, "");
            REQUIRE(mmpool_arena_cleanup_add(c, log_handler, (void *)2), "");
            REQUIRE(mmpool_arena_cleanup_add(g, log_handler, (void *)3), "");
            REQUIRE(mmpool_arena_alloc(g, 100000), "");
        }
        CHECK(stats_of(P).children == 5, "");
        int before = ev_n;
        mmpool_arena_reset(P);
        CHECK(ev_n - before == 11, "reset ran %d handlers, want 11", ev_n - before);
        CHECK(ev_log[ev_n - 1] == 1, "the parent's cleanup did not run after its children's");
        mmpool_arena_stats_t s = stats_of(P);
        CHECK(s.children == 0 && s.cleanups == 0, "after reset: children %zu cleanups %zu",
              s.children, s.cleanups);
        CHECK(mmpool_arena_alloc(P, 100) != NULL, "parent unusable after reset");
    }
    mmpool_arena_destroy(P);
    CHECK(ev_n == 33, "destroy after resets ran handlers again (%d)", ev_n);
}

static void test_child_block_size(void)
{
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    mmpool_arena_t *c = mmpool_arena_create_child(P, 1 * MiB);
    REQUIRE(c, "");
    mmpool_arena_stats_t s = stats_of(c);
    CHECK(s.bytes_held >= 1 * MiB && s.blocks == 1, "child held %zu", s.bytes_held);
    void *p = mmpool_arena_alloc(c, 200 * KiB); /* bumped in a 1 MiB block */
    CHECK(p && stats_of(c).large_blocks == 0, "200 KiB in a 1 MiB-block child not bumped");
    mmpool_arena_t *d = mmpool_arena_create_child(P, 1);
    REQUIRE(d, "");
    CHECK(stats_of(d).bytes_held >= 512, "child of block 1 not clamped");
    mmpool_arena_destroy(P);
}

/* A deep chain: destroying the root destroys every level. */
static void test_child_deep_chain(void)
{
    int depth = tu_full ? 5000 : 1000;
    mmpool_arena_t *root = mmpool_arena_create(512);
    REQUIRE(root, "");
    log_reset();
    mmpool_arena_t *cur = root;
    for (int i = 0; i < depth; i++) {
        mmpool_arena_t *c = mmpool_arena_create_child(cur, 512);
        REQUIRE(c, "level %d", i);
        REQUIRE(mmpool_arena_cleanup_add(c, log_handler, (void *)(intptr_t)i), "");
        cur = c;
    }
    mmpool_arena_destroy(root);
    REQUIRE(ev_n == depth, "%d of %d levels' cleanups ran", ev_n, depth);
    for (int i = 0; i < depth; i++)
        if (ev_log[i] != depth - 1 - i) {
            FAILF("position %d ran level %d, want %d (deepest first)", i, ev_log[i],
                  depth - 1 - i);
            break;
        }
}

static void test_child_many_siblings(void)
{
    size_t n = tu_full ? 50000 : 5000;
    mmpool_arena_t *P = mmpool_arena_create(0);
    REQUIRE(P, "");
    void **v = malloc(n * sizeof *v);
    REQUIRE(v, "");
    for (size_t i = 0; i < n; i++) {
        v[i] = mmpool_arena_create_child(P, 512);
        REQUIRE(v[i], "child %zu", i);
        REQUIRE(mmpool_arena_alloc(v[i], 64), "");
    }
    CHECK(stats_of(P).children == n, "");
    tu_rng r;
    tu_rng_seed(&r, 5);
    tu_shuffle(v, n, &r);
    for (size_t i = 0; i < n / 2; i++)
        mmpool_arena_destroy(v[i]);
    CHECK(stats_of(P).children == n - n / 2, "children %zu after destroying half",
          stats_of(P).children);
    for (size_t i = n / 2; i < n; i++)
        REQUIRE(mmpool_arena_alloc(v[i], 64), "surviving child unusable");
    mmpool_arena_destroy(P);
    free(v);
}

int main(int argc, char **argv)
{
    arena_init(argc, argv);
    RUN(children_count);
    RUN(children_destroy_order);
    RUN(child_destroy_early);
    RUN(child_reset_parent);
    RUN(child_block_size);
    RUN(child_deep_chain);
    RUN(child_many_siblings);
    return tu_finish();
}
