/*
 * server - worker threads handling simulated HTTP requests.
 * Per request (content derived from the request number only): the raw
 * request is "received" into a parse buffer grown by doubling realloc;
 * the request line and each header are copied out as strings (name, value,
 * lower-cased name) into an array grown by realloc; a POST/PUT body is
 * copied; the response is built by appending pieces with an exact-size
 * realloc per append (the naive string builder found in real servers).
 * Objects of longer lifetimes: per-worker keep-alive sessions that live for
 * 5..20 requests, and a shared cache (striped locks) whose entries are
 * inserted by one worker and replaced, evicted or freed by another. Every
 * request also sends a log record to a logger thread, which frees it.
 * THREADS = workers (plus the logger thread).
 */
#include "common.h"

#define BASE_REQUESTS 160e3
#define NBUCKETS 4096
#define NSTRIPES 64
#define MAX_CHAIN 4
#define KEYSPACE 20000
#define SESSIONS 8
#define STRIDE 64

/* ------------------------------------------------------------ shared cache */

struct entry {
    struct entry *next;
    char *key;
    uint64_t id;
    size_t vlen;
    unsigned char *val;
};

static struct entry *buckets[NBUCKETS];
static pthread_mutex_t stripes[NSTRIPES];

static uint64_t
entry_free(struct entry *e)
{
    pat_verify("server cache value", e->val, e->vlen, e->id, STRIDE);
    uint64_t h = obj_hash(e->id, e->vlen) + fnv1a(e->key, strlen(e->key));
    free(e->val);
    free(e->key);
    free(e);
    return h;
}

/* ------------------------------------------------------------- log queue */

struct logrec {
    struct logrec *next;
    uint64_t hash;
    size_t len;
    char text[];
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct logrec *head;
    int done;
} logq = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0 };

static uint64_t log_sum, log_count;

static void *
logger(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&logq.mu);
        while (!logq.head && !logq.done)
            pthread_cond_wait(&logq.cv, &logq.mu);
        struct logrec *list = logq.head;
        int done = logq.done;
        logq.head = NULL;
        pthread_mutex_unlock(&logq.mu);
        while (list) {
            struct logrec *next = list->next;
            if (list->len != strlen(list->text) || fnv1a(list->text, list->len) != list->hash)
                die("server: log record %p corrupted", (void *)list);
            log_sum += list->hash;
            log_count++;
            free(list);
            list = next;
        }
        if (done)
            return NULL;
    }
}

static void
log_push(const char *text)
{
    size_t len = strlen(text);
    struct logrec *r = xmalloc("server log", sizeof *r + len + 1);
    memcpy(r->text, text, len + 1);
    r->len = len;
    r->hash = fnv1a(text, len);
    pthread_mutex_lock(&logq.mu);
    r->next = logq.head;
    logq.head = r;
    pthread_cond_signal(&logq.cv);
    pthread_mutex_unlock(&logq.mu);
}

/* --------------------------------------------------------------- strings */

struct sb { /* parse buffer: grows by doubling */
    char *p;
    size_t len, cap;
};

static void
sb_append(struct sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        b->p = check_new("server buffer", realloc(b->p, cap), cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* response: exact-size realloc per append */
static void
resp_append(char **resp, size_t *len, const char *s, size_t n)
{
    *resp = check_new("server response", realloc(*resp, *len + n + 1), *len + n + 1);
    memcpy(*resp + *len, s, n);
    *len += n;
    (*resp)[*len] = 0;
}

static char *
xstrndup(const char *s, size_t n)
{
    char *d = xmalloc("server string", n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void
rand_text(rng_t *r, char *out, size_t n)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    for (size_t i = 0; i < n; i++)
        out[i] = alpha[rng_below(r, 64)];
    out[n] = 0;
}

/* ------------------------------------------------------------- a request */

struct hdr {
    char *name, *lname, *value;
};

struct session {
    unsigned char *p;
    size_t n;
    uint64_t key;
    int left;
};

struct worker {
    struct bench_worker b;
    uint64_t hits;
    struct session sess[SESSIONS];
};

static void
handle(struct worker *w, uint64_t reqid)
{
    rng_t r = rng_seed(0x73727672ULL ^ (reqid * 0x9e3779b97f4a7c15ULL));
    char line[256], val[160];

    /* 1. receive the request into a growing buffer */
    struct sb in = { 0 };
    uint64_t m = rng_below(&r, 10);
    const char *method = m < 6 ? "GET" : m < 9 ? "POST" : "PUT";
    unsigned item = (unsigned)rng_below(&r, KEYSPACE);
    int n = snprintf(line, sizeof line, "%s /api/v1/items/%u?q=%llx HTTP/1.1\r\n", method, item,
                     (unsigned long long)rng_next(&r));
    sb_append(&in, line, (size_t)n);
    n = snprintf(line, sizeof line, "Host: example.com\r\nUser-Agent: bench/1.0\r\n");
    sb_append(&in, line, (size_t)n);
    int nh = (int)rng_range(&r, 5, 25);
    for (int i = 0; i < nh; i++) {
        rand_text(&r, val, rng_range(&r, 8, 120));
        n = snprintf(line, sizeof line, "X-Hdr-%d: %s\r\n", i, val);
        sb_append(&in, line, (size_t)n);
    }
    size_t body_len = m < 6 ? 0 : rng_range(&r, 1, 4096);
    n = snprintf(line, sizeof line, "Content-Length: %zu\r\n\r\n", body_len);
    sb_append(&in, line, (size_t)n);
    for (size_t done = 0; done < body_len;) {
        size_t k = body_len - done < 100 ? body_len - done : 100;
        rand_text(&r, val, k);
        sb_append(&in, val, k);
        done += k;
    }

    /* 2. parse: strings for the request line and every header */
    char *p = in.p;
    char *sp1 = strchr(p, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2)
        die("server: request %llu: bad request line", (unsigned long long)reqid);
    char *meth = xstrndup(p, (size_t)(sp1 - p));
    char *path = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    char *q = strchr(path, '?');
    char *key = xstrndup(path, q ? (size_t)(q - path) : strlen(path));
    p = strstr(p, "\r\n") + 2;
    struct hdr *hs = NULL;
    size_t nhdr = 0, cap = 0;
    while (p[0] != '\r') {
        char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
        if (!colon || !eol || colon > eol)
            die("server: request %llu: bad header", (unsigned long long)reqid);
        if (nhdr == cap) {
            cap = cap ? cap * 2 : 4;
            hs = check_new("server headers", realloc(hs, cap * sizeof *hs), cap * sizeof *hs);
        }
        struct hdr *h = &hs[nhdr++];
        h->name = xstrndup(p, (size_t)(colon - p));
        h->value = xstrndup(colon + 2, (size_t)(eol - colon - 2));
        h->lname = xstrndup(p, (size_t)(colon - p));
        for (char *c = h->lname; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        p = eol + 2;
    }
    p += 2;
    char *body = NULL;
    if (body_len) {
        if (strlen(p) != body_len)
            die("server: request %llu: body length %zu, expected %zu", (unsigned long long)reqid,
                strlen(p), body_len);
        body = xstrndup(p, body_len);
    }

    /* 3. build the response by exact-size appends */
    char *resp = NULL;
    size_t rlen = 0;
    resp_append(&resp, &rlen, "HTTP/1.1 200 OK\r\n", 17);
    for (size_t i = 0; i < nhdr; i += 3) {
        n = snprintf(line, sizeof line, "X-Echo-%s: %016llx\r\n", hs[i].lname,
                     (unsigned long long)fnv1a(hs[i].value, strlen(hs[i].value)));
        resp_append(&resp, &rlen, line, (size_t)n);
    }
    n = snprintf(line, sizeof line, "\r\n{\"method\":\"%s\",\"item\":\"%s\",\"fields\":[", meth, key);
    resp_append(&resp, &rlen, line, (size_t)n);
    int nf = (int)rng_range(&r, 10, 100);
    for (int i = 0; i < nf; i++) {
        const char *v = hs[rng_below(&r, nhdr)].value;
        n = snprintf(line, sizeof line, "{\"k\":%d,\"v\":\"%.*s\"},", i, (int)rng_range(&r, 1, 40), v);
        resp_append(&resp, &rlen, line, (size_t)n);
    }
    if (body) {
        n = snprintf(line, sizeof line, "{\"body\":%016llx}", (unsigned long long)fnv1a(body, body_len));
        resp_append(&resp, &rlen, line, (size_t)n);
    }
    resp_append(&resp, &rlen, "]}", 2);
    w->b.sum += fnv1a(resp, rlen);

    /* 4. shared cache: lookups copy a value, inserts replace/evict entries
     *    that other workers allocated */
    uint64_t op = rng_below(&r, 100);
    size_t b = (size_t)(fnv1a(key, strlen(key)) % NBUCKETS);
    pthread_mutex_t *mu = &stripes[b % NSTRIPES];
    if (op < 30) {
        unsigned char *copy = NULL;
        size_t clen = 0;
        uint64_t cid = 0;
        pthread_mutex_lock(mu);
        for (struct entry *e = buckets[b]; e; e = e->next)
            if (strcmp(e->key, key) == 0) {
                clen = e->vlen;
                cid = e->id;
                copy = xmalloc("server cache copy", clen);
                memcpy(copy, e->val, clen);
                break;
            }
        pthread_mutex_unlock(mu);
        if (copy) {
            pat_verify("server cache copy", copy, clen, cid, STRIDE);
            w->hits++;
            free(copy);
        }
    } else if (op < 40) {
        struct entry *e = xmalloc("server entry", sizeof *e);
        e->key = xstrndup(key, strlen(key));
        e->id = reqid;
        e->vlen = rng_range(&r, 64, 2048);
        e->val = xmalloc("server cache value", e->vlen);
        pat_fill(e->val, e->vlen, e->id, STRIDE);
        struct entry *dead = NULL;
        pthread_mutex_lock(mu);
        struct entry **pp = &buckets[b];
        size_t len = 0;
        while (*pp) {
            struct entry *x = *pp;
            if (strcmp(x->key, key) == 0 || len + 1 >= MAX_CHAIN) {
                *pp = x->next; /* replaced or evicted */
                x->next = dead;
                dead = x;
            } else {
                pp = &x->next;
                len++;
            }
        }
        e->next = buckets[b];
        buckets[b] = e;
        pthread_mutex_unlock(mu);
        while (dead) {
            struct entry *next = dead->next;
            w->b.sum += entry_free(dead);
            dead = next;
        }
    }

    /* 5. keep-alive session state: lives for several requests */
    struct session *s = &w->sess[rng_below(&r, SESSIONS)];
    if (s->p && --s->left <= 0) {
        pat_verify("server session", s->p, s->n, s->key, STRIDE);
        w->b.sum += obj_hash(s->key, s->n);
        free(s->p);
        s->p = NULL;
    }
    if (!s->p) {
        s->n = rng_range(&r, 200, 600);
        s->key = reqid;
        s->left = (int)rng_range(&r, 5, 20);
        s->p = xmalloc("server session", s->n);
        pat_fill(s->p, s->n, s->key, STRIDE);
    }

    /* 6. log, then drop the request */
    snprintf(line, sizeof line, "%s %s 200 %zu", meth, path, rlen);
    log_push(line);
    for (size_t i = 0; i < nhdr; i++) {
        free(hs[i].name);
        free(hs[i].lname);
        free(hs[i].value);
    }
    free(hs);
    free(body);
    free(resp);
    free(key);
    free(path);
    free(meth);
    free(in.p);
}

static void *
run(void *arg)
{
    struct worker *w = arg;
    for (uint64_t id = w->b.lo; id < w->b.hi; id++)
        handle(w, id);
    for (int i = 0; i < SESSIONS; i++)
        if (w->sess[i].p) {
            struct session *s = &w->sess[i];
            pat_verify("server session", s->p, s->n, s->key, STRIDE);
            w->b.sum += obj_hash(s->key, s->n);
            free(s->p);
        }
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads;
    double scale;
    bench_args(argc, argv, &threads, &scale);
    uint64_t requests = scaled(BASE_REQUESTS, scale, 100);
    for (int i = 0; i < NSTRIPES; i++)
        pthread_mutex_init(&stripes[i], NULL);

    pthread_t log_tid;
    xpthread_create(&log_tid, logger, NULL);
    struct worker *ws = workers_new(threads, sizeof *ws, requests);
    workers_start(ws, threads, sizeof *ws, run);
    uint64_t sum = workers_join(ws, threads, sizeof *ws);
    pthread_mutex_lock(&logq.mu);
    logq.done = 1;
    pthread_cond_signal(&logq.cv);
    pthread_mutex_unlock(&logq.mu);
    xpthread_join(log_tid);
    if (log_count != requests)
        die("server: logger saw %llu of %llu records", (unsigned long long)log_count,
            (unsigned long long)requests);
    sum += log_sum;
    for (size_t b = 0; b < NBUCKETS; b++)
        while (buckets[b]) {
            struct entry *e = buckets[b];
            buckets[b] = e->next;
            sum += entry_free(e);
        }
    free(ws);
    printf("server requests=%llu checksum=%016llx\n", (unsigned long long)requests,
           (unsigned long long)sum);
    return 0;
}
