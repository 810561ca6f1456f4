/* Exactness under concurrency: 8 threads put (by name and by handle) while
 * another flushes in a loop, another takes snapshots, another advances an
 * injected clock across many seconds (evicting buckets from a short window)
 * and the uploader runs too. After close, the totals the sink received per
 * key (count, sum, min, max) must equal exactly what was put. */
#define _GNU_SOURCE
#include "test_support.h"

#include <math.h>
#include <string.h>
#include <time.h>

/* Eight: writer indices past the first four too (their cells are in the
 * header line's overflow table; a put by names finds any writer's cell from
 * the key index entry's cells bits). */
#define NPUTTERS 8
#define NPUTS 25000
#define NKEYS 8

typedef struct {
    const char *name, *stream, *shard, *ec;
} key;

static const key keys[NKEYS] = {
    {"UserRecordsPut", "stream-a", "shardId-000000000000", NULL},
    {"UserRecordsPut", "stream-a", "shardId-000000000001", NULL},
    {"UserRecordsDataPut", "stream-a", "shardId-000000000000", NULL},
    {"UserRecordsDataPut", "stream-b", NULL, NULL},
    {"ErrorsByCode", "stream-a", "shardId-000000000000", "ProvisionedThroughputExceeded"},
    {"ErrorsByCode", "stream-b", NULL, "InternalFailure"},
    {"BufferingTime", "stream-a", NULL, NULL},
    {"BufferingTime", NULL, NULL, NULL},
};

typedef struct {
    uint64_t count;
    double sum, min, max;
} totals;

typedef struct {
    kplm_manager *m;
    int id;
    totals t[NKEYS];
    kplm_metric *h[NKEYS];
} putter;

static tclock clk;
static _Atomic int putters_done;

/* Exactly representable values: integers up to 4095 and quarters in
 * [-64, 64); sums stay far below 2^53 / 4. */
static double value_for(int thread, int i, int k) {
    unsigned x = (unsigned)(i * 2654435761u + (unsigned)thread * 40503u + (unsigned)k * 977u);
    if (k % 2 == 0) return (double)(x % 4096u);
    return ((double)(int)(x % 512u) - 256.0) * 0.25;
}

static void *putter_main(void *p) {
    putter *w = p;
    for (int k = 0; k < NKEYS; k++) {
        w->t[k] = (totals){0, 0.0, INFINITY, -INFINITY};
        CHECK_OK(kplm_metric_get(w->m, keys[k].name, keys[k].stream, keys[k].shard,
                                 keys[k].ec, &w->h[k]));
        CHECK(w->h[k] != NULL);
    }
    for (int i = 0; i < NPUTS; i++) {
        int k = (i + w->id * 3) % NKEYS;
        double v = value_for(w->id, i, k);
        kplm_status st;
        if ((i / 3 + w->id) % 2 == 0)
            st = kplm_put(w->m, keys[k].name, v, keys[k].stream, keys[k].shard, keys[k].ec);
        else
            st = kplm_metric_put(w->h[k], v);
        CHECK_MSG(st == KPLM_OK, "thread %d put #%d returned %s", w->id, i,
                  test_status_name(st));
        /* The putters move the clock too, so that it crosses many seconds
         * however the clock thread gets scheduled. */
        if (i % 2500 == 2499) tclock_advance(&clk, 0.125);
        totals *t = &w->t[k];
        t->count++;
        t->sum += v;
        if (v < t->min) t->min = v;
        if (v > t->max) t->max = v;
    }
    atomic_fetch_add(&putters_done, 1);
    return NULL;
}

static void *clock_main(void *p) {
    (void)p;
    while (atomic_load(&putters_done) < NPUTTERS) {
        tclock_advance(&clk, 0.125);
        struct timespec ts = {0, 200000}; /* 0.2 ms */
        nanosleep(&ts, NULL);
    }
    return NULL;
}

typedef struct {
    kplm_manager *m;
    long flushes, failed;
} flusher;

static void *flush_main(void *p) {
    flusher *f = p;
    while (atomic_load(&putters_done) < NPUTTERS) {
        kplm_status st = kplm_flush(f->m);
        CHECK_MSG(st == KPLM_OK || st == KPLM_ESINK, "kplm_flush returned %s",
                  test_status_name(st));
        f->flushes++;
        if (st == KPLM_ESINK) f->failed++;
    }
    return NULL;
}

static int check_visit(void *ud, const kplm_snapshot *s) {
    (void)ud;
    CHECK(s->count > 0);
    CHECK(s->min <= s->max);
    CHECK(s->window_start < s->window_end);
    /* A 3 s window: a put that read the clock after the snapshot did is
     * left for a later snapshot, so the span never exceeds the window. */
    CHECK(s->window_end - s->window_start <= 3.0);
    CHECK(isfinite(s->sum));
    return 0;
}

static void *snapshot_main(void *p) {
    kplm_manager *m = p;
    long n = 0;
    while (atomic_load(&putters_done) < NPUTTERS) {
        CHECK_OK(kplm_snapshots(m, check_visit, NULL));
        if (++n % 16 == 0) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void run(int fail_every, int eventful) {
    tclock_set(&clk, 1000.0);
    atomic_store(&putters_done, 0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    cfg.window_seconds = 3;
    cfg.upload_interval_ms = 2.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    ms.keep = 0;
    ms.fail_every = fail_every;
    kplm_sink s = msink_sink(&ms, 1, eventful, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    static putter w[NPUTTERS];
    pthread_t tp[NPUTTERS], tc, tf, ts;
    flusher f = {m, 0, 0};
    for (int i = 0; i < NPUTTERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].m = m;
        w[i].id = i;
        CHECK(pthread_create(&tp[i], NULL, putter_main, &w[i]) == 0);
    }
    CHECK(pthread_create(&tc, NULL, clock_main, NULL) == 0);
    CHECK(pthread_create(&tf, NULL, flush_main, &f) == 0);
    CHECK(pthread_create(&ts, NULL, snapshot_main, m) == 0);
    for (int i = 0; i < NPUTTERS; i++) CHECK(pthread_join(tp[i], NULL) == 0);
    CHECK(pthread_join(tc, NULL) == 0);
    CHECK(pthread_join(tf, NULL) == 0);
    CHECK(pthread_join(ts, NULL) == 0);

    /* The final export must succeed: stop injecting failures. */
    pthread_mutex_lock(&ms.lock);
    ms.fail_every = 0;
    pthread_mutex_unlock(&ms.lock);
    CHECK_OK(kplm_close(m));

    printf("  clock advanced to %.3f s; %ld flushes from the test (%ld failed), %d export "
           "calls (%d failed), %ld records\n",
           tclock_now(&clk), f.flushes, f.failed, ms.export_calls, ms.exports_failed,
           ms.records);
    CHECK_MSG(tclock_now(&clk) >= 1000.0 + 4.0,
              "the clock crossed only %.3f s: the test did not exercise eviction",
              tclock_now(&clk) - 1000.0);

    uint64_t total = 0;
    for (int k = 0; k < NKEYS; k++) {
        totals want = {0, 0.0, INFINITY, -INFINITY};
        for (int i = 0; i < NPUTTERS; i++) {
            want.count += w[i].t[k].count;
            want.sum += w[i].t[k].sum;
            if (w[i].t[k].min < want.min) want.min = w[i].t[k].min;
            if (w[i].t[k].max > want.max) want.max = w[i].t[k].max;
        }
        total += want.count;
        char kb[512];
        key_of_parts(keys[k].name, keys[k].stream, keys[k].shard, keys[k].ec, kb, sizeof kb);
        const tacc *got = msink_find_acc(&ms, kb);
        CHECK_MSG(got != NULL, "key %s was never exported", kb);
        CHECK_MSG(got->count == want.count, "key %s: exported count %llu, put %llu", kb,
                  (unsigned long long)got->count, (unsigned long long)want.count);
        CHECK_MSG(got->sum == want.sum, "key %s: exported sum %.17g, put %.17g", kb, got->sum,
                  want.sum);
        CHECK_MSG(got->min == want.min, "key %s: exported min %.17g, put %.17g", kb, got->min,
                  want.min);
        CHECK_MSG(got->max == want.max, "key %s: exported max %.17g, put %.17g", kb, got->max,
                  want.max);
    }
    CHECK_MSG(ms.nacc == NKEYS, "%zu keys exported, expected %d", ms.nacc, NKEYS);
    CHECK_U64(total, (uint64_t)NPUTTERS * NPUTS);
    if (eventful) CHECK_MSG(ms.records == (long)total, "%ld records for %llu puts", ms.records,
                            (unsigned long long)total);
    else CHECK(ms.records == 0);
    CHECK(ms.opens == 1 && ms.closes == 1);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

/* Close while threads are putting: every put is either accepted (and then
 * exported by some flush, at the latest the final one) or refused with
 * KPLM_ECLOSED. Nothing accepted may miss the final flush. */
typedef struct {
    kplm_manager *m;
    kplm_metric *h;
    int id;
    uint64_t accepted;
    double sum;
    uint64_t refused;
} closer_putter;

static void *closer_putter_main(void *p) {
    closer_putter *w = p;
    for (long i = 0;; i++) {
        double v = (i % 2) ? 0.5 : 1.0;
        kplm_status st = (i + w->id) % 2 ? kplm_metric_put(w->h, v)
                                         : kplm_put(w->m, "Shared", v, "s", NULL, NULL);
        if (st == KPLM_OK) {
            CHECK_MSG(w->refused == 0, "thread %d: put accepted after an ECLOSED", w->id);
            w->accepted++;
            w->sum += v;
        } else {
            CHECK_MSG(st == KPLM_ECLOSED, "thread %d: put returned %s", w->id,
                      test_status_name(st));
            if (++w->refused >= 100) break;
        }
    }
    return NULL;
}

static void *closer_flush_main(void *p) {
    kplm_manager *m = p;
    for (;;) {
        kplm_status st = kplm_flush(m);
        if (st == KPLM_ECLOSED) break;
        CHECK_MSG(st == KPLM_OK, "kplm_flush returned %s", test_status_name(st));
    }
    return NULL;
}

static void close_during_puts(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 1.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    ms.keep = 0;
    kplm_sink s = msink_sink(&ms, 1, 1, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    closer_putter w[NPUTTERS];
    pthread_t t[NPUTTERS], tf;
    for (int i = 0; i < NPUTTERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].m = m;
        w[i].id = i;
        /* Every thread resolves the same key: one key, one handle's worth. */
        CHECK_OK(kplm_metric_get(m, "Shared", "s", NULL, NULL, &w[i].h));
        CHECK(pthread_create(&t[i], NULL, closer_putter_main, &w[i]) == 0);
    }
    CHECK(pthread_create(&tf, NULL, closer_flush_main, m) == 0);
    test_sleep_ms(100);
    CHECK_OK(kplm_close(m));
    uint64_t accepted = 0;
    double sum = 0;
    for (int i = 0; i < NPUTTERS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        accepted += w[i].accepted;
        sum += w[i].sum;
    }
    CHECK(pthread_join(tf, NULL) == 0);
    printf("  %llu puts accepted before close\n", (unsigned long long)accepted);
    CHECK(accepted > 0);
    const tacc *a = msink_find_acc(&ms, "Shared|stream=s");
    CHECK(a != NULL);
    CHECK_MSG(a->count == accepted, "exported count %llu, accepted puts %llu",
              (unsigned long long)a->count, (unsigned long long)accepted);
    CHECK_DEQ(a->sum, sum);
    CHECK_MSG(ms.records == (long)accepted, "%ld records for %llu accepted puts", ms.records,
              (unsigned long long)accepted);
    CHECK(ms.nacc == 1);
    CHECK(ms.closes == 1);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

static void exact_totals(void) { run(0, 0); }
static void exact_totals_with_failing_exports_and_events(void) { run(3, 1); }

int main(void) {
    int failures = 0;
    RUN_T(exact_totals, 60);
    RUN_T(exact_totals_with_failing_exports_and_events, 60);
    RUN_T(close_during_puts, 60);
    return failures ? 1 : 0;
}
