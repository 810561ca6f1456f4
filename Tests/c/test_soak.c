/* Soak: a constant set of keys (10 names x 10 streams x N shards) and a
 * constant set of threads (putters, one snapshot reader, the uploader) run
 * for KPLM_SOAK_SECONDS seconds (default 5; CI runs the default, the full
 * soak is 60). Two profiles, by KPLM_SOAK_KEYS (a multiple of 100):
 *
 *  - 1,000 keys (the default): 4 putters, an upload every 10 ms, a
 *    snapshot pass every 50 ms;
 *  - 10,000 keys or more, the scale soak of issue #13: 2 putters, an upload
 *    every 100 ms, a snapshot pass every second.
 *
 *   KPLM_SOAK_SECONDS=60 ctest --test-dir build -R soak --output-on-failure
 *   KPLM_SOAK_KEYS=100000 KPLM_SOAK_SECONDS=60 ctest --test-dir build -R soak --output-on-failure
 *
 * Checks:
 *  - memory is flat: once everything durable exists (the keys, their bucket
 *    arrays filled to the window, the sink's table, one malloc arena per
 *    thread), nothing the run does should keep memory: the resident set is
 *    sampled every second after a warm-up and may not exceed the first
 *    post-warm-up sample by more than rss_margin();
 *  - exactness: after close, the totals the callback sink received per key
 *    (count, sum, min, max) equal exactly what the putters put (every value
 *    is exactly representable, so the order of the additions does not
 *    matter), each put gave one record call, and no batch broke the sink
 *    contract (order, duplicates, concurrency).
 * The memory check is skipped under ASan and TSan (quarantine and shadow
 * memory grow by design); the exactness checks always run.
 */
#define _GNU_SOURCE
#include "test_support.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

#define NNAMES 10
#define NSTREAMS 10
#define MAX_PUTTERS 4
#define WINDOW_SECONDS 2
/* The profile (see the top), set by soak() from KPLM_SOAK_KEYS. */
static int nshards = 10, nkeys = 1000, nputters = MAX_PUTTERS;
static double upload_ms = 10.0;
static unsigned reader_pause_ms = 50;
/* Every bucket array is full after WINDOW_SECONDS + 1 s; one more second
 * for the arenas and the sink table to settle; at scale, three more for the
 * putters to create their handles to every key. */
static unsigned warmup_seconds(void) { return WINDOW_SECONDS + 2 + (nkeys > 1000 ? 3 : 0); }
/* Allowed growth after the warm-up. What a healthy run can add on top of the
 * baseline is allocator slack: the transient working set of a flush or a
 * snapshot pass (1,000 snapshots with their strings, about 0.3 MB; about
 * 250 bytes a key in all) landing in another arena or a fragmented spot.
 * 4 MiB plus 256 bytes a key is over ten times that at 1,000 keys, and far
 * below what any per-put or per-snapshot leak adds at these rates (more
 * than 100,000 snapshots and puts per second). */
static double rss_margin(void) { return 4.0 * 1024 * 1024 + 256.0 * nkeys; }
/* Puts per burst; a putter sleeps BURST_PAUSE_US between bursts so that the
 * soak does not hog a shared machine. */
#define BURST 250
#define BURST_PAUSE_US 2000

typedef struct {
    char name[32], stream[32], shard[32];
} key;

static key *keys;

typedef struct {
    uint64_t count;
    double sum, min, max;
} totals;

static void totals_add(totals *t, uint64_t count, double sum, double min, double max) {
    t->count += count;
    t->sum += sum;
    if (min < t->min) t->min = min;
    if (max > t->max) t->max = max;
}

/* ---- the sink: per-key totals, indexed straight from the key text -------- */

typedef struct {
    pthread_mutex_t lock;
    totals *got;   /* per key */
    long exports, snapshots, bad, order_violations, foreign;
    _Atomic int in_export;
    _Atomic long concurrent, records;
} soak_sink;

static int parse_index(const char *s, const char *prefix, int limit) {
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0) return -1;
    char *end = NULL;
    long v = strtol(s + n, &end, 10);
    if (end == s + n || *end != '\0' || v < 0 || v >= limit) return -1;
    return (int)v;
}

/* Index of the key of a snapshot, -1 if it is not one of ours. */
static int key_index(const kplm_snapshot *s) {
    if (s->dimension_count != 2 || strcmp(s->dimensions[0].name, "stream") != 0 ||
        strcmp(s->dimensions[1].name, "shard") != 0)
        return -1;
    int n = parse_index(s->name, "SoakMetric", NNAMES);
    int st = parse_index(s->dimensions[0].value, "stream-", NSTREAMS);
    int sh = parse_index(s->dimensions[1].value, "shardId-", nshards);
    if (n < 0 || st < 0 || sh < 0) return -1;
    return (n * NSTREAMS + st) * nshards + sh;
}

static int sink_export(void *ud, const kplm_snapshot *s, size_t n) {
    soak_sink *k = ud;
    if (atomic_fetch_add(&k->in_export, 1) != 0) atomic_fetch_add(&k->concurrent, 1);
    pthread_mutex_lock(&k->lock);
    k->exports++;
    for (size_t i = 0; i < n; i++) {
        if (s[i].count == 0 || !(s[i].min <= s[i].max)) k->bad++;
        if (i > 0 && snap_order(s[i - 1].name, s[i - 1].dimensions, s[i - 1].dimension_count,
                                s[i].name, s[i].dimensions, s[i].dimension_count) >= 0)
            k->order_violations++;
        int idx = key_index(&s[i]);
        if (idx < 0) {
            k->foreign++;
            continue;
        }
        k->snapshots++;
        totals_add(&k->got[idx], s[i].count, s[i].sum, s[i].min, s[i].max);
    }
    pthread_mutex_unlock(&k->lock);
    atomic_fetch_sub(&k->in_export, 1);
    return 0;
}

static void sink_record(void *ud, const kplm_event *e) {
    (void)e;
    atomic_fetch_add(&((soak_sink *)ud)->records, 1);
}

/* ---- the threads ---------------------------------------------------------- */

static _Atomic int stop;

typedef struct {
    kplm_manager *m;
    int id;
    kplm_metric **h;   /* per key */
    totals *put;       /* per key */
    uint64_t puts;
} putter;

/* Exactly representable: integers 0..4095 on even keys, quarters in
 * [-64, 64) on odd ones. A key gets at most ~10^9 puts in any sane run, so
 * every partial sum stays far below 2^53 units and every sum is exact. */
static double value_for(int id, uint64_t i, int k) {
    unsigned x = (unsigned)(i * 2654435761u) ^ (unsigned)(id * 40503 + k * 977);
    if (k % 2 == 0) return (double)(x % 4096u);
    return ((double)(int)(x % 512u) - 256.0) * 0.25;
}

static void *putter_main(void *p) {
    putter *w = p;
    for (int k = 0; k < nkeys; k++) {
        w->put[k] = (totals){0, 0.0, INFINITY, -INFINITY};
        CHECK_OK(kplm_metric_get(w->m, keys[k].name, keys[k].stream, keys[k].shard, NULL,
                                 &w->h[k]));
    }
    /* Each thread walks the keys with its own odd stride, half the puts by
     * name, half through the handle. */
    unsigned stride = 7u + 2u * (unsigned)w->id * 131u;
    uint64_t i = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int b = 0; b < BURST; b++, i++) {
            int k = (int)((i * stride + (unsigned)w->id) % (uint64_t)nkeys);
            double v = value_for(w->id, i, k);
            kplm_status st = (i / 5) % 2 ? kplm_metric_put(w->h[k], v)
                                         : kplm_put(w->m, keys[k].name, v, keys[k].stream,
                                                    keys[k].shard, NULL);
            CHECK_MSG(st == KPLM_OK, "putter %d: put #%llu returned %s", w->id,
                      (unsigned long long)i, test_status_name(st));
            totals_add(&w->put[k], 1, v, v, v);
        }
        usleep(BURST_PAUSE_US);
    }
    w->puts = i;
    return NULL;
}

static int reader_visit(void *ud, const kplm_snapshot *s) {
    (*(long *)ud)++;
    CHECK(s->count > 0 && s->min <= s->max);
    CHECK(s->window_end - s->window_start <= WINDOW_SECONDS);
    return 0;
}

static void *reader_main(void *p) {
    kplm_manager *m = p;
    long visited = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        CHECK_OK(kplm_snapshots(m, reader_visit, &visited));
        usleep(reader_pause_ms * 1000);
    }
    return NULL;
}

/* ---- memory --------------------------------------------------------------- */

static double rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK_MSG(f != NULL, "cannot open /proc/self/statm");
    unsigned long size = 0, resident = 0;
    CHECK(fscanf(f, "%lu %lu", &size, &resident) == 2);
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned soak_seconds(void) {
    const char *e = getenv("KPLM_SOAK_SECONDS");
    if (!e || !*e) return 5;
    char *end = NULL;
    long v = strtol(e, &end, 10);
    if (*end != '\0' || v < (long)warmup_seconds() + 1 || v > 86400) {
        fprintf(stderr, "KPLM_SOAK_SECONDS=%s: expected %u..86400\n", e, warmup_seconds() + 1);
        exit(2);
    }
    return (unsigned)v;
}

/* KPLM_SOAK_KEYS: 1,000 by default; a multiple of 100 up to 1,000,000. */
static int soak_keys(void) {
    const char *e = getenv("KPLM_SOAK_KEYS");
    if (!e || !*e) return 1000;
    char *end = NULL;
    long v = strtol(e, &end, 10);
    if (*end != '\0' || v < 100 || v > 1000000 || v % 100 != 0) {
        fprintf(stderr, "KPLM_SOAK_KEYS=%s: expected a multiple of 100 in 100..1000000\n", e);
        exit(2);
    }
    return (int)v;
}

/* ---- the soak ------------------------------------------------------------- */

static void soak(void) {
    nkeys = soak_keys();
    nshards = nkeys / (NNAMES * NSTREAMS);
    if (nkeys > 1000) {   /* the scale profile */
        nputters = 2;
        upload_ms = 100.0;
        reader_pause_ms = 1000;
    }
    unsigned seconds = soak_seconds();
    keys = calloc((size_t)nkeys, sizeof *keys);
    CHECK(keys != NULL);
    for (int n = 0; n < NNAMES; n++)
        for (int st = 0; st < NSTREAMS; st++)
            for (int sh = 0; sh < nshards; sh++) {
                key *k = &keys[(n * NSTREAMS + st) * nshards + sh];
                snprintf(k->name, sizeof k->name, "SoakMetric%d", n);
                snprintf(k->stream, sizeof k->stream, "stream-%d", st);
                snprintf(k->shard, sizeof k->shard, "shardId-%012d", sh);
            }

    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = upload_ms;
    cfg.window_seconds = WINDOW_SECONDS;
    cfg.max_metrics = (uint32_t)nkeys + 16;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));

    static soak_sink sink;
    memset(&sink, 0, sizeof sink);
    pthread_mutex_init(&sink.lock, NULL);
    sink.got = calloc((size_t)nkeys, sizeof *sink.got);
    CHECK(sink.got != NULL);
    for (int k = 0; k < nkeys; k++) sink.got[k] = (totals){0, 0.0, INFINITY, -INFINITY};
    kplm_sink s = {0};
    s.user_data = &sink;
    s.export_snapshots = sink_export;
    s.record = sink_record;
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    static putter w[MAX_PUTTERS];
    pthread_t tp[MAX_PUTTERS], tr;
    atomic_store(&stop, 0);
    for (int i = 0; i < nputters; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].m = m;
        w[i].id = i;
        w[i].h = calloc((size_t)nkeys, sizeof *w[i].h);
        w[i].put = calloc((size_t)nkeys, sizeof *w[i].put);
        CHECK(w[i].h != NULL && w[i].put != NULL);
        CHECK(pthread_create(&tp[i], NULL, putter_main, &w[i]) == 0);
    }
    CHECK(pthread_create(&tr, NULL, reader_main, m) == 0);

    /* One RSS sample per second once the warm-up is over. */
    double start = mono_now(), baseline = 0.0, peak = 0.0, last = 0.0;
    int samples = 0;
    printf("  soak: %u s, %d keys, %d putters, upload every %.0f ms, snapshots every %u ms, window %d s%s\n",
           seconds, nkeys, nputters, cfg.upload_interval_ms, reader_pause_ms, WINDOW_SECONDS,
           SOAK_SANITIZED ? " (sanitizer build: memory not checked)" : "");
    for (unsigned t = 1; t <= seconds; t++) {
        double wake = start + t;
        for (double now = mono_now(); now < wake; now = mono_now())
            test_sleep_ms((unsigned)((wake - now) * 1000.0) + 1);
        if (t < warmup_seconds()) continue;
        last = rss_bytes();
        if (samples++ == 0) baseline = peak = last;
        if (last > peak) peak = last;
        if (t == warmup_seconds() || t == seconds || t % 10 == 0)
            printf("  t=%3u s  rss %.2f MiB (%+.0f KiB from baseline)\n", t, last / 1048576.0,
                   (last - baseline) / 1024.0);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < nputters; i++) CHECK(pthread_join(tp[i], NULL) == 0);
    CHECK(pthread_join(tr, NULL) == 0);
    CHECK_OK(kplm_close(m));

    /* Exactness. */
    uint64_t total = 0;
    for (int k = 0; k < nkeys; k++) {
        totals want = {0, 0.0, INFINITY, -INFINITY};
        for (int i = 0; i < nputters; i++)
            totals_add(&want, w[i].put[k].count, w[i].put[k].sum, w[i].put[k].min,
                       w[i].put[k].max);
        total += want.count;
        const totals *got = &sink.got[k];
        const key *kk = &keys[k];
        CHECK_MSG(want.count > 0, "key %s/%s/%s was never put", kk->name, kk->stream, kk->shard);
        CHECK_MSG(got->count == want.count, "key %s/%s/%s: exported count %llu, put %llu",
                  kk->name, kk->stream, kk->shard, (unsigned long long)got->count,
                  (unsigned long long)want.count);
        CHECK_MSG(got->sum == want.sum, "key %s/%s/%s: exported sum %.17g, put %.17g", kk->name,
                  kk->stream, kk->shard, got->sum, want.sum);
        CHECK_MSG(got->min == want.min && got->max == want.max,
                  "key %s/%s/%s: exported min/max %.17g/%.17g, put %.17g/%.17g", kk->name,
                  kk->stream, kk->shard, got->min, got->max, want.min, want.max);
    }
    uint64_t puts = 0;
    for (int i = 0; i < nputters; i++) puts += w[i].puts;
    CHECK_U64(total, puts);
    CHECK_MSG(atomic_load(&sink.records) == (long)total, "%ld record calls for %llu puts",
              atomic_load(&sink.records), (unsigned long long)total);
    CHECK_MSG(atomic_load(&sink.concurrent) == 0, "exports ran concurrently");
    CHECK_MSG(sink.bad == 0, "%ld snapshot(s) with count 0 or min > max", sink.bad);
    CHECK_MSG(sink.order_violations == 0, "%ld batch position(s) out of order or duplicated",
              sink.order_violations);
    CHECK_MSG(sink.foreign == 0, "%ld snapshot(s) of unknown keys", sink.foreign);
    /* The uploader kept running: at 10 ms it would export ~100 times a
     * second (at 100 ms, ~10); ask for a tenth of that, so a loaded machine
     * passes. */
    long expected_exports = (long)(100.0 / upload_ms) * (long)seconds;
    CHECK_MSG(sink.exports >= expected_exports, "only %ld exports in %u s", sink.exports, seconds);
    printf("  %llu puts (%.0f/s), %ld exports, %ld snapshots exported; rss baseline %.2f MiB, "
           "peak %+.0f KiB, last %+.0f KiB over %d samples\n",
           (unsigned long long)total, (double)total / seconds, sink.exports, sink.snapshots,
           baseline / 1048576.0, (peak - baseline) / 1024.0, (last - baseline) / 1024.0, samples);

    /* Flat memory. */
    if (!SOAK_SANITIZED) {
        CHECK_MSG(samples >= 2, "too few samples (%d)", samples);
        CHECK_MSG(peak - baseline <= rss_margin(),
                  "memory grew by %.0f KiB after the warm-up (allowed %.0f KiB): a constant "
                  "key and thread set must give flat memory",
                  (peak - baseline) / 1024.0, rss_margin() / 1024.0);
    }

    kplm_free(m);
    pthread_mutex_destroy(&sink.lock);
    for (int i = 0; i < nputters; i++) {
        free(w[i].h);
        free(w[i].put);
    }
    free(sink.got);
    free(keys);
}

int main(void) {
    int failures = 0;
    /* The watchdog: the run itself plus ample time to build the keys, join,
     * close and check (slow under sanitizers). */
    RUN_T(soak, soak_seconds() + (soak_keys() > 1000 ? 300 : 120));
    return failures ? 1 : 0;
}
