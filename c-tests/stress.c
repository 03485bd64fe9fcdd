/* c-tests/stress.c -- multi-thread stress with cross-thread frees.
 *
 *   stress [--smoke|--full] [case...]
 *
 * stress_mixed: N threads, each with a seeded PRNG (deterministic per
 *   thread), allocate random sizes through every entry point, fill them
 *   with a pattern, free / realloc them locally or hand them to another
 *   thread through a lock-protected queue; receivers check the pattern,
 *   then free or realloc them.
 * producer_consumer: one thread allocates, another frees, forever; the
 *   remote frees must be recycled (bounded RSS).
 * owner_exit_then_free: a thread allocates and exits; other threads
 *   free its blocks while allocating the same sizes.
 *
 * STRESS_THREADS=n overrides the thread count of stress_mixed. */
#include "testutil.h"

typedef struct {
    void *p;
    size_t size;
    uint64_t seed;
} item;

typedef struct {
    pthread_mutex_t lock;
    item *q;
    size_t cap, head, len;
} queue;

static bool q_push(queue *q, item it)
{
    bool ok = false;
    pthread_mutex_lock(&q->lock);
    if (q->len < q->cap) {
        q->q[(q->head + q->len) % q->cap] = it;
        q->len++;
        ok = true;
    }
    pthread_mutex_unlock(&q->lock);
    return ok;
}

/* Pops up to max items into out; returns the count. */
static size_t q_pop_many(queue *q, item *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&q->lock);
    while (n < max && q->len > 0) {
        out[n++] = q->q[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

static void item_fill(item *it)
{
    tu_fill_sparse(it->p, it->size, it->seed);
}

static bool item_ok(const item *it, const char *where)
{
    size_t bad = tu_check_sparse(it->p, it->size, it->seed);
    if (bad != (size_t)-1) {
        FAILF("%s: block %p of %zu bytes (seed %#" PRIx64 ") corrupted at offset %zu",
              where, it->p, it->size, it->seed, bad);
        return false;
    }
    return true;
}

static size_t random_size(tu_rng *r)
{
    uint64_t d = tu_below(r, 1000);
    if (d < 700)
        return 1 + tu_below(r, 256);
    if (d < 900)
        return 257 + tu_below(r, 4096 - 256);
    if (d < 980)
        return 4097 + tu_below(r, 65536 - 4096);
    if (d < 999)
        return 65537 + tu_below(r, MiB - 65536);
    return MiB + tu_below(r, 7 * MiB);
}

/* ------------------------------------------------------------------ */

enum { LIVE = 512, QCAP = 4096, BATCH = 64 };

typedef struct {
    int id;
    int nthreads;
    long ops;
    queue *queues;
    pthread_barrier_t *barrier;
    long sent, received, reallocs;
} worker;

static void *alloc_random(tu_rng *r, size_t n)
{
    uint64_t how = tu_below(r, 100);
    void *p;
    if (how < 80)
        return xmalloc(n);
    if (how < 90) {
        p = xcalloc(1, n);
        if (p && n <= 65536 && !tu_all_zero(p, n))
            FAILF("calloc(1, %zu) returned dirty memory", n);
        return p;
    }
    size_t a = (size_t)16 << tu_below(r, 9);   /* 16 .. 4096 */
    if (how < 95) {
        p = xaligned_alloc(a, n);
    } else if (xposix_memalign(&p, a, n) != 0) {
        p = NULL;
    }
    if (p && !tu_aligned(p, a))
        FAILF("aligned allocation (%zu, %zu) = %p misaligned", a, n, p);
    return p;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    tu_rng r;
    tu_rng_seed(&r, 1000 + (uint64_t)w->id);
    item live[LIVE];
    size_t nlive = 0;
    item in[BATCH];
    uint64_t seq = (uint64_t)w->id << 40;

    for (long op = 0; op < w->ops && !tu_case_failed; op++) {
        if ((op & 63) == 0) {
            size_t n = q_pop_many(&w->queues[w->id], in, BATCH);
            for (size_t i = 0; i < n; i++) {
                if (!item_ok(&in[i], "received block"))
                    break;
                if (tu_below(&r, 10) < 3) {
                    size_t ns = random_size(&r);
                    void *q = xrealloc(in[i].p, ns);
                    if (!q) {
                        FAILF("realloc(foreign-thread block, %zu) failed", ns);
                        xfree(in[i].p);
                        continue;
                    }
                    size_t keep = ns < in[i].size ? ns : in[i].size;
                    if (keep <= 3 * 65536 && in[i].size <= 3 * 65536) {
                        item t = {q, keep, in[i].seed};
                        item_ok(&t, "block realloc'd by another thread");
                    }
                    in[i].p = q;
                    in[i].size = ns;
                    item_fill(&in[i]);
                    w->reallocs++;
                    if (nlive < LIVE) {
                        live[nlive++] = in[i];
                        continue;
                    }
                }
                xfree(in[i].p);
                w->received++;
            }
        }
        uint64_t d = tu_below(&r, 100);
        if (nlive < LIVE && (d < 50 || nlive == 0)) {
            size_t n = random_size(&r);
            void *p = alloc_random(&r, n);
            if (!p) {
                FAILF("allocation of %zu bytes failed", n);
                break;
            }
            live[nlive] = (item){p, n, ++seq};
            item_fill(&live[nlive]);
            nlive++;
            continue;
        }
        size_t i = tu_below(&r, nlive);
        item it = live[i];
        if (!item_ok(&it, "own block"))
            break;
        d = tu_below(&r, 100);
        if (d < 40) {
            xfree(it.p);
            live[i] = live[--nlive];
        } else if (d < 60) {
            size_t ns = random_size(&r);
            void *q = xrealloc(it.p, ns);
            if (!q) {
                FAILF("realloc(%zu -> %zu) failed", it.size, ns);
                break;
            }
            size_t keep = ns < it.size ? ns : it.size;
            if (keep <= 3 * 65536 && it.size <= 3 * 65536) {
                item t = {q, keep, it.seed};
                item_ok(&t, "realloc'd block");
            }
            live[i] = (item){q, ns, ++seq};
            item_fill(&live[i]);
            w->reallocs++;
        } else {
            int to = (int)tu_below(&r, (uint64_t)w->nthreads - 1);
            if (to >= w->id)
                to++;
            if (w->nthreads > 1 && q_push(&w->queues[to], it))
                w->sent++;
            else
                xfree(it.p);
            live[i] = live[--nlive];
        }
    }
    for (size_t i = 0; i < nlive; i++) {
        item_ok(&live[i], "own block at exit");
        xfree(live[i].p);
    }
    /* nobody sends after this barrier: drain and free what is left */
    pthread_barrier_wait(w->barrier);
    size_t n;
    while ((n = q_pop_many(&w->queues[w->id], in, BATCH)) > 0) {
        for (size_t i = 0; i < n; i++) {
            item_ok(&in[i], "received block at exit");
            xfree(in[i].p);
            w->received++;
        }
    }
    return NULL;
}

static void test_stress_mixed(void)
{
    int nthreads = tu_full ? 8 : 4;
    long ops = tu_full ? 4000000 : 400000;
    const char *env = getenv("STRESS_THREADS");
    if (env && atoi(env) > 0)
        nthreads = atoi(env);
    for (int rounds = 0; rounds < (tu_full ? 3 : 1); rounds++) {
        queue *qs = xcalloc((size_t)nthreads, sizeof *qs);
        worker *ws = xcalloc((size_t)nthreads, sizeof *ws);
        pthread_t *th = xcalloc((size_t)nthreads, sizeof *th);
        REQUIRE(qs && ws && th, "");
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
        for (int i = 0; i < nthreads; i++) {
            pthread_mutex_init(&qs[i].lock, NULL);
            qs[i].cap = QCAP;
            qs[i].q = xmalloc(QCAP * sizeof(item));
            REQUIRE(qs[i].q != NULL, "");
            ws[i] = (worker){.id = i, .nthreads = nthreads, .ops = ops, .queues = qs,
                             .barrier = &barrier};
        }
        for (int i = 0; i < nthreads; i++)
            REQUIRE(pthread_create(&th[i], NULL, worker_main, &ws[i]) == 0, "pthread_create");
        long sent = 0, received = 0, reallocs = 0;
        for (int i = 0; i < nthreads; i++) {
            pthread_join(th[i], NULL);
            sent += ws[i].sent;
            received += ws[i].received;
            reallocs += ws[i].reallocs;
        }
        for (int i = 0; i < nthreads; i++) {
            CHECK(qs[i].len == 0, "queue %d not drained", i);
            xfree(qs[i].q);
            pthread_mutex_destroy(&qs[i].lock);
        }
        pthread_barrier_destroy(&barrier);
        CHECK(nthreads == 1 || sent > 0, "no block crossed threads");
        if (rounds == 0)
            printf("  stress_mixed: %d threads x %ld ops, %ld cross-thread blocks, "
                   "%ld reallocs, peak RSS %ld KiB\n", nthreads, ops, sent, reallocs,
                   tu_hwm_kib());
        (void)received;
        xfree(qs);
        xfree(ws);
        xfree(th);
    }
}

/* ------------------------------------------------------------------ */

typedef struct {
    queue q;
    long total;
    volatile int done;
} pc_state;

static void *producer(void *arg)
{
    pc_state *s = arg;
    tu_rng r;
    tu_rng_seed(&r, 7);
    for (long i = 0; i < s->total && !tu_case_failed; i++) {
        size_t n = 16 + tu_below(&r, 8) * 16;     /* a few small classes */
        if (i % 1024 == 0)
            n = 5000 + tu_below(&r, 60000);
        item it = {xmalloc(n), n, (uint64_t)i};
        if (!it.p) {
            FAILF("malloc(%zu) failed", n);
            break;
        }
        tu_fill(it.p, n < 64 ? n : 64, it.seed);
        it.size = n < 64 ? n : 64;
        while (!q_push(&s->q, it))
            sched_yield();
    }
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *consumer(void *arg)
{
    pc_state *s = arg;
    item in[BATCH];
    for (;;) {
        /* read `done` before popping: done && empty means empty for good */
        int done = __atomic_load_n(&s->done, __ATOMIC_ACQUIRE);
        size_t n = q_pop_many(&s->q, in, BATCH);
        if (n == 0) {
            if (done)
                break;
            sched_yield();
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            item_ok(&in[i], "consumer");
            xfree(in[i].p);
        }
    }
    return NULL;
}

static void test_producer_consumer(void)
{
    pc_state s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.q.lock, NULL);
    s.q.cap = 1024;
    s.q.q = xmalloc(s.q.cap * sizeof(item));
    REQUIRE(s.q.q != NULL, "");
    s.total = tu_full ? 20000000 : 2000000;
    long rss0 = tu_rss_kib();
    pthread_t p, c;
    REQUIRE(pthread_create(&c, NULL, consumer, &s) == 0, "");
    REQUIRE(pthread_create(&p, NULL, producer, &s) == 0, "");
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    long grow = tu_rss_kib() - rss0;
    printf("  producer_consumer: %ld blocks, RSS grew %ld KiB\n", s.total, grow);
    /* at most 1024 blocks are live at any time (< 64 MiB even for the
     * occasional 65 KiB one): unbounded growth means remote frees are
     * never recycled */
    CHECK(grow < 128 * 1024, "RSS grew by %ld KiB with <= 1024 live blocks", grow);
    xfree(s.q.q);
    pthread_mutex_destroy(&s.q.lock);
}

/* ------------------------------------------------------------------ */

enum { OE_BLOCKS = 20000, OE_FREERS = 3 };
static item oe_items[OE_BLOCKS];

static void *oe_owner(void *arg)
{
    (void)arg;
    for (int i = 0; i < OE_BLOCKS; i++) {
        size_t n = (size_t)(16 + (i % 40) * 24);
        if (i % 500 == 0)
            n = 70000;
        oe_items[i] = (item){xmalloc(n), n, (uint64_t)i * 31};
        if (!oe_items[i].p) {
            FAILF("malloc");
            return NULL;
        }
        item_fill(&oe_items[i]);
    }
    return NULL;          /* exits with every block still live */
}

static void *oe_freer(void *arg)
{
    int k = (int)(intptr_t)arg;
    item mine[256];
    int nm = 0;
    for (int i = k; i < OE_BLOCKS; i += OE_FREERS) {
        if (!oe_items[i].p)
            continue;
        item_ok(&oe_items[i], "block of an exited thread");
        xfree(oe_items[i].p);
        /* allocate the same sizes meanwhile: adopted slabs must be sane */
        size_t n = oe_items[i].size;
        if (nm == 256) {
            for (int j = 0; j < nm; j++) {
                item_ok(&mine[j], "block allocated after adoption");
                xfree(mine[j].p);
            }
            nm = 0;
        }
        mine[nm] = (item){xmalloc(n), n, (uint64_t)i * 7 + 1};
        if (!mine[nm].p) {
            FAILF("malloc");
            return NULL;
        }
        item_fill(&mine[nm]);
        nm++;
    }
    for (int j = 0; j < nm; j++) {
        item_ok(&mine[j], "block allocated after adoption");
        xfree(mine[j].p);
    }
    return NULL;
}

static void test_owner_exit_then_free(void)
{
    int rounds = tu_full ? 50 : 5;
    for (int round = 0; round < rounds && !tu_case_failed; round++) {
        pthread_t o, f[OE_FREERS];
        REQUIRE(pthread_create(&o, NULL, oe_owner, NULL) == 0, "");
        pthread_join(o, NULL);
        for (int k = 0; k < OE_FREERS; k++)
            REQUIRE(pthread_create(&f[k], NULL, oe_freer, (void *)(intptr_t)k) == 0, "");
        for (int k = 0; k < OE_FREERS; k++)
            pthread_join(f[k], NULL);
    }
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(stress_mixed);
    RUN(producer_consumer);
    RUN(owner_exit_then_free);
    return tu_finish();
}
