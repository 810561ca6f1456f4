/* The EMF built-in sink through the C ABI: config defaults, refused
 * configs, a FILE destination end to end, releasing an unused sink, and
 * kplm_set_sink after start (the caller keeps ownership). */
#define _DEFAULT_SOURCE /* mkstemp */
#include "test_support.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void config_init_defaults(void) {
    kplm_emf_config c;
    memset(&c, 0xAB, sizeof c);
    kplm_emf_config_init(&c);
    CHECK_U64(c.struct_size, sizeof(kplm_emf_config));
    CHECK(c.destination == KPLM_EMF_STDOUT);
    CHECK(c.path == NULL);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_U64(c.port, 25888);
    CHECK(c.cw_namespace == NULL);
    CHECK_DEQ(c.timeout_ms, 2000.0);
    kplm_emf_config_init(NULL); /* ignored */

    kplm_sink s;
    CHECK_OK(kplm_sink_emf(&c, &s));
    CHECK(s.export_snapshots != NULL);
    kplm_sink_release(&s);
}

/* kplm_sink_emf(c) must fail with KPLM_EINVAL and clear *out. */
#define EXPECT_EINVAL(c) TEST_EXPECT_SINK_EINVAL(kplm_sink_emf, (c))

static void bad_configs(void) {
    kplm_emf_config c;
    kplm_sink s;
    kplm_emf_config_init(&c);
    CHECK_ST(kplm_sink_emf(NULL, &s), KPLM_EINVAL);
    CHECK_ST(kplm_sink_emf(&c, NULL), KPLM_EINVAL);

    c.struct_size = sizeof(kplm_emf_config) - 8;
    EXPECT_EINVAL(&c); /* short struct_size */
    c.struct_size = sizeof(kplm_emf_config) + 4;
    EXPECT_EINVAL(&c); /* not a whole number of fields (newer layouts: Tests/abi) */

    kplm_emf_config_init(&c);
    c.destination = (kplm_emf_destination)7;
    EXPECT_EINVAL(&c); /* unknown destination */

    kplm_emf_config_init(&c);
    c.destination = KPLM_EMF_FILE;
    EXPECT_EINVAL(&c); /* file without path */
    c.path = "";
    EXPECT_EINVAL(&c); /* empty path */
    c.path = "\xff\xfe";
    EXPECT_EINVAL(&c); /* path not UTF-8 */

    kplm_emf_config_init(&c);
    c.destination = KPLM_EMF_TCP;
    c.port = 0;
    EXPECT_EINVAL(&c); /* port 0 */
    c.port = 25888;
    c.host = NULL;
    EXPECT_EINVAL(&c); /* NULL host */
    c.host = "not a host!";
    EXPECT_EINVAL(&c); /* bad host */
    c.destination = KPLM_EMF_UDP;
    c.host = "";
    EXPECT_EINVAL(&c); /* empty host */

    kplm_emf_config_init(&c);
    c.cw_namespace = "AWS/Kinesis";
    EXPECT_EINVAL(&c); /* reserved namespace */
    c.cw_namespace = "";
    EXPECT_EINVAL(&c); /* empty namespace */

    kplm_emf_config_init(&c);
    c.timeout_ms = 0;
    EXPECT_EINVAL(&c); /* timeout 0 */
    c.timeout_ms = -1;
    EXPECT_EINVAL(&c); /* negative timeout */

    /* Valid network configs (nothing is connected before the first export). */
    kplm_emf_config_init(&c);
    c.destination = KPLM_EMF_UDP;
    c.host = "::1";
    CHECK_OK(kplm_sink_emf(&c, &s));
    kplm_sink_release(&s);
    c.destination = KPLM_EMF_TCP;
    c.host = "cloudwatch-agent";
    CHECK_OK(kplm_sink_emf(&c, &s));
    kplm_sink_release(&s);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void file_end_to_end(void) {
    char path[] = "/tmp/kplm_emf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "before\n", 7) == 7);
    close(fd);

    tclock clock;
    tclock_set(&clock, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clock);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));

    kplm_emf_config ec;
    kplm_emf_config_init(&ec);
    ec.destination = KPLM_EMF_FILE;
    ec.path = path;
    ec.cw_namespace = "CTest";
    kplm_sink sink;
    CHECK_OK(kplm_sink_emf(&ec, &sink));
    CHECK_OK(kplm_set_sink(m, &sink));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 5, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_put(m, "UserRecordsDataPut", 512, "orders", "shardId-1", NULL));
    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_close(m));
    kplm_free(m);

    const char *text = read_file(path);
    unlink(path);
    CHECK_MSG(strncmp(text, "before\n{\"_aws\":{\"Timestamp\":", 28) == 0, "file starts: %.80s", text);
    const char *line = text + 7;
    const char *end = strchr(line, '\n');
    CHECK_MSG(end != NULL && end[1] == 0, "expected exactly one event line: %s", line);
    /* The timestamp is an integer number of milliseconds close to now. */
    char *after = NULL;
    long long ms = strtoll(line + 21, &after, 10);
    CHECK_MSG(*after == ',', "timestamp not an integer: %.60s", line);
    CHECK_MSG(ms > (long long)((test_wall_now() - 120) * 1000) && ms < (long long)((test_wall_now() + 1) * 1000),
              "timestamp %lld", ms);
    const char *want[] = {
        "\"Namespace\":\"CTest\"",
        "\"Dimensions\":[[\"StreamName\",\"ShardId\"]]",
        "{\"Name\":\"UserRecordsPut\",\"Unit\":\"Count\"}",
        "{\"Name\":\"UserRecordsPut.Count\",\"Unit\":\"Count\"}",
        "{\"Name\":\"UserRecordsPut.Min\",\"Unit\":\"Count\"}",
        "{\"Name\":\"UserRecordsPut.Max\",\"Unit\":\"Count\"}",
        "\"StreamName\":\"orders\"",
        "\"ShardId\":\"shardId-1\"",
        "\"UserRecordsPut\":8.0",
        "\"UserRecordsPut.Count\":2",
        "\"UserRecordsPut.Min\":3.0",
        "\"UserRecordsPut.Max\":5.0}",
        "{\"Name\":\"UserRecordsDataPut\",\"Unit\":\"Bytes\"}",
        "{\"Name\":\"UserRecordsDataPut.Count\",\"Unit\":\"Count\"}",
        "{\"Name\":\"UserRecordsDataPut.Min\",\"Unit\":\"Bytes\"}",
        "{\"Name\":\"UserRecordsDataPut.Max\",\"Unit\":\"Bytes\"}",
        "\"UserRecordsDataPut\":512.0,",
        "\"UserRecordsDataPut.Count\":1,",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(strstr(line, want[i]) != NULL, "missing %s in %s", want[i], line);
}

static void release_unused(void) {
    kplm_emf_config c;
    kplm_emf_config_init(&c);
    kplm_sink s;
    CHECK_OK(kplm_sink_emf(&c, &s));
    kplm_sink_release(&s);
    CHECK(s.user_data == NULL && s.export_snapshots == NULL);
    kplm_sink_release(&s); /* cleared: a second release is a no-op */
    kplm_sink_release(NULL);
}

static void set_after_start_keeps_ownership(void) {
    tclock clock;
    tclock_set(&clock, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clock);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_start(m));

    kplm_emf_config c;
    kplm_emf_config_init(&c);
    kplm_sink s;
    CHECK_OK(kplm_sink_emf(&c, &s));
    CHECK_ST(kplm_set_sink(m, &s), KPLM_ESTATE);
    CHECK(s.user_data != NULL); /* still the caller's */
    kplm_sink_release(&s);
    CHECK(s.user_data == NULL);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(config_init_defaults);
    RUN(bad_configs);
    RUN(file_end_to_end);
    RUN(release_unused);
    RUN(set_after_start_keeps_ownership);
    return failures ? 1 : 0;
}
