/*
 * frag - fragmentation and memory return. In each of 16 rounds every thread
 * allocates its share of 250,000 small blocks (16..256 B, skewed small),
 * frees every other one, then allocates larger blocks (512 B..4 KiB) of
 * about the same total size as the holes just made; at the start of a round
 * everything of the round 4 rounds earlier is freed, so the last 4 rounds
 * (~70 MiB) stay live and new blocks must fit into a holed heap. The
 * resident set at the end shows how well the allocator packs.
 * Output: a checksum line plus `rss_kib=` (VmRSS with everything still
 * live), `rss_free_kib=` (VmRSS after freeing it all) and `live_kib=`
 * (bytes the program holds at the end, requested sizes). The rss tokens
 * are measurements and are not compared across allocators.
 */
#include "common.h"

#define BASE_SMALL 250e3 /* per round, all threads */
#define ROUNDS 16
#define KEEP 4 /* rounds live at once */
#define STRIDE 256

struct obj {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

struct worker {
    struct bench_worker b; /* ops: small blocks per round */
    struct obj *small[ROUNDS], *large[ROUNDS];
    size_t nlarge[ROUNDS];
    uint64_t live_bytes;
};

static pthread_barrier_t phase;

static void
obj_new(struct obj *o, size_t n, uint64_t key)
{
    o->p = xmalloc("frag", n);
    o->n = n;
    o->key = key;
    pat_fill(o->p, n, key, STRIDE);
}

static uint64_t
obj_free(struct obj *o)
{
    if (!o->p)
        return 0;
    pat_verify("frag", o->p, o->n, o->key, STRIDE);
    free(o->p);
    o->p = NULL;
    return obj_hash(o->key, o->n);
}

/* Free everything of one round. */
static void
drop(struct worker *w, int round)
{
    for (size_t i = 0; i < w->b.ops; i++)
        w->b.sum += obj_free(&w->small[round][i]);
    for (size_t i = 0; i < w->nlarge[round]; i++)
        w->b.sum += obj_free(&w->large[round][i]);
    free(w->small[round]);
    free(w->large[round]);
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x66726167ULL + (uint64_t)w->b.id);
    uint64_t key = (uint64_t)w->b.id << 40;
    for (int round = 0; round < ROUNDS; round++) {
        if (round >= KEEP)
            drop(w, round - KEEP);
        struct obj *s = calloc(w->b.ops, sizeof *s);
        if (!s)
            fatal("out of memory");
        w->small[round] = s;
        for (size_t i = 0; i < w->b.ops; i++) {
            size_t n = rng_below(&r, 4) ? rng_range(&r, 16, 64) : rng_range(&r, 65, 256);
            obj_new(&s[i], n, key++);
        }
        size_t holes = 0;
        for (size_t i = 0; i < w->b.ops; i += 2) {
            holes += s[i].n;
            w->b.sum += obj_free(&s[i]);
        }
        size_t cap = holes / 512 + 1, nl = 0;
        struct obj *l = calloc(cap, sizeof *l);
        if (!l)
            fatal("out of memory");
        for (size_t filled = 0; filled < holes && nl < cap; nl++) {
            size_t n = rng_range(&r, 512, 4096);
            obj_new(&l[nl], n, key++);
            filled += n;
        }
        w->large[round] = l;
        w->nlarge[round] = nl;
    }
    for (int round = ROUNDS - KEEP; round < ROUNDS; round++) {
        for (size_t i = 1; i < w->b.ops; i += 2)
            w->live_bytes += w->small[round][i].n;
        for (size_t i = 0; i < w->nlarge[round]; i++)
            w->live_bytes += w->large[round][i].n;
    }
    pthread_barrier_wait(&phase); /* main measures RSS with all data live */
    pthread_barrier_wait(&phase);
    for (int round = ROUNDS - KEEP; round < ROUNDS; round++)
        drop(w, round);
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t nsmall = scaled(BASE_SMALL, scale, 64);
    if (pthread_barrier_init(&phase, NULL, (unsigned)threads + 1))
        fatal("pthread_barrier_init failed");
    struct worker *ws = workers_new(threads, sizeof *ws, nsmall);
    workers_start(ws, threads, sizeof *ws, run);
    pthread_barrier_wait(&phase);
    long rss = vm_rss_kib();
    pthread_barrier_wait(&phase);
    uint64_t sum = workers_join(ws, threads, sizeof *ws), live = 0;
    for (int t = 0; t < threads; t++)
        live += ws[t].live_bytes;
    free(ws);
    long rss_free = vm_rss_kib();
    printf("frag small=%llu live_kib=%llu checksum=%016llx rss_kib=%ld rss_free_kib=%ld\n",
           (unsigned long long)nsmall * ROUNDS, (unsigned long long)(live >> 10),
           (unsigned long long)sum, rss, rss_free);
    return 0;
}
