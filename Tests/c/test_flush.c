/* Flush exports each observation exactly once: only data not yet exported,
 * one snapshot per key merged over its unexported seconds, kept and merged
 * again after a failed export, exported even once out of the window. */
#include "test_support.h"

#include <string.h>

typedef struct {
    tclock clk;
    msink ms;
    kplm_manager *m;
} fixture;

static void setup(fixture *f, uint32_t window) {
    tclock_set(&f->clk, 10.5);
    msink_init(&f->ms);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &f->clk);
    cfg.window_seconds = window;
    f->m = NULL;
    CHECK_OK(kplm_new(&cfg, &f->m));
    kplm_sink s = msink_sink(&f->ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(f->m, &s));
    CHECK_OK(kplm_start(f->m));
}

static void teardown(fixture *f) {
    msink_check_clean(&f->ms);
    kplm_free(f->m);
    msink_destroy(&f->ms);
}

static void nothing_new_no_export(void) {
    fixture f;
    setup(&f, 5);
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.export_calls == 0);
    CHECK_OK(kplm_put(f.m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.export_calls == 1);
    CHECK_OK(kplm_flush(f.m));
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.export_calls == 1);
    tclock_advance(&f.clk, 3.0);
    CHECK_OK(kplm_flush(f.m)); /* time passing is not new data */
    CHECK(f.ms.export_calls == 1);
    CHECK_OK(kplm_close(f.m)); /* nor for the final flush */
    CHECK(f.ms.export_calls == 1);
    CHECK(f.ms.closes == 1);
    teardown(&f);
}

static void only_unexported_data(void) {
    fixture f;
    setup(&f, 5);
    /* Second 10: 1 and 5. */
    CHECK_OK(kplm_put(f.m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(f.m, "A", 5.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.exports_ok == 1);
    CHECK(count_in_batch(&f.ms.snaps, 1) == 1);
    const tsnap *s = find_snap_in_batch(&f.ms.snaps, 1, "A", NULL, NULL, NULL);
    CHECK_SNAP(s, 2, 6.0, 1.0, 5.0);
    CHECK_WINDOW(s, 10.0, 11.0);

    /* More in the same second: only the new observation goes out, with its
     * own min and max. */
    tclock_set(&f.clk, 10.75);
    CHECK_OK(kplm_put(f.m, "A", 3.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.exports_ok == 2);
    s = find_snap_in_batch(&f.ms.snaps, 2, "A", NULL, NULL, NULL);
    CHECK_SNAP(s, 1, 3.0, 3.0, 3.0);
    CHECK_WINDOW(s, 10.0, 11.0);

    /* Several seconds and keys: one snapshot per key, merged, with the span
     * [first second, last second + 1) of what it carries. */
    tclock_set(&f.clk, 11.0);
    CHECK_OK(kplm_put(f.m, "A", 2.0, NULL, NULL, NULL));
    tclock_set(&f.clk, 12.5);
    CHECK_OK(kplm_put(f.m, "B", 7.0, "s", NULL, NULL));
    tclock_set(&f.clk, 13.25);
    CHECK_OK(kplm_put(f.m, "A", 4.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(f.m, "A", -4.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.exports_ok == 3);
    CHECK(count_in_batch(&f.ms.snaps, 3) == 2);
    s = find_snap_in_batch(&f.ms.snaps, 3, "A", NULL, NULL, NULL);
    CHECK_SNAP(s, 3, 2.0, -4.0, 4.0);
    CHECK_WINDOW(s, 11.0, 14.0);
    s = find_snap_in_batch(&f.ms.snaps, 3, "B", "s", NULL, NULL);
    CHECK_SNAP(s, 1, 7.0, 7.0, 7.0);
    CHECK_WINDOW(s, 12.0, 13.0);

    /* A key with nothing new is not in the batch. */
    CHECK_OK(kplm_put(f.m, "B", 1.0, "s", NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    CHECK(count_in_batch(&f.ms.snaps, 4) == 1);
    CHECK_SNAP(find_snap_in_batch(&f.ms.snaps, 4, "B", "s", NULL, NULL), 1, 1.0, 1.0, 1.0);

    /* Flushing does not empty the rolling window. */
    tsnap_list l = {0};
    collect_snapshots(f.m, &l);
    CHECK(l.n == 2);
    CHECK_SNAP(find_snap(&l, "A", NULL, NULL, NULL), 6, 11.0, -4.0, 5.0);
    CHECK_WINDOW(find_snap(&l, "A", NULL, NULL, NULL), 10.0, 14.0);
    CHECK_SNAP(find_snap(&l, "B", "s", NULL, NULL), 2, 8.0, 1.0, 7.0);
    tsnap_list_clear(&l);

    CHECK_OK(kplm_close(f.m));
    CHECK(f.ms.exports_ok == 4);
    teardown(&f);
}

static void failed_export_is_offered_again(void) {
    fixture f;
    setup(&f, 5);
    CHECK_OK(kplm_put(f.m, "A", 7.0, NULL, NULL, NULL)); /* second 10 */
    f.ms.fail_exports = 1;
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    CHECK(f.ms.export_calls == 1 && f.ms.exports_ok == 0);

    tclock_set(&f.clk, 11.5);
    CHECK_OK(kplm_put(f.m, "A", 8.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(f.m, "C", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.export_calls == 2 && f.ms.exports_ok == 1);
    CHECK(count_in_batch(&f.ms.snaps, 1) == 2);
    const tsnap *s = find_snap_in_batch(&f.ms.snaps, 1, "A", NULL, NULL, NULL);
    CHECK_SNAP(s, 2, 15.0, 7.0, 8.0);
    CHECK_WINDOW(s, 10.0, 12.0);
    CHECK_SNAP(find_snap_in_batch(&f.ms.snaps, 1, "C", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);

    /* Nothing left over: the next flush has nothing to do. */
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.export_calls == 2);

    /* Several failures in a row, then success: everything, once. */
    tclock_set(&f.clk, 12.0);
    CHECK_OK(kplm_put(f.m, "A", 1.0, NULL, NULL, NULL));
    f.ms.fail_exports = 3;
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    tclock_set(&f.clk, 13.0);
    CHECK_OK(kplm_put(f.m, "A", 2.0, NULL, NULL, NULL));
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    tclock_set(&f.clk, 14.0);
    CHECK_OK(kplm_put(f.m, "A", 4.0, NULL, NULL, NULL));
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    CHECK(f.ms.export_calls == 5 && f.ms.exports_ok == 1);
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.exports_ok == 2);
    s = find_snap_in_batch(&f.ms.snaps, 2, "A", NULL, NULL, NULL);
    CHECK_SNAP(s, 3, 7.0, 1.0, 4.0);
    CHECK_WINDOW(s, 12.0, 15.0);
    CHECK(count_in_batch(&f.ms.snaps, 2) == 1);

    /* A failed export with nothing new since: offered again as is. */
    CHECK_OK(kplm_put(f.m, "D", 9.0, NULL, NULL, NULL));
    f.ms.fail_exports = 1;
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    CHECK_OK(kplm_flush(f.m));
    CHECK_SNAP(find_snap_in_batch(&f.ms.snaps, 3, "D", NULL, NULL, NULL), 1, 9.0, 9.0, 9.0);
    CHECK(count_in_batch(&f.ms.snaps, 3) == 1);

    /* The final flush of close carries what a failed flush left. */
    CHECK_OK(kplm_put(f.m, "E", 1.0, NULL, NULL, NULL));
    f.ms.fail_exports = 1;
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    CHECK_OK(kplm_close(f.m));
    CHECK_SNAP(find_snap_in_batch(&f.ms.snaps, 4, "E", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    teardown(&f);
}

static void evicted_data_still_exported_once(void) {
    fixture f;
    setup(&f, 5);
    tclock_set(&f.clk, 16.0);
    CHECK_OK(kplm_put(f.m, "D", 1.0, NULL, NULL, NULL));
    tclock_set(&f.clk, 17.5);
    CHECK_OK(kplm_put(f.m, "D", 2.0, NULL, NULL, NULL));

    /* Far past the window (the interval is longer than the window). */
    tclock_set(&f.clk, 40.0);
    tsnap_list l = {0};
    collect_snapshots(f.m, &l);
    CHECK(l.n == 0);
    tsnap_list_clear(&l);

    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.exports_ok == 1);
    const tsnap *s = find_snap_in_batch(&f.ms.snaps, 1, "D", NULL, NULL, NULL);
    CHECK_SNAP(s, 2, 3.0, 1.0, 2.0);
    CHECK_WINDOW(s, 16.0, 18.0);
    CHECK_OK(kplm_flush(f.m));
    CHECK(f.ms.export_calls == 1);

    /* Partly in, partly out of the window at flush time. */
    tclock_set(&f.clk, 41.0);
    CHECK_OK(kplm_put(f.m, "D", 4.0, NULL, NULL, NULL));
    tclock_set(&f.clk, 48.0);
    CHECK_OK(kplm_put(f.m, "D", 8.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(f.m));
    s = find_snap_in_batch(&f.ms.snaps, 2, "D", NULL, NULL, NULL);
    CHECK_SNAP(s, 2, 12.0, 4.0, 8.0);
    CHECK_WINDOW(s, 41.0, 49.0);

    /* A failed export, then eviction, then success: still exported, once. */
    tclock_set(&f.clk, 50.0);
    CHECK_OK(kplm_put(f.m, "E", 3.0, NULL, NULL, NULL));
    f.ms.fail_exports = 1;
    CHECK_ST(kplm_flush(f.m), KPLM_ESINK);
    tclock_set(&f.clk, 100.0);
    CHECK_OK(kplm_flush(f.m));
    CHECK_SNAP(find_snap_in_batch(&f.ms.snaps, 3, "E", NULL, NULL, NULL), 1, 3.0, 3.0, 3.0);
    CHECK(count_in_batch(&f.ms.snaps, 3) == 1);

    /* Evicted data left for close's final flush. */
    tclock_set(&f.clk, 101.0);
    CHECK_OK(kplm_put(f.m, "F", 5.0, NULL, NULL, NULL));
    tclock_set(&f.clk, 500.0);
    CHECK_OK(kplm_close(f.m));
    CHECK_SNAP(find_snap_in_batch(&f.ms.snaps, 4, "F", NULL, NULL, NULL), 1, 5.0, 5.0, 5.0);
    CHECK_WINDOW(find_snap_in_batch(&f.ms.snaps, 4, "F", NULL, NULL, NULL), 101.0, 102.0);
    teardown(&f);
}

/* Totals over many flushes equal totals put, with puts landing in every
 * position relative to the flushes and the window. */
static void totals_over_many_flushes(void) {
    fixture f;
    setup(&f, 3);
    uint64_t count = 0;
    double sum = 0, mn = 1e300, mx = -1e300;
    for (int i = 0; i < 2000; i++) {
        double v = (double)((i * 37) % 101 - 50) * 0.25;
        CHECK_OK(kplm_put(f.m, "T", v, "s", NULL, NULL));
        count++;
        sum += v;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
        tclock_advance(&f.clk, 0.125 * (double)(i % 5));
        if (i % 7 == 0) f.ms.fail_exports = 1;
        if (i % 3 == 0) {
            kplm_status st = kplm_flush(f.m);
            CHECK(st == KPLM_OK || st == KPLM_ESINK);
        }
    }
    f.ms.fail_exports = 0;
    CHECK_OK(kplm_close(f.m));
    const tacc *a = msink_find_acc(&f.ms, "T|stream=s");
    CHECK(a != NULL);
    CHECK_U64(a->count, count);
    CHECK_DEQ(a->sum, sum);
    CHECK_DEQ(a->min, mn);
    CHECK_DEQ(a->max, mx);
    CHECK(f.ms.nacc == 1);
    teardown(&f);
}

int main(void) {
    int failures = 0;
    RUN(nothing_new_no_export);
    RUN(only_unexported_data);
    RUN(failed_export_is_offered_again);
    RUN(evicted_data_still_exported_once);
    RUN(totals_over_many_flushes);
    return failures ? 1 : 0;
}
