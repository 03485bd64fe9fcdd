/* c-tests/leak.c -- tests of mmpool's insight features from the outside:
 * leak reports (MMPOOL_LEAK_CHECK and friends), statistics (MMPOOL_STATS,
 * mmpool_stats_get, mallinfo2, malloc_trim, malloc_stats) and mtrace
 * traces (MALLOC_TRACE with mtrace()/muntrace(), MMPOOL_TRACE), checked
 * with glibc's own `mtrace` script and `addr2line`.
 *
 *   LD_PRELOAD=$PWD/target/release/libmmpool.so target/c/leak [--smoke|--full] [--no-bench]
 *
 * It builds nothing: it runs its siblings (the C-test runner builds every
 * c-tests/NAME.c into target/c/NAME) found next to /proc/self/exe:
 * leaky_prog, stats_prog, mtrace_prog.  Each child runs with LD_PRELOAD
 * taken from this process's environment (else $MMPOOL_LIB, else
 * ../release/libmmpool.so next to this binary) plus the variables under
 * test; MMPOOL_* and MALLOC_TRACE inherited from the caller are dropped.
 *
 * Prints `ok <name>`, `FAIL <name>: details` or `skip <name>: why` per
 * check, then the overhead of the instrumentation on a malloc-heavy loop
 * (informational, never asserted), then `leak: N passed, M failed`.
 * Exit status 1 when any check failed. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ */
/* Results                                                             */

static int passed, failed;

static void ok(const char *name)
{
    printf("ok %s\n", name);
    passed++;
}

static void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(const char *name, const char *fmt, ...)
{
    printf("FAIL %s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    failed++;
}

/* A check whose tool (addr2line, glibc's mtrace script) is missing fails:
 * scripts/run-c-tests.sh installs them, so a missing tool means the check
 * did not run, which must not pass silently. */
static void skip(const char *name, const char *why)
{
    printf("FAIL %s: not run: %s\n", name, why);
    failed++;
}

/* check(cond, name, fmt, ...): ok or FAIL with the details */
#define check(cond, name, ...)                                                                  \
    do {                                                                                       \
        if (cond)                                                                              \
            ok(name);                                                                          \
        else                                                                                   \
            fail(name, __VA_ARGS__);                                                           \
    } while (0)

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* A formatted string (never freed: the driver is short-lived). */
static char *fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    if (s == NULL) {
        fprintf(stderr, "leak: out of memory\n");
        exit(2);
    }
    return s;
}

/* At most `max` bytes of `s`, one line, for failure messages. */
static char *excerpt(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        n = max;
    char *e = fmt("%.*s%s", (int)n, s, strlen(s) > max ? "..." : "");
    for (char *p = e; *p; p++)
        if (*p == '\n')
            *p = '|';
    return e;
}

/* ------------------------------------------------------------------ */
/* Running a child: fork/exec with pipes for stdout and stderr          */

struct buf {
    char *p;
    size_t n, cap;
};

static void buf_add(struct buf *b, const char *data, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            fprintf(stderr, "leak: out of memory\n");
            exit(2);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

struct res {
    int status; /* exit status; 128 + signal when killed; -1: could not run */
    char *out;  /* stdout, NUL-terminated */
    char *err;  /* stderr */
    double secs;
};

static char exe_dir[PATH_MAX];
static char *preload; /* LD_PRELOAD value for children */
static char *tmp_dir;
static const int child_timeout_s = 120;

static bool dropped_var(const char *e)
{
    return strncmp(e, "MMPOOL_", 7) == 0 || strncmp(e, "MALLOC_TRACE=", 13) == 0 ||
           strncmp(e, "LD_PRELOAD=", 11) == 0;
}

/* Run argv (argv[0] looked up in PATH when it has no slash) with stdout
 * and stderr captured.  `vars`: NULL-terminated "NAME=value" strings
 * added to the environment.  `ld_preload`: the LD_PRELOAD value, or NULL
 * for none. */
static void run(struct res *r, const char *ld_preload, const char *const *vars,
                const char *const *argv)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    size_t nenv = 0, nvars = 0;
    while (environ[nenv])
        nenv++;
    while (vars && vars[nvars])
        nvars++;
    char **envp = calloc(nenv + nvars + 2, sizeof *envp);
    if (envp == NULL)
        exit(2);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!dropped_var(environ[i]))
            envp[k++] = environ[i];
    if (ld_preload)
        envp[k++] = fmt("LD_PRELOAD=%s", ld_preload);
    for (size_t i = 0; i < nvars; i++)
        envp[k++] = (char *)vars[i];
    envp[k] = NULL;

    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        perror("leak: pipe");
        exit(2);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("leak: fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        execvpe(argv[0], (char *const *)argv, envp);
        dprintf(2, "leak: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    free(envp);
    struct buf out = {0}, err = {0};
    buf_add(&out, "", 0);
    buf_add(&err, "", 0);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    bool killed = false;
    while (open_fds > 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (elapsed > child_timeout_s && !killed) {
            kill(pid, SIGKILL);
            killed = true;
        }
        int n = poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR) {
            perror("leak: poll");
            exit(2);
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[65536];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got > 0) {
                buf_add(i == 0 ? &out : &err, chunk, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (WIFEXITED(st))
        r->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        r->status = 128 + WTERMSIG(st);
    r->out = out.p;
    r->err = err.p;
    if (killed)
        printf("note: %s killed after %d s\n", argv[0], child_timeout_s);
}

static char *sibling(const char *name)
{
    return fmt("%s/%s", exe_dir, name);
}

/* Run a sibling program on the pool with `vars`; args after the name. */
static void run_prog(struct res *r, const char *const *vars, const char *prog, const char *arg1,
                     const char *arg2)
{
    const char *argv[] = {sibling(prog), arg1, arg2, NULL};
    run(r, preload, vars, argv);
}

static char *read_file(const char *path, bool *exists)
{
    struct buf b = {0};
    buf_add(&b, "", 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *exists = fd >= 0;
    if (fd < 0)
        return b.p;
    char chunk[65536];
    ssize_t got;
    while ((got = read(fd, chunk, sizeof chunk)) > 0)
        buf_add(&b, chunk, (size_t)got);
    close(fd);
    return b.p;
}

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Number of (possibly overlapping) occurrences of `needle` in `hay`. */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The value N of a stdout line `<key> N` (e.g. "line leak_nodes 61"). */
static long value_of(const char *text, const char *key)
{
    char *pat = fmt("%s ", key);
    size_t pl = strlen(pat);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, pat, pl) == 0) {
            free(pat);
            return strtol(line + pl, NULL, 10);
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    free(pat);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Parsing the leak report                                              */

#define MAX_SITES 64
#define MAX_FRAMES 17

struct frame {
    char fn[128];      /* function name, "??" when unknown */
    unsigned long fn_off;
    char module[256];  /* module path ("" when only an address) */
    unsigned long off; /* module offset */
};

struct site {
    size_t bytes, blocks;
    int nframes;
    bool no_stack;
    struct frame fr[MAX_FRAMES];
};

struct report {
    int nsites;
    struct site sites[MAX_SITES];
    bool summary;
    size_t bytes, blocks, nsum;
    bool sup;
    size_t sbytes, sblocks, ssites;
    bool more;
    size_t more_sites;
    int bad;          /* lines starting "mmpool:" or "    #" not understood */
    char first_bad[256];
    int summaries;    /* how many summary lines */
};

static void bad_line(struct report *rp, const char *line, size_t len)
{
    if (rp->bad++ == 0)
        snprintf(rp->first_bad, sizeof rp->first_bad, "%.*s", (int)len, line);
}

/* "name+0xoff (module+0xoffset)" or "?? (module+0xoffset)" or "... (0xaddr)" */
static bool parse_frame(const char *s, size_t len, struct frame *f)
{
    char tmp[1024];
    if (len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *open = strstr(tmp, " (");
    if (open == NULL || tmp[len - 1] != ')')
        return false;
    *open = '\0';
    char *where = open + 2;
    tmp[len - 1] = '\0';
    memset(f, 0, sizeof *f);
    if (strcmp(tmp, "??") == 0) {
        strcpy(f->fn, "??");
    } else {
        char *plus = strrchr(tmp, '+');
        if (plus == NULL || strncmp(plus, "+0x", 3) != 0 || plus == tmp)
            return false;
        *plus = '\0';
        char *end;
        f->fn_off = strtoul(plus + 3, &end, 16);
        if (*end != '\0' || strlen(tmp) >= sizeof f->fn)
            return false;
        strcpy(f->fn, tmp);
    }
    char *plus = strrchr(where, '+');
    if (plus == NULL) {
        /* no module: the bare address */
        char *end;
        if (strncmp(where, "0x", 2) != 0)
            return false;
        f->off = strtoul(where + 2, &end, 16);
        return *end == '\0';
    }
    if (strncmp(plus, "+0x", 3) != 0 || plus == where)
        return false;
    *plus = '\0';
    char *end;
    f->off = strtoul(plus + 3, &end, 16);
    if (*end != '\0' || strlen(where) >= sizeof f->module)
        return false;
    strcpy(f->module, where);
    return true;
}

static void parse_report(const char *err, struct report *rp)
{
    memset(rp, 0, sizeof *rp);
    struct site *cur = NULL;
    for (const char *line = err; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char l[1024];
        snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
        size_t a, b, c, d, e, f;
        char word[32];
        int consumed = 0;
        if (sscanf(l, "mmpool: leak of %zu bytes in %zu %31s allocated at:%n", &a, &b, word,
                   &consumed) == 3 &&
            consumed == (int)strlen(l)) {
            if (strcmp(word, b == 1 ? "block" : "blocks") != 0)
                bad_line(rp, line, len);
            if (rp->nsites < MAX_SITES) {
                cur = &rp->sites[rp->nsites++];
                cur->bytes = a;
                cur->blocks = b;
            } else {
                cur = NULL;
            }
        } else if (strncmp(l, "    #", 5) == 0) {
            int idx, n = 0;
            struct frame fr;
            if (cur == NULL || sscanf(l + 5, "%d %n", &idx, &n) != 1 || n == 0 ||
                idx != cur->nframes || !parse_frame(l + 5 + n, strlen(l + 5 + n), &fr))
                bad_line(rp, line, len);
            else if (cur->nframes < MAX_FRAMES)
                cur->fr[cur->nframes++] = fr;
        } else if (strncmp(l, "    (no stack", 13) == 0) {
            if (cur)
                cur->no_stack = true;
        } else if (sscanf(l, "mmpool: %zu bytes leaked in %zu blocks from %zu sites%n", &a, &b,
                          &c, &consumed) == 3) {
            rp->summary = true;
            rp->summaries++;
            rp->bytes = a;
            rp->blocks = b;
            rp->nsum = c;
            const char *rest = l + consumed;
            int n2 = 0;
            if (*rest == '\0') {
                rp->sup = false;
            } else if (sscanf(rest, " (suppressed: %zu bytes in %zu blocks from %zu sites)%n",
                              &d, &e, &f, &n2) == 3 &&
                       rest[n2] == '\0') {
                rp->sup = true;
                rp->sbytes = d;
                rp->sblocks = e;
                rp->ssites = f;
            } else {
                bad_line(rp, line, len);
            }
            cur = NULL;
        } else if (sscanf(l, "mmpool: ... and %zu more sites%n", &a, &consumed) == 1) {
            rp->more = true;
            rp->more_sites = a;
            cur = NULL;
        } else if (strncmp(l, "mmpool: leak", 12) == 0) {
            bad_line(rp, line, len);
        } else {
            cur = NULL; /* another line: ends the site */
        }
        line = nl ? nl + 1 : line + len;
    }
}

static bool fn_is(const char *have, const char *want)
{
    size_t n = strlen(want);
    /* gcc clones: name.part.0, name.constprop.0, name.isra.0 */
    return strncmp(have, want, n) == 0 && (have[n] == '\0' || have[n] == '.');
}

/* The sites with a frame in function `fn`; the first in *out. */
static int sites_with(struct report *rp, const char *fn, struct site **out, int *frame)
{
    int n = 0;
    for (int i = 0; i < rp->nsites; i++)
        for (int k = 0; k < rp->sites[i].nframes; k++)
            if (fn_is(rp->sites[i].fr[k].fn, fn)) {
                if (n++ == 0) {
                    *out = &rp->sites[i];
                    if (frame)
                        *frame = k;
                }
                break;
            }
    return n;
}

static size_t sum_bytes(struct report *rp)
{
    size_t s = 0;
    for (int i = 0; i < rp->nsites; i++)
        s += rp->sites[i].bytes;
    return s;
}

static size_t sum_blocks(struct report *rp)
{
    size_t s = 0;
    for (int i = 0; i < rp->nsites; i++)
        s += rp->sites[i].blocks;
    return s;
}

static int max_frames(struct report *rp)
{
    int m = 0;
    for (int i = 0; i < rp->nsites; i++)
        if (rp->sites[i].nframes > m)
            m = rp->sites[i].nframes;
    return m;
}

static int min_frames(struct report *rp)
{
    int m = MAX_FRAMES + 1;
    for (int i = 0; i < rp->nsites; i++)
        if (rp->sites[i].nframes < m)
            m = rp->sites[i].nframes;
    return rp->nsites ? m : 0;
}

/* ------------------------------------------------------------------ */
/* Expectations: what leaky_prog leaks (see c-tests/leaky_prog.c)        */

struct expected_leak {
    const char *fn;
    size_t bytes, blocks;
};

/* in the order the report must list them (bytes, largest first) */
static const struct expected_leak LEAKS[] = {
    {"leak_big", 200000, 1}, {"leak_via_realloc", 3000, 1}, {"leak_deep", 1000, 1},
    {"leak_nodes", 480, 10}, {"thread_leaker", 288, 4},     {"leak_aligned", 200, 1},
    {"leak_strings", 105, 5}, {"leak_calloc", 63, 1},       {"leak_zero", 0, 1},
};
#define N_LEAKS (sizeof LEAKS / sizeof LEAKS[0])
#define TOTAL_BYTES 205136u
#define TOTAL_BLOCKS 25u

/* C-library-internal names suppressed by default */
static bool libc_internal(const struct frame *f)
{
    return strstr(f->fn, "_IO_file_doallocate") || strstr(f->fn, "_nl_") ||
           strstr(f->fn, "_dl_") || strstr(f->module, "ld-linux");
}

static const char *report_excerpt(const struct res *r)
{
    return excerpt(r->err, 600);
}

static bool done_line(const struct res *r, const char *mode)
{
    char *want = fmt("leaky_prog: done %s\n", mode);
    bool okk = ends_with(r->out, want);
    free(want);
    return okk;
}

/* ------------------------------------------------------------------ */
/* Leak report tests                                                    */

static struct report rp_default; /* the default run, for later deltas */

static void test_leak_default(bool have_addr2line)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", NULL};
    struct res r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    struct report *rp = &rp_default;
    parse_report(r.err, rp);

    check(r.status == 0, "leak_default_exit_status", "status %d; stderr: %s", r.status,
          report_excerpt(&r));
    check(done_line(&r, "leak") && count(r.out, "filler ") == 100, "leak_default_stdout_complete",
          "stdout: %s", excerpt(r.out, 300));
    check(rp->summary && rp->summaries == 1, "leak_summary_present",
          "%d summary lines; stderr: %s", rp->summaries, report_excerpt(&r));
    check(rp->bad == 0, "leak_report_format", "%d lines not understood, first: %s", rp->bad,
          rp->first_bad);
    check(rp->bytes == TOTAL_BYTES && rp->blocks == TOTAL_BLOCKS && rp->nsum == N_LEAKS,
          "leak_summary_totals", "summary %zu bytes in %zu blocks from %zu sites, want %u in %u from %zu",
          rp->bytes, rp->blocks, rp->nsum, TOTAL_BYTES, TOTAL_BLOCKS, N_LEAKS);
    check(rp->nsites == (int)rp->nsum && sum_bytes(rp) == rp->bytes &&
              sum_blocks(rp) == rp->blocks,
          "leak_sites_add_up_to_summary", "%d sites listed, %zu bytes in %zu blocks; summary %zu/%zu/%zu",
          rp->nsites, sum_bytes(rp), sum_blocks(rp), rp->bytes, rp->blocks, rp->nsum);

    for (size_t i = 0; i < N_LEAKS; i++) {
        struct site *s = NULL;
        int n = sites_with(rp, LEAKS[i].fn, &s, NULL);
        char *name = fmt("leak_site_%s", LEAKS[i].fn);
        check(n == 1 && s->bytes == LEAKS[i].bytes && s->blocks == LEAKS[i].blocks, name,
              "%d sites with the function; %zu bytes in %zu blocks, want %zu in %zu", n,
              s ? s->bytes : 0, s ? s->blocks : 0, LEAKS[i].bytes, LEAKS[i].blocks);
    }

    bool sorted = true;
    for (int i = 1; i < rp->nsites; i++)
        if (rp->sites[i].bytes > rp->sites[i - 1].bytes)
            sorted = false;
    bool order = rp->nsites == (int)N_LEAKS;
    for (int i = 0; order && i < (int)N_LEAKS; i++) {
        bool has = false;
        for (int k = 0; k < rp->sites[i].nframes; k++)
            has |= fn_is(rp->sites[i].fr[k].fn, LEAKS[i].fn);
        order = has;
    }
    check(sorted && order, "leak_sites_sorted_by_bytes", "sorted %d, expected order %d", sorted,
          order);

    /* the innermost frame of a direct malloc is the leaking function, in
     * the program's own module */
    struct site *s = NULL;
    int fi = -1;
    if (sites_with(rp, "leak_nodes", &s, &fi) == 1) {
        struct frame *f = &s->fr[0];
        check(fi == 0 && ends_with(f->module, "/leaky_prog") && f->off > 0 && f->fn_off > 0,
              "leak_frame0_is_caller_of_malloc", "frame #%d; #0 is %s+0x%lx (%s+0x%lx)", fi,
              f->fn, f->fn_off, f->module, f->off);
    } else {
        fail("leak_frame0_is_caller_of_malloc", "no leak_nodes site");
    }
    /* strdup: the report names both strdup (in libc) and the caller */
    if (sites_with(rp, "leak_strings", &s, &fi) == 1)
        check(fi >= 1 && strstr(s->fr[0].fn, "strdup") != NULL, "leak_frames_through_strdup",
              "leak_strings at frame #%d, frame #0 is %s", fi, s->fr[0].fn);
    else
        fail("leak_frames_through_strdup", "no leak_strings site");

    int mf = max_frames(rp);
    struct site *deep = NULL;
    sites_with(rp, "leak_deep", &deep, NULL);
    check(mf <= 8 && deep && deep->nframes == 8, "leak_default_frames_8",
          "most frames %d, leak_deep has %d", mf, deep ? deep->nframes : -1);
    bool deep_all = deep != NULL;
    for (int k = 0; deep && k < deep->nframes; k++)
        deep_all &= fn_is(deep->fr[k].fn, "leak_deep");
    check(deep_all, "leak_deep_frames_recursive", "not all 8 frames are leak_deep");

    /* default suppressions: stdout's buffer (allocated by printf) */
    bool internal = false;
    for (int i = 0; i < rp->nsites; i++)
        for (int k = 0; k < rp->sites[i].nframes; k++)
            internal |= libc_internal(&rp->sites[i].fr[k]);
    check(!internal && rp->sup && rp->sblocks >= 1 && rp->sbytes >= 1024 && rp->ssites >= 1,
          "leak_libc_internal_suppressed", "internal frame listed %d; suppressed part %d (%zu bytes in %zu blocks from %zu sites)",
          internal, rp->sup, rp->sbytes, rp->sblocks, rp->ssites);

    /* the module offsets resolve with addr2line to the leaking lines */
    if (!have_addr2line) {
        skip("leak_addr2line", "addr2line not found");
        return;
    }
    for (size_t i = 0; i < N_LEAKS; i++) {
        char *name = fmt("leak_addr2line_%s", LEAKS[i].fn);
        long want = value_of(r.out, fmt("line %s", LEAKS[i].fn));
        struct site *ls = NULL;
        int k = -1;
        if (sites_with(rp, LEAKS[i].fn, &ls, &k) != 1 || want <= 0) {
            fail(name, "no site or no line for %s (line %ld)", LEAKS[i].fn, want);
            continue;
        }
        struct frame *f = &ls->fr[k];
        const char *argv[] = {"addr2line", "-e", f->module, fmt("0x%lx", f->off), NULL};
        struct res a;
        run(&a, NULL, NULL, argv);
        char *suffix = fmt("leaky_prog.c:%ld", want);
        /* "/path/leaky_prog.c:61" or "... (discriminator 3)" */
        char *at = strstr(a.out, suffix);
        bool good = a.status == 0 && at != NULL &&
                    (at[strlen(suffix)] == '\n' || at[strlen(suffix)] == ' ');
        check(good, name, "addr2line -e %s 0x%lx gave '%s', want ...%s", f->module, f->off,
              excerpt(a.out, 200), suffix);
    }
}

static void test_leak_suppress(void)
{
    struct report *base = &rp_default;
    struct {
        const char *name, *value;
        const char *gone[N_LEAKS + 1];
        size_t bytes, blocks, sites;
    } cases[] = {
        {"leak_suppress_function", "MMPOOL_LEAK_SUPPRESS=leak_nodes", {"leak_nodes", NULL}, 480,
         10, 1},
        {"leak_suppress_list", "MMPOOL_LEAK_SUPPRESS=no_such_name,thread_leaker,leak_calloc",
         {"thread_leaker", "leak_calloc", NULL}, 288 + 63, 4 + 1, 2},
        {"leak_suppress_module", "MMPOOL_LEAK_SUPPRESS=leaky_prog",
         {"leak_big", "leak_via_realloc", "leak_deep", "leak_nodes", "thread_leaker",
          "leak_aligned", "leak_strings", "leak_calloc", "leak_zero", NULL},
         TOTAL_BYTES, TOTAL_BLOCKS, N_LEAKS},
        {"leak_suppress_nomatch", "MMPOOL_LEAK_SUPPRESS=no_such_name", {NULL}, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", cases[i].value, NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        static struct report rp;
        parse_report(r.err, &rp);
        int still = 0;
        for (int g = 0; cases[i].gone[g]; g++) {
            struct site *s;
            still += sites_with(&rp, cases[i].gone[g], &s, NULL);
        }
        size_t want_bytes = TOTAL_BYTES - cases[i].bytes;
        size_t want_blocks = TOTAL_BLOCKS - cases[i].blocks;
        size_t want_sites = N_LEAKS - cases[i].sites;
        size_t want_sb = base->sbytes + cases[i].bytes, want_sbl = base->sblocks + cases[i].blocks,
               want_ss = base->ssites + cases[i].sites;
        check(r.status == 0 && rp.summary && still == 0 && rp.bytes == want_bytes &&
                  rp.blocks == want_blocks && rp.nsum == want_sites &&
                  rp.nsites == (int)want_sites && rp.sup == (want_sbl > 0) &&
                  rp.sbytes == want_sb && rp.sblocks == want_sbl && rp.ssites == want_ss,
              cases[i].name,
              "status %d; %d suppressed sites still listed; got %zu bytes/%zu blocks/%zu sites "
              "(suppressed %zu/%zu/%zu), want %zu/%zu/%zu (suppressed %zu/%zu/%zu)",
              r.status, still, rp.bytes, rp.blocks, rp.nsum, rp.sbytes, rp.sblocks, rp.ssites,
              want_bytes, want_blocks, want_sites, want_sb, want_sbl, want_ss);
    }
}

static void test_leak_frames(void)
{
    struct {
        const char *name, *value;
        int want; /* frames of leak_deep (deeper than any limit) */
    } cases[] = {
        {"leak_frames_1", "MMPOOL_LEAK_FRAMES=1", 1},
        {"leak_frames_3", "MMPOOL_LEAK_FRAMES=3", 3},
        {"leak_frames_16", "MMPOOL_LEAK_FRAMES=16", 16},
        {"leak_frames_clamped_to_16", "MMPOOL_LEAK_FRAMES=100", 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", cases[i].value, NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        static struct report rp;
        parse_report(r.err, &rp);
        int deep_frames = -1;
        for (int s = 0; s < rp.nsites; s++)
            if (rp.sites[s].bytes == 1000 && rp.sites[s].nframes > 0 &&
                fn_is(rp.sites[s].fr[0].fn, "leak_deep"))
                deep_frames = rp.sites[s].nframes;
        bool one = cases[i].want == 1 ? (min_frames(&rp) == 1 && max_frames(&rp) == 1) : true;
        /* 1 frame: every leak has its own immediate caller, so still 7 sites */
        check(r.status == 0 && rp.bad == 0 && one && max_frames(&rp) <= cases[i].want &&
                  deep_frames == cases[i].want && rp.bytes == TOTAL_BYTES &&
                  rp.blocks == TOTAL_BLOCKS && rp.nsum == N_LEAKS,
              cases[i].name,
              "status %d, %d bad lines, frames per site %d..%d, leak_deep %d (want %d); "
              "summary %zu/%zu/%zu",
              r.status, rp.bad, min_frames(&rp), max_frames(&rp), deep_frames, cases[i].want,
              rp.bytes, rp.blocks, rp.nsum);
    }
}

static void test_leak_max_sites(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_MAX_SITES=2", NULL};
    struct res r;
    run_prog(&r, vars, "leaky_prog", "leak", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    check(r.status == 0 && rp.nsites == 2 && rp.sites[0].bytes == 200000 &&
              rp.sites[1].bytes == 3000 && rp.more && rp.more_sites == N_LEAKS - 2 &&
              rp.bytes == TOTAL_BYTES && rp.blocks == TOTAL_BLOCKS && rp.nsum == N_LEAKS,
          "leak_max_sites", "status %d, %d sites printed, more line %d (%zu), summary %zu/%zu/%zu; %s",
          r.status, rp.nsites, rp.more, rp.more_sites, rp.bytes, rp.blocks, rp.nsum,
          report_excerpt(&r));
}

static void test_leak_exitcode(void)
{
    {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_EXITCODE=42", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        static struct report rp;
        parse_report(r.err, &rp);
        check(r.status == 42, "leak_exitcode_42", "status %d", r.status);
        check(done_line(&r, "leak") && count(r.out, "filler ") == 100 &&
                  value_of(r.out, "line leak_nodes") > 0,
              "leak_exitcode_stdout_flushed", "stdout (%zu bytes): %s", strlen(r.out),
              excerpt(r.out, 200));
        check(rp.summary && rp.bytes == TOTAL_BYTES && rp.nsites == (int)N_LEAKS,
              "leak_exitcode_report_complete", "%s", report_excerpt(&r));
    }
    {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_EXITCODE=42", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "none", NULL);
        check(r.status == 0 && done_line(&r, "none"), "leak_exitcode_without_leaks_is_0",
              "status %d", r.status);
    }
    {
        /* only leaks that are suppressed: not a failure */
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", "MMPOOL_LEAK_EXITCODE=42",
                              "MMPOOL_LEAK_SUPPRESS=leaky_prog", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        check(r.status == 0, "leak_exitcode_suppressed_leaks_is_0", "status %d", r.status);
    }
    {
        const char *vars[] = {"MMPOOL_LEAK_EXITCODE=42", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        check(r.status == 0 && strstr(r.err, "mmpool") == NULL,
              "leak_exitcode_needs_leak_check", "status %d; stderr: %s", r.status,
              report_excerpt(&r));
    }
}

static void test_leak_none_and_off(void)
{
    {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=1", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "none", NULL);
        static struct report rp;
        parse_report(r.err, &rp);
        bool line = strstr(r.err, "mmpool: 0 bytes leaked in 0 blocks from 0 sites") != NULL;
        check(r.status == 0 && done_line(&r, "none") && line && rp.summaries == 1 &&
                  rp.nsites == 0 && rp.bytes == 0 && rp.blocks == 0 && rp.bad == 0,
              "leak_none_reports_zero", "status %d; stderr: %s", r.status, report_excerpt(&r));
        /* what is left is C-library-internal, and the same as with leaks */
        check(rp.sblocks == rp_default.sblocks && rp.sbytes == rp_default.sbytes,
              "leak_none_suppressed_same_as_leaky",
              "suppressed %zu bytes in %zu blocks, the leaky run %zu in %zu", rp.sbytes,
              rp.sblocks, rp_default.sbytes, rp_default.sblocks);
    }
    {
        struct res r;
        run_prog(&r, NULL, "leaky_prog", "leak", NULL);
        check(r.status == 0 && done_line(&r, "leak") && r.err[0] == '\0', "leak_off_by_default",
              "status %d; stderr: %s", r.status, report_excerpt(&r));
    }
    {
        const char *vars[] = {"MMPOOL_LEAK_CHECK=0", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        check(r.status == 0 && strstr(r.err, "mmpool") == NULL, "leak_check_0_is_off",
              "status %d; stderr: %s", r.status, report_excerpt(&r));
    }
}

static void test_leak_threads(void)
{
    const char *vars[] = {"MMPOOL_LEAK_CHECK=1", NULL};
    struct res r;
    run_prog(&r, vars, "leaky_prog", "mt", NULL);
    static struct report rp;
    parse_report(r.err, &rp);
    struct site *s = NULL;
    int n = sites_with(&rp, "mt_leak", &s, NULL);
    check(r.status == 0 && done_line(&r, "mt") && n == 1 && s->bytes == 32000 &&
              s->blocks == 800 && rp.bytes == 32000 && rp.blocks == 800 && rp.nsum == 1,
          "leak_threads_cross_frees", "status %d, %d mt_leak sites, %zu/%zu; summary %zu/%zu/%zu; %s",
          r.status, n, s ? s->bytes : 0, s ? s->blocks : 0, rp.bytes, rp.blocks, rp.nsum,
          report_excerpt(&r));
}

/* ------------------------------------------------------------------ */
/* Statistics                                                           */

/* The numbers of the stats table's row whose block size is `block`. */
static bool class_row(const char *text, size_t block, size_t v[6])
{
    for (const char *line = text; line && *line;) {
        size_t cls, blk;
        if (sscanf(line, " %zu %zu %zu %zu %zu %zu %zu", &cls, &blk, &v[0], &v[1], &v[2], &v[3],
                   &v[4]) == 7 &&
            blk == block)
            return true;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static bool large_row(const char *text, size_t v[4])
{
    const char *p = strstr(text, "  large   >32K");
    return p && sscanf(p, "  large   >32K %zu %zu %zu %zu", &v[0], &v[1], &v[2], &v[3]) == 4;
}

static bool table_complete(const char *t)
{
    return strstr(t, "mmpool statistics (pid ") &&
           strstr(t, "  class   block     allocs      frees       live  peak live  slabs       held") &&
           strstr(t, "  large   >32K") && strstr(t, "  large blocks: ") &&
           strstr(t, " maps, ") && strstr(t, " cache hits") && strstr(t, "  requested: ") &&
           strstr(t, " over the run); held: ") && strstr(t, "  spans: ") &&
           strstr(t, "  rss: ") && strstr(t, "; threads: ");
}

static void check_stats_table(const char *prefix, const char *t)
{
    check(table_complete(t), fmt("%s_table_rows", prefix), "table: %s", excerpt(t, 800));
    size_t v[6] = {0}, lg[4] = {0};
    /* leak_nodes: 10 blocks of 48 bytes still live at exit */
    bool row = class_row(t, 48, v);
    check(row && v[0] >= 10 && v[2] >= 10 && v[3] >= v[2] && v[0] - v[1] == v[2],
          fmt("%s_class48_row", prefix), "row %d: allocs %zu frees %zu live %zu peak %zu", row,
          v[0], v[1], v[2], v[3]);
    /* large: 2 x 500000 (freed) + 200000 (leaked) */
    bool lrow = large_row(t, lg);
    size_t maps = 0, hits = 0;
    const char *lb = strstr(t, "  large blocks: ");
    bool lbp = lb && sscanf(lb, "  large blocks: %zu maps, %zu cache hits", &maps, &hits) == 2;
    check(lrow && lg[0] == 3 && lg[1] == 2 && lg[2] == 1 && lg[3] >= 1 && lbp &&
              maps + hits == 3,
          fmt("%s_large_row", prefix), "large row %d: %zu allocs %zu frees %zu live %zu peak; "
          "%zu maps + %zu cache hits (want 3 in all)",
          lrow, lg[0], lg[1], lg[2], lg[3], maps, hits);
    size_t seen = 0, live = 0;
    const char *th = strstr(t, "; threads: ");
    bool thp = th && sscanf(th, "; threads: %zu seen, %zu live", &seen, &live) == 2;
    check(thp && seen >= 5 && live >= 1 && live <= seen, fmt("%s_threads", prefix),
          "threads: %zu seen, %zu live", seen, live);
}

static void test_stats_env(void)
{
    {
        const char *vars[] = {"MMPOOL_STATS=1", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        check(r.status == 0 && done_line(&r, "leak") && count(r.err, "mmpool statistics") == 1 &&
                  strstr(r.err, "leaked in") == NULL && strstr(r.err, "need MMPOOL_STATS") == NULL,
              "stats_env_stderr", "status %d; stderr: %s", r.status, excerpt(r.err, 400));
        check_stats_table("stats_env", r.err);
    }
    {
        char *path = fmt("%s/stats.txt", tmp_dir);
        const char *vars[] = {fmt("MMPOOL_STATS=%s", path), NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        bool exists;
        char *t = read_file(path, &exists);
        check(r.status == 0 && exists && strstr(r.err, "mmpool statistics") == NULL,
              "stats_env_file", "status %d, file exists %d; stderr: %s", r.status, exists,
              excerpt(r.err, 300));
        check_stats_table("stats_file", t);
    }
    {
        /* statistics and leak report together */
        const char *vars[] = {"MMPOOL_STATS=1", "MMPOOL_LEAK_CHECK=1", NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        static struct report rp;
        parse_report(r.err, &rp);
        check(r.status == 0 && table_complete(r.err) && rp.bytes == TOTAL_BYTES &&
                  rp.blocks == TOTAL_BLOCKS && rp.nsum == N_LEAKS && rp.bad == 0,
              "stats_with_leak_check", "status %d; summary %zu/%zu/%zu", r.status, rp.bytes,
              rp.blocks, rp.nsum);
    }
}

/* stats_prog checks itself; relay its verdicts. */
static void relay(const char *prefix, const char *out)
{
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        if (strncmp(line, "ok ", 3) == 0) {
            printf("ok %s/%.*s\n", prefix, len - 3, line + 3);
            passed++;
        } else if (strncmp(line, "FAIL ", 5) == 0) {
            printf("FAIL %s/%.*s\n", prefix, len - 5, line + 5);
            failed++;
        }
        line = nl ? nl + 1 : NULL;
    }
}

static void test_stats_prog(void)
{
    {
        const char *vars[] = {"MMPOOL_STATS=1", NULL};
        struct res r;
        run_prog(&r, vars, "stats_prog", NULL, NULL);
        relay("stats_prog_detailed", r.out);
        check(r.status == 0 && strstr(r.out, "stats_prog: detailed=1") &&
                  strstr(r.out, "stats_prog: 0 failed"),
              "stats_prog_detailed_exit", "status %d; stdout: %s; stderr: %s", r.status,
              excerpt(r.out, 300), excerpt(r.err, 300));
        const char *t = strstr(r.out, "--- table ---\n");
        const char *e = t ? strstr(t, "--- end ---\n") : NULL;
        char *table = t && e ? fmt("%.*s", (int)(e - t), t) : fmt("%s", "");
        check(table_complete(table) && strstr(table, "need MMPOOL_STATS") == NULL,
              "stats_print_fd1_detailed", "table: %s", excerpt(table, 400));
        /* malloc_stats() and the report at exit, both on stderr */
        check(count(r.err, "mmpool statistics") == 2 && table_complete(r.err),
              "malloc_stats_and_exit_table", "stderr: %s", excerpt(r.err, 400));
    }
    {
        struct res r;
        run_prog(&r, NULL, "stats_prog", NULL, NULL);
        relay("stats_prog_plain", r.out);
        check(r.status == 0 && strstr(r.out, "stats_prog: detailed=0") &&
                  strstr(r.out, "stats_prog: 0 failed"),
              "stats_prog_plain_exit", "status %d; stdout: %s; stderr: %s", r.status,
              excerpt(r.out, 300), excerpt(r.err, 300));
        check(count(r.err, "mmpool statistics") == 1 && table_complete(r.err) &&
                  strstr(r.err, "allocation counts need MMPOOL_STATS=1"),
              "malloc_stats_plain", "stderr: %s", excerpt(r.err, 400));
    }
}

/* ------------------------------------------------------------------ */
/* mtrace                                                               */

struct trace_ops {
    int start, end, plus, minus, lt, gt, other, lines;
    bool starts_ok, ends_ok;
};

static void parse_trace(const char *t, struct trace_ops *o)
{
    memset(o, 0, sizeof *o);
    o->starts_ok = strncmp(t, "= Start\n", 8) == 0;
    o->ends_ok = ends_with(t, "\n= End\n");
    for (const char *line = t; line && *line;) {
        const char *nl = strchr(line, '\n');
        char l[1024];
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
        o->lines++;
        /* "@ where op args" or "op args" */
        char *p = l;
        if (strncmp(p, "@ ", 2) == 0) {
            p = strchr(p + 2, ' ');
            p = p ? p + 1 : l + strlen(l);
        }
        if (strcmp(p, "= Start") == 0)
            o->start++;
        else if (strcmp(p, "= End") == 0)
            o->end++;
        else if (strncmp(p, "+ 0x", 4) == 0)
            o->plus++;
        else if (strncmp(p, "- 0x", 4) == 0)
            o->minus++;
        else if (strncmp(p, "< 0x", 4) == 0)
            o->lt++;
        else if (strncmp(p, "> 0x", 4) == 0)
            o->gt++;
        else
            o->other++;
        line = nl ? nl + 1 : NULL;
    }
}

static const char *mtrace_tool;

/* Run glibc's mtrace script on `trace` (off the pool). */
static void run_mtrace(struct res *r, const char *prog, const char *trace)
{
    const char *argv[] = {mtrace_tool, prog, trace, NULL};
    run(r, NULL, NULL, argv);
}

/* Entries "0x... 0x...  at WHERE" of mtrace's "Memory not freed" list. */
static int not_freed(const char *out)
{
    return count(out, "  at ");
}

static bool mentions_line(const char *out, const char *file, long line)
{
    char *pat = fmt("%s:%ld", file, line);
    bool found = false;
    for (const char *p = out; (p = strstr(p, pat)) != NULL; p++) {
        char after = p[strlen(pat)];
        if (after == '\n' || after == ' ' || after == '\0') {
            found = true;
            break;
        }
    }
    free(pat);
    return found;
}

static void test_mtrace_leaks(const char *mode, const char *var)
{
    char *path = fmt("%s/trace-%s.log", tmp_dir, mode);
    const char *vars[] = {fmt("%s=%s", var, path), NULL};
    struct res r;
    run_prog(&r, vars, "mtrace_prog", mode, NULL);
    bool exists;
    char *t = read_file(path, &exists);
    struct trace_ops o;
    parse_trace(t, &o);
    char *p = fmt("mtrace_%s", mode);
    check(r.status == 0 && exists, fmt("%s_ran", p), "status %d, trace file exists %d; stderr: %s",
          r.status, exists, excerpt(r.err, 300));
    check(o.starts_ok && o.ends_ok && o.start == 1 && o.end == 1, fmt("%s_start_end", p),
          "begins with '= Start' %d, ends with '= End' %d (%d/%d); trace: %s", o.starts_ok,
          o.ends_ok, o.start, o.end, excerpt(t, 300));
    /* workload: 5 mallocs/callocs, 3 reallocs (< and >), 3 frees */
    check(o.plus == 5 && o.minus == 3 && o.lt == 3 && o.gt == 3 && o.other == 0,
          fmt("%s_ops", p), "+ %d, - %d, < %d, > %d, other %d (want 5, 3, 3, 3, 0); trace: %s",
          o.plus, o.minus, o.lt, o.gt, o.other, excerpt(t, 600));
    check(strstr(t, "mtrace_prog:(workload+0x") && strstr(t, " 0x4d\n") &&
              strstr(t, " 0xd05\n"),
          fmt("%s_callers_and_sizes", p), "trace: %s", excerpt(t, 400));
    if (mtrace_tool == NULL) {
        skip(fmt("%s_tool", p), "glibc's mtrace script not installed (Debian: libc-devtools)");
        return;
    }
    struct res m;
    run_mtrace(&m, sibling("mtrace_prog"), path);
    long l0 = value_of(r.out, "leak_line"), l1 = -1;
    const char *second = strstr(r.out, "leak_line ");
    if (second)
        second = strstr(second + 1, "leak_line ");
    if (second)
        l1 = strtol(second + 10, NULL, 10);
    check(m.status == 1 && strstr(m.out, "Memory not freed") && not_freed(m.out) == 2 &&
              l0 > 0 && l1 > 0 && mentions_line(m.out, "mtrace_prog.c", l0) &&
              mentions_line(m.out, "mtrace_prog.c", l1),
          fmt("%s_tool", p), "mtrace status %d, %d entries, want mtrace_prog.c:%ld and :%ld; output: %s %s",
          m.status, not_freed(m.out), l0, l1, excerpt(m.out, 500), excerpt(m.err, 200));
}

static void test_mtrace_clean(const char *mode, const char *var)
{
    char *path = fmt("%s/trace-%s.log", tmp_dir, mode);
    const char *vars[] = {fmt("%s=%s", var, path), NULL};
    struct res r;
    run_prog(&r, vars, "mtrace_prog", mode, NULL);
    bool exists;
    char *t = read_file(path, &exists);
    struct trace_ops o;
    parse_trace(t, &o);
    char *p = fmt("mtrace_%s", mode);
    check(r.status == 0 && exists && o.starts_ok && o.ends_ok && o.plus == 3 && o.minus == 3 &&
              o.lt == 2 && o.gt == 2 && o.other == 0,
          fmt("%s_trace", p), "status %d, exists %d, start %d end %d, + %d - %d < %d > %d other %d; %s",
          r.status, exists, o.starts_ok, o.ends_ok, o.plus, o.minus, o.lt, o.gt, o.other,
          excerpt(t, 400));
    if (mtrace_tool == NULL) {
        skip(fmt("%s_tool", p), "glibc's mtrace script not installed");
        return;
    }
    struct res m;
    run_mtrace(&m, sibling("mtrace_prog"), path);
    check(m.status == 0 && strstr(m.out, "No memory leaks.") && !strstr(m.out, "not freed"),
          fmt("%s_no_leaks", p), "mtrace status %d; output: %s", m.status, excerpt(m.out, 400));
}

static void test_mtrace(void)
{
    test_mtrace_leaks("mtrace", "MALLOC_TRACE");
    test_mtrace_leaks("auto", "MMPOOL_TRACE");
    test_mtrace_clean("clean", "MALLOC_TRACE");
    test_mtrace_clean("clean-auto", "MMPOOL_TRACE");

    {
        /* MALLOC_TRACE alone traces nothing until mtrace() is called */
        char *path = fmt("%s/trace-never.log", tmp_dir);
        const char *vars[] = {fmt("MALLOC_TRACE=%s", path), NULL};
        struct res r;
        run_prog(&r, vars, "mtrace_prog", "clean-auto", NULL);
        bool exists;
        read_file(path, &exists);
        check(r.status == 0 && !exists, "mtrace_needs_mtrace_call",
              "status %d, trace file written %d", r.status, exists);
    }
    {
        /* a whole multi-threaded run: every leak of leaky_prog, at its line */
        char *path = fmt("%s/trace-leaky.log", tmp_dir);
        const char *vars[] = {fmt("MMPOOL_TRACE=%s", path), NULL};
        struct res r;
        run_prog(&r, vars, "leaky_prog", "leak", NULL);
        bool exists;
        char *t = read_file(path, &exists);
        struct trace_ops o;
        parse_trace(t, &o);
        check(r.status == 0 && exists && o.starts_ok && o.ends_ok && o.other == 0 &&
                  o.plus > 100 && o.minus > 100 && o.lt > 0 && o.gt == o.lt,
              "mtrace_threads_trace", "status %d, exists %d, start %d end %d, + %d - %d < %d > %d other %d",
              r.status, exists, o.starts_ok, o.ends_ok, o.plus, o.minus, o.lt, o.gt, o.other);
        if (mtrace_tool == NULL) {
            skip("mtrace_threads_tool", "glibc's mtrace script not installed");
        } else {
            struct res m;
            run_mtrace(&m, sibling("leaky_prog"), path);
            /* strdup's blocks are attributed to strdup (1 frame): 25 - 5 */
            static const struct {
                const char *fn;
                int n;
            } at[] = {{"leak_big", 1},      {"leak_via_realloc", 1}, {"leak_deep", 1},
                      {"leak_nodes", 10},   {"thread_leaker", 4},    {"leak_aligned", 1},
                      {"leak_calloc", 1},   {"leak_zero", 1}};
            bool good = m.status == 1 && strstr(m.out, "Memory not freed");
            char why[512] = "";
            for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
                long line = value_of(r.out, fmt("line %s", at[i].fn));
                char *pat = fmt("leaky_prog.c:%ld\n", line);
                char *pat2 = fmt("leaky_prog.c:%ld ", line);
                int n = count(m.out, pat) + count(m.out, pat2);
                if (n != at[i].n) {
                    good = false;
                    snprintf(why + strlen(why), sizeof why - strlen(why), " %s:%ld x%d (want %d)",
                             at[i].fn, line, n, at[i].n);
                }
            }
            int ours = count(m.out, "leaky_prog.c:");
            check(good && ours == 20, "mtrace_threads_tool",
                  "mtrace status %d, %d entries at leaky_prog.c (want 20);%s; output: %s",
                  m.status, ours, why, excerpt(m.out, 600));
        }
    }
}

/* ------------------------------------------------------------------ */
/* Overhead (informational)                                             */

static char bench_module[256];

static double bench_ns(const char *ld_preload, const char *var, long pairs)
{
    const char *vars[] = {var, NULL};
    char *n = fmt("%ld", pairs);
    const char *argv[] = {sibling("leaky_prog"), "bench", n, NULL};
    struct res r;
    run(&r, ld_preload, var ? vars : NULL, argv);
    long long ns = -1;
    const char *p = strstr(r.out, "bench_ns ");
    if (r.status != 0 || p == NULL || sscanf(p, "bench_ns %lld", &ns) != 1) {
        printf("note: bench run failed (status %d): %s\n", r.status, excerpt(r.err, 200));
        return -1;
    }
    const char *m = strstr(r.out, "malloc_module ");
    bench_module[0] = '\0';
    if (m)
        sscanf(m, "malloc_module %255s", bench_module);
    return (double)ns / (double)pairs;
}

static void overhead(bool full)
{
    long pairs = 2000000;
    long trace_pairs = full ? 2000000 : 200000;
    char *trace = fmt("MMPOOL_TRACE=%s/bench-trace.log", tmp_dir);
    /* glibc's malloc: preloading the C library itself puts its malloc
     * first, ahead of the libmmpool that leaky_prog may be linked with */
    Dl_info info;
    FILE *(*volatile some_libc_function)(const char *, const char *) = fopen;
    const char *libc_path = NULL;
    if (dladdr((void *)some_libc_function, &info) != 0 && info.dli_fname &&
        strstr(info.dli_fname, "libc.so"))
        libc_path = info.dli_fname;
    double glibc = bench_ns(libc_path, NULL, pairs);
    bool is_glibc = strstr(bench_module, "libc.so") != NULL;
    double plain = bench_ns(preload, NULL, pairs);
    double stats = bench_ns(preload, "MMPOOL_STATS=1", pairs);
    double leaks = bench_ns(preload, "MMPOOL_LEAK_CHECK=1", pairs);
    double traced = bench_ns(preload, trace, trace_pairs);
    unlink(trace + strlen("MMPOOL_TRACE="));
    printf("overhead: malloc/free pairs of mixed sizes (16..2000 B, 1024 live), ns per pair\n");
    if (is_glibc)
        printf("overhead:   glibc                   %8.1f  (%ld pairs)\n", glibc, pairs);
    else
        printf("overhead:   (glibc baseline: malloc came from %s)\n",
               bench_module[0] ? bench_module : "?");
    printf("overhead:   mmpool                  %8.1f  (%ld pairs)\n", plain, pairs);
    if (plain > 0) {
        printf("overhead:   MMPOOL_STATS=1          %8.1f  x%.1f\n", stats, stats / plain);
        printf("overhead:   MMPOOL_LEAK_CHECK=1     %8.1f  x%.1f\n", leaks, leaks / plain);
        printf("overhead:   MMPOOL_TRACE=file       %8.1f  x%.1f  (%ld pairs)\n", traced,
               traced / plain, trace_pairs);
    }
}

/* ------------------------------------------------------------------ */

static void cleanup_tmp(void)
{
    static const char *names[] = {"stats.txt",      "trace-mtrace.log",     "trace-auto.log",
                                  "trace-clean.log", "trace-clean-auto.log", "trace-never.log",
                                  "trace-leaky.log", "bench-trace.log"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(fmt("%s/%s", tmp_dir, names[i]));
    rmdir(tmp_dir);
}

int main(int argc, char **argv)
{
    bool full = false, bench = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--full") == 0)
            full = true;
        else if (strcmp(argv[i], "--smoke") == 0)
            full = false;
        else if (strcmp(argv[i], "--no-bench") == 0)
            bench = false;
        else {
            fprintf(stderr, "usage: leak [--smoke|--full] [--no-bench]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
    if (n <= 0) {
        fail("setup", "readlink /proc/self/exe: %s", strerror(errno));
        return 1;
    }
    exe_dir[n] = '\0';
    char *slash = strrchr(exe_dir, '/');
    if (slash)
        *slash = '\0';

    const char *lp = getenv("LD_PRELOAD");
    const char *ml = getenv("MMPOOL_LIB");
    if (lp && *lp)
        preload = fmt("%s", lp);
    else if (ml && *ml)
        preload = fmt("%s", ml);
    else
        preload = fmt("%s/../release/libmmpool.so", exe_dir);
    printf("leak: LD_PRELOAD=%s\n", preload);
    if (strstr(preload, "mmpool") == NULL)
        printf("note: LD_PRELOAD does not name libmmpool\n");

    bool missing = false;
    static const char *progs[] = {"leaky_prog", "stats_prog", "mtrace_prog"};
    for (size_t i = 0; i < 3; i++)
        if (!executable(sibling(progs[i]))) {
            fail("setup", "%s not built (the C-test runner builds c-tests/%s.c)",
                 sibling(progs[i]), progs[i]);
            missing = true;
        }
    if (missing)
        return 1;

    char tmpl[] = "/tmp/mmpool-leak-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        fail("setup", "mkdtemp: %s", strerror(errno));
        return 1;
    }
    tmp_dir = fmt("%s", tmpl);

    bool have_addr2line = false;
    {
        const char *argv2[] = {"addr2line", "--version", NULL};
        struct res r;
        run(&r, NULL, NULL, argv2);
        have_addr2line = r.status == 0;
    }
    if (executable("/usr/bin/mtrace"))
        mtrace_tool = "/usr/bin/mtrace";

    test_leak_default(have_addr2line);
    test_leak_suppress();
    test_leak_frames();
    test_leak_max_sites();
    test_leak_exitcode();
    test_leak_none_and_off();
    test_leak_threads();
    test_stats_env();
    test_stats_prog();
    test_mtrace();
    if (bench)
        overhead(full);

    if (failed == 0)
        cleanup_tmp();
    else
        printf("leak: files kept in %s\n", tmp_dir);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("leak: %d passed, %d failed (%.1fs)\n", passed, failed,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return failed ? 1 : 0;
}
