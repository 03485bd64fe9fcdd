/*
 * prodcons - blocks allocated on one thread and freed on another.
 * THREADS threads form THREADS/2 producer/consumer pairs (at least one pair).
 * Each pair has a bounded lock-free single-producer/single-consumer ring of
 * batches; a producer allocates blocks (16 B..1 KiB, 1% up to 16 KiB),
 * stamps them, and hands them over 32 at a time in a batch that is itself a
 * malloc'd block; the consumer verifies order and contents and frees the
 * blocks and the batch. Every block is freed by a thread other than the one
 * that allocated it.
 */
#include "common.h"

#include <sched.h>
#include <stdatomic.h>

#define BASE_ITEMS 8e6
#define BATCH 32
#define RING 64 /* batches in flight per pair */
#define STRIDE 256

struct batch {
    size_t n;
    unsigned char *item[BATCH];
};

struct pair {
    struct bench_pair b; /* first */
    _Alignas(64) _Atomic size_t head; /* consumer's */
    _Alignas(64) _Atomic size_t tail; /* producer's */
    _Alignas(64) struct batch *slot[RING];
};

static void
backoff(unsigned *spins)
{
    if (++*spins < 64)
        __builtin_ia32_pause();
    else
        sched_yield();
}

static void
push(struct pair *q, struct batch *b)
{
    size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    unsigned spins = 0;
    while (t - atomic_load_explicit(&q->head, memory_order_acquire) == RING)
        backoff(&spins);
    q->slot[t % RING] = b;
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
}

static struct batch *
pop(struct pair *q)
{
    size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    unsigned spins = 0;
    while (atomic_load_explicit(&q->tail, memory_order_acquire) == h)
        backoff(&spins);
    struct batch *b = q->slot[h % RING];
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
    return b;
}

/* Block layout: key (8 bytes), size (8 bytes), then the pattern. */
static void *
producer(void *arg)
{
    struct pair *q = arg;
    rng_t r = rng_seed(0x70726f64ULL + (uint64_t)q->b.id);
    uint64_t base = (uint64_t)q->b.id << 40;
    struct batch *b = NULL;
    for (uint64_t i = 0; i < q->b.items; i++) {
        if (!b) {
            b = xmalloc("prodcons batch", sizeof *b);
            b->n = 0;
        }
        size_t n = rng_below(&r, 100) == 0 ? rng_range(&r, 1025, 16384) : rng_range(&r, 16, 1024);
        unsigned char *p = xmalloc("prodcons", n);
        uint64_t key = base + i;
        put64(p, key);
        put64(p + 8, n);
        pat_fill(p + 16, n - 16, key, STRIDE);
        b->item[b->n++] = p;
        if (b->n == BATCH) {
            push(q, b);
            b = NULL;
        }
    }
    if (b)
        push(q, b);
    push(q, NULL); /* end of stream */
    return NULL;
}

static void *
consumer(void *arg)
{
    struct pair *q = arg;
    uint64_t expect = (uint64_t)q->b.id << 40;
    uint64_t sum = 0, received = 0;
    struct batch *b;
    while ((b = pop(q)) != NULL) {
        if (b->n == 0 || b->n > BATCH)
            die("prodcons: batch %p has bad count %zu", (void *)b, b->n);
        for (size_t j = 0; j < b->n; j++) {
            unsigned char *p = b->item[j];
            uint64_t key = get64(p);
            size_t n = get64(p + 8);
            if (key != expect || n < 16 || n > 16384)
                die("prodcons: block %p: header key %#llx size %zu, expected key %#llx",
                    (void *)p, (unsigned long long)key, n, (unsigned long long)expect);
            pat_verify("prodcons", p + 16, n - 16, key, STRIDE);
            sum += obj_hash(key, n);
            received++;
            expect++;
            free(p);
        }
        free(b);
    }
    q->b.sum = sum;
    q->b.received = received;
    return NULL;
}

int
main(int argc, char **argv)
{
    return pairs_main("prodcons", argc, argv, BASE_ITEMS, sizeof(struct pair), producer, consumer);
}
