/* timestamp_unix = wall time at export - (clock now - window_end). */
#include "test_support.h"

#include <math.h>
#include <string.h>
#include <time.h>

static void real_clock_close_to_now(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL));

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    double now = (double)time(NULL);
    CHECK(l.n == 1);
    printf("  snapshot window [%.3f, %.3f) timestamp_unix %.3f, time(NULL) %.0f\n",
           l.v[0].window_start, l.v[0].window_end, l.v[0].timestamp_unix, now);
    CHECK_MSG(fabs(l.v[0].timestamp_unix - now) <= 5.0,
              "snapshot timestamp_unix %.3f is not close to time(NULL) %.0f",
              l.v[0].timestamp_unix, now);
    CHECK_DEQ(l.v[0].window_end - l.v[0].window_start, 1.0);
    tsnap_list_clear(&l);

    CHECK_OK(kplm_flush(m));
    now = (double)time(NULL);
    CHECK(ms.snaps.n == 1);
    CHECK_MSG(fabs(ms.snaps.v[0].timestamp_unix - now) <= 5.0,
              "exported timestamp_unix %.3f is not close to time(NULL) %.0f",
              ms.snaps.v[0].timestamp_unix, now);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    msink_destroy(&ms);
}

static void injected_clock_offset(void) {
    tclock clk;
    tclock_set(&clk, 1000.5);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL)); /* bucket 1000, window_end 1001 */

    /* Clock now 1003.25: window_end lies 2.25 s in the past. */
    tclock_set(&clk, 1003.25);
    tsnap_list l = {0};
    double w0 = test_wall_now();
    collect_snapshots(m, &l);
    double w1 = test_wall_now();
    CHECK(l.n == 1);
    CHECK_WINDOW(&l.v[0], 1000.0, 1001.0);
    double ts = l.v[0].timestamp_unix;
    CHECK_MSG(ts >= w0 - 2.25 - 1.5 && ts <= w1 - 2.25 + 1.5,
              "snapshot timestamp_unix %.3f, expected about %.3f", ts, w0 - 2.25);
    tsnap_list_clear(&l);

    /* Same rule for an export; window_end in the future of the clock too. */
    tclock_set(&clk, 1000.75);
    w0 = test_wall_now();
    CHECK_OK(kplm_flush(m));
    w1 = test_wall_now();
    CHECK(ms.snaps.n == 1);
    ts = ms.snaps.v[0].timestamp_unix;
    CHECK_MSG(ts >= w0 + 0.25 - 1.5 && ts <= w1 + 0.25 + 1.5,
              "exported timestamp_unix %.3f, expected about %.3f", ts, w0 + 0.25);

    /* Data exported long after it was put carries its own time, not now. */
    CHECK_OK(kplm_put(m, "B", 1.0, NULL, NULL, NULL)); /* bucket 1000 */
    tclock_set(&clk, 1301.0);                           /* 300 s later */
    w0 = test_wall_now();
    CHECK_OK(kplm_flush(m));
    CHECK(ms.snaps.n == 2);
    ts = ms.snaps.v[1].timestamp_unix;
    CHECK_MSG(fabs(ts - (w0 - 300.0)) <= 1.5,
              "exported timestamp_unix %.3f, expected about %.3f", ts, w0 - 300.0);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    msink_destroy(&ms);
}

int main(void) {
    int failures = 0;
    RUN(real_clock_close_to_now);
    RUN(injected_clock_offset);
    return failures ? 1 : 0;
}
