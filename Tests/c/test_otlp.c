/* The OTLP/HTTP built-in sink through the C ABI: config defaults, refused
 * configs, kplm_sink_release of an unused sink, a flush to a loopback HTTP
 * server, and flushes to a dead or silent endpoint (KPLM_ESINK within the
 * timeout, the data kept). */
#include "test_http_support.h"

#include <math.h>
#include <string.h>

static void config_init_defaults(void) {
    kplm_otlp_config c;
    memset(&c, 0xAB, sizeof c);
    kplm_otlp_config_init(&c);
    CHECK_U64(c.struct_size, sizeof(kplm_otlp_config));
    CHECK_STR(c.endpoint, "http://127.0.0.1:4318/v1/metrics");
    CHECK_DEQ(c.timeout_ms, 5000.0);
    CHECK_U64(c.max_retries, 3);
    CHECK_STR(c.service_name, "kplm");
    kplm_otlp_config_init(NULL); /* ignored */

    /* The defaults make a valid sink; NULL strings mean the defaults. */
    kplm_sink s;
    CHECK_OK(kplm_sink_otlp(&c, &s));
    CHECK(s.export_snapshots != NULL);
    kplm_sink_release(&s);
    CHECK(test_sink_is_cleared(&s));
    c.endpoint = NULL;
    c.service_name = NULL;
    c.max_retries = 0;
    CHECK_OK(kplm_sink_otlp(&c, &s));
    kplm_sink_release(&s);
}

/* kplm_sink_otlp(c) must fail with KPLM_EINVAL and clear *out. */
#define EXPECT_EINVAL(c) TEST_EXPECT_SINK_EINVAL(kplm_sink_otlp, (c))

static void bad_configs(void) {
    kplm_otlp_config c;
    kplm_sink s;
    CHECK_ST(kplm_sink_otlp(NULL, &s), KPLM_EINVAL);
    kplm_otlp_config_init(&c);
    CHECK_ST(kplm_sink_otlp(&c, NULL), KPLM_EINVAL);
    EXPECT_EINVAL(NULL);

    kplm_otlp_config_init(&c);
    /* Not a layout; not a whole number of fields (0, and newer layouts, are
     * accepted: Tests/abi). */
    c.struct_size = (uint32_t)(offsetof(kplm_otlp_config, service_name) + 4);
    EXPECT_EINVAL(&c);
    c.struct_size = sizeof c + 4;
    EXPECT_EINVAL(&c);

    const char *endpoints[] = {
        "ftp://127.0.0.1:4318/v1/metrics", /* not http(s) */
        "http://",                         /* no host */
        "http:///v1/metrics",
        "http://:4318/v1/metrics",
        "http://127.0.0.1:0/v1/metrics", /* bad ports */
        "http://127.0.0.1:65536/v1/metrics",
        "http://127.0.0.1:43x8/v1/metrics",
        "http://127.0.0.1:/v1/metrics",
        "127.0.0.1:4318/v1/metrics", /* no scheme */
        "",
        "http://user@127.0.0.1/v1/metrics",
        "http://127.0.0.1/v1 metrics",
        "http://[::1/v1/metrics",
        "http://\xc3/v1",                    /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++) {
        kplm_otlp_config_init(&c);
        c.endpoint = endpoints[i];
        EXPECT_EINVAL(&c);
    }

    double timeouts[] = {0.0, -1.0, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        kplm_otlp_config_init(&c);
        c.timeout_ms = timeouts[i];
        EXPECT_EINVAL(&c);
    }

    kplm_otlp_config_init(&c);
    c.service_name = "bad \xff";
    EXPECT_EINVAL(&c);

    /* Headers: "Name: value", no CR/LF or control characters, a token name,
     * not one the sink writes itself; header_count needs headers. */
    const char *bad_headers[] = {
        "X-Key: a\r\nInjected: 1", "X-Key: a\nb", "No colon", ": no name", "Bad Name: v",
        "Content-Length: 9", "host: h", "X-\xc3\xa9: v", "X-Key: \x01",
    };
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        kplm_otlp_config_init(&c);
        c.headers = &bad_headers[i];
        c.header_count = 1;
        EXPECT_EINVAL(&c);
    }
    kplm_otlp_config_init(&c);
    c.header_count = 1; /* headers NULL */
    EXPECT_EINVAL(&c);
    const char *twice[] = {"X-Key: 1", "x-key: 2"};
    kplm_otlp_config_init(&c);
    c.headers = twice;
    c.header_count = 2;
    EXPECT_EINVAL(&c);
    kplm_otlp_config_init(&c);
    c.compression = 3;
    EXPECT_EINVAL(&c);

    /* https (through libcurl, loaded at run time), headers and gzip. */
    const char *headers[] = {"X-Api-Key: s3cret", "Tenant:   t 1  "};
    kplm_otlp_config_init(&c);
    c.endpoint = "https://collector.example/v1/metrics";
    c.headers = headers;
    c.header_count = 2;
    c.compression = KPLM_OTLP_COMPRESSION_GZIP;
    CHECK_OK(kplm_sink_otlp(&c, &s));
    kplm_sink_release(&s);

    /* Edges that are accepted. */
    const char *good[] = {"http://[::1]:65535/v1/metrics", "HTTP://localhost", "http://h:1/a?b=c"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kplm_otlp_config_init(&c);
        c.endpoint = good[i];
        c.timeout_ms = 0.001;
        c.max_retries = UINT32_MAX;
        c.service_name = "";
        CHECK_OK(kplm_sink_otlp(&c, &s));
        kplm_sink_release(&s);
    }
}

static void release_unused_sink(void) {
    kplm_otlp_config c;
    kplm_otlp_config_init(&c);
    kplm_sink s;
    CHECK_OK(kplm_sink_otlp(&c, &s));
    test_release_unused_sink(&s);
}

/* A manager exporting to `endpoint` (test_http_manager_fn). */
static tclock clk;
static kplm_manager *manager_to(const char *endpoint, double timeout_ms, uint32_t retries) {
    kplm_otlp_config c;
    kplm_otlp_config_init(&c);
    c.endpoint = endpoint;
    c.timeout_ms = timeout_ms;
    c.max_retries = retries;
    kplm_sink s;
    CHECK_OK(kplm_sink_otlp(&c, &s));
    return test_http_manager(&s, &clk);
}

static void flush_to_dead_endpoint(void) { test_http_flush_to_dead_endpoint(manager_to, "/v1/metrics"); }

static void flush_to_silent_endpoint(void) { test_http_flush_to_silent_endpoint(manager_to, "/v1/metrics"); }

static void flush_to_server(void) {
    test_http_server sv;
    test_http_server_start(&sv);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/v1/metrics", (unsigned)sv.port);
    kplm_manager *m = manager_to(endpoint, 5000.0, 0);
    CHECK_OK(kplm_flush(m));
    test_http_server_join(&sv);
    CHECK(strncmp(sv.head, "POST /v1/metrics HTTP/1.1\r\n", 27) == 0);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%u\r\n", (unsigned)sv.port);
    CHECK_MSG(strstr(sv.head, host) != NULL, "no Host header in %s", sv.head);
    CHECK(strstr(sv.head, "\r\nContent-Type: application/x-protobuf") != NULL);
    CHECK(strstr(sv.head, "\r\nConnection: close") != NULL);
    CHECK(sv.body_bytes > 50);
    CHECK_OK(kplm_close(m)); /* nothing left to send: no request */
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(config_init_defaults);
    RUN(bad_configs);
    RUN(release_unused_sink);
    RUN(flush_to_dead_endpoint);
    RUN(flush_to_silent_endpoint);
    RUN(flush_to_server);
    return failures ? 1 : 0;
}
