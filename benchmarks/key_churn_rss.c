/* Memory of keys that come and go (SPEC §10, "Idle keys give their place
 * back"): 1,000,000 distinct keys pass through a manager capped at
 * max_metrics = 100,000, in 10 rounds of 100,000 new keys. Each round puts
 * its keys, flushes (exporting them), advances the injected clock past the
 * window and flushes again (removing them, now idle). It prints the
 * resident set size (/proc/self/statm) after each round's puts and after
 * its removal flush, the bytes per live key (RSS over the baseline, per
 * key of the round) and per key put so far, and round 10's RSS over round
 * 1's: with idle keys freed, RSS stays flat after the first rounds.
 *
 * Two modes: "names" (kplm_put) and "handles" (kplm_metric_get, then
 * kplm_metric_put; a handle is owned by the manager until kplm_free, as
 * kplm.h documents, so its memory stays after its key is removed and RSS
 * grows with the number of handles handed out).
 *
 *   kplm_key_churn_rss [names|handles|both]     (default both)
 *
 * Exit status 1 if a round's put is refused (KPLM_ELIMIT: idle keys keep
 * their places) or the exported counts differ from the puts. */
#define _GNU_SOURCE
#include <kplm.h>

#include "bench_support.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define ROUNDS 10
#define KEYS_PER_ROUND 100000
#define WINDOW 1

/* Manager-clock time in 1/1024 s, advanced by the main thread only. */
static _Atomic long long clock_ticks;

static double read_clock(void *ud) {
    (void)ud;
    return (double)atomic_load_explicit(&clock_ticks, memory_order_relaxed) / 1024.0;
}

static void advance_clock(long long seconds) {
    atomic_fetch_add_explicit(&clock_ticks, seconds * 1024, memory_order_relaxed);
}

static uint64_t exported; /* observations exported, summed by the sink */

static int count_export(void *ud, const kplm_snapshot *s, size_t n) {
    (void)ud;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, KPLM_METRIC_REFUSED) != 0) exported += s[i].count;
    return 0;
}



static double mib(long bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* One run; returns 0 if every round went through. */
static int run(int handles) {
    const char *mode = handles ? "handles" : "names";
    atomic_store(&clock_ticks, 1000LL * 1024);
    exported = 0;
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.window_seconds = WINDOW;
    cfg.max_metrics = KEYS_PER_ROUND;
    cfg.clock = read_clock;
    kplm_manager *m = NULL;
    kplm_status st = kplm_new(&cfg, &m);
    if (st != KPLM_OK) {
        fprintf(stderr, "kplm_new: %s\n", kplm_status_string(st));
        return 1;
    }
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.export_snapshots = count_export;
    if ((st = kplm_set_sink(m, &sink)) != KPLM_OK || (st = kplm_start(m)) != KPLM_OK) {
        fprintf(stderr, "kplm_set_sink/kplm_start: %s\n", kplm_status_string(st));
        kplm_free(m);
        return 1;
    }

    printf("key churn (%s): %d rounds of %d new keys, max_metrics %d, window %d s\n", mode,
           ROUNDS, KEYS_PER_ROUND, KEYS_PER_ROUND, WINDOW);
    printf("  round  RSS full (MiB)  RSS after removal (MiB)  bytes/live key  "
           "bytes/key put  seconds\n");
    long base = rss_bytes(), first = 0, last = 0;
    uint64_t ok = 0;
    int failed = 0;
    double t_start = now_s();
    for (int r = 1; r <= ROUNDS && !failed; r++) {
        double t0 = now_s();
        for (int i = 0; i < KEYS_PER_ROUND; i++) {
            char stream[32];
            snprintf(stream, sizeof stream, "s%d-%d", r, i);
            if (handles) {
                kplm_metric *h = NULL;
                st = kplm_metric_get(m, "UserRecordsPut", stream, NULL, NULL, &h);
                if (st == KPLM_OK) st = kplm_metric_put(h, 1.0);
            } else {
                st = kplm_put(m, "UserRecordsPut", 1.0, stream, NULL, NULL);
            }
            if (st != KPLM_OK) {
                printf("  round %d, key %d of %d: %s after %llu keys%s\n", r, i + 1,
                       KEYS_PER_ROUND, kplm_status_string(st), (unsigned long long)ok,
                       st == KPLM_ELIMIT ? ": the previous rounds' idle keys still hold "
                                           "their places under max_metrics (not removed "
                                           "at the flush)"
                                         : "");
                failed = 1;
                break;
            }
            ok++;
        }
        if (failed) break;
        if ((st = kplm_flush(m)) != KPLM_OK) {
            printf("  round %d: kplm_flush: %s\n", r, kplm_status_string(st));
            failed = 1;
        }
        long full = rss_bytes();
        advance_clock(WINDOW + 1);
        if ((st = kplm_flush(m)) != KPLM_OK) {
            printf("  round %d: kplm_flush after the window: %s\n", r, kplm_status_string(st));
            failed = 1;
        }
        long after = rss_bytes();
        if (r == 1) first = full;
        last = full;
        printf("  %5d  %14.1f  %23.1f  %14.0f  %13.0f  %7.2f\n", r, mib(full), mib(after),
               (double)(full - base) / KEYS_PER_ROUND, (double)(full - base) / (double)ok,
               now_s() - t0);
    }
    double took = now_s() - t_start;
    if ((st = kplm_close(m)) != KPLM_OK) {
        printf("  kplm_close: %s\n", kplm_status_string(st));
        failed = 1;
    }
    long closed = rss_bytes();
    kplm_free(m);
    long freed = rss_bytes();
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    long trimmed = rss_bytes();
    printf("  baseline RSS %.1f MiB; after close %.1f, after kplm_free %.1f, after "
           "malloc_trim %.1f MiB; %.2f s in all\n",
           mib(base), mib(closed), mib(freed), mib(trimmed), took);
    if (exported != ok) {
        printf("  exactness: %llu puts accepted, %llu exported\n", (unsigned long long)ok,
               (unsigned long long)exported);
        failed = 1;
    }
    if (failed) {
        printf("  %s: FAILED (see above)\n", mode);
        return 1;
    }
    printf("  %s: round %d RSS / round 1 RSS = %.3f (%llu keys put and exported)\n", mode,
           ROUNDS, (double)last / (double)first, (unsigned long long)ok);
    return 0;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "both";
    int rc = 0;
    if (strcmp(which, "names") == 0 || strcmp(which, "both") == 0) rc |= run(0);
    if (strcmp(which, "handles") == 0 || strcmp(which, "both") == 0) rc |= run(1);
    if (strcmp(which, "names") != 0 && strcmp(which, "handles") != 0 &&
        strcmp(which, "both") != 0) {
        fprintf(stderr, "usage: %s [names|handles|both]\n", argv[0]);
        return 2;
    }
    return rc;
}
