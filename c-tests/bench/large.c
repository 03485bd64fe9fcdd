/*
 * large - big blocks: 64 KiB..32 MiB (log-uniform: each doubling equally
 * likely). Each thread keeps 4 live blocks and repeatedly replaces a random
 * one: verify and free the old block, allocate a new one and write every
 * page of it (one word per 4 KiB plus the first and last 128 bytes).
 */
#include "common.h"

#define BASE_OPS 8000
#define LIVE 4
#define PAGE 4096

struct blk {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

struct worker {
    struct bench_worker b;
    uint64_t bytes;
};

static size_t
pick_size(rng_t *r)
{
    size_t base = (size_t)65536 << rng_below(r, 9); /* 64 KiB .. 16 MiB */
    return base + rng_below(r, base + 1);           /* .. 32 MiB */
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x6c617267ULL + (uint64_t)w->b.id);
    struct blk live[LIVE];
    memset(live, 0, sizeof live);
    uint64_t key = (uint64_t)w->b.id << 40;
    for (uint64_t i = 0; i < w->b.ops + LIVE; i++) {
        struct blk *b = i < LIVE ? &live[i] : &live[rng_below(&r, LIVE)];
        if (b->p) {
            pat_verify("large", b->p, b->n, b->key, PAGE);
            w->b.sum += obj_hash(b->key, b->n);
            free(b->p);
            b->p = NULL;
        }
        if (i >= w->b.ops) /* the last LIVE steps only drain */
            continue;
        b->n = pick_size(&r);
        b->key = key++;
        b->p = xmalloc("large", b->n);
        pat_fill(b->p, b->n, b->key, PAGE);
        w->bytes += b->n;
    }
    for (int i = 0; i < LIVE; i++)
        if (live[i].p) {
            pat_verify("large", live[i].p, live[i].n, live[i].key, PAGE);
            w->b.sum += obj_hash(live[i].key, live[i].n);
            free(live[i].p);
        }
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t ops = scaled(BASE_OPS, scale, 16);
    struct worker *ws = workers_new(threads, sizeof *ws, ops);
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws), bytes = 0;
    for (int t = 0; t < threads; t++)
        bytes += ws[t].bytes;
    free(ws);
    printf("large blocks=%llu mib=%llu checksum=%016llx\n", (unsigned long long)ops,
           (unsigned long long)(bytes >> 20), (unsigned long long)sum);
    return 0;
}
