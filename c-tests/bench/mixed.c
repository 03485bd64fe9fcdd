/*
 * mixed - general-purpose churn. Sizes 16 B..4 KiB skewed small (60% up to
 * 128 B, 30% up to 1 KiB, 10% up to 4 KiB) plus 0.1% blocks of 64 KiB..1 MiB.
 * Each thread owns a long-lived slot array (its share of ~40,000 slots, a
 * working set of ~40 MiB in all) and a 256-slot "young" array; every
 * operation picks an array (half and half, so lifetimes mix short and long),
 * a random slot, verifies and frees its block, and allocates a new one.
 */
#include "common.h"

#define BASE_OPS 12e6
#define LONG_SLOTS 40000
#define YOUNG_SLOTS 256
#define STRIDE 256

struct slot {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

struct worker {
    struct bench_worker b;
    size_t nlong;
    uint64_t objects;
};

static size_t
pick_size(rng_t *r)
{
    uint64_t x = rng_below(r, 100000);
    if (x < 100) {
        size_t base = (size_t)65536 << rng_below(r, 4);
        return base + rng_below(r, base + 1); /* 64 KiB .. 1 MiB */
    }
    if (x < 60000)
        return rng_range(r, 16, 128);
    if (x < 90000)
        return rng_range(r, 129, 1024);
    return rng_range(r, 1025, 4096);
}

static void
replace(struct worker *w, struct slot *s, rng_t *r, uint64_t key)
{
    if (s->p) {
        pat_verify("mixed", s->p, s->n, s->key, STRIDE);
        w->b.sum += obj_hash(s->key, s->n);
        w->objects++;
        free(s->p);
        s->p = NULL;
    }
    if (key == UINT64_MAX)
        return;
    size_t n = pick_size(r);
    s->p = xmalloc("mixed", n);
    s->n = n;
    s->key = key;
    pat_fill(s->p, n, key, STRIDE);
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x6d69786564ULL + (uint64_t)w->b.id);
    struct slot *lng = calloc(w->nlong, sizeof *lng);
    struct slot young[YOUNG_SLOTS];
    memset(young, 0, sizeof young);
    if (!lng)
        fatal("out of memory");
    uint64_t base = (uint64_t)w->b.id << 40;
    for (uint64_t i = 0; i < w->b.ops; i++) {
        struct slot *s = (rng_next(&r) & 1) ? &lng[rng_below(&r, w->nlong)]
                                            : &young[rng_below(&r, YOUNG_SLOTS)];
        replace(w, s, &r, base + i);
    }
    for (size_t i = 0; i < w->nlong; i++)
        replace(w, &lng[i], &r, UINT64_MAX);
    for (size_t i = 0; i < YOUNG_SLOTS; i++)
        replace(w, &young[i], &r, UINT64_MAX);
    free(lng);
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
    for (int t = 0; t < threads; t++)
        ws[t].nlong = LONG_SLOTS / (size_t)threads + 1;
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws), objects = 0;
    for (int t = 0; t < threads; t++)
        objects += ws[t].objects;
    free(ws);
    printf("mixed ops=%llu objects=%llu checksum=%016llx\n", (unsigned long long)ops,
           (unsigned long long)objects, (unsigned long long)sum);
    return 0;
}
