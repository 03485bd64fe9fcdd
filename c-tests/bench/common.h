/*
 * common.h - shared helpers for the mmpool benchmark workloads.
 *
 * Every workload is `prog THREADS SCALE`:
 *   THREADS  worker threads (1..1024; what a "thread" means is in each file)
 *   SCALE    work multiplier, a positive real; 1 = the normal run
 *            (roughly 0.5-2 s with glibc malloc on a 2-core machine)
 * and prints ONE result line on stdout that depends only on the arguments,
 * never on the allocator, addresses or thread interleaving. Tokens named
 * `*rss*=` are measurements and are ignored when outputs are compared.
 *
 * Every block the workloads allocate is filled with a pattern derived from
 * a per-object key (never from its address) and verified before it is
 * freed; a mismatch, a NULL, or a misaligned pointer prints
 * "bench: CORRUPTION ..." to stderr and exits with status 3, so a broken
 * allocator cannot look fast.
 */
#ifndef MMPOOL_BENCH_COMMON_H
#define MMPOOL_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ errors */

__attribute__((noreturn, unused, format(printf, 1, 2))) static void
die(const char *fmt, ...)
{
    va_list ap;
    fputs("bench: CORRUPTION: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(3);
}

__attribute__((noreturn, unused, format(printf, 1, 2))) static void
fatal(const char *fmt, ...)
{
    va_list ap;
    fputs("bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* Keep the compiler from deleting a malloc/free pair or caching memory. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

/* --------------------------------------------------------------- arguments */

static inline void
bench_args(int argc, char **argv, int *threads, double *scale)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s THREADS SCALE\n", argv[0]);
        exit(2);
    }
    char *end;
    long t = strtol(argv[1], &end, 10);
    if (*end || t < 1 || t > 1024)
        fatal("THREADS must be 1..1024, got '%s'", argv[1]);
    double s = strtod(argv[2], &end);
    if (*end || !(s > 0.0) || s > 1000.0)
        fatal("SCALE must be a positive number, got '%s'", argv[2]);
    *threads = (int)t;
    *scale = s;
}

/* base * scale, at least `min`. */
static inline uint64_t
scaled(double base, double scale, uint64_t min)
{
    double v = base * scale;
    return v < (double)min ? min : (uint64_t)v;
}

/* ----------------------------------------------------------------- hashing */

static inline uint64_t
mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Checksum contribution of one object; sums of these are order-free. */
static inline uint64_t
obj_hash(uint64_t key, size_t size)
{
    return mix64(key * 0x9e3779b97f4a7c15ULL + size + 1);
}

static inline uint64_t
fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ------------------------------------------------------------------- PRNG */

typedef struct {
    uint64_t s;
} rng_t;

static inline rng_t
rng_seed(uint64_t seed)
{
    rng_t r = { mix64(seed + 0x2545f4914f6cdd1dULL) };
    return r;
}

/* splitmix64 */
static inline uint64_t
rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0. */
static inline uint64_t
rng_below(rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline uint64_t
rng_range(rng_t *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

/* --------------------------------------------------------------- patterns */
/*
 * A block of n bytes with key k holds pat_word(k, o) at a set of 8-byte
 * word offsets W(n, stride): every word of the first 128 bytes, every word
 * of the last 128 bytes, one word every `stride` bytes in between; plus the
 * trailing n % 8 bytes, each the low byte of pat_word(k, o). The value at an
 * offset does not depend on n, so after realloc the retained prefix can be
 * checked against the old size's set (pass the new size as `limit`).
 * Blocks up to 256 bytes are therefore covered completely.
 */
#define PAT_EDGE 128

static inline uint64_t
pat_word(uint64_t key, size_t off)
{
    return mix64(key ^ ((uint64_t)off * 0xd6e8feb86659fd93ULL));
}

static inline void
put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline uint64_t
get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void
pat_fill(void *block, size_t n, uint64_t key, size_t stride)
{
    unsigned char *p = block;
    size_t words_end = n & ~(size_t)7;
    size_t head_end = words_end < PAT_EDGE ? words_end : PAT_EDGE;
    size_t tail = words_end > 2 * PAT_EDGE ? ((n - PAT_EDGE) & ~(size_t)7) : head_end;
    size_t o;
    for (o = 0; o < head_end; o += 8)
        put64(p + o, pat_word(key, o));
    for (o = head_end; o < tail; o += stride)
        put64(p + o, pat_word(key, o));
    for (o = tail; o < words_end; o += 8)
        put64(p + o, pat_word(key, o));
    for (o = words_end; o < n; o++)
        p[o] = (unsigned char)pat_word(key, o);
}

/* 0 when the pattern of an n-byte block is intact below `limit`, else the
 * first bad offset + 1. */
static inline size_t
pat_check_limit(const void *block, size_t n, uint64_t key, size_t stride, size_t limit)
{
    const unsigned char *p = block;
    size_t words_end = n & ~(size_t)7;
    size_t head_end = words_end < PAT_EDGE ? words_end : PAT_EDGE;
    size_t tail = words_end > 2 * PAT_EDGE ? ((n - PAT_EDGE) & ~(size_t)7) : head_end;
    size_t o;
    for (o = 0; o < head_end && o + 8 <= limit; o += 8)
        if (get64(p + o) != pat_word(key, o))
            return o + 1;
    for (o = head_end; o < tail && o + 8 <= limit; o += stride)
        if (get64(p + o) != pat_word(key, o))
            return o + 1;
    for (o = tail; o < words_end && o + 8 <= limit; o += 8)
        if (get64(p + o) != pat_word(key, o))
            return o + 1;
    for (o = words_end; o < n && o < limit; o++)
        if (p[o] != (unsigned char)pat_word(key, o))
            return o + 1;
    return 0;
}

static inline size_t
pat_check(const void *block, size_t n, uint64_t key, size_t stride)
{
    return pat_check_limit(block, n, key, stride, n);
}

/* Verify or die. `what` names the workload/object kind. */
static inline void
pat_verify(const char *what, const void *block, size_t n, uint64_t key, size_t stride)
{
    size_t bad = pat_check(block, n, key, stride);
    if (bad)
        die("%s: block %p size %zu key %#llx: pattern broken at offset %zu", what, block, n,
            (unsigned long long)key, bad - 1);
}

/*
 * A lighter pattern, for the workloads modelled on allocator stress tests
 * (xserver, prodcons-pairs, remote-mix, batch), where pat_fill's 32 words
 * of the first and last 128 bytes would cost several times what malloc and
 * free do. A block of n bytes with key k holds pat_word(k, o) at the 8-byte
 * words at offsets 0 and 8 (where allocators keep free-list links and
 * headers), at every multiple of `stride` (a multiple of 8; 64 touches
 * every cache line), and at the last whole word; its trailing n % 8 bytes
 * are the low bytes of pat_word(k, n & ~7). Blocks under 24 bytes are
 * covered completely. An offset named twice gets the same value twice.
 */
static inline void
pat_fill_sparse(void *block, size_t n, uint64_t key, size_t stride)
{
    unsigned char *p = block;
    size_t words_end = n & ~(size_t)7;
    if (words_end >= 8)
        put64(p, pat_word(key, 0));
    if (words_end >= 16)
        put64(p + 8, pat_word(key, 8));
    for (size_t o = stride; o + 8 <= words_end; o += stride)
        put64(p + o, pat_word(key, o));
    if (words_end >= 24)
        put64(p + words_end - 8, pat_word(key, words_end - 8));
    if (n & 7) {
        uint64_t w = pat_word(key, words_end);
        for (size_t o = words_end; o < n; o++)
            p[o] = (unsigned char)(w >> (8 * (o - words_end)));
    }
}

/* 0 when the sparse pattern of an n-byte block is intact, else the first
 * bad offset + 1. */
static inline size_t
pat_check_sparse(const void *block, size_t n, uint64_t key, size_t stride)
{
    const unsigned char *p = block;
    size_t words_end = n & ~(size_t)7;
    if (words_end >= 8 && get64(p) != pat_word(key, 0))
        return 1;
    if (words_end >= 16 && get64(p + 8) != pat_word(key, 8))
        return 9;
    for (size_t o = stride; o + 8 <= words_end; o += stride)
        if (get64(p + o) != pat_word(key, o))
            return o + 1;
    if (words_end >= 24 && get64(p + words_end - 8) != pat_word(key, words_end - 8))
        return words_end - 7;
    if (n & 7) {
        uint64_t w = pat_word(key, words_end);
        for (size_t o = words_end; o < n; o++)
            if (p[o] != (unsigned char)(w >> (8 * (o - words_end))))
                return o + 1;
    }
    return 0;
}

static inline void
pat_verify_sparse(const char *what, const void *block, size_t n, uint64_t key, size_t stride)
{
    size_t bad = pat_check_sparse(block, n, key, stride);
    if (bad)
        die("%s: block %p size %zu key %#llx: pattern broken at offset %zu", what, block, n,
            (unsigned long long)key, bad - 1);
}

/* A fresh block must be non-NULL and 16-byte aligned (8 below 16 bytes). */
static inline void *
check_new(const char *what, void *p, size_t n)
{
    if (p == NULL)
        die("%s: allocation of %zu bytes returned NULL (errno %d)", what, n, errno);
    uintptr_t mask = n >= 16 ? 15 : 7;
    if ((uintptr_t)p & mask)
        die("%s: allocation of %zu bytes returned misaligned %p", what, n, p);
    return p;
}

static inline void *
xmalloc(const char *what, size_t n)
{
    return check_new(what, malloc(n), n);
}

/* ------------------------------------------------------------------ misc */

/* Resident set (kB) from /proc/self/status, or -1. */
static inline long
vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static inline void
xpthread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);
    if (rc)
        fatal("pthread_create: %s", strerror(rc));
}

static inline void
xpthread_join(pthread_t t)
{
    int rc = pthread_join(t, NULL);
    if (rc)
        fatal("pthread_join: %s", strerror(rc));
}

/* [lo, hi) share of `total` items for worker i of n. */
static inline void
share(uint64_t total, int i, int n, uint64_t *lo, uint64_t *hi)
{
    *lo = total * (uint64_t)i / (uint64_t)n;
    *hi = total * (uint64_t)(i + 1) / (uint64_t)n;
}

/* Bytes a worker's struct is aligned to: a pair of cache lines (the
 * adjacent-line prefetcher pulls lines in pairs). */
#define WORKER_ALIGN 128

/* What every workload's worker starts with: its thread, its index, its
 * share [lo, hi) of the run's work (ops = hi - lo), and the checksum it
 * hands back. Aligned (so every struct starting with it is too) to keep
 * each worker's counters, which it updates in its loop, off the cache
 * lines of the others: in one packed array, two threads' counters could
 * share a line, and the time then depended on where the allocator under
 * test had put that array (false sharing), not on its speed. */
struct bench_worker {
    pthread_t tid;
    int id;
    uint64_t lo, hi, ops;
    uint64_t sum;
} __attribute__((aligned(WORKER_ALIGN)));

/* `n` zeroed structs of `size` bytes each (a multiple of WORKER_ALIGN),
 * aligned to WORKER_ALIGN. */
static inline void *
aligned_zeroed(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        fatal("out of memory");
    void *p = aligned_alloc(WORKER_ALIGN, n * size);
    if (!p)
        fatal("out of memory");
    memset(p, 0, n * size);
    return p;
}

/* Worker t of an array of workers of `size` bytes each. */
static inline struct bench_worker *
worker_at(void *ws, size_t size, int t)
{
    return (struct bench_worker *)((char *)ws + (size_t)t * size);
}

/* `threads` zeroed workers of `size` bytes each (structs whose first
 * member is a struct bench_worker), worker t numbered t and given its
 * share of `total`. */
static inline void *
workers_new(int threads, size_t size, uint64_t total)
{
    void *ws = aligned_zeroed((size_t)threads, size);
    for (int t = 0; t < threads; t++) {
        struct bench_worker *w = worker_at(ws, size, t);
        w->id = t;
        share(total, t, threads, &w->lo, &w->hi);
        w->ops = w->hi - w->lo;
    }
    return ws;
}

/* Start every worker's thread on fn(worker). */
static inline void
workers_start(void *ws, int threads, size_t size, void *(*fn)(void *))
{
    for (int t = 0; t < threads; t++)
        xpthread_create(&worker_at(ws, size, t)->tid, fn, worker_at(ws, size, t));
}

/* Wait for every worker; the sum of their checksums. */
static inline uint64_t
workers_join(void *ws, int threads, size_t size)
{
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        xpthread_join(worker_at(ws, size, t)->tid);
        sum += worker_at(ws, size, t)->sum;
    }
    return sum;
}

/*
 * Producer/consumer pairs (prodcons, prodcons-pairs): THREADS/2 pairs (at
 * least one), each a struct whose first member is a struct bench_pair,
 * `size` bytes (a multiple of WORKER_ALIGN). Pair i gets its share of
 * `total` items; its consumer starts first, then its producer. The
 * consumer sets `received` and `sum`; every item must arrive.
 */
struct bench_pair {
    pthread_t prod, cons;
    int id;
    uint64_t items;
    uint64_t sum, received;
} __attribute__((aligned(WORKER_ALIGN)));

/* Run the pairs and print "NAME pairs=P blocks=N checksum=X". */
static inline int
pairs_main(const char *name, int argc, char **argv, double base_items, size_t size,
           void *(*producer)(void *), void *(*consumer)(void *))
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    int pairs = threads / 2 > 0 ? threads / 2 : 1;
    uint64_t items = scaled(base_items, scale, 1000);

    char *qs = aligned_zeroed((size_t)pairs, size);
    for (int i = 0; i < pairs; i++) {
        struct bench_pair *q = (struct bench_pair *)(qs + (size_t)i * size);
        uint64_t lo, hi;
        share(items, i, pairs, &lo, &hi);
        q->id = i;
        q->items = hi - lo;
        xpthread_create(&q->cons, consumer, q);
        xpthread_create(&q->prod, producer, q);
    }
    uint64_t sum = 0, received = 0;
    for (int i = 0; i < pairs; i++) {
        struct bench_pair *q = (struct bench_pair *)(qs + (size_t)i * size);
        xpthread_join(q->prod);
        xpthread_join(q->cons);
        if (q->received != q->items)
            die("%s: pair %d received %llu of %llu blocks", name, i,
                (unsigned long long)q->received, (unsigned long long)q->items);
        sum += q->sum;
        received += q->received;
    }
    free(qs);
    printf("%s pairs=%d blocks=%llu checksum=%016llx\n", name, pairs,
           (unsigned long long)received, (unsigned long long)sum);
    return 0;
}

#endif
