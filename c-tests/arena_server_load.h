/* c-tests/arena_server_load.h -- the load generator of
 * c-tests/arena_server.c (see its header comment), which includes it
 * after the server: a second thread (client_main) opening P.conns
 * concurrent connections per wave to the server's port S.port, sending
 * P.rounds requests on each (some pipelined, some with big headers, some
 * asking for big replies, a few malformed), checking every reply byte for
 * byte, then closing them and waiting for the server to drain
 * (g_wave_waiting / g_wave_drained); at the end it wakes the server's
 * loop through S.wakefd.  It records what it did in C. */
#ifndef MMPOOL_ARENA_SERVER_LOAD_H
#define MMPOOL_ARENA_SERVER_LOAD_H

/* ================================================================== */
/* The load generator (second thread; plain malloc, blocking sockets)  */

typedef struct {
    volatile int done;
    uint64_t requests, bytes, bad_sent, closes_seen;
    int errors;
    char why[512];
    /* memory figures taken by the server between waves, read by us */
} client_t;

static client_t C;

static void client_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void client_error(const char *fmt, ...)
{
    if (C.errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(C.why, sizeof C.why, fmt, ap);
        va_end(ap);
    }
}

typedef struct {
    char *req;           /* request bytes */
    size_t req_len;
    char *want;          /* the exact expected reply */
    size_t want_len;
    bool server_closes;  /* the reply is followed by EOF */
} exchange_t;

static void exchange_free(exchange_t *e)
{
    free(e->req);
    free(e->want);
    e->req = e->want = NULL;
}

/* Build request #k of connection `ci` in wave `w`, and its reply. */
static void make_exchange(exchange_t *e, int w, int ci, int k, bool last, bool bad)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~";
    uint64_t seed = tu_splitmix(((uint64_t)w << 40) ^ ((uint64_t)ci << 20) ^ (uint64_t)k);
    uint64_t r1 = tu_splitmix(seed), r2 = tu_splitmix(seed + 1), r3 = tu_splitmix(seed + 2);
    char payload[MAX_PAYLOAD + 1];
    size_t plen = 1 + r1 % MAX_PAYLOAD;
    for (size_t i = 0; i < plen; i++)
        payload[i] = alphabet[tu_splitmix(seed + 10 + i) % (sizeof alphabet - 1)];
    payload[plen] = 0;
    unsigned n = (r2 % 16 == 0) ? 1 + (unsigned)(r2 >> 8) % (unsigned)P.max_n
                                : 1 + (unsigned)(r2 >> 8) % 40;
    size_t pad = (r3 % 8 == 0) ? 100 + (size_t)(r3 >> 8) % 6000 : 0;
    bool close = last && (r3 >> 32) % 4 == 0;
    char id[64];
    snprintf(id, sizeof id, "w%d-c%d-r%d-%08" PRIx64, w, ci, k, seed & 0xffffffffu);

    size_t cap = 512 + pad;
    e->req = malloc(cap);
    if (!e->req) {
        client_error("malloc");
        return;
    }
    int hl;
    if (bad) {
        static const char *bads[] = { "GET /echo/0/abc HTTP/1.1", "POST /echo/2/abc HTTP/1.1",
                                      "GET /nope HTTP/1.1", "GET /echo/5/a%20b HTTP/1.1",
                                      "GET /echo/99999/x HTTP/1.1", "GARBAGE" };
        hl = snprintf(e->req, cap, "%s\r\nHost: 127.0.0.1\r\n\r\n",
                      bads[(unsigned)(r1 >> 20) % (sizeof bads / sizeof bads[0])]);
    } else {
        hl = snprintf(e->req, cap,
                      "GET /echo/%u/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: %s\r\n"
                      "User-Agent: arena_server-load/1.0\r\n%s",
                      n, payload, id, close ? "Connection: close\r\n" : "");
        if (pad) {
            memcpy(e->req + hl, "X-Pad: ", 7);
            hl += 7;
            for (size_t i = 0; i < pad; i++)
                e->req[hl++] = alphabet[i % 26];
            memcpy(e->req + hl, "\r\n", 2);
            hl += 2;
        }
        memcpy(e->req + hl, "\r\n", 2);
        hl += 2;
    }
    e->req_len = (size_t)hl;

    if (bad) {
        static const char b[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n"
                                "Connection: close\r\n\r\nbad request\n";
        e->want = malloc(sizeof b);
        if (e->want)
            memcpy(e->want, b, sizeof b);
        e->want_len = sizeof b - 1;
        e->server_closes = true;
        return;
    }
    size_t blen = plen * n;
    char *body = malloc(blen + 1);
    e->want = malloc(blen + 600);
    if (!body || !e->want) {
        client_error("malloc");
        free(body);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        memcpy(body + (size_t)i * plen, payload, plen);
    int nh = 3 + (pad ? 1 : 0) + (close ? 1 : 0);
    int wl = snprintf(e->want, 600,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                      "X-Request-Id: %s\r\nX-Checksum: %016" PRIx64 "\r\nX-Headers: %d\r\n"
                      "Connection: %s\r\n\r\n",
                      blen, id, fnv1a(body, blen), nh, close ? "close" : "keep-alive");
    memcpy(e->want + wl, body, blen);
    free(body);
    e->want_len = (size_t)wl + blen;
    e->server_closes = close;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Read exactly e->want_len bytes and compare; then EOF if expected. */
static bool read_check(int fd, const exchange_t *e, char *buf)
{
    size_t got = 0;
    while (got < e->want_len) {
        ssize_t r = recv(fd, buf + got, e->want_len - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            client_error("reply cut after %zu of %zu bytes (%s) for request '%.60s'", got,
                         e->want_len, r < 0 ? strerror(errno) : "EOF", e->req);
            return false;
        }
        got += (size_t)r;
    }
    if (memcmp(buf, e->want, e->want_len) != 0) {
        size_t i = 0;
        while (buf[i] == e->want[i])
            i++;
        client_error("reply differs at byte %zu of %zu for request '%.60s': got '%.40s' want "
                     "'%.40s'",
                     i, e->want_len, e->req, buf + i, e->want + i);
        return false;
    }
    C.bytes += e->want_len;
    if (e->server_closes) {
        char x;
        ssize_t r = recv(fd, &x, 1, 0);
        if (r != 0) {
            client_error("expected EOF after a closing reply, got %zd", r);
            return false;
        }
        C.closes_seen++;
    }
    return true;
}

typedef struct {
    int fd;
    bool open;
} cconn_t;

/* Shared with the server loop: which wave the client is in, and whether
 * it waits for the server to drop to zero connections. */
static volatile int g_wave_waiting; /* wave number waiting for the drain, 0 = none */
static volatile int g_wave_drained;

static void *client_main(void *arg)
{
    (void)arg;
    size_t maxrep = (size_t)P.max_n * MAX_PAYLOAD * 2 + 4096;
    char *buf = malloc(maxrep);
    cconn_t *cc = calloc((size_t)P.conns, sizeof *cc);
    exchange_t *ex = calloc((size_t)P.conns * 2, sizeof *ex);
    if (!buf || !cc || !ex) {
        client_error("malloc");
        goto out;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(S.port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int w = 1; w <= P.waves && !C.errors; w++) {
        /* connect all: P.conns connections open at once */
        for (int i = 0; i < P.conns; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                client_error("socket: %s", strerror(errno));
                goto out;
            }
            struct timeval tv = { .tv_sec = 20, .tv_usec = 0 };
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
                client_error("connect: %s", strerror(errno));
                close(fd);
                goto out;
            }
            cc[i] = (cconn_t){ fd, true };
        }
        for (int k = 0; k < P.rounds && !C.errors; k++) {
            bool last = k == P.rounds - 1;
            /* send: every open connection gets its request(s) first... */
            for (int i = 0; i < P.conns; i++) {
                if (!cc[i].open)
                    continue;
                bool bad = last && i % 50 == 7;
                bool pipelined = !last && !bad && (i + k) % 5 == 0;
                make_exchange(&ex[2 * i], w, i, 2 * k, last && !pipelined, bad);
                if (pipelined)
                    make_exchange(&ex[2 * i + 1], w, i, 2 * k + 1, false, false);
                if (C.errors)
                    goto out;
                if (pipelined) { /* two requests in one write */
                    size_t n = ex[2 * i].req_len + ex[2 * i + 1].req_len;
                    char *two = malloc(n);
                    if (!two) {
                        client_error("malloc");
                        goto out;
                    }
                    memcpy(two, ex[2 * i].req, ex[2 * i].req_len);
                    memcpy(two + ex[2 * i].req_len, ex[2 * i + 1].req, ex[2 * i + 1].req_len);
                    bool sent = send_all(cc[i].fd, two, n);
                    free(two);
                    if (!sent) {
                        client_error("send: %s", strerror(errno));
                        goto out;
                    }
                    C.requests += 2;
                } else {
                    if (!send_all(cc[i].fd, ex[2 * i].req, ex[2 * i].req_len)) {
                        client_error("send: %s", strerror(errno));
                        goto out;
                    }
                    C.requests++;
                    C.bad_sent += bad;
                }
            }
            /* ...then every reply is read and checked */
            for (int i = 0; i < P.conns; i++) {
                if (!cc[i].open)
                    continue;
                for (int j = 0; j < 2; j++) {
                    exchange_t *e = &ex[2 * i + j];
                    if (!e->req)
                        continue;
                    if (cc[i].open && !read_check(cc[i].fd, e, buf))
                        goto out;
                    if (e->server_closes) {
                        close(cc[i].fd);
                        cc[i].open = false;
                    }
                    exchange_free(e);
                }
            }
        }
        /* close the rest and let the server drain */
        for (int i = 0; i < P.conns; i++)
            if (cc[i].open) {
                close(cc[i].fd);
                cc[i].open = false;
            }
        g_wave_drained = 0;
        __atomic_store_n(&g_wave_waiting, w, __ATOMIC_SEQ_CST);
        double t0 = tu_now();
        while (!__atomic_load_n(&g_wave_drained, __ATOMIC_SEQ_CST)) {
            if (tu_now() - t0 > 20) {
                client_error("wave %d: the server did not see every close within 20 s", w);
                goto out;
            }
            usleep(1000);
        }
        __atomic_store_n(&g_wave_waiting, 0, __ATOMIC_SEQ_CST);
    }
out:
    if (cc)
        for (int i = 0; i < P.conns; i++)
            if (cc[i].open)
                close(cc[i].fd);
    if (ex)
        for (int i = 0; i < 2 * P.conns; i++)
            exchange_free(&ex[i]);
    free(buf);
    free(cc);
    free(ex);
    __atomic_store_n(&C.done, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    ssize_t wr = write(S.wakefd, &one, sizeof one);
    (void)wr;
    return NULL;
}

#endif /* MMPOOL_ARENA_SERVER_LOAD_H */
