/* A deliberately naive metrics store, the baseline of benchmarks/bench_scale.c.
 *
 * Same semantics as kplm for the scale benchmark's workload (DETAILED level,
 * rolling window of per-second buckets, pending statistics handed over at
 * each flush), built the obvious way: ONE pthread mutex around one hash map
 * (open addressing, linear probing) from a key (name, stream, shard,
 * error_code, copied) to an entry holding a growable array of per-second
 * buckets and the pending (not yet flushed) statistics. Every operation takes
 * the mutex; callbacks run under it.
 *
 * Time: whole seconds of CLOCK_MONOTONIC, cached. naive_new starts a ticker
 * thread that stores the current second once per second, 2 ms after each
 * boundary, as kplm's ticker does (Sources/CKPLMShims/shims.c); a put reads
 * that cached second (one relaxed atomic load, made under the mutex so that
 * the seconds of an entry's buckets never go backwards).
 *
 * Not kplm: no UTF-8 or length checks, no max_metrics, no idle-key removal
 * (entries live until naive_free), no granularity, no sinks. All functions
 * are thread-safe, except naive_free (no other call may be running). */
#ifndef KPLM_NAIVE_METRICS_H
#define KPLM_NAIVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

/** The store. Create with naive_new, release with naive_free. */
typedef struct naive_metrics naive_metrics;
/** One key of a store, owned by it (valid until naive_free). */
typedef struct naive_entry naive_entry;

/** Statistics of one key handed to a callback; absent dimensions are "". */
typedef struct {
    const char *name, *stream, *shard, *error_code;
    uint64_t count;
    double sum, min, max;
} naive_stats;

/** Callback of naive_flush and naive_snapshots; runs under the store's mutex. */
typedef void (*naive_visit)(void *user_data, const naive_stats *s);

/** Return values of the puts. */
#define NAIVE_OK 0
#define NAIVE_EINVAL (-1) /**< NULL or empty name, NaN or infinite value */
#define NAIVE_ENOMEM (-2)

/** A store with a rolling window of `window_seconds` (>= 1); NULL on failure. */
naive_metrics *naive_new(uint32_t window_seconds);

/** Records `value` for the key (NULL dimensions = ""): hashes the strings,
 * locks, finds or inserts the key, records, unlocks. */
int naive_put(naive_metrics *n, const char *name, double value,
              const char *stream, const char *shard, const char *error_code);

/** Finds or inserts the key and returns its entry, for naive_handle_put;
 * NULL for a NULL/empty name or out of memory. */
naive_entry *naive_handle_get(naive_metrics *n, const char *name,
                              const char *stream, const char *shard, const char *error_code);

/** Records `value` for a resolved key: locks, records, unlocks. */
int naive_handle_put(naive_entry *h, double value);

/** Under the mutex: hands every key's pending statistics (keys with data
 * only) to `visit`, resets them, and drops buckets that left the window.
 * Returns the number of keys handed over. */
size_t naive_flush(naive_metrics *n, naive_visit visit, void *user_data);

/** Under the mutex: hands the window statistics of every key with data in
 * the window to `visit`. Returns the number of keys visited. */
size_t naive_snapshots(naive_metrics *n, naive_visit visit, void *user_data);

/** Stops the ticker and releases the store and all its entries. NULL is fine. */
void naive_free(naive_metrics *n);

#endif
