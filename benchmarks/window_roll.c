/* Full windows rolling (docs/performance.md, "The next step"): N keys
 * resolved as handles, a W-second window, an injected clock. Each round
 * advances the clock one second, puts once on every key in random order
 * and flushes; once every window is full (after W + 2 rounds) each new
 * second moves a bucket out of every key's window. Prints the median cost
 * of such a put, flush and snapshot pass over R rounds, and checks that
 * every round exported every key and every snapshot saw a full window.
 * For comparing two builds of libkplm.so on a noisy machine: run it
 * alternately against each (LD_LIBRARY_PATH).
 *
 *   kplm_window_roll [N = 100000] [R = 8] [window seconds W = 60]
 */
#include "kplm.h"

#include "bench_keys.h"
#include "bench_support.h"

static double fake_now = 1000;
static unsigned long long visited, full_windows;
static unsigned window;

static double injected_clock(void *user_data) {
    (void)user_data;
    return fake_now;
}

static int count_visit(void *user_data, const kplm_snapshot *s) {
    (void)user_data;
    visited++;
    if (s->count == window) full_windows++;   /* one put a second, every second of the window */
    return 0;
}

int main(int argc, char **argv) {
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 100000;
    int rounds = argc > 2 ? atoi(argv[2]) : 8;
    int seconds = argc > 3 ? atoi(argv[3]) : 60;
    if (n < 1 || rounds < 1 || rounds > 1000 || seconds < 1 || seconds > 3600) {
        fprintf(stderr, "usage: kplm_window_roll [N >= 1] [1 <= R <= 1000] [1 <= window seconds <= 3600]\n");
        return 2;
    }
    window = (unsigned)seconds;
    kplm_manager *m = counting_manager(n, (uint32_t)seconds, injected_clock);

    kplm_metric **handles = shard_handles(m, n);
    unsigned *order = shuffled_order(n);
    double *puts = malloc((size_t)rounds * sizeof *puts), *flush = malloc((size_t)rounds * sizeof *flush);
    double *reads = malloc((size_t)rounds * sizeof *reads);
    if (!puts || !flush || !reads) return 1;
    int warm = seconds + 2;   /* rounds until every window is full */
    for (int r = 0; r < warm + rounds; r++) {
        fake_now += 1;
        exported = 0;
        double t0 = now_s();
        for (unsigned k = 0; k < n; k++) must(kplm_metric_put(handles[order[k]], 1.0), "kplm_metric_put");
        double t1 = now_s();
        must(kplm_flush(m), "kplm_flush");
        double t2 = now_s();
        if (exported != n) {
            fprintf(stderr, "round %d: exported %llu keys, expected %u\n", r, exported, n);
            return 1;
        }
        if (r < warm) continue;
        visited = full_windows = 0;
        double t3 = now_s();
        must(kplm_snapshots(m, count_visit, NULL), "kplm_snapshots");
        reads[r - warm] = (now_s() - t3) * 1e3;
        if (visited != n || full_windows != n) {
            fprintf(stderr, "round %d: %llu keys visited, %llu with a full window; expected %u\n", r, visited,
                    full_windows, n);
            return 1;
        }
        puts[r - warm] = (t1 - t0) * 1e9 / n;
        flush[r - warm] = (t2 - t1) * 1e3;
    }
    printf("%u keys, full %d-second windows rolling: a put in a new second %.1f ns, a flush %.2f ms, "
           "snapshots %.2f ms (medians of %d rounds)\n",
           n, seconds, median(puts, rounds), median(flush, rounds), median(reads, rounds), rounds);
    must(kplm_close(m), "kplm_close");
    kplm_free(m);
    free(handles);
    free(order);
    free(puts);
    free(flush);
    free(reads);
    return 0;
}
