/* c-tests/api/malloc.c -- malloc's edge cases (glibc semantics): malloc(0),
 * every size filled to its usable size, malloc_usable_size, ENOMEM, many
 * live blocks, a loop of large blocks. */
#include "api.h"

static void test_malloc_zero_unique(void)
{
    enum { N = 1000 };
    void **v = xmalloc(N * sizeof *v);
    REQUIRE(v != NULL, "");
    for (int i = 0; i < N; i++) {
        v[i] = xmalloc(0);
        CHECK(v[i] != NULL, "malloc(0) #%d returned NULL", i);
    }
    /* unique: sort-free O(N^2) is fine for 1000 */
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            if (v[i] && v[i] == v[j]) {
                FAILF("malloc(0) returned %p twice (#%d, #%d)", v[i], i, j);
                i = N;
                break;
            }
    for (int i = 0; i < N; i++)
        xfree(v[i]);
    void *p = xrealloc(NULL, 0);
    CHECK(p != NULL, "realloc(NULL, 0) should act as malloc(0)");
    xfree(p);
    xfree(v);
}

/* Every size 0..1024, then a geometric walk with +-1 neighbours up to
 * 4 MiB: alignment, usable size, fill each block to its usable size and
 * check that all the neighbours are intact. */
static void test_malloc_sizes_fill_usable(void)
{
    enum { K = 8 };
    size_t sizes[4096];
    size_t ns = 0;
    for (size_t s = 0; s <= 1024; s++)
        sizes[ns++] = s;
    for (size_t s = 1040; s <= 4 * MiB; s += s / 8 + 16) {
        sizes[ns++] = s - 1;
        sizes[ns++] = s;
        sizes[ns++] = s + 1;
    }
    for (size_t i = 0; i < ns; i++) {
        size_t size = sizes[i];
        int k = size > 256 * KiB ? 2 : K;
        void *b[K];
        size_t u[K];
        for (int j = 0; j < k; j++) {
            b[j] = xmalloc(size);
            check_block(b[j], size, min_align(size), "malloc");
            if (!b[j])
                return;
            u[j] = xusable(b[j]);
            tu_fill(b[j], u[j], size * K + (size_t)j);
        }
        for (int j = 0; j < k; j++) {
            size_t bad = tu_check(b[j], u[j], size * K + (size_t)j);
            if (bad != (size_t)-1) {
                FAILF("malloc(%zu) block %d (usable %zu) corrupted at offset %zu "
                      "by a neighbour's fill", size, j, u[j], bad);
                break;
            }
        }
        for (int j = 0; j < k; j += 2)
            xfree(b[j]);
        for (int j = 1; j < k; j += 2)
            xfree(b[j]);
        if (tu_case_failed)
            return;
    }
}

/* Three consecutive blocks; the middle one is filled to its usable size
 * with a second pattern after the outer ones were filled. */
static void test_usable_size_neighbours(void)
{
    for (size_t size = 1; size <= 70000; size += (size < 600 ? 1 : size / 16)) {
        void *a = xmalloc(size), *b = xmalloc(size), *c = xmalloc(size);
        REQUIRE(a && b && c, "malloc(%zu) failed", size);
        size_t ua = xusable(a), ub = xusable(b), uc = xusable(c);
        CHECK(ua >= size && ub >= size && uc >= size, "usable size < %zu", size);
        tu_fill(a, ua, 1);
        tu_fill(c, uc, 3);
        tu_fill(b, ub, 2);
        CHECK(tu_check(a, ua, 1) == (size_t)-1, "size %zu: filling the middle block "
              "to its usable size %zu corrupted the previous block", size, ub);
        CHECK(tu_check(c, uc, 3) == (size_t)-1, "size %zu: filling the middle block "
              "to its usable size %zu corrupted the next block", size, ub);
        CHECK(tu_check(b, ub, 2) == (size_t)-1, "size %zu: middle block corrupted", size);
        xfree(b);
        xfree(a);
        xfree(c);
        if (tu_case_failed)
            return;
    }
}

static void test_usable_size_null(void)
{
    CHECK(xusable(NULL) == 0, "malloc_usable_size(NULL) = %zu", xusable(NULL));
    CHECK(mmpool_usable_size(NULL) == 0, "mmpool_usable_size(NULL) = %zu",
          mmpool_usable_size(NULL));
}

static void test_malloc_enomem(void)
{
    for (size_t i = 0; i < NHUGE; i++) {
        errno = 0;
        void *p = xmalloc(huge_sizes[i]);
        CHECK(p == NULL, "malloc(%#zx) succeeded", huge_sizes[i]);
        CHECK(errno == ENOMEM, "malloc(%#zx): errno %d, want ENOMEM", huge_sizes[i], errno);
        if (p)
            xfree(p);
        errno = 0;
        p = mmpool_malloc(huge_sizes[i]);
        CHECK(p == NULL, "mmpool_malloc(%#zx) succeeded", huge_sizes[i]);
        CHECK(errno == ENOMEM, "mmpool_malloc(%#zx): errno %d, want ENOMEM",
              huge_sizes[i], errno);
        if (p)
            mmpool_free(p);
    }
    /* the allocator still works afterwards */
    void *p = xmalloc(100);
    CHECK(p != NULL, "malloc(100) after ENOMEM failed");
    xfree(p);
}

/* A million live small blocks; each records its own index, so any
 * overlap or double hand-out shows as a wrong index. */
static void test_many_live_blocks(void)
{
    size_t n = tu_full ? (size_t)4 << 20 : (size_t)1 << 20;
    static const size_t sz[] = {16, 32, 48, 64, 100, 24, 8, 200};
    void **v = xmalloc(n * sizeof *v);
    REQUIRE(v != NULL, "");
    for (size_t i = 0; i < n; i++) {
        size_t s = sz[i % 8];
        v[i] = xmalloc(s);
        REQUIRE(v[i] != NULL, "malloc #%zu", i);
        memcpy(v[i], &i, sizeof i);
        if (s >= 16)
            memset((char *)v[i] + 8, (int)(i & 0xff), s - 8);
    }
    for (size_t i = 0; i < n; i++) {
        size_t got;
        memcpy(&got, v[i], sizeof got);
        if (got != i) {
            FAILF("block #%zu at %p holds index %zu: blocks overlap", i, v[i], got);
            break;
        }
    }
    tu_rng r;
    tu_rng_seed(&r, 99);
    tu_shuffle(v, n, &r);                      /* shuffle, then free */
    for (size_t i = 0; i < n; i++)
        xfree(v[i]);
    xfree(v);
}

/* A loop of malloc/free of ~1 MiB blocks (the large-block cache path). */
static void test_large_malloc_free_loop(void)
{
    long rss0 = tu_rss_kib();
    int iters = tu_full ? 50000 : 5000;
    for (int i = 0; i < iters; i++) {
        size_t n = MiB + (size_t)(i % 7) * 4096 + (size_t)(i % 3);
        unsigned char *p = xmalloc(n);
        REQUIRE(p != NULL, "malloc(%zu)", n);
        p[0] = 1;
        p[n / 2] = 2;
        p[n - 1] = 3;
        if (i % 64 == 0) {
            void *q = xmalloc(n * 3);
            REQUIRE(q != NULL, "");
            memset(q, 5, n * 3);
            xfree(q);
        }
        CHECK(p[0] == 1 && p[n / 2] == 2 && p[n - 1] == 3, "large block contents");
        xfree(p);
    }
    long grow = tu_rss_kib() - rss0;
    CHECK(grow < 128 * 1024, "RSS grew by %ld KiB in a malloc/free loop", grow);
}

int main(int argc, char **argv)
{
    api_init(argc, argv);
    RUN(malloc_zero_unique);
    RUN(malloc_sizes_fill_usable);
    RUN(usable_size_neighbours);
    RUN(usable_size_null);
    RUN(malloc_enomem);
    RUN(many_live_blocks);
    RUN(large_malloc_free_loop);
    return tu_finish();
}
