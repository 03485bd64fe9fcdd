/* c-tests/api/free.c -- free's edge cases (glibc semantics): free(NULL),
 * errno kept, and C23's free_sized and free_aligned_sized. */
#include "api.h"

static void test_free_null(void)
{
    xfree(NULL);
    mmpool_free(NULL);
    errno = 0;
    xfree(NULL);
    CHECK(errno == 0, "free(NULL) set errno %d", errno);
}

/* glibc >= 2.33 (and POSIX 2024): free() never changes errno. */
static void test_free_preserves_errno(void)
{
    static const size_t sizes[] = {8, 100, 5000, 200000, 8 * MiB, 64 * MiB};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = xmalloc(sizes[i]);
            REQUIRE(p != NULL, "");
            memset(p, 1, sizes[i]);
            errno = 4321;
            xfree(p);
            CHECK(errno == 4321, "free(block of %zu) changed errno to %d", sizes[i], errno);
            p = xaligned_alloc(4096, sizes[i]);
            REQUIRE(p != NULL, "");
            errno = 4321;
            xfree(p);
            CHECK(errno == 4321, "free(aligned block of %zu) changed errno to %d",
                  sizes[i], errno);
        }
}

typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

static void test_free_sized(void)
{
    free_sized_fn fs;
    free_aligned_sized_fn fas;
    *(void **)&fs = dlsym(RTLD_DEFAULT, "free_sized");
    *(void **)&fas = dlsym(RTLD_DEFAULT, "free_aligned_sized");
    REQUIRE(fs != NULL, "free_sized is not exported");
    REQUIRE(fas != NULL, "free_aligned_sized is not exported");
    long rss0 = tu_rss_kib();
    for (int it = 0; it < 2000; it++) {
        size_t n = (size_t)(it * 37 % 5000) + 1;
        if (it % 10 == 0)
            n = MiB + (size_t)it;
        void *p = xmalloc(n);
        REQUIRE(p != NULL, "");
        memset(p, 1, n);
        fs(p, n);
        p = xcalloc(n, 1);
        REQUIRE(p != NULL, "");
        fs(p, n);
        size_t a = (size_t)16 << (it % 9);
        size_t an = (n + a - 1) / a * a;
        p = xaligned_alloc(a, an);
        REQUIRE(p != NULL, "");
        CHECK(tu_aligned(p, a), "aligned_alloc");
        memset(p, 2, an);
        fas(p, a, an);
    }
    fs(NULL, 0);
    fas(NULL, 64, 0);
    long grow = tu_rss_kib() - rss0;
    CHECK(grow < 128 * 1024, "RSS grew by %ld KiB: free_sized does not free", grow);
}

int main(int argc, char **argv)
{
    api_init(argc, argv);
    RUN(free_null);
    RUN(free_preserves_errno);
    RUN(free_sized);
    return tu_finish();
}
