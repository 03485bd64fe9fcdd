/* c-tests/leak/leaky_prog.c -- a program that leaks from known functions,
 * for the tests of c-tests/leak/ (it checks nothing itself).
 *
 *   leaky_prog [leak]   leak the blocks below, free everything else
 *   leaky_prog none     the same workload, but free everything
 *   leaky_prog mt       8 threads churn, freeing each other's blocks;
 *                       each thread leaks 100 blocks of 40 bytes in
 *                       mt_leak (one site: 32000 bytes, 800 blocks)
 *   leaky_prog bench N  N malloc/free pairs of mixed sizes; prints
 *                       `bench_ns <nanoseconds>` and `malloc_module
 *                       <path>` (the module whose malloc ran; no leaks)
 *
 * The leaks (requested bytes; every size distinct, so sites sort in a
 * known order):
 *
 *   leak_big          1 block  of 200000 bytes (a large block)   200000
 *   leak_via_realloc  1 block  grown by realloc to 3000 bytes      3000
 *   leak_deep         1 block  of 1000 bytes, 20 calls deep        1000
 *   leak_nodes       10 blocks of 48 bytes                          480
 *   thread_leaker     4 blocks of 72 bytes, one per thread          288
 *   leak_aligned      1 block  of posix_memalign(256, 200)          200
 *   leak_strings      5 strdup of a 20-character string (21 bytes)  105
 *   leak_calloc       1 block  of calloc(7, 9)                       63
 *   leak_zero         1 block  of malloc(0)                           0
 *                                       total 205136 bytes, 25 blocks,
 *                                       9 sites
 *
 * stdout (fully buffered when a pipe, so an early _exit would lose it):
 * `line <function> <N>` for the source line of each leaking call (what
 * addr2line must give for the frame), then `leaky_prog: done <mode>`.
 *
 * Pointers are stored in a volatile global array, so gcc cannot drop the
 * allocations; the leaking functions are noinline and do work after the
 * call, so the call is never a tail call (the function is on the stack).
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

void *volatile keep[64];
static volatile int n_nodes = 10;
static volatile int n_strings = 5;
static volatile int deep_levels = 20;
static int freeing; /* mode "none": free the "leaks" too */

static int line_nodes, line_strings, line_big, line_realloc, line_calloc, line_deep,
    line_thread, line_aligned, line_zero;

static void hold(int slot, void *p)
{
    if (p == NULL) {
        fprintf(stderr, "leaky_prog: allocation failed\n");
        exit(3);
    }
    keep[slot] = p;
}

NOINLINE void leak_nodes(void)
{
    for (int i = 0; i < n_nodes; i++) {
        void *p = malloc(48); line_nodes = __LINE__;
        hold(i, p);
        memset(p, 0x4e, 48);
    }
}

NOINLINE void leak_strings(void)
{
    static const char *const text = "twenty-characters-xx"; /* 20 chars */
    for (int i = 0; i < n_strings; i++) {
        char *s = strdup(text); line_strings = __LINE__;
        hold(10 + i, s);
        s[0] = (char)('a' + i);
    }
}

NOINLINE void leak_big(void)
{
    void *p = malloc(200000); line_big = __LINE__;
    hold(15, p);
    memset(p, 0x42, 200000);
}

NOINLINE void leak_via_realloc(void)
{
    char *p = malloc(10);
    hold(16, p);
    memcpy(p, "realloc!", 9);
    for (size_t n = 100; n <= 3000; n += 700) {
        size_t want = n + 700 > 3000 ? 3000 : n;
        char *q = realloc(p, want); line_realloc = __LINE__;
        hold(16, q);
        p = q;
        p[want - 1] = 1;
        if (want == 3000)
            break;
    }
}

NOINLINE void leak_calloc(void)
{
    unsigned char *p = calloc(7, 9); line_calloc = __LINE__;
    hold(17, p);
    p[62] = 1;
}

NOINLINE void leak_aligned(void)
{
    void *p = NULL;
    int rc = posix_memalign(&p, 256, 200); line_aligned = __LINE__;
    if (rc != 0 || ((uintptr_t)p & 255) != 0) {
        fprintf(stderr, "leaky_prog: posix_memalign failed\n");
        exit(3);
    }
    hold(24, p);
    memset(p, 0x41, 200);
}

NOINLINE void leak_zero(void)
{
    void *p = malloc(0); line_zero = __LINE__;
    hold(25, p);
}

NOINLINE void *leak_deep(int n)
{
    if (n == 0) {
        void *p = malloc(1000); line_deep = __LINE__;
        hold(18, p);
        memset(p, 0x44, 1000);
        return p;
    }
    void *p = leak_deep(n - 1);
    keep[19] = (char *)p + n; /* work after the call: no tail call */
    return p;
}

NOINLINE void *thread_leaker(void *arg)
{
    int slot = (int)(intptr_t)arg;
    void *p = malloc(72); line_thread = __LINE__;
    hold(slot, p);
    memset(p, 0x54, 72);
    return NULL;
}

static void leak_in_threads(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, thread_leaker, (void *)(intptr_t)(20 + i)) != 0) {
            fprintf(stderr, "leaky_prog: pthread_create failed\n");
            exit(3);
        }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

/* Blocks that are freed again: small, medium, large, realloc'd, calloc'd,
 * freed from another thread. None of them may be reported. */
static void *freed_elsewhere;

static void *thread_freer(void *arg)
{
    (void)arg;
    free(freed_elsewhere);
    return NULL;
}

static void churn(void)
{
    void *v[200];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 200; i++) {
            v[i] = malloc((size_t)(i * 37 % 5000 + 1));
            hold(30, v[i]);
            memset(v[i], i, 1);
        }
        for (int i = 0; i < 200; i += 2)
            free(v[i]);
        for (int i = 1; i < 200; i += 2) {
            v[i] = realloc(v[i], (size_t)(i * 91 % 9000 + 1));
            hold(30, v[i]);
        }
        for (int i = 1; i < 200; i += 2)
            free(v[i]);
    }
    void *big = malloc(500000);
    hold(31, big);
    memset(big, 1, 500000);
    free(big);
    void *z = calloc(100, 3);
    hold(32, z);
    free(z);
    char *s = strdup("a string that is freed");
    hold(33, s);
    free(s);
    void *a = NULL;
    if (posix_memalign(&a, 4096, 5000) != 0)
        exit(3);
    hold(33, a);
    free(a);
    void *r0 = malloc(99);
    hold(33, r0);
    keep[33] = realloc(r0, 0); /* frees, as glibc */
    free(keep[33]);

    freed_elsewhere = malloc(333);
    hold(34, freed_elsewhere);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_freer, NULL) != 0) {
        fprintf(stderr, "leaky_prog: pthread_create failed\n");
        exit(3);
    }
    pthread_join(t, NULL);
    keep[30] = keep[31] = keep[32] = keep[33] = keep[34] = NULL;
}

static void free_leaks(void)
{
    for (int i = 0; i < 64; i++) {
        if (i == 19)
            continue; /* an interior pointer, not a block */
        free(keep[i]);
        keep[i] = NULL;
    }
    keep[19] = NULL;
}

/* ------------------------------------------------------------------ */
/* mode "mt": concurrent allocation, cross-thread frees, leaks per thread */

#define MT_THREADS 8
#define MT_BLOCKS 1000
#define MT_ROUNDS 5
#define MT_LEAKS 100

static void *mt_slots[MT_THREADS][MT_BLOCKS];
void *volatile mt_leaked[MT_THREADS][MT_LEAKS];
static pthread_barrier_t mt_barrier;

NOINLINE void mt_leak(int t)
{
    for (int i = 0; i < MT_LEAKS; i++) {
        void *p = malloc(40);
        if (p == NULL)
            exit(3);
        mt_leaked[t][i] = p;
        memset(p, t, 40);
    }
}

static void *mt_body(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int round = 0; round < MT_ROUNDS; round++) {
        for (int i = 0; i < MT_BLOCKS; i++) {
            size_t size = (size_t)((i * 131 + round * 17 + t) % 3000 + 1);
            if (i % 250 == 0)
                size = 40000 + (size_t)i; /* a few large blocks */
            char *p = malloc(size);
            if (p == NULL)
                exit(3);
            p[0] = (char)i;
            mt_slots[t][i] = p;
        }
        pthread_barrier_wait(&mt_barrier);
        /* free the neighbour's blocks, half of them after a realloc */
        int n = (t + 1) % MT_THREADS;
        for (int i = 0; i < MT_BLOCKS; i++) {
            void *p = mt_slots[n][i];
            if (i % 2) {
                p = realloc(p, (size_t)(i % 500 + 1));
                if (p == NULL)
                    exit(3);
            }
            free(p);
            mt_slots[n][i] = NULL;
        }
        pthread_barrier_wait(&mt_barrier);
    }
    mt_leak(t);
    return NULL;
}

static int mt(void)
{
    pthread_t th[MT_THREADS];
    pthread_barrier_init(&mt_barrier, NULL, MT_THREADS);
    for (int t = 0; t < MT_THREADS; t++)
        if (pthread_create(&th[t], NULL, mt_body, (void *)(intptr_t)t) != 0) {
            fprintf(stderr, "leaky_prog: pthread_create failed\n");
            return 3;
        }
    for (int t = 0; t < MT_THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&mt_barrier);
    printf("leaky_prog: done mt\n");
    return 0;
}

/* ------------------------------------------------------------------ */

static void *slots[1024];

static int bench(long pairs)
{
    static const size_t sizes[8] = {16, 24, 40, 64, 100, 256, 700, 2000};
    struct timespec t0, t1;
    uint64_t x = 88172645463325252ull;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < pairs; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t k = (size_t)(x % 1024);
        free(slots[k]);
        char *p = malloc(sizes[(x >> 20) & 7]);
        if (p == NULL)
            return 3;
        p[0] = (char)i;
        slots[k] = p;
    }
    for (int k = 0; k < 1024; k++) {
        free(slots[k]);
        slots[k] = NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec);
    printf("bench_ns %lld pairs %ld\n", ns, pairs);
    /* which allocator served them (the runner links -lmmpool) */
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    if (dladdr((void *)m, &info) != 0 && info.dli_fname != NULL)
        printf("malloc_module %s\n", info.dli_fname);
    return 0;
}

int main(int argc, char **argv)
{
    /* the C-test runner passes --smoke / --full: the default mode */
    const char *mode = argc > 1 && argv[1][0] != '-' ? argv[1] : "leak";
    if (strcmp(mode, "bench") == 0)
        return bench(argc > 2 ? atol(argv[2]) : 2000000);
    if (strcmp(mode, "mt") == 0)
        return mt();
    if (strcmp(mode, "none") == 0)
        freeing = 1;
    else if (strcmp(mode, "leak") != 0) {
        fprintf(stderr, "usage: leaky_prog [leak|none|mt|bench N]\n");
        return 2;
    }

    churn();
    leak_nodes();
    leak_strings();
    leak_big();
    leak_via_realloc();
    leak_calloc();
    leak_deep(deep_levels);
    leak_in_threads();
    leak_aligned();
    leak_zero();
    churn();
    if (freeing)
        free_leaks();

    printf("line leak_nodes %d\n", line_nodes);
    printf("line leak_strings %d\n", line_strings);
    printf("line leak_big %d\n", line_big);
    printf("line leak_via_realloc %d\n", line_realloc);
    printf("line leak_calloc %d\n", line_calloc);
    printf("line leak_deep %d\n", line_deep);
    printf("line thread_leaker %d\n", line_thread);
    printf("line leak_aligned %d\n", line_aligned);
    printf("line leak_zero %d\n", line_zero);
    /* enough output that losing the buffer at exit would show */
    for (int i = 0; i < 100; i++)
        printf("filler %d\n", i);
    printf("leaky_prog: done %s\n", mode);
    return 0;
}
