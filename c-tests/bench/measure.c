/*
 * measure - runs one command and reports its wall time and peak RSS, like
 * GNU time's `%e %M`, for the benchmark harness.
 *
 * usage: measure RESULT_FILE PROGRAM [ARGS...]
 *
 * The child inherits stdin/stdout/stderr and the environment, except that
 * MEASURE_PRELOAD (if set) becomes the child's LD_PRELOAD: the allocator
 * under test is loaded into the measured program only, never into this
 * wrapper. The peak RSS is the child's ru_maxrss from wait4(); Linux
 * carries the pre-exec high-water mark of the forked process over exec,
 * which is why the wrapper is small (built static when possible) instead
 * of the Python harness forking the programs itself.
 *
 * RESULT_FILE gets one line:  exit CODE WALL_S MAXRSS_KIB  or
 *                             signal SIGNO WALL_S MAXRSS_KIB
 * The wrapper exits with the child's code, or 128 + signal number.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s RESULT_FILE PROGRAM [ARGS...]\n", argv[0]);
        return 125;
    }
    const char *preload = getenv("MEASURE_PRELOAD");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 125;
    }
    if (pid == 0) {
        if (preload && *preload)
            setenv("LD_PRELOAD", preload, 1);
        unsetenv("MEASURE_PRELOAD");
        execvp(argv[2], argv + 2);
        fprintf(stderr, "measure: cannot run %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            perror("measure: wait4");
            return 125;
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror("measure: result file");
        return 125;
    }
    if (WIFSIGNALED(status))
        fprintf(f, "signal %d %.6f %ld\n", WTERMSIG(status), wall, ru.ru_maxrss);
    else
        fprintf(f, "exit %d %.6f %ld\n", WEXITSTATUS(status), wall, ru.ru_maxrss);
    if (fclose(f) != 0) {
        perror("measure: result file");
        return 125;
    }
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}
