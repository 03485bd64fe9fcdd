/* c-tests/thread_churn.c -- 10,000 short-lived threads; RSS must stay flat.
 *
 * Threads are created a few at a time; each allocates blocks of several
 * sizes, frees some itself and leaves the rest for the main thread to
 * free after the join (frees into the heap of a thread that has exited).
 * RSS is sampled at checkpoints; memory of exited threads must be
 * reused or returned, so RSS after 10,000 threads may not exceed RSS
 * after 1,000 by more than a small margin.
 *
 * This file does not use the mmpool API: the runner also builds it
 * without libmmpool and runs it on plain glibc to print both peaks. */
#define TU_NO_MMPOOL 1
#include "testutil.h"

enum {
    TOTAL = 10000,
    AT_ONCE = 4,
    NSIZES = 10,
};

static const size_t sizes[NSIZES] = {16, 24, 48, 100, 256, 512, 2000, 8000, 40000, 300000};

typedef struct {
    int id;
    void *left[NSIZES];      /* blocks the main thread frees */
    int bad;
} churn_arg;

static void *churn_thread(void *arg)
{
    churn_arg *a = arg;
    void *mine[NSIZES];
    for (int i = 0; i < NSIZES; i++) {
        mine[i] = xmalloc(sizes[i]);
        a->left[i] = xmalloc(sizes[i]);
        if (!mine[i] || !a->left[i]) {
            a->bad = 1;
            return NULL;
        }
        tu_fill(mine[i], sizes[i], (uint64_t)a->id);
        tu_fill(a->left[i], sizes[i], (uint64_t)a->id + 1);
    }
    /* a little churn of its own */
    for (int k = 0; k < 20; k++) {
        void *p = xcalloc(1, (size_t)(k * 24 + 8));
        if (!p) {
            a->bad = 1;
            return NULL;
        }
        xfree(p);
    }
    for (int i = 0; i < NSIZES; i++) {
        if (tu_check(mine[i], sizes[i], (uint64_t)a->id) != (size_t)-1)
            a->bad = 2;
        xfree(mine[i]);
    }
    return NULL;
}

static long rss_at_1k, rss_at_10k;

static void test_thread_churn(void)
{
    churn_arg args[AT_ONCE];
    pthread_t th[AT_ONCE];
    int rounds = tu_full ? 3 : 1;      /* --full: 30,000 threads */
    long rss_start = tu_rss_kib();
    for (int done = 0; done < TOTAL * rounds;) {
        int n = AT_ONCE;
        for (int j = 0; j < n; j++) {
            args[j] = (churn_arg){.id = done + j};
            int rc = pthread_create(&th[j], NULL, churn_thread, &args[j]);
            REQUIRE(rc == 0, "pthread_create #%d: %s", done + j, strerror(rc));
        }
        for (int j = 0; j < n; j++) {
            pthread_join(th[j], NULL);
            CHECK(args[j].bad == 0, "thread #%d: %s", args[j].id,
                  args[j].bad == 1 ? "allocation failed" : "block corrupted");
            for (int i = 0; i < NSIZES; i++) {
                if (args[j].left[i] && tu_check(args[j].left[i], sizes[i],
                                                (uint64_t)args[j].id + 1) != (size_t)-1)
                    FAILF("block left by thread #%d corrupted", args[j].id);
                xfree(args[j].left[i]);
            }
        }
        done += n;
        if (done == 1000)
            rss_at_1k = tu_rss_kib();
        if (done % 2500 == 0 || done == 1000)
            printf("  after %5d threads: RSS %ld KiB, peak %ld KiB\n", done, tu_rss_kib(),
                   tu_hwm_kib());
        if (done == TOTAL * rounds)
            rss_at_10k = tu_rss_kib();
        if (tu_case_failed)
            return;
    }
    long peak = tu_hwm_kib();
    if (peak < 0)
        peak = tu_maxrss_kib();
    printf("thread_churn peak_rss_kib=%ld\n", peak);
    printf("  allocator: %s; RSS start %ld KiB, after 1,000 threads %ld KiB, after %d "
           "threads %ld KiB\n", tu_symbol_owner("malloc"), rss_start, rss_at_1k,
           TOTAL * rounds, rss_at_10k);
    /* flat: 9,000 (or 29,000) more threads may cost at most 8 MiB */
    CHECK(rss_at_10k <= rss_at_1k + 8 * 1024, "RSS grew from %ld KiB (1,000 threads) to "
          "%ld KiB (%d threads): memory of exited threads is not reclaimed", rss_at_1k,
          rss_at_10k, TOTAL * rounds);
    /* at most 4 threads x ~360 KiB live at a time */
    CHECK(peak < 32 * 1024, "peak RSS %ld KiB above the 32 MiB bound", peak);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(thread_churn);
    return tu_finish();
}
