/* c-tests/testutil.h -- the harness of every mmpool C test.
 *
 * A test binary is a flat list of named cases (like mimalloc's
 * test-api.c).  Each case prints `ok <name> (time)` or `FAIL <name>: why`;
 * the binary ends with `<argv0>: N passed, M failed` and exits 1 when any
 * case failed.
 *
 *   ./target/c/api                 all cases, smoke mode
 *   ./target/c/api --full          all cases, full mode (bigger loops)
 *   ./target/c/api realloc_grow    only the named case(s)
 *
 * What it offers:
 *   RUN(name) / tu_run_case_with(name, fn, arg)   run a case (if selected)
 *   CHECK, REQUIRE, FAILF                         failures inside a case
 *   tu_note(...)                                  text after a case's `ok`
 *   tu_verdict(cond, name, ...)                   a one-condition case, for
 *                                                 programs that check a
 *                                                 sequence of states
 *   tu_init / tu_init_with(flags) / tu_flag       options; tu_finish
 *   tu_alarm(s)                                   a timeout for the binary
 *   tu_run_child(fn, arg, ...)                    fn in a forked child,
 *                                                 stderr captured
 *   tu_run_prog(argv, opts, ...)                  a program (a helper, a
 *                                                 tool, this binary again)
 *                                                 with stdout and stderr
 *                                                 captured, extra variables,
 *                                                 LD_PRELOAD chosen, timeout
 *   tu_relay(prefix, out)                         a child's verdicts as ours
 *   tu_helper_path, tu_preload, tu_tmpdir         where things are
 *   tu_fmt, tu_excerpt, tu_count, tu_value_of...  reading program output
 *   tu_rng, tu_shuffle, tu_fill/tu_check (and sparse variants),
 *   tu_rss_kib, tu_glibc, tu_class_slabs...       test data and probes
 *
 * Every allocation in the tests goes through the `x*` function pointers
 * below: they are volatile, so gcc -O2 can neither elide malloc/free
 * pairs, nor fold malloc(SIZE_MAX) to NULL, nor warn about them.
 *
 * The header compiles as C and as C++ (c-tests/cxx.cpp) and is
 * self-contained: a test builds on its own with
 *   gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude c-tests/NAME.c
 *       -Ltarget/release -lmmpool -Wl,-rpath,$PWD/target/release -ldl
 * (tests in c-tests/DIR/ include "../testutil.h"). */
#ifndef MMPOOL_TESTUTIL_H
#define MMPOOL_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TU_NO_MMPOOL
#include "mmpool.h"
#endif

#define TU_UNUSED __attribute__((unused))

#ifndef KiB
#define KiB ((size_t)1 << 10)
#endif
#ifndef MiB
#define MiB ((size_t)1 << 20)
#endif
#ifndef GiB
#define GiB ((size_t)1 << 30)
#endif

extern char **environ;

/* ------------------------------------------------------------------ */
/* Opaque entry points (see the header comment).                       */

static void *(*volatile xmalloc)(size_t) TU_UNUSED = malloc;
static void *(*volatile xcalloc)(size_t, size_t) TU_UNUSED = calloc;
static void *(*volatile xrealloc)(void *, size_t) TU_UNUSED = realloc;
static void *(*volatile xreallocarray)(void *, size_t, size_t) TU_UNUSED = reallocarray;
static void (*volatile xfree)(void *) TU_UNUSED = free;
static int (*volatile xposix_memalign)(void **, size_t, size_t) TU_UNUSED = posix_memalign;
static void *(*volatile xaligned_alloc)(size_t, size_t) TU_UNUSED = aligned_alloc;
static void *(*volatile xmemalign)(size_t, size_t) TU_UNUSED = memalign;
static void *(*volatile xvalloc)(size_t) TU_UNUSED = valloc;
static void *(*volatile xpvalloc)(size_t) TU_UNUSED = pvalloc;
static size_t (*volatile xusable)(void *) TU_UNUSED = malloc_usable_size;

/* ------------------------------------------------------------------ */
/* Harness.                                                             */

static int tu_full TU_UNUSED;           /* 1 with --full */
static int tu_failed_cases;
static int tu_passed_cases;
static int tu_case_failed;              /* failures in the current case */
static char tu_case_why[4096];
static char tu_case_note[1024];
static char tu_case_skip[256];          /* SKIP() reason of the current case */
static const char *tu_case_name = "?";
static int tu_in_case;                  /* a case is running */
static int tu_argc;
static char **tu_argv;
static const char *const *tu_flags;     /* extra options (tu_init_with) */
static pthread_mutex_t tu_lock = PTHREAD_MUTEX_INITIALIZER;

static void tu_vfail(const char *file, int line, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&tu_lock);
    if (tu_case_failed++ == 0) {
        int n = snprintf(tu_case_why, sizeof tu_case_why, "%s:%d: ", file, line);
        if (n < 0 || (size_t)n >= sizeof tu_case_why)
            n = 0;
        vsnprintf(tu_case_why + n, sizeof tu_case_why - (size_t)n, fmt, ap);
    }
    pthread_mutex_unlock(&tu_lock);
}

static void tu_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), unused));
static void tu_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tu_vfail(file, line, fmt, ap);
    va_end(ap);
}

#define FAILF(...) tu_fail_at(__FILE__, __LINE__, __VA_ARGS__)

/* SKIP("why %d", x): the case cannot run here; unless it also failed it
 * is reported as `ok <name> (skipped: why)`.  The caller returns. */
#define SKIP(...) snprintf(tu_case_skip, sizeof tu_case_skip, __VA_ARGS__)

static void tu_cond_fail(const char *file, int line, const char *kind,
                         const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 5, 6), unused));
static void tu_cond_fail(const char *file, int line, const char *kind,
                         const char *cond, const char *fmt, ...)
{
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tu_fail_at(file, line, "%s `%s` failed:%s", kind, cond, msg);
}

/* CHECK(cond, "fmt", ...): record a failure (first message wins), go on.
 * The format must be a string literal (it is glued to a leading space). */
#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond))                                                        \
            tu_cond_fail(__FILE__, __LINE__, "check", #cond, " " __VA_ARGS__); \
    } while (0)

/* REQUIRE: like CHECK but leaves the case (return) on failure. */
#define REQUIRE(cond, ...)                                                  \
    do {                                                                    \
        if (!(cond)) {                                                      \
            tu_cond_fail(__FILE__, __LINE__, "require", #cond, " " __VA_ARGS__); \
            return;                                                         \
        }                                                                   \
    } while (0)

/* tu_note("fmt", ...): a remark printed after the current case's `ok`
 * line (`ok name (0.12s): remark`); the last one wins. */
static void tu_note(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void tu_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tu_case_note, sizeof tu_case_note, fmt, ap);
    va_end(ap);
}

static double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Is the case `name` selected by the command line (no names: all are)? */
static bool TU_UNUSED tu_selected(const char *name)
{
    int named = 0;
    for (int i = 1; i < tu_argc; i++) {
        if (tu_argv[i][0] == '-')
            continue;
        named = 1;
        if (strcmp(tu_argv[i], name) == 0)
            return true;
    }
    return !named;
}

static void tu_run_case_fn(const char *name, void (*fn0)(void), void (*fn1)(void *), void *arg)
{
    if (!tu_selected(name))
        return;
    tu_case_name = name;
    tu_in_case = 1;
    tu_case_failed = 0;
    tu_case_why[0] = 0;
    tu_case_note[0] = 0;
    tu_case_skip[0] = 0;
    double t0 = tu_now();
    if (fn0)
        fn0();
    else
        fn1(arg);
    double dt = tu_now() - t0;
    if (tu_case_failed) {
        tu_failed_cases++;
        printf("FAIL %s: %s\n", name, tu_case_why);
    } else if (tu_case_skip[0]) {
        tu_passed_cases++;
        printf("ok %s (skipped: %s)\n", name, tu_case_skip);
    } else {
        tu_passed_cases++;
        printf("ok %s (%.2fs)%s%s\n", name, dt, tu_case_note[0] ? ": " : "", tu_case_note);
    }
    fflush(stdout);
    tu_in_case = 0;
}

/* Runs fn() as the case `name` when it is selected. */
static void TU_UNUSED tu_run_case(const char *name, void (*fn)(void))
{
    tu_run_case_fn(name, fn, NULL, NULL);
}

/* The same for a case made at run time: fn(arg) under the name `name`
 * (say one case per row of a table). */
static void TU_UNUSED tu_run_case_with(const char *name, void (*fn)(void *), void *arg)
{
    tu_run_case_fn(name, NULL, fn, arg);
}

#define RUN(name) tu_run_case(#name, test_##name)

/* A case that is one condition, checked where the program stands: prints
 * `ok name` or `FAIL name: why` and counts like RUN (when selected).  For
 * programs whose checks follow one sequence of states (a helper program
 * that checks itself); a test binary's cases are better RUN cases. */
static void tu_verdict(bool cond, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), unused));
static void tu_verdict(bool cond, const char *name, const char *fmt, ...)
{
    if (!tu_selected(name))
        return;
    if (cond) {
        tu_passed_cases++;
        printf("ok %s\n", name);
    } else {
        char why[3072];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        tu_failed_cases++;
        printf("FAIL %s: %s\n", name, why);
    }
    fflush(stdout);
}

/* Was `flag` (one of tu_init_with's extra options) given? */
static bool TU_UNUSED tu_flag(const char *flag)
{
    for (int i = 1; i < tu_argc; i++)
        if (strcmp(tu_argv[i], flag) == 0)
            return true;
    return false;
}

/* Parses --smoke/--full (and `flags`: NULL-terminated extra options the
 * binary accepts, read back with tu_flag); case names select cases. */
static void TU_UNUSED tu_init_with(int argc, char **argv, const char *const *flags)
{
    tu_argc = argc;
    tu_argv = argv;
    tu_flags = flags;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        bool known = false;
        for (int k = 0; tu_flags && tu_flags[k]; k++)
            known |= strcmp(argv[i], tu_flags[k]) == 0;
        if (known)
            continue;
        if (strcmp(argv[i], "--full") == 0)
            tu_full = 1;
        else if (strcmp(argv[i], "--smoke") == 0)
            tu_full = 0;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--smoke|--full] [case...]\n", argv[0]);
            exit(2);
        }
    }
}

static void TU_UNUSED tu_init(int argc, char **argv)
{
    tu_init_with(argc, argv, NULL);
}

/* A timeout for the whole binary: after `seconds`, print
 * `FAIL timeout: ...` (naming the running case) and exit 1.  Children
 * made by tu_run_child get the default SIGALRM back. */
static char tu_alarm_msg[256];

static void tu_on_alarm(int sig)
{
    (void)sig;
    char m[512];
    size_t n = 0;
    const char *parts[] = {tu_alarm_msg, tu_in_case ? " (in case " : "",
                           tu_in_case ? tu_case_name : "", tu_in_case ? ")" : "", "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t l = strlen(parts[i]);
        if (l > sizeof m - n)
            l = sizeof m - n;
        memcpy(m + n, parts[i], l);
        n += l;
    }
    ssize_t w = write(1, m, n);
    (void)w;
    _exit(1);
}

static void TU_UNUSED tu_alarm(unsigned seconds)
{
    snprintf(tu_alarm_msg, sizeof tu_alarm_msg,
             "FAIL timeout: %s did not finish within %u s (alarm)",
             tu_argv && tu_argv[0] ? tu_argv[0] : "the test", seconds);
    signal(SIGALRM, tu_on_alarm);
    alarm(seconds);
}

static void tu_tmpdir_cleanup(bool keep);

static int TU_UNUSED tu_finish(void)
{
    tu_tmpdir_cleanup(tu_failed_cases != 0);
    printf("%s: %d passed, %d failed\n", tu_argv[0], tu_passed_cases,
           tu_failed_cases);
    fflush(stdout);
    return tu_failed_cases ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Deterministic PRNG (splitmix64 seeding a xorshift64*).               */

typedef struct { uint64_t s; } tu_rng;

static inline uint64_t tu_splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    r->s = tu_splitmix(seed) | 1;
}

static inline uint64_t tu_rand(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* uniform in [0, n) (n > 0) */
static inline uint64_t tu_below(tu_rng *r, uint64_t n)
{
    return tu_rand(r) % n;
}

/* Fisher-Yates shuffle of v[0..n) */
static void TU_UNUSED tu_shuffle(void **v, size_t n, tu_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)tu_below(r, i);
        void *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ------------------------------------------------------------------ */
/* Patterns: byte i of a block filled with seed s is a function of      */
/* (s, i) only, so contents survive realloc moves and can be checked.   */

static inline uint64_t tu_word(uint64_t seed, size_t k)
{
    return (seed + (uint64_t)k) * 0x9E3779B97F4A7C15ull ^ (seed >> 7);
}

static void TU_UNUSED tu_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    size_t words = n / 8;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = tu_word(seed, k);
        memcpy(b + k * 8, &w, 8);
    }
    uint64_t w = tu_word(seed, words);
    for (size_t i = words * 8; i < n; i++)
        b[i] = (unsigned char)(w >> (8 * (i - words * 8)));
}

/* Returns the offset of the first wrong byte, or (size_t)-1. */
static size_t TU_UNUSED tu_check(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t words = n / 8;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = tu_word(seed, k), got;
        memcpy(&got, b + k * 8, 8);
        if (got != w) {
            for (size_t i = 0; i < 8; i++)
                if (b[k * 8 + i] != (unsigned char)(w >> (8 * i)))
                    return k * 8 + i;
        }
    }
    uint64_t w = tu_word(seed, words);
    for (size_t i = words * 8; i < n; i++)
        if (b[i] != (unsigned char)(w >> (8 * (i - words * 8))))
            return i;
    return (size_t)-1;
}

/* Sparse variants for huge blocks: touch one 64-byte line per 64 KiB,
 * plus the first and last 4 KiB. */
static void TU_UNUSED tu_fill_sparse(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    if (n <= 3 * 65536) {
        tu_fill(p, n, seed);
        return;
    }
    tu_fill(b, 4096, seed);
    for (size_t off = 65536; off + 64 <= n - 4096; off += 65536)
        tu_fill(b + off, 64, seed + off);
    tu_fill(b + n - 4096, 4096, seed + n);
}

static size_t TU_UNUSED tu_check_sparse(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    if (n <= 3 * 65536)
        return tu_check(p, n, seed);
    size_t r = tu_check(b, 4096, seed);
    if (r != (size_t)-1)
        return r;
    for (size_t off = 65536; off + 64 <= n - 4096; off += 65536) {
        r = tu_check(b + off, 64, seed + off);
        if (r != (size_t)-1)
            return off + r;
    }
    r = tu_check(b + n - 4096, 4096, seed + n);
    return r == (size_t)-1 ? r : n - 4096 + r;
}

/* Page-strided variants, cheap on many mid-sized blocks: the first and
 * last 256 bytes plus one byte in every 4 KiB. */
static void TU_UNUSED tu_fill_pages(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    if (n <= 4096) {
        tu_fill(p, n, seed);
        return;
    }
    tu_fill(b, 256, seed);
    tu_fill(b + n - 256, 256, seed + 1);
    for (size_t o = 4096; o < n - 256; o += 4096)
        b[o] = (unsigned char)tu_splitmix(seed + o);
}

static bool TU_UNUSED tu_check_pages(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    if (n <= 4096)
        return tu_check(p, n, seed) == (size_t)-1;
    if (tu_check(b, 256, seed) != (size_t)-1 || tu_check(b + n - 256, 256, seed + 1) != (size_t)-1)
        return false;
    for (size_t o = 4096; o < n - 256; o += 4096)
        if (b[o] != (unsigned char)tu_splitmix(seed + o))
            return false;
    return true;
}

static bool TU_UNUSED tu_all_zero(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static inline bool tu_aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

#ifndef TU_NO_MMPOOL
/* Slabs the pool holds for the size classes whose block size lies in
 * [lo, hi] (mmpool_stats_get). */
static inline size_t tu_class_slabs(size_t lo, size_t hi)
{
    mmpool_stats_t s;
    mmpool_stats_get(&s);
    size_t n = 0;
    for (size_t c = 0; c < s.num_classes; c++)
        if (s.classes[c].block_size >= lo && s.classes[c].block_size <= hi)
            n += s.classes[c].slabs;
    return n;
}
#endif

/* ------------------------------------------------------------------ */
/* Memory statistics (KiB).                                             */

static long TU_UNUSED tu_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static long TU_UNUSED tu_rss_kib(void) { return tu_status_kib("VmRSS"); }
static long TU_UNUSED tu_hwm_kib(void) { return tu_status_kib("VmHWM"); }

static long TU_UNUSED tu_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ------------------------------------------------------------------ */
/* Which allocator serves `malloc`?  (file name of the object that      */
/* defines the symbol as the program sees it)                           */

static const char TU_UNUSED *tu_symbol_owner(const char *sym)
{
    void *f = dlsym(RTLD_DEFAULT, sym);
    Dl_info info;
    if (!f || !dladdr(f, &info) || !info.dli_fname)
        return "";
    return info.dli_fname;
}

static bool TU_UNUSED tu_malloc_is_mmpool(void)
{
    return strstr(tu_symbol_owner("malloc"), "libmmpool") != NULL;
}

/* glibc's own malloc family, found through libc's handle (RTLD_NEXT
 * from the executable would find libmmpool: the preloaded/linked
 * library comes after the executable in the lookup order). */
typedef struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    size_t (*usable_size)(void *);
} tu_glibc_api;

static bool TU_UNUSED tu_glibc(tu_glibc_api *g)
{
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return false;
    *(void **)&g->malloc = dlsym(h, "malloc");
    *(void **)&g->calloc = dlsym(h, "calloc");
    *(void **)&g->realloc = dlsym(h, "realloc");
    *(void **)&g->free = dlsym(h, "free");
    *(void **)&g->memalign = dlsym(h, "memalign");
    *(void **)&g->posix_memalign = dlsym(h, "posix_memalign");
    *(void **)&g->usable_size = dlsym(h, "malloc_usable_size");
    dlclose(h);
    return g->malloc && g->calloc && g->realloc && g->free && g->memalign &&
           g->posix_memalign && g->usable_size;
}

/* ------------------------------------------------------------------ */
/* Run fn(arg) in a forked child with stderr captured (alarm(timeout_s) */
/* in the child; fn returning is exit status 0).                        */

typedef struct {
    int exited;          /* WIFEXITED */
    int exit_code;
    int signaled;        /* WIFSIGNALED */
    int sig;
    char err[4096];      /* captured stderr (truncated, NUL-terminated) */
} tu_child_result;

static bool TU_UNUSED tu_run_child(void (*fn)(void *), void *arg,
                                   unsigned timeout_s, tu_child_result *res)
{
    memset(res, 0, sizeof *res);
    int pfd[2];
    if (pipe(pfd) != 0)
        return false;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return false;
    }
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        close(pfd[1]);
        signal(SIGABRT, SIG_DFL);
        signal(SIGALRM, SIG_DFL);   /* not tu_alarm's handler */
        /* no core files from intentional aborts */
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        alarm(timeout_s);
        fn(arg);
        _exit(0);
    }
    close(pfd[1]);
    size_t len = 0;
    for (;;) {
        char buf[512];
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n;
        if (take > sizeof res->err - 1 - len)
            take = sizeof res->err - 1 - len;
        memcpy(res->err + len, buf, take);
        len += take;
    }
    res->err[len] = 0;
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return false;
    }
    res->exited = WIFEXITED(st);
    res->exit_code = res->exited ? WEXITSTATUS(st) : 0;
    res->signaled = WIFSIGNALED(st);
    res->sig = res->signaled ? WTERMSIG(st) : 0;
    return true;
}

/* ------------------------------------------------------------------ */
/* Text: formatting, and reading what a program printed.                */

/* A formatted string, malloc'ed (test processes are short-lived: callers
 * need not free it). */
static char *tu_fmt(const char *f, ...) __attribute__((format(printf, 1, 2), unused));
static char *tu_fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    if (s == NULL) {
        fprintf(stderr, "testutil: out of memory\n");
        exit(2);
    }
    return s;
}

/* A growable NUL-terminated byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} tu_buf;

static void TU_UNUSED tu_buf_add(tu_buf *b, const char *data, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = (char *)realloc(b->p, cap);
        if (p == NULL) {
            fprintf(stderr, "testutil: out of memory\n");
            exit(2);
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* At most `max` bytes of `s` on one line ('\n' shown as '|'), for
 * failure messages. */
static char TU_UNUSED *tu_excerpt(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        n = max;
    char *e = tu_fmt("%.*s%s", (int)n, s, strlen(s) > max ? "..." : "");
    for (char *p = e; *p; p++)
        if (*p == '\n')
            *p = '|';
    return e;
}

/* Number of (possibly overlapping) occurrences of `needle` in `hay`. */
static int TU_UNUSED tu_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool TU_UNUSED tu_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The value N of the first line `<key> N` of `text` (e.g. "line
 * leak_nodes 61"), or -1. */
static long TU_UNUSED tu_value_of(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
            return strtol(line + kl + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

/* The contents of a file (malloc'ed, "" when it cannot be read);
 * *exists tells whether it could be opened. */
static char TU_UNUSED *tu_read_file(const char *path, bool *exists)
{
    tu_buf b;
    memset(&b, 0, sizeof b);
    tu_buf_add(&b, "", 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *exists = fd >= 0;
    if (fd < 0)
        return b.p;
    char chunk[65536];
    ssize_t got;
    while ((got = read(fd, chunk, sizeof chunk)) > 0)
        tu_buf_add(&b, chunk, (size_t)got);
    close(fd);
    return b.p;
}

/* ------------------------------------------------------------------ */
/* Where things are: this binary, its helper programs, the library,     */
/* a scratch directory.                                                 */

/* The path of this binary ("/proc/self/exe" resolved). */
static const char TU_UNUSED *tu_self_exe(void)
{
    static char path[4096];
    if (path[0] == 0) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n <= 0)
            return "/proc/self/exe";
        path[n] = 0;
    }
    return path;
}

/* The directory of this binary, "" if unknown. */
static const char TU_UNUSED *tu_self_dir(void)
{
    static char dir[4096];
    if (dir[0] == 0) {
        snprintf(dir, sizeof dir, "%s", tu_self_exe());
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            dir[0] = 0;
    }
    return dir;
}

/* The path of a helper program `name` built by the C-test runner: next to
 * this binary, else one directory up (tests of c-tests/DIR/ are built
 * into target/c/DIR/); NULL when it is in neither place. */
static char TU_UNUSED *tu_helper_path(const char *name)
{
    char *here = tu_fmt("%s/%s", tu_self_dir(), name);
    if (access(here, X_OK) == 0)
        return here;
    char *up = tu_fmt("%s/../%s", tu_self_dir(), name);
    if (access(up, X_OK) == 0)
        return up;
    free(up);
    free(here);
    return NULL;
}

/* The LD_PRELOAD for programs run on the pool: this process's LD_PRELOAD,
 * else $MMPOOL_LIB, else target/release/libmmpool.so found above this
 * binary; NULL when there is none. */
static const char TU_UNUSED *tu_preload(void)
{
    const char *lp = getenv("LD_PRELOAD");
    const char *ml = getenv("MMPOOL_LIB");
    if (lp && *lp)
        return lp;
    if (ml && *ml)
        return ml;
    static const char *const up[] = {"..", "../..", "../../.."};
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
        char *p = tu_fmt("%s/%s/release/libmmpool.so", tu_self_dir(), up[i]);
        if (access(p, R_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

/* A scratch directory /tmp/mmpool-<binary>-XXXXXX, made at the first
 * call; tu_finish removes it with its files, unless a case failed (then
 * it says where it is). */
static char *tu_tmp_path;

static const char TU_UNUSED *tu_tmpdir(void)
{
    if (tu_tmp_path == NULL) {
        const char *base = tu_argv && tu_argv[0] ? strrchr(tu_argv[0], '/') : NULL;
        base = base ? base + 1 : tu_argv && tu_argv[0] ? tu_argv[0] : "test";
        char *tmpl = tu_fmt("/tmp/mmpool-%s-XXXXXX", base);
        if (mkdtemp(tmpl) == NULL) {
            fprintf(stderr, "testutil: mkdtemp %s: %s\n", tmpl, strerror(errno));
            exit(2);
        }
        tu_tmp_path = tmpl;
    }
    return tu_tmp_path;
}

static void tu_tmpdir_cleanup(bool keep)
{
    if (tu_tmp_path == NULL)
        return;
    if (keep) {
        printf("%s: files kept in %s\n", tu_argv[0], tu_tmp_path);
        return;
    }
    DIR *d = opendir(tu_tmp_path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlink(tu_fmt("%s/%s", tu_tmp_path, e->d_name));
        closedir(d);
    }
    rmdir(tu_tmp_path);
}

/* ------------------------------------------------------------------ */
/* Run a program with stdout and stderr captured.                       */

typedef struct {
    /* "NAME=value" strings added to the environment (NULL-terminated;
     * NULL: none); they replace inherited variables of the same name */
    const char *const *vars;
    /* the LD_PRELOAD of the program (say tu_preload()); NULL: none */
    const char *preload;
    /* false (the default): variables that steer mmpool, inherited from
     * this process (MMPOOL_*, MALLOC_TRACE, LD_PRELOAD), are dropped, so
     * the program sees only `vars` and `preload`; true: the whole
     * environment is kept (and `preload` ignored) */
    bool inherit_env;
    /* seconds before the program is killed (SIGKILL); 0: 120 */
    unsigned timeout_s;
} tu_prog_opts;

typedef struct {
    int status;      /* exit status; 128 + signal when killed by one; -1: not run */
    bool timed_out;  /* killed after opts.timeout_s */
    char *out;       /* stdout, NUL-terminated (malloc'ed, never NULL) */
    char *err;       /* stderr */
    double secs;
} tu_prog_result;

static bool tu_env_name_is(const char *entry, const char *var)
{
    /* does "NAME=value" `entry` name the same variable as `var`? */
    const char *eq = strchr(var, '=');
    size_t n = eq ? (size_t)(eq - var) : strlen(var);
    return strncmp(entry, var, n) == 0 && entry[n] == '=';
}

static bool tu_env_dropped(const char *e)
{
    return strncmp(e, "MMPOOL_", 7) == 0 || strncmp(e, "MALLOC_TRACE=", 13) == 0 ||
           strncmp(e, "LD_PRELOAD=", 11) == 0;
}

/* Runs argv (argv[0] looked up in PATH when it has no slash), stdin
 * /dev/null, stdout and stderr captured; opts may be NULL (no variables,
 * no LD_PRELOAD, 120 s).  Returns false when it could not be started
 * (then r->err says why and r->status is -1). */
static bool TU_UNUSED tu_run_prog(const char *const *argv, const tu_prog_opts *opts,
                                  tu_prog_result *r)
{
    tu_prog_opts none;
    memset(&none, 0, sizeof none);
    const tu_prog_opts *o = opts ? opts : &none;
    unsigned timeout_s = o->timeout_s ? o->timeout_s : 120;
    memset(r, 0, sizeof *r);
    r->status = -1;
    r->out = tu_fmt("%s", "");
    r->err = tu_fmt("%s", "");

    size_t nenv = 0, nvars = 0;
    while (environ[nenv])
        nenv++;
    while (o->vars && o->vars[nvars])
        nvars++;
    char **envp = (char **)calloc(nenv + nvars + 2, sizeof *envp);
    if (envp == NULL) {
        r->err = tu_fmt("cannot run %s: out of memory", argv[0]);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        if (!o->inherit_env && tu_env_dropped(environ[i]))
            continue;
        if (o->inherit_env && o->preload && tu_env_name_is(environ[i], "LD_PRELOAD"))
            continue;
        bool replaced = false;
        for (size_t v = 0; v < nvars; v++)
            replaced |= tu_env_name_is(environ[i], o->vars[v]);
        if (!replaced)
            envp[k++] = environ[i];
    }
    if (o->preload && !o->inherit_env)
        envp[k++] = tu_fmt("LD_PRELOAD=%s", o->preload);
    for (size_t i = 0; i < nvars; i++)
        envp[k++] = (char *)o->vars[i];
    envp[k] = NULL;

    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) {
        r->err = tu_fmt("cannot run %s: pipe: %s", argv[0], strerror(errno));
        free(envp);
        return false;
    }
    if (pipe2(pe, O_CLOEXEC) != 0) {
        r->err = tu_fmt("cannot run %s: pipe: %s", argv[0], strerror(errno));
        close(po[0]);
        close(po[1]);
        free(envp);
        return false;
    }
    double t0 = tu_now();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        r->err = tu_fmt("cannot run %s: fork: %s", argv[0], strerror(errno));
        close(po[0]);
        close(po[1]);
        close(pe[0]);
        close(pe[1]);
        free(envp);
        return false;
    }
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        signal(SIGALRM, SIG_DFL);
        execvpe(argv[0], (char *const *)argv, envp);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    free(envp);
    tu_buf out, err;
    memset(&out, 0, sizeof out);
    memset(&err, 0, sizeof err);
    tu_buf_add(&out, "", 0);
    tu_buf_add(&err, "", 0);
    struct pollfd fds[2];
    memset(fds, 0, sizeof fds);
    fds[0].fd = po[0];
    fds[0].events = POLLIN;
    fds[1].fd = pe[0];
    fds[1].events = POLLIN;
    int open_fds = 2;
    while (open_fds > 0) {
        if (tu_now() - t0 > timeout_s && !r->timed_out) {
            kill(pid, SIGKILL);
            r->timed_out = true;
        }
        int n = poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[65536];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got > 0) {
                tu_buf_add(i == 0 ? &out : &err, chunk, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->secs = tu_now() - t0;
    if (WIFEXITED(st))
        r->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        r->status = 128 + WTERMSIG(st);
    free(r->out);
    free(r->err);
    r->out = out.p;
    r->err = err.p;
    if (r->timed_out)
        printf("note: %s killed after %u s\n", argv[0], timeout_s);
    return true;
}

/* Relays the verdict lines of a child test program (`ok X...` and
 * `FAIL X...` in `out`) as this binary's own cases `prefix/X...`. */
static void TU_UNUSED tu_relay(const char *prefix, const char *out)
{
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        if (strncmp(line, "ok ", 3) == 0) {
            printf("ok %s/%.*s\n", prefix, len - 3, line + 3);
            tu_passed_cases++;
        } else if (strncmp(line, "FAIL ", 5) == 0) {
            printf("FAIL %s/%.*s\n", prefix, len - 5, line + 5);
            tu_failed_cases++;
        }
        line = nl ? nl + 1 : NULL;
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Run a case's body in a forked child (a fresh copy of the process     */
/* state: rlimits, mallopt settings and leaks stay there).              */
/*                                                                      */
/*   static void body(void) { CHECK(...); REQUIRE(...); SKIP(...); }    */
/*   static void test_x(void) { tu_case_in_child(body, 10); }           */
/*                                                                      */
/* CHECK/REQUIRE/FAILF/SKIP work in the body as in a plain case: the    */
/* child sends its first failure (or its skip reason) to the parent on  */
/* stderr and the parent records it.  A child still running after       */
/* timeout_s seconds is killed by alarm() and the case fails as a hang; */
/* a child killed by any other signal fails it too (with the tail of    */
/* what it wrote on stderr).  The body must not use alarm() itself.     */

static void TU_UNUSED tu_write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

typedef struct {
    void (*body)(void);
} tu_case_body;

static void TU_UNUSED tu_case_child_main(void *arg)
{
    tu_case_body *b = (tu_case_body *)arg;
    tu_case_failed = 0;
    tu_case_why[0] = 0;
    tu_case_skip[0] = 0;
    b->body();
    static const char fail_tag[] = "\nTU-FAIL: ", skip_tag[] = "\nTU-SKIP: ";
    if (tu_case_failed) {
        tu_write_all(2, fail_tag, sizeof fail_tag - 1);
        tu_write_all(2, tu_case_why, strlen(tu_case_why));
        tu_write_all(2, "\n", 1);
        _exit(1);
    }
    if (tu_case_skip[0]) {
        tu_write_all(2, skip_tag, sizeof skip_tag - 1);
        tu_write_all(2, tu_case_skip, strlen(tu_case_skip));
        tu_write_all(2, "\n", 1);
    }
    _exit(0);
}

/* The text after `tag` up to the end of its line, into out. */
static bool TU_UNUSED tu_tagged_line(const char *text, const char *tag, char *out, size_t n)
{
    const char *p = strstr(text, tag);
    if (!p || n == 0)
        return false;
    p += strlen(tag);
    size_t len = strcspn(p, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(out, p, len);
    out[len] = 0;
    return true;
}

static void TU_UNUSED tu_case_in_child(void (*body)(void), unsigned timeout_s)
{
    tu_case_body b = {body};
    tu_child_result r;
    if (!tu_run_child(tu_case_child_main, &b, timeout_s, &r)) {
        FAILF("could not fork the case's child: %s", strerror(errno));
        return;
    }
    /* the last 300 bytes the child wrote, on one line */
    char tail[301];
    size_t len = strlen(r.err), from = len > 300 ? len - 300 : 0;
    memcpy(tail, r.err + from, len - from + 1);
    for (char *c = tail; *c; c++)
        if (*c == '\n')
            *c = '|';
    char line[sizeof tu_case_why];
    if (r.signaled && r.sig == SIGALRM) {
        FAILF("hang: the case's child was still running after %u s and was killed "
              "(SIGALRM watchdog); its stderr: %s", timeout_s, tail);
    } else if (r.signaled) {
        FAILF("the case's child was killed by signal %d (%s); its stderr: %s", r.sig,
              strsignal(r.sig), tail);
    } else if (tu_tagged_line(r.err, "\nTU-FAIL: ", line, sizeof line)) {
        pthread_mutex_lock(&tu_lock);
        if (tu_case_failed++ == 0)
            snprintf(tu_case_why, sizeof tu_case_why, "%s", line);
        pthread_mutex_unlock(&tu_lock);
    } else if (r.exit_code != 0) {
        FAILF("the case's child exited with status %d; its stderr: %s", r.exit_code, tail);
    } else if (tu_tagged_line(r.err, "\nTU-SKIP: ", line, sizeof line)) {
        SKIP("%.250s", line);
    }
}

/* A function of glibc itself (not the preloaded allocator's), by name:
 * dlsym on libc's own handle.  NULL when libc does not define it. */
static void TU_UNUSED *tu_glibc_sym(const char *name)
{
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return NULL;
    void *f = dlsym(h, name);
    dlclose(h);
    return f;
}

#endif /* MMPOOL_TESTUTIL_H */
