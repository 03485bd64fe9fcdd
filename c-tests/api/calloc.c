/* c-tests/api/calloc.c -- calloc's edge cases (glibc semantics): zeroed
 * memory, also recycled, overflowing products, zero counts. */
#include "api.h"

static const size_t calloc_sizes[] = {
    1, 7, 8, 15, 16, 17, 24, 32, 48, 64, 80, 96, 100, 127, 128, 160, 192, 255, 256,
    320, 384, 448, 512, 640, 768, 1000, 1024, 1500, 2048, 3000, 4095, 4096, 4097,
    8192, 10000, 16384, 32768, 65536, 100000, 131072, 262144, 524288 + 3, MiB,
    4 * MiB + 5, 16 * MiB,
};
#define NCALLOC (sizeof calloc_sizes / sizeof calloc_sizes[0])

static void test_calloc_zero(void)
{
    for (size_t i = 0; i < NCALLOC; i++) {
        size_t n = calloc_sizes[i];
        void *a = xcalloc(n, 1), *b = xcalloc(1, n), *c = xcalloc(n / 8 + 1, 8);
        check_block(a, n, min_align(n), "calloc(n,1)");
        check_block(b, n, min_align(n), "calloc(1,n)");
        check_block(c, n / 8 * 8 + 8, 16, "calloc(n/8+1,8)");
        if (!a || !b || !c)
            return;
        CHECK(tu_all_zero(a, n), "calloc(%zu,1) not zeroed", n);
        CHECK(tu_all_zero(b, n), "calloc(1,%zu) not zeroed", n);
        CHECK(tu_all_zero(c, n / 8 * 8 + 8), "calloc(%zu,8) not zeroed", n / 8 + 1);
        xfree(a);
        xfree(b);
        xfree(c);
    }
}

/* Dirty blocks of every size, free them, calloc the same sizes: the
 * recycled memory must come back zeroed (also for cached large blocks). */
static void test_calloc_zero_after_reuse(void)
{
    enum { K = 64 };
    static void *b[K];
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < NCALLOC; i++) {
            size_t n = calloc_sizes[i];
            int k = n >= MiB ? 3 : K;
            for (int j = 0; j < k; j++) {
                b[j] = xmalloc(n);
                REQUIRE(b[j] != NULL, "malloc(%zu)", n);
                memset(b[j], 0xA5, xusable(b[j]));
            }
            for (int j = 0; j < k; j++)
                xfree(b[j]);
            for (int j = 0; j < k; j++) {
                /* round 1: a slightly smaller request reusing the same slot */
                size_t m = round ? n - n / 16 : n;
                b[j] = xcalloc(1, m);
                REQUIRE(b[j] != NULL, "calloc(1,%zu)", m);
                if (!tu_all_zero(b[j], m)) {
                    FAILF("calloc(1,%zu) returned dirty recycled memory "
                          "(after freeing blocks of %zu)", m, n);
                }
            }
            for (int j = 0; j < k; j++)
                xfree(b[j]);
            if (tu_case_failed)
                return;
        }
    }
    /* dirty via realloc growth, then calloc */
    void *p = xmalloc(100);
    REQUIRE(p != NULL, "");
    memset(p, 0xEE, 100);
    p = xrealloc(p, 3000);
    REQUIRE(p != NULL, "");
    memset(p, 0xEE, xusable(p));
    xfree(p);
    p = xcalloc(3000, 1);
    REQUIRE(p != NULL, "");
    CHECK(tu_all_zero(p, 3000), "calloc after realloc'd dirty block not zeroed");
    xfree(p);
    /* mmpool_calloc too */
    p = mmpool_malloc(2000);
    REQUIRE(p != NULL, "");
    memset(p, 0x77, 2000);
    mmpool_free(p);
    p = mmpool_calloc(250, 8);
    REQUIRE(p != NULL, "");
    CHECK(tu_all_zero(p, 2000), "mmpool_calloc returned dirty memory");
    mmpool_free(p);
}

static void test_calloc_overflow(void)
{
    static const size_t cases[][2] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX, SIZE_MAX},
        {((size_t)1 << 32) + 1, (size_t)1 << 32}, {(size_t)1 << 32, (size_t)1 << 32},
        {PDMAX / 2 + 1, 2}, {2, PDMAX / 2 + 1}, {(size_t)1 << 25, (size_t)1 << 25},
        {1, SIZE_MAX}, {SIZE_MAX, 1}, {PDMAX + 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        void *p = xcalloc(cases[i][0], cases[i][1]);
        CHECK(p == NULL, "calloc(%#zx, %#zx) succeeded", cases[i][0], cases[i][1]);
        CHECK(errno == ENOMEM, "calloc(%#zx, %#zx): errno %d, want ENOMEM",
              cases[i][0], cases[i][1], errno);
        if (p)
            xfree(p);
        errno = 0;
        p = mmpool_calloc(cases[i][0], cases[i][1]);
        CHECK(p == NULL && errno == ENOMEM, "mmpool_calloc(%#zx, %#zx): %p errno %d",
              cases[i][0], cases[i][1], p, errno);
        if (p)
            mmpool_free(p);
    }
}

static void test_calloc_zero_count(void)
{
    static const size_t cases[][2] = {{0, 0}, {0, 1}, {1, 0}, {0, SIZE_MAX}, {SIZE_MAX, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *p = xcalloc(cases[i][0], cases[i][1]);
        CHECK(p != NULL, "calloc(%#zx, %#zx) returned NULL (glibc returns a unique "
              "pointer)", cases[i][0], cases[i][1]);
        xfree(p);
    }
}

int main(int argc, char **argv)
{
    api_init(argc, argv);
    RUN(calloc_zero);
    RUN(calloc_zero_after_reuse);
    RUN(calloc_overflow);
    RUN(calloc_zero_count);
    return tu_finish();
}
