/* kplm benchmark: the cost of each kind of put, of reading, and of scaling
 * to two threads, as ratios to one relaxed atomic add measured in the same
 * run (the machine is shared and noisy: absolute nanoseconds drift, ratios
 * much less).
 *
 *   kplm_bench [--json FILE] [--quick]
 *
 * Each figure is the median of several repetitions. Prints a table, and
 * writes the same figures as JSON when asked. */
#define _GNU_SOURCE
#include <kplm.h>

#include "bench_support.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long iterations = 20 * 1000 * 1000;
static int repetitions = 7;




static void must(kplm_status st, const char *what) {
    if (st != KPLM_OK) {
        fprintf(stderr, "kplm_bench: %s: %s\n", what, kplm_status_string(st));
        exit(1);
    }
}

/* ---- workloads: each runs `n` operations and returns nothing ---------- */

static _Atomic uint64_t shared_counter;

typedef struct {
    kplm_manager *m;
    kplm_metric *h;
    const char *name;
    long n;
    double seconds;   /* out: time of this thread's loop */
} work;

static void *atomic_add_loop(void *arg) {
    work *w = arg;
    double t0 = now_s();
    for (long i = 0; i < w->n; i++) atomic_fetch_add_explicit(&shared_counter, 1, memory_order_relaxed);
    w->seconds = now_s() - t0;
    return NULL;
}

static void *metric_put_loop(void *arg) {
    work *w = arg;
    double t0 = now_s();
    for (long i = 0; i < w->n; i++) kplm_metric_put(w->h, 1.0);
    w->seconds = now_s() - t0;
    return NULL;
}

static void *put_by_name_loop(void *arg) {
    work *w = arg;
    double t0 = now_s();
    for (long i = 0; i < w->n; i++)
        kplm_put(w->m, w->name, 1.0, "orders", "shardId-000000000001", NULL);
    w->seconds = now_s() - t0;
    return NULL;
}

/* The same key, by names both ways: kplm_put with three dimensions, and
 * kplm_put_dims with the same three pairs (SPEC §5: the same key). */
static void *put_three_names_loop(void *arg) {
    work *w = arg;
    double t0 = now_s();
    for (long i = 0; i < w->n; i++)
        kplm_put(w->m, w->name, 1.0, "orders", "shardId-000000000001", "ProvisionedThroughputExceededException");
    w->seconds = now_s() - t0;
    return NULL;
}

static const kplm_dimension three_pairs[] = {
    {"stream", "orders"},
    {"shard", "shardId-000000000001"},
    {"error_code", "ProvisionedThroughputExceededException"},
};

static void *put_dims_loop(void *arg) {
    work *w = arg;
    double t0 = now_s();
    for (long i = 0; i < w->n; i++) kplm_put_dims(w->m, w->name, 1.0, three_pairs, 3);
    w->seconds = now_s() - t0;
    return NULL;
}

static void *distribution_put_loop(void *arg) {
    work *w = arg;
    double t0 = now_s();
    for (long i = 0; i < w->n; i++) kplm_metric_put(w->h, (double)(1 + (i & 1023)));
    w->seconds = now_s() - t0;
    return NULL;
}

/* Runs `fn` on `threads` threads at once; returns ns per operation per
 * thread (the mean of the threads' own loop times). */
static void *atomic_add_loop(void *arg);
static double run_threads(void *(*fn)(void *), work *proto, int threads) {
    pthread_t t[8];
    work w[8];
    for (int i = 0; i < threads; i++) {
        w[i] = proto[i < 2 ? i : 0];
        pthread_create(&t[i], NULL, fn, &w[i]);
    }
    double total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += w[i].seconds;
    }
    return total / threads / (double)proto[0].n * 1e9;
}

static double measure(void *(*fn)(void *), work *proto, int threads) {
    double v[32];
    (void)run_threads(fn, proto, threads);   /* warm-up, not timed */
    for (int r = 0; r < repetitions; r++) v[r] = run_threads(fn, proto, threads);
    return median(v, repetitions);
}

/* A cost and its ratio to the baseline, each the median over repetitions
 * of a pair measured back to back: the atomic-add baseline (one thread),
 * then the workload. Pairing keeps a slow phase of the shared machine from
 * landing on one side of a ratio only. */
typedef struct {
    double value, ratio;
} paired;

static paired measure_paired(void *(*fn)(void *), work *proto, int threads) {
    work base[2];
    memset(base, 0, sizeof base);
    base[0].n = base[1].n = proto[0].n;
    double v[32], q[32];
    (void)run_threads(atomic_add_loop, base, 1);   /* warm-up, not timed */
    (void)run_threads(fn, proto, threads);
    for (int r = 0; r < repetitions; r++) {
        double b = run_threads(atomic_add_loop, base, 1);
        v[r] = run_threads(fn, proto, threads);
        q[r] = v[r] / b;
    }
    paired p = {median(v, repetitions), median(q, repetitions)};
    return p;
}

static kplm_manager *manager(kplm_level level, double (*clock)(void *), void *clock_data) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = level;
    cfg.upload_interval_ms = 3600e3;
    cfg.window_seconds = 60;
    cfg.clock = clock;
    cfg.clock_user_data = clock_data;
    kplm_manager *m = NULL;
    must(kplm_new(&cfg, &m), "kplm_new");
    return m;
}

/* ---- reading: flush and snapshots of 1,000 metrics x 60 live seconds ---- */

static double injected_now;
static double injected_clock(void *ud) { (void)ud; return injected_now; }
static int export_nothing(void *ud, const kplm_snapshot *s, size_t n) { (void)ud; (void)s; (void)n; return 0; }
static int visit_nothing(void *ud, const kplm_snapshot *s) { (void)ud; (void)s; return 0; }

static kplm_metric *reading_handles[1000];

static void fill_60_seconds(kplm_manager *m) {
    for (int s = 0; s < 60; s++) {
        injected_now = 1000.0 + s;
        for (int k = 0; k < 1000; k++) kplm_metric_put(reading_handles[k], (double)k);
    }
}

static void measure_reading(double *snapshots_ms, double *flush_ms) {
    kplm_manager *m = manager(KPLM_LEVEL_DETAILED, injected_clock, NULL);
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.export_snapshots = export_nothing;
    must(kplm_set_sink(m, &sink), "kplm_set_sink");
    must(kplm_start(m), "kplm_start");
    for (int k = 0; k < 1000; k++) {
        char name[32];
        snprintf(name, sizeof name, "Metric%04d", k);
        must(kplm_metric_get(m, name, "orders", "shardId-000000000001", NULL, &reading_handles[k]),
             "kplm_metric_get");
    }
    double snap[32], flush[32];
    for (int r = 0; r < repetitions; r++) {
        fill_60_seconds(m);              /* 1,000 keys, each with 60 live buckets */
        double t0 = now_s();
        must(kplm_snapshots(m, visit_nothing, NULL), "kplm_snapshots");
        snap[r] = (now_s() - t0) * 1e3;
        t0 = now_s();
        must(kplm_flush(m), "kplm_flush");   /* 1,000 keys x 60 s of unexported data */
        flush[r] = (now_s() - t0) * 1e3;
    }
    *snapshots_ms = median(snap, repetitions);
    *flush_ms = median(flush, repetitions);
    must(kplm_close(m), "kplm_close");
    kplm_free(m);
}

/* ---- report ------------------------------------------------------------- */

typedef struct {
    const char *id;
    const char *what;
    double value;
    const char *unit;       /* "ns/op", "x", "ms" */
    double ratio;           /* to the atomic add; NAN when not a cost */
    const char *target;
} figure;

int main(int argc, char **argv) {
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--quick")) { iterations = 2 * 1000 * 1000; repetitions = 3; }
        else { fprintf(stderr, "usage: kplm_bench [--json FILE] [--quick]\n"); return 2; }
    }

    work proto[2];
    memset(proto, 0, sizeof proto);
    proto[0].n = proto[1].n = iterations;

    double atomic1 = measure(atomic_add_loop, proto, 1);
    double atomic2 = measure(atomic_add_loop, proto, 2);

    kplm_manager *m = manager(KPLM_LEVEL_DETAILED, NULL, NULL);
    must(kplm_put(m, "UserRecordsPut", 1.0, "orders", "shardId-000000000001", NULL), "kplm_put");
    kplm_metric *a = NULL, *b = NULL;
    must(kplm_metric_get(m, "UserRecordsPut", "orders", "shardId-000000000001", NULL, &a), "get");
    must(kplm_metric_get(m, "UserRecordsDataPut", "orders", "shardId-000000000001", NULL, &b), "get");

    proto[0].m = proto[1].m = m;
    proto[0].h = proto[1].h = a;
    paired handle1 = measure_paired(metric_put_loop, proto, 1);
    paired handle2_same = measure_paired(metric_put_loop, proto, 2);
    proto[1].h = b;
    paired handle2_diff = measure_paired(metric_put_loop, proto, 2);
    /* Scaling: one thread and two threads on two metrics, back to back. */
    double sc[32];
    for (int r = 0; r < repetitions; r++) {
        double one = run_threads(metric_put_loop, proto, 1);
        double two = run_threads(metric_put_loop, proto, 2);
        sc[r] = 2.0 * one / two;
    }
    double scaling = median(sc, repetitions);

    proto[0].name = proto[1].name = "UserRecordsPut";
    proto[1].h = a;
    paired by_name1 = measure_paired(put_by_name_loop, proto, 1);
    /* kplm_put_dims with three pairs next to kplm_put of the same key, the
     * ratio taken per run (back to back). */
    must(kplm_put_dims(m, "UserRecordsPut", 1.0, three_pairs, 3), "kplm_put_dims");
    paired dims1 = measure_paired(put_dims_loop, proto, 1);
    double dq[32];
    for (int r = 0; r < repetitions; r++) {
        double names = run_threads(put_three_names_loop, proto, 1);
        dq[r] = run_threads(put_dims_loop, proto, 1) / names;
    }
    double dims_vs_names = median(dq, repetitions);
    kplm_free(m);

    /* A distribution metric (SPEC §6, 1%): its handle's put, one thread and
     * two threads on it; its values vary so they spread over buckets. */
    kplm_manager *dm = manager(KPLM_LEVEL_DETAILED, NULL, NULL);
    must(kplm_set_distribution(dm, "RequestTime", 0.01), "kplm_set_distribution");
    kplm_metric *d = NULL;
    must(kplm_metric_get(dm, "RequestTime", "orders", NULL, NULL, &d), "get");
    proto[0].m = proto[1].m = dm;
    proto[0].h = proto[1].h = d;
    paired dist1 = measure_paired(distribution_put_loop, proto, 1);
    paired dist2 = measure_paired(distribution_put_loop, proto, 2);
    kplm_free(dm);

    kplm_manager *off = manager(KPLM_LEVEL_NONE, NULL, NULL);
    proto[0].m = off;
    paired none1 = measure_paired(put_by_name_loop, proto, 1);
    kplm_free(off);

    double snapshots_ms, flush_ms;
    measure_reading(&snapshots_ms, &flush_ms);


    figure f[] = {
        {"atomic_add", "relaxed atomic add, 1 thread (baseline)", atomic1, "ns/op", 1.0, ""},
        {"atomic_add_2t_shared", "relaxed atomic add, 2 threads on one counter", atomic2, "ns/op", atomic2 / atomic1, ""},
        {"metric_put_1t", "kplm_metric_put (resolved handle), 1 thread", handle1.value, "ns/op", handle1.ratio, "<= 1x"},
        {"metric_put_2t_same", "kplm_metric_put, 2 threads on one metric", handle2_same.value, "ns/op", handle2_same.ratio, "<= 1x"},
        {"metric_put_2t_diff", "kplm_metric_put, 2 threads on two metrics", handle2_diff.value, "ns/op", handle2_diff.ratio, ""},
        {"put_by_name_1t", "kplm_put by names, existing key, 1 thread", by_name1.value, "ns/op", by_name1.ratio, "<= 6x"},
        {"put_dims_3_pairs_1t", "kplm_put_dims, 3 pairs, existing key, 1 thread", dims1.value, "ns/op", dims1.ratio, ""},
        {"put_dims_vs_put", "kplm_put_dims (3 pairs) / kplm_put (same key)", dims_vs_names, "x", NAN, "<= 1.5x"},
        {"distribution_put_1t", "kplm_metric_put, distribution metric (1%), 1 thread", dist1.value, "ns/op", dist1.ratio, "<= 3x (#15)"},
        {"distribution_put_2t_same", "the same, 2 threads on one distribution metric", dist2.value, "ns/op", dist2.ratio, ""},
        {"put_level_none", "kplm_put at level NONE", none1.value, "ns/op", none1.ratio, "<= 1x"},
        {"scaling_2t_diff", "throughput, 2 threads on two metrics / 1 thread", scaling, "x", NAN, ">= 1.6x"},
        {"snapshots_1000x60", "kplm_snapshots, 1,000 metrics x 60 live seconds", snapshots_ms, "ms", NAN, "<= 0.5 ms"},
        {"flush_1000x60", "kplm_flush, 1,000 metrics x 60 unexported seconds", flush_ms, "ms", NAN, "<= 0.5 ms"},
    };
    size_t nf = sizeof f / sizeof f[0];

    printf("kplm %s benchmark: median of %d runs, %ld operations per thread per run;\n"
           "each ratio is the median of per-run ratios to an atomic add measured just before\n\n",
           kplm_version(), repetitions, iterations);
    printf("%-52s %12s %10s %10s\n", "figure", "value", "x atomic", "target");
    printf("%-52s %12s %10s %10s\n", "----------------------------------------------------",
           "------------", "----------", "----------");
    for (size_t i = 0; i < nf; i++) {
        char value[32], ratio[32];
        snprintf(value, sizeof value, "%.2f %s", f[i].value, f[i].unit);
        if (isnan(f[i].ratio)) snprintf(ratio, sizeof ratio, "-");
        else snprintf(ratio, sizeof ratio, "%.2fx", f[i].ratio);
        printf("%-52s %12s %10s %10s\n", f[i].what, value, ratio, f[i].target);
    }

    if (json_path) {
        FILE *out = fopen(json_path, "w");
        if (!out) { perror(json_path); return 1; }
        fprintf(out, "{\n  \"version\": \"%s\",\n  \"repetitions\": %d,\n  \"iterations\": %ld,\n  \"figures\": [\n",
                kplm_version(), repetitions, iterations);
        for (size_t i = 0; i < nf; i++) {
            fprintf(out, "    {\"id\": \"%s\", \"what\": \"%s\", \"value\": %.4f, \"unit\": \"%s\", ",
                    f[i].id, f[i].what, f[i].value, f[i].unit);
            if (isnan(f[i].ratio)) fprintf(out, "\"ratio_to_atomic_add\": null, ");
            else fprintf(out, "\"ratio_to_atomic_add\": %.4f, ", f[i].ratio);
            fprintf(out, "\"target\": \"%s\"}%s\n", f[i].target, i + 1 < nf ? "," : "");
        }
        fprintf(out, "  ]\n}\n");
        fclose(out);
        printf("\nJSON written to %s\n", json_path);
    }
    return 0;
}
