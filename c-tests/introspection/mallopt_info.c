/* c-tests/introspection/mallopt_info.c -- mallopt and malloc_info with
 * glibc's meanings (see introspection.h): defined by the allocator that
 * serves malloc, mallopt's return values and M_MMAP_THRESHOLD, and
 * malloc_info's XML agreeing with mallinfo2. */
#include "introspection.h"

/* ------------------------------------------------------------------ */
/* 8. mallopt, malloc_info                                               */

/* The glibc extensions must come from the allocator that serves malloc
 * (today mallopt and malloc_info are glibc's: they answer for glibc's
 * heap, which holds none of the program's blocks). */
static void test_mallopt_malloc_info_exported(void)
{
    static const char *syms[] = {"mallopt", "malloc_info", "mallinfo2", "mallinfo",
                                 "malloc_stats", "malloc_trim", "malloc_usable_size"};
    char owner[512];
    snprintf(owner, sizeof owner, "%s", tu_symbol_owner("malloc"));
    REQUIRE(owner[0] != 0, "cannot tell which object defines malloc");
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        const char *o = tu_symbol_owner(syms[i]);
        CHECK(strcmp(o, owner) == 0, "%s is defined by %s, malloc by %s", syms[i],
              o[0] ? o : "nobody", owner);
    }
}

/* mallopt's return value for each parameter and value: what glibc's own
 * mallopt returns (it returns 1 for most, including unknown parameters,
 * and 0 for an M_MXFAST out of range). */
static void mallopt_values_body(void)
{
    int (*g_mallopt)(int, int);
    *(void **)&g_mallopt = tu_glibc_sym("mallopt");
    REQUIRE(g_mallopt != NULL, "glibc's mallopt not found");
    static const struct {
        int param, value;
        const char *name;
    } c[] = {
        {M_MMAP_THRESHOLD, 1 << 20, "M_MMAP_THRESHOLD"}, {M_MMAP_THRESHOLD, 0, "M_MMAP_THRESHOLD"},
        {M_MMAP_THRESHOLD, 64 << 20, "M_MMAP_THRESHOLD"}, {M_MMAP_THRESHOLD, -1, "M_MMAP_THRESHOLD"},
        {M_TRIM_THRESHOLD, 1 << 20, "M_TRIM_THRESHOLD"}, {M_TRIM_THRESHOLD, -1, "M_TRIM_THRESHOLD"},
        {M_TOP_PAD, 64 << 10, "M_TOP_PAD"}, {M_TOP_PAD, 0, "M_TOP_PAD"},
        {M_MMAP_MAX, 65536, "M_MMAP_MAX"}, {M_MMAP_MAX, 0, "M_MMAP_MAX"},
        {M_MMAP_MAX, 65536, "M_MMAP_MAX"},
        {M_ARENA_MAX, 4, "M_ARENA_MAX"}, {M_ARENA_MAX, 0, "M_ARENA_MAX"},
        {M_ARENA_TEST, 2, "M_ARENA_TEST"}, {M_ARENA_TEST, 0, "M_ARENA_TEST"},
        {M_PERTURB, 0x55, "M_PERTURB"}, {M_PERTURB, 0, "M_PERTURB"},
        {M_MXFAST, 64, "M_MXFAST"}, {M_MXFAST, 0, "M_MXFAST"}, {M_MXFAST, 160, "M_MXFAST"},
        {M_MXFAST, 161, "M_MXFAST"}, {M_MXFAST, -1, "M_MXFAST"},
        {M_CHECK_ACTION, 3, "M_CHECK_ACTION"}, {M_CHECK_ACTION, 0, "M_CHECK_ACTION"},
        {12345, 1, "unknown 12345"}, {-100, 1, "unknown -100"}, {0, 0, "unknown 0"},
        {M_MMAP_THRESHOLD, 128 << 10, "M_MMAP_THRESHOLD"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        errno = ERRNO_MARK;
        int r = mallopt(c[i].param, c[i].value);
        int e = errno;
        errno = ERRNO_MARK;
        int g = g_mallopt(c[i].param, c[i].value);
        int ge = errno;
        note("mallopt(%s (%d), %d) = %d, glibc %d", c[i].name, c[i].param, c[i].value, r, g);
        CHECK(r == g, "mallopt(%s (%d), %d) = %d; glibc's returns %d", c[i].name, c[i].param,
              c[i].value, r, g);
        CHECK(e == ge, "mallopt(%s, %d) left errno %d; glibc's leaves %d", c[i].name,
              c[i].value, e, ge);
    }
}

static void test_mallopt_return_values(void)
{
    tu_case_in_child(mallopt_values_body, 10);
}

/* M_MMAP_THRESHOLD, the meaning this test pins down (glibc's, as far as
 * mallinfo2 shows it): once mallopt(M_MMAP_THRESHOLD, T) has returned 1,
 * a block requested with n >= T bytes is a large ("mmapped") block: it is
 * counted in hblks/hblkhd and not in uordblks; a block with n < T is
 * served from the heap: counted in uordblks, not in hblks/hblkhd.
 * (glibc compares its chunk size, n + 8 rounded up to 16, with T; an
 * implementation may round too, so the sizes here stay far from T.)
 * Setting T again takes effect for the blocks allocated after. */
static void mmap_threshold_body(void)
{
    REQUIRE(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt(M_MMAP_THRESHOLD, 1 MiB) != 1");
    struct mallinfo2 a = mi();
    void *below = xmalloc(200 * KiB);
    REQUIRE(below != NULL, "malloc(200 KiB)");
    memset(below, 1, 200 * KiB);
    struct mallinfo2 b = mi();
    note("threshold 1 MiB, malloc(200 KiB): hblks %zu -> %zu, hblkhd %zu -> %zu, uordblks %zu "
         "-> %zu", a.hblks, b.hblks, a.hblkhd, b.hblkhd, a.uordblks, b.uordblks);
    CHECK(b.hblks == a.hblks && b.hblkhd == a.hblkhd, "M_MMAP_THRESHOLD = 1 MiB: a 200 KiB "
          "block was counted as mmapped (hblks %zu -> %zu, hblkhd %zu -> %zu); want it below "
          "the threshold, in the heap", a.hblks, b.hblks, a.hblkhd, b.hblkhd);
    CHECK(d(b.uordblks, a.uordblks) >= (long long)(200 * KiB - SLACK),
          "M_MMAP_THRESHOLD = 1 MiB: a 200 KiB heap block raised uordblks by %lld only",
          d(b.uordblks, a.uordblks));
    void *above = xmalloc(2 * MiB);
    REQUIRE(above != NULL, "malloc(2 MiB)");
    struct mallinfo2 c = mi();
    CHECK(c.hblks == b.hblks + 1 && d(c.hblkhd, b.hblkhd) >= (long long)(2 * MiB),
          "M_MMAP_THRESHOLD = 1 MiB: a 2 MiB block is not counted as mmapped (hblks %zu -> "
          "%zu, hblkhd %zu -> %zu)", b.hblks, c.hblks, b.hblkhd, c.hblkhd);
    REQUIRE(mallopt(M_MMAP_THRESHOLD, 64 << 10) == 1, "mallopt(M_MMAP_THRESHOLD, 64 KiB) != 1");
    void *now_above = xmalloc(200 * KiB);
    REQUIRE(now_above != NULL, "malloc(200 KiB)");
    struct mallinfo2 e = mi();
    note("threshold 64 KiB, malloc(200 KiB): hblks %zu -> %zu, hblkhd %zu -> %zu", c.hblks,
         e.hblks, c.hblkhd, e.hblkhd);
    CHECK(e.hblks == c.hblks + 1 && d(e.hblkhd, c.hblkhd) >= (long long)(200 * KiB),
          "M_MMAP_THRESHOLD = 64 KiB: a 200 KiB block is not counted as mmapped (hblks %zu -> "
          "%zu, hblkhd %zu -> %zu)", c.hblks, e.hblks, c.hblkhd, e.hblkhd);
    xfree(below);
    xfree(above);
    xfree(now_above);
    struct mallinfo2 f = mi();
    CHECK(f.hblks == a.hblks && f.hblkhd == a.hblkhd, "after the frees: hblks %zu (was %zu), "
          "hblkhd %zu (was %zu)", f.hblks, a.hblks, f.hblkhd, a.hblkhd);
}

static void test_mallopt_mmap_threshold(void)
{
    tu_case_in_child(mmap_threshold_body, 10);
}

/* A minimal XML check: nested elements, quoted attributes, no text but
 * whitespace.  Returns NULL when well-formed, else what is wrong. */
static const char *xml_problem(const char *s, char *why, size_t whyn)
{
    char stack[32][32];
    int depth = 0, roots = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        if (*p != '<') {
            snprintf(why, whyn, "text outside a tag at offset %td: \"%.20s\"", p - s, p);
            return why;
        }
        p++;
        bool closing = *p == '/';
        if (closing)
            p++;
        char name[32];
        size_t n = 0;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (n > 0 && ((*p >= '0' && *p <= '9') || *p == '-')))
            if (n < sizeof name - 1)
                name[n++] = *p++;
            else
                p++;
        name[n] = 0;
        if (n == 0) {
            snprintf(why, whyn, "bad tag name at offset %td", p - s);
            return why;
        }
        if (closing) {
            if (*p != '>' || depth == 0 || strcmp(stack[depth - 1], name) != 0) {
                snprintf(why, whyn, "</%s> at offset %td does not close <%s>", name, p - s,
                         depth ? stack[depth - 1] : "(nothing)");
                return why;
            }
            depth--;
            p++;
            continue;
        }
        if (depth == 0 && roots++ > 0) {
            snprintf(why, whyn, "a second root element <%s>", name);
            return why;
        }
        for (;;) {
            while (*p == ' ' || *p == '\n')
                p++;
            if (*p == '/' && p[1] == '>') {
                p += 2;
                break;
            }
            if (*p == '>') {
                if (depth == 32) {
                    snprintf(why, whyn, "too deep");
                    return why;
                }
                snprintf(stack[depth++], sizeof stack[0], "%s", name);
                p++;
                break;
            }
            size_t an = 0;
            while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')
                p++, an++;
            if (an == 0 || *p != '=' || p[1] != '"') {
                snprintf(why, whyn, "bad attribute in <%s> at offset %td", name, p - s);
                return why;
            }
            p += 2;
            while (*p && *p != '"' && *p != '<')
                p++;
            if (*p != '"') {
                snprintf(why, whyn, "unterminated attribute value in <%s>", name);
                return why;
            }
            p++;
        }
    }
    if (depth != 0) {
        snprintf(why, whyn, "<%s> is never closed", stack[depth - 1]);
        return why;
    }
    if (roots != 1) {
        snprintf(why, whyn, "no root element");
        return why;
    }
    return NULL;
}

/* The value of attribute `attr` of the first element starting with
 * `prefix` at or after `from`; -1 when absent. */
static long long xml_attr(const char *from, const char *prefix, const char *attr)
{
    const char *e = strstr(from, prefix);
    if (!e)
        return -1;
    const char *end = strchr(e, '>');
    char key[40];
    snprintf(key, sizeof key, " %s=\"", attr);
    const char *a = strstr(e, key);
    if (!a || (end && a > end))
        return -1;
    return strtoll(a + strlen(key), NULL, 10);
}

static void malloc_info_body(void)
{
    static void *large[3], *small[100];
    for (int i = 0; i < 3; i++)
        large[i] = xmalloc(300 * KiB);
    for (int i = 0; i < 100; i++)
        small[i] = xmalloc(50 + (size_t)i * 10);
    FILE *fp = tmpfile();
    REQUIRE(fp != NULL, "tmpfile: %s", strerror(errno));
    static char fbuf[1 << 16];
    setvbuf(fp, fbuf, _IOFBF, sizeof fbuf); /* no allocation while it prints */
    struct mallinfo2 a = mi();
    errno = ERRNO_MARK;
    int rc = malloc_info(0, fp);
    int e = errno;
    struct mallinfo2 b = mi();
    fflush(fp);
    static char out[1 << 18];
    ssize_t n = pread(fileno(fp), out, sizeof out - 1, 0);
    fclose(fp);
    for (int i = 0; i < 3; i++)
        xfree(large[i]);
    for (int i = 0; i < 100; i++)
        xfree(small[i]);
    REQUIRE(rc == 0, "malloc_info(0, fp) = %d (errno %d), want 0", rc, e);
    REQUIRE(n > 0, "malloc_info(0, fp) wrote nothing");
    out[n] = 0;
    CHECK(strncmp(out, "<malloc version=\"", 17) == 0, "malloc_info output starts with "
          "\"%.30s\", not <malloc version=\"...\">", out);
    char why[200];
    const char *bad = xml_problem(out, why, sizeof why);
    CHECK(bad == NULL, "malloc_info output is not well-formed XML: %s", bad);
    CHECK(strstr(out, "<heap nr=\"") != NULL, "no <heap nr=\"...\"> element");
    /* the totals: after the last </heap> (at the top level) */
    const char *top = out, *h;
    while ((h = strstr(top, "</heap>")) != NULL)
        top = h + 7;
    long long mcount = xml_attr(top, "<total type=\"mmap\"", "count");
    long long msize = xml_attr(top, "<total type=\"mmap\"", "size");
    long long cur = xml_attr(top, "<system type=\"current\"", "size");
    note("malloc_info: mmap count %lld size %lld, system current %lld; mallinfo2 hblks %zu "
         "hblkhd %zu uordblks %zu arena %zu", mcount, msize, cur, a.hblks, a.hblkhd,
         a.uordblks, a.arena);
    REQUIRE(mcount >= 0 && msize >= 0, "no top-level <total type=\"mmap\" count=... size=...>");
    REQUIRE(cur >= 0, "no top-level <system type=\"current\" size=...>");
    CHECK(a.hblks == b.hblks && a.hblkhd == b.hblkhd, "mallinfo2 changed around malloc_info");
    CHECK(mcount == (long long)a.hblks && msize == (long long)a.hblkhd,
          "malloc_info: <total type=\"mmap\" count=\"%lld\" size=\"%lld\">, but mallinfo2 says "
          "hblks %zu, hblkhd %zu (3 blocks of 300 KiB live)", mcount, msize, a.hblks, a.hblkhd);
    CHECK(cur >= (long long)a.uordblks, "malloc_info: <system type=\"current\" size=\"%lld\"> "
          "is less than mallinfo2's uordblks (bytes in use) %zu", cur, a.uordblks);
}

static void test_malloc_info_xml(void)
{
    tu_case_in_child(malloc_info_body, 10);
}

/* options != 0: what glibc's does (it returns EINVAL, leaves errno alone
 * and writes nothing). */
static void malloc_info_options_body(void)
{
    int (*g_malloc_info)(int, FILE *);
    *(void **)&g_malloc_info = tu_glibc_sym("malloc_info");
    REQUIRE(g_malloc_info != NULL, "glibc's malloc_info not found");
    FILE *fp = tmpfile();
    REQUIRE(fp != NULL, "tmpfile");
    errno = ERRNO_MARK;
    int r = malloc_info(1, fp);
    int e = errno;
    fflush(fp);
    long wrote = ftell(fp);
    errno = ERRNO_MARK;
    int g = g_malloc_info(1, fp);
    int ge = errno;
    fflush(fp);
    long gwrote = ftell(fp) - wrote;
    fclose(fp);
    note("malloc_info(1, fp) = %d errno %d wrote %ld; glibc %d errno %d wrote %ld", r, e, wrote,
         g, ge, gwrote);
    CHECK(r == g && e == ge, "malloc_info(1, fp) = %d, errno %d; glibc's: %d, errno %d "
          "(%d = unchanged)", r, e, g, ge, ERRNO_MARK);
    CHECK(wrote == gwrote, "malloc_info(1, fp) wrote %ld bytes; glibc's writes %ld", wrote,
          gwrote);
}

static void test_malloc_info_bad_options(void)
{
    tu_case_in_child(malloc_info_options_body, 10);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    RUN(mallopt_malloc_info_exported);
    RUN(mallopt_return_values);
    RUN(mallopt_mmap_threshold);
    RUN(malloc_info_xml);
    RUN(malloc_info_bad_options);
    return tu_finish();
}
