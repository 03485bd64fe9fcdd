/* c-tests/api/aligned.c -- the aligned allocators' edge cases (glibc
 * semantics): posix_memalign, aligned_alloc, memalign (and
 * mmpool_aligned_alloc) at every alignment, bad and huge alignments,
 * valloc and pvalloc. */
#include "api.h"

static void test_posix_memalign_einval(void)
{
    static const size_t bad[] = {
        0, 1, 2, 4, 3, 12, 24, 40, 48, 96, 4095, 4097, 3 * MiB, SIZE_MAX,
        SIZE_MAX / 2, SIZE_MAX / 2 + 2, SIZE_MAX - 7, ((size_t)1 << 40) + 8,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(alignment %#zx) = %d, want EINVAL", bad[i], rc);
        CHECK(p == SENTINEL, "posix_memalign(alignment %#zx) wrote *p on failure", bad[i]);
        if (rc == 0 && p != SENTINEL)
            xfree(p);
    }
}

static void test_posix_memalign_enomem(void)
{
    static const size_t c[][2] = {
        {16, SIZE_MAX}, {16, PDMAX + 1}, {4096, SIZE_MAX - 4096}, {64, (size_t)1 << 50},
        {(size_t)1 << 62, 1}, {(size_t)1 << 63, 1}, {GiB, PDMAX}, {8, SIZE_MAX - 7},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, c[i][0], c[i][1]);
        CHECK(rc == ENOMEM, "posix_memalign(align %#zx, size %#zx) = %d, want ENOMEM",
              c[i][0], c[i][1], rc);
        CHECK(p == SENTINEL, "posix_memalign(align %#zx, size %#zx) wrote *p on failure",
              c[i][0], c[i][1]);
        if (rc == 0 && p != SENTINEL)
            xfree(p);
    }
}

static void test_posix_memalign_zero_size(void)
{
    for (size_t a = sizeof(void *); a <= 65536; a *= 2) {
        void *p = SENTINEL;
        int rc = xposix_memalign(&p, a, 0);
        CHECK(rc == 0, "posix_memalign(&p, %zu, 0) = %d", a, rc);
        if (rc == 0) {
            CHECK(p != SENTINEL && tu_aligned(p, a), "posix_memalign(&p, %zu, 0) -> %p", a, p);
            xfree(p);
        }
        p = xaligned_alloc(a, 0);
        CHECK(p != NULL && tu_aligned(p, a), "aligned_alloc(%zu, 0) -> %p", a, p);
        xfree(p);
    }
}

enum { AL_ALIGNED_ALLOC, AL_MEMALIGN, AL_POSIX_MEMALIGN, AL_MMPOOL, AL_N };
static const char *const al_names[AL_N] = {
    "aligned_alloc", "memalign", "posix_memalign", "mmpool_aligned_alloc"};

static void *al_alloc(int fn, size_t align, size_t size)
{
    void *p = NULL;
    switch (fn) {
    case AL_ALIGNED_ALLOC: return xaligned_alloc(align, size);
    case AL_MEMALIGN: return xmemalign(align, size);
    case AL_POSIX_MEMALIGN: return xposix_memalign(&p, align, size) == 0 ? p : NULL;
    default: return mmpool_aligned_alloc(align, size);
    }
}

/* Every power-of-two alignment from 8 bytes to 1 GiB, through each
 * aligned entry point, a few sizes each; then realloc and free. */
static void test_aligned_every_alignment(void)
{
    for (size_t a = 8; a <= GiB; a *= 2) {
        size_t sizes[4] = {1, 100, a, a + a / 2 + 3};
        for (int fn = 0; fn < AL_N; fn++) {
            for (int si = 0; si < 4; si++) {
                size_t n = sizes[si];
                if (n > 64 * MiB)
                    continue;
                void *p = al_alloc(fn, a, n);
                if (!p) {
                    FAILF("%s(align %zu, size %zu) returned NULL", al_names[fn], a, n);
                    return;
                }
                CHECK(tu_aligned(p, a), "%s(align %zu, size %zu) = %p misaligned",
                      al_names[fn], a, n, p);
                size_t u = xusable(p);
                CHECK(u >= n, "%s(align %zu, size %zu): usable %zu", al_names[fn], a, n, u);
                if (fn == AL_MMPOOL)
                    CHECK(mmpool_usable_size(p) >= n, "mmpool_usable_size understates");
                tu_fill_sparse(p, n, a + n);
                if (u <= 4 * MiB)       /* writing up to the usable size is safe */
                    memset((char *)p + n, 0xCC, u - n);
                /* grow and shrink the aligned block with realloc */
                size_t grow = n < 32 * MiB ? n * 2 + 1000 : n + 4096;
                void *q = (fn == AL_MMPOOL) ? mmpool_realloc(p, grow) : xrealloc(p, grow);
                if (!q) {
                    FAILF("realloc(%s block align %zu size %zu -> %zu) failed",
                          al_names[fn], a, n, grow);
                    xfree(p);
                    return;
                }
                size_t bad = tu_check_sparse(q, n, a + n);
                CHECK(bad == (size_t)-1, "realloc of %s(align %zu, size %zu) block lost "
                      "contents at %zu", al_names[fn], a, n, bad);
                void *r = xrealloc(q, n / 2 + 1);
                REQUIRE(r != NULL, "shrinking realloc failed");
                if (n <= 3 * 65536) {   /* dense pattern: any prefix checks */
                    bad = tu_check(r, n / 2 + 1, a + n);
                    CHECK(bad == (size_t)-1, "shrinking realloc of an aligned block lost "
                          "contents at %zu", bad);
                }
                if (fn == AL_MMPOOL)
                    mmpool_free(r);
                else
                    xfree(r);
                if (tu_case_failed)
                    return;
            }
        }
    }
}

/* Alignments that are not powers of two: glibc 2.36 rounds up for both
 * (aligned_alloc == memalign), glibc >= 2.38 fails aligned_alloc with
 * EINVAL.  Accept either, never a misaligned block. */
static void test_aligned_alloc_odd_alignment(void)
{
    static const size_t odd[] = {0, 3, 24, 48, 100, 1000, 4097};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        size_t a = odd[i], pow2 = 1;
        while (pow2 < a)
            pow2 *= 2;
        for (int fn = 0; fn < 2; fn++) {
            errno = 0;
            void *p = fn ? xmemalign(a, 64) : xaligned_alloc(a, 64);
            if (p) {
                CHECK(tu_aligned(p, pow2), "%s(%zu, 64) = %p not aligned to %zu",
                      fn ? "memalign" : "aligned_alloc", a, p, pow2);
                CHECK(xusable(p) >= 64, "usable size");
                memset(p, 3, 64);
                xfree(p);
            } else {
                CHECK(errno == EINVAL, "%s(%zu, 64) = NULL with errno %d, want EINVAL",
                      fn ? "memalign" : "aligned_alloc", a, errno);
            }
        }
    }
    for (size_t a = 1; a < 8; a *= 2) {
        void *p = xmemalign(a, 10);
        CHECK(p != NULL, "memalign(%zu, 10) returned NULL", a);
        xfree(p);
        p = xaligned_alloc(a, 10);
        CHECK(p != NULL, "aligned_alloc(%zu, 10) returned NULL", a);
        xfree(p);
    }
}

static void test_aligned_enomem(void)
{
    static const size_t c[][2] = {
        {64, SIZE_MAX}, {4096, PDMAX}, {64, SIZE_MAX - 32}, {4096, (size_t)1 << 50},
        {16, PDMAX + 1}, {GiB, SIZE_MAX - GiB},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        for (int fn = 0; fn < AL_N; fn++) {
            if (fn == AL_POSIX_MEMALIGN)
                continue;
            errno = 0;
            void *p = al_alloc(fn, c[i][0], c[i][1]);
            CHECK(p == NULL, "%s(%#zx, %#zx) succeeded", al_names[fn], c[i][0], c[i][1]);
            CHECK(errno == ENOMEM, "%s(%#zx, %#zx): errno %d, want ENOMEM", al_names[fn],
                  c[i][0], c[i][1], errno);
            if (p)
                xfree(p);
        }
    }
}

/* A power-of-two alignment too large to satisfy is ENOMEM in glibc
 * (EINVAL is only for alignments that are not powers of two). */
static void test_huge_alignment_enomem(void)
{
    for (int sh = 62; sh <= 63; sh++) {
        size_t a = (size_t)1 << sh;
        errno = 0;
        void *p = xmemalign(a, 48);
        CHECK(p == NULL && errno == ENOMEM, "memalign(1<<%d, 48) = %p errno %d, want ENOMEM",
              sh, p, errno);
        errno = 0;
        p = xaligned_alloc(a, 48);
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(1<<%d, 48) = %p errno %d, "
              "want ENOMEM", sh, p, errno);
    }
}

static void test_valloc_page_aligned(void)
{
    size_t pg = page_size();
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 65536 + 1, 3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = xvalloc(sizes[i]);
        check_block(p, sizes[i], pg, "valloc");
        if (!p)
            return;
        tu_fill(p, xusable(p), 4);
        void *q = xrealloc(p, sizes[i] + 5000);
        REQUIRE(q != NULL, "realloc of a valloc block");
        CHECK(tu_check(q, sizes[i], 4) == (size_t)-1, "realloc of valloc block lost data");
        xfree(q);
    }
}

static void test_pvalloc_rounds_to_pages(void)
{
    size_t pg = page_size();
    static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 65536 + 1, 3 * MiB + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        size_t rounded = (n + pg - 1) / pg * pg;
        void *p = xpvalloc(n);
        check_block(p, rounded, pg, "pvalloc (rounded size)");
        if (!p)
            return;
        size_t u = xusable(p);
        tu_fill(p, u, 5);
        CHECK(tu_check(p, u, 5) == (size_t)-1, "pvalloc block");
        xfree(p);
    }
    void *p = xpvalloc(0);
    CHECK(p != NULL && tu_aligned(p, pg), "pvalloc(0) = %p", p);
    xfree(p);
}

static void test_valloc_pvalloc_enomem(void)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4094, SIZE_MAX - 8192, PDMAX + 1,
                                   (size_t)1 << 50};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        void *p = xvalloc(sizes[i]);
        CHECK(p == NULL && errno == ENOMEM, "valloc(%#zx) = %p errno %d", sizes[i], p, errno);
        if (p)
            xfree(p);
        errno = 0;
        p = xpvalloc(sizes[i]);
        CHECK(p == NULL && errno == ENOMEM, "pvalloc(%#zx) = %p errno %d (page rounding "
              "must not wrap)", sizes[i], p, errno);
        if (p)
            xfree(p);
    }
}

int main(int argc, char **argv)
{
    api_init(argc, argv);
    RUN(posix_memalign_einval);
    RUN(posix_memalign_enomem);
    RUN(posix_memalign_zero_size);
    RUN(aligned_every_alignment);
    RUN(aligned_alloc_odd_alignment);
    RUN(aligned_enomem);
    RUN(huge_alignment_enomem);
    RUN(valloc_page_aligned);
    RUN(pvalloc_rounds_to_pages);
    RUN(valloc_pvalloc_enomem);
    return tu_finish();
}
