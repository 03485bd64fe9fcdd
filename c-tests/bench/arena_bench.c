/*
 * arena_bench.c - request-scoped allocation: per-request arena reset vs
 * malloc/free of every object.
 *
 *   arena_bench THREADS SCALE MODE      MODE = arena | malloc
 *
 * A simulated server handles SCALE * 40000 requests, split between
 * THREADS worker threads (request i is the same work whichever thread
 * runs it). A request allocates 100..400 small objects of mixed sizes
 * (16..512 bytes, skewed small), some strings (formatted, 8..60 bytes),
 * and 0..3 buffers of 8..64 KiB; it touches everything (fills it with a
 * pattern derived from the request and object number), reads it back
 * into a checksum, releases one buffer early (a temporary), then
 * releases everything at the end of the request:
 *
 *   malloc  free() of every object, in allocation order;
 *   arena   one reset of the thread's arena (64 KiB blocks, so buffers
 *           above 16 KiB are its large allocations; the early release of
 *           a buffer is mmpool_arena_free, done only for those).
 *
 * The arena functions are looked up with dlsym(RTLD_DEFAULT, ...), so the
 * arena mode runs under any allocator: under libmmpool (preloaded or
 * linked) it uses mmpool_arena_*; when they are absent (glibc, jemalloc,
 * mimalloc, tcmalloc...) it falls back to a tiny built-in bump arena of
 * the same shape (blocks from malloc, objects above a quarter block are
 * their own malloc'ed "large" allocations on a list, reset keeps the
 * first block and frees the rest) so the comparison still runs. Which
 * one was used is printed on stderr.
 *
 * stdout: ONE line, identical in both modes and for any THREADS:
 *   arena_bench requests=N objects=M bytes=B checksum=X
 * stderr: mode, arena implementation, elapsed time, peak RSS.
 * A NULL, a misaligned block or a broken pattern prints
 * "bench: CORRUPTION ..." and exits with status 3.
 *
 * Build: gcc -O2 -pthread arena_bench.c -ldl   (no mmpool header needed)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BASE_REQUESTS 40000.0
#define ARENA_BLOCK (64 * 1024)
#define MAX_OBJS 512

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("bench: CORRUPTION: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(3);
}

__attribute__((noreturn, format(printf, 1, 2))) static void fatal(const char *fmt, ...)
{
    va_list ap;
    fputs("bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* ------------------------------------------------------------------ */
/* The arena interface: mmpool's (found with dlsym) or the fallback.   */

typedef struct {
    void *(*create)(size_t block);
    void (*destroy)(void *a);
    void (*reset)(void *a);
    void *(*alloc)(void *a, size_t n);
    void *(*nalloc)(void *a, size_t n);
    int (*free)(void *a, void *p);
    const char *name;
} arena_api_t;

static arena_api_t A;

/* --- fallback: a minimal bump arena with mmpool's shape ------------- */

typedef struct fb_block {
    struct fb_block *next;
    size_t pad;            /* keeps the bump start 16-aligned */
} fb_block_t;

typedef struct fb_large {
    struct fb_large *prev, *next;
} fb_large_t;              /* 16 bytes before the user pointer */

typedef struct {
    fb_block_t *first, *last;
    char *cur, *end;
    size_t block;
    fb_large_t *large;
} fb_arena_t;

static void *fb_create(size_t block)
{
    fb_arena_t *a = malloc(sizeof *a);
    fb_block_t *b = malloc(block);
    if (!a || !b) {
        free(a);
        free(b);
        return NULL;
    }
    b->next = NULL;
    *a = (fb_arena_t){ b, b, (char *)(b + 1), (char *)b + block, block, NULL };
    return a;
}

static void *fb_large_alloc(fb_arena_t *a, size_t n)
{
    fb_large_t *l = malloc(sizeof *l + n);
    if (!l)
        return NULL;
    l->prev = NULL;
    l->next = a->large;
    if (a->large)
        a->large->prev = l;
    a->large = l;
    return l + 1;
}

static void *fb_bump(void *arena, size_t n, size_t align)
{
    fb_arena_t *a = arena;
    if (n > a->block / 4)
        return fb_large_alloc(a, n);
    uintptr_t p = ((uintptr_t)a->cur + align - 1) & ~(uintptr_t)(align - 1);
    if (p + n > (uintptr_t)a->end) {
        fb_block_t *b = malloc(a->block);
        if (!b)
            return NULL;
        b->next = NULL;
        a->last->next = b;
        a->last = b;
        a->end = (char *)b + a->block;
        p = (uintptr_t)(b + 1);
    }
    a->cur = (char *)(p + n);
    return (void *)p;
}

static void *fb_alloc(void *a, size_t n) { return fb_bump(a, n, 16); }
static void *fb_nalloc(void *a, size_t n) { return fb_bump(a, n, 1); }

/* Only called for allocations above a quarter block (large ones). */
static int fb_free(void *arena, void *p)
{
    fb_arena_t *a = arena;
    fb_large_t *l = (fb_large_t *)p - 1;
    if (l->prev)
        l->prev->next = l->next;
    else
        a->large = l->next;
    if (l->next)
        l->next->prev = l->prev;
    free(l);
    return 0;
}

static void fb_reset(void *arena)
{
    fb_arena_t *a = arena;
    while (a->large) {
        fb_large_t *n = a->large->next;
        free(a->large);
        a->large = n;
    }
    fb_block_t *b = a->first->next;
    while (b) {
        fb_block_t *n = b->next;
        free(b);
        b = n;
    }
    a->first->next = NULL;
    a->last = a->first;
    a->cur = (char *)(a->first + 1);
    a->end = (char *)a->first + a->block;
}

static void fb_destroy(void *arena)
{
    fb_arena_t *a = arena;
    fb_reset(a);
    free(a->first);
    free(a);
}

static void resolve_arena_api(void)
{
    void *c = dlsym(RTLD_DEFAULT, "mmpool_arena_create");
    void *d = dlsym(RTLD_DEFAULT, "mmpool_arena_destroy");
    void *r = dlsym(RTLD_DEFAULT, "mmpool_arena_reset");
    void *al = dlsym(RTLD_DEFAULT, "mmpool_arena_alloc");
    void *na = dlsym(RTLD_DEFAULT, "mmpool_arena_nalloc");
    void *f = dlsym(RTLD_DEFAULT, "mmpool_arena_free");
    if (c && d && r && al && na && f) {
        *(void **)&A.create = c;
        *(void **)&A.destroy = d;
        *(void **)&A.reset = r;
        *(void **)&A.alloc = al;
        *(void **)&A.nalloc = na;
        *(void **)&A.free = f;
        A.name = "mmpool (mmpool_arena_* via dlsym)";
    } else {
        A = (arena_api_t){ fb_create, fb_destroy, fb_reset, fb_alloc, fb_nalloc, fb_free,
                           "built-in bump arena (mmpool_arena_* not found)" };
    }
}

/* ------------------------------------------------------------------ */
/* The workload                                                        */

enum { MODE_MALLOC, MODE_ARENA };
static int g_mode;
static uint64_t g_requests;

typedef struct {
    uint64_t lo, hi;          /* requests [lo, hi) */
    uint64_t sum, objects, bytes;
} worker_t;

static inline void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The pattern word w of an object with key `key` (cheap: one multiply). */
static inline uint64_t pat(uint64_t key, size_t w)
{
    return key ^ ((uint64_t)(w + 1) * 0x9e3779b97f4a7c15ULL);
}

static inline unsigned char tail_byte(uint64_t key, size_t i)
{
    return (unsigned char)((key >> ((i & 7) * 8)) ^ i);
}

/* Fill: one 8-byte word per `stride` bytes (32 for objects, 256 for
 * buffers) plus the last word and the trailing bytes of odd sizes. */
static void touch(unsigned char *p, size_t n, uint64_t key, size_t stride)
{
    size_t words = n / 8;
    for (size_t w = 0; w < words; w += stride / 8)
        put64(p + w * 8, pat(key, w));
    if (words)
        put64(p + (words - 1) * 8, pat(key, words - 1));
    for (size_t i = words * 8; i < n; i++)
        p[i] = tail_byte(key, i);
}

static uint64_t readback(const unsigned char *p, size_t n, uint64_t key, size_t stride)
{
    uint64_t h = n;
    size_t words = n / 8;
    for (size_t w = 0; w < words; w += stride / 8) {
        uint64_t v = get64(p + w * 8);
        if (v != pat(key, w))
            die("object of %zu bytes (key %#llx): word %zu broken", n, (unsigned long long)key, w);
        h = (h ^ v) * 0x100000001b3ULL;
    }
    if (words && get64(p + (words - 1) * 8) != pat(key, words - 1))
        die("object of %zu bytes: last word broken", n);
    for (size_t i = words * 8; i < n; i++) {
        if (p[i] != tail_byte(key, i))
            die("object of %zu bytes: byte %zu broken", n, i);
        h += p[i];
    }
    return h ^ key;
}

static inline uint64_t obj_key(uint64_t req, int i)
{
    return (req << 20 | (uint64_t)i) * 0x9e3779b97f4a7c15ULL;
}

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    void *arena = NULL;
    if (g_mode == MODE_ARENA) {
        arena = A.create(ARENA_BLOCK);
        if (!arena)
            die("arena create returned NULL");
    }
    void *objs[MAX_OBJS];
    size_t sizes[MAX_OBJS];
    unsigned char kinds[MAX_OBJS];
    /* Counted in locals, stored once at the end: the workers' structs
     * share cache lines (one calloc'd array), and updating them in the
     * loop timed false sharing that depends on where the allocator put
     * that array, not the allocator's speed. */
    uint64_t sum = 0, objects = 0, bytes = 0;
    for (uint64_t req = w->lo; req < w->hi; req++) {
        rng_t r = { mix64(req * 0x9e3779b97f4a7c15ULL + 12345) };
        int n = 100 + (int)rng_below(&r, 301);
        int nbuf = (int)rng_below(&r, 4);
        int nobj = 0;
        /* allocate and touch */
        for (int i = 0; i < n + nbuf; i++) {
            size_t sz;
            int kind; /* 0 object, 1 string, 2 buffer */
            if (i >= n) {
                kind = 2;
                sz = 8192 + (size_t)rng_below(&r, 57345);
            } else if (rng_below(&r, 10) == 0) {
                kind = 1;
                sz = 8 + (size_t)rng_below(&r, 53);
            } else {
                kind = 0;
                uint64_t k = rng_below(&r, 100);
                sz = k < 70 ? 16 + (size_t)rng_below(&r, 113) : 128 + (size_t)rng_below(&r, 385);
            }
            uint64_t key = obj_key(req, i);
            void *p;
            if (g_mode == MODE_MALLOC)
                p = malloc(sz);
            else
                p = kind == 1 ? A.nalloc(arena, sz) : A.alloc(arena, sz);
            if (!p)
                die("allocation of %zu bytes returned NULL (errno %d)", sz, errno);
            if (kind != 1 && ((uintptr_t)p & 15))
                die("allocation of %zu bytes returned misaligned %p", sz, p);
            if (kind == 1) {
                /* a string: hex digits of the key, NUL-terminated, sz bytes */
                static const char hex[] = "0123456789abcdef";
                for (size_t j = 0; j + 1 < sz; j++)
                    ((char *)p)[j] = hex[(key >> (4 * (j & 15))) & 15];
                ((char *)p)[sz - 1] = 0;
            } else {
                touch(p, sz, key, kind == 2 ? 256 : 32);
            }
            objs[nobj] = p;
            sizes[nobj] = sz;
            kinds[nobj] = (unsigned char)kind;
            nobj++;
            objects++;
            bytes += sz;
        }
        /* read everything back */
        for (int i = 0; i < nobj; i++) {
            uint64_t key = obj_key(req, i);
            if (kinds[i] == 1) {
                const char *s = objs[i];
                size_t len = strlen(s);
                if (len != sizes[i] - 1)
                    die("string of %zu bytes has length %zu", sizes[i], len);
                sum += (len * 0x100000001b3ULL) ^ (unsigned char)s[len / 2] ^ key;
            } else {
                sum += readback(objs[i], sizes[i], key, kinds[i] == 2 ? 256 : 32);
            }
        }
        /* the first buffer was a temporary: released early */
        if (nbuf) {
            int i = n;
            if (g_mode == MODE_MALLOC) {
                free(objs[i]);
                objs[i] = NULL;
            } else if (sizes[i] > ARENA_BLOCK / 4) {
                if (A.free(arena, objs[i]) != 0)
                    die("arena free of a %zu-byte large allocation refused", sizes[i]);
            }
        }
        /* end of request */
        if (g_mode == MODE_MALLOC) {
            for (int i = 0; i < nobj; i++)
                free(objs[i]);
        } else {
            A.reset(arena);
        }
    }
    if (arena)
        A.destroy(arena);
    w->sum = sum;
    w->objects = objects;
    w->bytes = bytes;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s THREADS SCALE MODE   (MODE: arena | malloc)\n", argv[0]);
        return 2;
    }
    char *end;
    long threads = strtol(argv[1], &end, 10);
    if (*end || threads < 1 || threads > 1024)
        fatal("THREADS must be 1..1024, got '%s'", argv[1]);
    double scale = strtod(argv[2], &end);
    if (*end || !(scale > 0.0) || scale > 1000.0)
        fatal("SCALE must be a positive number, got '%s'", argv[2]);
    if (strcmp(argv[3], "arena") == 0)
        g_mode = MODE_ARENA;
    else if (strcmp(argv[3], "malloc") == 0)
        g_mode = MODE_MALLOC;
    else
        fatal("MODE must be arena or malloc, got '%s'", argv[3]);
    double rq = BASE_REQUESTS * scale;
    g_requests = rq < 1 ? 1 : (uint64_t)rq;
    if (g_mode == MODE_ARENA)
        resolve_arena_api();

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    worker_t *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    if (!w || !th)
        fatal("out of memory");
    for (long i = 0; i < threads; i++) {
        w[i].lo = g_requests * (uint64_t)i / (uint64_t)threads;
        w[i].hi = g_requests * (uint64_t)(i + 1) / (uint64_t)threads;
        int rc = pthread_create(&th[i], NULL, run_worker, &w[i]);
        if (rc)
            fatal("pthread_create: %s", strerror(rc));
    }
    uint64_t sum = 0, objects = 0, bytes = 0;
    for (long i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        sum += w[i].sum;
        objects += w[i].objects;
        bytes += w[i].bytes;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("arena_bench requests=%llu objects=%llu bytes=%llu checksum=%016llx\n",
           (unsigned long long)g_requests, (unsigned long long)objects,
           (unsigned long long)bytes, (unsigned long long)sum);
    fprintf(stderr, "arena_bench: mode=%s arena=%s threads=%ld elapsed=%.3fs maxrss=%ldKiB\n",
            argv[3], g_mode == MODE_ARENA ? A.name : "-", threads, secs, ru.ru_maxrss);
    free(w);
    free(th);
    return 0;
}
