/* Per-second buckets and the rolling window, driven by an injected clock. */
#include "test_support.h"

#include <string.h>

static kplm_manager *new_manager(tclock *clk, uint32_t window) {
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    cfg.window_seconds = window;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    return m;
}

static void rolling_window_and_eviction(void) {
    tclock clk;
    kplm_manager *m = new_manager(&clk, 5);
    tsnap_list l = {0};

    tclock_set(&clk, 100.25);
    CHECK_OK(kplm_put(m, "BufferingTime", 1.0, "s", NULL, NULL));
    tclock_set(&clk, 101.75);
    CHECK_OK(kplm_put(m, "BufferingTime", 2.0, "s", NULL, NULL));
    CHECK_OK(kplm_put(m, "BufferingTime", -3.0, "s", NULL, NULL));
    tclock_set(&clk, 103.0);
    CHECK_OK(kplm_put(m, "BufferingTime", 10.0, "s", NULL, NULL));

    /* Live seconds at 103.5 with a 5 s window: 99..103, all four puts. */
    tclock_set(&clk, 103.5);
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 4, 10.0, -3.0, 10.0);
    CHECK_WINDOW(&l.v[0], 100.0, 104.0);
    CHECK_STR(l.v[0].name, "BufferingTime");
    CHECK(l.v[0].ndims == 1);
    CHECK_STR(l.v[0].dim_name[0], "stream");
    CHECK_STR(l.v[0].dim_value[0], "s");

    /* 104.75: live seconds 100..104, second 100 is still in. */
    tclock_set(&clk, 104.75);
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 4, 10.0, -3.0, 10.0);
    CHECK_WINDOW(&l.v[0], 100.0, 104.0);

    /* 105.0: live seconds 101..105, second 100 is out. */
    tclock_set(&clk, 105.0);
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 3, 9.0, -3.0, 10.0);
    CHECK_WINDOW(&l.v[0], 101.0, 104.0);

    /* 106.5: live seconds 102..106: only the put at 103 is left. */
    tclock_set(&clk, 106.5);
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 1, 10.0, 10.0, 10.0);
    CHECK_WINDOW(&l.v[0], 103.0, 104.0);

    /* A new put widens the window again: [103, 107). */
    CHECK_OK(kplm_put(m, "BufferingTime", -7.5, "s", NULL, NULL));
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 2, 2.5, -7.5, 10.0);
    CHECK_WINDOW(&l.v[0], 103.0, 107.0);

    /* 108.0: live seconds 104..108: only the put at 106. */
    tclock_set(&clk, 108.0);
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 1, -7.5, -7.5, -7.5);
    CHECK_WINDOW(&l.v[0], 106.0, 107.0);

    /* 111.0: nothing live, the metric reports nothing. */
    tclock_set(&clk, 111.0);
    collect_snapshots(m, &l);
    CHECK(l.n == 0);

    /* And it comes back with a new put. */
    CHECK_OK(kplm_put(m, "BufferingTime", 0.5, "s", NULL, NULL));
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 1, 0.5, 0.5, 0.5);
    CHECK_WINDOW(&l.v[0], 111.0, 112.0);

    tsnap_list_clear(&l);
    kplm_free(m);
}

static void negative_values_min_max(void) {
    tclock clk;
    tclock_set(&clk, 50.0);
    kplm_manager *m = new_manager(&clk, 60);
    double vals[] = {-1.0, -5.0, -2.25, -0.5, -3.0};
    double sum = 0;
    for (int i = 0; i < 5; i++) {
        CHECK_OK(kplm_put(m, "Neg", vals[i], NULL, NULL, NULL));
        sum += vals[i];
        tclock_advance(&clk, 0.5);
    }
    CHECK_OK(kplm_put(m, "Mixed", -1e6, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "Mixed", 0.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "Mixed", 1e6, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "Single", -42.0, NULL, NULL, NULL));

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 3);
    CHECK_SNAP(find_snap(&l, "Neg", NULL, NULL, NULL), 5, sum, -5.0, -0.5);
    CHECK_WINDOW(find_snap(&l, "Neg", NULL, NULL, NULL), 50.0, 53.0);
    CHECK_SNAP(find_snap(&l, "Mixed", NULL, NULL, NULL), 3, 0.0, -1e6, 1e6);
    CHECK_SNAP(find_snap(&l, "Single", NULL, NULL, NULL), 1, -42.0, -42.0, -42.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void window_of_one_second(void) {
    tclock clk;
    tclock_set(&clk, 9.0);
    kplm_manager *m = new_manager(&clk, 1);
    tsnap_list l = {0};
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    tclock_set(&clk, 9.9990234375);
    CHECK_OK(kplm_put(m, "A", 2.0, NULL, NULL, NULL));
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 2, 3.0, 1.0, 2.0);
    CHECK_WINDOW(&l.v[0], 9.0, 10.0);
    tclock_set(&clk, 10.0);
    collect_snapshots(m, &l);
    CHECK(l.n == 0);
    CHECK_OK(kplm_put(m, "A", 4.0, NULL, NULL, NULL));
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 1, 4.0, 4.0, 4.0);
    CHECK_WINDOW(&l.v[0], 10.0, 11.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void default_window_is_60(void) {
    tclock clk;
    tclock_set(&clk, 1000.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    tsnap_list l = {0};
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    tclock_set(&clk, 1059.5);
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_WINDOW(&l.v[0], 1000.0, 1001.0);
    tclock_set(&clk, 1060.0);
    collect_snapshots(m, &l);
    CHECK(l.n == 0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void large_window_many_seconds(void) {
    tclock clk;
    tclock_set(&clk, 0.0);
    kplm_manager *m = new_manager(&clk, 3600);
    /* One put per second for 3700 seconds: the first 100 get evicted. */
    for (int i = 0; i < 3700; i++) {
        tclock_set(&clk, (double)i + 0.5);
        CHECK_OK(kplm_put(m, "Tick", (double)i, NULL, NULL, NULL));
    }
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    /* Live seconds: 100..3699. */
    double sum = 0;
    for (int i = 100; i < 3700; i++) sum += i;
    CHECK_SNAP(&l.v[0], 3600, sum, 100.0, 3699.0);
    CHECK_WINDOW(&l.v[0], 100.0, 3700.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

/* The clock's origin does not matter: large and fractional readings. */
static void large_clock_values(void) {
    tclock clk;
    tclock_set(&clk, 1e9 + 0.75);
    kplm_manager *m = new_manager(&clk, 10);
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    tclock_advance(&clk, 2.0);
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(&l.v[0], 2, 2.0, 1.0, 1.0);
    CHECK_WINDOW(&l.v[0], 1e9, 1e9 + 3.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static int stop_after_one(void *ud, const kplm_snapshot *s) {
    (void)s;
    (*(int *)ud)++;
    return 1;
}

static void visit_can_stop(void) {
    tclock clk;
    tclock_set(&clk, 5.0);
    kplm_manager *m = new_manager(&clk, 10);
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "B", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "C", 1.0, NULL, NULL, NULL));
    int n = 0;
    CHECK_OK(kplm_snapshots(m, stop_after_one, &n));
    CHECK(n == 1);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(rolling_window_and_eviction);
    RUN(negative_values_min_max);
    RUN(window_of_one_second);
    RUN(default_window_is_60);
    RUN(large_window_many_seconds);
    RUN(large_clock_values);
    RUN(visit_can_stop);
    return failures ? 1 : 0;
}
