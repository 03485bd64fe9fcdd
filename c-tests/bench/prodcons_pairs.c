/*
 * prodcons-pairs - producer/consumer pairs passing single blocks.
 * THREADS threads form THREADS/2 pairs (at least one), all running at once.
 * A producer allocates blocks (75% 16-128 B, 20% up to 1 KiB, 5% up to
 * 8 KiB; the size is a function of the block's key), fills them and
 * passes them one at a time through a lock-free single-producer/single-
 * consumer ring of 1,024 pointers. Its consumer, which knows the key the
 * next block must carry (they come in order), keeps the last 256 blocks in a reservoir and, for every block
 * it receives beyond that, verifies and frees a random one of them, so
 * blocks are freed by another thread in an order unlike their allocation
 * order. Unlike `prodcons` (32-block batches, freed in order) every block
 * crosses the queue on its own. Like mimalloc-bench's mstress and rptest,
 * or a work queue of requests.
 */
#include "common.h"

#include <sched.h>
#include <stdatomic.h>

#define BASE_ITEMS 4e6
#define RING 1024
#define RESERVOIR 256
#define STRIDE 64

struct pair {
    struct bench_pair b; /* first */
    _Alignas(64) _Atomic size_t head; /* consumer's */
    _Alignas(64) _Atomic size_t tail; /* producer's */
    _Alignas(64) unsigned char *slot[RING];
};

static size_t
item_size(uint64_t key)
{
    rng_t r = rng_seed(key);
    uint64_t x = rng_below(&r, 100);
    if (x < 75)
        return rng_range(&r, 16, 128);
    if (x < 95)
        return rng_range(&r, 129, 1024);
    return rng_range(&r, 1025, 8192);
}

static void
backoff(unsigned *spins)
{
    if (++*spins < 64)
        __builtin_ia32_pause();
    else
        sched_yield();
}

static void *
producer(void *arg)
{
    struct pair *q = arg;
    uint64_t base = (uint64_t)q->b.id << 40;
    size_t tail = 0, head = 0; /* head: the consumer's, as last seen */
    for (uint64_t i = 0; i <= q->b.items; i++) {
        unsigned char *p = NULL;
        if (i < q->b.items) {
            uint64_t key = base + i;
            size_t n = item_size(key);
            p = xmalloc("prodcons-pairs", n);
            pat_fill_sparse(p, n, key, STRIDE);
        } /* else NULL: end of stream */
        unsigned spins = 0;
        while (tail - head == RING) {
            head = atomic_load_explicit(&q->head, memory_order_acquire);
            if (tail - head == RING)
                backoff(&spins);
        }
        q->slot[tail % RING] = p;
        atomic_store_explicit(&q->tail, ++tail, memory_order_release);
    }
    return NULL;
}

struct held {
    unsigned char *p;
    uint64_t key;
};

static void
release(struct held *h, uint64_t *sum)
{
    size_t n = item_size(h->key);
    pat_verify_sparse("prodcons-pairs", h->p, n, h->key, STRIDE);
    *sum += obj_hash(h->key, n);
    free(h->p);
}

static void *
consumer(void *arg)
{
    struct pair *q = arg;
    rng_t r = rng_seed(0x636f6e73ULL + (uint64_t)q->b.id);
    uint64_t expect = (uint64_t)q->b.id << 40;
    uint64_t sum = 0, received = 0;
    struct held res[RESERVOIR];
    size_t nres = 0;
    size_t head = 0, tail = 0; /* tail: the producer's, as last seen */
    for (;;) {
        unsigned spins = 0;
        while (head == tail) {
            tail = atomic_load_explicit(&q->tail, memory_order_acquire);
            if (head == tail)
                backoff(&spins);
        }
        unsigned char *p = q->slot[head % RING];
        atomic_store_explicit(&q->head, ++head, memory_order_release);
        if (!p)
            break;
        struct held h = { p, expect++ };
        received++;
        if (nres < RESERVOIR) {
            res[nres++] = h;
            continue;
        }
        size_t j = rng_below(&r, RESERVOIR);
        release(&res[j], &sum);
        res[j] = h;
    }
    for (size_t j = 0; j < nres; j++)
        release(&res[j], &sum);
    q->b.sum = sum;
    q->b.received = received;
    return NULL;
}

int
main(int argc, char **argv)
{
    return pairs_main("prodcons-pairs", argc, argv, BASE_ITEMS, sizeof(struct pair), producer, consumer);
}
