/* c-tests/api/exports.c -- the names the library exports: glibc's __libc_*
 * aliases, every standard name interposed, and the mmpool_* twins mixed
 * with the standard calls. */
#include "api.h"

typedef struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
} libc_aliases;

static void test_libc_aliases(void)
{
    static const char *const names[] = {"__libc_malloc", "__libc_free", "__libc_calloc",
                                        "__libc_realloc", "__libc_memalign",
                                        "__posix_memalign"};
    libc_aliases la;
    void **slots[] = {(void **)&la.malloc, (void **)&la.free, (void **)&la.calloc,
                      (void **)&la.realloc, (void **)&la.memalign,
                      (void **)&la.posix_memalign};
    bool pool = tu_malloc_is_mmpool();
    for (int i = 0; i < 6; i++) {
        *slots[i] = dlsym(RTLD_DEFAULT, names[i]);
        REQUIRE(*slots[i] != NULL, "%s is not exported", names[i]);
        if (pool)
            CHECK(strstr(tu_symbol_owner(names[i]), "libmmpool") != NULL,
                  "%s resolves to %s, not libmmpool", names[i], tu_symbol_owner(names[i]));
    }
    void *p = la.malloc(100);
    REQUIRE(p != NULL, "__libc_malloc");
    tu_fill(p, 100, 1);
    p = xrealloc(p, 5000);
    REQUIRE(p != NULL, "realloc of __libc_malloc block");
    CHECK(tu_check(p, 100, 1) == (size_t)-1, "contents");
    la.free(p);
    p = xmalloc(300);
    REQUIRE(p != NULL, "");
    p = la.realloc(p, 70000);
    REQUIRE(p != NULL, "__libc_realloc");
    xfree(p);
    p = la.calloc(10, 100);
    REQUIRE(p != NULL, "__libc_calloc");
    CHECK(tu_all_zero(p, 1000), "__libc_calloc not zeroed");
    xfree(p);
    p = la.memalign(256, 1000);
    REQUIRE(p != NULL && tu_aligned(p, 256), "__libc_memalign -> %p", p);
    la.free(p);
    p = SENTINEL;
    CHECK(la.posix_memalign(&p, 4096, 10) == 0 && tu_aligned(p, 4096),
          "__posix_memalign");
    xfree(p);
    p = SENTINEL;
    CHECK(la.posix_memalign(&p, 24, 10) == EINVAL && p == SENTINEL,
          "__posix_memalign(24) must be EINVAL");
    errno = 0;
    p = la.malloc(SIZE_MAX);
    CHECK(p == NULL && errno == ENOMEM, "__libc_malloc(SIZE_MAX)");
    if (pool) {
        p = la.malloc(64);
        CHECK(mmpool_owns(p), "__libc_malloc block not served by the pool");
        la.free(p);
    }
}

/* Every standard name resolves, as the program sees it, to libmmpool. */
static void test_exports_interposed(void)
{
    static const char *const names[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
        "free_sized", "free_aligned_sized", "__libc_malloc", "__libc_free",
        "__libc_calloc", "__libc_realloc", "__libc_memalign", "__posix_memalign",
        "mmpool_malloc", "mmpool_calloc", "mmpool_realloc", "mmpool_free",
        "mmpool_aligned_alloc", "mmpool_usable_size", "mmpool_owns", "mmpool_version",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *owner = tu_symbol_owner(names[i]);
        CHECK(strstr(owner, "libmmpool") != NULL, "%s resolves to '%s', not libmmpool",
              names[i], owner);
    }
}

static void test_mmpool_twins(void)
{
    void *p = mmpool_malloc(100);
    REQUIRE(p != NULL, "mmpool_malloc(100)");
    CHECK(tu_aligned(p, 16), "mmpool_malloc alignment");
    CHECK(mmpool_usable_size(p) >= 100, "mmpool_usable_size");
    CHECK(mmpool_usable_size(p) == xusable(p), "mmpool_usable_size %zu != "
          "malloc_usable_size %zu", mmpool_usable_size(p), xusable(p));
    CHECK(mmpool_owns(p), "mmpool_owns(mmpool_malloc block) false");
    tu_fill(p, 100, 8);
    p = mmpool_realloc(p, 10000);
    REQUIRE(p != NULL, "");
    CHECK(tu_check(p, 100, 8) == (size_t)-1, "mmpool_realloc lost contents");
    xfree(p);                                   /* mixed: mmpool_malloc -> free */
    p = xmalloc(50);
    REQUIRE(p != NULL, "");
    mmpool_free(p);                             /* mixed: malloc -> mmpool_free */
    p = mmpool_calloc(7, 9);
    REQUIRE(p != NULL && tu_all_zero(p, 63), "mmpool_calloc");
    mmpool_free(p);
    p = mmpool_aligned_alloc(4096, 10);
    REQUIRE(p != NULL && tu_aligned(p, 4096), "mmpool_aligned_alloc(4096)");
    mmpool_free(p);
    p = mmpool_malloc(0);
    CHECK(p != NULL, "mmpool_malloc(0) returned NULL");
    mmpool_free(p);
    p = mmpool_malloc(10);
    REQUIRE(p != NULL, "");
    CHECK(mmpool_realloc(p, 0) == NULL, "mmpool_realloc(p, 0) should free and return NULL");
    mmpool_free(NULL);
    const char *v = mmpool_version();
    CHECK(v != NULL && v[0] != 0, "mmpool_version() empty");
}

int main(int argc, char **argv)
{
    api_init(argc, argv);
    RUN(libc_aliases);
    RUN(exports_interposed);
    RUN(mmpool_twins);
    return tu_finish();
}
