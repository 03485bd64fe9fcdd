/* c-tests/errors.c -- errors mmpool reports, and foreign pointers.
 *
 * A double free (same thread, twice in a row, or with a write after the
 * first free for small blocks; for medium blocks also from another
 * thread) must abort the process
 * with a message on stderr starting with "mmpool:" (checked in a forked
 * child: the stderr text and the abnormal exit).  Pointers the pool did
 * not hand out (glibc's own malloc, found through libc.so.6's handle)
 * passed to free/realloc/malloc_usable_size must work. */
#include "testutil.h"

#include <ctype.h>

typedef struct {
    int how;
    size_t size;
    volatile uintptr_t *addr;  /* shared page: the child stores the block address */
} df_arg;

enum { DF_MALLOC, DF_CALLOC, DF_ALIGNED, DF_REALLOC, DF_MMPOOL, DF_MEMALIGN, DF_OTHER_THREAD,
       DF_EARLY, DF_OTHER_TWICE, DF_WRITTEN, DF_WRITTEN_BELOW, DF_FLAGGED, DF_LAST_LIVE };

/* Where the first block of a slab whose 64 KiB granule holds `p` starts,
 * as an offset into the granule: after the slab header (128 bytes), which
 * the default build places 0-896 bytes into the span by its address (its
 * colour: 128 bytes per step, the granule number's low three bits); the
 * secure build's header page and guard page start the span. */
static uintptr_t slab_start(uintptr_t p, bool secure)
{
    return secure ? 8192 : ((p >> 16) & 7) * 128 + 128;
}

static const char *const df_names[] = {"malloc", "calloc", "aligned_alloc(4096)",
                                       "realloc", "mmpool_malloc+mmpool_free",
                                       "memalign(64)", "malloc, freed again by another thread",
                                       "malloc before the pool's constructor",
                                       "malloc, freed twice by another thread",
                                       "malloc, written after its free, freed again",
                                       "malloc, written after its free, freed again after another free",
                                       "malloc, freed again after memalign flagged its slab",
                                       "malloc, one of a slab's last three, written and freed again"};

/* The program's .preinit_array runs before any library's constructor,
 * mmpool's included: this medium block is allocated and freed before the
 * pool's constructor ran (as by another library's constructor). */
enum { EARLY_SIZE = 2040 };
static void *early_block;
static void early_alloc(void)
{
    early_block = malloc(EARLY_SIZE);
    free(early_block);
}
__attribute__((section(".preinit_array"), used)) static void (*const early_hook)(void) =
    early_alloc;

static void *df_free_again(void *p)
{
    xfree(p);
    return NULL;
}

static void *df_free_twice(void *p)
{
    xfree(p);
    xfree(p);
    return NULL;
}

static void df_child(void *a)
{
    df_arg *d = a;
    void *p;
    if (d->how == DF_EARLY) {
        /* freed once before the pool's constructor ran; free it again */
        *d->addr = (uintptr_t)early_block;
        xfree(early_block);
        _exit(0);
    }
    switch (d->how) {
    case DF_CALLOC: p = xcalloc(1, d->size); break;
    case DF_ALIGNED: p = xaligned_alloc(4096, d->size); break;
    case DF_REALLOC: p = xrealloc(xmalloc(8), d->size); break;
    case DF_MMPOOL: p = mmpool_malloc(d->size); break;
    case DF_MEMALIGN: p = xmemalign(64, d->size); break;
    default: p = xmalloc(d->size); break;
    }
    if (!p) {
        fprintf(stderr, "test: allocation failed\n");
        _exit(77);
    }
    memset(p, 0x11, d->size);
    *d->addr = (uintptr_t)p;
    if (d->how == DF_MMPOOL) {
        mmpool_free(p);
        mmpool_free(p);
    } else if (d->how == DF_OTHER_THREAD || d->how == DF_OTHER_TWICE) {
        if (d->how == DF_OTHER_THREAD)
            xfree(p);
        pthread_t t;
        if (pthread_create(&t, NULL, d->how == DF_OTHER_THREAD ? df_free_again : df_free_twice,
                           p) == 0)
            pthread_join(t, NULL);
    } else if (d->how == DF_WRITTEN) {
        xfree(p);
        memset(p, 0x22, 16); /* a write after free wipes any free mark */
        xfree(p);
    } else if (d->how == DF_WRITTEN_BELOW) {
        /* p is no longer the block freed last when it is freed again */
        void *q = xmalloc(d->size);
        xfree(p);
        xfree(q);
        memset(p, 0x22, 16);
        xfree(p);
        for (int i = 0; i < 3; i++) /* the third would be p again */
            memset(xmalloc(d->size), 0x33, d->size);
    } else if (d->how == DF_LAST_LIVE) {
        /* p, q and x are the last blocks in use of a slab that is not its
         * class's current one: p freed, q freed, p written over and freed
         * again brings the slab's count of blocks in use to zero while x
         * is live. The slab must not go back to the span cache (a later
         * slab there would hand x's memory out again): its lists are
         * counted first, and they hold p twice. */
        enum { N = 8192 };
        static void *v[N];
        for (int i = 0; i < N; i++)
            v[i] = xmalloc(d->size);
        /* A slab v carved whole: its first block (slab_start(), the
         * header's 128 bytes after its colour) and the next one in a row,
         * not the last slab. (The secure build carves in a random order:
         * any block then.) */
        uintptr_t g = (uintptr_t)v[0] >> 16;
        for (int i = N / 2; i > 0; i--)
            if (((uintptr_t)v[i] & 0xffff) == slab_start((uintptr_t)v[i], false) &&
                (uintptr_t)v[i + 1] == (uintptr_t)v[i] + d->size) {
                g = (uintptr_t)v[i] >> 16;
                break;
            }
        int idx[3], k = 0;
        for (int i = 0; i < N && k < 3; i++)
            if ((uintptr_t)v[i] >> 16 == g)
                idx[k++] = i;
        if (k < 3 || (uintptr_t)v[N - 1] >> 16 == g)
            _exit(77); /* the case cannot be set up */
        for (int i = 0; i < N; i++)
            if ((uintptr_t)v[i] >> 16 == g && i != idx[0] && i != idx[1] && i != idx[2])
                xfree(v[i]);
        void *q = v[idx[1]];
        p = v[idx[0]];
        *d->addr = (uintptr_t)p;
        xfree(p);
        xfree(q);
        memset(p, 0x22, 16);
        xfree(p);
    } else if (d->how == DF_FLAGGED) {
        /* memalign with a big alignment marks the slab it carves from as
         * holding interior pointers: later frees of its blocks take the
         * slow path, which must know the blocks freed before */
        void *q = xmalloc(d->size);
        xfree(p);
        xfree(q);
        void *m = xmemalign(256, 16);
        (void)m;
        xfree(p);
    } else {
        xfree(p);
        xfree(p);
    }
    /* still alive: the double free went unnoticed */
    _exit(0);
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* A word shared with forked children (they store a block's address
 * there); NULL (and a failure recorded) when it cannot be mapped. */
static volatile uintptr_t *shared_word(void)
{
    static volatile uintptr_t *shared;
    if (!shared) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            FAILF("mmap");
            return NULL;
        }
        shared = m;
    }
    return shared;
}

/* Runs one double free in a child; checks abnormal exit + message. */
static void double_free_case(int how, size_t size, bool check_addr)
{
    volatile uintptr_t *shared = shared_word();
    if (!shared)
        return;
    *shared = 0;
    df_arg d = {how, size, shared};
    tu_child_result r;
    if (!tu_run_child(df_child, &d, 20, &r)) {
        FAILF("fork failed");
        return;
    }
    char addr[32] = {0};
    if (*shared)
        snprintf(addr, sizeof addr, "%" PRIxPTR, *shared);
    const char *what = df_names[how];
    if (r.exited && r.exit_code == 77) {
        FAILF("%s(%zu) failed in the child", what, size);
        return;
    }
    if (r.exited && r.exit_code == 0) {
        FAILF("double free of a %s(%zu) block not detected (process went on)", what, size);
        return;
    }
    if (!r.signaled && !(r.exited && r.exit_code != 0)) {
        FAILF("unexpected child status");
        return;
    }
    if (r.signaled && r.sig == SIGALRM) {
        FAILF("double free of a %s(%zu) block hung (alarm fired)", what, size);
        return;
    }
    /* first non-empty line of stderr starts with "mmpool:" */
    const char *line = r.err;
    while (*line == '\n')
        line++;
    if (strncmp(line, "mmpool:", 7) != 0) {
        char first[200];
        size_t fl = strnlen(line, sizeof first - 1);
        memcpy(first, line, fl);
        first[fl] = 0;
        char *nl = strchr(first, '\n');
        if (nl)
            *nl = 0;
        FAILF("double free of a %s(%zu) block: %s %d; stderr does not start with "
              "\"mmpool:\" but \"%s\"", what, size, r.signaled ? "signal" : "exit",
              r.signaled ? r.sig : r.exit_code, first);
        return;
    }
    if (!r.signaled || r.sig != SIGABRT)
        FAILF("double free of a %s(%zu) block: %s %d, want abort (SIGABRT)", what, size,
              r.signaled ? "signal" : "exit", r.signaled ? r.sig : r.exit_code);
    /* the message names the block: "mmpool: <what> <address>" */
    if (check_addr && addr[0]) {
        char err[sizeof r.err];
        memcpy(err, r.err, sizeof err);
        lower(err);
        if (!strstr(err, addr))
            FAILF("double free of a %s(%zu) block: the message does not name the "
                  "block 0x%s: \"%.200s\"", what, size, addr, r.err);
    }
}

static void test_double_free_small_aborts(void)
{
    static const size_t sizes[] = {1, 16, 24, 64, 100, 256, 1000, 2048, 4000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_MALLOC, sizes[i], false);
}

static void test_double_free_medium_aborts(void)
{
    static const size_t sizes[] = {5000, 20000, 65536, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_MALLOC, sizes[i], false);
}

/* A second free from another thread: medium blocks (1.25-64 KiB) live
 * in per-CPU heaps that every thread frees into under a lock; a small
 * block's key word shows it was freed already (malloc clears it). */
static void test_double_free_other_thread_aborts(void)
{
    static const size_t sizes[] = {16, 48, 200, 1000, 1500, 3000, 20000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++) {
        double_free_case(DF_OTHER_THREAD, sizes[i], true);
        double_free_case(DF_OTHER_TWICE, sizes[i], true);
    }
}

/* free(p); the program writes over p's first words; free(p) again. The
 * write wipes the mark a free block carries, but a small block freed last
 * onto its slab's list is still caught: otherwise the next two mallocs
 * would both hand it out. */
static void test_double_free_after_write_aborts(void)
{
    static const size_t sizes[] = {16, 48, 200, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_WRITTEN, sizes[i], true);
}

/* The same when another block was freed after p, so p no longer heads
 * its slab's list when it is freed again: the list holds p twice, and
 * the malloc that would hand it out a second time stops (malloc cleared
 * its first word and the program wrote 0x33 bytes there: a misaligned
 * link; a value ending in 0xf would pass that test, 1 in 16). */
static void test_double_free_after_write_below_aborts(void)
{
    static const size_t sizes[] = {16, 48, 200, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_WRITTEN_BELOW, sizes[i], true);
}

/* A double free after a write that brings its slab's count of blocks in
 * use to zero early, with a block of the slab still in use. */
static void test_double_free_of_a_last_block_aborts(void)
{
    static const size_t sizes[] = {48, 256};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_LAST_LIVE, sizes[i], false);
}

/* A block freed onto its slab's list, then its slab flagged (an aligned
 * allocation with interior pointers), then the block freed again: the
 * slow path of the flagged slab finds it on the list. */
static void test_double_free_in_flagged_slab_aborts(void)
{
    static const size_t sizes[] = {48, 256};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_FLAGGED, sizes[i], true);
}

/* A block freed before the pool's constructor ran (the first allocation
 * of the process, a medium one) carries the same double-free key as any
 * other: its second free is caught. Runs first, before the test harness
 * allocates blocks of that class. */
static void test_double_free_before_init_aborts(void)
{
    REQUIRE(early_block != NULL, ".preinit_array hook did not run");
    double_free_case(DF_EARLY, EARLY_SIZE, true);
}

/* No false alarm: a span that held many small blocks is reused for other
 * blocks; its old blocks' free marks are still in memory. A program that
 * moves uninitialised bytes of its buffer (a stream buffer consuming 16
 * bytes) brings one to the word the double-free check reads; its single
 * free, by the same thread (medium block) or another (small block), must
 * go through. */
static void stale_child(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    enum { N = 4 * 4088 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = xmalloc(16);
    for (int i = 0; i < N; i++)
        xfree(p[i]);
    char *m = xmalloc(size);
    if (!m)
        _exit(77);
    memmove(m, m + 16, size - 16);
    if (size > 1024) {
        xfree(m);
    } else {
        pthread_t t;
        if (pthread_create(&t, NULL, df_free_again, m) != 0)
            _exit(77);
        pthread_join(t, NULL);
    }
    _exit(0);
}

static void test_stale_free_marks_are_not_double_frees(void)
{
    static const size_t sizes[] = {200, 1200, 3000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++) {
        tu_child_result r;
        REQUIRE(tu_run_child(stale_child, (void *)(uintptr_t)sizes[i], 20, &r), "fork failed");
        CHECK(r.exited && r.exit_code == 0, "a single free of a %zu-byte block whose bytes were "
              "moved was refused (%s %d): %.200s", sizes[i], r.signaled ? "signal" : "exit",
              r.signaled ? r.sig : r.exit_code, r.err);
    }
}

static void test_double_free_large_aborts(void)
{
    static const size_t sizes[] = {MiB, 8 * MiB, 64 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++)
        double_free_case(DF_MALLOC, sizes[i], false);
}

static void test_double_free_other_entry_points_abort(void)
{
    for (int how = DF_CALLOC; how <= DF_MEMALIGN && !tu_case_failed; how++) {
        double_free_case(how, 48, false);
        double_free_case(how, 3000, false);
    }
}

/* The message names the block: "mmpool: <what> <address>" with the
 * address the program passed to free. */
static void test_double_free_message_names_block(void)
{
    for (int how = DF_MALLOC; how <= DF_MEMALIGN && !tu_case_failed; how++) {
        double_free_case(how, 48, true);
        double_free_case(how, 3000, true);
    }
    if (!tu_case_failed)
        double_free_case(DF_MALLOC, MiB, true);
}

/* The parent itself is unharmed by all of the above. */
static void test_parent_still_fine(void)
{
    void *p = xmalloc(64);
    REQUIRE(p != NULL, "");
    memset(p, 1, 64);
    xfree(p);
}

/* ---- foreign pointers (glibc's malloc) ---------------------------- */

static tu_glibc_api g;

static void foreign_free_child(void *a)
{
    (void)a;
    static const size_t sizes[] = {1, 24, 100, 1000, 5000, 70000, 200000, 4 * MiB};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            void *p = g.malloc(n);
            if (!p)
                _exit(70);
            memset(p, 0x22, n);
            xfree(p);
            p = g.calloc(1, n);
            if (!p)
                _exit(70);
            xfree(p);
            p = g.memalign(4096, n);
            if (!p)
                _exit(70);
            xfree(p);
            if (g.posix_memalign(&p, 64, n) != 0)
                _exit(70);
            mmpool_free(p);             /* the mmpool_ name too */
        }
    _exit(0);
}

static void foreign_realloc_child(void *a)
{
    (void)a;
    static const size_t sizes[] = {10, 100, 3000, 70000, 2 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p = g.malloc(n);
        if (!p)
            _exit(70);
        tu_fill(p, n, n);
        void *q = xrealloc(p, n * 3);        /* grow */
        if (!q || tu_check(q, n, n) != (size_t)-1)
            _exit(71);
        q = xrealloc(q, n / 2 + 1);          /* shrink (now maybe ours) */
        if (!q || tu_check(q, n / 2 + 1, n) != (size_t)-1)
            _exit(72);
        xfree(q);
        p = g.malloc(n);
        if (!p)
            _exit(70);
        tu_fill(p, n, n);
        q = xrealloc(p, n / 3 + 1);          /* shrink a foreign block */
        if (!q || tu_check(q, n / 3 + 1, n) != (size_t)-1)
            _exit(73);
        xfree(q);
        p = g.malloc(n);
        if (!p)
            _exit(70);
        errno = 0;
        q = xrealloc(p, SIZE_MAX);           /* failing realloc of a foreign block */
        if (q || errno != ENOMEM)
            _exit(74);
        tu_fill(p, n, 1);
        xfree(p);
        p = g.malloc(n);
        if (!p)
            _exit(70);
        if (xrealloc(p, 0) != NULL)          /* realloc(foreign, 0) frees */
            _exit(75);
    }
    _exit(0);
}

static void foreign_usable_child(void *a)
{
    (void)a;
    static const size_t sizes[] = {1, 100, 5000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = g.malloc(sizes[i]);
        if (!p)
            _exit(70);
        size_t u = xusable(p);
        if (u < sizes[i])
            _exit(76);
        memset(p, 0x5f, u);                 /* writing up to it is safe */
        xfree(p);
    }
    _exit(0);
}

static void *foreign_thread(void *p)
{
    xfree(p);
    return NULL;
}

static void foreign_thread_child(void *a)
{
    (void)a;
    for (int i = 0; i < 50; i++) {
        void *p = g.malloc((size_t)(i * 97 + 1));
        if (!p)
            _exit(70);
        pthread_t t;
        if (pthread_create(&t, NULL, foreign_thread, p) != 0)
            _exit(77);
        pthread_join(t, NULL);
    }
    _exit(0);
}

static const char *foreign_error(int code)
{
    switch (code) {
    case 70: return "glibc allocation failed";
    case 71: return "growing realloc of a glibc block lost contents";
    case 72: return "shrinking realloc after growth lost contents";
    case 73: return "shrinking realloc of a glibc block lost contents";
    case 74: return "realloc(glibc block, SIZE_MAX) did not fail with ENOMEM";
    case 75: return "realloc(glibc block, 0) did not return NULL";
    case 76: return "malloc_usable_size(glibc block) understates";
    case 77: return "pthread_create";
    case 79: return "no glibc block came from another arena (the case did not reach one)";
    default: return "?";
    }
}

static void foreign_case(void (*fn)(void *), const char *what)
{
    if (!g.malloc && !tu_glibc(&g)) {
        FAILF("glibc's malloc not found through libc.so.6");
        return;
    }
    tu_child_result r;
    if (!tu_run_child(fn, NULL, 30, &r)) {
        FAILF("fork");
        return;
    }
    if (r.signaled)
        FAILF("%s: child killed by signal %d; stderr: \"%.300s\"", what, r.sig, r.err);
    else if (r.exit_code != 0)
        FAILF("%s: %s (exit %d); stderr: \"%.300s\"", what, foreign_error(r.exit_code),
              r.exit_code, r.err);
}

/* glibc's blocks from another thread's arena (its chunks carry the
 * NON_MAIN_ARENA bit; their arena is found through their heap), freed
 * and sized by the main thread. */
static const size_t arena_sizes[] = {24, 100, 1000, 5000, 70000};
#define ARENA_BLOCKS (sizeof arena_sizes / sizeof arena_sizes[0])

static void *glibc_arena_thread(void *out)
{
    void **v = out;
    for (size_t i = 0; i < ARENA_BLOCKS; i++) {
        v[i] = g.malloc(arena_sizes[i]);
        if (v[i])
            memset(v[i], 0x23, arena_sizes[i]);
    }
    return NULL;
}

static void foreign_arena_child(void *a)
{
    (void)a;
    int other_arena = 0;
    for (int round = 0; round < 3; round++) {
        void *v[ARENA_BLOCKS] = {NULL};
        pthread_t t;
        if (pthread_create(&t, NULL, glibc_arena_thread, v) != 0)
            _exit(77);
        pthread_join(t, NULL);
        for (size_t i = 0; i < ARENA_BLOCKS; i++) {
            if (!v[i])
                _exit(70);
            /* glibc's chunk size word, NON_MAIN_ARENA is its bit 2 */
            other_arena += (((const size_t *)v[i])[-1] & 4) != 0;
            if (malloc_usable_size(v[i]) < arena_sizes[i])
                _exit(76);
            xfree(v[i]);
        }
    }
    _exit(other_arena ? 0 : 79);
}

static void test_foreign_free(void) { foreign_case(foreign_free_child, "free(glibc block)"); }
static void test_foreign_free_other_arena(void)
{
    foreign_case(foreign_arena_child, "free(glibc block of another thread's arena)");
}
static void test_foreign_realloc(void) { foreign_case(foreign_realloc_child, "realloc(glibc block)"); }
static void test_foreign_usable_size(void)
{
    foreign_case(foreign_usable_child, "malloc_usable_size(glibc block)");
}
static void test_foreign_free_other_thread(void)
{
    foreign_case(foreign_thread_child, "free(glibc block) in another thread");
}

/* ------------------------------------------------------------------ */
/* free of memory that looks like a glibc chunk but is none              */

/* A pointer into the stack or a global, behind a word that passes for a
 * glibc chunk's size (64 bytes, previous chunk in use), once with the
 * NON_MAIN_ARENA bit: glibc looked for that arena in unmapped memory and
 * crashed; once without: glibc put the memory on its free list, to hand
 * it out later. Both are invalid frees for mmpool to stop, by name. */
enum { LOOK_STACK_MAIN, LOOK_STACK_ARENA, LOOK_GLOBAL_MAIN, LOOK_GLOBAL_ARENA, LOOKS };
static const char *const look_names[] = {"stack, main arena", "stack, NON_MAIN_ARENA",
                                         "global, main arena", "global, NON_MAIN_ARENA"};
static uint64_t look_global[16] __attribute__((aligned(64)));

static void lookalike_child(void *arg)
{
    uintptr_t how = (uintptr_t)arg;
    uint64_t on_stack[16] __attribute__((aligned(64)));
    uint64_t *w = how == LOOK_STACK_MAIN || how == LOOK_STACK_ARENA ? on_stack : look_global;
    memset(w, 0, 16 * sizeof *w);
    w[1] = 0x40 | 1 | (how == LOOK_STACK_ARENA || how == LOOK_GLOBAL_ARENA ? 4 : 0);
    w[9] = 0x40 | 1; /* the next "chunk" */
    void *p = &w[2];
    fprintf(stderr, "addr %p\n", p);
    fflush(stderr);
    free(*(void *volatile *)&p);
    _exit(0);
}

static void test_free_of_a_chunk_lookalike_stops(void)
{
    for (uintptr_t i = 0; i < LOOKS; i++) {
        tu_child_result r;
        REQUIRE(tu_run_child(lookalike_child, (void *)i, 20, &r), "fork");
        char addr[64] = "";
        sscanf(r.err, "addr %63s", addr);
        CHECK(r.signaled && r.sig == SIGABRT && addr[0] &&
                  strstr(r.err, "mmpool: free(): invalid pointer") && strstr(r.err, addr),
              "free(%s lookalike): not stopped with \"mmpool: free(): invalid pointer ... %s\" "
              "(%s %d); stderr: \"%.300s\"", look_names[i], addr,
              r.signaled ? "signal" : "exit", r.signaled ? r.sig : r.exit_code, r.err);
    }
}

/* ------------------------------------------------------------------ */
/* free of an address a multiple of 4 GiB away from a block of ours     */

/* The free fast path's block-start test once compared only the low 32
 * bits of the address with the cached slab's: memory exactly 4 GiB past
 * a block was taken for that block and put on its free list, silently
 * (the next malloc of the size stopped the program, blaming a write after
 * free). The free itself must stop it, naming the address. Exit 78: the
 * address 4 GiB away could not be mapped (the case cannot be set up). */
static void alias_child(void *arg)
{
    (void)arg;
    char *a = malloc(48), *b = malloc(48);
    if (!a || !b)
        _exit(77);
    free(a); /* the slab is now in the thread's slab cache */
    uintptr_t far = (uintptr_t)b + ((uintptr_t)1 << 32);
    uintptr_t page = far & ~(uintptr_t)4095;
    void *m = mmap((void *)page, 8192, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m == MAP_FAILED || (uintptr_t)m != page)
        _exit(78);
    fprintf(stderr, "far %#lx\n", (unsigned long)far);
    fflush(stderr);
    free((void *)far);
    _exit(0);
}

static void test_free_4gib_away_is_no_block(void)
{
    tu_child_result r;
    REQUIRE(tu_run_child(alias_child, NULL, 20, &r), "fork");
    if (r.exited && r.exit_code == 78) {
        printf("  (skipped: the address 4 GiB past a block could not be mapped)\n");
        return;
    }
    char far[64] = "", want[128];
    sscanf(r.err, "far %63s", far);
    snprintf(want, sizeof want, "mmpool: free(): invalid pointer");
    CHECK(r.signaled && r.sig == SIGABRT && far[0] && strstr(r.err, want) && strstr(r.err, far),
          "free(block + 4 GiB): not stopped at the free with \"%s ... %s\" (status %d); "
          "stderr: \"%.300s\"", want, far, r.signaled ? r.sig : r.exit_code, r.err);
}

/* ------------------------------------------------------------------ */
/* free_sized (C23) with a size the block was not allocated for        */

typedef void (*free_sized_fn)(void *, size_t);

static free_sized_fn free_sized_ptr(void)
{
    free_sized_fn fs;
    *(void **)&fs = dlsym(RTLD_DEFAULT, "free_sized");
    return fs;
}

/* allocated, then passed to free_sized: small, medium, large */
static const size_t sized_cases[][2] = {{24, 96}, {3000, 12000}, {200000, 800000}};

static void sized_mismatch_child(void *arg)
{
    const size_t *c = sized_cases[(uintptr_t)arg];
    void *p = malloc(c[0]);
    if (!p)
        _exit(77);
    fprintf(stderr, "block %p\n", p);
    fflush(stderr);
    free_sized_ptr()(p, c[1]);
    _exit(0);
}

static void test_free_sized_mismatch_aborts(void)
{
    REQUIRE(free_sized_ptr() != NULL, "free_sized is not exported");
    for (uintptr_t i = 0; i < sizeof sized_cases / sizeof sized_cases[0]; i++) {
        tu_child_result r;
        REQUIRE(tu_run_child(sized_mismatch_child, (void *)i, 20, &r), "fork");
        CHECK(r.signaled && r.sig == SIGABRT, "free_sized(malloc(%zu), %zu): not stopped "
              "(status %d); stderr: \"%.300s\"", sized_cases[i][0], sized_cases[i][1],
              r.signaled ? r.sig : r.exit_code, r.err);
        char addr[64] = "", want[160];
        sscanf(r.err, "block %63s", addr);
        snprintf(want, sizeof want, "mmpool: free_sized(): size %zu does not match the block at %s",
                 sized_cases[i][1], addr);
        CHECK(addr[0] && strstr(r.err, want), "free_sized(malloc(%zu), %zu): want \"%s\" in "
              "\"%.300s\"", sized_cases[i][0], sized_cases[i][1], want, r.err);
    }
}

/* The sizes a correct program passes never stop it: the size malloc got,
 * or the size of a realloc that kept the block in place. */
static void sized_right_child(void *arg)
{
    (void)arg;
    free_sized_fn fs = free_sized_ptr();
    for (size_t n = 1; n < 300000; n += n / 3 + 1) {
        char *p = malloc(n);
        if (!p)
            _exit(77);
        memset(p, 1, n);
        fs(p, n);
        p = malloc(n);
        size_t half = n / 2 + 1;
        char *q = realloc(p, half);
        if (!q)
            _exit(77);
        fs(q, half);
    }
    _exit(0);
}

static void test_free_sized_right_sizes_pass(void)
{
    REQUIRE(free_sized_ptr() != NULL, "free_sized is not exported");
    tu_child_result r;
    REQUIRE(tu_run_child(sized_right_child, NULL, 30, &r), "fork");
    CHECK(r.exited && r.exit_code == 0, "free_sized with the right sizes: status %d; "
          "stderr: \"%.300s\"", r.signaled ? r.sig : r.exit_code, r.err);
}

/* An underflow out of the first block of a slab: the bytes before it are
 * the slab's header. The child allocates blocks of one size until it
 * holds one that starts a slab (slab_start()),
 * writes 8 bytes before it, then keeps allocating that size until the
 * slab is full and leaves its list. The default build must stop there
 * (the header's canary) naming the block; the secure build faults at
 * once on the guard page. Without the check the write lands in the
 * header unseen (a longer one reaches its list links). */
typedef struct {
    size_t size;
    volatile uintptr_t *addr;
} uf_arg;

static void underflow_child(void *a)
{
    uf_arg *u = a;
    mmpool_stats_t st;
    mmpool_stats_get(&st);
    enum { MAX = 20000 };
    static void *volatile sink; /* the blocks stay allocated: the slab fills */
    char *first = NULL;
    int n = 0;
    while (n < MAX && !first) {
        char *p = malloc(u->size);
        if (!p)
            _exit(77);
        sink = p;
        n++;
        if (((uintptr_t)p & 0xffff) == slab_start((uintptr_t)p, st.secure))
            first = p;
    }
    if (!first)
        _exit(78); /* no block at a slab's start: the layout changed */
    *u->addr = (uintptr_t)first;
    /* (through the shared word: the compiler does not see the write
     * leave the block) */
    volatile char *victim = (volatile char *)*u->addr;
    for (int i = 1; i <= 8; i++)
        victim[-i] = 0x41;
    while (n < MAX) {
        void *p = malloc(u->size);
        if (!p)
            _exit(77);
        sink = p;
        n++;
    }
    _exit(sink ? 0 : 79);
}

static void test_underflow_into_slab_header_stops(void)
{
    static const size_t sizes[] = {48, 880, 3000, 9000};
    volatile uintptr_t *shared = shared_word();
    if (!shared)
        return;
    mmpool_stats_t st;
    mmpool_stats_get(&st);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !tu_case_failed; i++) {
        *shared = 0;
        uf_arg u = {sizes[i], shared};
        tu_child_result r;
        REQUIRE(tu_run_child(underflow_child, &u, 30, &r), "fork");
        CHECK(!(r.exited && r.exit_code == 78), "malloc(%zu): no block at a slab's start",
              sizes[i]);
        if (r.exited && r.exit_code == 78)
            continue;
        if (st.secure) {
            CHECK(r.signaled && r.sig == SIGSEGV,
                  "secure build, malloc(%zu): a write before a slab's first block %s %d, "
                  "want SIGSEGV (its guard page)", sizes[i], r.signaled ? "signal" : "exit",
                  r.signaled ? r.sig : r.exit_code);
            continue;
        }
        char addr[32];
        snprintf(addr, sizeof addr, "%" PRIxPTR, *shared);
        char err[sizeof r.err];
        memcpy(err, r.err, sizeof err);
        lower(err);
        CHECK(r.signaled && r.sig == SIGABRT && strncmp(r.err, "mmpool:", 7) == 0 &&
                  strstr(r.err, "underflow") && strstr(err, addr),
              "malloc(%zu): an underflow into the slab header before block 0x%s: %s %d, "
              "stderr \"%.200s\"", sizes[i], addr, r.signaled ? "signal" : "exit",
              r.signaled ? r.sig : r.exit_code, r.err);
    }
}

/* The secure build: an 8-byte underflow out of a block lands in the
 * record of the block before it, and the free stops, naming the block
 * freed; a second line names the block before and the word its record
 * holds (here the bytes written), so a report from the field says whether
 * the program wrote there. */
static void record_underflow_child(void *arg)
{
    (void)arg;
    char *v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = malloc(3000);
        if (!v[i])
            _exit(77);
        memset(v[i], 0x11, 3000);
    }
    /* two neighbours in one slab, b right after a (blocks are handed out
     * in a random order: find a pair) */
    char *a = NULL, *b = NULL;
    for (int i = 0; i < 3 && !a; i++)
        for (int j = 0; j < 3; j++)
            if (v[j] == v[i] + 3072) {
                a = v[i];
                b = v[j];
                break;
            }
    if (!a)
        _exit(78);
    fprintf(stderr, "before %p\n", (void *)a);
    fflush(stderr);
    volatile char *w = (volatile char *)b;
    for (int i = 1; i <= 8; i++)
        w[-i] = 0x42;
    free(b);
    _exit(0);
}

static void test_record_underflow_names_the_block_before(void)
{
    mmpool_stats_t st;
    mmpool_stats_get(&st);
    if (!st.secure) {
        printf("  (skipped: the default build has no check of the record before a block; "
               "an underflow into it stops when that block is freed, as its overflow)\n");
        return;
    }
    int tries = 0;
    tu_child_result r;
    do {
        REQUIRE(tu_run_child(record_underflow_child, NULL, 20, &r), "fork");
    } while (r.exited && r.exit_code == 78 && ++tries < 20);
    REQUIRE(!(r.exited && r.exit_code == 78), "no two neighbouring 3000-byte blocks in 20 tries");
    char before[64] = "";
    sscanf(r.err, "before %63s", before);
    CHECK(r.signaled && r.sig == SIGABRT &&
              strstr(r.err, "mmpool: heap underflow: the record of the block before") &&
              strstr(r.err, "\nmmpool:   the block before starts at ") && before[0] &&
              strstr(r.err, before) && strstr(r.err, "reads 0x4242424242424242") &&
              strstr(r.err, "; that block is in use"),
          "an 8-byte underflow into the record before: %s %d; stderr \"%.400s\"",
          r.signaled ? "signal" : "exit", r.signaled ? r.sig : r.exit_code, r.err);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(double_free_before_init_aborts);
    RUN(double_free_small_aborts);
    RUN(double_free_medium_aborts);
    RUN(double_free_other_thread_aborts);
    RUN(double_free_after_write_aborts);
    RUN(double_free_after_write_below_aborts);
    RUN(double_free_in_flagged_slab_aborts);
    RUN(double_free_of_a_last_block_aborts);
    RUN(stale_free_marks_are_not_double_frees);
    RUN(double_free_large_aborts);
    RUN(double_free_other_entry_points_abort);
    RUN(double_free_message_names_block);
    RUN(free_4gib_away_is_no_block);
    RUN(free_of_a_chunk_lookalike_stops);
    RUN(underflow_into_slab_header_stops);
    RUN(record_underflow_names_the_block_before);
    RUN(free_sized_mismatch_aborts);
    RUN(free_sized_right_sizes_pass);
    RUN(parent_still_fine);
    RUN(foreign_free);
    RUN(foreign_free_other_arena);
    RUN(foreign_realloc);
    RUN(foreign_usable_size);
    RUN(foreign_free_other_thread);
    return tu_finish();
}
