/* c-tests/leak/stats_prog.c -- mmpool's statistics seen from C:
 * mmpool_stats_get deltas around a known workload, mallinfo2, malloc_trim,
 * malloc_stats, mmpool_stats_print.  Run by c-tests/leak/stats_api.c (with
 * and without MMPOOL_STATS=1); also runs standalone:
 *
 *   LD_PRELOAD=target/release/libmmpool.so MMPOOL_STATS=1 target/c/leak/stats_prog
 *
 * With MMPOOL_STATS set (`detailed`), allocation counts and requested
 * bytes must move by exactly what the workload did; without it they must
 * stay zero, while the always-kept counters (large blocks, threads, slabs)
 * still move.  Prints `ok <name>` / `FAIL <name>: why` per check (one
 * tu_verdict each: the checks follow the workload's states), then the
 * table of mmpool_stats_print(1) between `--- table ---` and `--- end ---`
 * lines, and calls malloc_stats() (stderr).  Exit 1 when a check failed. */
#include "../testutil.h"

/* xmalloc/xfree (testutil.h): volatile function pointers, so gcc can
 * neither elide nor fold the calls */

#define N_SMALL 1000
#define N_SMALL_FREED 400
#define SMALL_SIZE 24
#define N_LARGE 3
#define LARGE_SIZE (100 * 1024)

static void *small[N_SMALL];
static void *large[N_LARGE];
/* snapshots are big (64 classes): keep them out of the stack */
static mmpool_stats_t s0, s1, s2, s3, s4;

static size_t d(size_t after, size_t before)
{
    return after - before; /* wraps visibly when a counter went down */
}

static long sd(size_t after, size_t before)
{
    return (long)(after - before);
}

/* The class serving a request of `size` bytes (the secure build keeps a
 * size record in every block, and its blocks are at least 32 bytes). */
static int class_of(const mmpool_stats_t *s, size_t size)
{
    size_t need = size + s->block_record;
    if (s->secure && need < 32)
        need = 32;
    for (size_t i = 0; i < s->num_classes; i++)
        if (s->classes[i].block_size >= need)
            return (int)i;
    return -1;
}

static void *thread_body(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        xfree(xmalloc(64));
    return NULL;
}

int main(void)
{
    /* stdout's buffer and anything else libc wants, before the baseline */
    printf("stats_prog: pid %d\n", (int)getpid());
    fflush(stdout);
    xfree(xmalloc(1));

    mmpool_stats_get(&s0);
    int detailed = s0.detailed;
    printf("stats_prog: detailed=%d num_classes=%zu\n", detailed, s0.num_classes);

    tu_verdict(s0.num_classes > 0 && s0.num_classes <= MMPOOL_MAX_CLASSES, "num_classes",
               "num_classes=%zu", s0.num_classes);
    int ascending = 1;
    for (size_t i = 1; i < s0.num_classes && i < MMPOOL_MAX_CLASSES; i++)
        if (s0.classes[i].block_size <= s0.classes[i - 1].block_size)
            ascending = 0;
    tu_verdict(ascending && s0.classes[0].block_size >= 8, "class_sizes_ascending",
               "first=%zu", s0.classes[0].block_size);
    int c = class_of(&s0, SMALL_SIZE);
    tu_verdict(c >= 0 && s0.classes[c].block_size == 32, "class_for_24_is_32",
               "class %d block %zu", c, c >= 0 ? s0.classes[c].block_size : 0);
    if (c < 0)
        c = 0;
    tu_verdict(s0.threads_seen >= 1 && s0.threads_live >= 1, "threads_counted",
               "seen=%zu live=%zu", s0.threads_seen, s0.threads_live);
    tu_verdict(s0.rss > 0 && s0.rss_peak >= s0.rss, "rss", "rss=%zu peak=%zu", s0.rss,
               s0.rss_peak);

    /* ---- the workload: 1000 x 24 B, 400 freed; 3 x 100 KiB, 1 freed ---- */
    for (int i = 0; i < N_SMALL; i++) {
        small[i] = xmalloc(SMALL_SIZE);
        if (small[i] == NULL)
            return 3;
        memset(small[i], 1, SMALL_SIZE);
    }
    for (int i = 0; i < N_SMALL_FREED; i++) {
        xfree(small[i]);
        small[i] = NULL;
    }
    for (int i = 0; i < N_LARGE; i++) {
        large[i] = xmalloc(LARGE_SIZE);
        if (large[i] == NULL)
            return 3;
        memset(large[i], 2, LARGE_SIZE);
    }
    xfree(large[0]);
    large[0] = NULL;
    mmpool_stats_get(&s1);
    struct mallinfo2 mi = mallinfo2();
    mmpool_stats_get(&s2);

    const mmpool_class_stats_t *a = &s0.classes[c], *b = &s1.classes[c];
    if (detailed) {
        tu_verdict(d(b->allocs, a->allocs) == N_SMALL, "class32_allocs_delta", "%zu, want %d",
                   d(b->allocs, a->allocs), N_SMALL);
        tu_verdict(d(b->frees, a->frees) == N_SMALL_FREED, "class32_frees_delta", "%zu, want %d",
                   d(b->frees, a->frees), N_SMALL_FREED);
        tu_verdict(sd(b->live, a->live) == N_SMALL - N_SMALL_FREED, "class32_live_delta",
                   "%ld, want %d", sd(b->live, a->live), N_SMALL - N_SMALL_FREED);
        tu_verdict(b->peak_live >= b->live && b->peak_live >= N_SMALL, "class32_peak_live",
                   "peak %zu live %zu", b->peak_live, b->live);
        size_t others = 0;
        for (size_t i = 0; i < s1.num_classes; i++)
            if ((int)i != c)
                others += d(s1.classes[i].allocs, s0.classes[i].allocs) +
                          d(s1.classes[i].frees, s0.classes[i].frees);
        tu_verdict(others == 0, "other_classes_unchanged", "%zu allocs+frees in other classes",
                   others);
        tu_verdict(d(s1.large_allocs, s0.large_allocs) == N_LARGE, "large_allocs_delta",
                   "%zu, want %d", d(s1.large_allocs, s0.large_allocs), N_LARGE);
        tu_verdict(d(s1.large_frees, s0.large_frees) == 1, "large_frees_delta", "%zu, want 1",
                   d(s1.large_frees, s0.large_frees));
        size_t want_req = (size_t)(N_SMALL - N_SMALL_FREED) * SMALL_SIZE +
                          (size_t)(N_LARGE - 1) * LARGE_SIZE;
        size_t want_total = (size_t)N_SMALL * SMALL_SIZE + (size_t)N_LARGE * LARGE_SIZE;
        tu_verdict(sd(s1.requested, s0.requested) == (long)want_req, "requested_delta",
                   "%ld, want %zu", sd(s1.requested, s0.requested), want_req);
        tu_verdict(d(s1.requested_total, s0.requested_total) == want_total,
                   "requested_total_delta", "%zu, want %zu",
                   d(s1.requested_total, s0.requested_total), want_total);
        tu_verdict(s1.requested_peak >= s1.requested &&
                       s1.requested_peak >= s0.requested + (size_t)N_SMALL * SMALL_SIZE,
                   "requested_peak", "peak %zu requested %zu", s1.requested_peak, s1.requested);
        tu_verdict(mi.uordblks >= s2.requested, "mallinfo2_uordblks_covers_requested",
                   "uordblks=%zu requested=%zu", mi.uordblks, s2.requested);
    } else {
        size_t counts = 0;
        for (size_t i = 0; i < s1.num_classes; i++)
            counts += s1.classes[i].allocs + s1.classes[i].frees + s1.classes[i].live +
                      s1.classes[i].peak_live;
        counts += s1.requested + s1.requested_peak + s1.requested_total + s1.large_allocs +
                  s1.large_frees;
        tu_verdict(counts == 0, "counts_zero_without_MMPOOL_STATS", "sum of counts %zu", counts);
        tu_verdict(mi.uordblks <= s2.held, "mallinfo2_uordblks_within_held",
                   "uordblks=%zu held=%zu", mi.uordblks, s2.held);
    }
    /* kept whether or not MMPOOL_STATS is set */
    tu_verdict(sd(s1.large_live, s0.large_live) == N_LARGE - 1, "large_live_delta",
               "%ld, want %d", sd(s1.large_live, s0.large_live), N_LARGE - 1);
    tu_verdict(d(s1.large_bytes, s0.large_bytes) >= (size_t)(N_LARGE - 1) * LARGE_SIZE,
               "large_bytes_delta", "%zu", d(s1.large_bytes, s0.large_bytes));
    tu_verdict(d(s1.large_maps, s0.large_maps) + d(s1.large_cache_hits, s0.large_cache_hits) ==
                   N_LARGE,
               "large_maps_plus_cache_hits", "maps +%zu, hits +%zu, want %d in all",
               d(s1.large_maps, s0.large_maps), d(s1.large_cache_hits, s0.large_cache_hits),
               N_LARGE);
    tu_verdict(b->slabs >= 1 && b->bytes_held >= (size_t)(N_SMALL - N_SMALL_FREED) * 32,
               "class32_slabs_held", "slabs %zu bytes_held %zu", b->slabs, b->bytes_held);
    tu_verdict(s1.held >= s1.large_bytes + b->bytes_held, "held_covers_parts",
               "held %zu large %zu class %zu", s1.held, s1.large_bytes, b->bytes_held);
    /* glibc's meanings: blocks in use in uordblks, the large blocks of
     * 100 KiB (below glibc's default mmap threshold, 128 KiB) among
     * them and in arena, not in hblks/hblkhd */
    size_t live_small = (size_t)(N_SMALL - N_SMALL_FREED) * 32;
    size_t live_large = (size_t)(N_LARGE - 1) * LARGE_SIZE;
    tu_verdict(mi.uordblks >= live_small + live_large && mi.uordblks <= s2.held,
               "mallinfo2_uordblks_counts_blocks", "uordblks=%zu, want %zu..%zu", mi.uordblks,
               live_small + live_large, s2.held);
    tu_verdict(mi.hblks == 0 && mi.hblkhd == 0, "mallinfo2_large_below_threshold",
               "hblks=%zu hblkhd=%zu for %d live blocks of %d bytes", mi.hblks, mi.hblkhd,
               N_LARGE - 1, LARGE_SIZE);
    tu_verdict(mi.arena >= s2.spans_mapped + s2.large_bytes &&
                   mi.uordblks + mi.fordblks == mi.arena && mi.keepcost <= mi.fordblks,
               "mallinfo2_arena_keepcost",
               "arena=%zu spans_mapped=%zu large=%zu uordblks=%zu fordblks=%zu keepcost=%zu",
               mi.arena, s2.spans_mapped, s2.large_bytes, mi.uordblks, mi.fordblks, mi.keepcost);

    /* ---- free everything: back to the baseline ---- */
    for (int i = 0; i < N_SMALL; i++)
        xfree(small[i]);
    for (int i = 0; i < N_LARGE; i++)
        xfree(large[i]);
    mmpool_stats_get(&s3);
    if (detailed) {
        tu_verdict(s3.requested == s0.requested, "requested_back_to_baseline", "%zu, was %zu",
                   s3.requested, s0.requested);
        tu_verdict(s3.classes[c].live == s0.classes[c].live, "class32_live_back", "%zu, was %zu",
                   s3.classes[c].live, s0.classes[c].live);
        tu_verdict(d(s3.classes[c].frees, s0.classes[c].frees) == N_SMALL, "class32_frees_total",
                   "%zu", d(s3.classes[c].frees, s0.classes[c].frees));
    }
    tu_verdict(s3.large_live == s0.large_live, "large_live_back", "%zu, was %zu", s3.large_live,
               s0.large_live);

    /* ---- threads ---- */
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, thread_body, NULL) != 0)
            return 3;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    mmpool_stats_get(&s4);
    tu_verdict(d(s4.threads_seen, s3.threads_seen) == 3, "threads_seen_delta", "%zu, want 3",
               d(s4.threads_seen, s3.threads_seen));
    tu_verdict(s4.threads_live == s3.threads_live, "threads_live_after_join", "%zu, was %zu",
               s4.threads_live, s3.threads_live);
    if (detailed) {
        int c64 = class_of(&s4, 64);
        tu_verdict(c64 >= 0 && d(s4.classes[c64].allocs, s3.classes[c64].allocs) == 300,
                   "thread_allocs_counted", "class 64: %zu",
                   c64 >= 0 ? d(s4.classes[c64].allocs, s3.classes[c64].allocs) : 0);
    }

    /* ---- malloc_trim: returns 0 or 1, the pool still works after ---- */
    for (int i = 0; i < 50; i++) {
        large[0] = xmalloc(1 << 20);
        xfree(large[0]);
    }
    for (int i = 0; i < N_SMALL; i++)
        small[i] = xmalloc(4000);
    for (int i = 0; i < N_SMALL; i++)
        xfree(small[i]);
    int r = malloc_trim(0);
    int works = 1;
    for (int i = 0; i < N_SMALL; i++) {
        small[i] = xmalloc((size_t)(i % 300) + 1);
        if (small[i] == NULL)
            works = 0;
        else
            memset(small[i], 3, (size_t)(i % 300) + 1);
    }
    for (int i = 0; i < N_SMALL; i++)
        xfree(small[i]);
    tu_verdict((r == 0 || r == 1) && works, "malloc_trim", "returned %d, works after: %d", r,
               works);

    /* ---- mmpool_stats_print into a file, read back ---- */
    int fd = memfd_create("stats", 0);
    char text[16384];
    ssize_t n = -1;
    if (fd >= 0) {
        mmpool_stats_print(fd);
        n = pread(fd, text, sizeof text - 1, 0);
        close(fd);
    }
    if (n < 0)
        n = 0;
    text[n] = '\0';
    tu_verdict(strstr(text, "mmpool statistics") && strstr(text, "allocs") &&
                   strstr(text, "large   >") && strstr(text, "large blocks:") &&
                   strstr(text, "requested:") && strstr(text, "spans:") &&
                   strstr(text, "rss:") && strstr(text, "threads:"),
               "stats_print_fd", "got %zd bytes: %.300s", n, text);
    tu_verdict(detailed || strstr(text, "need MMPOOL_STATS") != NULL, "stats_print_notes_counts",
               "no note that counts need MMPOOL_STATS");

    printf("--- table ---\n");
    fflush(stdout);
    mmpool_stats_print(1);
    printf("--- end ---\n");
    fflush(stdout);
    malloc_stats();

    printf("stats_prog: %d failed\n", tu_failed_cases);
    return tu_failed_cases ? 1 : 0;
}
