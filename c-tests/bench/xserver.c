/*
 * xserver - a server whose worker threads come and go (larson-style).
 * THREADS chains run at once. A chain owns an array of 2,000 slots; each
 * of its threads ("generations") does 4,000 operations on it, every one of
 * them picking a random slot, verifying and freeing the block there, and
 * allocating a new one of 8-1000 B (uniform) in its place; then it starts
 * its successor, hands it the array and exits, and the successor joins it.
 * So every generation frees the blocks its predecessor allocated (about
 * 43% of its frees are of blocks from a thread that has exited) and leaves
 * its own to the next one. The last generation of a chain frees the rest.
 * Like mimalloc-bench's larson (and xmalloc-test's cross-thread frees).
 */
#include "common.h"

#include <semaphore.h>

#define BASE_OPS 8e6
#define SLOTS 2000
#define GEN_OPS 4000 /* operations per thread before it hands over */
#define MIN_SIZE 8
#define MAX_SIZE 1000
#define STRIDE 64

struct slot {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

struct chain {
    int id;
    uint64_t ops, done; /* operations for the chain / done so far */
    uint64_t gen;       /* generation now running */
    pthread_t prev;     /* the thread to join (set by itself before handing over) */
    int has_prev;
    struct slot *slots;
    uint64_t sum, frees, threads;
    sem_t finished;
} __attribute__((aligned(WORKER_ALIGN))); /* off the other chains' lines (common.h) */

static void
release(struct chain *c, struct slot *s)
{
    pat_verify_sparse("xserver", s->p, s->n, s->key, STRIDE);
    c->sum += obj_hash(s->key, s->n);
    c->frees++;
    free(s->p);
    s->p = NULL;
}

static void *
generation(void *arg)
{
    struct chain *c = arg;
    if (c->has_prev)
        xpthread_join(c->prev); /* the predecessor has exited: its blocks are orphans */
    c->threads++;
    rng_t r = rng_seed(((uint64_t)c->id << 32) + c->gen);
    uint64_t end = c->done + GEN_OPS < c->ops ? c->done + GEN_OPS : c->ops;
    for (uint64_t i = c->done; i < end; i++) {
        struct slot *s = &c->slots[rng_below(&r, SLOTS)];
        if (s->p)
            release(c, s);
        size_t n = rng_range(&r, MIN_SIZE, MAX_SIZE);
        s->p = xmalloc("xserver", n);
        s->n = n;
        s->key = ((uint64_t)c->id << 40) + i;
        pat_fill_sparse(s->p, n, s->key, STRIDE);
    }
    c->done = end;
    c->prev = pthread_self();
    c->has_prev = 1;
    if (c->done < c->ops) {
        c->gen++;
        pthread_t next;
        xpthread_create(&next, generation, c); /* it joins this thread */
        return NULL;
    }
    for (size_t j = 0; j < SLOTS; j++)
        if (c->slots[j].p)
            release(c, &c->slots[j]);
    sem_post(&c->finished); /* main joins this last thread */
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t ops = scaled(BASE_OPS, scale, 1000);

    struct chain *cs = aligned_zeroed((size_t)threads, sizeof *cs);
    for (int t = 0; t < threads; t++) {
        uint64_t lo, hi;
        share(ops, t, threads, &lo, &hi);
        cs[t].id = t;
        cs[t].ops = hi - lo;
        cs[t].slots = calloc(SLOTS, sizeof(struct slot));
        if (!cs[t].slots || sem_init(&cs[t].finished, 0, 0))
            fatal("out of memory");
    }
    for (int t = 0; t < threads; t++) {
        pthread_t first;
        xpthread_create(&first, generation, &cs[t]);
    }
    uint64_t sum = 0, frees = 0, gens = 0;
    for (int t = 0; t < threads; t++) {
        while (sem_wait(&cs[t].finished))
            ;
        xpthread_join(cs[t].prev);
        sum += cs[t].sum;
        frees += cs[t].frees;
        gens += cs[t].threads;
        free(cs[t].slots);
        sem_destroy(&cs[t].finished);
    }
    free(cs);
    if (frees != ops)
        die("xserver: freed %llu blocks of %llu", (unsigned long long)frees,
            (unsigned long long)ops);
    printf("xserver chains=%d ops=%llu threads=%llu checksum=%016llx\n", threads,
           (unsigned long long)ops, (unsigned long long)gens, (unsigned long long)sum);
    return 0;
}
