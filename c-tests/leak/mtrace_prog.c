/* c-tests/leak/mtrace_prog.c -- a workload for mtrace-format traces, run
 * by c-tests/leak/mtrace.c (it checks nothing itself).
 *
 *   mtrace_prog mtrace   calls mtrace() ... muntrace() (MALLOC_TRACE=path)
 *   mtrace_prog auto     no mtrace() calls (MMPOOL_TRACE=path)
 *   mtrace_prog clean    mtrace() ... muntrace(), frees everything
 *   mtrace_prog clean-auto  no mtrace() calls, frees everything
 *
 * The workload mallocs, callocs, reallocs (the `<` and `>` lines) and
 * frees; unless "clean", it leaks two blocks: one from malloc and one
 * grown by realloc.  Their source lines are printed as
 * `leak_line <N>` (taken with __LINE__, so nothing is hard-coded).
 * Output goes through write(2) with a stack buffer, never stdio, so the
 * C library allocates nothing while a whole-run trace is on. */
#define _GNU_SOURCE 1
#include <mcheck.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile keep[8];
static int leak_lines[2];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(1, buf, (size_t)n) < 0)
        _exit(4);
}

__attribute__((noinline)) static void workload(int leak)
{
    char *a = malloc(100);
    char *b = calloc(10, 10);
    char *c = malloc(5000);
    if (!a || !b || !c)
        _exit(3);
    memset(a, 1, 100);
    a = realloc(a, 500);        /* < and > */
    if (!a)
        _exit(3);
    a = realloc(a, 40000);      /* to a large block */
    if (!a)
        _exit(3);
    keep[0] = a;
    keep[1] = b;
    keep[2] = c;
    free(b);
    free(c);
    free(a);
    keep[0] = keep[1] = keep[2] = NULL;
    if (leak) {
        keep[3] = malloc(77); leak_lines[0] = __LINE__;
        char *g = malloc(16);
        if (!g)
            _exit(3);
        g = realloc(g, 3333); leak_lines[1] = __LINE__;
        keep[4] = g;
    }
}

int main(int argc, char **argv)
{
    /* the C-test runner passes --smoke / --full: the default mode */
    const char *mode = argc > 1 && argv[1][0] != '-' ? argv[1] : "mtrace";
    int calls = strcmp(mode, "mtrace") == 0 || strcmp(mode, "clean") == 0;
    int leak = strcmp(mode, "mtrace") == 0 || strcmp(mode, "auto") == 0;
    if (!calls && !leak && strcmp(mode, "clean-auto") != 0) {
        say("usage: mtrace_prog mtrace|auto|clean|clean-auto\n");
        return 2;
    }
    if (calls)
        mtrace();
    workload(leak);
    if (calls)
        muntrace();
    if (leak)
        say("leak_line %d\nleak_line %d\n", leak_lines[0], leak_lines[1]);
    say("mtrace_prog: done %s\n", mode);
    return 0;
}
