/* c-tests/tu/text.h -- text (see testutil.h, which includes it):
 * formatting (tu_fmt), a growable buffer (tu_buf), and reading what a
 * program printed (tu_excerpt, tu_count, tu_ends_with, tu_value_of,
 * tu_read_file). */
#ifndef MMPOOL_TU_TEXT_H
#define MMPOOL_TU_TEXT_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/text.h: it includes the tu/ headers in order"
#endif

/* ------------------------------------------------------------------ */
/* Text: formatting, and reading what a program printed.                */

/* A formatted string, malloc'ed (test processes are short-lived: callers
 * need not free it). */
static char *tu_fmt(const char *f, ...) __attribute__((format(printf, 1, 2), unused));
static char *tu_fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    if (s == NULL) {
        fprintf(stderr, "testutil: out of memory\n");
        exit(2);
    }
    return s;
}

/* A growable NUL-terminated byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} tu_buf;

static void TU_UNUSED tu_buf_add(tu_buf *b, const char *data, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = (char *)realloc(b->p, cap);
        if (p == NULL) {
            fprintf(stderr, "testutil: out of memory\n");
            exit(2);
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* At most `max` bytes of `s` on one line ('\n' shown as '|'), for
 * failure messages. */
static char TU_UNUSED *tu_excerpt(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        n = max;
    char *e = tu_fmt("%.*s%s", (int)n, s, strlen(s) > max ? "..." : "");
    for (char *p = e; *p; p++)
        if (*p == '\n')
            *p = '|';
    return e;
}

/* Number of (possibly overlapping) occurrences of `needle` in `hay`. */
static int TU_UNUSED tu_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool TU_UNUSED tu_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The value N of the first line `<key> N` of `text` (e.g. "line
 * leak_nodes 61"), or -1. */
static long TU_UNUSED tu_value_of(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
            return strtol(line + kl + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

/* The contents of a file (malloc'ed, "" when it cannot be read);
 * *exists tells whether it could be opened. */
static char TU_UNUSED *tu_read_file(const char *path, bool *exists)
{
    tu_buf b;
    memset(&b, 0, sizeof b);
    tu_buf_add(&b, "", 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *exists = fd >= 0;
    if (fd < 0)
        return b.p;
    char chunk[65536];
    ssize_t got;
    while ((got = read(fd, chunk, sizeof chunk)) > 0)
        tu_buf_add(&b, chunk, (size_t)got);
    close(fd);
    return b.p;
}

#endif /* MMPOOL_TU_TEXT_H */
