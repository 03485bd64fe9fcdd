/* c-tests/dlopen.c -- libmmpool loaded with dlopen() (no LD_PRELOAD, not
 * linked): the mmpool_* API works from a library loaded late, next to
 * glibc's malloc which stays the program's malloc.
 *
 * Built without -lmmpool and run without LD_PRELOAD.  The library path
 * comes from $MMPOOL_LIB (default target/release/libmmpool.so). */
#define TU_NO_MMPOOL 1
#include "testutil.h"

#include <stdbool.h>

typedef struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    void *(*aligned_alloc)(size_t, size_t);
    size_t (*usable_size)(const void *);
    bool (*owns)(const void *);
    const char *(*version)(void);
} mm_api;

static void *handle;
static mm_api mm;

static const char *lib_path(void)
{
    const char *p = getenv("MMPOOL_LIB");
    return p && *p ? p : "target/release/libmmpool.so";
}

static bool load(void)
{
    if (handle)
        return true;
    handle = dlopen(lib_path(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        FAILF("dlopen(%s): %s", lib_path(), dlerror());
        return false;
    }
    static const char *const names[] = {"mmpool_malloc", "mmpool_calloc", "mmpool_realloc",
                                        "mmpool_free", "mmpool_aligned_alloc",
                                        "mmpool_usable_size", "mmpool_owns",
                                        "mmpool_version"};
    void **slots[] = {(void **)&mm.malloc, (void **)&mm.calloc, (void **)&mm.realloc,
                      (void **)&mm.free, (void **)&mm.aligned_alloc,
                      (void **)&mm.usable_size, (void **)&mm.owns, (void **)&mm.version};
    for (int i = 0; i < 8; i++) {
        *slots[i] = dlsym(handle, names[i]);
        if (!*slots[i]) {
            FAILF("dlsym(%s) failed", names[i]);
            return false;
        }
    }
    return true;
}

static void test_dlopen_api(void)
{
    REQUIRE(load(), "");
    CHECK(!tu_malloc_is_mmpool(), "malloc should still be glibc's here");
    const char *v = mm.version();
    CHECK(v && *v, "mmpool_version() empty");
    for (size_t n = 1; n < ((size_t)4 << 20); n = n * 3 + 1) {
        void *p = mm.malloc(n);
        REQUIRE(p != NULL, "mmpool_malloc(%zu)", n);
        CHECK(mm.owns(p), "mmpool_owns(mmpool_malloc block)");
        CHECK(mm.usable_size(p) >= n, "mmpool_usable_size");
        CHECK(n < 16 || tu_aligned(p, 16), "alignment");
        tu_fill(p, n, n);
        p = mm.realloc(p, n * 2);
        REQUIRE(p != NULL, "mmpool_realloc");
        CHECK(tu_check(p, n, n) == (size_t)-1, "mmpool_realloc lost contents");
        mm.free(p);
        p = mm.calloc(n, 1);
        REQUIRE(p != NULL && tu_all_zero(p, n), "mmpool_calloc");
        mm.free(p);
        p = mm.aligned_alloc(4096, n);
        REQUIRE(p != NULL && tu_aligned(p, 4096), "mmpool_aligned_alloc");
        mm.free(p);
    }
    void *g = xmalloc(100);                /* glibc's */
    REQUIRE(g != NULL, "");
    CHECK(!mm.owns(g), "mmpool_owns(glibc block) is true");
    mm.free(g);                            /* foreign to the pool: handed to glibc */
    errno = 0;
    CHECK(mm.malloc(SIZE_MAX) == NULL && errno == ENOMEM, "mmpool_malloc(SIZE_MAX)");
}

static void *dl_thread(void *arg)
{
    (void)arg;
    void *v[100];
    for (int i = 0; i < 100; i++) {
        v[i] = mm.malloc((size_t)(i * 10 + 1));
        if (!v[i])
            return (void *)1;
    }
    for (int i = 0; i < 100; i += 2)
        mm.free(v[i]);
    return v[1];                           /* freed by the main thread */
}

static void test_dlopen_threads(void)
{
    REQUIRE(load(), "");
    for (int i = 0; i < 200; i++) {
        pthread_t t;
        void *ret = NULL;
        REQUIRE(pthread_create(&t, NULL, dl_thread, NULL) == 0, "");
        pthread_join(t, &ret);
        REQUIRE(ret != (void *)1 && ret != NULL, "mmpool_malloc in a thread failed");
        mm.free(ret);
    }
}

/* dlclose while a thread that used the pool is still alive; the thread
 * exits afterwards.  The pool's thread exit hook must not run code that
 * was unmapped (e.g. link with -z nodelete, or keep a reference). */
static volatile int dc_go;

static void *dc_thread(void *arg)
{
    (void)arg;
    void *p = mm.malloc(64);
    mm.free(p);
    while (!__atomic_load_n(&dc_go, __ATOMIC_ACQUIRE))
        usleep(1000);
    return NULL;
}

static void dlclose_child(void *arg)
{
    (void)arg;
    if (!load())
        _exit(2);
    pthread_t t;
    if (pthread_create(&t, NULL, dc_thread, NULL) != 0)
        _exit(3);
    usleep(20000);
    dlclose(handle);
    __atomic_store_n(&dc_go, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    for (int i = 0; i < 100; i++)
        xfree(xmalloc(100));
    _exit(0);
}

static void test_dlclose_with_live_thread(void)
{
    tu_child_result r;
    REQUIRE(tu_run_child(dlclose_child, NULL, 20, &r), "fork");
    CHECK(!r.signaled, "killed by signal %d after dlclose (thread exit ran unloaded "
          "code?) stderr \"%.200s\"", r.sig, r.err);
    CHECK(r.signaled || r.exit_code == 0, "exit %d", r.exit_code);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(dlopen_api);
    RUN(dlopen_threads);
    RUN(dlclose_with_live_thread);
    return tu_finish();
}
