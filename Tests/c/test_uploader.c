/* The periodic uploader flushes on its own, on its own thread; it stops at
 * close. Only "it happened eventually" is checked, with generous timeouts. */
#include "test_support.h"

#include <string.h>

static int wait_for_exports(msink *ms, int n, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (msink_exports_ok(ms) >= n) return 1;
        test_sleep_ms(10);
    }
    return msink_exports_ok(ms) >= n;
}

static void uploads_periodically(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 100.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL));

    /* Nothing runs before start. */
    test_sleep_ms(300);
    CHECK(msink_export_calls(&ms) == 0);

    CHECK_OK(kplm_start(m));
    CHECK_MSG(wait_for_exports(&ms, 1, 5000), "no periodic export within 5 s");
    pthread_mutex_lock(&ms.lock);
    CHECK(!pthread_equal(ms.last_export_thread, pthread_self()));
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 1, "UserRecordsPut", "s", NULL, NULL), 1, 1.0,
               1.0, 1.0);
    pthread_mutex_unlock(&ms.lock);

    /* New data goes out with a later periodic flush, once. */
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "s", NULL, NULL));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 3.0, "s", NULL, NULL));
    CHECK_MSG(wait_for_exports(&ms, 2, 5000), "no second periodic export within 5 s");

    CHECK_OK(kplm_close(m));
    int after_close = msink_export_calls(&ms);
    CHECK(ms.closes == 1);
    const tacc *a = msink_find_acc(&ms, "UserRecordsPut|stream=s");
    CHECK(a != NULL);
    CHECK_U64(a->count, 3);
    CHECK_DEQ(a->sum, 6.0);

    /* Stopped: no export after close, even with time passing. */
    test_sleep_ms(400);
    CHECK(msink_export_calls(&ms) == after_close);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

/* close returns promptly even with a long interval (the uploader is woken,
 * not waited out) -- bounded by the watchdog, not timed. */
static void close_with_long_interval(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 3600.0 * 1000.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_close(m));
    CHECK(ms.exports_ok == 1 && ms.closes == 1);
    kplm_free(m);
    msink_destroy(&ms);
}

/* Flushes from the caller and from the uploader never overlap and never
 * export the same observation twice. */
static void manual_and_periodic_flushes(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 1.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    ms.keep = 0;
    kplm_sink s = msink_sink(&ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    for (int i = 0; i < 20000; i++) {
        CHECK_OK(kplm_put(m, "P", 0.5, NULL, NULL, NULL));
        if (i % 100 == 0) CHECK_OK(kplm_flush(m));
    }
    CHECK_OK(kplm_close(m));
    const tacc *a = msink_find_acc(&ms, "P");
    CHECK(a != NULL);
    CHECK_U64(a->count, 20000);
    CHECK_DEQ(a->sum, 10000.0);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

int main(void) {
    int failures = 0;
    RUN(uploads_periodically);
    RUN(close_with_long_interval);
    RUN(manual_and_periodic_flushes);
    return failures ? 1 : 0;
}
