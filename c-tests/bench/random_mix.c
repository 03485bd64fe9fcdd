/*
 * random-mix - a random mix of malloc, free and realloc over a ~10 MiB
 * working set, sizes from a realistic distribution: 70% 8-64 B, 20% up to
 * 512 B, 8% up to 4 KiB, 1.8% up to 32 KiB, 0.2% up to 256 KiB (mean about
 * 900 B). THREADS workers share a fixed number of operations and 22,000
 * slots (each its own share; about half of them hold a block at any time).
 * An operation picks a random slot of the worker's: an empty one gets a new
 * block; a full one has its block verified and freed (85%) or realloc'd to
 * a new size from the same distribution (15%; the retained prefix is
 * verified, then the block is refilled under a new key). Nothing crosses
 * threads. Like mimalloc-bench's espresso, cfrac and barnes: a program's
 * own random op mix rather than a fixed pattern.
 */
#include "common.h"

#define BASE_OPS 3e6
#define TOTAL_SLOTS 22000
#define STRIDE 256

struct slot {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

struct worker {
    struct bench_worker b;
    size_t nslots;
    uint64_t objects, reallocs;
};

static size_t
pick_size(rng_t *r)
{
    uint64_t x = rng_below(r, 1000);
    if (x < 700)
        return rng_range(r, 8, 64);
    if (x < 900)
        return rng_range(r, 65, 512);
    if (x < 980)
        return rng_range(r, 513, 4096);
    if (x < 998)
        return rng_range(r, 4097, 32768);
    return rng_range(r, 32769, 262144);
}

static void
retire(struct worker *w, struct slot *s)
{
    pat_verify("random-mix", s->p, s->n, s->key, STRIDE);
    w->b.sum += obj_hash(s->key, s->n);
    w->objects++;
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x72616e64ULL + (uint64_t)w->b.id);
    struct slot *slots = calloc(w->nslots, sizeof *slots);
    if (!slots)
        fatal("out of memory");
    uint64_t base = (uint64_t)w->b.id << 40;
    for (uint64_t i = 0; i < w->b.ops; i++) {
        struct slot *s = &slots[rng_below(&r, w->nslots)];
        uint64_t key = base + i;
        if (!s->p) {
            size_t n = pick_size(&r);
            s->p = xmalloc("random-mix", n);
            s->n = n;
        } else if (rng_below(&r, 100) < 85) {
            retire(w, s);
            free(s->p);
            s->p = NULL;
            continue;
        } else {
            retire(w, s);
            size_t n = pick_size(&r);
            unsigned char *q = check_new("random-mix realloc", realloc(s->p, n), n);
            size_t keep = n < s->n ? n : s->n;
            size_t bad = pat_check_limit(q, s->n, s->key, STRIDE, keep);
            if (bad)
                die("random-mix: realloc %zu -> %zu (key %#llx) lost the prefix at offset %zu",
                    s->n, n, (unsigned long long)s->key, bad - 1);
            s->p = q;
            s->n = n;
            w->reallocs++;
        }
        s->key = key;
        pat_fill(s->p, s->n, key, STRIDE);
    }
    for (size_t j = 0; j < w->nslots; j++)
        if (slots[j].p) {
            retire(w, &slots[j]);
            free(slots[j].p);
        }
    free(slots);
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
        ws[t].nslots = TOTAL_SLOTS / (size_t)threads + 1;
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws), objects = 0, reallocs = 0;
    for (int t = 0; t < threads; t++) {
        objects += ws[t].objects;
        reallocs += ws[t].reallocs;
    }
    free(ws);
    printf("random-mix ops=%llu objects=%llu reallocs=%llu checksum=%016llx\n",
           (unsigned long long)ops, (unsigned long long)objects, (unsigned long long)reallocs,
           (unsigned long long)sum);
    return 0;
}
