/* c-tests/leak/overhead.c -- what the instrumentation costs: leaky_prog's
 * malloc/free loop on glibc, on mmpool, and with MMPOOL_STATS=1,
 * MMPOOL_LEAK_CHECK=1 and MMPOOL_TRACE=file, in ns per pair.
 * Informational: printed, never asserted (no cases).  See leak.h. */
#include "leak.h"

static char bench_module[256];

static double bench_ns(const char *ld_preload, const char *var, long pairs)
{
    const char *vars[] = {var, NULL};
    char *n = tu_fmt("%ld", pairs);
    const char *argv[] = {helper("leaky_prog"), "bench", n, NULL};
    tu_prog_opts o;
    memset(&o, 0, sizeof o);
    o.vars = var ? vars : NULL;
    o.preload = ld_preload;
    tu_prog_result r;
    tu_run_prog(argv, &o, &r);
    long long ns = -1;
    const char *p = strstr(r.out, "bench_ns ");
    if (r.status != 0 || p == NULL || sscanf(p, "bench_ns %lld", &ns) != 1) {
        printf("note: bench run failed (status %d): %s\n", r.status, tu_excerpt(r.err, 200));
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
    char *trace = tu_fmt("MMPOOL_TRACE=%s/bench-trace.log", tu_tmpdir());
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
    double plain = bench_ns(leak_lib, NULL, pairs);
    double stats = bench_ns(leak_lib, "MMPOOL_STATS=1", pairs);
    double leaks = bench_ns(leak_lib, "MMPOOL_LEAK_CHECK=1", pairs);
    double traced = bench_ns(leak_lib, trace, trace_pairs);
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

int main(int argc, char **argv)
{
    leak_init(argc, argv);
    overhead(tu_full);
    return tu_finish();
}
