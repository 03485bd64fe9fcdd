/* c-tests/tu/rng.h -- a deterministic PRNG for test data, splitmix64
 * seeding a xorshift64* (see testutil.h, which includes it): tu_rng,
 * tu_rng_seed, tu_rand, tu_below, tu_splitmix, tu_shuffle. */
#ifndef MMPOOL_TU_RNG_H
#define MMPOOL_TU_RNG_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/rng.h: it includes the tu/ headers in order"
#endif

typedef struct { uint64_t s; } tu_rng;

static inline uint64_t tu_splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    r->s = tu_splitmix(seed) | 1;
}

static inline uint64_t tu_rand(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* uniform in [0, n) (n > 0) */
static inline uint64_t tu_below(tu_rng *r, uint64_t n)
{
    return tu_rand(r) % n;
}

/* Fisher-Yates shuffle of v[0..n) */
static void TU_UNUSED tu_shuffle(void **v, size_t n, tu_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)tu_below(r, i);
        void *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

#endif /* MMPOOL_TU_RNG_H */
