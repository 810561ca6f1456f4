/* The DogStatsD built-in sink through the C ABI: config defaults, refused
 * configs, a real flush to a UDP socket opened here, and who owns the sink
 * (kplm_sink_release, kplm_set_sink refused after start). */
#include "test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Receives one datagram (waiting up to timeout_ms) as a NUL-terminated
 * string; returns its length, or -1 if none came. */
static long receive(int fd, char *buf, size_t cap, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1) return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    CHECK(n >= 0);
    buf[n] = '\0';
    return (long)n;
}

static void config_init_defaults(void) {
    kplm_dogstatsd_config c;
    memset(&c, 0xAB, sizeof c);
    kplm_dogstatsd_config_init(&c);
    CHECK_U64(c.struct_size, sizeof(kplm_dogstatsd_config));
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_U64(c.port, 8125);
    CHECK(c.prefix == NULL);
    CHECK(c.tags == NULL);
    CHECK_U64(c.tag_count, 0);
    CHECK_U64(c.max_datagram_bytes, 1432);
    kplm_dogstatsd_config_init(NULL); /* ignored */

    /* The defaults make a valid sink. */
    kplm_sink s;
    CHECK_OK(kplm_sink_dogstatsd(&c, &s));
    CHECK(s.export_snapshots != NULL);
    kplm_sink_release(&s);
    CHECK(test_sink_is_cleared(&s));
}

/* kplm_sink_dogstatsd(c) must fail with KPLM_EINVAL and clear *out. */
#define EXPECT_EINVAL(c) TEST_EXPECT_SINK_EINVAL(kplm_sink_dogstatsd, (c))

static void bad_configs(void) {
    kplm_dogstatsd_config c;
    kplm_sink s;
    CHECK_ST(kplm_sink_dogstatsd(NULL, &s), KPLM_EINVAL);
    kplm_dogstatsd_config_init(&c);
    CHECK_ST(kplm_sink_dogstatsd(&c, NULL), KPLM_EINVAL);
    EXPECT_EINVAL(NULL);

    kplm_dogstatsd_config_init(&c);
    /* Not a layout; not a whole number of fields (0, and newer layouts, are
     * accepted: Tests/abi). */
    c.struct_size = sizeof c - 8;
    EXPECT_EINVAL(&c);
    c.struct_size = sizeof c + 4;
    EXPECT_EINVAL(&c);

    kplm_dogstatsd_config_init(&c);
    c.port = 0;
    EXPECT_EINVAL(&c);

    const char *hosts[] = {"", "local host", "a\tb", "\xff\xfe"};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        kplm_dogstatsd_config_init(&c);
        c.host = hosts[i];
        EXPECT_EINVAL(&c);
    }
    char long_host[300];
    memset(long_host, 'h', sizeof long_host - 1);
    long_host[sizeof long_host - 1] = '\0';
    kplm_dogstatsd_config_init(&c);
    c.host = long_host;
    EXPECT_EINVAL(&c);

    uint32_t sizes[] = {0, 63, 65508, UINT32_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        kplm_dogstatsd_config_init(&c);
        c.max_datagram_bytes = sizes[i];
        EXPECT_EINVAL(&c);
    }

    kplm_dogstatsd_config_init(&c);
    c.tags = NULL;
    c.tag_count = 1;
    EXPECT_EINVAL(&c);
    const char *with_null[] = {"env:ci", NULL};
    c.tags = with_null;
    c.tag_count = 2;
    EXPECT_EINVAL(&c);
    const char *with_empty[] = {"env:ci", ""};
    c.tags = with_empty;
    EXPECT_EINVAL(&c);
    const char *bad_utf8[] = {"env:\xc3"};
    c.tags = bad_utf8;
    c.tag_count = 1;
    EXPECT_EINVAL(&c);

    /* The edges of the valid range are accepted. */
    uint32_t edges[] = {64, 65507};
    for (size_t i = 0; i < 2; i++) {
        kplm_dogstatsd_config_init(&c);
        c.max_datagram_bytes = edges[i];
        c.host = "::1";
        c.port = 65535;
        CHECK_OK(kplm_sink_dogstatsd(&c, &s));
        kplm_sink_release(&s);
    }
}

static void flush_to_udp(void) {
    uint16_t port;
    int fd = test_loopback_socket(SOCK_DGRAM, 0, &port);

    kplm_dogstatsd_config c;
    kplm_dogstatsd_config_init(&c);
    const char *tags[] = {"env:CI", "1team"};
    c.port = port;
    c.prefix = "kpl";
    c.tags = tags;
    c.tag_count = 2;
    kplm_sink s;
    CHECK_OK(kplm_sink_dogstatsd(&c, &s));

    tclock clk;
    tclock_set(&clk, 100.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.5, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_put(m, "Latency ms", 0.25, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(m));

    char buf[2048];
    CHECK(receive(fd, buf, sizeof buf, 2000) > 0);
    CHECK_STR(buf,
              "kpl.Latency_ms_c8b9bf13.count:1|c|#env:CI,t_1team\n"
              "kpl.Latency_ms_c8b9bf13.sum:0.25|c|#env:CI,t_1team\n"
              "kpl.Latency_ms_c8b9bf13.min:0.25|g|#env:CI,t_1team\n"
              "kpl.Latency_ms_c8b9bf13.max:0.25|g|#env:CI,t_1team\n"
              "kpl.UserRecordsPut.count:2|c|#env:CI,t_1team,stream:orders,shard:shardId-1\n"
              "kpl.UserRecordsPut.sum:5.5|c|#env:CI,t_1team,stream:orders,shard:shardId-1\n"
              "kpl.UserRecordsPut.min:2|g|#env:CI,t_1team,stream:orders,shard:shardId-1\n"
              "kpl.UserRecordsPut.max:3.5|g|#env:CI,t_1team,stream:orders,shard:shardId-1");
    CHECK(receive(fd, buf, sizeof buf, 100) == -1);

    /* The final flush of close goes out too. */
    tclock_advance(&clk, 1.0);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1e-7, "orders", NULL, NULL));
    CHECK_OK(kplm_close(m));
    CHECK(receive(fd, buf, sizeof buf, 2000) > 0);
    CHECK_STR(buf,
              "kpl.UserRecordsPut.count:1|c|#env:CI,t_1team,stream:orders\n"
              "kpl.UserRecordsPut.sum:0.0000001|c|#env:CI,t_1team,stream:orders\n"
              "kpl.UserRecordsPut.min:0.0000001|g|#env:CI,t_1team,stream:orders\n"
              "kpl.UserRecordsPut.max:0.0000001|g|#env:CI,t_1team,stream:orders");
    kplm_free(m);
    close(fd);
}

static void small_datagrams(void) {
    uint16_t port;
    int fd = test_loopback_socket(SOCK_DGRAM, 0, &port);
    kplm_dogstatsd_config c;
    kplm_dogstatsd_config_init(&c);
    c.port = port;
    c.max_datagram_bytes = 64;
    kplm_sink s;
    CHECK_OK(kplm_sink_dogstatsd(&c, &s));
    tclock clk;
    tclock_set(&clk, 100.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "Abc", 1.0, "s", NULL, NULL));
    CHECK_OK(kplm_flush(m));
    /* 4 lines of 21 to 23 bytes: two per datagram. */
    char buf[256];
    CHECK(receive(fd, buf, sizeof buf, 2000) > 0);
    CHECK_STR(buf, "Abc.count:1|c|#stream:s\nAbc.sum:1|c|#stream:s");
    CHECK(receive(fd, buf, sizeof buf, 2000) > 0);
    CHECK_STR(buf, "Abc.min:1|g|#stream:s\nAbc.max:1|g|#stream:s");
    CHECK(receive(fd, buf, sizeof buf, 100) == -1);
    kplm_free(m);
    close(fd);
}

static void send_error_is_esink(void) {
    /* The IPv4 broadcast address without SO_BROADCAST: every send fails. */
    kplm_dogstatsd_config c;
    kplm_dogstatsd_config_init(&c);
    c.host = "255.255.255.255";
    c.port = 9;
    kplm_sink s;
    CHECK_OK(kplm_sink_dogstatsd(&c, &s));
    tclock clk;
    tclock_set(&clk, 100.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    CHECK_ST(kplm_flush(m), KPLM_ESINK); /* kept, offered again, failing again */
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    kplm_free(m);
}

static void release_unused_sink(void) {
    kplm_dogstatsd_config c;
    kplm_dogstatsd_config_init(&c);
    for (int i = 0; i < 1000; i++) {
        kplm_sink s;
        CHECK_OK(kplm_sink_dogstatsd(&c, &s));
        CHECK(s.user_data != NULL && s.export_snapshots != NULL);
        kplm_sink_release(&s);
        CHECK(test_sink_is_cleared(&s));
        kplm_sink_release(&s); /* cleared: ignored */
    }
    kplm_sink_release(NULL);
}

static void set_sink_after_start_keeps_ownership(void) {
    tclock clk;
    tclock_set(&clk, 100.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_start(m));

    kplm_dogstatsd_config c;
    kplm_dogstatsd_config_init(&c);
    kplm_sink s;
    CHECK_OK(kplm_sink_dogstatsd(&c, &s));
    kplm_sink copy = s;
    CHECK_ST(kplm_set_sink(m, &s), KPLM_ESTATE);
    /* Refused: the caller still owns it, untouched, and may use it again. */
    CHECK(memcmp(&copy, &s, sizeof s) == 0);
    kplm_manager *m2 = NULL;
    CHECK_OK(kplm_new(&cfg, &m2));
    CHECK_OK(kplm_close(m2));
    CHECK_ST(kplm_set_sink(m2, &s), KPLM_ESTATE); /* closed */
    kplm_sink_release(&s);
    CHECK(test_sink_is_cleared(&s));
    kplm_free(m2);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(config_init_defaults);
    RUN(bad_configs);
    RUN(flush_to_udp);
    RUN(small_datagrams);
    RUN(send_error_is_esink);
    RUN(release_unused_sink);
    RUN(set_sink_after_start_keeps_ownership);
    return failures ? 1 : 0;
}
