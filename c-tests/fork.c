/* c-tests/fork.c -- fork() while other threads allocate and free.
 *
 * fork_busy_threads: busy threads malloc/realloc/free without pause
 *   while the main thread forks again and again; each child (alarm() as
 *   the deadlock guard) allocates through every entry point, frees blocks
 *   inherited from the parent (some owned by a thread that exited, some
 *   by threads that do not exist in the child), sometimes starts a
 *   thread or forks a grandchild, and exit(0)s.
 * fork_from_thread: the same, forking from a non-main thread while the
 *   main thread allocates. */
#include "testutil.h"

static volatile int stop_busy;

typedef struct {
    int id;
    long ops;
} busy_arg;

/* Busy thread: random local malloc/realloc/free, patterns checked. */
static void *busy(void *arg)
{
    busy_arg *b = arg;
    enum { SLOTS = 64 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    tu_rng r;
    tu_rng_seed(&r, 77 + (uint64_t)b->id);
    while (!__atomic_load_n(&stop_busy, __ATOMIC_RELAXED)) {
        int i = (int)tu_below(&r, SLOTS);
        if (p[i]) {
            if (tu_check(p[i], sz[i] < 256 ? sz[i] : 256, (uint64_t)i) != (size_t)-1) {
                FAILF("busy thread %d: block corrupted (parent side)", b->id);
                break;
            }
            if (tu_below(&r, 4) == 0) {
                size_t n = 1 + tu_below(&r, 20000);
                void *q = xrealloc(p[i], n);
                if (!q) {
                    FAILF("realloc failed");
                    break;
                }
                p[i] = q;
                sz[i] = n;
                tu_fill(p[i], n < 256 ? n : 256, (uint64_t)i);
                continue;
            }
            xfree(p[i]);
            p[i] = NULL;
            continue;
        }
        uint64_t d = tu_below(&r, 100);
        size_t n = d < 90 ? 1 + tu_below(&r, 1024)
                 : d < 99 ? 1024 + tu_below(&r, 100000) : MiB + tu_below(&r, MiB);
        p[i] = (d & 1) ? xmalloc(n) : xaligned_alloc(64, n);
        if (!p[i]) {
            FAILF("malloc(%zu) failed", n);
            break;
        }
        sz[i] = n;
        tu_fill(p[i], n < 256 ? n : 256, (uint64_t)i);
        /* on 2 cores, let the forked children run now and then */
        if ((++b->ops & 255) == 0)
            sched_yield();
    }
    for (int i = 0; i < SLOTS; i++)
        xfree(p[i]);
    return NULL;
}

/* Blocks allocated by a thread that has exited before the forks. */
enum { ORPHANS = 4096 };
static void *orphan[ORPHANS];
static size_t orphan_size[ORPHANS];

static void *make_orphans(void *arg)
{
    (void)arg;
    for (int i = 0; i < ORPHANS; i++) {
        orphan_size[i] = (size_t)(8 + (i % 64) * 16);
        orphan[i] = xmalloc(orphan_size[i]);
        if (orphan[i])
            tu_fill(orphan[i], orphan_size[i], (uint64_t)i + 5);
    }
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        void *p = xmalloc((size_t)(i % 300) + 1);
        if (!p)
            return (void *)1;
        memset(p, i, (size_t)(i % 300) + 1);
        xfree(p);
    }
    return NULL;
}

/* Runs in the child.  Returns the exit status to report. */
static int child_work(int iter)
{
    /* inherited blocks of the exited thread: check and free a few */
    for (int k = 0; k < 16; k++) {
        int i = (iter * 16 + k) % ORPHANS;
        if (!orphan[i])
            continue;
        if (tu_check(orphan[i], orphan_size[i], (uint64_t)i + 5) != (size_t)-1)
            return 3;
        xfree(orphan[i]);
    }
    enum { N = 200 };
    void *v[N];
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i * 37 % 3000) + 1;
        if (i % 50 == 0)
            n = 2 * MiB;
        v[i] = (i % 3 == 0) ? xcalloc(1, n) : xmalloc(n);
        if (!v[i]) {
            fprintf(stderr, "  child #%d: %s(%zu) returned NULL: %s\n", iter,
                    i % 3 == 0 ? "calloc" : "malloc", n, strerror(errno));
            return 4;
        }
        if (i % 3 == 0 && !tu_all_zero(v[i], n))
            return 5;
        memset(v[i], 0x5a, n);
    }
    for (int i = 0; i < N; i += 2) {
        v[i] = xrealloc(v[i], 5000);
        if (!v[i])
            return 6;
    }
    for (int i = 0; i < N; i++)
        xfree(v[i]);
    void *a = NULL;
    if (xposix_memalign(&a, 4096, 100) != 0 || !tu_aligned(a, 4096))
        return 7;
    xfree(a);
    a = mmpool_malloc(77);
    if (!a)
        return 8;
    mmpool_free(a);
    if (iter % 10 == 0) {
        pthread_t t;
        void *ret = (void *)1;
        if (pthread_create(&t, NULL, child_thread, NULL) != 0)
            return 9;
        pthread_join(t, &ret);
        if (ret != NULL)
            return 10;
    }
    if (iter % 25 == 0) {
        pid_t g = fork();
        if (g < 0)
            return 11;
        if (g == 0) {
            void *q = xmalloc(1234);
            if (!q)
                _exit(1);
            xfree(q);
            exit(0);
        }
        int st;
        if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 12;
    }
    return 0;
}

static const char *child_error(int code)
{
    switch (code) {
    case 3: return "inherited block corrupted";
    case 4: return "malloc failed";
    case 5: return "calloc not zeroed";
    case 6: return "realloc failed";
    case 7: return "posix_memalign failed";
    case 8: return "mmpool_malloc failed";
    case 9: return "pthread_create failed";
    case 10: return "malloc failed in a thread of the child";
    case 11: return "nested fork failed";
    case 12: return "grandchild failed";
    default: return "unknown";
    }
}

/* Forks `forks` times; returns false on the first failed child. */
static bool fork_loop(int forks)
{
    for (int it = 0; it < forks; it++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            FAILF("fork failed: %s", strerror(errno));
            return false;
        }
        if (pid == 0) {
            alarm(20);
            exit(child_work(it));
        }
        int st;
        if (waitpid(pid, &st, 0) != pid) {
            FAILF("waitpid: %s", strerror(errno));
            return false;
        }
        if (WIFSIGNALED(st)) {
            FAILF("fork #%d: child killed by signal %d%s", it, WTERMSIG(st),
                  WTERMSIG(st) == SIGALRM ? " (deadlock: alarm fired after 20 s)" : "");
            return false;
        }
        if (WEXITSTATUS(st) != 0) {
            FAILF("fork #%d: child exited %d (%s)", it, WEXITSTATUS(st),
                  child_error(WEXITSTATUS(st)));
            return false;
        }
        /* the parent goes on allocating between forks too */
        void *p = xmalloc((size_t)it + 1);
        if (!p) {
            FAILF("parent malloc");
            return false;
        }
        xfree(p);
    }
    return true;
}

enum { NBUSY = 3 };

static void start_busy(pthread_t *t, busy_arg *b)
{
    __atomic_store_n(&stop_busy, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < NBUSY; i++) {
        b[i] = (busy_arg){i, 0};
        if (pthread_create(&t[i], NULL, busy, &b[i]) != 0)
            FAILF("pthread_create");
    }
}

static long stop_all(pthread_t *t, busy_arg *b)
{
    long ops = 0;
    __atomic_store_n(&stop_busy, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < NBUSY; i++) {
        pthread_join(t[i], NULL);
        ops += b[i].ops;
    }
    return ops;
}

static void test_fork_busy_threads(void)
{
    pthread_t o;
    REQUIRE(pthread_create(&o, NULL, make_orphans, NULL) == 0, "");
    pthread_join(o, NULL);
    for (int i = 0; i < ORPHANS; i++)
        REQUIRE(orphan[i] != NULL, "malloc");
    pthread_t t[NBUSY];
    busy_arg b[NBUSY];
    start_busy(t, b);
    int forks = tu_full ? 3000 : 100;
    fork_loop(forks);
    long ops = stop_all(t, b);
    printf("  fork_busy_threads: %d forks while %d threads did %ld allocations\n", forks,
           NBUSY, ops);
}

static void *forker(void *arg)
{
    fork_loop(*(int *)arg);
    return NULL;
}

static void test_fork_from_thread(void)
{
    pthread_t t[NBUSY], f;
    busy_arg b[NBUSY];
    int forks = tu_full ? 1000 : 50;
    start_busy(t, b);
    REQUIRE(pthread_create(&f, NULL, forker, &forks) == 0, "");
    pthread_join(f, NULL);
    stop_all(t, b);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(fork_busy_threads);
    RUN(fork_from_thread);
    for (int i = 0; i < ORPHANS; i++)
        xfree(orphan[i]);
    return tu_finish();
}
