/* c-tests/first_call_in_thread.c -- every API call as the very first
 * thing a brand-new thread does (the per-thread heap does not exist yet).
 *
 * Each case runs in fresh threads: 8 one after another, then 4 at once.
 * The thread's start routine calls the case function, whose first
 * statement is the call under test; the rest (checks, more allocations)
 * comes after.  Blocks allocated in the thread are freed by the main
 * thread, blocks of the main thread are freed / realloc'd in the thread. */
#include "testutil.h"

typedef void (*free_sized_fn)(void *, size_t);

typedef struct ctx {
    void *main_p;            /* 100 bytes from the main thread, pattern seed 42 */
    void *result;            /* block for the main thread to free */
    size_t result_size;      /* bytes of it the program may write */
} ctx;

static free_sized_fn p_free_sized;

static bool main_block_ok(const void *p)
{
    return tu_check(p, 100, 42) == (size_t)-1;
}

/* After the first call: allocate a little more, so the new heap is used. */
static void more_work(void)
{
    void *v[16];
    for (int i = 0; i < 16; i++) {
        v[i] = xmalloc((size_t)(i * 40 + 1));
        if (!v[i]) {
            FAILF("malloc after the first call failed");
            return;
        }
        memset(v[i], i, (size_t)(i * 40 + 1));
    }
    for (int i = 0; i < 16; i++)
        xfree(v[i]);
}

static void expect_block(ctx *c, void *p, size_t n, size_t align, const char *what)
{
    if (!p) {
        FAILF("%s as first call returned NULL", what);
        return;
    }
    if (!tu_aligned(p, align))
        FAILF("%s as first call: %p not aligned to %zu", what, p, align);
    if (xusable(p) < n)
        FAILF("%s as first call: usable size %zu < %zu", what, xusable(p), n);
    memset(p, 0x33, n);
    c->result = p;
    c->result_size = n;
}

/* ---- the cases: the first statement is the call under test ---- */

static void f_malloc(ctx *c) { void *p = xmalloc(100); expect_block(c, p, 100, 16, "malloc(100)"); }
static void f_malloc0(ctx *c) { void *p = xmalloc(0); expect_block(c, p, 0, 1, "malloc(0)"); }
static void f_malloc_large(ctx *c)
{
    void *p = xmalloc((size_t)4 << 20);
    expect_block(c, p, (size_t)4 << 20, 16, "malloc(4 MiB)");
}
static void f_malloc_enomem(ctx *c)
{
    void *p = xmalloc(SIZE_MAX);
    int e = errno;
    (void)c;
    if (p || e != ENOMEM)
        FAILF("malloc(SIZE_MAX) as first call: %p errno %d", p, e);
}
static void f_calloc(ctx *c)
{
    void *p = xcalloc(10, 10);
    if (p && !tu_all_zero(p, 100))
        FAILF("calloc as first call: not zeroed");
    expect_block(c, p, 100, 16, "calloc(10,10)");
}
static void f_realloc_null(ctx *c) { void *p = xrealloc(NULL, 100); expect_block(c, p, 100, 16, "realloc(NULL,100)"); }
static void f_realloc_main(ctx *c)
{
    void *p = xrealloc(c->main_p, 5000);
    if (p && tu_check(p, 100, 42) != (size_t)-1)
        FAILF("realloc(main's block) as first call lost contents");
    c->main_p = NULL;
    expect_block(c, p, 5000, 16, "realloc(main's block, 5000)");
}
static void f_realloc_main_shrink(ctx *c)
{
    void *p = xrealloc(c->main_p, 10);
    if (p && tu_check(p, 10, 42) != (size_t)-1)
        FAILF("realloc(main's block, 10) as first call lost contents");
    c->main_p = NULL;
    expect_block(c, p, 10, 8, "realloc(main's block, 10)");
}
static void f_free_null(ctx *c) { xfree(NULL); (void)c; }
static void f_free_main(ctx *c)
{
    if (!main_block_ok(c->main_p))
        FAILF("main block corrupted");
    xfree(c->main_p);
    c->main_p = NULL;
}
static void f_free_sized_main(ctx *c)
{
    p_free_sized(c->main_p, 100);
    c->main_p = NULL;
}
static void f_posix_memalign(ctx *c)
{
    void *p = NULL;
    int rc = xposix_memalign(&p, 64, 100);
    if (rc != 0)
        FAILF("posix_memalign as first call = %d", rc);
    expect_block(c, p, 100, 64, "posix_memalign(64,100)");
}
static void f_posix_memalign_einval(ctx *c)
{
    void *p = (void *)c;
    int rc = xposix_memalign(&p, 24, 100);
    if (rc != EINVAL || p != (void *)c)
        FAILF("posix_memalign(24) as first call = %d", rc);
}
static void f_aligned_alloc(ctx *c) { void *p = xaligned_alloc(256, 100); expect_block(c, p, 100, 256, "aligned_alloc(256,100)"); }
static void f_aligned_alloc_big(ctx *c)
{
    void *p = xaligned_alloc((size_t)2 << 20, 100);
    expect_block(c, p, 100, (size_t)2 << 20, "aligned_alloc(2 MiB,100)");
}
static void f_memalign(ctx *c) { void *p = xmemalign(4096, 10); expect_block(c, p, 10, 4096, "memalign(4096,10)"); }
static void f_valloc(ctx *c) { void *p = xvalloc(100); expect_block(c, p, 100, 4096, "valloc(100)"); }
static void f_pvalloc(ctx *c) { void *p = xpvalloc(100); expect_block(c, p, 4096, 4096, "pvalloc(100)"); }
static void f_usable_main(ctx *c)
{
    size_t u = xusable(c->main_p);
    if (u < 100)
        FAILF("malloc_usable_size(main's block) as first call = %zu", u);
}
static void f_usable_null(ctx *c)
{
    size_t u = xusable(NULL);
    (void)c;
    if (u != 0)
        FAILF("malloc_usable_size(NULL) as first call = %zu", u);
}
static void f_reallocarray(ctx *c) { void *p = xreallocarray(NULL, 10, 10); expect_block(c, p, 100, 16, "reallocarray(NULL,10,10)"); }
static void f_reallocarray_ovf(ctx *c)
{
    void *p = xreallocarray(NULL, SIZE_MAX, 2);
    int e = errno;
    (void)c;
    if (p || e != ENOMEM)
        FAILF("reallocarray overflow as first call: %p errno %d", p, e);
}
static void f_mmpool_malloc(ctx *c) { void *p = mmpool_malloc(100); expect_block(c, p, 100, 16, "mmpool_malloc"); }
static void f_mmpool_calloc(ctx *c)
{
    void *p = mmpool_calloc(3, 33);
    if (p && !tu_all_zero(p, 99))
        FAILF("mmpool_calloc not zeroed");
    expect_block(c, p, 99, 16, "mmpool_calloc");
}
static void f_mmpool_realloc(ctx *c) { void *p = mmpool_realloc(NULL, 100); expect_block(c, p, 100, 16, "mmpool_realloc(NULL)"); }
static void f_mmpool_realloc_main(ctx *c)
{
    void *p = mmpool_realloc(c->main_p, 300);
    if (p && tu_check(p, 100, 42) != (size_t)-1)
        FAILF("mmpool_realloc(main's block) lost contents");
    c->main_p = NULL;
    expect_block(c, p, 300, 16, "mmpool_realloc(main's block)");
}
static void f_mmpool_free_null(ctx *c) { mmpool_free(NULL); (void)c; }
static void f_mmpool_free_main(ctx *c) { mmpool_free(c->main_p); c->main_p = NULL; }
static void f_mmpool_aligned_alloc(ctx *c) { void *p = mmpool_aligned_alloc(128, 50); expect_block(c, p, 50, 128, "mmpool_aligned_alloc"); }
static void f_mmpool_usable_size(ctx *c)
{
    size_t u = mmpool_usable_size(c->main_p);
    if (u < 100)
        FAILF("mmpool_usable_size(main's block) as first call = %zu", u);
}
static void f_mmpool_owns(ctx *c)
{
    bool o = mmpool_owns(c->main_p);
    if (tu_malloc_is_mmpool() && !o)
        FAILF("mmpool_owns(main's block) as first call = false");
}
static void f_mmpool_owns_stack(ctx *c)
{
    int local = 0;
    bool o = mmpool_owns(&local);
    (void)c;
    if (o)
        FAILF("mmpool_owns(stack address) as first call = true");
}
static void f_mmpool_version(ctx *c)
{
    const char *v = mmpool_version();
    (void)c;
    if (!v || !*v)
        FAILF("mmpool_version() as first call empty");
}
static void f_nothing(ctx *c) { (void)c; }   /* thread exit with no heap at all */

typedef struct {
    const char *name;
    void (*fn)(ctx *);
    bool more;               /* allocate more after the first call */
} fcase;

static const fcase cases[] = {
    {"first_malloc", f_malloc, true},
    {"first_malloc_zero", f_malloc0, true},
    {"first_malloc_large", f_malloc_large, true},
    {"first_malloc_enomem", f_malloc_enomem, true},
    {"first_calloc", f_calloc, true},
    {"first_realloc_null", f_realloc_null, true},
    {"first_realloc_foreign_thread_block", f_realloc_main, true},
    {"first_realloc_shrink_foreign_thread_block", f_realloc_main_shrink, false},
    {"first_free_null", f_free_null, false},
    {"first_free_null_then_malloc", f_free_null, true},
    {"first_free_foreign_thread_block", f_free_main, false},
    {"first_free_foreign_thread_block_then_malloc", f_free_main, true},
    {"first_free_sized", f_free_sized_main, false},
    {"first_posix_memalign", f_posix_memalign, true},
    {"first_posix_memalign_einval", f_posix_memalign_einval, false},
    {"first_aligned_alloc", f_aligned_alloc, true},
    {"first_aligned_alloc_2mib", f_aligned_alloc_big, false},
    {"first_memalign", f_memalign, true},
    {"first_valloc", f_valloc, true},
    {"first_pvalloc", f_pvalloc, true},
    {"first_malloc_usable_size", f_usable_main, false},
    {"first_malloc_usable_size_null", f_usable_null, false},
    {"first_reallocarray", f_reallocarray, true},
    {"first_reallocarray_overflow", f_reallocarray_ovf, false},
    {"first_mmpool_malloc", f_mmpool_malloc, true},
    {"first_mmpool_calloc", f_mmpool_calloc, false},
    {"first_mmpool_realloc_null", f_mmpool_realloc, false},
    {"first_mmpool_realloc_foreign_thread_block", f_mmpool_realloc_main, false},
    {"first_mmpool_free_null", f_mmpool_free_null, false},
    {"first_mmpool_free_foreign_thread_block", f_mmpool_free_main, false},
    {"first_mmpool_aligned_alloc", f_mmpool_aligned_alloc, true},
    {"first_mmpool_usable_size", f_mmpool_usable_size, false},
    {"first_mmpool_owns", f_mmpool_owns, false},
    {"first_mmpool_owns_stack", f_mmpool_owns_stack, false},
    {"first_mmpool_version", f_mmpool_version, true},
    {"no_call_at_all", f_nothing, false},
};

typedef struct {
    const fcase *fc;
    ctx c;
} targ;

static void *start(void *a)
{
    targ *t = a;
    t->fc->fn(&t->c);          /* the first allocator call of this thread */
    if (t->fc->more)
        more_work();
    return NULL;
}

static const fcase *cur;

static void run_threads(int at_once)
{
    enum { MAXT = 8 };
    targ t[MAXT];
    pthread_t th[MAXT];
    for (int i = 0; i < at_once; i++) {
        t[i].fc = cur;
        t[i].c.result = NULL;
        t[i].c.main_p = xmalloc(100);
        if (!t[i].c.main_p) {
            FAILF("malloc in main");
            return;
        }
        tu_fill(t[i].c.main_p, 100, 42);
    }
    for (int i = 0; i < at_once; i++) {
        int rc = pthread_create(&th[i], NULL, start, &t[i]);
        if (rc != 0) {
            FAILF("pthread_create: %s", strerror(rc));
            at_once = i;
        }
    }
    for (int i = 0; i < at_once; i++) {
        pthread_join(th[i], NULL);
        if (t[i].c.main_p) {
            if (!main_block_ok(t[i].c.main_p))
                FAILF("main's block corrupted by the thread");
            xfree(t[i].c.main_p);
        }
        if (t[i].c.result) {
            /* within the block: malloc(0)'s has no byte to write */
            memset(t[i].c.result, 0x44, t[i].c.result_size < 1 ? t[i].c.result_size : 1);
            xfree(t[i].c.result);       /* freed by another thread, after exit */
        }
    }
}

static void run_current(void)
{
    for (int rep = 0; rep < 8 && !tu_case_failed; rep++)
        run_threads(1);
    for (int rep = 0; rep < 4 && !tu_case_failed; rep++)
        run_threads(4);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    *(void **)&p_free_sized = dlsym(RTLD_DEFAULT, "free_sized");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cur = &cases[i];
        if (cur->fn == f_free_sized_main && !p_free_sized) {
            tu_verdict(false, cur->name, "free_sized is not exported");
            continue;
        }
        tu_run_case(cur->name, run_current);
    }
    return tu_finish();
}
