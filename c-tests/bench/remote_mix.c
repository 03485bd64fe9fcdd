/*
 * remote-mix - random sizes up to 16 KiB, a quarter of them freed by
 * another thread. THREADS workers share a fixed number of operations and
 * 6,000 slots (each its own share, ~8 MiB live in all). An operation picks
 * a random slot of the worker's, retires the block there and allocates a
 * new one (60% 16-256 B, 30% up to 2 KiB, 10% up to 16 KiB). A retired
 * block is freed by the worker itself, or, for one block in four (chosen by
 * its key), verified and pushed onto the lock-free inbox of another worker,
 * which verifies and frees everything in its inbox every 16 operations (a
 * sender waits while its receiver has 1,024 blocks pending; a worker done
 * with its operations keeps draining until all are). The
 * size and the fate of a block are functions of its key, so the receiver
 * can check it completely. Like mimalloc-bench's alloc-test and
 * cache-scratch variants with remote frees (sh6bench, sh8bench).
 */
#include "common.h"

#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define BASE_OPS 5e6
#define TOTAL_SLOTS 6000
#define DRAIN_EVERY 16
#define INBOX_LIMIT 1024 /* a sender waits while its receiver has this many */
#define STRIDE 256

struct slot {
    unsigned char *p;
    uint64_t key;
};

struct worker {
    struct bench_worker b;
    char pad0[64];
    _Atomic(unsigned char *) inbox; /* blocks other workers retired */
    _Atomic size_t pending;          /* how many */
    char pad1[64];
    size_t nslots;
    int nworkers;
    uint64_t frees, remote;
};

static size_t
block_size(uint64_t key)
{
    rng_t r = rng_seed(key);
    uint64_t x = rng_below(&r, 100);
    if (x < 60)
        return rng_range(&r, 16, 256);
    if (x < 90)
        return rng_range(&r, 257, 2048);
    return rng_range(&r, 2049, 16384);
}

/* The worker that frees a block: itself for 3 keys in 4, else another. */
static int
block_owner(uint64_t key, int self, int n)
{
    uint64_t h = mix64(key ^ 0x72656d6f7465ULL);
    if ((h & 3) != 0 || n == 1)
        return self;
    return (int)((uint64_t)self + 1 + (h >> 2) % (uint64_t)(n - 1)) % n;
}

static void
retire_local(struct worker *w, unsigned char *p, uint64_t key)
{
    size_t n = block_size(key);
    pat_verify_sparse("remote-mix", p, n, key, STRIDE);
    w->b.sum += obj_hash(key, n);
    w->frees++;
    free(p);
}

/* An inbox entry keeps the link in word 0 and the key in word 1 (both
 * verified before they were overwritten); they are restored here so the
 * whole block is checked again. */
static void
drain(struct worker *w)
{
    unsigned char *p = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    size_t got = 0;
    for (; p; got++) {
        unsigned char *next = (unsigned char *)(uintptr_t)get64(p);
        uint64_t key = get64(p + 8);
        put64(p, pat_word(key, 0));
        put64(p + 8, pat_word(key, 8));
        retire_local(w, p, key);
        p = next;
    }
    if (got)
        atomic_fetch_sub_explicit(&w->pending, got, memory_order_relaxed);
}

static void
retire(struct worker *ws, struct worker *w, struct slot *s)
{
    int to = block_owner(s->key, w->b.id, w->nworkers);
    if (to == w->b.id) {
        retire_local(w, s->p, s->key);
        return;
    }
    pat_verify_sparse("remote-mix", s->p, block_size(s->key), s->key, STRIDE);
    struct worker *dst = &ws[to];
    /* back-pressure, as a bounded queue would have: without it a receiver
     * that is not scheduled piles up tens of thousands of blocks */
    while (atomic_load_explicit(&dst->pending, memory_order_relaxed) >= INBOX_LIMIT) {
        drain(w); /* so two workers waiting on each other both go on */
        sched_yield();
    }
    put64(s->p + 8, s->key);
    unsigned char *head = atomic_load_explicit(&dst->inbox, memory_order_relaxed);
    do
        put64(s->p, (uint64_t)(uintptr_t)head);
    while (!atomic_compare_exchange_weak_explicit(&dst->inbox, &head, s->p, memory_order_release,
                                                  memory_order_relaxed));
    atomic_fetch_add_explicit(&dst->pending, 1, memory_order_relaxed);
    w->remote++;
}

static struct worker *all_workers;
static _Atomic int working; /* workers still doing their operations */

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x6d697872ULL + (uint64_t)w->b.id);
    struct slot *slots = calloc(w->nslots, sizeof *slots);
    if (!slots)
        fatal("out of memory");
    uint64_t base = (uint64_t)w->b.id << 40;
    for (uint64_t i = 0; i < w->b.ops; i++) {
        struct slot *s = &slots[rng_below(&r, w->nslots)];
        if (s->p)
            retire(all_workers, w, s);
        s->key = base + i;
        size_t n = block_size(s->key);
        s->p = xmalloc("remote-mix", n);
        pat_fill_sparse(s->p, n, s->key, STRIDE);
        if (i % DRAIN_EVERY == DRAIN_EVERY - 1)
            drain(w);
    }
    for (size_t j = 0; j < w->nslots; j++)
        if (slots[j].p)
            retire_local(w, slots[j].p, slots[j].key);
    free(slots);
    /* keep freeing what the others send until they are all done */
    atomic_fetch_sub_explicit(&working, 1, memory_order_release);
    while (atomic_load_explicit(&working, memory_order_acquire) > 0) {
        drain(w);
        nanosleep(&(struct timespec){ 0, 20000 }, NULL);
    }
    drain(w);
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t ops = scaled(BASE_OPS, scale, 1000);

    struct worker *ws = workers_new(threads, sizeof *ws, ops);
    all_workers = ws;
    atomic_init(&working, threads);
    for (int t = 0; t < threads; t++) {
        ws[t].nslots = TOTAL_SLOTS / (size_t)threads + 1;
        ws[t].nworkers = threads;
        atomic_init(&ws[t].inbox, NULL);
        atomic_init(&ws[t].pending, 0);
    }
    workers_start(ws, threads, sizeof *ws, run);
    workers_join(ws, threads, sizeof *ws);
    uint64_t sum = 0, frees = 0, remote = 0;
    for (int t = 0; t < threads; t++) {
        sum += ws[t].b.sum;
        frees += ws[t].frees;
        remote += ws[t].remote;
    }
    free(ws);
    if (frees != ops)
        die("remote-mix: freed %llu blocks of %llu", (unsigned long long)frees,
            (unsigned long long)ops);
    printf("remote-mix ops=%llu remote=%llu checksum=%016llx\n", (unsigned long long)ops,
           (unsigned long long)remote, (unsigned long long)sum);
    return 0;
}
