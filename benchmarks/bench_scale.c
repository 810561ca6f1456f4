/* kplm scale benchmark: kplm next to a deliberately naive C store
 * (benchmarks/naive_metrics.c: one mutex, one hash map) in the same run, as
 * the number of keys grows.
 *
 *   kplm_bench_scale [--json FILE] [--quick] [--timeout SECONDS]
 *
 * Workload: metric "UserRecordsPut" on stream "orders" with N distinct shard
 * ids ("shardId-%012d"), N in 1,000 / 10,000 / 100,000 / 1,000,000 (--quick:
 * without 1,000,000), DETAILED level, 60 s window, the system clock, no
 * periodic upload (explicit kplm_flush only), a sink that only counts. kplm
 * gets max_metrics N + 16. Puts go in pre-shuffled random orders over all
 * N keys, the same orders for both implementations (fixed seeds): each
 * pass of a thread over the keys follows the next of four put orders (two
 * threads are on different ones). Keys are created in a fifth order, so
 * that no memory either store allocates is laid out in the order of the
 * passes that are timed.
 *
 * Figures, for each N and implementation:
 *   - ns per put through handles resolved beforehand (kplm_metric_get /
 *     naive_handle_get), 1 and 2 threads, and by names (kplm_put /
 *     naive_put), 1 and 2 threads: wall time of a run / puts per thread
 *     (a run is enough passes over the keys for ~2,000,000 puts per thread);
 *   - ns per put by handle on a key for the first time since the last flush
 *     (one thread, one pass over every key, timed before each flush below);
 *   - ns per put by handle on a key whose data so far is of an earlier second
 *     (one thread: a pass over every key, a pause of 1.05 s, a timed pass);
 *   - flush ms with every key new (each key put once since the last flush);
 *   - flush ms after 1% of the keys changed;
 *   - snapshots ms (the window statistics of every key);
 *   - bytes per key: RSS (/proc/self/statm) growth from before the store is
 *     created to after N keys were created by one put each.
 * Timings are medians of 3 repetitions after one untimed warm-up (1
 * repetition for N = 1,000,000; --quick: 1 and ~500,000 puts per run).
 *
 * Each (implementation, N) runs in its own forked child (the parent never
 * creates a store), so that memory freed by an earlier measurement is not
 * reused by a later one; the child pipes its figures back. A child still
 * running after --timeout seconds (default 120) is ended: its figures show
 * as "timeout" (JSON null) and the exit status is 1. Every put is
 * checked (a refused put ends the run), and each child checks that the
 * counts exported by its flushes add up to the puts of the flush phase and
 * that every flush and snapshot saw the expected number of keys. */
#define _GNU_SOURCE
#include <kplm.h>

#include "bench_support.h"
#include "naive_metrics.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES 4
#define SHARD_LEN 24   /* "shardId-" + 12 digits + NUL, rounded up */

static const uint32_t all_sizes[MAX_SIZES] = {1000, 10000, 100000, 1000000};
static int size_count = MAX_SIZES;
static int repetitions = 3;
static long target_puts = 2000000;   /* puts per thread per timed run */
static unsigned child_timeout = 120; /* seconds; a child still running is killed (SIGALRM) */

static char *shards;                 /* shard id of key k at shards + k * SHARD_LEN */
/* Shuffles of 0..N-1 (see make_orders): orders[0..PUT_ORDERS-1] are put
 * orders, orders[CREATION_ORDER] the order keys are created in. A pass of
 * puts follows the next put order after the one its thread followed in its
 * previous pass. Memory a store allocates at a put (kplm's writer cells at a
 * thread's first put on a key, the naive store's bucket of a new second) is
 * laid out in the order of the pass that allocated it: were every pass to
 * follow one order, or keys created in the order they are then put, a
 * "random" pass would walk that memory sequentially, which the hardware
 * prefetchers stream. */
#define PUT_ORDERS 4
#define CREATION_ORDER PUT_ORDERS
static uint32_t *orders[PUT_ORDERS + 1];

enum { KPLM, NAIVE, IMPLS };
static const char *const impl_names[IMPLS] = {"kplm", "naive"};

enum {
    F_HANDLE_1T, F_HANDLE_2T, F_NAMES_1T, F_NAMES_2T, F_HANDLE_AFTER_FLUSH,
    F_HANDLE_NEW_SECOND, F_FLUSH_ALL, F_FLUSH_1PCT, F_SNAPSHOTS, F_BYTES, F_COUNT
};

static const struct {
    const char *id, *what, *unit;
} figure_meta[F_COUNT] = {
    {"put_handle_1t", "put by handle, 1 thread", "ns/put"},
    {"put_handle_2t", "put by handle, 2 threads", "ns/put/thread"},
    {"put_names_1t", "put by names, 1 thread", "ns/put"},
    {"put_names_2t", "put by names, 2 threads", "ns/put/thread"},
    {"put_handle_after_flush", "put by handle, first since a flush", "ns/put"},
    {"put_handle_new_second", "put by handle, first in a new second", "ns/put"},
    {"flush_all_new", "flush, every key new", "ms"},
    {"flush_1pct", "flush, 1% of keys changed", "ms"},
    {"snapshots", "snapshots of every key", "ms"},
    {"bytes_per_key", "bytes per key (RSS growth / N)", "B"},
};

/* What a child sends back. */
typedef struct {
    double value[F_COUNT];
    uint64_t exported, expected;   /* flush-phase counts: exported vs put */
} result;

/* ---- helpers ------------------------------------------------------------- */




static void die(const char *what, const char *why) {
    fprintf(stderr, "kplm_bench_scale: %s: %s\n", what, why);
    exit(1);
}

static inline void must(kplm_status st, const char *what) {
    if (__builtin_expect(st != KPLM_OK, 0)) die(what, kplm_status_string(st));
}

static inline void must_naive(int st, const char *what) {
    if (__builtin_expect(st != NAIVE_OK, 0)) die(what, st == NAIVE_ENOMEM ? "out of memory" : "invalid");
}


static const char *shard(uint32_t k) { return shards + (size_t)k * SHARD_LEN; }

/* xorshift64*: fixed seeds, the same orders in every run. */
static uint64_t rng_state;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* orders[t][0..n-1]: a shuffle of 0..n-1 for each t (fresh per N, made
 * in the parent before forking, so both implementations get the same). */
static void make_orders(uint32_t n) {
    for (int t = 0; t <= PUT_ORDERS; t++) {
        rng_state = 0x9E3779B97F4A7C15ULL + (uint64_t)t * 7919 + n;
        uint32_t *o = orders[t];
        for (uint32_t i = 0; i < n; i++) o[i] = i;
        for (uint32_t i = n - 1; i > 0; i--) {
            uint32_t j = (uint32_t)(rng_next() % (i + 1));
            uint32_t x = o[i];
            o[i] = o[j];
            o[j] = x;
        }
    }
}

/* ---- the stores ---------------------------------------------------------- */

typedef struct {
    int impl;
    uint32_t n;
    kplm_manager *m;
    naive_metrics *nm;
    void **handles;   /* kplm_metric * or naive_entry *, by key */
} store;

static _Atomic uint64_t exported_count;   /* observations handed to the sink */
static _Atomic uint64_t exported_keys;    /* snapshots handed to the sink */
static _Atomic uint64_t visited_keys;

static int count_export(void *ud, const kplm_snapshot *s, size_t n) {
    (void)ud;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(s[i].name, KPLM_METRIC_REFUSED) || !strcmp(s[i].name, KPLM_METRIC_SINK_DROPPED))
            continue;
        atomic_fetch_add(&exported_count, s[i].count);
        atomic_fetch_add(&exported_keys, 1);
    }
    return 0;
}

static int count_visit(void *ud, const kplm_snapshot *s) {
    (void)ud;
    (void)s;
    atomic_fetch_add_explicit(&visited_keys, 1, memory_order_relaxed);
    return 0;
}

static void naive_count_export(void *ud, const naive_stats *s) {
    (void)ud;
    atomic_fetch_add(&exported_count, s->count);
    atomic_fetch_add(&exported_keys, 1);
}

static void naive_count_visit(void *ud, const naive_stats *s) {
    (void)ud;
    (void)s;
    atomic_fetch_add_explicit(&visited_keys, 1, memory_order_relaxed);
}

static void store_new(store *s) {
    if (s->impl == KPLM) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_DETAILED;
        cfg.window_seconds = 60;
        cfg.upload_interval_ms = 3600e3;   /* explicit kplm_flush only */
        cfg.max_metrics = s->n + 16;
        must(kplm_new(&cfg, &s->m), "kplm_new");
        kplm_sink sink;
        memset(&sink, 0, sizeof sink);
        sink.export_snapshots = count_export;
        must(kplm_set_sink(s->m, &sink), "kplm_set_sink");
        must(kplm_start(s->m), "kplm_start");
    } else {
        s->nm = naive_new(60);
        if (!s->nm) die("naive_new", "failed");
    }
}

static void store_free(store *s) {
    if (s->impl == KPLM) {
        must(kplm_close(s->m), "kplm_close");
        kplm_free(s->m);
    } else {
        naive_free(s->nm);
    }
}

static void put_name_once(store *s, uint32_t k) {
    if (s->impl == KPLM) must(kplm_put(s->m, "UserRecordsPut", 1.0, "orders", shard(k), NULL), "kplm_put");
    else must_naive(naive_put(s->nm, "UserRecordsPut", 1.0, "orders", shard(k), NULL), "naive_put");
}

static void put_handle_once(store *s, uint32_t k) {
    if (s->impl == KPLM) must(kplm_metric_put(s->handles[k], 1.0), "kplm_metric_put");
    else must_naive(naive_handle_put(s->handles[k], 1.0), "naive_handle_put");
}

static void store_flush(store *s) {
    if (s->impl == KPLM) must(kplm_flush(s->m), "kplm_flush");
    else (void)naive_flush(s->nm, naive_count_export, NULL);
}

static void store_snapshots(store *s) {
    if (s->impl == KPLM) must(kplm_snapshots(s->m, count_visit, NULL), "kplm_snapshots");
    else (void)naive_snapshots(s->nm, naive_count_visit, NULL);
}

/* ---- put loops: one per (implementation, kind), no dispatch inside ------- */

typedef struct {
    store *s;
    int first_order;   /* pass p follows orders[(first_order + p) % PUT_ORDERS] */
    uint32_t n;
    long passes;
    pthread_barrier_t *start;
    double began, ended;   /* this thread's loop, in now_s() seconds */
} work;

#define PUT_LOOP(fn_name, stmt)                                          \
    static void *fn_name(void *arg) {                                    \
        work *w = arg;                                                   \
        store *s = w->s;                                                 \
        pthread_barrier_wait(w->start);                                  \
        w->began = now_s();                                              \
        for (long p = 0; p < w->passes; p++) {                           \
            const uint32_t *order = orders[(w->first_order + p) % PUT_ORDERS]; \
            for (uint32_t i = 0; i < w->n; i++) {                        \
                uint32_t k = order[i];                                   \
                stmt;                                                    \
            }                                                            \
        }                                                                \
        w->ended = now_s();                                              \
        return NULL;                                                     \
    }

PUT_LOOP(kplm_handle_loop, must(kplm_metric_put(s->handles[k], 1.0), "kplm_metric_put"))
PUT_LOOP(kplm_names_loop,
         must(kplm_put(s->m, "UserRecordsPut", 1.0, "orders", shard(k), NULL), "kplm_put"))
PUT_LOOP(naive_handle_loop, must_naive(naive_handle_put(s->handles[k], 1.0), "naive_handle_put"))
PUT_LOOP(naive_names_loop,
         must_naive(naive_put(s->nm, "UserRecordsPut", 1.0, "orders", shard(k), NULL), "naive_put"))

static long passes_for(uint32_t n) {
    long p = target_puts / (long)n;
    return p < 1 ? 1 : p;
}

/* The put order the next run's thread 0 starts with (runs go on with the
 * rotation where the previous one stopped). */
static int next_order;

/* One run on `threads` threads (thread t starts with put order
 * next_order + t); returns the
 * wall time from the first thread's start to the last one's end, in ns per
 * put per thread. (Each thread reads the clock itself: a main thread
 * descheduled after the barrier would read it late.) */
static double run_puts(void *(*loop)(void *), store *s, int threads) {
    pthread_t t[2];
    work w[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        w[i] = (work){s, next_order + i, s->n, passes_for(s->n), &start, 0, 0};
        if (pthread_create(&t[i], NULL, loop, &w[i]) != 0) die("pthread_create", "failed");
    }
    pthread_barrier_wait(&start);
    next_order = (int)((next_order + passes_for(s->n)) % PUT_ORDERS);
    double began = 0, ended = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (i == 0 || w[i].began < began) began = w[i].began;
        if (i == 0 || w[i].ended > ended) ended = w[i].ended;
    }
    double wall = ended - began;
    pthread_barrier_destroy(&start);
    return wall / ((double)passes_for(s->n) * s->n) * 1e9;
}

static int reps_for(uint32_t n) { return n >= 1000000 ? 1 : repetitions; }

static double measure_puts(void *(*loop)(void *), store *s, int threads) {
    double v[16];
    int reps = reps_for(s->n);
    (void)run_puts(loop, s, threads);   /* warm-up, not timed */
    for (int r = 0; r < reps; r++) v[r] = run_puts(loop, s, threads);
    return median(v, reps);
}

/* ---- one (implementation, N), in a forked child --------------------------- */

static void check(int ok, const char *what, uint64_t got, uint64_t want) {
    if (!ok) {
        char why[96];
        snprintf(why, sizeof why, "got %llu, expected %llu", (unsigned long long)got,
                 (unsigned long long)want);
        die(what, why);
    }
}

static void run_one(int impl, uint32_t n, result *res) {
    store st = {.impl = impl, .n = n};
    store *s = &st;
    int reps = reps_for(n);

    /* Memory: RSS growth from before the store exists to N keys created by
     * one put (by names) each. */
    long rss0 = rss_bytes();
    store_new(s);
    for (uint32_t i = 0; i < n; i++) put_name_once(s, orders[CREATION_ORDER][i]);
    long rss1 = rss_bytes();
    res->value[F_BYTES] = (double)(rss1 - rss0) / n;

    /* Handles, resolved beforehand. */
    s->handles = calloc(n, sizeof *s->handles);
    if (!s->handles) die("calloc", "out of memory");
    for (uint32_t k = 0; k < n; k++) {
        if (impl == KPLM) {
            must(kplm_metric_get(s->m, "UserRecordsPut", "orders", shard(k), NULL,
                                 (kplm_metric **)&s->handles[k]), "kplm_metric_get");
        } else {
            s->handles[k] = naive_handle_get(s->nm, "UserRecordsPut", "orders", shard(k), NULL);
            if (!s->handles[k]) die("naive_handle_get", "failed");
        }
    }

    void *(*handle_loop)(void *) = impl == KPLM ? kplm_handle_loop : naive_handle_loop;
    void *(*names_loop)(void *) = impl == KPLM ? kplm_names_loop : naive_names_loop;
    res->value[F_HANDLE_1T] = measure_puts(handle_loop, s, 1);
    res->value[F_HANDLE_2T] = measure_puts(handle_loop, s, 2);
    res->value[F_NAMES_1T] = measure_puts(names_loop, s, 1);
    res->value[F_NAMES_2T] = measure_puts(names_loop, s, 2);

    /* A put by handle on a key whose data so far is of an earlier second
     * (a key put to about once a second: most keys of a large key set; at
     * 1,000,000 keys, most puts of the runs above): every key is put to,
     * then, once every clock's second has changed, put to again, timed. */
    double fresh[16];
    for (int r = 0; r < reps; r++) {
        for (uint32_t i = 0; i < n; i++) put_handle_once(s, orders[2][i]);
        struct timespec pause = {1, 50000000};
        nanosleep(&pause, NULL);
        double p0 = now_s();
        for (uint32_t i = 0; i < n; i++) put_handle_once(s, orders[3][i]);
        fresh[r] = (now_s() - p0) * 1e9 / n;
    }
    res->value[F_HANDLE_NEW_SECOND] = median(fresh, reps);

    /* Flush phase: clear what the put runs left, then count from zero. */
    store_flush(s);
    atomic_store(&exported_count, 0);
    uint64_t expected = 0;
    double v[16];
    double after[16];
    for (int r = 0; r < reps; r++) {
        double p0 = now_s();
        for (uint32_t i = 0; i < n; i++) put_handle_once(s, orders[0][i]);
        after[r] = (now_s() - p0) * 1e9 / n;
        expected += n;
        atomic_store(&exported_keys, 0);
        double t0 = now_s();
        store_flush(s);
        v[r] = (now_s() - t0) * 1e3;
        check(atomic_load(&exported_keys) == n, "flush, every key new: keys exported",
              atomic_load(&exported_keys), n);
    }
    res->value[F_FLUSH_ALL] = median(v, reps);
    res->value[F_HANDLE_AFTER_FLUSH] = median(after, reps);

    uint32_t changed = n / 100 ? n / 100 : 1;
    for (int r = 0; r < reps; r++) {
        for (uint32_t i = 0; i < changed; i++)
            put_handle_once(s, orders[1][((size_t)r * changed + i) % n]);
        expected += changed;
        atomic_store(&exported_keys, 0);
        double t0 = now_s();
        store_flush(s);
        v[r] = (now_s() - t0) * 1e3;
        check(atomic_load(&exported_keys) == changed, "flush, 1% changed: keys exported",
              atomic_load(&exported_keys), changed);
    }
    res->value[F_FLUSH_1PCT] = median(v, reps);

    for (int r = 0; r < reps; r++) {
        atomic_store(&visited_keys, 0);
        double t0 = now_s();
        store_snapshots(s);
        v[r] = (now_s() - t0) * 1e3;
        check(atomic_load(&visited_keys) == n, "snapshots: keys visited", atomic_load(&visited_keys), n);
    }
    res->value[F_SNAPSHOTS] = median(v, reps);

    store_free(s);   /* kplm_close's final flush has nothing new to export */
    res->exported = atomic_load(&exported_count);
    res->expected = expected;
    check(res->exported == res->expected, "exported count of the flush phase", res->exported, res->expected);
    free(s->handles);
}

static int run_in_child(int impl, uint32_t n, result *res) {
    int fd[2];
    if (pipe(fd) != 0) die("pipe", "failed");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork", "failed");
    if (pid == 0) {
        close(fd[0]);
        alarm(child_timeout);   /* default action: the child ends, the parent reports it */
        result r;
        memset(&r, 0, sizeof r);
        run_one(impl, n, &r);
        ssize_t w = write(fd[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof *res) {
        ssize_t k = read(fd[0], (char *)res + got, sizeof *res - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) return 1;
    return got == sizeof *res && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* A figure as a table cell; "timeout" for a measurement that ran out. */
static void print_cell(double v, int decimals, const char *suffix) {
    if (isnan(v)) printf(" %11s", "timeout");
    else printf(" %*.*f%s", 11 - (int)strlen(suffix), decimals, v, suffix);
}

static void json_number(FILE *out, const char *key, double v) {
    if (isnan(v)) fprintf(out, "\"%s\": null", key);
    else fprintf(out, "\"%s\": %.4f", key, v);
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--quick")) { size_count = 3; repetitions = 1; target_puts = 500000; }
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) child_timeout = (unsigned)atoi(argv[++i]);
        else { fprintf(stderr, "usage: kplm_bench_scale [--json FILE] [--quick] [--timeout SECONDS]\n"); return 2; }
    }

    uint32_t max_n = all_sizes[size_count - 1];
    shards = malloc((size_t)max_n * SHARD_LEN);
    for (int t = 0; t <= PUT_ORDERS; t++) {
        orders[t] = malloc((size_t)max_n * sizeof(uint32_t));
        if (!orders[t]) die("malloc", "out of memory");
    }
    if (!shards) die("malloc", "out of memory");
    for (uint32_t k = 0; k < max_n; k++) snprintf(shards + (size_t)k * SHARD_LEN, SHARD_LEN, "shardId-%012u", k);

    static result res[MAX_SIZES][IMPLS];
    double t_start = now_s();
    int timed_out = 0;
    for (int si = 0; si < size_count; si++) {
        uint32_t n = all_sizes[si];
        make_orders(n);
        for (int impl = 0; impl < IMPLS; impl++) {
            double t0 = now_s();
            int st = run_in_child(impl, n, &res[si][impl]);
            if (st < 0) {
                fprintf(stderr, "kplm_bench_scale: %s, N = %u failed\n", impl_names[impl], n);
                return 1;
            }
            if (st > 0) {
                printf("  %-5s N = %7u: TIMEOUT after %u s (no figures)\n", impl_names[impl], n, child_timeout);
                for (int f = 0; f < F_COUNT; f++) res[si][impl].value[f] = NAN;
                timed_out = 1;
                fflush(stdout);
                continue;
            }
            printf("  %-5s N = %7u: %.1f s (flush phase: exported count %llu = %llu puts)\n", impl_names[impl], n,
                    now_s() - t0, (unsigned long long)res[si][impl].exported,
                    (unsigned long long)res[si][impl].expected);
            fflush(stdout);
        }
    }

    printf("\nkplm %s scale benchmark, kplm vs a naive C store (one mutex, one hash map);\n"
           "medians of %d runs (1 for N = 1,000,000) of ~%ld puts per thread; total %.0f s\n\n",
           kplm_version(), repetitions, target_puts, now_s() - t_start);
    printf("%-44s %-11s", "figure", "N =");
    for (int si = 0; si < size_count; si++) printf(" %11u", all_sizes[si]);
    printf("\n");
    for (int f = 0; f < F_COUNT; f++) {
        for (int row = 0; row < 3; row++) {
            char label[64];
            if (row == 0) snprintf(label, sizeof label, "%s (%s)", figure_meta[f].what, figure_meta[f].unit);
            else label[0] = 0;
            printf("%-44s %-11s", label, row == 0 ? "kplm" : row == 1 ? "naive" : "kplm/naive");
            for (int si = 0; si < size_count; si++) {
                double k = res[si][KPLM].value[f], nv = res[si][NAIVE].value[f];
                if (row < 2) print_cell(row == 0 ? k : nv, f >= F_FLUSH_ALL && f < F_BYTES ? 3 : 1, "");
                else print_cell(k / nv, 2, "x");
            }
            printf("\n");
        }
    }

    if (json_path) {
        FILE *out = fopen(json_path, "w");
        if (!out) { perror(json_path); return 1; }
        fprintf(out, "{\n  \"version\": \"%s\",\n  \"repetitions\": %d,\n  \"puts_per_run\": %ld,\n  \"figures\": [\n",
                kplm_version(), repetitions, target_puts);
        int first = 1;
        for (int f = 0; f < F_COUNT; f++)
            for (int si = 0; si < size_count; si++) {
                double k = res[si][KPLM].value[f], nv = res[si][NAIVE].value[f];
                fprintf(out, "%s    {\"id\": \"%s\", \"what\": \"%s\", \"unit\": \"%s\", \"keys\": %u, ",
                        first ? "" : ",\n", figure_meta[f].id, figure_meta[f].what, figure_meta[f].unit,
                        all_sizes[si]);
                json_number(out, "kplm", k);
                fprintf(out, ", ");
                json_number(out, "naive", nv);
                fprintf(out, ", ");
                json_number(out, "ratio", k / nv);
                fprintf(out, "}");
                first = 0;
            }
        fprintf(out, "\n  ]\n}\n");
        fclose(out);
        printf("\nJSON written to %s\n", json_path);
    }
    if (timed_out) {
        fprintf(stderr, "kplm_bench_scale: a measurement ran out of time (%u s)\n", child_timeout);
        return 1;
    }
    return 0;
}
