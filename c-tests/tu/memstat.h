/* c-tests/tu/memstat.h -- memory figures of this process (see
 * testutil.h, which includes it): /proc/self/status fields (tu_rss_kib,
 * tu_hwm_kib, tu_status_kib), getrusage's peak (tu_maxrss_kib), and the
 * pool's slabs per size class (tu_class_slabs). */
#ifndef MMPOOL_TU_MEMSTAT_H
#define MMPOOL_TU_MEMSTAT_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/memstat.h: it includes the tu/ headers in order"
#endif

/* ------------------------------------------------------------------ */
/* Memory statistics (KiB).                                             */

static long TU_UNUSED tu_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static long TU_UNUSED tu_rss_kib(void) { return tu_status_kib("VmRSS"); }
static long TU_UNUSED tu_hwm_kib(void) { return tu_status_kib("VmHWM"); }

static long TU_UNUSED tu_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

#ifndef TU_NO_MMPOOL
/* Slabs the pool holds for the size classes whose block size lies in
 * [lo, hi] (mmpool_stats_get). */
static inline size_t tu_class_slabs(size_t lo, size_t hi)
{
    mmpool_stats_t s;
    mmpool_stats_get(&s);
    size_t n = 0;
    for (size_t c = 0; c < s.num_classes; c++)
        if (s.classes[c].block_size >= lo && s.classes[c].block_size <= hi)
            n += s.classes[c].slabs;
    return n;
}
#endif

#endif /* MMPOOL_TU_MEMSTAT_H */
