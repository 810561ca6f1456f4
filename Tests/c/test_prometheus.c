/* The Prometheus built-in sink through the C ABI: config defaults, refused
 * configs, a real scrape of GET /metrics over a socket opened here (snake_case
 * summary families, milliseconds served as seconds), who owns
 * the sink (kplm_sink_release), and kplm_start failing with KPLM_ESINK when
 * the port is taken. */
#include "test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A port that was free a moment ago. */
static uint16_t free_port(void) {
    uint16_t port;
    close(test_loopback_socket(SOCK_STREAM, 4, &port));
    return port;
}

/* Sends `request` to 127.0.0.1:port and reads the whole response into buf
 * (NUL-terminated). Returns its length, or -1 if the connection failed
 * (errno kept). */
static long http_exchange(uint16_t port, const char *request, char *buf, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    size_t n = strlen(request);
    CHECK(send(fd, request, n, MSG_NOSIGNAL) == (ssize_t)n);
    size_t got = 0;
    for (;;) {
        CHECK_MSG(got < cap - 1, "response longer than %zu bytes", cap);
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        CHECK_MSG(r >= 0, "recv failed: %s", strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
    return (long)got;
}

static void config_init_defaults(void) {
    kplm_prometheus_config c;
    memset(&c, 0xAB, sizeof c);
    kplm_prometheus_config_init(&c);
    CHECK_U64(c.struct_size, sizeof(kplm_prometheus_config));
    CHECK_STR(c.address, "127.0.0.1");
    CHECK_U64(c.port, 9464);
    CHECK_STR(c.prefix, "kplm_");
    kplm_prometheus_config_init(NULL); /* ignored */

    /* The defaults make a valid sink; nothing listens before start. */
    kplm_sink s;
    CHECK_OK(kplm_sink_prometheus(&c, &s));
    CHECK(s.export_snapshots != NULL && s.user_data != NULL);
    kplm_sink_release(&s);
    CHECK(test_sink_is_cleared(&s));
}

/* kplm_sink_prometheus(c) must fail with KPLM_EINVAL and clear *out. */
#define EXPECT_EINVAL(c) TEST_EXPECT_SINK_EINVAL(kplm_sink_prometheus, (c))

static void bad_configs(void) {
    kplm_prometheus_config c;
    kplm_sink s;
    kplm_prometheus_config_init(&c);
    CHECK_ST(kplm_sink_prometheus(&c, NULL), KPLM_EINVAL);
    EXPECT_EINVAL(NULL);

    /* Not a layout; not a whole number of fields (0, and newer layouts, are
     * accepted: Tests/abi). */
    c.struct_size = sizeof c - 8;
    EXPECT_EINVAL(&c);
    c.struct_size = sizeof c + 4;
    EXPECT_EINVAL(&c);

    kplm_prometheus_config_init(&c);
    c.port = 0;
    EXPECT_EINVAL(&c);

    const char *addresses[] = {"", "local host", "a\tb", "\xff\xfe", "[::1]", "1.2.3.4:80"};
    for (size_t i = 0; i < sizeof addresses / sizeof addresses[0]; i++) {
        kplm_prometheus_config_init(&c);
        c.address = addresses[i];
        EXPECT_EINVAL(&c);
    }
    char long_text[300];
    memset(long_text, 'h', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    kplm_prometheus_config_init(&c);
    c.address = long_text;
    EXPECT_EINVAL(&c);
    kplm_prometheus_config_init(&c);
    c.prefix = long_text;
    EXPECT_EINVAL(&c);
    c.prefix = "bad\xc3";
    EXPECT_EINVAL(&c);

    /* NULL address and prefix mean the defaults; other valid edges. */
    const char *good[] = {"::1", "0.0.0.0", "localhost", "::"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kplm_prometheus_config_init(&c);
        c.address = good[i];
        c.port = 65535;
        c.prefix = "";
        CHECK_OK(kplm_sink_prometheus(&c, &s));
        kplm_sink_release(&s);
    }
    kplm_prometheus_config_init(&c);
    c.address = NULL;
    c.prefix = NULL;
    CHECK_OK(kplm_sink_prometheus(&c, &s));
    kplm_sink_release(&s);
}

static kplm_manager *start_with_sink(tclock *clk, uint16_t port, const char *prefix, kplm_status want_start) {
    kplm_prometheus_config c;
    kplm_prometheus_config_init(&c);
    c.port = port;
    c.prefix = prefix;
    kplm_sink s;
    CHECK_OK(kplm_sink_prometheus(&c, &s));
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_ST(kplm_start(m), want_start);
    return m;
}

static void scrape_over_http(void) {
    tclock clk;
    tclock_set(&clk, 100.0);
    uint16_t port = free_port();
    kplm_manager *m = start_with_sink(&clk, port, NULL, KPLM_OK);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.5, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_put(m, "BufferingTime", 250.0, NULL, NULL, NULL)); /* milliseconds */
    CHECK_OK(kplm_flush(m));
    tclock_advance(&clk, 1.0);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_flush(m));

    static char buf[1 << 16];
    CHECK(http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", buf, sizeof buf) > 0);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "status line: %.40s", buf);
    CHECK(strstr(buf, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
    CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
    const char *lines[] = {
        "\n# TYPE kplm_user_records_put summary\n",
        "\nkplm_user_records_put_count{stream=\"orders\",shard=\"shardId-1\"} 3\n"
        "kplm_user_records_put_sum{stream=\"orders\",shard=\"shardId-1\"} 6.5\n",
        "\n# TYPE kplm_user_records_put_min gauge\n"
        "kplm_user_records_put_min{stream=\"orders\",shard=\"shardId-1\"} 1\n",
        "\n# TYPE kplm_user_records_put_max gauge\n"
        "kplm_user_records_put_max{stream=\"orders\",shard=\"shardId-1\"} 1\n",
        "\n# TYPE kplm_buffering_time_seconds summary\n"
        "kplm_buffering_time_seconds_count 1\n"
        "kplm_buffering_time_seconds_sum 0.25\n",
        "\nkplm_buffering_time_seconds_max 0.25\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        CHECK_MSG(strstr(buf, lines[i]) != NULL, "line %s missing from:\n%s", lines[i], buf);
    /* No counters, no CamelCase names, no milliseconds. */
    CHECK(strstr(buf, " counter\n") == NULL && strstr(buf, "_total") == NULL);
    CHECK(strstr(buf, "UserRecordsPut_") == NULL && strstr(buf, "kplm_buffering_time_sum") == NULL);
    CHECK(strstr(buf, "# EOF") == NULL);

    CHECK(http_exchange(port, "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n", buf,
                        sizeof buf) > 0);
    CHECK(strstr(buf, "\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n") != NULL);
    /* OpenMetrics summaries have `_count` and `_sum` samples, no `_total`. */
    CHECK(strstr(buf, "\n# TYPE kplm_user_records_put summary\n"
                      "kplm_user_records_put_count{stream=\"orders\",shard=\"shardId-1\"} 3\n") != NULL);
    CHECK(strstr(buf, "_total") == NULL);
    size_t n = strlen(buf);
    CHECK(n > 6 && strcmp(buf + n - 6, "# EOF\n") == 0);

    CHECK(http_exchange(port, "GET /other HTTP/1.1\r\n\r\n", buf, sizeof buf) > 0);
    CHECK(strncmp(buf, "HTTP/1.1 404 ", 13) == 0);
    CHECK(http_exchange(port, "PUT /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", buf, sizeof buf) > 0);
    CHECK(strncmp(buf, "HTTP/1.1 405 ", 13) == 0);

    /* close stops the server: the port refuses connections. */
    CHECK_OK(kplm_close(m));
    errno = 0;
    CHECK(http_exchange(port, "GET /metrics HTTP/1.1\r\n\r\n", buf, sizeof buf) == -1);
    CHECK_U64(errno, ECONNREFUSED);
    kplm_free(m);
}

static void port_in_use_is_esink(void) {
    uint16_t port;
    int blocker = test_loopback_socket(SOCK_STREAM, 4, &port);
    tclock clk;
    tclock_set(&clk, 100.0);
    kplm_manager *m = start_with_sink(&clk, port, "x_", KPLM_ESINK);
    CHECK_ST(kplm_start(m), KPLM_ESINK);
    close(blocker);

    /* The manager stayed "new": once the port is free, start succeeds. */
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(m));
    static char buf[1 << 14];
    CHECK(http_exchange(port, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof buf) > 0);
    CHECK_MSG(strstr(buf, "\nx_a_count 1\n") != NULL, "%s", buf);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

static void release_unused_sink(void) {
    kplm_prometheus_config c;
    kplm_prometheus_config_init(&c);
    for (int i = 0; i < 1000; i++) {
        kplm_sink s;
        CHECK_OK(kplm_sink_prometheus(&c, &s));
        CHECK(s.user_data != NULL && s.export_snapshots != NULL);
        kplm_sink_release(&s);
        CHECK(test_sink_is_cleared(&s));
        kplm_sink_release(&s); /* cleared: ignored */
    }
    kplm_sink_release(NULL);
}

int main(void) {
    int failures = 0;
    RUN(config_init_defaults);
    RUN(bad_configs);
    RUN(scrape_over_http);
    RUN(port_in_use_is_esink);
    RUN(release_unused_sink);
    return failures ? 1 : 0;
}
