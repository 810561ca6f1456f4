/* States new -> started -> closed, and what each call does in each state. */
#include "test_support.h"

#include <string.h>

/* A DETAILED manager on clk, set to `now`. */
static kplm_manager *new_detailed(tclock *clk, double now) {
    tclock_set(clk, now);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    return m;
}

/* new_detailed, with a fresh memory sink ms (*s: open, record and close
 * callbacks if `callbacks`, else export only) set as its sink. */
static kplm_manager *new_with_msink(tclock *clk, double now, msink *ms, kplm_sink *s, int callbacks) {
    kplm_manager *m = new_detailed(clk, now);
    msink_init(ms);
    *s = msink_sink(ms, callbacks, callbacks, callbacks);
    CHECK_OK(kplm_set_sink(m, s));
    return m;
}

/* The sink calls so far: opens, export calls, closes, records. */
#define CHECK_CALLS(ms, o, e, c, r)                                                        \
    CHECK_MSG((ms)->opens == (o) && (ms)->export_calls == (e) && (ms)->closes == (c) &&   \
                  (ms)->records == (r),                                                    \
              "sink calls (opens, exports, closes, records) (%d, %d, %d, %ld), expected (%d, %d, %d, %d)", \
              (ms)->opens, (ms)->export_calls, (ms)->closes, (ms)->records, (o), (e), (c), (r))

/* A closed manager refuses a put (and one through h, unless NULL), flush,
 * start and set_sink (of s, unless NULL). */
static void check_closed(kplm_manager *m, kplm_metric *h, const kplm_sink *s) {
    CHECK_ST(kplm_put(m, "UserRecordsPut", 8.0, "s", NULL, NULL), KPLM_ECLOSED);
    if (h) CHECK_ST(kplm_metric_put(h, 16.0), KPLM_ECLOSED);
    CHECK_ST(kplm_flush(m), KPLM_ECLOSED);
    CHECK_ST(kplm_start(m), KPLM_ESTATE);
    if (s) CHECK_ST(kplm_set_sink(m, s), KPLM_ESTATE);
}

/* kplm_snapshots(m) shows one line: UserRecordsPut of `stream` with these
 * statistics. */
static void check_one_line(kplm_manager *m, const char *stream, uint64_t count, double sum, double min,
                           double max) {
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK_U64(l.n, 1);
    CHECK_SNAP(find_snap(&l, "UserRecordsPut", stream, NULL, NULL), count, sum, min, max);
    tsnap_list_clear(&l);
}

static void full_cycle(void) {
    tclock clk;
    kplm_manager *m = new_detailed(&clk, 100.0);
    msink first, ms;
    msink_init(&first);
    msink_init(&ms);

    /* put works before start, and calls no record. */
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsPut", "s", NULL, NULL, &h));
    CHECK(h != NULL);
    CHECK_OK(kplm_metric_put(h, 2.0));

    /* flush before start is a state error. */
    CHECK_ST(kplm_flush(m), KPLM_ESTATE);

    /* set_sink before start replaces any earlier sink. */
    kplm_sink s1 = msink_sink(&first, 1, 1, 1);
    kplm_sink s2 = msink_sink(&ms, 1, 1, 1);
    CHECK_OK(kplm_set_sink(m, &s1));
    CHECK_OK(kplm_set_sink(m, &s2));
    memset(&s2, 0, sizeof s2); /* the sink struct is copied */

    CHECK(ms.records == 0 && ms.opens == 0);
    CHECK_OK(kplm_start(m));
    CHECK(ms.opens == 1);
    CHECK(first.opens == 0);

    /* Started: no more sink changes, no second start. */
    kplm_sink s3 = msink_sink(&first, 1, 1, 1);
    CHECK_ST(kplm_set_sink(m, &s3), KPLM_ESTATE);
    CHECK_ST(kplm_start(m), KPLM_ESTATE);
    CHECK(ms.opens == 1);

    /* The data put before start is exported by the first flush. */
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 1);
    CHECK(ms.snaps.n == 1);
    CHECK_SNAP(find_snap(&ms.snaps, "UserRecordsPut", "s", NULL, NULL), 2, 3.0, 1.0, 2.0);

    /* Something new for the final flush of close. */
    CHECK_OK(kplm_put(m, "UserRecordsPut", 4.0, "s", NULL, NULL));
    CHECK(ms.records == 1);
    CHECK_OK(kplm_close(m));
    CHECK(ms.exports_ok == 2);
    CHECK(ms.closes == 1);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 2, "UserRecordsPut", "s", NULL, NULL), 1, 4.0,
               4.0, 4.0);

    /* Idempotent close: OK, no sink call. */
    CHECK_OK(kplm_close(m));
    CHECK_OK(kplm_close(m));
    CHECK(ms.closes == 1 && ms.exports_ok == 2 && ms.opens == 1);

    /* Closed: puts refused and change nothing. */
    check_closed(m, h, &s3);
    CHECK_ST(kplm_put(m, "Other", 8.0, NULL, NULL, NULL), KPLM_ECLOSED);
    kplm_metric *h2 = (kplm_metric *)(uintptr_t)0x3000;
    CHECK_ST(kplm_metric_get(m, "UserRecordsPut", "s", NULL, NULL, &h2), KPLM_ECLOSED);
    CHECK(h2 == NULL);
    h2 = (kplm_metric *)(uintptr_t)0x3000;
    CHECK_ST(kplm_metric_get(m, "Brand new", NULL, NULL, NULL, &h2), KPLM_ECLOSED);
    CHECK(h2 == NULL);
    CHECK(ms.records == 1);

    /* Snapshots still report the retained window. */
    check_one_line(m, "s", 3, 7.0, 1.0, 4.0);

    kplm_free(m);
    CHECK(ms.closes == 1 && ms.exports_ok == 2);
    CHECK_CALLS(&first, 0, 0, 0, 0);
    msink_check_clean(&ms);
    msink_destroy(&first);
    msink_destroy(&ms);
}

static void close_before_start(void) {
    tclock clk;
    msink ms;
    kplm_sink s;
    kplm_manager *m = new_with_msink(&clk, 7.5, &ms, &s, 1);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 5.0, NULL, NULL, NULL));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsPut", NULL, NULL, NULL, &h));

    CHECK_OK(kplm_close(m));
    CHECK_CALLS(&ms, 0, 0, 0, 0);
    CHECK_OK(kplm_close(m));

    CHECK_ST(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL), KPLM_ECLOSED);
    check_closed(m, h, &s);

    check_one_line(m, NULL, 1, 5.0, 5.0, 5.0);

    kplm_free(m);
    CHECK_CALLS(&ms, 0, 0, 0, 0);
    msink_destroy(&ms);
}

static void open_failure_then_retry(void) {
    tclock clk;
    msink ms;
    kplm_sink s;
    kplm_manager *m = new_with_msink(&clk, 1.0, &ms, &s, 1);
    ms.fail_opens = 2;

    CHECK_ST(kplm_start(m), KPLM_ESINK);
    CHECK(ms.opens == 1 && ms.closes == 0);
    /* Not started: flush is a state error, puts are accepted without record. */
    CHECK_ST(kplm_flush(m), KPLM_ESTATE);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL));
    CHECK(ms.records == 0);
    /* Still "new": the sink may even be replaced. */
    CHECK_OK(kplm_set_sink(m, &s));

    CHECK_ST(kplm_start(m), KPLM_ESINK);
    CHECK(ms.opens == 2 && ms.closes == 0);
    CHECK_OK(kplm_start(m));
    CHECK(ms.opens == 3);
    CHECK_ST(kplm_start(m), KPLM_ESTATE);

    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, NULL, NULL, NULL));
    CHECK(ms.records == 1);
    CHECK_OK(kplm_close(m));
    CHECK(ms.closes == 1);
    CHECK(ms.exports_ok == 1);
    CHECK_SNAP(find_snap(&ms.snaps, "UserRecordsPut", NULL, NULL, NULL), 2, 3.0, 1.0, 2.0);
    kplm_free(m);
    CHECK(ms.opens == 3 && ms.closes == 1);
    msink_check_clean(&ms);
    msink_destroy(&ms);
}

static void open_failure_then_close(void) {
    tclock clk;
    msink ms;
    kplm_sink s;
    kplm_manager *m = new_with_msink(&clk, 1.0, &ms, &s, 1);
    ms.fail_opens = 1;
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL));
    CHECK_ST(kplm_start(m), KPLM_ESINK);
    /* Never started: close calls no sink function (no close for a failed open). */
    CHECK_OK(kplm_close(m));
    CHECK_CALLS(&ms, 1, 0, 0, 0);
    CHECK_ST(kplm_start(m), KPLM_ESTATE);
    kplm_free(m);
    CHECK_CALLS(&ms, 1, 0, 0, 0);
    msink_destroy(&ms);
}

static void final_export_failure(void) {
    tclock clk;
    msink ms;
    kplm_sink s;
    kplm_manager *m = new_with_msink(&clk, 1.0, &ms, &s, 1);
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL));
    ms.fail_exports = -1;
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    CHECK(ms.export_calls == 1);
    CHECK(ms.closes == 0); /* the data is kept for a later close (SPEC §9) */
    /* The manager is closed all the same. */
    check_closed(m, NULL, &s);
    /* A second close retries the export (it fails again here). */
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    CHECK(ms.export_calls == 2 && ms.closes == 0);
    /* free tries once more, then discards and closes the sink, once. */
    kplm_free(m);
    CHECK(ms.export_calls == 3 && ms.closes == 1);
    msink_destroy(&ms);
}

static void free_closes_first(void) {
    tclock clk;
    msink ms;
    kplm_sink s;
    kplm_manager *m = new_with_msink(&clk, 1.0, &ms, &s, 1);
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.0, NULL, NULL, NULL));
    kplm_free(m); /* no close: free closes, with its final flush */
    CHECK(ms.exports_ok == 1);
    CHECK(ms.closes == 1);
    CHECK_SNAP(find_snap(&ms.snaps, "UserRecordsPut", NULL, NULL, NULL), 1, 3.0, 3.0, 3.0);
    msink_destroy(&ms);

    /* free of a manager never started, and of a NONE manager. */
    m = new_detailed(&clk, 1.0);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.0, NULL, NULL, NULL));
    kplm_free(m);
    CHECK_OK(kplm_new(NULL, &m));
    CHECK_OK(kplm_start(m));
    kplm_free(m);
}

/* Without kplm_set_sink the manager uses a null sink: every call works. */
static void default_null_sink(void) {
    tclock clk;
    kplm_manager *m = new_detailed(&clk, 1.0);
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.0, NULL, NULL, NULL));
    CHECK_OK(kplm_close(m));
    check_one_line(m, NULL, 2, 6.0, 3.0, 3.0);
    kplm_free(m);
}

/* Sink without the optional callbacks. */
static void minimal_sink(void) {
    tclock clk;
    msink ms;
    kplm_sink s;
    kplm_manager *m = new_with_msink(&clk, 1.0, &ms, &s, 0);
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.0, NULL, NULL, NULL));
    CHECK_OK(kplm_close(m));
    CHECK(ms.exports_ok == 1);
    CHECK_CALLS(&ms, 0, 1, 0, 0);
    kplm_free(m);
    msink_destroy(&ms);
}

int main(void) {
    int failures = 0;
    RUN(full_cycle);
    RUN(close_before_start);
    RUN(open_failure_then_retry);
    RUN(open_failure_then_close);
    RUN(final_export_failure);
    RUN(free_closes_first);
    RUN(default_null_sink);
    RUN(minimal_sink);
    return failures ? 1 : 0;
}
