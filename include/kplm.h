/*
 * kplm.h — the C ABI of kplm, the metrics core of the Kinesis Producer Library.
 *
 * kplm accumulates observations (records put, bytes, errors by code, times…)
 * into per-second (count, sum, min, max) buckets, from many threads at once,
 * and periodically flushes aggregates to a sink you provide.
 *
 * Conventions used throughout this header:
 *  - Every function returning kplm_status returns KPLM_OK (0) on success and
 *    a non-zero status otherwise; kplm_status_string() names it.
 *  - Strings are NUL-terminated UTF-8. A NULL or empty ("") dimension string
 *    means "no such dimension". Strings passed in are copied when kept; the
 *    caller keeps ownership of everything it passes.
 *  - Every pointer handed to a callback is valid only during that call.
 *  - Every function is thread-safe unless its comment says otherwise.
 *  - Callbacks run with no internal lock held that kplm_put needs, so a sink
 *    may call kplm_put (a put made inside `record` is recorded and exported
 *    but calls no `record` again). A callback must not call kplm_flush,
 *    kplm_close or kplm_free on its own manager: such a call returns
 *    KPLM_ESTATE (kplm_free does nothing) instead of deadlocking. Signal
 *    handlers and exit without close: see "Lifecycle" after kplm_free.
 *  - fork(): the child has only the forking thread, so a manager created
 *    before the fork (whose locks another thread may have held, and whose
 *    uploader thread is gone) refuses every call in the child with
 *    KPLM_ESTATE, without blocking; kplm_free on it releases nothing. Create
 *    a new manager in the child. The parent is unaffected.
 *
 * Version: this header describes the ABI of KPLM_VERSION_MAJOR.MINOR.PATCH.
 * Within a major version, functions and struct fields are only ever added,
 * and binaries keep working across versions in both directions:
 *
 * Struct growth (the 1.0 ABI). A program built against this header works
 * with every later 1.x library, and a program built against a later 1.x
 * header works with this library as long as it leaves at zero the fields
 * this library does not know. To stay compatible a caller must:
 *  - call the functions by the names this header gives them: several are
 *    macros (kplm_config_init, kplm_set_sink, kplm_snapshots, kplm_query…)
 *    that pass the library sizeof of the structs as this header lays them
 *    out, through a *_sized function;
 *  - initialise a config struct with its init macro, then set fields; or
 *    with a designated initializer (fields left out are zero) whose
 *    struct_size is sizeof the struct or 0 (0 means the 1.0 layout);
 *  - in a sink, index the snapshots it is handed as an array of its own
 *    kplm_snapshot (s[i]): they are laid out at the size it was built with.
 * The library's side of it:
 *  - Structs only grow at their end. kplm_dimension, a (name, value) pair,
 *    never changes.
 *  - The library never reads or writes past the caller's size. It reads an
 *    older caller's struct up to its size (later fields keep their
 *    defaults), and a newer caller's only if every byte past what the
 *    library knows is zero (fields added later have 0 as their default);
 *    otherwise KPLM_EINVAL. It writes (and lays out for callbacks) exactly
 *    the caller's size: a newer caller sees zeros in fields the library
 *    does not know.
 *  - The exported symbols named like the macros keep the layouts they were
 *    published with, for binaries built against older headers:
 *    kplm_config_init writes the first kplm_config layout (through
 *    max_metrics, 48 bytes on 64-bit targets), the others the 1.0 layouts.
 *  - Built-in sinks use only the 1.0 part of kplm_sink.
 * The 1.0 ABI is checked against a committed baseline (abi/, abidiff).
 */
#ifndef KPLM_H
#define KPLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define KPLM_VERSION_MAJOR 1
#define KPLM_VERSION_MINOR 2
#define KPLM_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH, for preprocessor comparisons. */
#define KPLM_VERSION_NUMBER \
    (KPLM_VERSION_MAJOR * 10000 + KPLM_VERSION_MINOR * 100 + KPLM_VERSION_PATCH)

/* ------------------------------------------------------------------------ */
/* Limits                                                                    */
/* ------------------------------------------------------------------------ */

/** Longest metric name accepted, in bytes (excluding the NUL). */
#define KPLM_NAME_MAX 255
/** Longest dimension value (stream, shard id, error code), in bytes. */
#define KPLM_DIMENSION_VALUE_MAX 1024
/** Bounds of kplm_config.window_seconds. */
#define KPLM_WINDOW_SECONDS_MIN 1
#define KPLM_WINDOW_SECONDS_MAX 3600

/**
 * Name of the metric kplm keeps by itself, with no dimensions: one
 * observation of value 1 per put refused with KPLM_ELIMIT because the
 * manager already holds max_metrics distinct keys. It does not count
 * against max_metrics and is exported like any other metric.
 */
#define KPLM_METRIC_REFUSED "KplmMetricsRefused"

/**
 * Name of the other metric kplm keeps by itself, with no dimensions: one
 * observation of value 1 per item a sink accepted in a successful export
 * but could not deliver for a reason of its own (the DogStatsD, EMF and
 * CloudWatch sinks say which, at their constructors). The count of an
 * export is added after it returns, so it is exported by the next flush
 * (close exports it at once). Like KPLM_METRIC_REFUSED it does not count
 * against max_metrics and is always shown. A failed export counts nothing
 * here: its data is kept and offered again.
 */
#define KPLM_METRIC_SINK_DROPPED "KplmSinkDropped"

/**
 * The Kinesis Producer Library's metric names, byte for byte, with their
 * unit and KPL level (kplm_metric_unit, kplm_metric_level).
 */
#define KPLM_METRIC_USER_RECORDS_RECEIVED "UserRecordsReceived"               /**< Count, Detailed */
#define KPLM_METRIC_USER_RECORDS_PENDING "UserRecordsPending"                 /**< Count, Detailed */
#define KPLM_METRIC_USER_RECORDS_PUT "UserRecordsPut"                         /**< Count, Summary */
#define KPLM_METRIC_USER_RECORDS_DATA_PUT "UserRecordsDataPut"                /**< Bytes, Detailed */
#define KPLM_METRIC_KINESIS_RECORDS_PUT "KinesisRecordsPut"                   /**< Count, Summary */
#define KPLM_METRIC_KINESIS_RECORDS_DATA_PUT "KinesisRecordsDataPut"          /**< Bytes, Detailed */
#define KPLM_METRIC_ERRORS_BY_CODE "ErrorsByCode"                             /**< Count, Summary */
#define KPLM_METRIC_ALL_ERRORS "AllErrors"                                    /**< Count, Summary */
#define KPLM_METRIC_RETRIES_PER_RECORD "RetriesPerRecord"                     /**< Count, Detailed */
#define KPLM_METRIC_USER_RECORD_EXPIRED "UserRecordExpired"                   /**< Count, Summary */
#define KPLM_METRIC_BUFFERING_TIME "BufferingTime"                            /**< Milliseconds, Summary */
#define KPLM_METRIC_REQUEST_TIME "RequestTime"                                /**< Milliseconds, Detailed */
#define KPLM_METRIC_USER_RECORDS_PER_KINESIS_RECORD "UserRecordsPerKinesisRecord"           /**< Count, Detailed */
#define KPLM_METRIC_KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST "KinesisRecordsPerPutRecordsRequest" /**< Count, Detailed */
#define KPLM_METRIC_USER_RECORDS_PER_PUT_RECORDS_REQUEST "UserRecordsPerPutRecordsRequest"   /**< Count, Detailed */

/** The KPL's dimension names, used when a granularity is configured. */
#define KPLM_DIMENSION_STREAM_NAME "StreamName"
#define KPLM_DIMENSION_SHARD_ID "ShardId"
#define KPLM_DIMENSION_ERROR_CODE "ErrorCode"

/** kplm_query's `seconds` for statistics since the manager was created. */
#define KPLM_CUMULATIVE 0u

/* ------------------------------------------------------------------------ */
/* Types                                                                     */
/* ------------------------------------------------------------------------ */

/** How much a manager records. */
typedef enum {
    /** Default. put returns at once, nothing is recorded, no thread, no sink. */
    KPLM_LEVEL_NONE = 0,
    /** shard_id and error_code are dropped: keys are (name, stream). */
    KPLM_LEVEL_SUMMARY = 1,
    /** Every dimension is kept. */
    KPLM_LEVEL_DETAILED = 2
} kplm_level;

/** Result of a call. kplm_status_string() gives a readable name. */
typedef enum {
    KPLM_OK = 0,     /**< success */
    KPLM_EINVAL,     /**< invalid argument (NULL, empty, too long, bad UTF-8, NaN…) */
    KPLM_ESTATE,     /**< call not allowed in the manager's current state */
    KPLM_ECLOSED,    /**< the manager is closed (or closing) */
    KPLM_ELIMIT,     /**< a new key beyond max_metrics */
    KPLM_ENOMEM,     /**< memory could not be allocated */
    KPLM_ESINK       /**< the sink reported a failure (open or export) */
} kplm_status;

/** A metric's unit, as CloudWatch names it (kplm_unit_name). */
typedef enum {
    KPLM_UNIT_NONE = 0,        /**< "None": names the KPL does not define */
    KPLM_UNIT_COUNT = 1,       /**< "Count" */
    KPLM_UNIT_BYTES = 2,       /**< "Bytes" */
    KPLM_UNIT_MILLISECONDS = 3 /**< "Milliseconds" */
} kplm_unit;

/**
 * KPL rollups (the KPL's MetricsGranularity). NONE (the default) reports
 * every key as recorded, with the dimensions "stream", "shard", "error_code".
 * Otherwise reads show the KPL's tree, with its dimension names and order
 * (extra GLOBAL dimensions, ErrorCode, StreamName and STREAM extras, ShardId
 * and SHARD extras): one line for the name alone, one with the error code,
 * then (STREAM and finer) one per stream, then (SHARD) one per shard; each
 * line's statistics merge those of the keys under it. Computed when read:
 * a put costs the same.
 */
typedef enum {
    KPLM_GRANULARITY_NONE = 0,
    KPLM_GRANULARITY_GLOBAL = 1,
    KPLM_GRANULARITY_STREAM = 2,
    KPLM_GRANULARITY_SHARD = 3
} kplm_granularity;

/** Statistics returned by kplm_query: count 0 (and zeros) when empty. */
typedef struct {
    uint64_t count;
    double sum, min, max;
} kplm_statistics;

/** A metrics manager. Opaque; create with kplm_new, destroy with kplm_free. */
typedef struct kplm_manager kplm_manager;

/**
 * A resolved metric key. Opaque; owned by its manager and valid until
 * kplm_free of that manager. Putting through it skips the key lookup.
 */
typedef struct kplm_metric kplm_metric;

/**
 * One dimension of a metric: a (name, value) pair. Reported names are
 * "stream", "shard" and "error_code", in that order, absent ones omitted,
 * then the key's free-form dimensions (kplm_put_dims) by name, bytewise;
 * with a granularity configured, the KPL's names and order instead (see
 * kplm_granularity; free-form dimensions attach at the global level, on
 * every line, unless kplm_set_dimension_granularity says otherwise); extra
 * dimensions (kplm_add_dimension) where their granularity puts them.
 */
typedef struct {
    const char *name;
    const char *value;
} kplm_dimension;

/**
 * One bucket of a distribution (since 1.2; SPEC §6): a value within the
 * metric's relative accuracy of every observation the bucket holds, and how
 * many it holds.
 */
typedef struct {
    double value;
    uint64_t count;
} kplm_bucket;

/** Aggregated statistics of one metric key over a span of seconds. */
typedef struct {
    const char *name;
    uint64_t count;
    double sum, min, max;
    const kplm_dimension *dimensions;
    size_t dimension_count;
    /** Span covered, [window_start, window_end), in manager-clock seconds. */
    double window_start, window_end;
    /** Wall-clock (Unix) seconds matching window_end. */
    double timestamp_unix;
    /**
     * Since 1.2: for a distribution metric (kplm_set_distribution), in the
     * snapshots a sink exports, the distribution of the same observations:
     * its buckets in ascending order of value, counts adding up to `count`
     * (valid during the callback). NULL and 0 otherwise, in kplm_snapshots,
     * and with a library older than 1.2.
     */
    const kplm_bucket *buckets;
    size_t bucket_count;
    /** Since 1.2: the metric's relative accuracy when `buckets` is set, else 0. */
    double relative_accuracy;
} kplm_snapshot;

/** One observation, handed to an eventful sink's record callback. */
typedef struct {
    const char *name;
    double value;
    /** Manager-clock seconds at the put. */
    double timestamp;
    const kplm_dimension *dimensions;
    size_t dimension_count;
} kplm_event;

/**
 * Where flushed aggregates go. kplm_set_sink copies this struct; user_data
 * and the callbacks must stay valid until the sink's close callback has run
 * (kplm_close that returned KPLM_OK, or kplm_free; after a close that timed
 * out, when the background export has returned). The callbacks are
 * handed kplm_snapshot and kplm_event laid out as the code that called
 * kplm_set_sink was compiled (see "Struct growth" above).
 *
 * open, export_snapshots and close are never run concurrently with each
 * other. record runs on the putting thread, inside kplm_put, possibly on
 * several threads at once, and only between start and close.
 */
typedef struct {
    void *user_data;
    /** Optional. Called by kplm_start. Non-zero = failure (start returns KPLM_ESINK). */
    int (*open)(void *user_data);
    /**
     * Required. Receives n >= 1 snapshots sorted by name then dimensions.
     * Non-zero = failure: the data is kept and offered again (merged) at the
     * next flush.
     */
    int (*export_snapshots)(void *user_data, const kplm_snapshot *s, size_t n);
    /** Optional. Makes the sink eventful: called once per accepted put. */
    void (*record)(void *user_data, const kplm_event *e);
    /** Optional. Called once by kplm_close after the final export. */
    void (*close)(void *user_data);
} kplm_sink;

/**
 * Manager configuration. Initialise with kplm_config_init, then set the
 * fields you need; struct_size lets later versions add fields (0 means the
 * 1.0 layout; see "Struct growth" above).
 */
typedef struct {
    uint32_t struct_size;              /**< sizeof(kplm_config) (or 0), set by kplm_config_init */
    kplm_level level;                  /**< default KPLM_LEVEL_NONE */
    double upload_interval_ms;         /**< default 60000; finite and > 0 */
    uint32_t window_seconds;           /**< default 60; 1..3600 */
    /** Manager clock in seconds, monotonic. NULL = the system monotonic clock. */
    double (*clock)(void *user_data);
    void *clock_user_data;
    /**
     * Default 100000; > 0. Cap on distinct live keys. A key with no
     * observation inside the window and nothing left to export is removed at
     * the next flush, giving its place and memory back (SPEC §10).
     */
    uint32_t max_metrics;
    /**
     * Default 10000; finite and > 0. How long kplm_flush waits for an export
     * still running on another thread, and kplm_close for the final export,
     * before returning KPLM_ESINK. Nothing is lost when it runs out: the data
     * stays queued, and a final export still completes (and the sink is
     * closed) in the background when the sink returns. (Added after the
     * first layout: a config whose struct_size ends before this field gets
     * the default.)
     */
    double export_timeout_ms;
    /** Default KPLM_GRANULARITY_NONE (every key as recorded). See kplm_granularity. */
    kplm_granularity granularity;
    /**
     * Default 0. Non-zero: only metrics whose KPL level (kplm_metric_level)
     * is within `level` are exported and reported, as the KPL uploads them
     * (KPLM_METRIC_REFUSED is always shown).
     */
    int kpl_level_filter;
    /**
     * Namespace sinks publish under (CloudWatch's), copied; NULL = the
     * default "KinesisProducerLibrary". 1..255 bytes of UTF-8.
     * See kplm_namespace.
     */
    const char *metric_namespace;
    /**
     * Since 1.2. Default 0. Non-zero: the KPL's latency metrics,
     * BufferingTime and RequestTime, are distribution metrics at 1%, as by
     * kplm_set_distribution (their p50/p99 through kplm_query_quantile).
     */
    int kpl_distributions;
    /* more fields may follow in later versions; struct_size keeps the ABI */
} kplm_config;

/* ------------------------------------------------------------------------ */
/* Functions                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * Fills *config with the defaults (level NONE, 60 s interval, 60 s window,
 * system clock, 100000 keys, 10 s export timeout, no granularity, no KPL
 * level filter, namespace "KinesisProducerLibrary") and sets struct_size.
 * NULL is ignored.
 * Thread-safe (touches only *config).
 * A macro: it calls kplm_config_init_sized with this header's
 * sizeof(kplm_config). (The exported function of the same name, for
 * binaries built before 1.0, fills the first layout: through max_metrics.)
 */
void kplm_config_init(kplm_config *config);
/** kplm_config_init for a kplm_config of `size` bytes (0 = the 1.0
 * layout): writes exactly `size` bytes (fields this library does not know
 * are zeroed) and sets struct_size to it. */
void kplm_config_init_sized(kplm_config *config, size_t size);
#define kplm_config_init(config) kplm_config_init_sized((config), sizeof(kplm_config))

/**
 * Creates a manager in state "new". A NULL config means the defaults.
 * On success *out owns the manager (release with kplm_free); on failure
 * *out is set to NULL.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL out, an unknown struct_size (or a
 * newer layout with a field this library does not know set), an unknown
 * level, an interval or export timeout that is not finite and > 0, a window
 * outside 1..3600 or max_metrics 0; KPLM_ENOMEM.
 */
kplm_status kplm_new(const kplm_config *config, kplm_manager **out);

/**
 * Sets the sink (copied). Allowed only before kplm_start; replaces any
 * earlier sink. Without a call the manager uses a null sink. A built-in
 * sink (kplm_sink_dogstatsd, kplm_sink_emf) is owned by the manager once
 * this returns KPLM_OK: do not set or release that kplm_sink again.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager or sink or a sink without
 * export_snapshots; KPLM_ESTATE once started or closed, or when called from
 * a callback of this manager.
 * A macro over kplm_set_sink_sized, which it passes this header's sizes of
 * kplm_sink, kplm_snapshot and kplm_event.
 */
kplm_status kplm_set_sink(kplm_manager *m, const kplm_sink *sink);
/** kplm_set_sink for a kplm_sink of `sink_size` bytes whose callbacks were
 * compiled with kplm_snapshot of `snapshot_size` and kplm_event of
 * `event_size` bytes (each 0 = the 1.0 layout); also KPLM_EINVAL for sizes
 * below 1.0's, or a newer kplm_sink with a field this library does not
 * know set. */
kplm_status kplm_set_sink_sized(kplm_manager *m, const kplm_sink *sink, size_t sink_size,
                                size_t snapshot_size, size_t event_size);
#define kplm_set_sink(m, sink) \
    kplm_set_sink_sized((m), (sink), sizeof(kplm_sink), sizeof(kplm_snapshot), sizeof(kplm_event))

/**
 * Sets (hook NULL: removes) a function called at the start of every flush
 * (the periodic one, kplm_flush, and close's final flush), on the thread
 * making it, before the pending data is taken: a layer that buffers puts
 * hands them over there (kplm_metric_put_many), and they are part of that
 * flush. At close's final flush puts are already refused (KPLM_ECLOSED).
 * The hook runs like a sink callback: never concurrently with open,
 * export_snapshots or close, and kplm_flush, kplm_close, kplm_free and the
 * setters called from it get KPLM_ESTATE. user_data must stay valid until
 * kplm_free.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager; KPLM_ESTATE after start
 * or close, from a callback of this manager, or in a forked child.
 */
kplm_status kplm_set_flush_hook(kplm_manager *m, void (*hook)(void *user_data), void *user_data);

/**
 * Opens the sink, then starts the periodic uploader thread. At level NONE
 * does nothing and returns KPLM_OK.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager; KPLM_ESTATE if already
 * started or closed, or called from a callback; KPLM_ESINK if the sink's open
 * failed (the manager stays "new"; start may be retried).
 */
kplm_status kplm_start(kplm_manager *m);

/**
 * Records one observation of `value` for the key (name, stream, shard_id,
 * error_code); NULL or "" dimensions are absent. Works before kplm_start.
 * At SUMMARY shard_id and error_code are dropped from the key (still
 * validated). If the sink is eventful, its record callback runs inside this
 * call (after start).
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager or name, an empty or
 * over-long name (> KPLM_NAME_MAX bytes), an over-long dimension
 * (> KPLM_DIMENSION_VALUE_MAX bytes), invalid UTF-8, or a value that is NaN
 * or infinite; KPLM_ECLOSED once close has begun; KPLM_ELIMIT for a new key
 * beyond max_metrics (counted under KPLM_METRIC_REFUSED); KPLM_ENOMEM.
 * At level NONE only the NULL/empty name, the value and closed are checked.
 * A key put before with the same argument bytes is found by hashing and
 * comparing those bytes (no allocation, no lock), then recorded as by
 * kplm_metric_put.
 */
kplm_status kplm_put(kplm_manager *m, const char *name, double value,
                     const char *stream, const char *shard_id, const char *error_code);

/**
 * Resolves a key once, for repeated kplm_metric_put calls. Same key rules and
 * checks as kplm_put. *out is owned by the manager (valid until kplm_free);
 * NULL on failure. At level NONE it returns a handle whose puts do nothing.
 * A handle stays valid when its key, idle, is removed at a flush (see
 * max_metrics): its next put re-creates the key. The handle keeps the key's
 * memory (not its place under max_metrics) until kplm_free.
 * Returns KPLM_OK; KPLM_EINVAL; KPLM_ECLOSED once close has begun;
 * KPLM_ELIMIT for a new key beyond max_metrics (counted under
 * KPLM_METRIC_REFUSED, like a refused put); KPLM_ENOMEM.
 */
kplm_status kplm_metric_get(kplm_manager *m, const char *name, const char *stream,
                            const char *shard_id, const char *error_code, kplm_metric **out);

/**
 * Most (name, value) pairs of one kplm_put_dims / kplm_metric_get_dims /
 * kplm_query_dims call (CloudWatch's limit on dimensions).
 */
#define KPLM_DIMENSIONS_MAX 30

/**
 * kplm_put with free-form dimensions (since 1.1): the key is `name` plus
 * the set of (name, value) pairs in `dims`, in any order (the same pairs in
 * another order are the same key). kplm_put(m, n, v, s, sh, e) is exactly
 * kplm_put_dims with ("stream", s), ("shard", sh), ("error_code", e).
 * A pair whose value is NULL or "" is absent. Dimension names are 1 to
 * KPLM_NAME_MAX bytes of UTF-8, unique within the call; values at most
 * KPLM_DIMENSION_VALUE_MAX bytes of UTF-8. `dims` may be NULL when
 * `dim_count` is 0. Reported order: "stream", "shard", "error_code", then
 * the other names bytewise; SUMMARY drops the "shard" and "error_code"
 * pairs before the key is formed.
 * Returns as kplm_put, and KPLM_EINVAL for more than KPLM_DIMENSIONS_MAX
 * pairs, a NULL `dims` with a non-zero count, a NULL, empty, over-long or
 * repeated dimension name, or an over-long value; KPLM_EINVAL also when the
 * sink refuses a new key it could not publish apart from others (the
 * Prometheus sink: two dimension names that become one label name, in this
 * key or against a key seen before). A key put before with the
 * same argument bytes in the same order is found without allocating or
 * locking, as for kplm_put. Thread-safe.
 */
kplm_status kplm_put_dims(kplm_manager *m, const char *name, double value,
                          const kplm_dimension *dims, size_t dim_count);

/**
 * kplm_metric_get with free-form dimensions (since 1.1): the handle of the
 * key kplm_put_dims would form from the same arguments. Returns as
 * kplm_metric_get, and KPLM_EINVAL as kplm_put_dims. Thread-safe.
 */
kplm_status kplm_metric_get_dims(kplm_manager *m, const char *name, const kplm_dimension *dims,
                                 size_t dim_count, kplm_metric **out);

/**
 * Records one observation through a resolved handle, exactly as kplm_put
 * would for its key (an eventful sink's record callback included).
 * The hot path: the observation goes to the calling thread's own cell of the
 * metric, with no lock, no locked instruction, no allocation and no system
 * call (the first put of a thread on a metric allocates its cell; threads
 * beyond the 64 that can hold a cell at once take a slower locked path).
 * Returns KPLM_OK; KPLM_EINVAL for a NULL handle or a NaN/infinite value;
 * KPLM_ECLOSED once close has begun; KPLM_ELIMIT when the handle's key had
 * been removed as idle and max_metrics other keys now hold every place (the
 * put re-creates the key otherwise; counted under KPLM_METRIC_REFUSED).
 */
kplm_status kplm_metric_put(kplm_metric *metric, double value);

/**
 * Records `count` observations of a handle's key that happened at
 * manager-clock time `at` (seconds, as the config's clock reads; NAN =
 * now), as one call: for a layer that buffers puts and hands them over in
 * batches (the Python binding), with kplm_set_flush_hook. A time after now
 * counts as now; one older than the window counts towards the next export
 * only, like any late observation. With an eventful sink, record is called
 * once per value, in order, with timestamp `at`.
 * Returns KPLM_OK (count 0 records nothing); KPLM_EINVAL, recording
 * nothing, for a NULL handle, NULL values with count > 0, a NaN or
 * infinite value, or an infinite `at`; KPLM_ECLOSED once close has begun;
 * KPLM_ELIMIT as kplm_metric_put; KPLM_ESTATE in a forked child.
 */
kplm_status kplm_metric_put_many(kplm_metric *metric, const double *values, size_t count, double at);

/**
 * Visits the rolling-window statistics of every metric with a live bucket,
 * in export order, on the calling thread. visit returns 0 to go on, non-zero
 * to stop early (still KPLM_OK). Works in every state, also after close
 * (the retained window). No lock that kplm_put needs is held during visit.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager or visit; KPLM_ENOMEM.
 * A macro over kplm_snapshots_sized with this header's sizeof(kplm_snapshot).
 */
kplm_status kplm_snapshots(kplm_manager *m,
                           int (*visit)(void *user_data, const kplm_snapshot *s),
                           void *user_data);
/** kplm_snapshots for a visit compiled with a kplm_snapshot of
 * `snapshot_size` bytes (0 = the 1.0 layout; smaller is KPLM_EINVAL). */
kplm_status kplm_snapshots_sized(kplm_manager *m,
                                 int (*visit)(void *user_data, const kplm_snapshot *s),
                                 void *user_data, size_t snapshot_size);
#define kplm_snapshots(m, visit, user_data) \
    kplm_snapshots_sized((m), (visit), (user_data), sizeof(kplm_snapshot))

/**
 * Exports, synchronously on the calling thread, everything not yet exported
 * (one snapshot per key), then marks it exported. Does nothing when there is
 * nothing new, or at level NONE (returns KPLM_OK).
 * Exports are serialised: if another thread's export is still running after
 * export_timeout_ms, returns KPLM_ESINK without exporting (nothing is lost).
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager; KPLM_ESTATE before start,
 * from a callback of this manager or from a signal handler that interrupted
 * a kplm_put on this thread (see "Lifecycle" below); KPLM_ECLOSED after
 * close; KPLM_ESINK if the export failed or timed out (the data is kept and
 * offered again at the next flush). The wait for another thread's export is
 * bounded by export_timeout_ms; the export flush makes itself runs on the
 * calling thread, as long as the sink takes.
 */
kplm_status kplm_flush(kplm_manager *m);

/**
 * Refuses further puts, waits for puts in progress (they run no callback
 * while counted, so this is short), then the uploader thread makes the final
 * flush and closes the sink. Returns within export_timeout_ms in total,
 * whatever the sink does: one budget for every wait, not one per step.
 * The sink's close callback runs exactly once: after the final export that
 * succeeded (and after any record callback still running on another thread
 * has returned), or at kplm_free if no final export ever succeeded.
 * If the final export fails, the data stays pending: a later kplm_close
 * retries that export (same bound) and returns KPLM_OK once the sink took
 * it; once it has, later calls return KPLM_OK and do nothing. Before start
 * it only marks the manager closed and calls no sink function.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager; KPLM_ESTATE, at once and
 * changing nothing, from a callback of this manager or from a signal handler
 * that interrupted a kplm_put / kplm_metric_put on this thread (it would
 * wait for itself; see "Lifecycle" below); KPLM_ESINK if the final export
 * failed (kept, see above), or did not finish within export_timeout_ms (it
 * then completes in the background; keep the sink's user_data valid until
 * its close callback has run).
 */
kplm_status kplm_close(kplm_manager *m);

/**
 * Closes the manager if needed (one more try of a failed final export,
 * within export_timeout_ms in total), then discards what is still pending,
 * runs the sink's close callback if it has not run (unless an export is
 * still running: it then runs when that export returns), and releases the
 * manager and every kplm_metric it handed out. NULL is fine. Called from a
 * callback of this manager, or from a signal handler that interrupted a put
 * on it, it does nothing. The manager must not be used by any thread after
 * this call.
 */
void kplm_free(kplm_manager *m);

/*
 * Lifecycle: signals, exit.
 *
 * Async-signal-safety: no kplm function is async-signal-safe (they take
 * locks, allocate and start threads). The one guarantee for a signal
 * handler: kplm_close and kplm_flush called from a handler that interrupted
 * a kplm_put or kplm_metric_put of the same manager on the same thread
 * return KPLM_ESTATE at once instead of waiting for that put (kplm_free
 * there does nothing, kplm_snapshots returns KPLM_ESTATE). A handler that
 * interrupted anything else (malloc, another kplm call) may still deadlock.
 * So do not close from the handler: let it set a flag or write to a pipe,
 * and close from an ordinary thread:
 *
 *     static volatile sig_atomic_t stop;
 *     static void on_sigterm(int sig) { (void)sig; stop = 1; }
 *     ...
 *     struct sigaction sa = {0};
 *     sa.sa_handler = on_sigterm;
 *     sigaction(SIGTERM, &sa, NULL);
 *     while (!stop) { ... kplm_put(m, ...); ... }
 *     kplm_close(m);   // final export, within export_timeout_ms
 *     kplm_free(m);
 *
 * (With a blocking event loop, have the handler write a byte to a pipe the
 * loop polls, or block SIGTERM and wait for it with sigwait on a thread.)
 *
 * Exit without close: kplm registers no atexit handler. A program that
 * returns from main or calls exit() without kplm_close loses everything
 * put since the last export (up to upload_interval_ms of data, 60 s by
 * default); so does one killed by a signal it does not handle. Call
 * kplm_close (then kplm_free) before exiting.
 */

/**
 * Adds a dimension (name, value: copied) to every exported and reported
 * line, at a granularity: GLOBAL extras on every line, STREAM extras on
 * per-stream and per-shard lines, SHARD extras on per-shard lines (the KPL's
 * AdditionalMetricsDimension). Without a configured granularity the
 * extras are inserted in each recorded key's dimension list the same way. Allowed
 * only before kplm_start.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL or empty name or value, an
 * over-long one (name > KPLM_NAME_MAX, value > KPLM_DIMENSION_VALUE_MAX
 * bytes), invalid UTF-8 or an unknown or NONE granularity; KPLM_ESTATE once
 * started or closed, or from a callback of this manager.
 */
kplm_status kplm_add_dimension(kplm_manager *m, const char *name, const char *value,
                               kplm_granularity granularity);

/**
 * With a granularity configured, attaches the free-form dimension `name`
 * (kplm_put_dims) at `granularity` of the KPL's tree instead of the global
 * level (since 1.1): KPLM_GRANULARITY_STREAM puts it on per-stream and
 * per-shard lines only, KPLM_GRANULARITY_SHARD on per-shard lines only,
 * KPLM_GRANULARITY_GLOBAL (the default for every name) on every line.
 * Without a granularity it changes nothing. Before kplm_start only.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager or name, an empty,
 * over-long or non-UTF-8 name, or granularity NONE or unknown; KPLM_ESTATE
 * once started or closed, or from a callback of this manager.
 */
kplm_status kplm_set_dimension_granularity(kplm_manager *m, const char *name, kplm_granularity granularity);

/**
 * The manager's namespace (kplm_config.metric_namespace), for sinks that
 * publish under one. Owned by the manager, valid until kplm_free; NULL for a
 * NULL manager. Thread-safe.
 */
const char *kplm_namespace(const kplm_manager *m);

/**
 * Statistics of one key, formed as kplm_put would form it from the same
 * arguments, over the last `seconds` seconds (1..window_seconds, the
 * current second included) or, with KPLM_CUMULATIVE, since the key was
 * created (the KPL's getMetrics; a key removed as idle and put again starts
 * from zero). Data put by any thread up to the call is included. An unknown
 * or removed key, or level NONE, gives count 0.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager or out, a bad name or
 * dimension (as kplm_put), or `seconds` beyond the window; KPLM_ESTATE in a
 * forked child for an inherited manager. Thread-safe.
 */
kplm_status kplm_query(kplm_manager *m, const char *name, const char *stream, const char *shard_id,
                       const char *error_code, uint32_t seconds, kplm_statistics *out);
/** kplm_query writing a kplm_statistics of `out_size` bytes (0 = the 1.0
 * layout; smaller is KPLM_EINVAL). kplm_query is a macro over it. */
kplm_status kplm_query_sized(kplm_manager *m, const char *name, const char *stream, const char *shard_id,
                             const char *error_code, uint32_t seconds, kplm_statistics *out,
                             size_t out_size);
#define kplm_query(m, name, stream, shard_id, error_code, seconds, out) \
    kplm_query_sized((m), (name), (stream), (shard_id), (error_code), (seconds), (out), sizeof(kplm_statistics))

/**
 * kplm_query of the key kplm_put_dims would form from `name`, `dims` and
 * `dim_count` (since 1.1), writing a kplm_statistics of `out_size` bytes
 * (as kplm_query_sized). kplm_query_dims is a macro over it.
 * Returns as kplm_query, and KPLM_EINVAL as kplm_put_dims.
 */
kplm_status kplm_query_dims_sized(kplm_manager *m, const char *name, const kplm_dimension *dims,
                                  size_t dim_count, uint32_t seconds, kplm_statistics *out, size_t out_size);
#define kplm_query_dims(m, name, dims, dim_count, seconds, out) \
    kplm_query_dims_sized((m), (name), (dims), (dim_count), (seconds), (out), sizeof(kplm_statistics))

/**
 * kplm_query for every key of one metric name, merged (all streams, shards
 * and error codes).
 * Returns as kplm_query.
 */
kplm_status kplm_query_name(kplm_manager *m, const char *name, uint32_t seconds, kplm_statistics *out);
/** kplm_query_name writing a kplm_statistics of `out_size` bytes (as
 * kplm_query_sized). kplm_query_name is a macro over it. */
kplm_status kplm_query_name_sized(kplm_manager *m, const char *name, uint32_t seconds, kplm_statistics *out,
                                  size_t out_size);
#define kplm_query_name(m, name, seconds, out) \
    kplm_query_name_sized((m), (name), (seconds), (out), sizeof(kplm_statistics))

/* ---- Distributions (since 1.2; SPEC §6) ---- */

/**
 * Makes `name` a distribution metric: every observation of a key with this
 * name still feeds its exact count, sum, min and max, and also a mergeable
 * distribution with relative accuracy `relative_accuracy` (0 < a <= 0.1),
 * read by kplm_query_quantile. Setting it again changes the accuracy.
 * A put to it stays lock-free (its writer cell also counts the value's
 * bucket); plain metrics are unchanged. Memory: 8 bytes per bucket of the
 * range seen, about 1/(2a) buckets per octave, per sign, per second of the
 * window and per putting thread (1% over 1 ms..10 s: ~680 buckets, 5.4 KB),
 * at most 131,072 per sign (1 MB: every double's magnitude for a >= 0.8%;
 * past that the smallest magnitudes fold together and only quantiles
 * among them lose accuracy). See docs/distributions.md.
 * Returns KPLM_OK (at level NONE too, where nothing is recorded);
 * KPLM_EINVAL for a NULL manager, a bad name (as kplm_put), an accuracy out
 * of range or NaN, or KPLM_METRIC_REFUSED / KPLM_METRIC_SINK_DROPPED;
 * KPLM_ESTATE after kplm_start or close, once a key of that name exists,
 * from a callback of the manager, or in a forked child. Thread-safe.
 */
kplm_status kplm_set_distribution(kplm_manager *m, const char *name, double relative_accuracy);

/**
 * The value at quantile `q` (0 <= q <= 1) of the observations of one key of
 * a distribution metric, the key formed as kplm_put_dims forms it, over the
 * last `seconds` seconds (1..window_seconds, the current second included)
 * or, with KPLM_CUMULATIVE, since the key was created: within a·|x| of the
 * exact sample quantile x, the element of rank floor(q·(n−1)) of the sorted
 * observations, for any finite values (negative, zero, subnormal, huge);
 * q = 0 and q = 1 give the exact minimum and maximum. Writes NaN to `*out`
 * when there is no observation (an unknown key, level NONE).
 * Returns KPLM_OK; KPLM_EINVAL for a NULL manager or out, a bad name or
 * dimension (as kplm_put_dims), q outside [0, 1] or NaN, `seconds` beyond
 * the window, or a name that is not a distribution metric (`*out` is then
 * NaN); KPLM_ESTATE in a forked child. Thread-safe.
 */
kplm_status kplm_query_quantile(kplm_manager *m, const char *name, const kplm_dimension *dims, size_t dim_count,
                                uint32_t seconds, double q, double *out);

/** The unit of a metric name: the KPL's for its metrics, KPLM_UNIT_NONE
 * for any other name (or NULL). Thread-safe, no allocation. */
kplm_unit kplm_metric_unit(const char *name);

/** The KPL level of a metric name: KPLM_LEVEL_SUMMARY or
 * KPLM_LEVEL_DETAILED for the KPL's metrics, KPLM_LEVEL_DETAILED for any
 * other name (or NULL). Thread-safe, no allocation. */
kplm_level kplm_metric_level(const char *name);

/** Static, never-NULL CloudWatch name of a unit ("Count"); "None" for an
 * unknown value. */
const char *kplm_unit_name(kplm_unit unit);

/**
 * CloudWatch-shaped output: turns n snapshots (as an export callback gets
 * them) into Amazon CloudWatch PutMetricData requests in the AWS JSON 1.0
 * protocol (X-Amz-Target GraniteServiceVersion20100801.PutMetricData), and
 * calls emit once per request with its body (valid during the call) and its
 * number of datums. Dimension names become StreamName / ShardId / ErrorCode;
 * the unit is kplm_metric_unit's; StatisticValues carry count, sum, min,
 * max; the timestamp is timestamp_unix. Within PutMetricData's limits: at
 * most 1000 datums and 1,000,000 bytes per request, 30 dimensions, names of
 * 1..255 characters, dimension values of 1..1024 printable ASCII characters
 * (blank ones are removed), values finite within +-2^360 (below 2^-260 sent
 * as 0), timestamps from wall_now - 14 days to wall_now + 2 hours. A
 * snapshot that cannot be sent (count 0, or a limit above) is not emitted;
 * *dropped (if not NULL) receives how many. Thread-safe; no manager needed.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL emit or namespace, a NULL s with
 * n > 0, a namespace that is empty, over 255 characters, invalid UTF-8 or
 * starts with "AWS/" or ":"; KPLM_ESINK if emit returned non-zero (the
 * remaining requests are not emitted).
 */
kplm_status kplm_cloudwatch_requests(const kplm_snapshot *s, size_t n, const char *cw_namespace,
                                     double wall_now,
                                     int (*emit)(void *user_data, const char *body, size_t body_len,
                                                 size_t datums),
                                     void *user_data, size_t *dropped);
/** kplm_cloudwatch_requests over an array of kplm_snapshot of
 * `snapshot_size` bytes each (0 = the 1.0 layout; smaller is KPLM_EINVAL;
 * fields this library does not know are not read). kplm_cloudwatch_requests
 * is a macro over it. */
kplm_status kplm_cloudwatch_requests_sized(const kplm_snapshot *s, size_t n, const char *cw_namespace,
                                           double wall_now,
                                           int (*emit)(void *user_data, const char *body, size_t body_len,
                                                       size_t datums),
                                           void *user_data, size_t *dropped, size_t snapshot_size);
#define kplm_cloudwatch_requests(s, n, cw_namespace, wall_now, emit, user_data, dropped) \
    kplm_cloudwatch_requests_sized((s), (n), (cw_namespace), (wall_now), (emit), (user_data), (dropped), \
                                   sizeof(kplm_snapshot))

/* ------------------------------------------------------------------------ */
/* Built-in sinks                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Each constructor fills a kplm_sink whose callbacks and user_data belong to
 * the library. Hand it to kplm_set_sink (which takes ownership: the manager
 * releases it at kplm_free, after the sink's close). A sink never given to a
 * manager must be released with kplm_sink_release. Exports run on the
 * flushing thread, never on a putting one; network sends time out.
 *
 * Each config struct has an init macro (kplm_X_config_init) over a sized
 * init (kplm_X_config_init_sized(config, size): writes exactly `size` bytes,
 * 0 = the 1.0 layout) and a leading struct_size; the constructors read the
 * config at that size (see "Struct growth" at the top: an unknown size, or
 * a newer layout with a field this library does not know set, is
 * KPLM_EINVAL). They write only the 1.0 part of *out.
 */

/** Releases a built-in sink that was never given to kplm_set_sink. NULL,
 * and a sink the caller built itself, are ignored. Clears *sink. */
void kplm_sink_release(kplm_sink *sink);

/** DogStatsD over UDP. Initialise with kplm_dogstatsd_config_init. */
typedef struct {
    uint32_t struct_size;          /**< set by kplm_dogstatsd_config_init */
    const char *host;              /**< default "127.0.0.1" (numeric IPv4/IPv6 or a name; NULL = default) */
    uint16_t port;                 /**< default 8125 */
    const char *prefix;            /**< prepended to every metric name (then "."), default NULL */
    const char *const *tags;       /**< constant tags ("key:value", non-empty UTF-8), added to every line */
    size_t tag_count;
    uint32_t max_datagram_bytes;   /**< default 1432 (fits an Ethernet MTU); 64..65507 */
} kplm_dogstatsd_config;

/** Fills *config with the defaults and sets struct_size. NULL is ignored. */
void kplm_dogstatsd_config_init(kplm_dogstatsd_config *config);
void kplm_dogstatsd_config_init_sized(kplm_dogstatsd_config *config, size_t size);
#define kplm_dogstatsd_config_init(config) kplm_dogstatsd_config_init_sized((config), sizeof(kplm_dogstatsd_config))

/**
 * A DogStatsD sink: each exported snapshot becomes the lines
 * "<name>.count:<count>|c", "<name>.sum:<sum>|c", "<name>.min:<min>|g" and
 * "<name>.max:<max>|g", tagged with its dimensions ("stream:orders") and the
 * constant tags, names and tags sanitized (see the README), packed into
 * datagrams of at most max_datagram_bytes. Two keys never share a series,
 * at any flush, by a rule of each key alone: a name (prefix included) or a
 * dimension's "name:value" tag that sanitizing changes (case is kept:
 * "shard:shardId-1" is sent as given), that is cut to 200 characters, that ends with "_<8 hex digits>", or a tag whose
 * dimension name has a ':', ends with "_<8 hex digits>", a stable FNV-1a
 * hash of the raw text; others are sent as given. A line longer than
 * max_datagram_bytes (long tags), or with a non-finite value, is dropped and
 * counted under KPLM_METRIC_SINK_DROPPED (one per line: up to 4 per
 * snapshot); the export itself succeeds.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL argument, an unknown struct_size,
 * a bad host, port 0 or a datagram size out of range; KPLM_ENOMEM.
 */
kplm_status kplm_sink_dogstatsd(const kplm_dogstatsd_config *config, kplm_sink *out);

/** Where an EMF sink writes. */
typedef enum {
    KPLM_EMF_STDOUT = 0,   /**< JSON lines on standard output */
    KPLM_EMF_FILE = 1,     /**< JSON lines appended to `path` */
    KPLM_EMF_TCP = 2,      /**< a CloudWatch agent, newline-delimited, over TCP */
    KPLM_EMF_UDP = 3       /**< a CloudWatch agent, one event per datagram */
} kplm_emf_destination;

/** CloudWatch Embedded Metric Format. Initialise with kplm_emf_config_init. */
typedef struct {
    uint32_t struct_size;              /**< set by kplm_emf_config_init */
    kplm_emf_destination destination;  /**< default KPLM_EMF_STDOUT */
    const char *path;                  /**< for KPLM_EMF_FILE */
    const char *host;                  /**< for TCP/UDP, default "127.0.0.1" */
    uint16_t port;                     /**< for TCP/UDP, default 25888 */
    const char *cw_namespace;          /**< NULL = the manager's default, "KinesisProducerLibrary" */
    double timeout_ms;                 /**< connect/send timeout for TCP, default 2000 */
} kplm_emf_config;

/** Fills *config with the defaults and sets struct_size. NULL is ignored. */
void kplm_emf_config_init(kplm_emf_config *config);
void kplm_emf_config_init_sized(kplm_emf_config *config, size_t size);
#define kplm_emf_config_init(config) kplm_emf_config_init_sized((config), sizeof(kplm_emf_config))

/**
 * An EMF sink: each export becomes EMF events (JSON objects, one per line)
 * within EMF's limits (100 metrics per directive, 100 values per metric, 30
 * dimensions per set, integer millisecond timestamps). EMF has no statistic
 * set: see the README for how count, sum, min and max are represented
 * (metrics <Name>, <Name>.Count, <Name>.Min, <Name>.Max). Two keys never
 * give values to one (namespace, dimensions, metric), at any flush: by a
 * rule of the key alone, a name ending with ".Count", ".Min", ".Max" or
 * "_<8 hex digits>" becomes "<Name>_<8 hex digits>" (a stable FNV-1a hash
 * of the name), and a key with a dimension named "StreamName", "ShardId" or
 * "ErrorCode" (what "stream", "shard", "error_code" become) or a blank one
 * becomes "<Name>_<hash of name and dimension names>"; other keys keep
 * their names, whichever keys are exported with them.
 * A snapshot EMF cannot carry (alone over the event byte limit, more than 30
 * dimensions, a name, namespace, dimension, value or timestamp CloudWatch
 * refuses) is dropped and counted under KPLM_METRIC_SINK_DROPPED (one per
 * snapshot); the export itself succeeds.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL argument, an unknown struct_size or
 * destination, a missing path, a bad host or port, a bad namespace;
 * KPLM_ENOMEM.
 */
kplm_status kplm_sink_emf(const kplm_emf_config *config, kplm_sink *out);

/** Prometheus exposition over HTTP. Initialise with kplm_prometheus_config_init. */
typedef struct {
    uint32_t struct_size;     /**< set by kplm_prometheus_config_init */
    const char *address;      /**< listen address, default "127.0.0.1" (NULL = default) */
    uint16_t port;            /**< default 9464 */
    const char *prefix;       /**< prepended to every metric name, default "kplm_" (NULL = default, "" = none) */
} kplm_prometheus_config;

/** Fills *config with the defaults and sets struct_size. NULL is ignored. */
void kplm_prometheus_config_init(kplm_prometheus_config *config);
void kplm_prometheus_config_init_sized(kplm_prometheus_config *config, size_t size);
#define kplm_prometheus_config_init(config) kplm_prometheus_config_init_sized((config), sizeof(kplm_prometheus_config))

/**
 * A Prometheus sink: serves GET /metrics on address:port from kplm_start to
 * the sink's close, on a thread of its own. Every export is accumulated per
 * key: each metric is a summary `<prefix><name>` (name in snake_case, with
 * `_seconds` and values / 1000 for KPL metrics in milliseconds, `_bytes`
 * for bytes) whose `_count` and `_sum` samples are totals since start, plus
 * gauges `<prefix><name>_min` and `_max` of the last export that had the
 * key; dimensions become labels. Names and labels are sanitized to
 * Prometheus' rules (the output passes `promtool check metrics`). Two keys
 * never share a series: a name whose family would clash with another's
 * ("FooCount" and "Foo", "a-b" and "a_b", "BufferingTimeSeconds" and
 * "BufferingTime") gets "_<8 hex digits>", a stable FNV-1a hash of the name,
 * before the unit (the first name seen keeps its name until the sink
 * restarts), and a key whose labels another key holds gets a `kplm_key` label. The text
 * format 0.0.4 is served, or OpenMetrics 1.0 (ending with "# EOF") when the
 * scraper's Accept header asks for application/openmetrics-text. A scrape
 * never waits for a put. One thread serves up to 128 connections at once
 * (one response each; 5 s per connection; a request head over 16 KiB gets
 * 431); beyond 128 the connection idle the longest is dropped, so idle or
 * slow clients do not hold scrapes up.
 * Returns KPLM_OK; KPLM_EINVAL for a NULL argument, an unknown struct_size,
 * a bad address or port 0; KPLM_ENOMEM. (If the port cannot be bound,
 * kplm_start returns KPLM_ESINK.)
 */
kplm_status kplm_sink_prometheus(const kplm_prometheus_config *config, kplm_sink *out);

/** Compression of OTLP requests (kplm_otlp_config.compression). */
typedef enum {
    KPLM_OTLP_COMPRESSION_DEFAULT = 0, /**< OTEL_EXPORTER_OTLP_(METRICS_)COMPRESSION, else none */
    KPLM_OTLP_COMPRESSION_NONE = 1,
    KPLM_OTLP_COMPRESSION_GZIP = 2     /**< Content-Encoding: gzip (needs libz.so.1) */
} kplm_otlp_compression;

/**
 * OTLP/HTTP metrics export. Initialise with kplm_otlp_config_init.
 * What is left at its default comes from the OpenTelemetry environment
 * variables, read by kplm_sink_otlp; what is set wins over them:
 * OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (used as is), else
 * OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/metrics"; OTEL_EXPORTER_OTLP_HEADERS and
 * OTEL_EXPORTER_OTLP_METRICS_HEADERS (comma-separated key=value, values
 * URL-decoded); OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT (ms);
 * OTEL_EXPORTER_OTLP_(METRICS_)COMPRESSION (gzip or none). A METRICS_
 * variable wins over the general one.
 */
typedef struct {
    uint32_t struct_size;        /**< set by kplm_otlp_config_init */
    /** http(s)://host[:port]/path. NULL, or left as kplm_otlp_config_init
     * set it, = the environment, else "http://127.0.0.1:4318/v1/metrics".
     * https needs libcurl.so.4 at run time. */
    const char *endpoint;
    /** Per export, connect and retries included; finite and > 0. Left at
     * the default 5000 = OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT, else 5000. */
    double timeout_ms;
    uint32_t max_retries;        /**< on 429, 502, 503, 504 and connection errors; default 3 */
    const char *service_name;    /**< resource attribute service.name, default "kplm" */
    /* 0.x layouts ended here (40 bytes on 64-bit targets); still accepted. */
    /** Extra headers, header_count "Name: value" strings (copied; names
     * printable ASCII without separators, values without CR, LF or other
     * control characters; not Host, Content-Type, Content-Length,
     * Content-Encoding, Transfer-Encoding, Connection or Expect). Headers of
     * the environment are added unless named here. Default NULL, 0. */
    const char *const *headers;
    size_t header_count;
    /** A kplm_otlp_compression; default KPLM_OTLP_COMPRESSION_DEFAULT. */
    uint32_t compression;
} kplm_otlp_config;

/** Fills *config with the defaults and sets struct_size. NULL is ignored. */
void kplm_otlp_config_init(kplm_otlp_config *config);
void kplm_otlp_config_init_sized(kplm_otlp_config *config, size_t size);
#define kplm_otlp_config_init(config) kplm_otlp_config_init_sized((config), sizeof(kplm_otlp_config))

/**
 * An OTLP/HTTP sink: each export is one ExportMetricsServiceRequest in
 * protobuf (Content-Type application/x-protobuf), POSTed to endpoint. Each
 * key is a delta histogram data point with count, sum, min and max (one
 * bucket, no bounds), its dimensions as attributes, the metric's unit, and
 * the span [window_start, window_end) as start and end times. Retries
 * 429/502/503/504 honouring Retry-After (capped by the timeout); another
 * status or exhausted retries fail the export (KPLM_ESINK from the flush;
 * the data is kept).
 * Requests go through libcurl (libcurl.so.4, opened at run time) when it
 * can be loaded; without it plain http:// still works (the library's own
 * HTTP client). gzip needs zlib (libz.so.1, opened at run time).
 * Returns KPLM_OK; KPLM_EINVAL for a NULL argument, an unknown struct_size,
 * an endpoint that is not http(s)://host[:port]/path, a timeout that is not
 * finite and > 0, a bad header or compression, or an environment variable
 * above that is not valid; KPLM_ESINK (with a line on stderr naming the
 * library and its Debian package) for an https endpoint without libcurl.so.4
 * or gzip without libz.so.1; KPLM_ENOMEM.
 */
kplm_status kplm_sink_otlp(const kplm_otlp_config *config, kplm_sink *out);

/** Amazon CloudWatch PutMetricData. Initialise with kplm_cloudwatch_config_init. */
typedef struct {
    uint32_t struct_size;            /**< set by kplm_cloudwatch_config_init */
    const char *region;              /**< "us-east-1"; NULL = AWS_REGION, AWS_DEFAULT_REGION, then the profile's region */
    const char *endpoint;            /**< http(s)://host[:port][/path]; NULL = https://monitoring.<region>.amazonaws.com */
    const char *cw_namespace;        /**< NULL = the manager's namespace (default "KinesisProducerLibrary") */
    const char *access_key_id;       /**< with secret_access_key; NULL = environment, then shared files */
    const char *secret_access_key;   /**< NULL = environment, then shared files */
    const char *session_token;       /**< temporary credentials only, default NULL */
    const char *profile;             /**< profile of ~/.aws/credentials and ~/.aws/config; NULL = AWS_PROFILE or "default" */
    double timeout_ms;               /**< per PutMetricData call, retries and waits included; default 10000 */
    uint32_t max_retries;            /**< on throttling, 429, 5xx and connection errors; default 5 */
} kplm_cloudwatch_config;

/** Fills *config with the defaults and sets struct_size. NULL is ignored. */
void kplm_cloudwatch_config_init(kplm_cloudwatch_config *config);
void kplm_cloudwatch_config_init_sized(kplm_cloudwatch_config *config, size_t size);
#define kplm_cloudwatch_config_init(config) kplm_cloudwatch_config_init_sized((config), sizeof(kplm_cloudwatch_config))

/**
 * A CloudWatch sink: each export becomes PutMetricData calls (AWS JSON 1.0,
 * X-Amz-Target GraniteServiceVersion20100801.PutMetricData, SigV4-signed),
 * cut as kplm_cloudwatch_requests cuts them (one statistic set per key, at
 * most 1000 datums and 1 MB per call). A snapshot CloudWatch would refuse
 * (a timestamp before wall-clock now - 14 days or after now + 2 hours, a
 * value beyond +-2^360, a name or dimension it rejects) is dropped and
 * counted under KPLM_METRIC_SINK_DROPPED (one per snapshot) when every call
 * of the export has succeeded; such a drop does not fail the export.
 * Bodies over 8 KiB are gzipped for https endpoints (not for a plain
 * http:// override: moto's server rejects gzipped bodies). HTTPS via
 * libcurl, SigV4 via libcrypto, gzip via zlib (all three opened at run time,
 * see below); plain HTTP is allowed for an endpoint override. Credentials are read at every export:
 * the config's keys; else (without a profile) AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; else the profile in
 * AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), then AWS_CONFIG_FILE
 * (~/.aws/config); else the ECS/EKS container credentials endpoint
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI) or the EC2 instance
 * metadata service (IMDSv2; AWS_EC2_METADATA_DISABLED=true skips it), whose
 * temporary credentials are cached until 5 minutes before they expire.
 * Throttling, 429, 5xx and connection errors are retried
 * with exponential backoff and jitter, within timeout_ms per call; another
 * status, missing credentials or exhausted retries fail the export
 * (KPLM_ESINK from the flush; the data is kept and sent again, so calls that
 * had succeeded may be repeated).
 * Returns KPLM_OK; KPLM_EINVAL for a NULL argument, an unknown struct_size,
 * no region (none configured or found) or one that is not [a-z0-9-], an
 * endpoint that is not http(s)://host[:port][/path], a namespace CloudWatch
 * refuses, only one of access_key_id and secret_access_key (or a session
 * token without them), a string that is not UTF-8 or printable ASCII where
 * required, a timeout that is not finite and > 0; KPLM_ESINK when
 * libcurl.so.4, libcrypto.so.3 or libz.so.1 cannot be loaded (libkplm does
 * not link them: they are opened with dlopen, once per process, when the
 * first CloudWatch sink is created; a line on stderr names the missing one
 * and its Debian package: libcurl4, libssl3, zlib1g, or libcurl4t64 and
 * libssl3t64 on Debian 13); KPLM_ENOMEM.
 */
kplm_status kplm_sink_cloudwatch(const kplm_cloudwatch_config *config, kplm_sink *out);

/** Static, never-NULL English name of a status ("KPLM_EINVAL: …"). */
const char *kplm_status_string(kplm_status status);

/** The library's version, "MAJOR.MINOR.PATCH". Static string. */
const char *kplm_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KPLM_H */
