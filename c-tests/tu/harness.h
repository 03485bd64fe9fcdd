/* c-tests/tu/harness.h -- the harness proper (see testutil.h, which
 * includes it): named cases and their verdicts (RUN, tu_run_case_with,
 * tu_verdict), failures inside a case (CHECK, REQUIRE, FAILF, SKIP,
 * tu_note), the command line (tu_init, tu_init_with, tu_flag, tu_full),
 * a timeout for the whole binary (tu_alarm) and the summary (tu_finish).
 */
#ifndef MMPOOL_TU_HARNESS_H
#define MMPOOL_TU_HARNESS_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/harness.h: it includes the tu/ headers in order"
#endif

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

#endif /* MMPOOL_TU_HARNESS_H */
