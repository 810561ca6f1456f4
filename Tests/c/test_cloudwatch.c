/* The CloudWatch built-in sink through the C ABI: config defaults, refused
 * configs, kplm_sink_release of an unused sink, and flushes to a dead or a
 * silent endpoint (KPLM_ESINK within the timeout, the data kept). The round
 * trip against a real (moto) server is in Tests/python/test_cloudwatch.py. */
#include "test_support.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    kplm_sink_release(&s);
    CHECK(test_sink_is_cleared(&s));
    kplm_sink_release(&s); /* a cleared sink: nothing to do */
    kplm_sink_release(NULL);
}

/* A manager exporting to `endpoint`, started, with one observation put. */
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
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, NULL);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "orders", "shardId-1", NULL));
    return m;
}

static void flush_to_dead_endpoint(void) {
    uint16_t port;
    int holder = test_loopback_socket(SOCK_STREAM, 0, &port); /* bound, not listening: refused */
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", (unsigned)port);
    kplm_manager *m = manager_to(endpoint, 1000.0, 3);
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

static void flush_to_silent_endpoint(void) {
    uint16_t port;
    int listener = test_loopback_socket(SOCK_STREAM, 8, &port); /* listens, never accepts nor answers */
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/", (unsigned)port);
    kplm_manager *m = manager_to(endpoint, 300.0, 5);
    double start = test_wall_now();
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    double took = test_wall_now() - start;
    CHECK_MSG(took >= 0.25 && took < 1.0, "the flush took %.3f s with a 0.3 s timeout", took);
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    kplm_free(m);
    close(listener);
}

int main(void) {
    int failures = 0;
    RUN(config_init_defaults);
    RUN(bad_configs);
    RUN(release_unused_sink);
    RUN(flush_to_dead_endpoint);
    RUN(flush_to_silent_endpoint);
    return failures ? 1 : 0;
}
