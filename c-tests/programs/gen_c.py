#!/usr/bin/python3
"""Generate a large, deterministic C program for the gcc case of
scripts/test-programs.sh.  Usage: gen_c.py NFUNCS > big.c

Each function mixes loops, switches, structs, arrays, inlining candidates
and string handling so that cc1 -O2 does real work (and allocates a lot);
main() calls everything and prints checksums, so the compiled program's
output is checked too.
"""
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(20240601)
out = []
w = out.append

w("""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

struct vec { int64_t x, y, z; };
struct node { struct node *next; uint32_t key; char name[24]; struct vec v; };

static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static struct node *push(struct node *head, uint32_t key) {
    struct node *n = malloc(sizeof *n);
    if (!n) abort();
    n->next = head;
    n->key = key;
    snprintf(n->name, sizeof n->name, "n%u", key);
    n->v.x = key; n->v.y = (int64_t)key * 3; n->v.z = -(int64_t)key;
    return n;
}

static uint64_t drain(struct node *head) {
    uint64_t h = 0;
    while (head) {
        struct node *nx = head->next;
        h = mix(h, head->key ^ (uint64_t)strlen(head->name) ^ (uint64_t)(head->v.x + head->v.y + head->v.z));
        free(head);
        head = nx;
    }
    return h;
}
""")

ops = ["+", "-", "^", "|", "&", "*"]
for i in range(n):
    k = rng.randint(3, 9)
    cases = rng.randint(4, 12)
    w(f"static uint64_t f{i}(uint64_t a, const char *s) {{")
    w(f"    uint64_t acc = a * {rng.randint(1, 1 << 30)}ULL + {i}ULL;")
    w(f"    int64_t arr[{k * 4}];")
    w(f"    struct vec v = {{ (int64_t)a, (int64_t)(a >> 3), {rng.randint(-999, 999)} }};")
    w(f"    for (int j = 0; j < {k * 4}; j++) arr[j] = (int64_t)(a {rng.choice(ops)} (uint64_t)j) % {rng.randint(7, 1000)};")
    w(f"    for (int j = 1; j < {k * 4}; j++) {{")
    w(f"        switch ((arr[j - 1] + j) % {cases}) {{")
    for c in range(cases):
        w(f"        case {c}: acc = mix(acc, (uint64_t)arr[j] {rng.choice(ops)} {rng.randint(1, 99999)}ULL); v.x += arr[j]; break;")
    w(f"        default: acc += (uint64_t)(j * {rng.randint(1, 77)}); v.y ^= acc; break;")
    w("        }")
    w("    }")
    w(f"    size_t len = strlen(s);")
    w(f"    for (size_t j = 0; j < len; j++) acc = mix(acc, (unsigned char)s[j] * {rng.randint(1, 255)}u);")
    if i > 0:
        callee = rng.randrange(i)
        w(f"    if ((acc & 3) == {rng.randint(0, 3)}) acc ^= f{callee}(acc >> 7, s + (len > 2 ? 2 : 0));")
    if i % 5 == 0:
        w(f"    {{ struct node *h = NULL; for (uint32_t j = 0; j < {rng.randint(10, 200)}u; j++) h = push(h, (uint32_t)(acc + j)); acc ^= drain(h); }}")
    if i % 7 == 0:
        w(f"    {{ char buf[64]; snprintf(buf, sizeof buf, \"%lu-%s-%d\", (unsigned long)acc, s, {i}); acc = mix(acc, strlen(buf)); }}")
    w(f"    return acc ^ (uint64_t)(v.x * 31 + v.y * 17 + v.z);")
    w("}")
    w("")

w("typedef uint64_t (*fn_t)(uint64_t, const char *);")
w("static const fn_t table[] = {")
for i in range(n):
    w(f"    f{i},")
w("};")
w("""
int main(void) {
    static const char *words[] = { "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf" };
    uint64_t total = 0;
    size_t nf = sizeof table / sizeof table[0];
    for (size_t i = 0; i < nf; i++) {
        uint64_t r = table[i](i * 2654435761u, words[i % 7]);
        total = mix(total, r);
        if (i % 50 == 0) printf("f%zu %016llx\\n", i, (unsigned long long)r);
    }
    printf("functions %zu total %016llx\\n", nf, (unsigned long long)total);
    return 0;
}""")
sys.stdout.write("\n".join(out) + "\n")
