/* c-tests/random_ops.c -- a seeded random sequence of every operation
 * against a shadow model (single thread).
 *
 * Each live block is recorded with its request size, usable size and a
 * pattern seed.  After every operation the touched block is checked
 * (alignment, usable size, contents); every few thousand operations all
 * blocks are checked and the [p, p + usable) ranges are sorted to prove
 * that no two live blocks overlap. */
#include "testutil.h"

typedef struct {
    unsigned char *p;
    size_t size, usable, align;
    uint64_t seed;
} blk;

enum { SLOTS = 4096 };
static blk b[SLOTS];

static int cmp_blk(const void *x, const void *y)
{
    const blk *a = x, *c = y;
    return (uintptr_t)a->p < (uintptr_t)c->p ? -1 : (uintptr_t)a->p > (uintptr_t)c->p;
}

static size_t rnd_size(tu_rng *r)
{
    uint64_t d = tu_below(r, 1000);
    if (d < 600)
        return tu_below(r, 300);
    if (d < 900)
        return tu_below(r, 5000);
    if (d < 990)
        return tu_below(r, 300000);
    return tu_below(r, 6 * MiB);
}

static bool verify(const blk *x, const char *what)
{
    if (!tu_aligned(x->p, x->align)) {
        FAILF("%s: %p not aligned to %zu", what, (void *)x->p, x->align);
        return false;
    }
    size_t u = xusable(x->p);
    if (u < x->size) {
        FAILF("%s: usable %zu < size %zu", what, u, x->size);
        return false;
    }
    if (u != x->usable) {
        FAILF("%s: usable size of a live block changed from %zu to %zu", what, x->usable, u);
        return false;
    }
    size_t bad = tu_check_sparse(x->p, x->usable, x->seed);
    if (bad != (size_t)-1) {
        FAILF("%s: block %p (size %zu, usable %zu) corrupted at offset %zu", what,
              (void *)x->p, x->size, x->usable, bad);
        return false;
    }
    return true;
}

static void set(blk *x, void *p, size_t size, size_t align, uint64_t seed)
{
    x->p = p;
    x->size = size;
    x->align = align;
    x->usable = xusable(p);
    x->seed = seed;
    tu_fill_sparse(p, x->usable, seed);
}

static bool verify_all(long op)
{
    static blk sorted[SLOTS];
    int n = 0;
    for (int i = 0; i < SLOTS; i++)
        if (b[i].p) {
            if (!verify(&b[i], "periodic check"))
                return false;
            sorted[n++] = b[i];
        }
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_blk);
    for (int i = 1; i < n; i++)
        if (sorted[i - 1].p + sorted[i - 1].usable > sorted[i].p) {
            FAILF("op %ld: live blocks overlap: %p+%zu and %p", op, (void *)sorted[i - 1].p,
                  sorted[i - 1].usable, (void *)sorted[i].p);
            return false;
        }
    return true;
}

static void run(uint64_t seed, long ops)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    memset(b, 0, sizeof b);
    for (long op = 0; op < ops; op++) {
        blk *x = &b[tu_below(&r, SLOTS)];
        uint64_t s = tu_rand(&r);
        if (x->p) {
            if (!verify(x, "before op"))
                return;
            switch (tu_below(&r, 4)) {
            case 0:
            case 1:
                xfree(x->p);
                x->p = NULL;
                break;
            case 2: {
                size_t n = rnd_size(&r);
                void *q = xrealloc(x->p, n);
                if (n == 0 && q == NULL) {   /* realloc(p, 0) freed it */
                    x->p = NULL;
                    break;
                }
                if (!q) {
                    FAILF("realloc(%zu -> %zu) failed", x->size, n);
                    return;
                }
                size_t keep = n < x->size ? n : x->size;
                /* the preserved prefix is checked densely only when the
                 * old pattern was dense */
                if (x->usable <= 3 * 65536 && tu_check(q, keep, x->seed) != (size_t)-1) {
                    FAILF("realloc(%zu -> %zu) lost contents", x->size, n);
                    return;
                }
                set(x, q, n, n >= 16 ? 16 : 1, s);
                break;
            }
            default: {
                size_t n = rnd_size(&r);
                void *q = xreallocarray(x->p, n, 3);
                if (n == 0 && q == NULL) {   /* like realloc(p, 0) */
                    x->p = NULL;
                    break;
                }
                if (!q) {
                    FAILF("reallocarray(%zu, 3) failed", n);
                    return;
                }
                set(x, q, n * 3, n * 3 >= 16 ? 16 : 1, s);
                break;
            }
            }
            continue;
        }
        size_t n = rnd_size(&r);
        size_t align = n >= 16 ? 16 : 1;
        void *p = NULL;
        switch (tu_below(&r, 8)) {
        case 0:
            p = xcalloc(1, n);
            if (p && !tu_all_zero(p, n)) {
                FAILF("calloc(1, %zu) not zeroed", n);
                return;
            }
            break;
        case 1:
            align = (size_t)8 << tu_below(&r, 13);
            if (xposix_memalign(&p, align, n) != 0)
                p = NULL;
            break;
        case 2:
            align = (size_t)1 << tu_below(&r, 16);
            p = xaligned_alloc(align, n);
            break;
        case 3:
            p = mmpool_malloc(n);
            break;
        default:
            p = xmalloc(n);
            break;
        }
        if (!p) {
            FAILF("allocation of %zu (align %zu) failed", n, align);
            return;
        }
        set(x, p, n, align, s);
        if (op % 5000 == 4999 && !verify_all(op))
            return;
    }
    verify_all(ops);
    for (int i = 0; i < SLOTS; i++)
        if (b[i].p) {
            xfree(b[i].p);
            b[i].p = NULL;
        }
}

static void test_random_ops(void)
{
    int seeds = tu_full ? 8 : 1;
    long ops = tu_full ? 2000000 : 300000;
    for (int s = 0; s < seeds && !tu_case_failed; s++)
        run(0xC0FFEE + (uint64_t)s, ops);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(random_ops);
    return tu_finish();
}
