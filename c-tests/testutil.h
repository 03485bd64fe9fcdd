/* c-tests/testutil.h -- tiny test harness shared by the mmpool C tests.
 *
 * A test binary is a flat list of named cases (like mimalloc's
 * test-api.c).  Each case prints `ok <name>` or `FAIL <name>: why`; the
 * binary exits 1 when any case failed.
 *
 *   ./target/c/api                 all cases, smoke mode
 *   ./target/c/api --full          all cases, full mode (bigger loops)
 *   ./target/c/api realloc_grow    only the named case(s)
 *
 * Every allocation in the tests goes through the `x*` function pointers
 * below: they are volatile, so gcc -O2 can neither elide malloc/free
 * pairs, nor fold malloc(SIZE_MAX) to NULL, nor warn about them. */
#ifndef MMPOOL_TESTUTIL_H
#define MMPOOL_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
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
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TU_NO_MMPOOL
#include "mmpool.h"
#endif

#define TU_UNUSED __attribute__((unused))

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
static char tu_case_why[512];
static char tu_case_skip[256];          /* SKIP() reason of the current case */
static const char *tu_case_name = "?";
static int tu_argc;
static char **tu_argv;
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
    char msg[400];
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

static double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool tu_selected(const char *name)
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

static void tu_run_case(const char *name, void (*fn)(void))
{
    if (!tu_selected(name))
        return;
    tu_case_name = name;
    tu_case_failed = 0;
    tu_case_why[0] = 0;
    tu_case_skip[0] = 0;
    double t0 = tu_now();
    fn();
    double dt = tu_now() - t0;
    if (tu_case_failed) {
        tu_failed_cases++;
        printf("FAIL %s: %s\n", name, tu_case_why);
    } else if (tu_case_skip[0]) {
        tu_passed_cases++;
        printf("ok %s (skipped: %s)\n", name, tu_case_skip);
    } else {
        tu_passed_cases++;
        printf("ok %s (%.2fs)\n", name, dt);
    }
    fflush(stdout);
}

#define RUN(name) tu_run_case(#name, test_##name)

static void tu_init(int argc, char **argv)
{
    tu_argc = argc;
    tu_argv = argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
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

static int tu_finish(void)
{
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
/* Run fn(arg) in a forked child with stderr captured.                  */

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
