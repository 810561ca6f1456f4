/* KPL parity through the C ABI: catalogue, rollups, level filter, extra
 * dimensions, namespace, queries. */
#include "test_support.h"

#include <stdio.h>
#include <string.h>

/* "Name|dim=value|..." of a snapshot, into buf. */
static const char *line(const tsnap *s, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "%s", s->name);
    for (size_t i = 0; i < s->ndims && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "|%s=%s", s->dim_name[i], s->dim_value[i]);
    return buf;
}

/* The count of the line `want` in l, or -1 if absent. */
static long long count_of(const tsnap_list *l, const char *want) {
    char buf[512];
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(line(&l->v[i], buf, sizeof buf), want) == 0) return (long long)l->v[i].count;
    return -1;
}

static void catalogue(void) {
    CHECK_STR(KPLM_METRIC_USER_RECORDS_PUT, "UserRecordsPut");
    CHECK(kplm_metric_unit(KPLM_METRIC_USER_RECORDS_DATA_PUT) == KPLM_UNIT_BYTES);
    CHECK(kplm_metric_unit(KPLM_METRIC_BUFFERING_TIME) == KPLM_UNIT_MILLISECONDS);
    CHECK(kplm_metric_unit(KPLM_METRIC_ERRORS_BY_CODE) == KPLM_UNIT_COUNT);
    CHECK(kplm_metric_unit("Custom") == KPLM_UNIT_NONE);
    CHECK(kplm_metric_unit(NULL) == KPLM_UNIT_NONE);
    CHECK(kplm_metric_level(KPLM_METRIC_USER_RECORD_EXPIRED) == KPLM_LEVEL_SUMMARY);
    CHECK(kplm_metric_level(KPLM_METRIC_REQUEST_TIME) == KPLM_LEVEL_DETAILED);
    CHECK(kplm_metric_level("Custom") == KPLM_LEVEL_DETAILED);
    CHECK(kplm_metric_level("UserRecordsPutX") == KPLM_LEVEL_DETAILED);
    CHECK_STR(kplm_unit_name(KPLM_UNIT_MILLISECONDS), "Milliseconds");
    CHECK_STR(kplm_unit_name((kplm_unit)99), "None");
}

static void rollups_and_extras(void) {
    tclock clk;
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    cfg.granularity = KPLM_GRANULARITY_SHARD;
    cfg.metric_namespace = "MyApp";
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_STR(kplm_namespace(m), "MyApp");
    CHECK_OK(kplm_add_dimension(m, "Host", "h1", KPLM_GRANULARITY_GLOBAL));
    CHECK_ST(kplm_add_dimension(m, "Host", "", KPLM_GRANULARITY_GLOBAL), KPLM_EINVAL);
    CHECK_ST(kplm_add_dimension(m, "Host", "h", KPLM_GRANULARITY_NONE), KPLM_EINVAL);
    CHECK_ST(kplm_add_dimension(m, NULL, "h", KPLM_GRANULARITY_GLOBAL), KPLM_EINVAL);
    CHECK_ST(kplm_add_dimension(m, "\xff", "h", KPLM_GRANULARITY_GLOBAL), KPLM_EINVAL);
    tclock_set(&clk, 100);
    CHECK_OK(kplm_put(m, "ErrorsByCode", 1, "s", "a", "Throttled"));
    CHECK_OK(kplm_put(m, "ErrorsByCode", 1, "s", "b", "Throttled"));
    CHECK_OK(kplm_put(m, "ErrorsByCode", 1, "t", "c", "Internal"));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK_U64(l.n, 8);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1") == 3);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1|ErrorCode=Throttled") == 2);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1|ErrorCode=Throttled|StreamName=s") == 2);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1|ErrorCode=Throttled|StreamName=s|ShardId=a") == 1);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1|ErrorCode=Throttled|StreamName=s|ShardId=b") == 1);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1|ErrorCode=Internal") == 1);
    CHECK(count_of(&l, "ErrorsByCode|Host=h1|ErrorCode=Internal|StreamName=t|ShardId=c") == 1);
    CHECK_OK(kplm_start(m));
    CHECK_ST(kplm_add_dimension(m, "Late", "x", KPLM_GRANULARITY_GLOBAL), KPLM_ESTATE);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void level_filter(void) {
    tclock clk;
    kplm_config cfg = test_config(KPLM_LEVEL_SUMMARY, &clk);
    cfg.kpl_level_filter = 1;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    tclock_set(&clk, 100);
    CHECK_OK(kplm_put(m, KPLM_METRIC_USER_RECORDS_PUT, 1, "s", NULL, NULL));
    CHECK_OK(kplm_put(m, KPLM_METRIC_USER_RECORDS_RECEIVED, 1, "s", NULL, NULL));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK_U64(l.n, 1);
    CHECK_STR(l.v[0].name, "UserRecordsPut");
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void queries(void) {
    tclock clk;
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    cfg.window_seconds = 10;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_statistics st;
    tclock_set(&clk, 100);
    CHECK_OK(kplm_put(m, "A", 1, "s", NULL, NULL));
    tclock_set(&clk, 109);
    CHECK_OK(kplm_put(m, "A", 8, "s", NULL, NULL));
    CHECK_OK(kplm_put(m, "A", 2, "t", NULL, NULL));
    CHECK_OK(kplm_query(m, "A", "s", NULL, NULL, 1, &st));
    CHECK_U64(st.count, 1);
    CHECK_DEQ(st.sum, 8);
    CHECK_OK(kplm_query(m, "A", "s", NULL, NULL, 10, &st));
    CHECK_U64(st.count, 2);
    CHECK_OK(kplm_query_name(m, "A", 10, &st));
    CHECK_U64(st.count, 3);
    CHECK_DEQ(st.min, 1);
    CHECK_DEQ(st.max, 8);
    tclock_set(&clk, 200);   /* the window moved on; cumulative keeps all */
    CHECK_OK(kplm_query(m, "A", "s", NULL, NULL, 10, &st));
    CHECK_U64(st.count, 0);
    CHECK_OK(kplm_query(m, "A", "s", NULL, NULL, KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 2);
    CHECK_DEQ(st.sum, 9);
    CHECK_OK(kplm_query_name(m, "A", KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 3);
    CHECK_OK(kplm_query(m, "Unknown", NULL, NULL, NULL, KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 0);
    CHECK_ST(kplm_query(m, "A", NULL, NULL, NULL, 11, &st), KPLM_EINVAL);
    CHECK_ST(kplm_query(m, "", NULL, NULL, NULL, 1, &st), KPLM_EINVAL);
    CHECK_ST(kplm_query(m, "A", NULL, NULL, NULL, 1, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_query(NULL, "A", NULL, NULL, NULL, 1, &st), KPLM_EINVAL);
    CHECK_ST(kplm_query_name(m, NULL, 1, &st), KPLM_EINVAL);
    kplm_free(m);
}

static void bad_config(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    CHECK(cfg.granularity == KPLM_GRANULARITY_NONE && cfg.kpl_level_filter == 0 && cfg.metric_namespace == NULL);
    kplm_manager *m = NULL;
    cfg.granularity = (kplm_granularity)7;
    CHECK_ST(kplm_new(&cfg, &m), KPLM_EINVAL);
    kplm_config_init(&cfg);
    cfg.metric_namespace = "";
    CHECK_ST(kplm_new(&cfg, &m), KPLM_EINVAL);
    cfg.metric_namespace = "\xc3";
    CHECK_ST(kplm_new(&cfg, &m), KPLM_EINVAL);
    kplm_config_init(&cfg);
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_STR(kplm_namespace(m), "KinesisProducerLibrary");
    CHECK(kplm_namespace(NULL) == NULL);
    kplm_free(m);
}

typedef struct {
    int requests;
    size_t datums[8];
    int fail_at;       /* 1-based request that emit refuses, 0 = none */
    int bodies_ok;
} cw_out;

static int cw_emit(void *user_data, const char *body, size_t len, size_t datums) {
    cw_out *o = user_data;
    if (o->requests < 8) o->datums[o->requests] = datums;
    o->requests++;
    if (strlen(body) == len && len <= 1000000 && strncmp(body, "{\"Namespace\":\"MyApp\"", strlen("{\"Namespace\":\"MyApp\"")) == 0 &&
        strstr(body, "\"StatisticValues\"") != NULL)
        o->bodies_ok++;
    return o->fail_at == o->requests;
}

static void cloudwatch_requests(void) {
    enum { N = 1002 };
    static kplm_snapshot s[N];
    kplm_dimension dims[2] = {{"stream", "orders"}, {"shard", "shardId-000000000001"}};
    double now = test_wall_now();
    for (int i = 0; i < N; i++) {
        s[i] = (kplm_snapshot){.name = KPLM_METRIC_USER_RECORDS_PUT, .count = 1, .sum = i,
                               .min = 0, .max = i, .dimensions = dims, .dimension_count = 2,
                               .window_start = 0, .window_end = 1, .timestamp_unix = now};
    }
    /* Every count 1 but one 0: 1001 datums. */
    for (int i = 0; i < N; i++) s[i].count = 1;
    s[5].count = 0;
    cw_out o = {0};
    size_t dropped = 99;
    CHECK_OK(kplm_cloudwatch_requests(s, N, "MyApp", now, cw_emit, &o, &dropped));
    CHECK(o.requests == 2);
    CHECK_U64(o.datums[0], 1000);
    CHECK_U64(o.datums[1], 1);
    CHECK(o.bodies_ok == 2);
    CHECK_U64(dropped, 1);
    /* Two weeks and a second old: dropped. */
    s[0].timestamp_unix = now - 14 * 86400 - 1;
    cw_out one = {0};
    CHECK_OK(kplm_cloudwatch_requests(s, 1, "MyApp", now, cw_emit, &one, &dropped));
    CHECK(one.requests == 0);
    CHECK_U64(dropped, 1);
    s[0].timestamp_unix = now;
    /* emit refusing stops with ESINK. */
    cw_out refuse = {.fail_at = 1};
    CHECK_ST(kplm_cloudwatch_requests(s, N, "MyApp", now, cw_emit, &refuse, NULL), KPLM_ESINK);
    CHECK(refuse.requests == 1);
    CHECK_ST(kplm_cloudwatch_requests(s, 1, "AWS/Kinesis", now, cw_emit, &o, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_cloudwatch_requests(s, 1, "", now, cw_emit, &o, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_cloudwatch_requests(s, 1, NULL, now, cw_emit, &o, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_cloudwatch_requests(s, 1, "MyApp", now, NULL, &o, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_cloudwatch_requests(NULL, 1, "MyApp", now, cw_emit, &o, NULL), KPLM_EINVAL);
    CHECK_OK(kplm_cloudwatch_requests(NULL, 0, "MyApp", now, cw_emit, &o, NULL));
}

int main(void) {
    int failures = 0;
    RUN(catalogue);
    RUN(rollups_and_extras);
    RUN(level_filter);
    RUN(queries);
    RUN(bad_config);
    RUN(cloudwatch_requests);
    return failures != 0;
}
