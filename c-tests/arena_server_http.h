/* c-tests/arena_server_http.h -- the HTTP/1.1-ish protocol of
 * c-tests/arena_server.c (which includes it; see its header comment):
 * the limits of a request, the FNV-1a checksum of a reply's body (the
 * server computes it, the load generator checks it), and the server's
 * request parser, which copies everything into the request's child
 * arena. */
#ifndef MMPOOL_ARENA_SERVER_HTTP_H
#define MMPOOL_ARENA_SERVER_HTTP_H

#include "testutil.h"

/* GET /echo/<n>/<payload>: n <= MAX_REPEAT, 1..MAX_PAYLOAD characters */
#define MAX_PAYLOAD 64
#define MAX_REPEAT 4000

/* The checksum of a reply's body (X-Checksum): FNV-1a. */
static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* --- request parsing (everything in the request's child arena) ------ */

typedef struct header {
    char *name;           /* lower-cased copy */
    char *value;
    struct header *next;
} header_t;

typedef struct {
    char *method, *target, *version;
    header_t *headers;
    unsigned nheaders;
} request_t;

static char *arena_strndup(mmpool_arena_t *a, const char *s, size_t n)
{
    char *d = mmpool_arena_nalloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static const char *find_header(const request_t *r, const char *lname)
{
    for (const header_t *h = r->headers; h; h = h->next)
        if (strcmp(h->name, lname) == 0)
            return h->value;
    return NULL;
}

/* Parse the head [0, len) of a request (ends with \r\n\r\n). */
static bool parse_request(mmpool_arena_t *a, const char *src, size_t len, request_t *r)
{
    char *head = arena_strndup(a, src, len); /* a private copy (nalloc) */
    if (!head)
        return false;
    char *line_end = strstr(head, "\r\n");
    if (!line_end)
        return false;
    *line_end = 0;
    char *sp1 = strchr(head, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2)
        return false;
    r->method = arena_strndup(a, head, (size_t)(sp1 - head));
    r->target = arena_strndup(a, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    r->version = arena_strndup(a, sp2 + 1, strlen(sp2 + 1));
    if (!r->method || !r->target || !r->version)
        return false;
    header_t **tail = &r->headers;
    char *p = line_end + 2;
    while (*p && !(p[0] == '\r' && p[1] == '\n')) {
        char *e = strstr(p, "\r\n");
        char *colon = memchr(p, ':', e ? (size_t)(e - p) : 0);
        if (!e || !colon)
            return false;
        header_t *h = mmpool_arena_alloc(a, sizeof *h);
        if (!h)
            return false;
        h->name = arena_strndup(a, p, (size_t)(colon - p));
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        h->value = arena_strndup(a, v, (size_t)(e - v));
        if (!h->name || !h->value)
            return false;
        for (char *q = h->name; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q - 'A' + 'a');
        h->next = NULL;
        *tail = h;
        tail = &h->next;
        r->nheaders++;
        p = e + 2;
    }
    return true;
}

static bool payload_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

#endif /* MMPOOL_ARENA_SERVER_HTTP_H */
