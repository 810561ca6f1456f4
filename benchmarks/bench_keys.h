/* The manager and keys the single-purpose benchmarks put on (flush_alone.c,
 * window_roll.c): a started manager whose sink counts the keys it exports,
 * N handles of UserRecordsPut on stream "orders" with shard ids
 * shardId-000000000000 on, and one random order over them. */
#ifndef KPLM_BENCH_KEYS_H
#define KPLM_BENCH_KEYS_H

#include "kplm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exits with a message unless `st` is KPLM_OK. */
static inline void must(kplm_status st, const char *what) {
    if (st != KPLM_OK) {
        fprintf(stderr, "%s: %s\n", what, kplm_status_string(st));
        exit(1);
    }
}

/* Keys exported so far by the manager of counting_manager (its sink adds
 * each export's count). */
static unsigned long long exported;

static int count_export(void *user_data, const kplm_snapshot *s, size_t n) {
    (void)user_data;
    (void)s;
    exported += n;
    return 0;
}

/* A started manager for `n` keys at KPLM_LEVEL_DETAILED with a
 * `window_seconds` window, exporting at explicit kplm_flush calls only, on
 * `clock` (NULL: the system's), with a sink that counts the keys it exports
 * in `exported` (exits on failure). */
static inline kplm_manager *counting_manager(unsigned n, uint32_t window_seconds, double (*clock)(void *)) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.window_seconds = window_seconds;
    cfg.upload_interval_ms = 3600e3;   /* explicit kplm_flush only */
    cfg.max_metrics = n + 16;
    cfg.clock = clock;
    kplm_manager *m;
    must(kplm_new(&cfg, &m), "kplm_new");
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.export_snapshots = count_export;
    must(kplm_set_sink(m, &sink), "kplm_set_sink");
    must(kplm_start(m), "kplm_start");
    return m;
}

/* `n` handles of m's keys UserRecordsPut/orders/shardId-%012u, k = 0..n-1,
 * the keys created in the order `created` gives (NULL: k = 0..n-1, which is
 * export order) (exits on failure). A key's memory is laid out about in the
 * order keys are created: created in export order, a pass over a flush's
 * batch (in export order) walks it sequentially. */
static inline kplm_metric **shard_handles_created(kplm_manager *m, unsigned n, const unsigned *created) {
    kplm_metric **handles = calloc(n, sizeof *handles);
    if (!handles) must(KPLM_ENOMEM, "calloc");
    char shard[32];
    for (unsigned i = 0; i < n; i++) {
        unsigned k = created ? created[i] : i;
        snprintf(shard, sizeof shard, "shardId-%012u", k);
        must(kplm_metric_get(m, "UserRecordsPut", "orders", shard, NULL, &handles[k]), "kplm_metric_get");
    }
    return handles;
}

/* shard_handles_created, in export order. */
static inline kplm_metric **shard_handles(kplm_manager *m, unsigned n) {
    return shard_handles_created(m, n, NULL);
}

/* 0..n-1 in one random order, the same at every run for a `seed`
 * (exits on failure). */
static inline unsigned *shuffled_order_seeded(unsigned n, unsigned seed) {
    unsigned *order = malloc(n * sizeof *order);
    if (!order) must(KPLM_ENOMEM, "malloc");
    for (unsigned k = 0; k < n; k++) order[k] = k;
    srand(seed);
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

/* shuffled_order_seeded with seed 1: the order the benchmarks put in. */
static inline unsigned *shuffled_order(unsigned n) { return shuffled_order_seeded(n, 1); }

#endif
