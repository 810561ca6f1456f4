/* The eventful extension: record runs once per accepted put, on the putting
 * thread, between start and close, with the formed key's dimensions. */
#include "test_support.h"

#include <math.h>
#include <string.h>

static kplm_manager *new_manager(kplm_level level, tclock *clk, msink *ms) {
    kplm_config cfg = test_config(level, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s = msink_sink(ms, 1, 1, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    return m;
}

static void check_event(const tevent *e, const char *name, double value, double ts,
                        const char *stream, const char *shard, const char *ec) {
    CHECK_STR(e->name, name);
    CHECK_DEQ(e->value, value);
    CHECK_DEQ(e->timestamp, ts);
    const char *names[3] = {"stream", "shard", "error_code"};
    const char *values[3] = {stream, shard, ec};
    size_t k = 0;
    for (int i = 0; i < 3; i++) {
        if (!values[i]) continue;
        CHECK_MSG(k < e->ndims, "event %s has %zu dimension(s), expected more", name, e->ndims);
        CHECK_STR(e->dim_name[k], names[i]);
        CHECK_STR(e->dim_value[k], values[i]);
        k++;
    }
    CHECK_MSG(k == e->ndims, "event %s has %zu dimension(s), expected %zu", name, e->ndims, k);
}

typedef struct {
    kplm_manager *m;
    pthread_t self;
} thread_arg;

static void *put_from_thread(void *p) {
    thread_arg *a = p;
    a->self = pthread_self();
    CHECK_OK(kplm_put(a->m, "FromThread", 3.0, NULL, NULL, NULL));
    return NULL;
}

static void detailed_events(void) {
    tclock clk;
    tclock_set(&clk, 50.25);
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk, &ms);

    /* Before start: recorded in the window, but no event. */
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsDataPut", "s", "sh", NULL, &h));
    CHECK_OK(kplm_metric_put(h, 10.0));
    CHECK(ms.records == 0);

    CHECK_OK(kplm_start(m));
    CHECK(ms.records == 0);

    CHECK_OK(kplm_put(m, "ErrorsByCode", 2.5, "s", "sh", "Throttled"));
    CHECK(ms.records == 1);
    check_event(&ms.events[0], "ErrorsByCode", 2.5, 50.25, "s", "sh", "Throttled");
    CHECK(pthread_equal(ms.events[0].thread, pthread_self()));

    tclock_set(&clk, 51.5);
    CHECK_OK(kplm_metric_put(h, 20.0));
    CHECK(ms.records == 2);
    check_event(&ms.events[1], "UserRecordsDataPut", 20.0, 51.5, "s", "sh", NULL);

    /* "" dimensions are absent in the event too. */
    CHECK_OK(kplm_put(m, "BufferingTime", -1.5, "", "", "e"));
    CHECK(ms.records == 3);
    check_event(&ms.events[2], "BufferingTime", -1.5, 51.5, NULL, NULL, "e");

    /* Refused puts: no event. */
    CHECK_ST(kplm_put(m, "BufferingTime", NAN, NULL, NULL, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_put(m, "", 1.0, NULL, NULL, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_put(m, "\xC0\xAF", 1.0, NULL, NULL, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_metric_put(h, INFINITY), KPLM_EINVAL);
    CHECK(ms.records == 3);

    /* On the putting thread. */
    thread_arg a = {m, pthread_self()};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, put_from_thread, &a) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(ms.records == 4);
    check_event(&ms.events[3], "FromThread", 3.0, 51.5, NULL, NULL, NULL);
    CHECK(pthread_equal(ms.events[3].thread, a.self));
    CHECK(!pthread_equal(ms.events[3].thread, pthread_self()));

    /* Exactly one event per accepted put. */
    for (int i = 0; i < 500; i++)
        CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL));
    for (int i = 0; i < 500; i++) CHECK_OK(kplm_metric_put(h, 1.0));
    CHECK(ms.records == 1004);

    /* Flush and export do not produce events. */
    CHECK_OK(kplm_flush(m));
    CHECK(ms.records == 1004);

    CHECK_OK(kplm_close(m));
    CHECK(ms.records == 1004);
    /* After close: refused, no event. */
    CHECK_ST(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL), KPLM_ECLOSED);
    CHECK_ST(kplm_metric_put(h, 1.0), KPLM_ECLOSED);
    CHECK(ms.records == 1004);
    kplm_free(m);
    msink_destroy(&ms);
}

static void summary_events_carry_the_formed_key(void) {
    tclock clk;
    tclock_set(&clk, 7.0);
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_manager(KPLM_LEVEL_SUMMARY, &clk, &ms);
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "ErrorsByCode", 1.0, "s", "shardId-1", "Throttled"));
    CHECK_OK(kplm_put(m, "ErrorsByCode", 1.0, NULL, "shardId-1", "Throttled"));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsPut", "s", "shardId-1", NULL, &h));
    CHECK_OK(kplm_metric_put(h, 4.0));
    CHECK(ms.records == 3);
    check_event(&ms.events[0], "ErrorsByCode", 1.0, 7.0, "s", NULL, NULL);
    check_event(&ms.events[1], "ErrorsByCode", 1.0, 7.0, NULL, NULL, NULL);
    check_event(&ms.events[2], "UserRecordsPut", 4.0, 7.0, "s", NULL, NULL);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    msink_destroy(&ms);
}

static void none_level_no_events(void) {
    tclock clk;
    tclock_set(&clk, 7.0);
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_manager(KPLM_LEVEL_NONE, &clk, &ms);
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL));
    CHECK(ms.records == 0);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    msink_destroy(&ms);
}

int main(void) {
    int failures = 0;
    RUN(detailed_events);
    RUN(summary_events_carry_the_formed_key);
    RUN(none_level_no_events);
    return failures ? 1 : 0;
}
