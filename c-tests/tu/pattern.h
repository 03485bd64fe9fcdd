/* c-tests/tu/pattern.h -- block contents (see testutil.h, which
 * includes it): fill a block with a pattern and check it back (tu_fill,
 * tu_check, and sparse and page-strided variants for big blocks), zeroed
 * and aligned blocks (tu_all_zero, tu_aligned).
 *
 * Patterns: byte i of a block filled with seed s is a function of
 * (s, i) only, so contents survive realloc moves and can be checked. */
#ifndef MMPOOL_TU_PATTERN_H
#define MMPOOL_TU_PATTERN_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/pattern.h: it includes the tu/ headers in order"
#endif

static inline uint64_t tu_word(uint64_t seed, size_t k)
{
    return (seed + (uint64_t)k) * 0x9E3779B97F4A7C15ull ^ (seed >> 7);
}

static void TU_UNUSED tu_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    size_t words = n / 8;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = tu_word(seed, k);
        memcpy(b + k * 8, &w, 8);
    }
    uint64_t w = tu_word(seed, words);
    for (size_t i = words * 8; i < n; i++)
        b[i] = (unsigned char)(w >> (8 * (i - words * 8)));
}

/* Returns the offset of the first wrong byte, or (size_t)-1. */
static size_t TU_UNUSED tu_check(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t words = n / 8;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = tu_word(seed, k), got;
        memcpy(&got, b + k * 8, 8);
        if (got != w) {
            for (size_t i = 0; i < 8; i++)
                if (b[k * 8 + i] != (unsigned char)(w >> (8 * i)))
                    return k * 8 + i;
        }
    }
    uint64_t w = tu_word(seed, words);
    for (size_t i = words * 8; i < n; i++)
        if (b[i] != (unsigned char)(w >> (8 * (i - words * 8))))
            return i;
    return (size_t)-1;
}

/* Sparse variants for huge blocks: touch one 64-byte line per 64 KiB,
 * plus the first and last 4 KiB. */
static void TU_UNUSED tu_fill_sparse(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    if (n <= 3 * 65536) {
        tu_fill(p, n, seed);
        return;
    }
    tu_fill(b, 4096, seed);
    for (size_t off = 65536; off + 64 <= n - 4096; off += 65536)
        tu_fill(b + off, 64, seed + off);
    tu_fill(b + n - 4096, 4096, seed + n);
}

static size_t TU_UNUSED tu_check_sparse(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    if (n <= 3 * 65536)
        return tu_check(p, n, seed);
    size_t r = tu_check(b, 4096, seed);
    if (r != (size_t)-1)
        return r;
    for (size_t off = 65536; off + 64 <= n - 4096; off += 65536) {
        r = tu_check(b + off, 64, seed + off);
        if (r != (size_t)-1)
            return off + r;
    }
    r = tu_check(b + n - 4096, 4096, seed + n);
    return r == (size_t)-1 ? r : n - 4096 + r;
}

/* Page-strided variants, cheap on many mid-sized blocks: the first and
 * last 256 bytes plus one byte in every 4 KiB. */
static void TU_UNUSED tu_fill_pages(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    if (n <= 4096) {
        tu_fill(p, n, seed);
        return;
    }
    tu_fill(b, 256, seed);
    tu_fill(b + n - 256, 256, seed + 1);
    for (size_t o = 4096; o < n - 256; o += 4096)
        b[o] = (unsigned char)tu_splitmix(seed + o);
}

static bool TU_UNUSED tu_check_pages(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    if (n <= 4096)
        return tu_check(p, n, seed) == (size_t)-1;
    if (tu_check(b, 256, seed) != (size_t)-1 || tu_check(b + n - 256, 256, seed + 1) != (size_t)-1)
        return false;
    for (size_t o = 4096; o < n - 256; o += 4096)
        if (b[o] != (unsigned char)tu_splitmix(seed + o))
            return false;
    return true;
}

static bool TU_UNUSED tu_all_zero(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static inline bool tu_aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

#endif /* MMPOOL_TU_PATTERN_H */
