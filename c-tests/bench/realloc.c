/*
 * realloc - growing and shrinking buffers. Each thread keeps 32 small
 * "string builders" that grow from 16 B by steps of 16..256 B up to
 * 16 KiB and are then freed and restarted, and 4 big buffers that grow by
 * doubling or by small steps up to 8 MiB and shrink by halving or by small
 * steps. After every realloc the retained prefix is verified against the
 * pattern written before it, then the whole new size is stamped again.
 */
#include "common.h"

#define BASE_OPS 1e6
#define BUILDERS 32
#define BIGS 4
#define BUILDER_MAX (16 * 1024)
#define BIG_MAX (8 * 1024 * 1024)

struct buf {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

struct worker {
    struct bench_worker b;
    uint64_t reallocs;
};

/* Sparser checks for big buffers: at most ~256 sampled words each. */
static size_t
stride_for(size_t n)
{
    size_t s = (n / 256) & ~(size_t)7;
    return s < 256 ? 256 : s;
}

static void
resize(struct worker *w, struct buf *b, size_t n)
{
    unsigned char *p = realloc(b->p, n);
    check_new("realloc", p, n);
    size_t bad = pat_check_limit(p, b->n, b->key, stride_for(b->n), n);
    if (bad)
        die("realloc: %zu -> %zu bytes (key %#llx): old contents lost at offset %zu", b->n, n,
            (unsigned long long)b->key, bad - 1);
    b->p = p;
    b->n = n;
    pat_fill(p, n, b->key, stride_for(n));
    w->b.sum += obj_hash(b->key, n);
    w->reallocs++;
}

static void
restart(struct worker *w, struct buf *b, size_t n, uint64_t key)
{
    if (b->p) {
        pat_verify("realloc", b->p, b->n, b->key, stride_for(b->n));
        free(b->p);
    }
    b->p = xmalloc("realloc", n);
    b->n = n;
    b->key = key;
    pat_fill(b->p, n, key, stride_for(n));
    w->b.sum += obj_hash(key, n);
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x7265616cULL + (uint64_t)w->b.id);
    struct buf small[BUILDERS], big[BIGS];
    memset(small, 0, sizeof small);
    memset(big, 0, sizeof big);
    uint64_t key = (uint64_t)w->b.id << 40;
    for (int i = 0; i < BUILDERS; i++)
        restart(w, &small[i], 16, key++);
    for (int i = 0; i < BIGS; i++)
        restart(w, &big[i], 4096, key++);
    for (uint64_t i = 0; i < w->b.ops; i++) {
        if (rng_below(&r, 64) != 0) {
            struct buf *b = &small[rng_below(&r, BUILDERS)];
            size_t n = b->n + rng_range(&r, 16, 256);
            if (n > BUILDER_MAX)
                restart(w, b, 16, key++);
            else
                resize(w, b, n);
            continue;
        }
        struct buf *b = &big[rng_below(&r, BIGS)];
        uint64_t op = rng_below(&r, 10);
        size_t n = b->n;
        if (op < 3) /* double */
            n = n * 2 <= BIG_MAX ? n * 2 : n / 2;
        else if (op < 7) /* small step up */
            n = n + rng_range(&r, 16, 256) <= BIG_MAX ? n + rng_range(&r, 16, 256) : n / 2;
        else if (op < 9) /* small step down */
            n = n > 4096 ? n - rng_range(&r, 16, 256) : n + 4096;
        else /* halve */
            n = n >= 8192 ? n / 2 : n * 2;
        resize(w, b, n);
    }
    for (int i = 0; i < BUILDERS; i++) {
        pat_verify("realloc", small[i].p, small[i].n, small[i].key, stride_for(small[i].n));
        free(small[i].p);
    }
    for (int i = 0; i < BIGS; i++) {
        pat_verify("realloc", big[i].p, big[i].n, big[i].key, stride_for(big[i].n));
        free(big[i].p);
    }
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
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws), reallocs = 0;
    for (int t = 0; t < threads; t++)
        reallocs += ws[t].reallocs;
    free(ws);
    printf("realloc ops=%llu reallocs=%llu checksum=%016llx\n", (unsigned long long)ops,
           (unsigned long long)reallocs, (unsigned long long)sum);
    return 0;
}
