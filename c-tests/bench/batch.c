/*
 * batch - allocate a batch of blocks of one size, then free them all.
 * THREADS workers share a fixed number of blocks, each on its own batches.
 * A batch is 100-2,000 blocks of one size (60% 8-64 B, 30% up to 256 B,
 * 10% up to 1 KiB), all filled, then all verified and freed: in allocation
 * order, in reverse, or evens then odds (batch by batch in turn). Nothing
 * else is live, so every batch runs through the allocator's fast paths and
 * its refill and release of whole spans. Like mimalloc-bench's glibc-simple
 * and the batch loops of alloc-test; also what a parser or a compiler pass
 * that builds and drops a list of nodes does.
 */
#include "common.h"

#define BASE_BLOCKS 20e6
#define MIN_BATCH 100
#define MAX_BATCH 2000
#define STRIDE 64

struct worker {
    struct bench_worker b;
    uint64_t batches;
};

static size_t
pick_size(rng_t *r)
{
    uint64_t x = rng_below(r, 100);
    if (x < 60)
        return rng_range(r, 8, 64);
    if (x < 90)
        return rng_range(r, 65, 256);
    return rng_range(r, 257, 1024);
}

/* The k-th block to free: in allocation order, in reverse, or the even
 * indices and then the odd ones. */
static size_t
free_index(unsigned order, size_t k, size_t count)
{
    if (order == 0)
        return k;
    if (order == 1)
        return count - 1 - k;
    size_t evens = (count + 1) / 2;
    return k < evens ? 2 * k : 2 * (k - evens) + 1;
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    rng_t r = rng_seed(0x6261746368ULL + (uint64_t)w->b.id);
    unsigned char **blk = calloc(MAX_BATCH, sizeof *blk);
    if (!blk)
        fatal("out of memory");
    uint64_t key = (uint64_t)w->b.id << 40, left = w->b.ops, sum = 0;
    while (left) {
        size_t count = rng_range(&r, MIN_BATCH, MAX_BATCH);
        if (count > left)
            count = left;
        size_t n = pick_size(&r);
        for (size_t j = 0; j < count; j++) {
            blk[j] = xmalloc("batch", n);
            pat_fill_sparse(blk[j], n, key + j, STRIDE);
        }
        unsigned order = (unsigned)(w->batches % 3);
        for (size_t k = 0; k < count; k++) {
            size_t j = free_index(order, k, count);
            if (!blk[j])
                die("batch: block %zu of %zu freed twice (order %u)", j, count, order);
            pat_verify_sparse("batch", blk[j], n, key + j, STRIDE);
            sum += obj_hash(key + j, n);
            free(blk[j]);
            blk[j] = NULL;
        }
        key += count;
        left -= count;
        w->batches++;
    }
    free(blk);
    w->b.sum = sum;
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t blocks = scaled(BASE_BLOCKS, scale, 1000);

    struct worker *ws = workers_new(threads, sizeof *ws, blocks);
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws), batches = 0;
    for (int t = 0; t < threads; t++)
        batches += ws[t].batches;
    free(ws);
    printf("batch blocks=%llu batches=%llu checksum=%016llx\n", (unsigned long long)blocks,
           (unsigned long long)batches, (unsigned long long)sum);
    return 0;
}
