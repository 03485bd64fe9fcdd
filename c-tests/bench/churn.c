/*
 * churn - many short-lived threads. Threads are started one after another
 * (a total of ~12,000 at scale 1) with at most THREADS alive at once; each
 * allocates 100..400 blocks (16 B..512 B, 5% up to 8 KiB), frees half of
 * them, leaves 16 in a shared "graveyard" for later threads to free (so
 * memory of exited threads is freed by other threads), frees up to 16 left
 * by earlier threads, frees the rest and exits.
 */
#include "common.h"

#define BASE_THREADS 12000
#define GRAVE_CAP 4096
#define STRIDE 64

struct obj {
    unsigned char *p;
    size_t n;
    uint64_t key;
};

static struct {
    pthread_mutex_t mu;
    size_t n;
    struct obj o[GRAVE_CAP];
} grave = { PTHREAD_MUTEX_INITIALIZER, 0, { { 0 } } };

static uint64_t
obj_free(struct obj *o)
{
    pat_verify("churn", o->p, o->n, o->key, STRIDE);
    free(o->p);
    return obj_hash(o->key, o->n);
}

struct job {
    uint64_t index;
    uint64_t sum;
};

static void *
run(void *arg)
{
    struct job *j = arg;
    rng_t r = rng_seed(0x6368726eULL ^ mix64(j->index));
    size_t count = rng_range(&r, 100, 400);
    struct obj *objs = xmalloc("churn array", count * sizeof *objs);
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = rng_below(&r, 20) == 0 ? rng_range(&r, 513, 8192) : rng_range(&r, 16, 512);
        objs[i].p = xmalloc("churn", n);
        objs[i].n = n;
        objs[i].key = (j->index << 20) | i;
        pat_fill(objs[i].p, n, objs[i].key, STRIDE);
    }
    for (size_t i = 0; i < count; i += 2) /* half die young */
        sum += obj_free(&objs[i]);
    struct obj mine[16], theirs[16];
    size_t nmine = 0, ntheirs = 0;
    for (size_t i = 1; i < count && nmine < 16; i += 2 * (1 + rng_below(&r, 4)))
        mine[nmine++] = objs[i], objs[i].p = NULL;
    pthread_mutex_lock(&grave.mu);
    while (ntheirs < 16 && grave.n > 0)
        theirs[ntheirs++] = grave.o[--grave.n];
    size_t kept = 0;
    while (kept < nmine && grave.n < GRAVE_CAP)
        grave.o[grave.n++] = mine[kept++];
    pthread_mutex_unlock(&grave.mu);
    for (size_t i = kept; i < nmine; i++)
        sum += obj_free(&mine[i]);
    for (size_t i = 0; i < ntheirs; i++)
        sum += obj_free(&theirs[i]);
    for (size_t i = 1; i < count; i += 2)
        if (objs[i].p)
            sum += obj_free(&objs[i]);
    free(objs);
    j->sum = sum;
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t total = scaled(BASE_THREADS, scale, 16);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    struct job *jobs = calloc((size_t)threads, sizeof *jobs);
    if (!tid || !jobs)
        fatal("out of memory");
    uint64_t sum = 0;
    for (uint64_t i = 0; i < total; i++) {
        size_t s = (size_t)(i % (uint64_t)threads);
        if (i >= (uint64_t)threads) {
            xpthread_join(tid[s]);
            sum += jobs[s].sum;
        }
        jobs[s].index = i;
        jobs[s].sum = 0;
        xpthread_create(&tid[s], run, &jobs[s]);
    }
    for (uint64_t i = total > (uint64_t)threads ? total - (uint64_t)threads : 0; i < total; i++) {
        size_t s = (size_t)(i % (uint64_t)threads);
        xpthread_join(tid[s]);
        sum += jobs[s].sum;
    }
    while (grave.n > 0)
        sum += obj_free(&grave.o[--grave.n]);
    free(tid);
    free(jobs);
    printf("churn threads=%llu checksum=%016llx\n", (unsigned long long)total,
           (unsigned long long)sum);
    return 0;
}
