/* A flush of every key, measured alone (docs/performance.md, "What changed
 * in the data layout"): N keys resolved as handles, put once a second for
 * a few seconds (so that each holds that many live seconds), then R
 * snapshot passes (kplm_snapshots of every key), then R rounds of one put
 * on every key in random order by this thread followed by a flush. Prints the
 * best and median flush, the median cost of a put after a flush (the first
 * put of a key after a flush takes the general path), and the best and
 * median snapshot pass. For comparing two builds of libkplm.so on a noisy
 * machine: run it alternately against each (LD_LIBRARY_PATH).
 *
 * With `other writers` W > 0, W threads first put once on every key and
 * exit: each key then has W + 1 writer cells, of which the rounds (this
 * thread's puts) fill one, as after a put phase of a thread pool.
 *
 * Keys are created in export order (their memory then lies in the order a
 * flush's export reads it), or with `random` = 1 in a random order, as
 * kplm_bench_scale creates them (and as a producer meets its shards).
 *
 *   kplm_flush_alone [N = 100000] [R = 30] [live seconds = 1] [other writers = 0] [random = 0]
 */
#include "kplm.h"

#include "bench_keys.h"
#include "bench_support.h"

#include <pthread.h>

static unsigned long long visited;

static int count_visit(void *user_data, const kplm_snapshot *s) {
    (void)user_data;
    (void)s;
    visited++;
    return 0;
}

static kplm_metric **all_handles;
static unsigned key_count;
static pthread_barrier_t writers_done;

/* An other writer: one put on every key (its cell on each), then it exits,
 * once every other writer has put (each holds its own writer index). */
static void *put_once_on_every_key(void *unused) {
    (void)unused;
    for (unsigned k = 0; k < key_count; k++) must(kplm_metric_put(all_handles[k], 1.0), "kplm_metric_put");
    pthread_barrier_wait(&writers_done);
    return NULL;
}

int main(int argc, char **argv) {
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 100000;
    int rounds = argc > 2 ? atoi(argv[2]) : 30;
    int seconds = argc > 3 ? atoi(argv[3]) : 1;
    int writers = argc > 4 ? atoi(argv[4]) : 0;
    int random_creation = argc > 5 ? atoi(argv[5]) : 0;
    if (n < 1 || rounds < 1 || rounds > 1000 || seconds < 1 || writers < 0 || writers > 32 ||
        (random_creation != 0 && random_creation != 1)) {
        fprintf(stderr, "usage: kplm_flush_alone [N >= 1] [1 <= R <= 1000] [live seconds >= 1] "
                        "[0 <= other writers <= 32] [random creation order: 0 or 1]\n");
        return 2;
    }
    kplm_manager *m = counting_manager(n, 60, NULL);

    unsigned *created = random_creation ? shuffled_order_seeded(n, 2) : NULL;
    kplm_metric **handles = shard_handles_created(m, n, created);
    free(created);
    unsigned *order = shuffled_order(n);
    double *flush = malloc((size_t)rounds * sizeof *flush), *puts = malloc((size_t)rounds * sizeof *puts);
    double *reads = malloc((size_t)rounds * sizeof *reads);
    if (!flush || !puts || !reads) return 1;
    /* This thread's writer index first, then the other writers' (held by
     * all of them at once). */
    must(kplm_metric_put(handles[0], 1.0), "kplm_metric_put");
    all_handles = handles;
    key_count = n;
    pthread_t others[32];
    if (writers > 0) pthread_barrier_init(&writers_done, NULL, (unsigned)writers);
    for (int w = 0; w < writers; w++)
        if (pthread_create(&others[w], NULL, put_once_on_every_key, NULL) != 0) return 1;
    for (int w = 0; w < writers; w++) pthread_join(others[w], NULL);
    for (int s = 0; s < seconds; s++) {
        if (s > 0) usleep(1000000);
        for (unsigned k = 0; k < n; k++) must(kplm_metric_put(handles[order[k]], 1.0), "kplm_metric_put");
    }
    must(kplm_flush(m), "kplm_flush");

    /* The snapshots first: every key holds exactly `seconds` live seconds. */
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s();
        must(kplm_snapshots(m, count_visit, NULL), "kplm_snapshots");
        reads[r] = (now_s() - t0) * 1e3;
    }
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s();
        for (unsigned k = 0; k < n; k++) must(kplm_metric_put(handles[order[k]], 1.0), "kplm_metric_put");
        double t1 = now_s();
        must(kplm_flush(m), "kplm_flush");
        flush[r] = (now_s() - t1) * 1e3;
        puts[r] = (t1 - t0) * 1e9 / n;
    }
    double put_median = median(puts, rounds), flush_median = median(flush, rounds);
    double reads_median = median(reads, rounds);   /* (median sorts: [0] is then the best) */
    printf("%u keys (created in %s order), %d live second(s), %d other writer(s): flush of every key best "
           "%.2f ms, median %.2f ms; a put after a flush %.1f ns (median); snapshots best %.2f ms, median %.2f ms\n",
           n, random_creation ? "random" : "export", seconds, writers, flush[0], flush_median, put_median, reads[0],
           reads_median);
    if (exported < (unsigned long long)n * (unsigned long long)rounds ||
        visited != (unsigned long long)n * (unsigned long long)rounds) {
        fprintf(stderr, "unexpected counts: exported %llu, visited %llu\n", exported, visited);
        return 1;
    }
    must(kplm_close(m), "kplm_close");
    kplm_free(m);
    return 0;
}
