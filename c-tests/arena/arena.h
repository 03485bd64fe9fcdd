/* c-tests/arena/arena.h -- what the arena tests share (the files of
 * c-tests/arena/: the arena API mmpool_arena_*, case by case, one concern
 * per file): their setup, statistics snapshots, and a log of events that
 * cleanup handlers append to.
 *
 *   target/c/arena/NAME [--smoke|--full] [case...]
 *
 * Build: gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude
 *        c-tests/arena/NAME.c -Ltarget/release -lmmpool
 *        -Wl,-rpath,$PWD/target/release -ldl
 * Run:   LD_PRELOAD=$PWD/target/release/libmmpool.so target/c/arena/NAME */
#ifndef MMPOOL_ARENA_TESTS_H
#define MMPOOL_ARENA_TESTS_H

#include "../testutil.h"

/* The arena cases expect the arena's normal mode: run them without
 * MMPOOL_ARENA_DEBUG (arena/debug sets it itself, in a child). */
static void TU_UNUSED arena_refuse_debug_env(const char *argv0)
{
    const char *d = getenv("MMPOOL_ARENA_DEBUG");
    if (d && strcmp(d, "0") != 0) {
        fprintf(stderr, "%s: run without MMPOOL_ARENA_DEBUG (arena/debug sets it itself)\n",
                argv0);
        exit(2);
    }
}

/* tu_init, the check above and a timeout for the whole binary. */
static void TU_UNUSED arena_init(int argc, char **argv)
{
    tu_init(argc, argv);
    arena_refuse_debug_env(argv[0]);
    tu_alarm(tu_full ? 900 : 240);
}

/* The statistics of `a` (filled with 0xA5 first: a field the call leaves
 * alone shows). */
static mmpool_arena_stats_t TU_UNUSED stats_of(const mmpool_arena_t *a)
{
    mmpool_arena_stats_t s;
    memset(&s, 0xA5, sizeof s);
    mmpool_arena_stats(a, &s);
    return s;
}

/* A log of events (cleanup handlers append their id). */
static int ev_log[16384];
static int ev_n;

static void TU_UNUSED log_reset(void) { ev_n = 0; }
static void TU_UNUSED log_handler(void *data)
{
    if (ev_n < (int)(sizeof ev_log / sizeof ev_log[0]))
        ev_log[ev_n++] = (int)(intptr_t)data;
}
static int TU_UNUSED log_pos(int id)
{
    for (int i = 0; i < ev_n; i++)
        if (ev_log[i] == id)
            return i;
    return -1;
}
static int TU_UNUSED log_count(int id)
{
    int c = 0;
    for (int i = 0; i < ev_n; i++)
        c += ev_log[i] == id;
    return c;
}

#endif /* MMPOOL_ARENA_TESTS_H */
