/*
 * Helpers shared by the C tests of kplm: check macros, a sub-test runner
 * (each sub-test runs in its own forked process under a watchdog, so one
 * failure or crash does not hide the others), an injectable clock, and a
 * memory sink that records everything the manager hands it.
 */
#ifndef KPLM_TEST_SUPPORT_H
#define KPLM_TEST_SUPPORT_H

#include <kplm.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* Checks: print file:line and what went wrong, then exit(1).               */
/* ------------------------------------------------------------------------ */

void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);      \
    } while (0)

#define CHECK_MSG(cond, ...)                                                 \
    do {                                                                     \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);             \
    } while (0)

/* `call` must return `expected` (a kplm_status). */
#define CHECK_ST(call, expected)                                             \
    do {                                                                     \
        kplm_status got_ = (call);                                           \
        kplm_status want_ = (expected);                                      \
        if (got_ != want_)                                                   \
            test_fail(__FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", \
                      #call, (int)got_, test_status_name(got_), (int)want_,  \
                      test_status_name(want_));                              \
    } while (0)

#define CHECK_OK(call) CHECK_ST(call, KPLM_OK)

/* Exact equality of doubles (the tests only use exactly representable sums). */
#define CHECK_DEQ(a, b)                                                      \
    do {                                                                     \
        double a_ = (a), b_ = (b);                                           \
        if (!(a_ == b_))                                                     \
            test_fail(__FILE__, __LINE__, "%s == %.17g, expected %s == %.17g", \
                      #a, a_, #b, b_);                                       \
    } while (0)

#define CHECK_U64(a, b)                                                      \
    do {                                                                     \
        unsigned long long a_ = (unsigned long long)(a);                     \
        unsigned long long b_ = (unsigned long long)(b);                     \
        if (a_ != b_)                                                        \
            test_fail(__FILE__, __LINE__, "%s == %llu, expected %s == %llu", \
                      #a, a_, #b, b_);                                       \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char *a_ = (a), *b_ = (b);                                     \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                 \
            test_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"",   \
                      #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");           \
    } while (0)

/* Short symbolic name of a status, for messages (does not use the library). */
const char *test_status_name(kplm_status st);

/* ------------------------------------------------------------------------ */
/* Sub-tests                                                                */
/* ------------------------------------------------------------------------ */

/* Runs fn in a child process with a watchdog of `seconds`; prints the result.
 * Returns 0 on success. */
int test_run(const char *name, void (*fn)(void), unsigned seconds);
#define RUN(fn) (failures += test_run(#fn, fn, 30) != 0)
#define RUN_T(fn, secs) (failures += test_run(#fn, fn, secs) != 0)

/* Wall-clock (Unix) seconds, and a sleep in milliseconds. */
double test_wall_now(void);
void test_sleep_ms(unsigned ms);

/* ------------------------------------------------------------------------ */
/* Injectable clock: an atomic count of 1/1024 s, so every value is exact.   */
/* ------------------------------------------------------------------------ */

typedef struct {
    _Atomic long long ticks;
} tclock;

void tclock_set(tclock *c, double seconds);
void tclock_advance(tclock *c, double seconds);
double tclock_now(tclock *c);
/* Suitable for kplm_config.clock, with clock_user_data = the tclock. */
double tclock_read(void *user_data);

/* A DETAILED (or other level) config driven by a tclock. */
kplm_config test_config(kplm_level level, tclock *clock);

/* ------------------------------------------------------------------------ */
/* Deep copies of snapshots and events                                       */
/* ------------------------------------------------------------------------ */

#define TEST_MAX_DIMS 32

typedef struct {
    char *name;
    uint64_t count;
    double sum, min, max;
    size_t ndims;
    char *dim_name[TEST_MAX_DIMS];
    char *dim_value[TEST_MAX_DIMS];
    double window_start, window_end, timestamp_unix;
    int batch; /* 1-based index of the successful export that carried it */
} tsnap;

typedef struct {
    tsnap *v;
    size_t n, cap;
} tsnap_list;

void tsnap_list_add(tsnap_list *l, const kplm_snapshot *s, int batch);
void tsnap_list_clear(tsnap_list *l);

/* Every snapshot of kplm_snapshots(m), in visit order. */
void collect_snapshots(kplm_manager *m, tsnap_list *out);

/* The snapshot of key (name, stream, shard, error_code) (NULL = absent),
 * NULL if none; fails the test if the key shows up more than once. */
const tsnap *find_snap(const tsnap_list *l, const char *name, const char *stream,
                       const char *shard, const char *error_code);
/* Same, among the snapshots of one batch. */
const tsnap *find_snap_in_batch(const tsnap_list *l, int batch, const char *name,
                                const char *stream, const char *shard,
                                const char *error_code);
size_t count_in_batch(const tsnap_list *l, int batch);

/* Checks one snapshot's statistics and dimension list (dimension names
 * "stream", "shard", "error_code", absent ones omitted). */
#define CHECK_SNAP(s, cnt, sm, mn, mx)                                       \
    do {                                                                     \
        const tsnap *s_ = (s);                                               \
        CHECK_MSG(s_ != NULL, "snapshot %s not found", #s);                  \
        CHECK_U64(s_->count, (cnt));                                         \
        CHECK_DEQ(s_->sum, (sm));                                            \
        CHECK_DEQ(s_->min, (mn));                                            \
        CHECK_DEQ(s_->max, (mx));                                            \
    } while (0)

#define CHECK_WINDOW(s, ws, we)                                              \
    do {                                                                     \
        const tsnap *s_ = (s);                                               \
        CHECK_MSG(s_ != NULL, "snapshot %s not found", #s);                  \
        CHECK_DEQ(s_->window_start, (ws));                                   \
        CHECK_DEQ(s_->window_end, (we));                                     \
    } while (0)

/* Spec order of two snapshots: name bytewise, then the dimension lists pair
 * by pair (name bytes, then value bytes), a prefix first. <0, 0, >0. */
int snap_order(const char *an, const kplm_dimension *ad, size_t adn,
               const char *bn, const kplm_dimension *bd, size_t bdn);

/* Key text "name|k=v|k=v" of a snapshot or of explicit parts. */
void key_of_snapshot(const kplm_snapshot *s, char *buf, size_t len);
void key_of_parts(const char *name, const char *stream, const char *shard,
                  const char *error_code, char *buf, size_t len);

typedef struct {
    char *name;
    double value, timestamp;
    size_t ndims;
    char *dim_name[TEST_MAX_DIMS];
    char *dim_value[TEST_MAX_DIMS];
    pthread_t thread;
} tevent;

/* ------------------------------------------------------------------------ */
/* Memory sink                                                               */
/* ------------------------------------------------------------------------ */

/* Per-key totals over every successful export (for exactness checks). */
typedef struct {
    char *key;
    uint64_t count;
    double sum, min, max;
} tacc;

typedef struct msink msink;
struct msink {
    pthread_mutex_t lock;

    /* Calls seen. */
    int opens, closes, export_calls, exports_ok, exports_failed;
    long records;

    /* Behaviour. */
    int fail_opens;      /* fail this many next open calls */
    int fail_exports;    /* fail this many next exports; -1 = every one */
    int fail_every;      /* > 0: fail each export call whose number % fail_every == 0 */
    int keep;            /* 1 (default): keep copies of snapshots and events */

    /* What arrived (successful exports only). */
    tsnap_list snaps;
    tevent *events;
    size_t nevents, capevents;
    tacc *acc;
    size_t nacc, capacc;

    /* Contract checks done inside the callbacks. */
    _Atomic int in_serial_callback;  /* open / export / close running */
    int concurrency_violations;      /* two of them overlapped */
    int order_violations;            /* a batch not in spec order */
    int duplicate_keys;              /* a key twice in one batch */
    int empty_batches;               /* export with n == 0 or s == NULL */
    int bad_snapshots;               /* count 0, min > max, empty window... */
    pthread_t last_export_thread;

    /* Hooks, called without the sink's lock held (they may call kplm). */
    void *hook_data;
    int (*on_open)(msink *ms);       /* its result is open's result if set */
    void (*on_export)(msink *ms, const kplm_snapshot *s, size_t n);
    void (*on_record)(msink *ms, const kplm_event *e);
    void (*on_close)(msink *ms);
};

void msink_init(msink *ms);
void msink_destroy(msink *ms);
/* A kplm_sink over ms; open / record / close only when asked for. */
kplm_sink msink_sink(msink *ms, int with_open, int with_record, int with_close);
/* Thread-safe reads. */
int msink_export_calls(msink *ms);
int msink_exports_ok(msink *ms);
long msink_records(msink *ms);
const tacc *msink_find_acc(msink *ms, const char *key);
/* Checks the counters of contract violations are all zero. */
void msink_check_clean(msink *ms);

/* ------------------------------------------------------------------------ */
/* Built-in sinks                                                            */
/* ------------------------------------------------------------------------ */

/* A socket of `type` (SOCK_STREAM, SOCK_DGRAM) bound to 127.0.0.1 on a port
 * the system chooses (*port); it listens if `backlog` > 0. */
int test_loopback_socket(int type, int backlog, uint16_t *port);

/* Whether a kplm_sink is all cleared (a failed constructor, a release). */
int test_sink_is_cleared(const kplm_sink *s);

/* Fills *s with garbage and returns s, for a constructor that must clear it. */
kplm_sink *test_garbage_sink(kplm_sink *s);
/* Fails at file:line unless st is KPLM_EINVAL and *s is cleared. */
void test_check_sink_einval(kplm_status st, const kplm_sink *s, const char *file, int line);
/* ctor(config, &out), a built-in sink constructor, must fail with
 * KPLM_EINVAL and clear *out. */
#define TEST_EXPECT_SINK_EINVAL(ctor, config)                                \
    do {                                                                     \
        kplm_sink s_;                                                        \
        kplm_status st_ = ctor((config), test_garbage_sink(&s_));            \
        test_check_sink_einval(st_, &s_, __FILE__, __LINE__);                \
    } while (0)

#endif
