/* max_metrics: a new key beyond the cap is refused with KPLM_ELIMIT and
 * counted under KPLM_METRIC_REFUSED; existing keys keep working. */
#include "test_support.h"

#include <string.h>

static kplm_manager *new_manager(kplm_level level, uint32_t max, tclock *clk) {
    kplm_config cfg = test_config(level, clk);
    cfg.max_metrics = max;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    return m;
}

static void cap_and_refused_count(void) {
    tclock clk;
    tclock_set(&clk, 20.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, 3, &clk);
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(m, &s));

    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "B", 1.0, "s", NULL, NULL));
    kplm_metric *hc = NULL;
    CHECK_OK(kplm_metric_get(m, "C", NULL, "sh", NULL, &hc));
    CHECK_OK(kplm_metric_put(hc, 1.0));

    /* The 4th and 5th distinct keys. */
    CHECK_ST(kplm_put(m, "D", 1.0, NULL, NULL, NULL), KPLM_ELIMIT);
    CHECK_ST(kplm_put(m, "A", 1.0, "other-stream", NULL, NULL), KPLM_ELIMIT);

    /* Existing keys still accepted, by name and by handle. */
    CHECK_OK(kplm_put(m, "A", 2.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "B", 2.0, "s", NULL, NULL));
    CHECK_OK(kplm_metric_put(hc, 2.0));
    kplm_metric *ha = NULL;
    CHECK_OK(kplm_metric_get(m, "A", NULL, NULL, NULL, &ha));
    CHECK(ha != NULL);
    CHECK_OK(kplm_metric_put(ha, 4.0));

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK_MSG(l.n == 4, "%zu snapshots, expected A, B, C and " KPLM_METRIC_REFUSED, l.n);
    CHECK_SNAP(find_snap(&l, "A", NULL, NULL, NULL), 3, 7.0, 1.0, 4.0);
    CHECK_SNAP(find_snap(&l, "B", "s", NULL, NULL), 2, 3.0, 1.0, 2.0);
    CHECK_SNAP(find_snap(&l, "C", NULL, "sh", NULL), 2, 3.0, 1.0, 2.0);
    const tsnap *r = find_snap(&l, KPLM_METRIC_REFUSED, NULL, NULL, NULL);
    CHECK_SNAP(r, 2, 2.0, 1.0, 1.0);
    CHECK(r->ndims == 0);
    CHECK(find_snap(&l, "D", NULL, NULL, NULL) == NULL);
    CHECK(find_snap(&l, "A", "other-stream", NULL, NULL) == NULL);
    tsnap_list_clear(&l);

    /* The refused count is exported like any other metric. */
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 1);
    CHECK(count_in_batch(&ms.snaps, 1) == 4);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 1, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 2,
               2.0, 1.0, 1.0);

    /* A refused new key through kplm_metric_get: ELIMIT and a NULL handle. */
    kplm_metric *hf = (kplm_metric *)(uintptr_t)0x4000;
    CHECK_ST(kplm_metric_get(m, "F", NULL, NULL, NULL, &hf), KPLM_ELIMIT);
    CHECK(hf == NULL);

    /* More refusals after the flush, one through kplm_metric_get (counted
     * like a refused put, kplm.h) and one through kplm_put: only these two
     * are exported by the next flush. */
    CHECK_ST(kplm_put(m, "G", 1.0, NULL, NULL, NULL), KPLM_ELIMIT);
    CHECK_OK(kplm_close(m));
    CHECK(ms.exports_ok == 2);
    const tsnap *r2 = find_snap_in_batch(&ms.snaps, 2, KPLM_METRIC_REFUSED, NULL, NULL, NULL);
    CHECK_SNAP(r2, 2, 2.0, 1.0, 1.0);
    CHECK(find_snap_in_batch(&ms.snaps, 2, "G", NULL, NULL, NULL) == NULL);
    CHECK(find_snap_in_batch(&ms.snaps, 2, "F", NULL, NULL, NULL) == NULL);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

static void cap_of_one(void) {
    tclock clk;
    tclock_set(&clk, 20.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, 1, &clk);
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "N%d", i);
        CHECK_ST(kplm_put(m, name, 1.0, NULL, NULL, NULL), KPLM_ELIMIT);
    }
    /* The refused counter itself does not take a slot. */
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 2);
    CHECK_SNAP(find_snap(&l, "A", NULL, NULL, NULL), 2, 2.0, 1.0, 1.0);
    CHECK_SNAP(find_snap(&l, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 10, 10.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void summary_counts_coarse_keys(void) {
    tclock clk;
    tclock_set(&clk, 20.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_SUMMARY, 2, &clk);
    /* Shards and error codes are dropped: these are two keys. */
    CHECK_OK(kplm_put(m, "A", 1.0, "s", "sh1", "e1"));
    CHECK_OK(kplm_put(m, "A", 1.0, "s", "sh2", "e2"));
    CHECK_OK(kplm_put(m, "A", 1.0, "s", "sh3", NULL));
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, "sh3", NULL));
    CHECK_ST(kplm_put(m, "A", 1.0, "s2", "sh1", NULL), KPLM_ELIMIT);
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 3);
    CHECK_SNAP(find_snap(&l, "A", "s", NULL, NULL), 3, 3.0, 1.0, 1.0);
    CHECK_SNAP(find_snap(&l, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

/* The cap also holds under concurrent puts of many new keys. */
typedef struct {
    kplm_manager *m;
    int id;
    int ok, limited;
} worker;

static void *limit_worker(void *p) {
    worker *w = p;
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "K%d-%d", w->id, i);
        kplm_status st = kplm_put(w->m, name, 1.0, NULL, NULL, NULL);
        if (st == KPLM_OK)
            w->ok++;
        else if (st == KPLM_ELIMIT)
            w->limited++;
        else
            test_fail(__FILE__, __LINE__, "put returned %s", test_status_name(st));
    }
    return NULL;
}

static void cap_under_concurrency(void) {
    tclock clk;
    tclock_set(&clk, 20.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, 100, &clk);
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){m, i, 0, 0};
        CHECK(pthread_create(&t[i], NULL, limit_worker, &w[i]) == 0);
    }
    int ok = 0, limited = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        ok += w[i].ok;
        limited += w[i].limited;
    }
    CHECK_MSG(ok == 100, "%d new keys accepted with max_metrics 100", ok);
    CHECK(limited == 700);
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 101);
    CHECK_SNAP(find_snap(&l, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 700, 700.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(cap_and_refused_count);
    RUN(cap_of_one);
    RUN(summary_counts_coarse_keys);
    RUN(cap_under_concurrency);
    return failures ? 1 : 0;
}
