/*
 * fastpath - the allocator's hot path: malloc(32), write, check, free, in a
 * loop. THREADS threads share a fixed total of iterations (strong scaling),
 * each on its own blocks; the checksum is independent of THREADS.
 */
#include "common.h"

#define BLOCK 32
#define BASE_ITERS 250e6

struct worker {
    struct bench_worker b;
};

static void *
run(void *arg)
{
    struct worker *w = arg;
    uint64_t sum = 0;
    for (uint64_t i = w->b.lo; i < w->b.hi; i++) {
        uint64_t *p = malloc(BLOCK);
        if (__builtin_expect(p == NULL || ((uintptr_t)p & 15), 0))
            check_new("fastpath", p, BLOCK);
        uint64_t k = mix64(i);
        p[0] = k;
        p[1] = i;
        p[2] = ~k;
        p[3] = k ^ i;
        ESCAPE(p);
        if (__builtin_expect(p[0] != k || p[1] != i || p[2] != ~k || p[3] != (k ^ i), 0))
            die("fastpath: block %p iteration %llu corrupted", (void *)p, (unsigned long long)i);
        sum += p[0] ^ p[1];
        free(p);
    }
    w->b.sum = sum;
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t total = scaled(BASE_ITERS, scale, 1000);

    struct worker *ws = workers_new(threads, sizeof *ws, total);
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws);
    free(ws);
    printf("fastpath pairs=%llu checksum=%016llx\n", (unsigned long long)total,
           (unsigned long long)sum);
    return 0;
}
