/* c-tests/map_limit.c -- allocation when the process is out of mappings.
 *
 * The kernel limits the number of mappings a process may have
 * (vm.max_map_count, 65530 by default). A program that maps many small
 * regions (a JVM, a database with many mapped files, a fuzzer) reaches
 * it, and from then on every mmap, and every mprotect or munmap that
 * would split a mapping, fails with ENOMEM. An allocator must then fail
 * allocations cleanly (NULL with errno ENOMEM) and keep every block it
 * handed out intact: no crash, no hang, no block that faults because a
 * page could not be opened again.
 *
 * Each case fills the mapping table with one-page mappings (alternately
 * read-only and read-write, so that neighbours never merge) until mmap
 * fails, hands back `headroom` of them, and runs a mixed workload: small,
 * medium and large blocks (the large ones bigger than any the warm-up
 * before the filling asked for, so the pool needs new mappings), reallocs that grow and shrink them, each block
 * filled with a pattern that is checked before it is freed or moved.
 * Every NULL must come with ENOMEM. Then the mappings are released and
 * the same workload must succeed throughout. Every case runs in a forked
 * child under a watchdog. On plain glibc every case passes too.
 *
 * trimmed_slabs_keep_no_mappings: blocks of thousands of slabs, freed
 * and trimmed, take at least 90% of the mappings they made with them (the
 * secure build's guard pages split slab spans). */
#include "testutil.h"

#include <malloc.h>
#include <sys/mman.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { LIVE = 96, MAX_FILLERS = 1 << 18 };

static void *fillers[MAX_FILLERS];
static size_t nfillers;

/* Map one-page regions until mmap fails; false (and a skip) when the limit
 * is too high to reach here. */
static bool fill_mappings(void)
{
    long page = sysconf(_SC_PAGESIZE);
    nfillers = 0;
    while (nfillers < MAX_FILLERS) {
        int prot = nfillers % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
        void *p = mmap(NULL, (size_t)page, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            if (errno != ENOMEM)
                FAILF("mmap of a filler page: %s", strerror(errno));
            return errno == ENOMEM;
        }
        fillers[nfillers++] = p;
    }
    SKIP("vm.max_map_count is above %d mappings", MAX_FILLERS);
    return false;
}

static void release_mappings(size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    while (n-- > 0 && nfillers > 0)
        munmap(fillers[--nfillers], (size_t)page);
}

struct blk {
    unsigned char *p;
    size_t n;
    unsigned char seed;
};

static size_t pick_size(tu_rng *r, size_t large_max)
{
    uint64_t x = tu_below(r, 100);
    if (x < 55)
        return 1 + tu_below(r, 2048);               /* small */
    if (x < 85)
        return 2049 + tu_below(r, 32 * KiB - 2048); /* medium */
    return 32 * KiB + tu_below(r, large_max);       /* large */
}

static void fill(struct blk *b)
{
    for (size_t i = 0; i + 1 < b->n; i += 61)
        b->p[i] = (unsigned char)(b->seed + i);
    b->p[b->n - 1] = (unsigned char)(b->seed ^ 0x5a);
}

static bool intact(const struct blk *b, size_t n)
{
    for (size_t i = 0; i < n && i + 1 < b->n; i += 61)
        if (b->p[i] != (unsigned char)(b->seed + i))
            return false;
    return n < b->n || b->p[b->n - 1] == (unsigned char)(b->seed ^ 0x5a);
}

/* The workload: `ops` operations on up to LIVE blocks, large ones of up
 * to `large_max` bytes. Returns the number of allocations that failed
 * (each checked for ENOMEM). */
static size_t workload(uint64_t seed, int ops, size_t large_max, const char *where)
{
    static struct blk live[LIVE];
    memset(live, 0, sizeof live);
    tu_rng r;
    tu_rng_seed(&r, seed);
    size_t failed = 0;
    for (int op = 0; op < ops && !tu_case_failed; op++) {
        struct blk *b = &live[tu_below(&r, LIVE)];
        if (!b->p) {
            size_t n = pick_size(&r, large_max);
            errno = 0;
            unsigned char *p = tu_below(&r, 4) ? malloc(n) : calloc(1, n);
            if (!p) {
                CHECK(errno == ENOMEM, "%s: allocation of %zu bytes failed with errno %d",
                      where, n, errno);
                failed++;
                continue;
            }
            *b = (struct blk){p, n, (unsigned char)tu_rand(&r)};
            fill(b);
        } else if (tu_below(&r, 3) == 0) {
            size_t n = tu_below(&r, 2) ? b->n * 2 + 100 : b->n / 2 + 1;
            errno = 0;
            unsigned char *q = realloc(b->p, n);
            if (!q) {
                CHECK(errno == ENOMEM, "%s: realloc(%zu -> %zu) failed with errno %d", where,
                      b->n, n, errno);
                CHECK(intact(b, b->n), "%s: a failed realloc(%zu -> %zu) changed the block",
                      where, b->n, n);
                failed++;
                continue;
            }
            b->p = q;
            CHECK(intact(b, n), "%s: realloc(%zu -> %zu) lost the contents", where, b->n, n);
            b->n = n;
            fill(b);
        } else {
            CHECK(intact(b, b->n), "%s: a block of %zu bytes changed before free", where, b->n);
            free(b->p);
            b->p = NULL;
        }
    }
    for (int i = 0; i < LIVE; i++) {
        if (live[i].p) {
            CHECK(intact(&live[i], live[i].n), "%s: a block of %zu bytes changed", where,
                  live[i].n);
            free(live[i].p);
        }
    }
    return failed;
}

static size_t headroom;

static void at_the_limit_body(void)
{
    /* The pool has blocks of every kind already. */
    workload(1, 2000, 2 * MiB, "warm-up");
    if (!fill_mappings())
        return;
    size_t filled = nfillers;
    release_mappings(headroom);
    size_t failed = workload(2, 4000, 16 * MiB, "at the limit");
    release_mappings(nfillers);
    size_t after = workload(3, 4000, 16 * MiB, "after the limit");
    CHECK(after == 0, "%zu allocations failed once the mappings were released", after);
    tu_note("%zu filler mappings, %zu left free: %zu of the allocations failed", filled,
            headroom, failed);
}

static void test_no_mapping_left(void)
{
    headroom = 0;
    tu_case_in_child(at_the_limit_body, 120);
}

static void test_two_mappings_left(void)
{
    headroom = 2;
    tu_case_in_child(at_the_limit_body, 120);
}

static int count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Memory the pool no longer uses must not keep mappings of its own: the
 * secure build's guard pages split each slab span into regions, which
 * count against vm.max_map_count like the program's own. Thousands of
 * slabs' worth of blocks, all freed and trimmed, take at least 90% of the
 * mappings they made with them. */
static void trimmed_slabs_body(void)
{
    enum { N = 20000 };
    static void *v[N];
    int before = count_mappings();
    for (int i = 0; i < N; i++) {
        v[i] = malloc(i % 2 ? 4000 : 600);
        CHECK(v[i] != NULL, "malloc failed at %d", i);
        if (!v[i])
            return;
        memset(v[i], 0x33, 64);
    }
    int peak = count_mappings();
    for (int i = 0; i < N; i++)
        free(v[i]);
    malloc_trim(0);
    int after = count_mappings();
    /* (A few spans stay: the quarantine's and the current ones' of
     * other classes.) */
    CHECK(after - before <= (peak - before) / 10 + 64,
          "%d mappings before, %d at the peak, %d after free and malloc_trim",
          before, peak, after);
    tu_note("%d mappings before, %d at the peak, %d after free and malloc_trim", before, peak,
            after);
}

static void test_trimmed_slabs_keep_no_mappings(void)
{
    tu_case_in_child(trimmed_slabs_body, 120);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(no_mapping_left);
    RUN(two_mappings_left);
    RUN(trimmed_slabs_keep_no_mappings);
    return tu_finish();
}
