/* Idle keys give their place back (SPEC §10): a key with no observation
 * inside its window (its newest observation second <= now second -
 * window_seconds, manager clock) and nothing pending is removed at a flush,
 * after that flush's export. Its place under max_metrics is free again; a
 * kplm_metric handle to it stays valid, and a put through it re-creates the
 * key, or returns KPLM_ELIMIT (counted under KPLM_METRIC_REFUSED) when the
 * cap is full. A key whose data a failed export kept is not idle. Every put
 * that returned KPLM_OK is exported exactly once, whatever the interleaving
 * with flushes and removals. */
#define _GNU_SOURCE
#include "test_support.h"

#include <string.h>
#include <time.h>

#define WINDOW 2

static kplm_manager *new_manager(uint32_t max, tclock *clk, msink *ms) {
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    cfg.max_metrics = max;
    cfg.window_seconds = WINDOW;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink_init(ms);
    kplm_sink s = msink_sink(ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    return m;
}

/* Exported totals of one key over every successful export (0 if none). */
static uint64_t exported_count(msink *ms, const char *name, const char *stream) {
    char kb[512];
    key_of_parts(name, stream, NULL, NULL, kb, sizeof kb);
    const tacc *a = msink_find_acc(ms, kb);
    return a ? a->count : 0;
}

static double exported_sum(msink *ms, const char *name, const char *stream) {
    char kb[512];
    key_of_parts(name, stream, NULL, NULL, kb, sizeof kb);
    const tacc *a = msink_find_acc(ms, kb);
    return a ? a->sum : 0.0;
}

/* Puts one observation to stream "<prefix><i>" of UserRecordsPut. */
static kplm_status put_stream(kplm_manager *m, const char *prefix, int i, double v) {
    char stream[32];
    snprintf(stream, sizeof stream, "%s%d", prefix, i);
    return kplm_put(m, "UserRecordsPut", v, stream, NULL, NULL);
}

/* a. A full cap of keys that went idle is free again after a flush. */
static void cap_freed_by_idle_keys(void) {
    tclock clk;
    tclock_set(&clk, 1000.0);
    msink ms;
    kplm_manager *m = new_manager(100, &clk, &ms);

    for (int i = 0; i < 100; i++) CHECK_OK(put_stream(m, "s", i, 1.0));
    CHECK_ST(put_stream(m, "s", 100, 1.0), KPLM_ELIMIT);
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 1);
    CHECK(count_in_batch(&ms.snaps, 1) == 101); /* 100 keys + the refused count */

    /* Still inside the window: nothing is idle, the cap stays full. */
    tclock_advance(&clk, WINDOW - 1);
    CHECK_OK(kplm_flush(m));
    CHECK_ST(put_stream(m, "t", 0, 1.0), KPLM_ELIMIT);

    /* Past the window, a flush (with only the refused count to export)
     * removes the 100 idle keys. */
    tclock_advance(&clk, 2.0);
    CHECK_OK(kplm_flush(m));
    for (int i = 0; i < 100; i++) {
        kplm_status st = put_stream(m, "t", i, 1.0);
        CHECK_MSG(st == KPLM_OK,
                  "new key t%d after the 100 idle keys' flush: %s (the idle keys kept "
                  "their places under max_metrics)",
                  i, test_status_name(st));
    }
    CHECK_ST(put_stream(m, "t", 100, 1.0), KPLM_ELIMIT);
    /* A removed key put by name again needs a place too. */
    CHECK_ST(put_stream(m, "s", 0, 1.0), KPLM_ELIMIT);

    CHECK_OK(kplm_close(m));
    for (int i = 0; i < 100; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "s%d", i);
        CHECK_U64(exported_count(&ms, "UserRecordsPut", stream), 1);
        snprintf(stream, sizeof stream, "t%d", i);
        CHECK_U64(exported_count(&ms, "UserRecordsPut", stream), 1);
    }
    CHECK_U64(exported_count(&ms, "UserRecordsPut", "s100"), 0);
    CHECK_U64(exported_count(&ms, "UserRecordsPut", "t100"), 0);
    CHECK_U64(exported_count(&ms, KPLM_METRIC_REFUSED, NULL), 4);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

static void *put_32_main(void *h) {
    return (void *)(intptr_t)kplm_metric_put((kplm_metric *)h, 32.0);
}

/* b. A handle to a removed key stays valid: a put through it re-creates
 * the key, or is refused (and counted) while the cap is full. */
static void handle_recreates_key(void) {
    tclock clk;
    tclock_set(&clk, 1000.0);
    msink ms;
    kplm_manager *m = new_manager(2, &clk, &ms);

    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "Handle", "hs", NULL, NULL, &h));
    CHECK(h != NULL);
    CHECK_OK(kplm_metric_put(h, 1.0));
    CHECK_OK(kplm_flush(m));
    CHECK(find_snap_in_batch(&ms.snaps, 1, "Handle", "hs", NULL, NULL) != NULL);

    /* Idle and exported: removed by this flush (nothing new to export). */
    tclock_advance(&clk, WINDOW + 1);
    CHECK_OK(kplm_flush(m));

    /* Both places are free: two new keys fit. */
    CHECK_OK(kplm_put(m, "K0", 1.0, NULL, NULL, NULL));
    kplm_status st = kplm_put(m, "K1", 1.0, NULL, NULL, NULL);
    CHECK_MSG(st == KPLM_OK, "2nd new key after the handle's key went idle: %s (the idle "
              "key kept its place)", test_status_name(st));

    /* The handle's key is gone and the cap is full of live keys. */
    CHECK_ST(kplm_metric_put(h, 2.0), KPLM_ELIMIT);
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK_SNAP(find_snap(&l, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    CHECK(find_snap(&l, "Handle", "hs", NULL, NULL) == NULL);
    tsnap_list_clear(&l);
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 2);
    CHECK(find_snap_in_batch(&ms.snaps, 2, "Handle", "hs", NULL, NULL) == NULL);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 2, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 1, 1.0,
               1.0, 1.0);

    /* K0 and K1 go idle; the handle re-creates its key, a name put
     * re-creates K0, and the cap is full again. */
    tclock_advance(&clk, WINDOW + 1);
    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_metric_put(h, 4.0));
    CHECK_OK(kplm_metric_put(h, 8.0));
    CHECK_OK(kplm_put(m, "K0", 2.0, NULL, NULL, NULL));
    CHECK_ST(kplm_put(m, "K1", 1.0, NULL, NULL, NULL), KPLM_ELIMIT);
    collect_snapshots(m, &l);
    CHECK_SNAP(find_snap(&l, "Handle", "hs", NULL, NULL), 2, 12.0, 4.0, 8.0);
    tsnap_list_clear(&l);
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 3);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 3, "Handle", "hs", NULL, NULL), 2, 12.0, 4.0, 8.0);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 3, "K0", NULL, NULL, NULL), 1, 2.0, 2.0, 2.0);
    CHECK(find_snap_in_batch(&ms.snaps, 3, "K1", NULL, NULL, NULL) == NULL);

    /* Again, from another thread's cell of the same handle, and a handle
     * got anew for a removed key works like the old one. */
    tclock_advance(&clk, WINDOW + 1);
    CHECK_OK(kplm_flush(m));
    kplm_metric *h0 = NULL;
    CHECK_OK(kplm_metric_get(m, "K0", NULL, NULL, NULL, &h0));
    CHECK(h0 != NULL);
    CHECK_OK(kplm_metric_put(h0, 16.0));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, put_32_main, h) == 0);
    void *r = NULL;
    CHECK(pthread_join(t, &r) == 0);
    CHECK_ST((kplm_status)(intptr_t)r, KPLM_OK);
    CHECK_ST(kplm_put(m, "K1", 1.0, NULL, NULL, NULL), KPLM_ELIMIT);

    CHECK_OK(kplm_close(m));
    CHECK_U64(exported_count(&ms, "Handle", "hs"), 4);
    CHECK_DEQ(exported_sum(&ms, "Handle", "hs"), 45.0);
    CHECK_U64(exported_count(&ms, "K0", NULL), 3);
    CHECK_DEQ(exported_sum(&ms, "K0", NULL), 19.0);
    CHECK_U64(exported_count(&ms, "K1", NULL), 1);
    CHECK_U64(exported_count(&ms, KPLM_METRIC_REFUSED, NULL), 3);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

/* c. Data a failed export kept is pending: its key is not idle, whatever
 * the clock says, until a flush exported it. */
static void failed_export_keeps_key(void) {
    tclock clk;
    tclock_set(&clk, 1000.0);
    msink ms;
    kplm_manager *m = new_manager(1, &clk, &ms);

    CHECK_OK(kplm_put(m, "A", 3.0, NULL, NULL, NULL));
    pthread_mutex_lock(&ms.lock);
    ms.fail_exports = -1;
    pthread_mutex_unlock(&ms.lock);
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    tclock_advance(&clk, WINDOW + 1);
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    tclock_advance(&clk, WINDOW + 1);
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    /* A is idle by the clock but still pending: it keeps its place. */
    CHECK_ST(kplm_put(m, "B", 1.0, NULL, NULL, NULL), KPLM_ELIMIT);
    CHECK(ms.exports_ok == 0);

    pthread_mutex_lock(&ms.lock);
    ms.fail_exports = 0;
    pthread_mutex_unlock(&ms.lock);
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 1);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 1, "A", NULL, NULL, NULL), 1, 3.0, 3.0, 3.0);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 1, KPLM_METRIC_REFUSED, NULL, NULL, NULL), 1, 1.0,
               1.0, 1.0);

    /* Exported now, and idle: the next flush (at the latest) frees the place. */
    CHECK_OK(kplm_flush(m));
    kplm_status st = kplm_put(m, "B", 5.0, NULL, NULL, NULL);
    CHECK_MSG(st == KPLM_OK, "new key after the idle key's data was exported: %s",
              test_status_name(st));
    CHECK_ST(kplm_put(m, "A", 1.0, NULL, NULL, NULL), KPLM_ELIMIT);

    CHECK_OK(kplm_close(m));
    CHECK_U64(exported_count(&ms, "A", NULL), 1);
    CHECK_DEQ(exported_sum(&ms, "A", NULL), 3.0);
    CHECK_U64(exported_count(&ms, "B", NULL), 1);
    CHECK_U64(exported_count(&ms, KPLM_METRIC_REFUSED, NULL), 2);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

/* d. Churn under concurrency (the TSan target): two threads put by name
 * over a rotating set of NKEYS keys, one through handles got at the start
 * (keys shared with the others), while one thread advances the clock and
 * flushes (and the uploader flushes too), with a cap well below NKEYS. */
#define NKEYS 400
#define NHANDLES 32
#define CAP 64
#define NPUTS 400000
#define NPUTTERS 3

typedef struct {
    kplm_manager *m;
    int id;
    kplm_metric **handles;
    uint64_t ok[NKEYS];
    uint64_t refused;
    uint64_t puts;
} churner;

static _Atomic long progress;
static _Atomic int churners_done;
static tclock churn_clock;
/* The variant on the system clock (churn_stress_system_clock): puts take
 * their common case (writer cells, the key index's read sections), keys
 * rotate by wall time, and the test runs for SYSTEM_SECONDS. */
static int churn_on_system_clock;
#define SYSTEM_SECONDS 3.5

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *churner_main(void *p) {
    churner *w = p;
    double start = wall_now();
    for (int i = 0; churn_on_system_clock || i < NPUTS; i++) {
        /* System clock: a new set of 10 keys (handles: 2) every 250 ms, so
         * each set goes idle for a whole window once the threads move on. */
        int set = 0;
        if (churn_on_system_clock && i % 64 == 0) {
            double elapsed = wall_now() - start;
            if (elapsed > SYSTEM_SECONDS) break;
        }
        if (churn_on_system_clock) set = (int)((wall_now() - start) / 0.25);
        kplm_status st;
        int k;
        if (w->handles) {
            k = churn_on_system_clock ? (set * 2 + i % 2) % NHANDLES : (i / 20) % NHANDLES;
            st = kplm_metric_put(w->handles[k], 1.0);
        } else {
            k = churn_on_system_clock ? (set * 10 + i % 10 + w->id * 200) % NKEYS
                                      : (i / 50 + w->id * 200) % NKEYS;
            char stream[16];
            snprintf(stream, sizeof stream, "k%d", k);
            st = kplm_put(w->m, "Churn", 1.0, stream, NULL, NULL);
        }
        if (st == KPLM_OK)
            w->ok[k]++;
        else if (st == KPLM_ELIMIT)
            w->refused++;
        else
            test_fail(__FILE__, __LINE__, "churner %d put #%d returned %s", w->id, i,
                      test_status_name(st));
        if (i % 64 == 63) atomic_fetch_add(&progress, 64);
        w->puts++;
    }
    atomic_fetch_add(&churners_done, 1);
    return NULL;
}

typedef struct {
    kplm_manager *m;
    long flushes, failed;
} churn_flusher;

static void *churn_flush_main(void *p) {
    churn_flusher *f = p;
    long seen = 0;
    while (atomic_load(&churners_done) < NPUTTERS) {
        if (churn_on_system_clock) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
            kplm_status st = kplm_flush(f->m);
            CHECK_MSG(st == KPLM_OK || st == KPLM_ESINK, "kplm_flush returned %s", test_status_name(st));
            f->flushes++;
            continue;
        }
        /* Paced by the putters, not by time: an eighth of a second of the
         * manager clock per 500 puts, however the threads are scheduled,
         * so each by-name thread crosses about 27 keys per window second
         * (with the handles' 32, above CAP) and keys keep going idle. */
        long eighths = (atomic_load(&progress) - seen) / 500;
        if (eighths == 0) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
            continue;
        }
        seen += eighths * 500;
        tclock_advance(&churn_clock, 0.125 * (double)eighths);
        kplm_status st = kplm_flush(f->m);
        CHECK_MSG(st == KPLM_OK || st == KPLM_ESINK, "kplm_flush returned %s",
                  test_status_name(st));
        f->flushes++;
        if (st == KPLM_ESINK) f->failed++;
    }
    return NULL;
}

static void churn_stress(void) {
    tclock_set(&churn_clock, 1000.0);
    atomic_store(&progress, 0);
    atomic_store(&churners_done, 0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &churn_clock);
    if (churn_on_system_clock) cfg.clock = NULL;
    cfg.max_metrics = CAP;
    cfg.window_seconds = 1;
    cfg.upload_interval_ms = 3.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    ms.keep = 0;
    kplm_sink s = msink_sink(&ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    static kplm_metric *handles[NHANDLES];
    for (int k = 0; k < NHANDLES; k++) {
        char stream[16];
        snprintf(stream, sizeof stream, "k%d", k);
        CHECK_OK(kplm_metric_get(m, "Churn", stream, NULL, NULL, &handles[k]));
        CHECK(handles[k] != NULL);
    }

    static churner w[NPUTTERS];
    pthread_t tp[NPUTTERS], tf;
    churn_flusher f = {m, 0, 0};
    for (int i = 0; i < NPUTTERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].m = m;
        w[i].id = i;
        w[i].handles = i == NPUTTERS - 1 ? handles : NULL;
        CHECK(pthread_create(&tp[i], NULL, churner_main, &w[i]) == 0);
    }
    CHECK(pthread_create(&tf, NULL, churn_flush_main, &f) == 0);
    for (int i = 0; i < NPUTTERS; i++) CHECK(pthread_join(tp[i], NULL) == 0);
    CHECK(pthread_join(tf, NULL) == 0);
    CHECK_OK(kplm_close(m));

    uint64_t total_ok = 0, refused = 0;
    int accepted_keys = 0;
    for (int i = 0; i < NPUTTERS; i++) refused += w[i].refused;
    for (int k = 0; k < NKEYS; k++) {
        uint64_t want = 0;
        for (int i = 0; i < NPUTTERS; i++) want += w[i].ok[k];
        total_ok += want;
        if (want) accepted_keys++;
        char stream[16];
        snprintf(stream, sizeof stream, "k%d", k);
        uint64_t got = exported_count(&ms, "Churn", stream);
        CHECK_MSG(got == want, "key Churn/%s: exported count %llu, OK puts %llu", stream,
                  (unsigned long long)got, (unsigned long long)want);
        CHECK_DEQ(exported_sum(&ms, "Churn", stream), (double)want);
    }
    uint64_t got_refused = exported_count(&ms, KPLM_METRIC_REFUSED, NULL);
    printf("  clock advanced %.2f s; %ld flushes from the test (%ld ESINK), %d export "
           "calls; %llu puts OK over %d distinct keys (cap %d), %llu refused (%llu exported)\n",
           tclock_now(&churn_clock) - 1000.0, f.flushes, f.failed, ms.export_calls,
           (unsigned long long)total_ok, accepted_keys, CAP, (unsigned long long)refused,
           (unsigned long long)got_refused);
    CHECK_MSG(got_refused == refused, "%llu puts refused, %llu exported under %s",
              (unsigned long long)refused, (unsigned long long)got_refused,
              KPLM_METRIC_REFUSED);
    uint64_t puts = 0;
    for (int i = 0; i < NPUTTERS; i++) puts += w[i].puts;
    CHECK_U64(total_ok + refused, puts);
    /* Keys came and went: far more distinct keys were accepted than the cap
     * holds at once (a permanent cap accepts at most CAP). */
    CHECK_MSG(accepted_keys > 2 * CAP, "only %d distinct keys accepted with a cap of %d",
              accepted_keys, CAP);
    CHECK_MSG(refused > 0, "the cap was never reached: the test did not exercise ELIMIT");
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

static void churn_stress_system_clock(void) { churn_stress(); }

int main(void) {
    int failures = 0;
    RUN(cap_freed_by_idle_keys);
    RUN(handle_recreates_key);
    RUN(failed_export_keeps_key);
    RUN_T(churn_stress, 120);
    churn_on_system_clock = 1;
    RUN_T(churn_stress_system_clock, 120);
    return failures ? 1 : 0;
}
