/*
 * Helpers shared by the C tests of the HTTP sinks (OTLP, CloudWatch): a
 * manager around a built sink, the dead- and silent-endpoint flush checks,
 * the release of an unused sink, and a one-request loopback HTTP server
 * that keeps what it receives.
 */
#ifndef KPLM_TEST_HTTP_SUPPORT_H
#define KPLM_TEST_HTTP_SUPPORT_H

#include "test_support.h"

/* A started DETAILED manager whose sink posts to `endpoint` (a built-in HTTP
 * sink with that timeout and retry count), with the one observation
 * test_http_manager puts. Each test file writes its own. */
typedef kplm_manager *(*test_http_manager_fn)(const char *endpoint, double timeout_ms, uint32_t retries);

/* kplm_new (clock clk at 100 s, or the system clock if clk is NULL),
 * kplm_set_sink(sink), kplm_start, then puts UserRecordsPut 2.0 for stream
 * "orders", shard "shardId-1". */
kplm_manager *test_http_manager(const kplm_sink *sink, tclock *clk);

/* A flush to a port that refuses connections fails with KPLM_ESINK within a
 * 1 s timeout (3 retries) and keeps the data (a query still sees it; close
 * fails too). `path` follows "http://127.0.0.1:port" in the endpoint. */
void test_http_flush_to_dead_endpoint(test_http_manager_fn make, const char *path);

/* A flush to a listener that never answers fails with KPLM_ESINK after the
 * 0.3 s timeout (5 retries), not before 0.25 s nor after 1 s. */
void test_http_flush_to_silent_endpoint(test_http_manager_fn make, const char *path);

/* *s is a sink just built and never used: kplm_sink_release clears it, and
 * releasing it again, or NULL, does nothing. */
void test_release_unused_sink(kplm_sink *s);

/* A loopback HTTP server for one request: it reads the request, answers
 * "200 OK" with an empty body and closes. head and body hold what came. */
typedef struct {
    int listener;
    uint16_t port;
    pthread_t thread;
    char head[4096];    /* the request line and headers, NUL-terminated */
    char body[65536];   /* the first body bytes, NUL-terminated */
    size_t body_bytes;  /* how many body bytes came */
} test_http_server;

void test_http_server_start(test_http_server *sv);
/* Waits for the request to be served, then closes the listener. */
void test_http_server_join(test_http_server *sv);
/* Fails the test unless the head has the header line "name: value". */
#define CHECK_HEADER(sv, line)                                                      \
    CHECK_MSG(strstr((sv)->head, "\r\n" line "\r\n") != NULL || test_http_last_header((sv), line), \
              "no \"%s\" in the request head:\n%s", line, (sv)->head)
/* Whether `line` is the last header line of the head. */
int test_http_last_header(const test_http_server *sv, const char *line);

#endif
