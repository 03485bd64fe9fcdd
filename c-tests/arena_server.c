/* c-tests/arena_server.c -- "one pool per connection": a real loopback
 * server whose connections each live in their own mmpool arena.
 *
 * The server: a single-threaded epoll loop on 127.0.0.1 (port 0, read
 * back with getsockname).  Each accepted connection gets an arena
 * (mmpool_arena_create) holding its state and its read buffer, plus a
 * cleanup handler that closes the socket and counts the close; each
 * request gets a child arena (mmpool_arena_create_child) for the parsed
 * request (copies made with nalloc, a header list, a calloc'ed parse
 * state, a memalign'ed checksum state) and the reply (a body buffer that
 * grows; outgrown buffers that were large allocations are released at
 * once with mmpool_arena_free), destroyed when the reply is written.
 * Closing a connection is one mmpool_arena_destroy.
 *
 * Protocol (HTTP/1.1-ish, keep-alive, pipelining allowed):
 *   GET /echo/<n>/<payload> HTTP/1.1\r\n  headers...  \r\n\r\n
 * replies with the payload repeated n times, its FNV-1a checksum and the
 * request's X-Request-Id in the headers, `Connection: close` when asked;
 * anything malformed gets a 400 and the connection is closed.  The
 * protocol's limits, the body checksum and the request parser are in
 * arena_server_http.h.
 *
 * The load generator (arena_server_load.h): a second thread opening many
 * concurrent connections (200 in --smoke), several requests on each
 * (some pipelined, some with big headers that make the read buffer grow,
 * some with big replies), checking every reply byte for byte, then
 * closing.
 *
 * The server reports the memory of the pool (mmpool_arena_stats summed
 * over the live arenas, and VmRSS) before, during (peak) and after the
 * load, and checks that once every connection is closed no connection
 * arena is left and the bytes held are back to the listener's own.
 *
 *   arena_server [--smoke|--full] [case...]     (--smoke: a few seconds)
 *
 * Cases (testutil.h): listen, wave_N (each wave drained back to the
 * listener's memory), replies, server, cleanups_counted, request_arenas,
 * memory_returned.  The first case that needs the load runs it (once);
 * the others read what it recorded.  Report lines between the cases give
 * the memory figures.  tu_alarm bounds the run. */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "arena_server_http.h"

/* ------------------------------------------------------------------ */
/* Parameters                                                          */

typedef struct {
    int waves;      /* connect C, run R rounds, close; repeated */
    int conns;      /* concurrent connections per wave */
    int rounds;     /* requests per connection (some pipelined: +1) */
    int max_n;      /* largest repeat count of a big reply */
    int timeout_s;  /* alarm() */
} params_t;

static params_t P;

#define CONN_BLOCK 4096   /* connection arena block: large above ~1 KiB */
#define REQ_BLOCK 8192    /* request child arena block: large above ~2 KiB */
#define RBUF_INIT 384     /* read buffer: 384, 768 (bumped), 1536.. (large) */
#define RBUF_MAX (64 * 1024)
#define BODY_INIT 200     /* reply body: 200..1600 bumped, 3200.. large */

/* ================================================================== */
/* The server                                                          */

typedef struct conn conn_t;
struct conn {
    int fd;
    mmpool_arena_t *arena;    /* the connection's arena (this struct lives in it) */
    mmpool_arena_t *req;      /* the current request's child arena, or NULL */
    char *rbuf;               /* read buffer (in `arena`) */
    size_t rcap, rlen;
    char *out;                /* pending reply (in `req`) */
    size_t out_len, out_off;
    bool close_after;         /* close once the pending reply is written */
    bool want_out;            /* epoll interest is EPOLLOUT */
    unsigned served;
    conn_t *prev, *next;      /* live connections */
};

typedef struct {
    mmpool_arena_t *arena;    /* the listener's own arena */
    int lfd, epfd, wakefd;
    uint16_t port;
    conn_t *live;
    size_t nlive;
    /* counters */
    uint64_t accepted, closed_by_cleanup, requests_done, replies, bad_requests;
    uint64_t large_frees, bumped_declines, errors;
    char first_error[256];
} server_t;

static server_t S;

static void server_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void server_error(const char *fmt, ...)
{
    if (S.errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(S.first_error, sizeof S.first_error, fmt, ap);
        va_end(ap);
    }
}

/* Memory of every live arena. */
typedef struct {
    size_t arenas;        /* live arenas (listener, connections, requests) */
    size_t conn_arenas;
    size_t held;          /* sum of bytes_held */
    size_t requested;     /* sum of bytes_requested */
    size_t large;         /* sum of large_blocks */
} totals_t;

static void add_stats(totals_t *t, const mmpool_arena_t *a)
{
    mmpool_arena_stats_t s;
    mmpool_arena_stats(a, &s);
    t->arenas++;
    t->held += s.bytes_held;
    t->requested += s.bytes_requested;
    t->large += s.large_blocks;
}

static totals_t sample(void)
{
    totals_t t = { 0, 0, 0, 0, 0 };
    add_stats(&t, S.arena);
    for (conn_t *c = S.live; c; c = c->next) {
        t.conn_arenas++;
        add_stats(&t, c->arena);
        if (c->req)
            add_stats(&t, c->req);
    }
    return t;
}

/* Cleanup handler of a connection arena: runs at mmpool_arena_destroy. */
static void conn_cleanup(void *data)
{
    conn_t *c = data;
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        S.live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    S.nlive--;
    S.closed_by_cleanup++;
}

/* Cleanup handler of a request child arena. */
static void request_cleanup(void *data)
{
    (void)data;
    S.requests_done++;
}

/* Cleanup handler of the listener's arena. */
static void listener_cleanup(void *data)
{
    int *fd = data;
    close(*fd);
    *fd = -1;
}

/* Release an outgrown buffer of `a` whose size was `size`: a large
 * allocation must be accepted by mmpool_arena_free, a bumped one declined
 * (it goes when its arena does). */
static void release_buffer(mmpool_arena_t *a, void *p, size_t size, size_t block)
{
    int r = mmpool_arena_free(a, p);
    if (r == 0)
        S.large_frees++;
    else
        S.bumped_declines++;
    if (size > block / 4 && r != 0)
        server_error("mmpool_arena_free refused a large buffer of %zu bytes (block %zu)", size,
                     block);
    if (size + 64 <= block / 4 && r != -1)
        server_error("mmpool_arena_free accepted a bumped buffer of %zu bytes (block %zu)", size,
                     block);
}

static void conn_close(conn_t *c)
{
    /* destroys the request child too; conn_cleanup closes the socket */
    mmpool_arena_destroy(c->arena);
}

static void set_interest(conn_t *c, bool out)
{
    if (c->want_out == out)
        return;
    struct epoll_event ev = { .events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c };
    if (epoll_ctl(S.epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        server_error("epoll_ctl MOD: %s", strerror(errno));
    c->want_out = out;
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(S.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                server_error("accept: %s", strerror(errno));
            return;
        }
        mmpool_arena_t *a = mmpool_arena_create(CONN_BLOCK);
        conn_t *c = a ? mmpool_arena_calloc(a, sizeof *c) : NULL;
        char *rbuf = a ? mmpool_arena_nalloc(a, RBUF_INIT) : NULL;
        if (!c || !rbuf) {
            server_error("out of memory for a connection");
            mmpool_arena_destroy(a);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->arena = a;
        c->rbuf = rbuf;
        c->rcap = RBUF_INIT;
        if (!mmpool_arena_cleanup_add(a, conn_cleanup, c)) {
            server_error("cleanup_add failed");
            mmpool_arena_destroy(a);
            close(fd);
            continue;
        }
        c->next = S.live;
        if (S.live)
            S.live->prev = c;
        S.live = c;
        S.nlive++;
        S.accepted++;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            server_error("epoll_ctl ADD: %s", strerror(errno));
            conn_close(c);
        }
    }
}

/* --- the reply (everything in the request's child arena; the request
 * head is parsed by parse_request, in arena_server_http.h) ----------- */

typedef struct {
    uint64_t h;
    size_t n;
} __attribute__((aligned(64))) sum_state_t;

/* Build the reply for one request head into c->req; sets c->out. */
static void build_reply(conn_t *c, const char *src, size_t len)
{
    mmpool_arena_t *a = c->req;
    request_t *r = mmpool_arena_calloc(a, sizeof *r);
    if (!r) {
        server_error("calloc of the request failed");
        return;
    }
    bool good = parse_request(a, src, len, r) && strcmp(r->method, "GET") == 0 &&
                strcmp(r->version, "HTTP/1.1") == 0 && strncmp(r->target, "/echo/", 6) == 0;
    unsigned long n = 0;
    const char *payload = NULL;
    size_t plen = 0;
    if (good) {
        char *end;
        errno = 0;
        n = strtoul(r->target + 6, &end, 10);
        good = end != r->target + 6 && *end == '/' && errno == 0 && n >= 1 && n <= MAX_REPEAT;
        if (good) {
            payload = end + 1;
            plen = strlen(payload);
            good = plen >= 1 && plen <= MAX_PAYLOAD;
            for (size_t i = 0; good && i < plen; i++)
                good = payload_char(payload[i]);
        }
    }
    if (!good) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n"
                                  "Connection: close\r\n\r\nbad request\n";
        c->out = arena_strndup(a, bad, sizeof bad - 1);
        c->out_len = sizeof bad - 1;
        c->close_after = true;
        S.bad_requests++;
        if (!c->out)
            server_error("out of memory for a 400");
        return;
    }
    /* the body: a buffer that doubles; outgrown large ones are freed now */
    size_t cap = BODY_INIT, blen = 0;
    char *body = mmpool_arena_nalloc(a, cap);
    sum_state_t *st = mmpool_arena_memalign(a, sizeof *st, 64);
    if (!body || !st || ((uintptr_t)st & 63)) {
        server_error("body/state allocation failed or misaligned");
        return;
    }
    st->h = 0xcbf29ce484222325ull;
    st->n = 0;
    for (unsigned long i = 0; i < n; i++) {
        if (blen + plen > cap) {
            size_t ncap = cap * 2;
            while (ncap < blen + plen)
                ncap *= 2;
            char *nb = mmpool_arena_nalloc(a, ncap);
            if (!nb) {
                server_error("body growth to %zu failed", ncap);
                return;
            }
            memcpy(nb, body, blen);
            release_buffer(a, body, cap, REQ_BLOCK);
            body = nb;
            cap = ncap;
        }
        memcpy(body + blen, payload, plen);
        for (size_t k = 0; k < plen; k++) {
            st->h ^= (unsigned char)payload[k];
            st->h *= 0x100000001b3ull;
        }
        blen += plen;
        st->n++;
    }
    if (st->h != fnv1a(body, blen))
        server_error("body checksum mismatch (arena memory changed under us)");
    const char *id = find_header(r, "x-request-id");
    const char *conn_hdr = find_header(r, "connection");
    c->close_after = conn_hdr && strcasecmp(conn_hdr, "close") == 0;
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                      "X-Request-Id: %s\r\nX-Checksum: %016" PRIx64 "\r\nX-Headers: %u\r\n"
                      "Connection: %s\r\n\r\n",
                      blen, id ? id : "-", st->h, r->nheaders,
                      c->close_after ? "close" : "keep-alive");
    if (hl < 0 || (size_t)hl >= sizeof head) {
        server_error("reply head too long");
        return;
    }
    char *out = mmpool_arena_nalloc(a, (size_t)hl + blen);
    if (!out) {
        server_error("reply allocation failed");
        return;
    }
    memcpy(out, head, (size_t)hl);
    memcpy(out + hl, body, blen);
    release_buffer(a, body, cap, REQ_BLOCK);
    c->out = out;
    c->out_len = (size_t)hl + blen;
}

/* Write what is pending; true when the connection is still open. */
static bool flush_out(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_interest(c, true);
            return true;
        }
        if (w < 0 && errno == EINTR)
            continue;
        server_error("send: %s", w < 0 ? strerror(errno) : "0");
        conn_close(c);
        return false;
    }
    /* reply complete: the request's arena goes */
    mmpool_arena_destroy(c->req);
    c->req = NULL;
    c->out = NULL;
    c->out_len = c->out_off = 0;
    c->served++;
    S.replies++;
    if (c->close_after) {
        conn_close(c);
        return false;
    }
    set_interest(c, false);
    return true;
}

/* Serve every complete request in the read buffer, one at a time. */
static bool process(conn_t *c)
{
    while (!c->out) {
        char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (!end)
            return true;
        size_t len = (size_t)(end - c->rbuf) + 4;
        mmpool_arena_stats_t cs;
        mmpool_arena_stats(c->arena, &cs);
        if (cs.children != 0)
            server_error("connection arena has %zu children between requests", cs.children);
        c->req = mmpool_arena_create_child(c->arena, REQ_BLOCK);
        if (!c->req) {
            server_error("create_child failed");
            conn_close(c);
            return false;
        }
        if (!mmpool_arena_cleanup_add(c->req, request_cleanup, NULL))
            server_error("cleanup_add on a request failed");
        build_reply(c, c->rbuf, len);
        memmove(c->rbuf, c->rbuf + len, c->rlen - len);
        c->rlen -= len;
        if (!c->out) {
            conn_close(c);
            return false;
        }
        if (!flush_out(c))
            return false;
    }
    return true;
}

static void on_readable(conn_t *c)
{
    if (c->rlen == c->rcap) {
        if (c->rcap >= RBUF_MAX) { /* a head that never ends */
            server_error("request head over %d bytes", RBUF_MAX);
            conn_close(c);
            return;
        }
        char *nb = mmpool_arena_nalloc(c->arena, c->rcap * 2);
        if (!nb) {
            server_error("read buffer growth failed");
            conn_close(c);
            return;
        }
        memcpy(nb, c->rbuf, c->rlen);
        release_buffer(c->arena, c->rbuf, c->rcap, CONN_BLOCK);
        c->rbuf = nb;
        c->rcap *= 2;
    }
    ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (r > 0) {
        c->rlen += (size_t)r;
        process(c);
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        if (r < 0 && errno != ECONNRESET)
            server_error("recv: %s", strerror(errno));
        conn_close(c);
    }
}

/* ================================================================== */
/* The load generator (second thread; plain malloc, blocking sockets) */
/* is in arena_server_load.h, included here: it reads the server's    */
/* port and wake-up fd (S.port, S.wakefd).                            */

#include "arena_server_load.h"

/* ================================================================== */
/* The run: the listener, then the load (the first case that needs    */
/* them starts them); what the cases check is recorded here.          */

static const char *listen_error;  /* why there is no listener */
static bool listener_up;
static const char *load_error;    /* why the load could not run to its end */
static double t_start;
static totals_t base, peak, after;
static long rss_base, rss_peak, rss_after;
static size_t peak_conns;

typedef struct {
    bool seen;                    /* the server saw the wave drained */
    size_t conn_arenas, held;     /* then */
} wave_drain_t;

static wave_drain_t *drains;      /* [1..P.waves] */

static bool start_listener(void)
{
    t_start = tu_now();
    /* the listener and its own arena */
    S.arena = mmpool_arena_create(0);
    int *lfd_slot = S.arena ? mmpool_arena_alloc(S.arena, sizeof *lfd_slot) : NULL;
    if (!lfd_slot) {
        listen_error = "cannot create the listener's arena";
        return false;
    }
    S.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    *lfd_slot = S.lfd;
    int one = 1;
    setsockopt(S.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
    socklen_t sl = sizeof sa;
    if (S.lfd < 0 || bind(S.lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(S.lfd, 1024) != 0 || getsockname(S.lfd, (struct sockaddr *)&sa, &sl) != 0) {
        listen_error = tu_fmt("socket/bind/listen on 127.0.0.1:0: %s", strerror(errno));
        return false;
    }
    S.port = ntohs(sa.sin_port);
    if (!mmpool_arena_cleanup_add(S.arena, listener_cleanup, lfd_slot)) {
        listen_error = "cleanup_add";
        return false;
    }
    S.epfd = epoll_create1(EPOLL_CLOEXEC);
    S.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &S.lfd };
    struct epoll_event wev = { .events = EPOLLIN, .data.ptr = &S.wakefd };
    if (S.epfd < 0 || S.wakefd < 0 || epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.lfd, &lev) != 0 ||
        epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.wakefd, &wev) != 0) {
        listen_error = tu_fmt("epoll setup: %s", strerror(errno));
        return false;
    }
    listener_up = true;
    return true;
}

static bool listening(void)
{
    static int state = -1;
    if (state < 0)
        state = start_listener();
    return state == 1;
}

/* The load: the client thread against the event loop, memory sampled
 * all along. */
static void run_load(void)
{
    drains = calloc((size_t)P.waves + 1, sizeof *drains);
    if (!drains) {
        load_error = "load: calloc";
        return;
    }
    base = sample();
    rss_base = tu_rss_kib();
    printf("arena_server: before: live arenas %zu (connections %zu), held %zu B, "
           "requested %zu B, RSS %ld KiB\n",
           base.arenas, base.conn_arenas, base.held, base.requested, rss_base);

    pthread_t th;
    if (pthread_create(&th, NULL, client_main, NULL) != 0) {
        load_error = "load: pthread_create";
        return;
    }

    peak = base;
    rss_peak = rss_base;
    peak_conns = 0;
    uint64_t iter = 0;
    double last_rss = 0;
    int wave_reports = 0;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(S.epfd, evs, 256, 50);
        if (n < 0 && errno != EINTR) {
            load_error = tu_fmt("event_loop: epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &S.lfd) {
                accept_all();
            } else if (tag == &S.wakefd) {
                uint64_t v;
                ssize_t rd = read(S.wakefd, &v, sizeof v);
                (void)rd;
            } else {
                conn_t *c = tag;
                if (c->want_out) {
                    if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                        if (flush_out(c))
                            process(c);
                    }
                } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                    on_readable(c);
                }
            }
        }
        /* memory sampling: arena stats every iteration, RSS every 20 ms */
        iter++;
        totals_t t = sample();
        if (t.held > peak.held)
            peak = t;
        if (t.conn_arenas > peak_conns)
            peak_conns = t.conn_arenas;
        if (tu_now() - last_rss > 0.02) {
            long r = tu_rss_kib();
            if (r > rss_peak)
                rss_peak = r;
            last_rss = tu_now();
        }
        int waiting = __atomic_load_n(&g_wave_waiting, __ATOMIC_SEQ_CST);
        if (waiting && S.nlive == 0 && !__atomic_load_n(&g_wave_drained, __ATOMIC_SEQ_CST)) {
            totals_t a = sample();
            if (waiting > wave_reports) {
                wave_reports = waiting;
                if (waiting <= P.waves)
                    drains[waiting] = (wave_drain_t){ true, a.conn_arenas, a.held };
            }
            __atomic_store_n(&g_wave_drained, 1, __ATOMIC_SEQ_CST);
        }
        if (__atomic_load_n(&C.done, __ATOMIC_SEQ_CST) && (S.nlive == 0 || C.errors))
            break;
    }
    pthread_join(th, NULL);
    /* a failed client may leave connections: close them now */
    while (S.live)
        conn_close(S.live);

    after = sample();
    rss_after = tu_rss_kib();
    double secs = tu_now() - t_start;
    printf("arena_server: during (peak): live arenas %zu (connections %zu, max %zu at once), "
           "held %zu B (%.1f MiB), requested %zu B, large blocks %zu, RSS peak %ld KiB\n",
           peak.arenas, peak.conn_arenas, peak_conns, peak.held, (double)peak.held / 1048576.0,
           peak.requested, peak.large, rss_peak);
    printf("arena_server: after: live arenas %zu (connections %zu), held %zu B, requested %zu B, "
           "RSS %ld KiB\n",
           after.arenas, after.conn_arenas, after.held, after.requested, rss_after);
    printf("arena_server: %" PRIu64 " connections, %" PRIu64 " requests (%" PRIu64
           " bad), %.1f MiB of replies checked, %" PRIu64 " large buffers freed early, %" PRIu64
           " bumped ones declined, %" PRIu64 " epoll iterations, %.2f s\n",
           S.accepted, C.requests, C.bad_sent, (double)C.bytes / 1048576.0, S.large_frees,
           S.bumped_declines, iter, secs);
}

/* The listener is up and the load has run (once). */
static bool loaded(void)
{
    static bool done;
    if (!listening())
        return false;
    if (!done) {
        done = true;
        run_load();
    }
    return drains != NULL;
}

/* ================================================================== */
/* Cases                                                               */

static void test_listen(void)
{
    REQUIRE(listening(), "%s", listen_error);
    tu_note("127.0.0.1:%u (%s: %d waves x %d connections x %d rounds)", S.port,
            P.waves > 3 ? "full" : "smoke", P.waves, P.conns, P.rounds);
}

/* wave_N: once wave N's connections are closed, no connection arena is
 * left and the bytes held are the listener's own again. */
static void wave_drained(void *arg)
{
    int w = (int)(intptr_t)arg;
    REQUIRE(loaded(), "no load: %s", listen_error ? listen_error : load_error);
    REQUIRE(drains[w].seen, "wave %d never drained (the load stopped: %s)", w,
            C.errors ? C.why : load_error ? load_error : "?");
    CHECK(drains[w].conn_arenas == 0 && drains[w].held == base.held,
          "wave %d: connection arenas %zu, held %zu B, baseline %zu B", w, drains[w].conn_arenas,
          drains[w].held, base.held);
    tu_note("drained: connection arenas 0, held %zu B (= baseline)", drains[w].held);
}

/* Every reply byte-exact, every connection accepted, all of a wave's
 * connections open at once. */
static void test_replies(void)
{
    REQUIRE(loaded(), "no load: %s", listen_error ? listen_error : load_error);
    CHECK(load_error == NULL, "%s", load_error);
    CHECK(!C.errors, "%d client errors; first: %s", C.errors, C.why);
    uint64_t want_conns = (uint64_t)P.waves * (uint64_t)P.conns;
    CHECK(C.errors || S.accepted == want_conns, "connections: accepted %" PRIu64
          ", want %" PRIu64, S.accepted, want_conns);
    CHECK(C.errors || peak_conns >= (size_t)P.conns,
          "concurrency: at most %zu connections were open at once, want %d", peak_conns,
          P.conns);
    tu_note("%" PRIu64 " requests on %" PRIu64 " connections, every reply byte-exact",
            C.requests, S.accepted);
}

/* No server error, and mmpool_arena_free both took large buffers and
 * declined bumped ones. */
static void test_server(void)
{
    REQUIRE(loaded(), "no load: %s", listen_error ? listen_error : load_error);
    CHECK(!S.errors, "%" PRIu64 " server errors; first: %s", S.errors, S.first_error);
    CHECK(C.errors || (S.large_frees != 0 && S.bumped_declines != 0),
          "arena_free: expected both early large frees (%" PRIu64 ") and declined bumped "
          "frees (%" PRIu64 ")", S.large_frees, S.bumped_declines);
    tu_note("no errors");
}

static void test_cleanups_counted(void)
{
    REQUIRE(loaded(), "no load: %s", listen_error ? listen_error : load_error);
    CHECK(S.closed_by_cleanup == S.accepted,
          "%" PRIu64 " connection cleanups ran for %" PRIu64 " connections", S.closed_by_cleanup,
          S.accepted);
    tu_note("%" PRIu64 " connection cleanups for %" PRIu64 " connections", S.closed_by_cleanup,
            S.accepted);
}

static void test_request_arenas(void)
{
    REQUIRE(loaded(), "no load: %s", listen_error ? listen_error : load_error);
    CHECK(S.requests_done == S.replies + 0 && (C.errors || S.replies == C.requests),
          "%" PRIu64 " request cleanups, %" PRIu64 " replies, %" PRIu64 " requests",
          S.requests_done, S.replies, C.requests);
    tu_note("%" PRIu64 " request child arenas destroyed, one per reply", S.requests_done);
}

static void test_memory_returned(void)
{
    REQUIRE(loaded(), "no load: %s", listen_error ? listen_error : load_error);
    CHECK(after.conn_arenas == 0 && after.arenas == base.arenas && after.held == base.held &&
              after.requested == base.requested,
          "connection arenas %zu, arenas %zu (base %zu), held %zu B (base %zu B)",
          after.conn_arenas, after.arenas, base.arenas, after.held, base.held);
    tu_note("0 connection arenas left, held %zu B = the listener's own", after.held);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    if (tu_full)
        P = (params_t){ .waves = 10, .conns = 500, .rounds = 40, .max_n = MAX_REPEAT,
                        .timeout_s = 600 };
    else
        P = (params_t){ .waves = 3, .conns = 200, .rounds = 8, .max_n = 3000, .timeout_s = 60 };
    tu_alarm((unsigned)P.timeout_s);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(2 * P.conns + 64)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    RUN(listen);
    for (int w = 1; w <= P.waves; w++)
        tu_run_case_with(tu_fmt("wave_%d", w), wave_drained, (void *)(intptr_t)w);
    RUN(replies);
    RUN(server);
    RUN(cleanups_counted);
    RUN(request_arenas);
    RUN(memory_returned);

    if (listener_up) {
        mmpool_arena_destroy(S.arena); /* closes the listener (cleanup) */
        close(S.epfd);
        close(S.wakefd);
    }
    return tu_finish();
}
