/* kplm_metric_put_many and kplm_set_flush_hook: the two functions a layer
 * that buffers puts (the Python binding) hands its observations over with.
 * A batch lands in the second it names, as if each value had been put
 * then; a flush hook's puts are part of the flush that called it. */
#include "test_support.h"

#include <math.h>
#include <string.h>

static kplm_manager *new_manager(tclock *clk, msink *ms, int eventful) {
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s = msink_sink(ms, 0, eventful, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    return m;
}

static kplm_statistics query_last(kplm_manager *m, const char *name, uint32_t seconds) {
    kplm_statistics st;
    CHECK_OK(kplm_query(m, name, NULL, NULL, NULL, seconds, &st));
    return st;
}

/* Values land in the second `at` names (a time after now counts as now),
 * with exact count, sum, min and max, and are exported once. */
static void batch_lands_in_its_second(void) {
    tclock clk;
    tclock_set(&clk, 100.5);
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_manager(&clk, &ms, 0);
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "Batch", NULL, NULL, NULL, &h));
    CHECK_OK(kplm_start(m));

    const double first[] = {1.0, 5.0, -2.0};
    CHECK_OK(kplm_metric_put_many(h, first, 3, 100.9));
    tclock_set(&clk, 103.25);
    const double second[] = {10.0, 20.0};
    /* Observed at 101.2, handed over at 103.25: the bucket of second 101. */
    CHECK_OK(kplm_metric_put_many(h, second, 2, 101.2));
    const double future[] = {7.0};
    CHECK_OK(kplm_metric_put_many(h, future, 1, 500.0)); /* counts as now (103) */
    CHECK_OK(kplm_metric_put_many(h, future, 0, NAN));   /* nothing */
    CHECK_OK(kplm_metric_put_many(h, NULL, 0, NAN));

    /* The last 1 s holds only the future batch; the last 3 s (101..103)
     * also the one of 101; everything is 6 observations. */
    kplm_statistics st = query_last(m, "Batch", 1);
    CHECK_U64(st.count, 1);
    CHECK_DEQ(st.sum, 7.0);
    st = query_last(m, "Batch", 3);
    CHECK_U64(st.count, 3);
    CHECK_DEQ(st.sum, 37.0);
    CHECK_DEQ(st.min, 7.0);
    CHECK_DEQ(st.max, 20.0);
    st = query_last(m, "Batch", KPLM_CUMULATIVE);
    CHECK_U64(st.count, 6);
    CHECK_DEQ(st.sum, 41.0);
    CHECK_DEQ(st.min, -2.0);
    CHECK_DEQ(st.max, 20.0);

    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_flush(m));
    CHECK(msink_exports_ok(&ms) == 1);
    const tsnap *s = find_snap(&ms.snaps, "Batch", NULL, NULL, NULL);
    CHECK_SNAP(s, 6, 41.0, -2.0, 20.0);
    CHECK_WINDOW(s, 100.0, 104.0);

    CHECK_OK(kplm_close(m));
    CHECK_ST(kplm_metric_put_many(h, first, 3, NAN), KPLM_ECLOSED);
    kplm_free(m);
    msink_destroy(&ms);
}

/* Bad input records nothing, not even the good values of the batch. */
static void bad_batches_record_nothing(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_manager(&clk, &ms, 0);
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "Bad", NULL, NULL, NULL, &h));
    const double with_nan[] = {1.0, NAN, 2.0};
    const double with_inf[] = {1.0, INFINITY};
    const double good[] = {1.0};
    CHECK_ST(kplm_metric_put_many(NULL, good, 1, NAN), KPLM_EINVAL);
    CHECK_ST(kplm_metric_put_many(h, NULL, 1, NAN), KPLM_EINVAL);
    CHECK_ST(kplm_metric_put_many(h, with_nan, 3, NAN), KPLM_EINVAL);
    CHECK_ST(kplm_metric_put_many(h, with_inf, 2, NAN), KPLM_EINVAL);
    CHECK_ST(kplm_metric_put_many(h, good, 1, INFINITY), KPLM_EINVAL);
    CHECK_ST(kplm_metric_put_many(h, good, 1, -INFINITY), KPLM_EINVAL);
    CHECK_U64(query_last(m, "Bad", KPLM_CUMULATIVE).count, 0);
    /* Before start a batch is recorded like a put. */
    CHECK_OK(kplm_metric_put_many(h, good, 1, -1e300));
    CHECK_U64(query_last(m, "Bad", KPLM_CUMULATIVE).count, 1);
    kplm_free(m);
    msink_destroy(&ms);
}

/* With an eventful sink, record runs once per value with the batch's time. */
static void eventful_sink_sees_each_value(void) {
    tclock clk;
    tclock_set(&clk, 20.0);
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_manager(&clk, &ms, 1);
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "Ev", "s", NULL, NULL, &h));
    CHECK_OK(kplm_start(m));
    const double values[] = {3.0, 4.0};
    CHECK_OK(kplm_metric_put_many(h, values, 2, 19.5));
    CHECK(msink_records(&ms) == 2);
    CHECK_DEQ(ms.events[0].value, 3.0);
    CHECK_DEQ(ms.events[1].value, 4.0);
    CHECK_DEQ(ms.events[0].timestamp, 19.5);
    CHECK_DEQ(ms.events[1].timestamp, 19.5);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    msink_destroy(&ms);
}

/* A buffering layer: values held outside kplm until the flush hook. */
typedef struct {
    pthread_mutex_t lock; /* the hook runs on the uploader thread */
    kplm_manager *m;
    kplm_metric *h;
    double held[16];
    size_t n;
    double at;
    int calls;
    kplm_status nested_flush, nested_close, last_put;
} buffer;

static void hand_over(void *user_data) {
    buffer *b = user_data;
    pthread_mutex_lock(&b->lock);
    b->calls++;
    b->nested_flush = kplm_flush(b->m);
    b->nested_close = kplm_close(b->m);
    b->last_put = kplm_metric_put_many(b->h, b->held, b->n, b->at);
    b->n = 0;
    pthread_mutex_unlock(&b->lock);
}

static void flush_hook_puts_are_part_of_the_flush(void) {
    tclock clk;
    tclock_set(&clk, 30.0);
    msink ms;
    msink_init(&ms);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    cfg.upload_interval_ms = 50; /* the periodic flush calls the hook too */
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s = msink_sink(&ms, 0, 0, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    buffer b = {.lock = PTHREAD_MUTEX_INITIALIZER, .m = m, .at = 30.0};
    CHECK_OK(kplm_metric_get(m, "Held", NULL, NULL, NULL, &b.h));
    CHECK_ST(kplm_set_flush_hook(NULL, hand_over, &b), KPLM_EINVAL);
    CHECK_OK(kplm_set_flush_hook(m, hand_over, &b));
    CHECK_OK(kplm_set_flush_hook(m, NULL, NULL)); /* removed, then set again */
    CHECK_OK(kplm_set_flush_hook(m, hand_over, &b));

    /* Held before start; nothing in kplm yet. The uploader runs the hook
     * (on its thread) within a few intervals, without kplm_flush. */
    b.held[0] = 2.0;
    b.held[1] = 3.0;
    b.n = 2;
    CHECK_OK(kplm_start(m));
    CHECK_ST(kplm_set_flush_hook(m, hand_over, &b), KPLM_ESTATE);
    for (int i = 0; i < 200 && msink_exports_ok(&ms) == 0; i++) test_sleep_ms(10);
    CHECK_MSG(msink_exports_ok(&ms) == 1, "the periodic flush did not export what the hook handed over");
    pthread_mutex_lock(&b.lock);
    CHECK_OK(b.last_put);
    CHECK_ST(b.nested_flush, KPLM_ESTATE);
    CHECK_ST(b.nested_close, KPLM_ESTATE);
    const tsnap *snap = find_snap(&ms.snaps, "Held", NULL, NULL, NULL);
    CHECK_SNAP(snap, 2, 5.0, 2.0, 3.0);

    /* At close's final flush puts are refused: the layer learns it. */
    b.held[0] = 9.0;
    b.n = 1;
    pthread_mutex_unlock(&b.lock);
    CHECK_OK(kplm_close(m));
    CHECK(b.calls >= 2);
    CHECK_ST(b.last_put, KPLM_ECLOSED);
    CHECK(msink_exports_ok(&ms) == 1);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

int main(void) {
    int failures = 0;
    RUN(batch_lands_in_its_second);
    RUN(bad_batches_record_nothing);
    RUN(eventful_sink_sees_each_value);
    RUN(flush_hook_puts_are_part_of_the_flush);
    return failures ? 1 : 0;
}
