/* c-tests/tu/paths.h -- where things are (see testutil.h, which
 * includes it): this binary (tu_self_exe, tu_self_dir), the helper
 * programs the runner built (tu_helper_path), the library to preload
 * (tu_preload), and a scratch directory removed by tu_finish
 * (tu_tmpdir). */
#ifndef MMPOOL_TU_PATHS_H
#define MMPOOL_TU_PATHS_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/paths.h: it includes the tu/ headers in order"
#endif

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

#endif /* MMPOOL_TU_PATHS_H */
