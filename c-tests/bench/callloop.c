/*
 * callloop - the loop the callgrind fast-path measurement runs.
 *
 * usage: callloop MODE ITERATIONS
 *   lifo32  malloc(32) then free, ITERATIONS times (LIFO, one size class);
 *           16 blocks of 32 bytes stay allocated around the loop so the
 *           size class never becomes empty (an allocator that releases an
 *           empty page on every free would otherwise measure its slow path)
 *   mix     sizes from a fixed table of 16 B..1 KiB (skewed small); each
 *           iteration allocates one block and frees the one allocated 64
 *           iterations earlier (FIFO ring of 64 live blocks)
 *   empty   the lifo32 loop calling no-op functions instead: the loop's own
 *           cost, to read the others against
 * Each iteration is exactly one malloc and one free. The harness runs every
 * mode at N and 2N iterations under `valgrind --tool=callgrind` and takes
 * (Ir(2N) - Ir(N)) / N, so start-up and exit costs cancel.
 */
#include "common.h"

#define RING 64
#define TABLE 4096

static size_t sizes[TABLE];

__attribute__((noinline)) static void *
no_alloc(size_t n)
{
    static _Alignas(16) unsigned char block[64];
    ESCAPE(n);
    return block;
}

__attribute__((noinline)) static void
no_free(void *p)
{
    ESCAPE(p);
}

int
main(int argc, char **argv)
{
    if (argc != 3)
        fatal("usage: %s lifo32|mix|empty ITERATIONS", argv[0]);
    char *end;
    unsigned long long iters = strtoull(argv[2], &end, 10);
    if (*end || iters == 0)
        fatal("bad iteration count '%s'", argv[2]);
    const char *mode = argv[1];
    uint64_t sum = 0;

    if (strcmp(mode, "lifo32") == 0 || strcmp(mode, "empty") == 0) {
        void *(*alloc)(size_t) = mode[0] == 'l' ? malloc : no_alloc;
        void (*release)(void *) = mode[0] == 'l' ? free : no_free;
        unsigned char *anchor[16];
        for (size_t i = 0; i < 16; i++)
            anchor[i] = xmalloc("callloop", 32);
        for (unsigned long long i = 0; i < iters; i++) {
            unsigned char *p = alloc(32);
            ESCAPE(p);
            release(p);
        }
        for (size_t i = 0; i < 16; i++)
            free(anchor[i]);
        /* one checked allocation so a broken malloc still fails loudly */
        unsigned char *p = xmalloc("callloop", 32);
        pat_fill(p, 32, 1, 8);
        pat_verify("callloop", p, 32, 1, 8);
        free(p);
    } else if (strcmp(mode, "mix") == 0) {
        rng_t r = rng_seed(42);
        for (size_t i = 0; i < TABLE; i++)
            sizes[i] = rng_below(&r, 4) ? rng_range(&r, 16, 128) : rng_range(&r, 129, 1024);
        unsigned char *ring[RING];
        size_t ring_n[RING];
        for (size_t i = 0; i < RING; i++) {
            ring_n[i] = sizes[i];
            ring[i] = xmalloc("callloop", sizes[i]);
            pat_fill(ring[i], sizes[i], i, 256);
        }
        for (unsigned long long i = 0; i < iters; i++) {
            size_t slot = i % RING;
            free(ring[slot]);
            size_t n = sizes[i % TABLE];
            unsigned char *p = malloc(n);
            ESCAPE(p);
            ring[slot] = p;
            ring_n[slot] = n;
        }
        for (size_t i = 0; i < RING; i++) {
            size_t n = ring_n[i];
            check_new("callloop", ring[i], n);
            pat_fill(ring[i], n, i, 256);
            pat_verify("callloop", ring[i], n, i, 256);
            sum += n;
            free(ring[i]);
        }
    } else {
        fatal("unknown mode '%s'", mode);
    }
    printf("callloop %s iterations=%llu sum=%llu\n", mode, iters, (unsigned long long)sum);
    return 0;
}
