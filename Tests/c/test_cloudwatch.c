/* The CloudWatch built-in sink through the C ABI: config defaults, refused
 * configs, kplm_sink_release of an unused sink, the head of a signed request
 * to a loopback HTTP server, and flushes to a dead or a silent endpoint
 * (KPLM_ESINK within the timeout, the data kept). The round trip against a
 * real (moto) server is in Tests/python/test_cloudwatch.py. */
#include "test_http_support.h"

#include <math.h>
#include <string.h>

/* No region, profile or keys from the environment of whoever runs the tests. */
static void clean_environment(void) {
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_CONFIG_FILE", "/nonexistent/kplm-test/config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kplm-test/credentials", 1);
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    /* Not the instance metadata service of the machine running the tests. */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void config_init_defaults(void) {
    kplm_cloudwatch_config c;
    memset(&c, 0xAB, sizeof c);
    kplm_cloudwatch_config_init(&c);
    CHECK_U64(c.struct_size, sizeof(kplm_cloudwatch_config));
    CHECK(c.region == NULL);
    CHECK(c.endpoint == NULL);
    CHECK(c.cw_namespace == NULL);
    CHECK(c.access_key_id == NULL);
    CHECK(c.secret_access_key == NULL);
    CHECK(c.session_token == NULL);
    CHECK(c.profile == NULL);
    CHECK_DEQ(c.timeout_ms, 10000.0);
    CHECK_U64(c.max_retries, 5);
    kplm_cloudwatch_config_init(NULL); /* ignored */

    /* The defaults plus a region make a valid sink (credentials are only
     * looked up at export time). */
    clean_environment();
    c.region = "us-east-1";
    kplm_sink s;
    CHECK_OK(kplm_sink_cloudwatch(&c, &s));
    CHECK(s.export_snapshots != NULL);
    kplm_sink_release(&s);
    CHECK(test_sink_is_cleared(&s));

    /* The region may come from the environment. */
    kplm_cloudwatch_config_init(&c);
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    CHECK_OK(kplm_sink_cloudwatch(&c, &s));
    kplm_sink_release(&s);
}

/* kplm_sink_cloudwatch(c) must fail with KPLM_EINVAL and clear *out. */
#define EXPECT_EINVAL(c) TEST_EXPECT_SINK_EINVAL(kplm_sink_cloudwatch, (c))

static void base(kplm_cloudwatch_config *c) {
    kplm_cloudwatch_config_init(c);
    c->region = "us-east-1";
}

static void bad_configs(void) {
    clean_environment();
    kplm_cloudwatch_config c;
    kplm_sink s;
    base(&c);
    CHECK_ST(kplm_sink_cloudwatch(NULL, &s), KPLM_EINVAL);
    CHECK_ST(kplm_sink_cloudwatch(&c, NULL), KPLM_EINVAL);
    EXPECT_EINVAL(NULL);

    /* Not a layout; not a whole number of fields (0, and newer layouts, are
     * accepted: Tests/abi). */
    c.struct_size = sizeof c - 8;
    EXPECT_EINVAL(&c);
    c.struct_size = sizeof c + 4;
    EXPECT_EINVAL(&c);

    /* No region anywhere. */
    kplm_cloudwatch_config_init(&c);
    EXPECT_EINVAL(&c);
    const char *regions[] = {"", "US-EAST-1", "us east 1", "us-east-1/", "\xc3"};
    for (size_t i = 0; i < sizeof regions / sizeof regions[0]; i++) {
        base(&c);
        c.region = regions[i];
        EXPECT_EINVAL(&c);
    }

    const char *endpoints[] = {
        "ftp://127.0.0.1/", "http://", "https://:443/", "http://127.0.0.1:0/", "http://127.0.0.1:65536/",
        "127.0.0.1:4566", "", "http://user@127.0.0.1/", "http://127.0.0.1/a b", "http://127.0.0.1/?x=1",
        "http://[::1/", "http://\xc3/",
    };
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++) {
        base(&c);
        c.endpoint = endpoints[i];
        EXPECT_EINVAL(&c);
    }

    const char *namespaces[] = {"", "AWS/Kinesis", ":x"};
    for (size_t i = 0; i < sizeof namespaces / sizeof namespaces[0]; i++) {
        base(&c);
        c.cw_namespace = namespaces[i];
        EXPECT_EINVAL(&c);
    }

    /* Half a key pair, or a token alone. */
    base(&c);
    c.access_key_id = "AKID";
    EXPECT_EINVAL(&c);
    base(&c);
    c.secret_access_key = "secret";
    EXPECT_EINVAL(&c);
    base(&c);
    c.session_token = "token";
    EXPECT_EINVAL(&c);
    base(&c);
    c.access_key_id = "AK ID";
    c.secret_access_key = "secret";
    EXPECT_EINVAL(&c);

    double timeouts[] = {0.0, -1.0, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        base(&c);
        c.timeout_ms = timeouts[i];
        EXPECT_EINVAL(&c);
    }

    /* Edges that are accepted. */
    const char *good[] = {"https://monitoring.us-east-1.amazonaws.com", "HTTP://localhost:4566",
                          "http://[::1]:65535/", "https://h/some/path"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        base(&c);
        c.endpoint = good[i];
        c.cw_namespace = "My/App";
        c.access_key_id = "AKID";
        c.secret_access_key = "secret";
        c.session_token = "token";
        c.profile = "other";
        c.timeout_ms = 0.001;
        c.max_retries = UINT32_MAX;
        CHECK_OK(kplm_sink_cloudwatch(&c, &s));
        kplm_sink_release(&s);
    }
}

static void release_unused_sink(void) {
    kplm_cloudwatch_config c;
    base(&c);
    kplm_sink s;
    CHECK_OK(kplm_sink_cloudwatch(&c, &s));
    test_release_unused_sink(&s);
}

/* A manager exporting to `endpoint` (test_http_manager_fn), with static keys. */
static kplm_manager *manager_to(const char *endpoint, double timeout_ms, uint32_t retries) {
    kplm_cloudwatch_config c;
    base(&c);
    c.endpoint = endpoint;
    c.access_key_id = "AKIDEXAMPLE";
    c.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    c.timeout_ms = timeout_ms;
    c.max_retries = retries;
    kplm_sink s;
    CHECK_OK(kplm_sink_cloudwatch(&c, &s));
    return test_http_manager(&s, NULL);
}

static void flush_to_dead_endpoint(void) { test_http_flush_to_dead_endpoint(manager_to, ""); }

static void flush_to_silent_endpoint(void) { test_http_flush_to_silent_endpoint(manager_to, "/"); }

/* One PutMetricData request in AWS JSON 1.0, signed with SigV4. */
static void flush_to_server(void) {
    clean_environment();
    test_http_server sv;
    test_http_server_start(&sv);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", (unsigned)sv.port);
    kplm_manager *m = manager_to(endpoint, 5000.0, 0);
    CHECK_OK(kplm_flush(m));
    test_http_server_join(&sv);
    CHECK_MSG(strncmp(sv.head, "POST / HTTP/1.1\r\n", 17) == 0, "request line of %s", sv.head);
    char host[64];
    snprintf(host, sizeof host, "Host: 127.0.0.1:%u", (unsigned)sv.port);
    CHECK_MSG(strstr(sv.head, host) != NULL, "no \"%s\" in %s", host, sv.head);
    CHECK_HEADER(&sv, "X-Amz-Target: GraniteServiceVersion20100801.PutMetricData");
    CHECK_HEADER(&sv, "Content-Type: application/x-amz-json-1.0");
    CHECK_MSG(strstr(sv.head, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") != NULL &&
                  strstr(sv.head, "/us-east-1/monitoring/aws4_request, SignedHeaders=") != NULL,
              "no SigV4 Authorization for us-east-1 in %s", sv.head);
    CHECK_MSG(strstr(sv.body, "\"UserRecordsPut\"") != NULL && strstr(sv.body, "\"orders\"") != NULL,
              "the body lacks the metric or its stream: %s", sv.body);
    CHECK_OK(kplm_close(m)); /* nothing left to send: no request */
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(config_init_defaults);
    RUN(bad_configs);
    RUN(release_unused_sink);
    RUN(flush_to_server);
    RUN(flush_to_dead_endpoint);
    RUN(flush_to_silent_endpoint);
    return failures ? 1 : 0;
}
