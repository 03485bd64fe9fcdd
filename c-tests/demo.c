/*
 * demo: the default workload of `make run`.
 *
 * An ordinary C program that knows nothing of mmpool: it builds a word
 * frequency table over generated text with two threads (hash nodes from
 * malloc, words from strdup, arrays grown with realloc, a result sorted
 * with qsort), frees everything, and prints the top words. Run under
 * LD_PRELOAD=libmmpool.so, it ends by asking the pool, through the
 * symbols it exports, whether the pool served its blocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmpool.h"

#define NBUCKETS 4096
#define THREADS 2

struct node {
    char *word;
    long count;
    struct node *next;
};

struct table {
    struct node *bucket[NBUCKETS];
    long words;
};

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *syllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "po", "el"};

/* One generated word: 1 to 4 syllables, skewed so some words repeat a lot. */
static char *make_word(uint64_t *s) {
    char buf[16];
    size_t n = 1 + (rng_next(s) % 100 < 70 ? rng_next(s) % 2 : 2 + rng_next(s) % 2);
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) strcat(buf, syllables[rng_next(s) % (i == 0 ? 4 : 10)]);
    return strdup(buf);
}

static unsigned long hash(const char *w) {
    unsigned long h = 5381;
    while (*w) h = h * 33 + (unsigned char)*w++;
    return h % NBUCKETS;
}

static void add(struct table *t, char *word) {
    struct node **b = &t->bucket[hash(word)];
    for (struct node *n = *b; n; n = n->next)
        if (strcmp(n->word, word) == 0) {
            n->count++;
            free(word);
            return;
        }
    struct node *n = malloc(sizeof *n);
    n->word = word;
    n->count = 1;
    n->next = *b;
    *b = n;
    t->words++;
}

static void *count_words(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    struct table *t = calloc(1, sizeof *t);
    for (int i = 0; i < 1500000; i++) add(t, make_word(&seed));
    return t;
}

static int by_count(const void *a, const void *b) {
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(void) {
    pthread_t th[THREADS];
    struct table *tables[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, count_words, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], (void **)&tables[i]);

    /* Merge the other tables into the first; their nodes were allocated
     * by other threads, so these frees are cross-thread frees. */
    for (int i = 1; i < THREADS; i++)
        for (int b = 0; b < NBUCKETS; b++)
            for (struct node *n = tables[i]->bucket[b], *next; n; n = next) {
                next = n->next;
                struct node *m = tables[0]->bucket[b];
                while (m && strcmp(m->word, n->word) != 0) m = m->next;
                if (m) {
                    m->count += n->count;
                    free(n->word);
                    free(n);
                } else {
                    n->next = tables[0]->bucket[b];
                    tables[0]->bucket[b] = n;
                }
            }

    /* Collect into one array grown with realloc, and sort. */
    struct node **all = NULL;
    size_t len = 0, cap = 0;
    long total = 0;
    for (int b = 0; b < NBUCKETS; b++)
        for (struct node *n = tables[0]->bucket[b]; n; n = n->next) {
            if (len == cap) {
                cap = cap ? cap * 2 : 16;
                all = realloc(all, cap * sizeof *all);
            }
            all[len++] = n;
            total += n->count;
        }
    qsort(all, len, sizeof *all, by_count);
    printf("%ld words, %zu distinct; the most frequent:\n", total, len);
    for (size_t i = 0; i < 5 && i < len; i++) printf("  %-10s %ld\n", all[i]->word, all[i]->count);

    /* The proof: ask the pool (if this process runs on it) about our blocks. */
    __typeof__(mmpool_owns) *owns = (__typeof__(mmpool_owns) *)dlsym(RTLD_DEFAULT, "mmpool_owns");
    __typeof__(mmpool_version) *version = (__typeof__(mmpool_version) *)dlsym(RTLD_DEFAULT, "mmpool_version");
    size_t owned = 0, blocks = 0;
    if (owns) {
        for (size_t i = 0; i < len; i++) {
            owned += owns(all[i]) + owns(all[i]->word);
            blocks += 2;
        }
        owned += owns(all) + owns(tables[0]);
        blocks += 2;
    }

    for (size_t i = 0; i < len; i++) {
        free(all[i]->word);
        free(all[i]);
    }
    free(all);
    for (int i = 0; i < THREADS; i++) free(tables[i]);

    if (!owns) {
        printf("not running on mmpool (try: make run)\n");
        return 0;
    }
    printf("mmpool %s served this program: %zu of %zu live blocks checked were pool blocks\n", version(),
           owned, blocks);
    return owned == blocks ? 0 : 1;
}
