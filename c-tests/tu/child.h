/* c-tests/tu/child.h -- code run in a forked child (see testutil.h,
 * which includes it): a function with stderr captured (tu_run_child),
 * and a case's body with its verdict brought back (tu_case_in_child). */
#ifndef MMPOOL_TU_CHILD_H
#define MMPOOL_TU_CHILD_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/child.h: it includes the tu/ headers in order"
#endif

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

/* Fork a child whose stderr goes into a pipe (no core files from its
 * intentional aborts; in a process group of its own when own_group).
 * Parent: the child's pid (-1 when pipe or fork failed) and *read_fd,
 * the pipe's read end. Child: returns 0 with stderr redirected. */
static pid_t TU_UNUSED tu_fork_capturing(int *read_fd, bool own_group)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        if (own_group)
            setpgid(0, 0);
        close(pfd[0]);
        dup2(pfd[1], 2);
        close(pfd[1]);
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        return 0;
    }
    if (own_group)
        setpgid(pid, pid); /* either of the two calls wins; both mean the same */
    close(pfd[1]);
    *read_fd = pfd[0];
    return pid;
}

/* Append what one read() of fd gives to buf (cap bytes, *len used,
 * kept NUL-terminable: at most cap - 1 bytes); the read's result. */
static ssize_t TU_UNUSED tu_read_append(int fd, char *buf, size_t cap, size_t *len)
{
    char chunk[512];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) {
        size_t take = (size_t)n;
        if (take > cap - 1 - *len)
            take = cap - 1 - *len;
        memcpy(buf + *len, chunk, take);
        *len += take;
    }
    return n;
}

static bool TU_UNUSED tu_run_child(void (*fn)(void *), void *arg,
                                   unsigned timeout_s, tu_child_result *res)
{
    memset(res, 0, sizeof *res);
    int rfd;
    pid_t pid = tu_fork_capturing(&rfd, false);
    if (pid < 0)
        return false;
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        signal(SIGALRM, SIG_DFL);   /* not tu_alarm's handler */
        alarm(timeout_s);
        fn(arg);
        _exit(0);
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = tu_read_append(rfd, res->err, sizeof res->err, &len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
    }
    res->err[len] = 0;
    close(rfd);
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
    static const char fail_tag[] = "\nTU-FAIL: ", skip_tag[] = "\nTU-SKIP: ",
                      note_tag[] = "\nTU-NOTE: ";
    if (tu_case_note[0]) {
        tu_write_all(2, note_tag, sizeof note_tag - 1);
        tu_write_all(2, tu_case_note, strlen(tu_case_note));
        tu_write_all(2, "\n", 1);
    }
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
    if (!tu_case_failed && tu_tagged_line(r.err, "\nTU-NOTE: ", line, sizeof line))
        tu_note("%s", line);
}

#endif /* MMPOOL_TU_CHILD_H */
