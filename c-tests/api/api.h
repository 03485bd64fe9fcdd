/* c-tests/api/api.h -- what the tests of c-tests/api/ share: the malloc
 * API's edge cases, by name, with glibc's semantics, one concern a file
 * (malloc.c: malloc, malloc_usable_size and many blocks; calloc.c;
 * realloc.c: realloc and reallocarray; free.c: free, free_sized and
 * free_aligned_sized; aligned.c: posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc; exports.c: the exported names, glibc's
 * __libc_* aliases and the mmpool_* twins).
 *
 *   target/c/api/NAME [--smoke|--full] [case...]
 *
 * Build: gcc -O2 -g -Wall -Wextra -Werror -pthread -Iinclude
 *        c-tests/api/NAME.c -Ltarget/release -lmmpool
 *        -Wl,-rpath,$PWD/target/release -ldl
 * Run:   LD_PRELOAD=$PWD/target/release/libmmpool.so target/c/api/NAME */
#ifndef MMPOOL_API_TESTS_H
#define MMPOOL_API_TESTS_H

#include "../testutil.h"

#define PDMAX ((size_t)PTRDIFF_MAX)
#define SENTINEL ((void *)(uintptr_t)0x5e5e5e50)

static size_t TU_UNUSED page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* The alignment a block of `size` bytes must have. */
static size_t TU_UNUSED min_align(size_t size)
{
    if (size >= 16)
        return 16;
    size_t a = 1;
    while (a * 2 <= size)
        a *= 2;
    return a;
}

static void TU_UNUSED check_block(void *p, size_t size, size_t align, const char *what)
{
    if (!p) {
        FAILF("%s(%zu) returned NULL", what, size);
        return;
    }
    if (!tu_aligned(p, align))
        FAILF("%s(%zu) = %p not aligned to %zu", what, size, p, align);
    size_t u = xusable(p);
    if (u < size)
        FAILF("%s(%zu): malloc_usable_size %zu understates", what, size, u);
}

static const size_t huge_sizes[] TU_UNUSED = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4096, SIZE_MAX / 2,
    PDMAX + 1, PDMAX, PDMAX - 4096, (size_t)1 << 50, (size_t)1 << 47,
};
#define NHUGE (sizeof huge_sizes / sizeof huge_sizes[0])

/* tu_init, and a note when malloc is not served by libmmpool. */
static void TU_UNUSED api_init(int argc, char **argv)
{
    tu_init(argc, argv);
    if (!tu_malloc_is_mmpool())
        printf("note: malloc is served by '%s', not libmmpool\n", tu_symbol_owner("malloc"));
}

#endif /* MMPOOL_API_TESTS_H */
