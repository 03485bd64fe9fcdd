#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mmpool.h"

struct request { const char *method, *path; size_t body_len; };

static int closed; /* the example checks itself: make test runs it */

static void log_close(void *conn_id) { printf("connection %d closed\n", (int)(intptr_t)conn_id); closed++; }

static void handle_connection(int id, const char *raw) {
    mmpool_arena_t *conn = mmpool_arena_create(0);        /* 0: 16 KiB blocks */
    mmpool_arena_cleanup_add(conn, log_close, (void *)(intptr_t)id);

    for (int r = 0; r < 3; r++) {                          /* three requests */
        mmpool_arena_t *req_pool = mmpool_arena_create_child(conn, 4096);
        char *line = mmpool_arena_nalloc(req_pool, strlen(raw) + 1);   /* bytes */
        strcpy(line, raw);
        struct request *req = mmpool_arena_calloc(req_pool, sizeof *req);
        req->method = strtok(line, " ");
        req->path = strtok(NULL, " ");
        char *body = mmpool_arena_alloc(req_pool, 1 << 20);            /* large */
        req->body_len = (size_t)snprintf(body, 1 << 20, "%s %s #%d", req->method, req->path, r);
        printf("reply: %s (%zu bytes)\n", body, req->body_len);
        if (mmpool_arena_free(req_pool, body) != 0) exit(1);   /* 0: given back now */
        mmpool_arena_destroy(req_pool);                    /* or reset and reuse */
    }

    mmpool_arena_stats_t st;
    mmpool_arena_stats(conn, &st);
    printf("arena holds %zu bytes in %zu block(s)\n", st.bytes_held, st.blocks);
    if (st.blocks != 1 || st.children != 0 || st.large_blocks != 0) exit(1);
    mmpool_arena_destroy(conn);   /* children, then log_close, then all memory */
}

int main(void) {
    handle_connection(1, "GET /index.html");
    return closed == 1 ? 0 : 1;   /* the cleanup ran exactly once */
}
