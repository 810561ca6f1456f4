/*
 * A Kinesis-producer-shaped program feeding kplm from several threads.
 *
 * Four worker threads pretend to put user records into two streams and a few
 * shards, and report what a KPL producer reports: UserRecordsPut,
 * UserRecordsDataPut (bytes), BufferingTime (ms), and ErrorsByCode. Half of
 * them use kplm_put (lookup by name on every call), the other half resolve
 * their keys once with kplm_metric_get and use kplm_metric_put.
 *
 * A callback sink prints every snapshot the uploader (every 500 ms) and the
 * final flush hand it. After about two seconds the program closes the
 * manager and frees it. Every kplm call's status is checked.
 *
 *   ./producer_c
 */
#define _POSIX_C_SOURCE 200809L
#include <kplm.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NWORKERS 4
#define RUN_SECONDS 2.0

static void check(kplm_status st, const char *what) {
    if (st != KPLM_OK) {
        fprintf(stderr, "producer: %s failed: %s\n", what, kplm_status_string(st));
        exit(1);
    }
}

/* ---- the sink ------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t lock; /* export_snapshots may run on the uploader thread */
    int batches;
    unsigned long long snapshots;
} printing_sink;

static int sink_open(void *user_data) {
    (void)user_data;
    printf("[sink] open\n");
    return 0;
}

static int sink_export(void *user_data, const kplm_snapshot *s, size_t n) {
    printing_sink *ps = user_data;
    pthread_mutex_lock(&ps->lock);
    ps->batches++;
    printf("[sink] batch %d: %zu snapshot(s)\n", ps->batches, n);
    for (size_t i = 0; i < n; i++) {
        char dims[512] = "";
        size_t len = 0;
        for (size_t d = 0; d < s[i].dimension_count && len < sizeof dims; d++)
            len += (size_t)snprintf(dims + len, sizeof dims - len, "%s%s=%s", d ? "," : "",
                                    s[i].dimensions[d].name, s[i].dimensions[d].value);
        printf("  %-20s {%s} count=%llu sum=%.1f min=%.1f max=%.1f "
               "seconds=[%.0f,%.0f) at unix %.0f\n",
               s[i].name, dims, (unsigned long long)s[i].count, s[i].sum, s[i].min,
               s[i].max, s[i].window_start, s[i].window_end, s[i].timestamp_unix);
        ps->snapshots++;
    }
    pthread_mutex_unlock(&ps->lock);
    return 0; /* accepted */
}

static void sink_close(void *user_data) {
    (void)user_data;
    printf("[sink] close\n");
}

/* ---- the workers --------------------------------------------------------- */

static const char *const streams[] = {"orders", "clicks"};
static const char *const shards[] = {"shardId-000000000000", "shardId-000000000001",
                                     "shardId-000000000002"};
static const char *const error_codes[] = {"ProvisionedThroughputExceededException",
                                          "InternalFailure"};

typedef struct {
    kplm_manager *m;
    int id;
    atomic_int *stop;
    unsigned long puts;
} worker;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    unsigned seed = 12345u + (unsigned)w->id;
    const char *stream = streams[w->id % 2];
    int by_handle = w->id >= NWORKERS / 2;

    /* Handle mode: resolve every key this worker uses once. */
    kplm_metric *records[3] = {0}, *bytes = NULL, *buffering = NULL;
    if (by_handle) {
        for (int s = 0; s < 3; s++)
            check(kplm_metric_get(w->m, "UserRecordsPut", stream, shards[s], NULL, &records[s]),
                  "kplm_metric_get(UserRecordsPut)");
        check(kplm_metric_get(w->m, "UserRecordsDataPut", stream, NULL, NULL, &bytes),
              "kplm_metric_get(UserRecordsDataPut)");
        check(kplm_metric_get(w->m, "BufferingTime", stream, NULL, NULL, &buffering),
              "kplm_metric_get(BufferingTime)");
    }

    while (!atomic_load(w->stop)) {
        for (int i = 0; i < 50; i++) {
            int shard = (int)(rand_r(&seed) % 3u);
            double size = 100.0 + (double)(rand_r(&seed) % 900u);
            double wait_ms = (double)(rand_r(&seed) % 250u);
            if (by_handle) {
                check(kplm_metric_put(records[shard], 1.0), "kplm_metric_put(UserRecordsPut)");
                check(kplm_metric_put(bytes, size), "kplm_metric_put(UserRecordsDataPut)");
                check(kplm_metric_put(buffering, wait_ms), "kplm_metric_put(BufferingTime)");
            } else {
                check(kplm_put(w->m, "UserRecordsPut", 1.0, stream, shards[shard], NULL),
                      "kplm_put(UserRecordsPut)");
                check(kplm_put(w->m, "UserRecordsDataPut", size, stream, NULL, NULL),
                      "kplm_put(UserRecordsDataPut)");
                check(kplm_put(w->m, "BufferingTime", wait_ms, stream, NULL, NULL),
                      "kplm_put(BufferingTime)");
            }
            /* Now and then a put fails at the service. */
            if (rand_r(&seed) % 40u == 0) {
                const char *code = error_codes[rand_r(&seed) % 2u];
                check(kplm_put(w->m, "ErrorsByCode", 1.0, stream, shards[shard], code),
                      "kplm_put(ErrorsByCode)");
                check(kplm_put(w->m, "AllErrors", 1.0, stream, NULL, NULL),
                      "kplm_put(AllErrors)");
            }
            w->puts++;
        }
        sleep_ms(5);
    }
    return NULL;
}

int main(void) {
    printf("kplm %s\n", kplm_version());

    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 500.0;

    kplm_manager *m = NULL;
    check(kplm_new(&cfg, &m), "kplm_new");

    printing_sink ps;
    memset(&ps, 0, sizeof ps);
    pthread_mutex_init(&ps.lock, NULL);
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = &ps;
    sink.open = sink_open;
    sink.export_snapshots = sink_export;
    sink.close = sink_close;
    check(kplm_set_sink(m, &sink), "kplm_set_sink");
    check(kplm_start(m), "kplm_start");

    atomic_int stop;
    atomic_init(&stop, 0);
    worker workers[NWORKERS];
    pthread_t threads[NWORKERS];
    for (int i = 0; i < NWORKERS; i++) {
        workers[i] = (worker){m, i, &stop, 0};
        if (pthread_create(&threads[i], NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "producer: pthread_create failed\n");
            return 1;
        }
    }

    sleep_ms((long)(RUN_SECONDS * 1000.0));
    atomic_store(&stop, 1);
    unsigned long total = 0;
    for (int i = 0; i < NWORKERS; i++) {
        pthread_join(threads[i], NULL);
        total += workers[i].puts;
    }

    /* close: refuses new puts, makes the final flush, closes the sink. */
    check(kplm_close(m), "kplm_close");
    kplm_status st = kplm_put(m, "UserRecordsPut", 1.0, "orders", NULL, NULL);
    if (st != KPLM_ECLOSED) {
        fprintf(stderr, "producer: put after close gave %s\n", kplm_status_string(st));
        return 1;
    }
    kplm_free(m);

    printf("%lu simulated records from %d threads; %d batch(es), %llu snapshot(s) exported\n",
           total, NWORKERS, ps.batches, ps.snapshots);
    pthread_mutex_destroy(&ps.lock);
    if (ps.batches == 0) {
        fprintf(stderr, "producer: nothing was exported\n");
        return 1;
    }
    return 0;
}
