/* c-tests/tu/prog.h -- running programs (see testutil.h, which includes
 * it): a helper program, a tool or this binary again, with stdout and
 * stderr captured, variables added, LD_PRELOAD chosen and a timeout
 * (tu_run_prog), and relaying a test program's verdicts as this binary's
 * own cases (tu_relay). */
#ifndef MMPOOL_TU_PROG_H
#define MMPOOL_TU_PROG_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/prog.h: it includes the tu/ headers in order"
#endif

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

#endif /* MMPOOL_TU_PROG_H */
