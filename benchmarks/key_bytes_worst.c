/* Worst-case memory of one metric key (docs/performance.md, "Bytes per
 * key"): 2,000 keys with a 255-byte name and three 1,024-byte dimension
 * values (the longest kplm_put accepts), put by names from 1 or 64 threads,
 * in 1 or 60 distinct seconds of a 60-second window (one bucket each).
 * Prints the RSS growth per key for each of the four cases, each measured
 * in a process of its own.
 *
 *   kplm_key_bytes_worst            (run by scripts/bench.sh)
 */
#include "kplm.h"

#include "bench_support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYS 2000

static _Atomic long long now_seconds;
static double read_clock(void *user_data) { (void)user_data; return (double)atomic_load(&now_seconds); }
static int ignore_export(void *user_data, const kplm_snapshot *s, size_t n) {
    (void)user_data; (void)s; (void)n;
    return 0;
}


static kplm_manager *manager;
static char name[KPLM_NAME_MAX + 1];
static char streams[KEYS][KPLM_DIMENSION_VALUE_MAX + 1];
static char shard[KPLM_DIMENSION_VALUE_MAX + 1], error_code[KPLM_DIMENSION_VALUE_MAX + 1];

static void *put_every_key(void *unused) {
    (void)unused;
    for (int i = 0; i < KEYS; i++) {
        if (kplm_put(manager, name, 1.0, streams[i], shard, error_code) != KPLM_OK) {
            fprintf(stderr, "put refused\n");
            exit(1);
        }
    }
    return NULL;
}

/* Bytes per key with `threads` threads putting on every key in `seconds`
 * distinct seconds. */
static double measure(int threads, int seconds) {
    kplm_config config;
    kplm_config_init(&config);
    config.level = KPLM_LEVEL_DETAILED;
    config.clock = read_clock;
    config.window_seconds = 60;
    config.upload_interval_ms = 3600e3;
    kplm_sink sink = {0};
    sink.export_snapshots = ignore_export;
    if (kplm_new(&config, &manager) != KPLM_OK || kplm_set_sink(manager, &sink) != KPLM_OK
        || kplm_start(manager) != KPLM_OK) {
        fprintf(stderr, "cannot start a manager\n");
        exit(1);
    }
    long before = rss_bytes();
    for (int second = 0; second < seconds; second++) {
        pthread_t t[64];
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, put_every_key, NULL);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        if (second + 1 < seconds) atomic_fetch_add(&now_seconds, 1);
    }
    kplm_flush(manager);   /* the export's own memory counts too */
    double per_key = (double)(rss_bytes() - before) / KEYS;
    kplm_close(manager);
    kplm_free(manager);
    return per_key;
}

int main(void) {
    memset(name, 'n', KPLM_NAME_MAX);
    memset(shard, 'h', KPLM_DIMENSION_VALUE_MAX);
    memset(error_code, 'e', KPLM_DIMENSION_VALUE_MAX);
    for (int i = 0; i < KEYS; i++) {
        memset(streams[i], 's', KPLM_DIMENSION_VALUE_MAX);
        char id[16];
        int n = snprintf(id, sizeof id, "%d", i);
        memcpy(streams[i], id, (size_t)n);
    }
    printf("worst-case key (255-byte name, three 1,024-byte dimensions), %d keys:\n", KEYS);
    fflush(stdout);
    int cases[4][2] = {{1, 1}, {1, 60}, {64, 1}, {64, 60}};
    for (int c = 0; c < 4; c++) {
        /* Each case in a fresh process: memory freed by an earlier case
         * would be reused and hide part of the growth. */
        pid_t child = fork();
        if (child == 0) {
            printf("  %2d thread(s), %2d live second(s): %6.0f bytes per key\n", cases[c][0], cases[c][1],
                   measure(cases[c][0], cases[c][1]));
            fflush(stdout);
            _exit(0);
        }
        int status = 0;
        if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "case %d failed\n", c);
            return 1;
        }
    }
    return 0;
}
