/* c-tests/fork_safety.c -- fork() where glibc's own malloc never
 * deadlocks.
 *
 * fork_in_signal_handler: a single-threaded program whose timer signal
 *   handler forks (the child _exit(0)s at once, the handler reaps it
 *   with waitpid: both async-signal-safe in practice, and glibc's fork
 *   takes no lock in a single-threaded process) while the main loop
 *   mallocs and frees blocks of all sizes, large ones (64 KiB - 1 MiB)
 *   included, so the signal often lands while free() holds a lock of
 *   the allocator.  The fork must not wait for that lock: at least 200
 *   forks must complete in the time limit.
 * fork_while_stdio_threads: one thread forks in a loop (the child
 *   _exit(0)s, the parent waitpid()s), one calls fflush(NULL) in a loop,
 *   one reads lines of 1-60 KiB with getline() from a file (rewinding
 *   at the end), so that getline reallocs its buffer while it holds the
 *   FILE's lock.  glibc's fork runs the pthread_atfork prepare handlers
 *   before it takes the stdio list lock, so a prepare handler that takes
 *   the allocator's locks completes a cycle: fork (allocator locks,
 *   waits for the list lock) -> fflush(NULL) (list lock, waits for the
 *   FILE lock) -> getline (FILE lock, waits in realloc for the allocator
 *   lock).
 *
 * Each case runs in a forked child, in its own process group, watched by
 * the parent: when no fork completes for STALL_S seconds the case fails
 * as a deadlock (naming the counts reached), and the whole group is
 * killed.
 *
 * On plain glibc (no libmmpool at all) both cases must pass too:
 *   gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude \
 *       c-tests/fork_safety.c -o target/c/fork_safety.glibc -ldl
 *   target/c/fork_safety.glibc
 * (a binary linked with -lmmpool gets mmpool's malloc even without
 * LD_PRELOAD: libmmpool comes before libc in its lookup order.) */
#include "testutil.h"

#include <poll.h>

#define KiB ((size_t)1 << 10)

/* No fork completed for this long: deadlock. */
#define STALL_S 2.5

/* Progress counters, shared with the watched child (MAP_SHARED). */
typedef struct {
    long forks;       /* forks completed (child reaped) */
    long fork_errors; /* fork() returned -1 */
    long ops;         /* allocations/frees of the main loop (signal case) */
    long reads;       /* getline passes over the whole file */
    long lines;       /* lines read */
    long flushes;     /* fflush(NULL) calls */
} progress_t;

static progress_t *prog;

/* What the watchdog watches: forks complete all the time in both cases
 * (hundreds a second on glibc), so none for STALL_S seconds means that
 * something is stuck (the forking thread, or the child it waits for). */
static long prog_forks(void)
{
    return __atomic_load_n(&prog->forks, __ATOMIC_RELAXED);
}

#define BUMP(field) __atomic_add_fetch(&prog->field, 1, __ATOMIC_RELAXED)

typedef struct {
    bool stalled;     /* no fork for STALL_S: killed */
    bool overran;     /* still running after the hard limit: killed */
    int status;       /* wait status (when neither) */
    double secs;
    double stalled_for;
    char err[2048];   /* the child's stderr (the first 2 KiB) */
} watch_result;

/* Run body() (a case body: CHECK/REQUIRE/FAILF/SKIP) in a child in its
 * own process group while watching prog->forks; kill the group on a
 * stall or after limit_s. */
static bool watch_child(void (*body)(void), double limit_s, watch_result *w)
{
    memset(w, 0, sizeof *w);
    memset(prog, 0, sizeof *prog);
    int rfd;
    pid_t pid = tu_fork_capturing(&rfd, true);
    if (pid < 0)
        return false;
    if (pid == 0) {
        tu_case_body b = {body};
        tu_case_child_main(&b); /* _exit()s */
    }
    fcntl(rfd, F_SETFL, O_NONBLOCK);
    size_t len = 0;
    double t0 = tu_now(), last_change = t0;
    long last = -1;
    bool pipe_open = true;
    for (;;) {
        if (pipe_open) {
            struct pollfd p = {rfd, POLLIN, 0};
            poll(&p, 1, 50);
        } else {
            usleep(50 * 1000);
        }
        for (;;) {
            ssize_t n = tu_read_append(rfd, w->err, sizeof w->err, &len);
            if (n == 0)
                pipe_open = false;
            if (n <= 0)
                break;
        }
        /* exited? (WNOWAIT: the zombie keeps the process group id ours
         * until the group is killed below) */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            break;
        double now = tu_now();
        long sum = prog_forks();
        if (sum != last) {
            last = sum;
            last_change = now;
        }
        if (now - last_change > STALL_S) {
            w->stalled = true;
            w->stalled_for = now - last_change;
            break;
        }
        if (now - t0 > limit_s) {
            w->overran = true;
            break;
        }
    }
    w->secs = tu_now() - t0;
    kill(-pid, SIGKILL); /* the child if stuck, and any grandchild left */
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    w->status = st;
    while (tu_read_append(rfd, w->err, sizeof w->err, &len) > 0)
        ; /* the rest of what it wrote */
    w->err[len] = 0;
    close(rfd);
    return true;
}

/* The verdict of a watched child: false (and a failure recorded) unless
 * it exited normally without reporting a failure. */
static bool watch_verdict(const watch_result *w, const char *counts)
{
    char line[sizeof tu_case_why];
    if (w->stalled) {
        FAILF("deadlock: no fork completed for %.1f s (after %.1f s: %s); the process group "
              "was killed", w->stalled_for, w->secs, counts);
        return false;
    }
    if (w->overran) {
        FAILF("still running after %.1f s (%s); killed", w->secs, counts);
        return false;
    }
    if (WIFSIGNALED(w->status)) {
        FAILF("the child was killed by signal %d (%s) after %.1f s (%s); stderr: %.200s",
              WTERMSIG(w->status), strsignal(WTERMSIG(w->status)), w->secs, counts, w->err);
        return false;
    }
    if (tu_tagged_line(w->err, "\nTU-FAIL: ", line, sizeof line)) {
        pthread_mutex_lock(&tu_lock);
        if (tu_case_failed++ == 0)
            snprintf(tu_case_why, sizeof tu_case_why, "%s", line);
        pthread_mutex_unlock(&tu_lock);
        return false;
    }
    if (!WIFEXITED(w->status) || WEXITSTATUS(w->status) != 0) {
        FAILF("the child exited with status %d (%s); stderr: %.200s",
              WIFEXITED(w->status) ? WEXITSTATUS(w->status) : -1, counts, w->err);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* 2. fork() from a signal handler while main() mallocs and frees.      */

static long sig_target_forks;
static double sig_max_s;
#define SIG_MIN_FORKS 200

static void forking_handler(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        BUMP(forks);
    } else {
        BUMP(fork_errors);
    }
    errno = saved;
}

static void fork_in_signal_body(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forking_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    timer_t tid;
    REQUIRE(timer_create(CLOCK_MONOTONIC, &sev, &tid) == 0, "timer_create: %s",
            strerror(errno));
    struct itimerspec its = {{0, 1000 * 1000}, {0, 1000 * 1000}}; /* every 1 ms */
    REQUIRE(timer_settime(tid, 0, &its, NULL) == 0, "timer_settime: %s", strerror(errno));

    enum { SLOTS = 24 };
    void *slot[SLOTS] = {0};
    tu_rng r;
    tu_rng_seed(&r, 2024);
    double t0 = tu_now();
    long i = 0;
    while (__atomic_load_n(&prog->forks, __ATOMIC_RELAXED) < sig_target_forks &&
           tu_now() - t0 < sig_max_s) {
        for (int k = 0; k < 64; k++, i++) {
            int s = (int)tu_below(&r, SLOTS);
            if (slot[s]) {
                xfree(slot[s]);
                slot[s] = NULL;
            } else {
                uint64_t d = tu_below(&r, 100);
                size_t n = d < 50 ? 1 + tu_below(&r, 1024)          /* small */
                         : d < 70 ? 1024 + tu_below(&r, 31 * 1024)  /* medium */
                         : 64 * KiB + tu_below(&r, 960 * KiB);      /* large */
                slot[s] = xmalloc(n);
                if (!slot[s]) {
                    FAILF("malloc(%zu) returned NULL", n);
                    break;
                }
                memset(slot[s], 1, n < 4096 ? n : 4096);
            }
            BUMP(ops);
        }
    }
    struct itimerspec off;
    memset(&off, 0, sizeof off);
    timer_settime(tid, 0, &off, NULL);
    timer_delete(tid);
    signal(SIGUSR1, SIG_IGN);
    for (int s = 0; s < SLOTS; s++)
        xfree(slot[s]);
    long forks = __atomic_load_n(&prog->forks, __ATOMIC_RELAXED);
    CHECK(prog->fork_errors == 0, "fork() failed %ld times in the handler", prog->fork_errors);
    CHECK(forks >= SIG_MIN_FORKS, "only %ld forks from the signal handler in %.1f s "
          "(%ld allocations/frees); want at least %d", forks, tu_now() - t0, i, SIG_MIN_FORKS);
}

static void test_fork_in_signal_handler(void)
{
    sig_target_forks = tu_full ? 5000 : 500;
    sig_max_s = tu_full ? 20 : 4;
    watch_result w;
    REQUIRE(watch_child(fork_in_signal_body, sig_max_s + 10, &w), "fork: %s", strerror(errno));
    char counts[160];
    snprintf(counts, sizeof counts, "%ld forks from the handler, %ld allocations/frees",
             prog->forks, prog->ops);
    if (watch_verdict(&w, counts))
        printf("  fork_in_signal_handler: %s in %.1f s\n", counts, w.secs);
}

/* ------------------------------------------------------------------ */
/* 1. fork() while other threads use stdio (getline reallocs under the   */
/*    FILE lock, fflush(NULL) takes the list lock then each FILE's).     */

#define NLINES 40
static size_t line_len[NLINES]; /* without the '\n' */
static volatile int stop_stdio;
static long stdio_target_forks;
static double stdio_max_s;

static size_t nth_line_len(int i)
{
    /* 1 KiB .. 61 KiB: getline's buffer (120 bytes, doubled) is
     * realloc'ed through the small, medium and large sizes */
    return 1024 + (size_t)(((unsigned)i * 7919u) % (60u * 1024u));
}

static void *getline_thread(void *arg)
{
    FILE *f = arg;
    while (!__atomic_load_n(&stop_stdio, __ATOMIC_RELAXED)) {
        int n = 0;
        for (;;) {
            char *line = NULL; /* a fresh buffer per line: getline reallocs it */
            size_t cap = 0;
            ssize_t got = getline(&line, &cap, f);
            if (got < 0) {
                free(line);
                break;
            }
            if (n < NLINES && (size_t)got != line_len[n] + 1) {
                FAILF("getline: line %d has %zd bytes, want %zu", n, got, line_len[n] + 1);
                __atomic_store_n(&stop_stdio, 1, __ATOMIC_RELAXED);
            }
            free(line);
            n++;
            BUMP(lines);
        }
        if (n != NLINES) {
            FAILF("getline read %d lines, want %d", n, NLINES);
            __atomic_store_n(&stop_stdio, 1, __ATOMIC_RELAXED);
        }
        rewind(f);
        BUMP(reads);
    }
    return NULL;
}

static void *fflush_thread(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop_stdio, __ATOMIC_RELAXED)) {
        fflush(NULL);
        BUMP(flushes);
    }
    return NULL;
}

static void fork_stdio_body(void)
{
    char path[] = "/tmp/mmpool-fork-stdio-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    static char text[NLINES * (61 * 1024 + 1)];
    size_t len = 0;
    for (int i = 0; i < NLINES; i++) {
        line_len[i] = nth_line_len(i);
        memset(text + len, 'a' + i % 26, line_len[i]);
        len += line_len[i];
        text[len++] = '\n';
    }
    REQUIRE(write(fd, text, len) == (ssize_t)len, "write: %s", strerror(errno));
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "r");
    REQUIRE(f != NULL, "fdopen: %s", strerror(errno));
    /* an output stream with pending data too, for fflush(NULL) to write */
    FILE *out = fopen("/dev/null", "w");
    REQUIRE(out != NULL, "fopen(/dev/null): %s", strerror(errno));

    pthread_t reader, flusher;
    REQUIRE(pthread_create(&reader, NULL, getline_thread, f) == 0, "pthread_create");
    REQUIRE(pthread_create(&flusher, NULL, fflush_thread, NULL) == 0, "pthread_create");
    double t0 = tu_now();
    while (__atomic_load_n(&prog->forks, __ATOMIC_RELAXED) < stdio_target_forks &&
           tu_now() - t0 < stdio_max_s && !__atomic_load_n(&stop_stdio, __ATOMIC_RELAXED)) {
        fprintf(out, "fork %ld\n", prog->forks);
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0) {
            FAILF("fork: %s", strerror(errno));
            break;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        BUMP(forks);
    }
    __atomic_store_n(&stop_stdio, 1, __ATOMIC_RELAXED);
    pthread_join(reader, NULL);
    pthread_join(flusher, NULL);
    fclose(f);
    fclose(out);
}

static void test_fork_while_stdio_threads(void)
{
    stdio_target_forks = tu_full ? 30000 : 3000;
    stdio_max_s = tu_full ? 30 : 5;
    watch_result w;
    REQUIRE(watch_child(fork_stdio_body, stdio_max_s + 10, &w), "fork: %s", strerror(errno));
    char counts[200];
    snprintf(counts, sizeof counts, "%ld forks, %ld lines read by getline (%ld passes), "
             "%ld fflush(NULL)", prog->forks, prog->lines, prog->reads, prog->flushes);
    if (watch_verdict(&w, counts))
        printf("  fork_while_stdio_threads: %s in %.1f s\n", counts, w.secs);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    prog = mmap(NULL, sizeof *prog, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (prog == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* The signal case first: this process is still single-threaded (every
     * case's threads live in its child). */
    RUN(fork_in_signal_handler);
    RUN(fork_while_stdio_threads);
    return tu_finish();
}
