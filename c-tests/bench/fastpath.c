/*
 * fastpath - the allocator's hot path: malloc(32), write, check, free, in a
 * loop. THREADS threads share a fixed total of iterations (strong scaling),
 * each on its own blocks; the checksum is independent of THREADS.
 */
#include "common.h"

#define BLOCK 32
#define BASE_ITERS 250e6

struct worker {
    pthread_t tid;
    uint64_t lo, hi, sum;
};

static void *
run(void *arg)
{
    struct worker *w = arg;
    uint64_t sum = 0;
    for (uint64_t i = w->lo; i < w->hi; i++) {
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
    w->sum = sum;
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t total = scaled(BASE_ITERS, scale, 1000);

    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (!ws)
        fatal("out of memory");
    for (int t = 0; t < threads; t++) {
        share(total, t, threads, &ws[t].lo, &ws[t].hi);
        xpthread_create(&ws[t].tid, run, &ws[t]);
    }
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        xpthread_join(ws[t].tid);
        sum += ws[t].sum;
    }
    free(ws);
    printf("fastpath pairs=%llu checksum=%016llx\n", (unsigned long long)total,
           (unsigned long long)sum);
    return 0;
}
