/* c-tests/owns.c -- proof that the pool served the program.
 *
 * Blocks from every allocation entry point, and from libc functions that
 * allocate internally (strdup, getline, fopen, ...), are mmpool_owns();
 * stack, static, mapped and glibc-allocated addresses are not. */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>

static int a_static;
static char a_static_array[4096];

static void expect_owned(const void *p, const char *what)
{
    if (!p)
        FAILF("%s returned NULL", what);
    else if (!mmpool_owns(p))
        FAILF("%s = %p is not mmpool_owns(): not served by the pool", what, p);
}

static void expect_foreign(const void *p, const char *what)
{
    if (mmpool_owns(p))
        FAILF("mmpool_owns(%s = %p) is true", what, p);
}

static void test_malloc_is_mmpool(void)
{
    const char *owner = tu_symbol_owner("malloc");
    CHECK(strstr(owner, "libmmpool") != NULL, "malloc resolves to '%s'", owner);
    owner = tu_symbol_owner("free");
    CHECK(strstr(owner, "libmmpool") != NULL, "free resolves to '%s'", owner);
}

static void test_owns_allocation_family(void)
{
    static const size_t sizes[] = {0, 1, 16, 100, 1000, 5000, 70000, MiB, 10 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p = xmalloc(n);
        expect_owned(p, "malloc");
        void *q = xrealloc(p, n * 2 + 1);
        expect_owned(q, "realloc (grow)");
        q = xrealloc(q, n / 2 + 1);
        expect_owned(q, "realloc (shrink)");
        xfree(q);
        p = xcalloc(1, n);
        expect_owned(p, "calloc");
        xfree(p);
        p = xrealloc(NULL, n);
        expect_owned(p, "realloc(NULL, n)");
        xfree(p);
        p = xreallocarray(NULL, n + 1, 2);
        expect_owned(p, "reallocarray");
        xfree(p);
        p = xaligned_alloc(64, n);
        expect_owned(p, "aligned_alloc(64)");
        xfree(p);
        p = xaligned_alloc(MiB, n);
        expect_owned(p, "aligned_alloc(1 MiB)");
        xfree(p);
        p = NULL;
        CHECK(xposix_memalign(&p, 256, n) == 0, "posix_memalign");
        expect_owned(p, "posix_memalign");
        xfree(p);
        p = xmemalign(4096, n);
        expect_owned(p, "memalign");
        xfree(p);
        p = xvalloc(n);
        expect_owned(p, "valloc");
        xfree(p);
        p = xpvalloc(n);
        expect_owned(p, "pvalloc");
        xfree(p);
        p = mmpool_malloc(n);
        expect_owned(p, "mmpool_malloc");
        mmpool_free(p);
        p = mmpool_calloc(n, 1);
        expect_owned(p, "mmpool_calloc");
        p = mmpool_realloc(p, n + 100);
        expect_owned(p, "mmpool_realloc");
        mmpool_free(p);
        p = mmpool_aligned_alloc(512, n);
        expect_owned(p, "mmpool_aligned_alloc");
        mmpool_free(p);
        if (tu_case_failed)
            return;
    }
}

static void *thread_alloc(void *arg)
{
    (void)arg;
    return xmalloc(48);
}

static void test_owns_thread_blocks(void)
{
    pthread_t t;
    void *p = NULL;
    REQUIRE(pthread_create(&t, NULL, thread_alloc, NULL) == 0, "");
    pthread_join(t, &p);
    expect_owned(p, "malloc in another (exited) thread");
    xfree(p);
}

static void test_owns_libc_internal_allocations(void)
{
    char *s = strdup("hello, pool");
    expect_owned(s, "strdup");
    free(s);
    s = strndup("hello, pool", 5);
    expect_owned(s, "strndup");
    free(s);
    s = NULL;
    CHECK(asprintf(&s, "%d-%s", 42, "x") > 0, "asprintf");
    expect_owned(s, "asprintf");
    free(s);

    char tmpl[] = "/tmp/mmpool-owns-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0, "mkstemp");
    const char text[] = "first line\nsecond line, a longer one\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1), "write");
    close(fd);
    FILE *f = fopen(tmpl, "r");
    REQUIRE(f != NULL, "fopen");
    expect_owned(f, "fopen's FILE");
    char *line = NULL;
    size_t cap = 0;
    CHECK(getline(&line, &cap, f) > 0, "getline");
    expect_owned(line, "getline buffer");
    CHECK(getdelim(&line, &cap, ',', f) > 0, "getdelim");
    expect_owned(line, "getdelim buffer");
    free(line);
    fclose(f);
    unlink(tmpl);

    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    REQUIRE(m != NULL, "open_memstream");
    for (int i = 0; i < 1000; i++)
        fprintf(m, "line %d\n", i);
    fclose(m);
    expect_owned(buf, "open_memstream buffer");
    free(buf);

    char *rp = realpath(".", NULL);
    expect_owned(rp, "realpath(., NULL)");
    free(rp);
    char *cwd = getcwd(NULL, 0);
    expect_owned(cwd, "getcwd(NULL, 0)");
    free(cwd);

    DIR *d = opendir("/");
    expect_owned(d, "opendir's DIR");
    if (d)
        closedir(d);

    struct dirent **names = NULL;
    int n = scandir("/", &names, NULL, alphasort);
    CHECK(n > 0, "scandir");
    if (n > 0) {
        expect_owned(names, "scandir list");
        expect_owned(names[0], "scandir entry");
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
    }
}

static void test_owns_rejects_foreign(void)
{
    int local = 1;
    char stack_buf[256];
    stack_buf[0] = 0;
    expect_foreign(NULL, "NULL");
    expect_foreign(&local, "a stack address");
    expect_foreign(stack_buf + 16, "a stack buffer");
    expect_foreign(&a_static, "a static");
    expect_foreign(a_static_array + 2048, "a static array");
    expect_foreign("a string literal", "a string literal");
    expect_foreign((const void *)(uintptr_t)test_owns_rejects_foreign, "a function");
    void *map = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    REQUIRE(map != MAP_FAILED, "mmap");
    expect_foreign(map, "a private mmap");
    expect_foreign((char *)map + 4096, "inside a private mmap");
    munmap(map, 1 << 16);

    tu_glibc_api g;
    REQUIRE(tu_glibc(&g), "glibc's malloc not found through libc.so.6");
    CHECK((void *)g.malloc != dlsym(RTLD_DEFAULT, "malloc") || !tu_malloc_is_mmpool(),
          "libc's malloc is the program's malloc");
    static const size_t sizes[] = {1, 100, 5000, 200000, 4 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = g.malloc(sizes[i]);
        REQUIRE(p != NULL, "glibc malloc");
        expect_foreign(p, "a glibc malloc block");
        g.free(p);
        p = g.memalign(4096, sizes[i]);
        REQUIRE(p != NULL, "glibc memalign");
        expect_foreign(p, "a glibc memalign block");
        g.free(p);
    }
}

/* Addresses no allocator hands out: must answer false, not crash
 * (a page map lookup has to bound-check the index). */
static void test_owns_wild_addresses(void)
{
    static const uintptr_t wild[] = {
        1, 16, 4096, 0x10000, 0x00007ffffffff000ull, 0x0000800000000000ull,
        0xffff800000000000ull, UINTPTR_MAX - 15, UINTPTR_MAX,
    };
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++)
        if (mmpool_owns((const void *)wild[i]))
            FAILF("mmpool_owns(%#" PRIxPTR ") is true", wild[i]);
}

static void test_version(void)
{
    const char *v = mmpool_version();
    REQUIRE(v != NULL, "mmpool_version() returned NULL");
    CHECK(v[0] != 0, "mmpool_version() is empty");
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) {
            FAILF("mmpool_version() has a non-printable byte");
            break;
        }
    printf("  mmpool_version() = \"%s\"\n", v);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(malloc_is_mmpool);
    RUN(owns_allocation_family);
    RUN(owns_thread_blocks);
    RUN(owns_libc_internal_allocations);
    RUN(owns_rejects_foreign);
    RUN(owns_wild_addresses);
    RUN(version);
    return tu_finish();
}
