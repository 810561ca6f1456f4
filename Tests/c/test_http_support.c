/* See test_http_support.h. */
#include "test_http_support.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

kplm_manager *test_http_manager(const kplm_sink *sink, tclock *clk) {
    if (clk) tclock_set(clk, 100.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, sink));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "orders", "shardId-1", NULL));
    return m;
}

void test_http_flush_to_dead_endpoint(test_http_manager_fn make, const char *path) {
    uint16_t port;
    int holder = test_loopback_socket(SOCK_STREAM, 0, &port); /* bound, not listening: refused */
    char endpoint[96];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u%s", (unsigned)port, path);
    kplm_manager *m = make(endpoint, 1000.0, 3);
    double start = test_wall_now();
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    double took = test_wall_now() - start;
    CHECK_MSG(took < 1.5, "the flush took %.3f s with a 1 s timeout", took);
    /* The data is kept: the query still sees it and close fails too. */
    kplm_statistics st;
    CHECK_OK(kplm_query(m, "UserRecordsPut", "orders", "shardId-1", NULL, KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 1);
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    kplm_free(m);
    close(holder);
}

void test_http_flush_to_silent_endpoint(test_http_manager_fn make, const char *path) {
    uint16_t port;
    int listener = test_loopback_socket(SOCK_STREAM, 8, &port); /* listens, never accepts nor answers */
    char endpoint[96];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u%s", (unsigned)port, path);
    kplm_manager *m = make(endpoint, 300.0, 5);
    double start = test_wall_now();
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    double took = test_wall_now() - start;
    CHECK_MSG(took >= 0.25 && took < 1.0, "the flush took %.3f s with a 0.3 s timeout", took);
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    kplm_free(m);
    close(listener);
}

void test_release_unused_sink(kplm_sink *s) {
    CHECK(s->export_snapshots != NULL);
    kplm_sink_release(s);
    CHECK(test_sink_is_cleared(s));
    kplm_sink_release(s); /* a cleared sink: nothing to do */
    CHECK(test_sink_is_cleared(s));
    kplm_sink_release(NULL);
}

static void *serve_one(void *arg) {
    test_http_server *sv = arg;
    struct pollfd wait = {.fd = sv->listener, .events = POLLIN};
    if (poll(&wait, 1, 10000) != 1) return NULL; /* no request: head and body stay empty */
    int fd = accept(sv->listener, NULL, NULL);
    if (fd < 0) return NULL;
    static char buf[65536 + 4096 + 1];
    size_t n = 0;
    char *end = NULL;
    long length = -1;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) break;
        ssize_t got = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (got <= 0) break;
        n += (size_t)got;
        buf[n] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            size_t head = (size_t)(end - buf);
            memcpy(sv->head, buf, head < sizeof sv->head - 1 ? head : sizeof sv->head - 1);
            const char *cl = strstr(sv->head, "Content-Length: ");
            length = cl ? strtol(cl + 16, NULL, 10) : 0;
        }
        if (end && n >= (size_t)(end - buf) + 4 + (size_t)length) {
            sv->body_bytes = n - (size_t)(end - buf) - 4;
            size_t keep = sv->body_bytes < sizeof sv->body - 1 ? sv->body_bytes : sizeof sv->body - 1;
            memcpy(sv->body, end + 4, keep);
            sv->body[keep] = '\0';
            break;
        }
        if (n == sizeof buf - 1) break;
    }
    const char *answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)!send(fd, answer, strlen(answer), MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

void test_http_server_start(test_http_server *sv) {
    memset(sv, 0, sizeof *sv);
    sv->listener = test_loopback_socket(SOCK_STREAM, 8, &sv->port);
    CHECK(pthread_create(&sv->thread, NULL, serve_one, sv) == 0);
}

void test_http_server_join(test_http_server *sv) {
    CHECK(pthread_join(sv->thread, NULL) == 0);
    close(sv->listener);
}

int test_http_last_header(const test_http_server *sv, const char *line) {
    size_t n = strlen(sv->head), k = strlen(line);
    return n > k + 2 && memcmp(sv->head + n - k - 2, "\r\n", 2) == 0 && strcmp(sv->head + n - k, line) == 0;
}
