/* The keys the single-purpose benchmarks put on (flush_alone.c,
 * window_roll.c): N handles of UserRecordsPut on stream "orders" with shard
 * ids shardId-000000000000 on, and one random order over them. */
#ifndef KPLM_BENCH_KEYS_H
#define KPLM_BENCH_KEYS_H

#include "kplm.h"

#include <stdio.h>
#include <stdlib.h>

/* Exits with a message unless `st` is KPLM_OK. */
static inline void must(kplm_status st, const char *what) {
    if (st != KPLM_OK) {
        fprintf(stderr, "%s: %s\n", what, kplm_status_string(st));
        exit(1);
    }
}

/* `n` handles of m's keys UserRecordsPut/orders/shardId-%012u, k = 0..n-1
 * (exits on failure). */
static inline kplm_metric **shard_handles(kplm_manager *m, unsigned n) {
    kplm_metric **handles = calloc(n, sizeof *handles);
    if (!handles) must(KPLM_ENOMEM, "calloc");
    char shard[32];
    for (unsigned k = 0; k < n; k++) {
        snprintf(shard, sizeof shard, "shardId-%012u", k);
        must(kplm_metric_get(m, "UserRecordsPut", "orders", shard, NULL, &handles[k]), "kplm_metric_get");
    }
    return handles;
}

/* 0..n-1 in one random order, the same at every run (exits on failure). */
static inline unsigned *shuffled_order(unsigned n) {
    unsigned *order = malloc(n * sizeof *order);
    if (!order) must(KPLM_ENOMEM, "malloc");
    for (unsigned k = 0; k < n; k++) order[k] = k;
    srand(1);
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

#endif
