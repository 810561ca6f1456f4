/*
 * fuzz_abi.c — coverage-guided fuzz target for the C ABI of kplm (kplm.h).
 *
 * LLVMFuzzerTestOneInput decodes its input as a small program over up to two
 * managers ("slots"): configurations (invalid ones included), then a sequence
 * of operations: put (also through kplm_put_dims), metric_get, metric_put, flush, snapshots, set_sink,
 * start, close, free, moving the injected clock, status strings and calls
 * with NULL arguments. Sink, clock and visit callbacks are driven by the same
 * input: an export can fail, and callbacks re-enter the API (put, flush,
 * close, free, start, snapshots on their own manager or the other one).
 *
 * Beside the sanitizers (crash, use after free, leak), the harness keeps a
 * model of what the contract in kplm.h promises and abort()s when the
 * library disagrees:
 *  - every status is one of kplm_status, and the one the contract names for
 *    the situation (validation of names, dimensions, values and configs;
 *    states; KPLM_ELIMIT exactly when a new key goes beyond max_metrics);
 *  - sinks: open only from start, record once per accepted put between start
 *    and close with the put's name, dimensions, value and clock reading
 *    (none for a put made inside a record callback of the same manager:
 *    record does not recurse), close exactly once: after the final export
 *    that succeeded, or at kplm_free; nothing at all before start or at
 *    level NONE, re-entrant flush/close/start from a callback -> KPLM_ESTATE;
 *  - a failed final export is kept: kplm_close returns KPLM_ESINK and the
 *    sink stays open; the next kplm_close exports the same data again and
 *    returns KPLM_OK once the sink takes it (later ones do nothing);
 *    kplm_free makes one more try, then closes the sink and discards;
 *  - every export carries exactly the observations accepted since the last
 *    successful export (count, min, max, sum within rounding, first and last
 *    second), one snapshot per key in export order; a failed export keeps
 *    its data for the next one; after a successful final export the counts
 *    exported add up to every accepted put, metric_put and refused-key
 *    observation (KPLM_METRIC_REFUSED);
 *  - max_metrics: a new key beyond it is refused, unless a flush may have
 *    removed an idle key (SPEC §10: nothing pending, its newest observation
 *    out of the window); then the model follows the library's answer, and a
 *    put through a handle of a key that may have been removed may be refused;
 *  - kplm_snapshots reports exactly the rolling window of a monotonic
 *    injected clock, in export order, and stops when visit says so;
 *  - every snapshot and event is sane: valid UTF-8 strings within the limits,
 *    dimensions named and ordered as documented, count >= 1, min <= max,
 *    window_start < window_end, a window no longer than window_seconds.
 * Every manager is freed at the end of each input.
 *
 * Threads: with the default upload interval of the fuzzed configs (1 h) the
 * uploader thread never ticks during an input; the only callbacks off the
 * harness thread are the final export and the sink close, which kplm_close
 * hands to the uploader thread (or, for a retry, a thread of its own) while
 * the harness waits in kplm_close or kplm_free (a "handoff": the callback
 * may then use the harness's state). Configs with a short interval or a
 * small export timeout are "noisy": their export and close callbacks keep
 * only atomic counters, and only the totals and the number of sink closes
 * are checked.
 *
 * Input format (all integers little endian; reading past the end gives 0):
 *   header  u8: bit 0 = also create slot 1
 *   config  (slot 0, then slot 1 if asked) — see decode_config()
 *   op*     u8 o: slot = o & 1, kind = (o >> 1) & 15 — see run_op()
 * Tests/fuzz/make_corpus.py writes seed programs in this format.
 *
 * Build: scripts/fuzz.sh (libFuzzer, ASan, coverage of the Swift core too);
 * Tests/fuzz/replay_main.c replays files without libFuzzer.
 */
#define _GNU_SOURCE
#include "kplm.h"

#include <float.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Limits of one program                                                     */
/* ------------------------------------------------------------------------ */

#define NSLOTS 2
#define CALL_BUDGET 1500         /* put / metric_get / metric_put per input */
#define OP_BUDGET 2000           /* top-level operations per input */
#define MAX_KEYS (CALL_BUDGET + 8)
#define MAX_EVENTS (CALL_BUDGET + 8)
#define HASH_SIZE 4096           /* power of two, > 2 * MAX_KEYS */
#define MAX_HANDLES 64
#define MAX_DEPTH 3              /* callback nesting that may still re-enter */
#define ARENA_SIZE (8u << 20)

/* Upload intervals at or above this never tick during an input. */
#define QUIET_INTERVAL_MS 1e6
/* Export timeouts at or above this never run out during an input. */
#define QUIET_TIMEOUT_MS 1e4
/* The injected clock's readings are plain seconds below this magnitude. */
#define CLOCK_SANE_LIMIT 4503599627370496.0 /* 2^52 */

/* ------------------------------------------------------------------------ */
/* Failure reporting: a ring of the last operations, printed on abort.       */
/* ------------------------------------------------------------------------ */

#define TRACE_LINES 48
#define TRACE_WIDTH 200
static char trace_ring[TRACE_LINES][TRACE_WIDTH];
static unsigned trace_next;
static int trace_live = -1; /* KPLM_FUZZ_TRACE=1 prints every line as it goes */

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *line = trace_ring[trace_next++ % TRACE_LINES];
    vsnprintf(line, TRACE_WIDTH, fmt, ap);
    va_end(ap);
    if (trace_live < 0) {
        const char *e = getenv("KPLM_FUZZ_TRACE");
        trace_live = e && *e && *e != '0';
    }
    if (trace_live) fprintf(stderr, "trace: %s\n", line);
}

static void fail(int line, const char *what) __attribute__((noreturn));
static void fail(int line, const char *what) {
    fprintf(stderr, "\n==== fuzz_abi: invariant violated at fuzz_abi.c:%d: %s\n", line, what);
    fprintf(stderr, "==== last operations (oldest first):\n");
    unsigned n = trace_next < TRACE_LINES ? trace_next : TRACE_LINES;
    for (unsigned i = trace_next - n; i != trace_next; i++)
        fprintf(stderr, "  %s\n", trace_ring[i % TRACE_LINES]);
    fflush(stderr);
    abort();
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) fail(__LINE__, #cond);                                  \
    } while (0)

static const char *st_name(int st) {
    static const char *names[] = {"OK", "EINVAL", "ESTATE", "ECLOSED", "ELIMIT", "ENOMEM", "ESINK"};
    return st >= 0 && st <= KPLM_ESINK ? names[st] : "???";
}

#define ST(x) (1u << (x))

/* Known library issues to tolerate while fuzzing for others:
 * KPLM_FUZZ_KNOWN_ISSUES="name,name" (names in Tests/fuzz/README.md). By
 * default every check is strict. */
static int known_issue(const char *name) {
    const char *list = getenv("KPLM_FUZZ_KNOWN_ISSUES");
    if (!list) return 0;
    size_t n = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

/* `st` is a kplm_status and one of the set `allowed`. */
#define CHECK_ST(st, allowed)                                                \
    do {                                                                     \
        unsigned st_ = (unsigned)(st);                                       \
        if (st_ > KPLM_ESINK || !((allowed) & ST(st_))) {                    \
            char msg_[160];                                                  \
            snprintf(msg_, sizeof msg_, "status %u (%s) not in the expected set 0x%x", \
                     st_, st_name((int)st_), (unsigned)(allowed));           \
            fail(__LINE__, msg_);                                            \
        }                                                                    \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Input                                                                     */
/* ------------------------------------------------------------------------ */

/* fuzz_input.h: the input (u8() ... f64(), in_more()) and the string arena
 * that lasts one input (keys point into it). Read by the harness thread, and
 * by a callback on the uploader thread only while the harness thread waits
 * in kplm_close (see "handoff"). */
#define FUZZ_ARENA_SIZE ARENA_SIZE
#include "fuzz_input.h"

static double bits_to_double(uint64_t b) { double d; memcpy(&d, &b, sizeof d); return d; }
static uint64_t double_to_bits(double d) { uint64_t b; memcpy(&b, &d, sizeof b); return b; }

static const char *const name_table[32] = {
    "UserRecordsReceived", "UserRecordsPending", "UserRecordsPut", "UserRecordsDataPut",
    "KinesisRecordsPut", "KinesisRecordsDataPut", "ErrorsByCode", "AllErrors",
    "RetriesPerRecord", "UserRecordExpired", "BufferingTime", "RequestTime",
    "UserRecordsPerKinesisRecord", "KinesisRecordsPerPutRecordsRequest",
    "UserRecordsPerPutRecordsRequest", KPLM_METRIC_REFUSED,
    "a", "A", "\xc3\xa9", "e\xcc\x81", "\x7f", " ", "\xe5\x90\x8d\xe5\x89\x8d", "\xf0\x9f\x98\x80",
    "stream", "shard", "error_code", "x\xff", "\xed\xa0\x80", "\xc0\x80", KPLM_METRIC_REFUSED " ", "Z",
};

static const char *const dim_table[32] = {
    "stream", "stream-1", "stream-2", "shardId-000000000000", "shardId-000000000001",
    "ProvisionedThroughputExceededException", "InternalFailure", "Expired",
    "\xc3\xa9", "e\xcc\x81", "\xff", "\xc3\x28", "\xe2\x82", "\xf4\x90\x80\x80", "\xed\xbf\xbf",
    "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80", "\xc1\xbf",
    "\xf8\x88\x80\x80\x80", " ", "\t", "0", "a", "b", "StreamName", "ShardId", "ErrorCode", "\x01", "z",
};

static const size_t fill_lengths[16] = {1, 2, 3, 4, 63, 64, 254, 255, 256, 257, 511, 1023, 1024, 1025, 1100, 4000};
static const char *const fill_patterns[16] = {
    "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e", "\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf",
    "\xf4\x90\x80\x80", "\x80", "ab", "\xef\xbb\xbf", "\xf0\x9f\x98\x80", "\x7f", "\xe0\x80\xaf", "Z",
};

/* A string argument: NULL, "", a table entry, raw input bytes (cut at the
 * first NUL), or a pattern repeated to an interesting length. */
static const char *get_str(void) {
    uint8_t c = u8();
    switch (c >> 5) {
    case 0: return NULL;
    case 1: return "";
    case 2: return name_table[c & 31];
    case 3: return dim_table[c & 31];
    case 4:
    case 5: return in_short_str(c & 63);
    case 6: return in_long_str();
    default: {
        uint8_t k = u8();
        size_t len = fill_lengths[k & 15];
        const char *pat = fill_patterns[k >> 4];
        size_t plen = strlen(pat);
        char *buf = malloc(len);
        CHECK(buf != NULL);
        for (size_t i = 0; i < len; i++) buf[i] = pat[i % plen];
        const char *p = arena_copy(buf, len);
        free(buf);
        return p;
    }
    }
}

static const double value_table[32] = {
    0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, DBL_MIN, 4.9406564584124654e-324,
    -4.9406564584124654e-324, 1.1125369292536007e-308, 1e308, -1e308, DBL_MAX, -DBL_MAX, NAN, -NAN,
    INFINITY, -INFINITY, 9007199254740992.0, 9223372036854775808.0, -9223372036854775808.0, 1e15,
    123.456, 3.0, 1e100, -1e-100, 1e300, -1e300, 42.0, 1e-5, 0.1, 65536.0,
};

/* A value argument: small integers, a table of edge values (NaN, ±inf, ±0,
 * subnormals, huge), raw bits, or small negative quarters. */
static double get_value(void) {
    uint8_t v = u8();
    switch (v >> 6) {
    case 0: return (double)v;
    case 1: return value_table[v & 31];
    case 2: return f64();
    default: return ((int)(v & 63) - 32) / 4.0;
    }
}

static const double clock_table[16] = {
    0.0, -0.0, -1.0, -0.5, 1e9, 4503599627370495.0, 4503599627370496.0, 4503599627370497.0,
    9007199254740992.0, 1e300, DBL_MAX, -DBL_MAX, INFINITY, -INFINITY, NAN, 9.3e18,
};
static const double clock_fractions[8] = {1e-9, 0.001, 0.25, 0.5, 0.999, 0.9999999999, 1.5, 59.999};

/* ------------------------------------------------------------------------ */
/* UTF-8, written from the definition: decode each sequence, then reject     */
/* overlong forms, surrogates and code points past U+10FFFF.                 */
/* ------------------------------------------------------------------------ */

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

/* A string the library hands out: non-NULL, 1..max bytes, valid UTF-8. */
static int out_string_ok(const char *p, size_t max) {
    if (!p) return 0;
    size_t n = strnlen(p, max + 1);
    return n >= 1 && n <= max && utf8_valid((const unsigned char *)p, n);
}

/* An argument the library accepts as a name / dimension (non-NONE level). */
static int arg_name_ok(const char *p) {
    if (!p || !*p) return 0;
    size_t n = strnlen(p, KPLM_NAME_MAX + 1);
    return n <= KPLM_NAME_MAX && utf8_valid((const unsigned char *)p, n);
}
static int arg_dim_ok(const char *p) {
    if (!p || !*p) return 1;
    size_t n = strnlen(p, KPLM_DIMENSION_VALUE_MAX + 1);
    return n <= KPLM_DIMENSION_VALUE_MAX && utf8_valid((const unsigned char *)p, n);
}

/* ------------------------------------------------------------------------ */
/* Keys and their order                                                      */
/* ------------------------------------------------------------------------ */

static const char *const dim_names[3] = {"stream", "shard", "error_code"};

typedef struct {
    const char *name;
    const char *dim[3]; /* stream, shard, error_code; NULL = absent */
} keyref;

/* Export order: name bytes, then the dimension list pair by pair (name
 * bytes, value bytes); a prefix sorts first. strcmp compares unsigned bytes. */
typedef struct {
    const char *name;
    size_t n;
    const char *dn[3], *dv[3];
} keyview;

static keyview view_of_key(const keyref *k) {
    keyview v = {k->name, 0, {0}, {0}};
    for (int i = 0; i < 3; i++)
        if (k->dim[i]) { v.dn[v.n] = dim_names[i]; v.dv[v.n] = k->dim[i]; v.n++; }
    return v;
}

static keyview view_of_snapshot(const kplm_snapshot *s) {
    keyview v = {s->name, s->dimension_count, {0}, {0}};
    for (size_t i = 0; i < s->dimension_count && i < 3; i++) {
        v.dn[i] = s->dimensions[i].name;
        v.dv[i] = s->dimensions[i].value;
    }
    return v;
}

static int view_cmp(const keyview *a, const keyview *b) {
    int c = strcmp(a->name, b->name);
    if (c) return c;
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        if ((c = strcmp(a->dn[i], b->dn[i]))) return c;
        if ((c = strcmp(a->dv[i], b->dv[i]))) return c;
    }
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}

/* The key of a snapshot or event, after the sanity checks below. */
static keyref keyref_of(const char *name, const kplm_dimension *d, size_t n) {
    keyref k = {name, {0}};
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 3; j++)
            if (strcmp(d[i].name, dim_names[j]) == 0) k.dim[j] = d[i].value;
    return k;
}

/* Dimensions as documented: a subset of stream, shard, error_code, in that
 * order, with valid values; at SUMMARY only the stream. */
static void check_dimensions(const kplm_dimension *d, size_t n, int level) {
    CHECK(n <= 3);
    CHECK(n == 0 || d != NULL);
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        int which = -1;
        CHECK(d[i].name != NULL);
        for (int j = 0; j < 3; j++)
            if (strcmp(d[i].name, dim_names[j]) == 0) which = j;
        CHECK(which > last);
        last = which;
        CHECK(out_string_ok(d[i].value, KPLM_DIMENSION_VALUE_MAX));
    }
    if (level == KPLM_LEVEL_SUMMARY) CHECK(last <= 0);
}

static void check_snapshot_sane(const kplm_snapshot *s, int level, uint32_t window, int rolling) {
    CHECK(out_string_ok(s->name, KPLM_NAME_MAX));
    check_dimensions(s->dimensions, s->dimension_count, level);
    CHECK(s->count >= 1);
    CHECK(isfinite(s->min) && isfinite(s->max));
    CHECK(s->min <= s->max);
    if (s->count == 1) CHECK(s->sum == s->min && s->min == s->max);
    CHECK(isfinite(s->window_start) && isfinite(s->window_end));
    CHECK(s->window_start == floor(s->window_start) && s->window_end == floor(s->window_end));
    CHECK(s->window_start < s->window_end);
    /* A rolling-window reading never spans more than the window. */
    if (rolling) CHECK(s->window_end - s->window_start <= (double)window);
    /* A distribution metric's buckets (exports only): ascending values
     * within the metric's accuracy of [min, max], counts adding up to
     * count (SPEC §6). */
    if (rolling) CHECK(s->buckets == NULL && s->bucket_count == 0);
    if (s->bucket_count > 0) {
        double a = s->relative_accuracy;
        CHECK(s->buckets != NULL && a > 0 && a <= 0.1);
        uint64_t total = 0;
        for (size_t i = 0; i < s->bucket_count; i++) {
            const kplm_bucket *b = &s->buckets[i];
            CHECK(b->count >= 1 && isfinite(b->value));
            if (i > 0) CHECK(s->buckets[i - 1].value < b->value);
            CHECK(b->value >= s->min - a * fabs(s->min) && b->value <= s->max + a * fabs(s->max));
            total += b->count;
        }
        CHECK(total == s->count);
    } else {
        CHECK(s->buckets == NULL && s->relative_accuracy == 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Managers and the model                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    keyref k;
    uint64_t hash;
    int capped;          /* counts against max_metrics */
    /* Observations not yet exported successfully. */
    long p_count;
    double p_min, p_max, p_sum, p_abs;
    int64_t p_first, p_last;
    int64_t newest;      /* second of the newest observation (sane clocks) */
    int observed;        /* newest is set */
} mkey;

typedef struct {
    int key;
    int64_t sec;
    double value;
} mevent;

typedef struct slot {
    int idx;
    kplm_manager *m;
    /* Effective configuration. */
    int level;
    uint32_t window, max_metrics;
    double interval_ms, timeout_ms;
    int injected;                 /* clock from the input, else the system's */
    _Atomic uint64_t clock_bits;  /* the injected clock's reading */
    int sane;                     /* injected, never backwards, always finite and < 2^52 */
    int noisy;                    /* uploads may tick, or exports may time out */
    int async;                    /* close may return before the final export */
    int model_ok;                 /* the model tables did not overflow */
    /* Lifecycle as the contract describes it. */
    int started, closing;
    int delivered;                /* a close returned KPLM_OK, or free gave up:
                                     close and free call no sink function any more */
    int close_timed_out;          /* a close returned before its final export */
    /* The sink set last (valid only if has_sink). */
    int has_sink, cb_open, cb_record, cb_close, fail_mode, open_fail;
    int slow;                     /* exports off the harness thread take 2 ms */
    int last_export_failed;       /* quiet: result of the last export callback */
    int last_open_failed;         /* result of the last open callback */
    _Atomic long a_exported;      /* counts of successful exports */
    _Atomic int a_exports, a_closes, a_opens, a_last_ok, a_any_export;
    _Atomic unsigned a_fail_seq;
    long accepted;                /* puts, metric_puts and refusals recorded */
    /* Model. */
    mkey keys[MAX_KEYS];
    int nkeys, capped;
    int htab[HASH_SIZE];
    int refused_key;
    mevent events[MAX_EVENTS];
    int nevents;
    struct { kplm_metric *h; int key; } handles[MAX_HANDLES];
    int nhandles;
    /* The last put's arguments, for bursts. */
    int have_last;
    const char *last_name, *last_dim[3];
    double last_value;
} slot;

static slot S[NSLOTS];
static int call_budget;
static int threads_started; /* a manager was started during this input */

/* Callback bookkeeping, per thread: which managers' callbacks are running
 * (the library refuses flush/close/start/free of those), and the puts in
 * progress whose record callback is expected. */
static _Thread_local int tl_harness;
static _Thread_local int tl_chain[32];
static _Thread_local int tl_depth;

typedef struct {
    slot *s;
    keyref k;
    double value;
    int records;
    /* An uncertain put (SPEC §10: the cap full, a key maybe removed) is
     * counted by the model once its outcome is known: in its record callback
     * (only an accepted put has one; a snapshot taken there must see it), or
     * else after it returns. */
    int uncertain, resolved;
} expect_frame;
static _Thread_local expect_frame *tl_expect[32];
static _Thread_local int tl_nexpect;
/* Record callbacks of each slot running on this thread: a put made inside
 * one (at any depth) calls no record of that manager. */
static _Thread_local int tl_in_record[NSLOTS];

/* Slot whose close the harness thread is waiting in (-1: none). */
static _Atomic int handoff = -1;

static int in_chain(const slot *s) {
    for (int i = 0; i < tl_depth; i++)
        if (tl_chain[i] == s->idx) return 1;
    return 0;
}
static void chain_push(slot *s) { CHECK(tl_depth < 32); tl_chain[tl_depth++] = s->idx; }
static void chain_pop(void) { tl_depth--; }

enum { MODE_HARNESS, MODE_HANDOFF, MODE_STATELESS };
static int cb_mode(const slot *s) {
    if (tl_harness) return MODE_HARNESS;
    if (!s->noisy && atomic_load_explicit(&handoff, memory_order_acquire) == s->idx) return MODE_HANDOFF;
    return MODE_STATELESS;
}

static double clock_now(slot *s) {
    return bits_to_double(atomic_load_explicit(&s->clock_bits, memory_order_relaxed));
}

static int clock_value_sane(double t) { return isfinite(t) && fabs(t) < CLOCK_SANE_LIMIT; }

static uint64_t fnv(uint64_t h, const char *p) {
    if (!p) return (h ^ 0xFF) * 1099511628211ull;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (h ^ 0x100) * 1099511628211ull;
}
static uint64_t key_hash(const keyref *k) {
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, k->name);
    for (int i = 0; i < 3; i++) h = fnv(h, k->dim[i]);
    return h;
}
static int str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }
static int keyref_eq(const keyref *a, const keyref *b) {
    return str_eq(a->name, b->name) && str_eq(a->dim[0], b->dim[0]) && str_eq(a->dim[1], b->dim[1]) &&
           str_eq(a->dim[2], b->dim[2]);
}

static int find_key(slot *s, const keyref *k) {
    uint64_t h = key_hash(k);
    for (unsigned i = (unsigned)h & (HASH_SIZE - 1);; i = (i + 1) & (HASH_SIZE - 1)) {
        int at = s->htab[i];
        if (at < 0) return -1;
        if (s->keys[at].hash == h && keyref_eq(&s->keys[at].k, k)) return at;
    }
}

static int add_key(slot *s, const keyref *k, int capped) {
    if (s->nkeys >= MAX_KEYS) { s->model_ok = 0; return -1; }
    int at = s->nkeys++;
    mkey *m = &s->keys[at];
    memset(m, 0, sizeof *m);
    m->k = *k;
    m->hash = key_hash(k);
    m->capped = capped;
    if (capped) s->capped++;
    unsigned i = (unsigned)m->hash & (HASH_SIZE - 1);
    while (s->htab[i] >= 0) i = (i + 1) & (HASH_SIZE - 1);
    s->htab[i] = at;
    return at;
}

/* The key a put forms at the manager's level ("" = absent). */
static keyref form_key(const slot *s, const char *name, const char *st, const char *sh, const char *ec) {
    keyref k = {name, {st && *st ? st : NULL, sh && *sh ? sh : NULL, ec && *ec ? ec : NULL}};
    if (s->level != KPLM_LEVEL_DETAILED) k.dim[1] = k.dim[2] = NULL;
    return k;
}

static int is_refused_key(const keyref *k) {
    return strcmp(k->name, KPLM_METRIC_REFUSED) == 0 && !k->dim[0] && !k->dim[1] && !k->dim[2];
}

/* One accepted observation of key `at` at the current clock reading. */
static void model_observe(slot *s, int at, double v) {
    s->accepted++;
    if (at < 0 || !s->model_ok) return;
    double t = clock_now(s);
    int64_t sec = s->sane ? (int64_t)floor(t) : 0;
    mkey *k = &s->keys[at];
    if (!k->observed || sec > k->newest) k->newest = sec;
    k->observed = 1;
    if (k->p_count == 0) {
        k->p_min = k->p_max = v;
        k->p_first = k->p_last = sec;
    } else {
        if (v < k->p_min) k->p_min = v;
        if (v > k->p_max) k->p_max = v;
        if (sec < k->p_first) k->p_first = sec;
        if (sec > k->p_last) k->p_last = sec;
    }
    k->p_count++;
    k->p_sum += v;
    k->p_abs += fabs(v);
    if (s->nevents >= MAX_EVENTS) { s->model_ok = 0; return; }
    s->events[s->nevents++] = (mevent){at, sec, v};
}

/* SPEC §10: a flush may have removed key `at` (idle: nothing pending, its
 * newest observation out of the window; the model does not track flushes,
 * so "may"), freeing its place. -1: any capped key. In a noisy slot the
 * uploader may have exported what the model holds as pending (and a
 * flush's export may have taken it unseen): pending does not keep a key. */
static int may_be_removed(slot *s, int at) {
    if (!s->started || !s->model_ok || !s->sane) return s->started;
    int64_t now = (int64_t)floor(clock_now(s));
    for (int i = at < 0 ? 0 : at; i < (at < 0 ? s->nkeys : at + 1); i++) {
        const mkey *k = &s->keys[i];
        if ((at >= 0 || k->capped) && (k->p_count == 0 || s->noisy) &&
            (!k->observed || k->newest <= now - (int64_t)s->window))
            return 1;
    }
    return 0;
}

/* With idle keys removed, the cap may be full when the model's count of
 * keys ever admitted has reached it: a put of a key that may have been
 * removed may be refused, and a new key may be admitted. */
static int cap_uncertain_for(slot *s, int at) {
    return (uint32_t)s->capped >= s->max_metrics && may_be_removed(s, at);
}

/* A put refused with KPLM_ELIMIT counts one observation of the refused key. */
static void model_refused(slot *s) {
    if (s->refused_key < 0) {
        keyref k = {KPLM_METRIC_REFUSED, {0}};
        s->refused_key = find_key(s, &k);
        if (s->refused_key < 0) s->refused_key = add_key(s, &k, 0);
    }
    model_observe(s, s->refused_key, 1.0);
}

static void model_clear_pending(slot *s) {
    for (int i = 0; i < s->nkeys; i++) s->keys[i].p_count = 0, s->keys[i].p_sum = s->keys[i].p_abs = 0;
}

static int model_pending(const slot *s) {
    for (int i = 0; i < s->nkeys; i++)
        if (s->keys[i].p_count) return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                 */
/* ------------------------------------------------------------------------ */

static void reenter(slot *own);

static double cb_clock(void *user_data) { return clock_now((slot *)user_data); }

static int cb_open(void *user_data) {
    slot *s = user_data;
    chain_push(s);
    atomic_fetch_add(&s->a_opens, 1);
    int fail_now = 0;
    if (cb_mode(s) == MODE_HARNESS) {
        /* open runs inside start: not started yet, never after close. */
        CHECK(!s->started && !s->closing);
        fail_now = s->open_fail && (u8() & 1);
        reenter(s);
        s->last_open_failed = fail_now; /* after any nested start */
    }
    chain_pop();
    return fail_now ? -1 : 0;
}

static int cb_export(void *user_data, const kplm_snapshot *snaps, size_t n) {
    slot *s = user_data;
    chain_push(s);
    int mode = cb_mode(s);
    CHECK(n >= 1 && snaps != NULL);
    long total = 0;
    for (size_t i = 0; i < n; i++) {
        check_snapshot_sane(&snaps[i], s->level, s->window, 0);
        total += (long)snaps[i].count;
        if (i > 0) {
            keyview a = view_of_snapshot(&snaps[i - 1]), b = view_of_snapshot(&snaps[i]);
            CHECK(view_cmp(&a, &b) < 0); /* sorted, one snapshot per key */
        }
    }
    atomic_fetch_add(&s->a_exports, 1);
    atomic_store(&s->a_any_export, 1);

    int fail_now;
    if (mode == MODE_STATELESS || s->noisy) {
        /* Another thread may run this: decide without the input. A slow
         * sink makes periodic exports overlap flush, close and free. */
        if (s->slow && !tl_harness) {
            struct timespec pause = {0, 2000000};
            nanosleep(&pause, NULL);
        }
        unsigned seq = atomic_fetch_add(&s->a_fail_seq, 1);
        fail_now = s->fail_mode == 2 || ((s->fail_mode & 1) && seq % 3 == 1);
    } else {
        /* Only after start (the final export runs while closing). */
        CHECK(s->started);
        if (s->model_ok) {
            /* Exactly the observations accepted since the last successful
             * export, one snapshot per key. */
            int expected = 0;
            for (int i = 0; i < s->nkeys; i++) expected += s->keys[i].p_count != 0;
            CHECK((size_t)expected == n);
            for (size_t i = 0; i < n; i++) {
                const kplm_snapshot *sn = &snaps[i];
                keyref k = keyref_of(sn->name, sn->dimensions, sn->dimension_count);
                int at = find_key(s, &k);
                CHECK(at >= 0);
                mkey *mk = &s->keys[at];
                CHECK(mk->p_count > 0 && sn->count == (uint64_t)mk->p_count);
                CHECK(sn->min == mk->p_min && sn->max == mk->p_max);
                if (isfinite(mk->p_abs) && mk->p_abs < 1e300 && isfinite(sn->sum))
                    CHECK(fabs(sn->sum - mk->p_sum) <= mk->p_abs * 1e-9);
                if (s->sane) {
                    CHECK(sn->window_start == (double)mk->p_first);
                    CHECK(sn->window_end == (double)mk->p_last + 1);
                }
            }
        }
        uint8_t d = s->fail_mode == 1 || s->fail_mode == 3 ? u8() : 0;
        fail_now = s->fail_mode == 2 || (s->fail_mode == 1 && (d & 1)) || (s->fail_mode == 3 && d >= 0xC0);
        s->last_export_failed = fail_now;
        if (!fail_now) model_clear_pending(s);
        trace("  export slot%d n=%zu total=%ld -> %s", s->idx, n, total, fail_now ? "fail" : "ok");
    }
    if (!fail_now) atomic_fetch_add(&s->a_exported, total);
    atomic_store(&s->a_last_ok, !fail_now);
    if (mode != MODE_STATELESS && !s->noisy) reenter(s);
    chain_pop();
    return fail_now ? (n & 1 ? -1 : 7) : 0;
}

static void cb_record(void *user_data, const kplm_event *e) {
    slot *s = user_data;
    chain_push(s);
    CHECK(e != NULL);
    CHECK(out_string_ok(e->name, KPLM_NAME_MAX));
    check_dimensions(e->dimensions, e->dimension_count, s->level);
    CHECK(isfinite(e->value));
    if (cb_mode(s) != MODE_STATELESS) {
        /* Called for the innermost put in progress on this thread, once,
         * between start and close, with that put's key, value and clock. */
        CHECK(tl_nexpect > 0);
        expect_frame *f = tl_expect[tl_nexpect - 1];
        CHECK(f->s == s);
        f->records++;
        CHECK(s->started && !s->closing);
        keyref k = keyref_of(e->name, e->dimensions, e->dimension_count);
        CHECK(keyref_eq(&k, &f->k));
        CHECK(double_to_bits(e->value) == double_to_bits(f->value));
        if (f->uncertain && !f->resolved) {
            int at = find_key(s, &f->k);
            model_observe(s, at >= 0 ? at : add_key(s, &f->k, 1), f->value);
            f->resolved = 1;
        }
        double t = clock_now(s);
        if (s->injected && clock_value_sane(t)) CHECK(e->timestamp == t);
        tl_in_record[s->idx]++;
        reenter(s);
        tl_in_record[s->idx]--;
    }
    chain_pop();
}

static void cb_close(void *user_data) {
    slot *s = user_data;
    chain_push(s);
    /* Exactly once per manager, whatever the thread (the counter is reset
     * only for a new manager, after the old one's close has come). */
    CHECK(atomic_fetch_add(&s->a_closes, 1) == 0);
    if (cb_mode(s) != MODE_STATELESS && !s->noisy) {
        /* By close or free, after start. */
        CHECK(s->started && s->closing);
        reenter(s);
    }
    chain_pop();
}

/* What kplm_snapshots should report, and what it did. */
typedef struct {
    slot *s;
    int exact;         /* the model knows the window exactly */
    int64_t now_sec;
    long *wc;
    double *wmin, *wmax;
    int64_t *wold, *wnew;
    char *seen;
    int nexpected;
    int stop_after, visits, stopped, prev;
} visit_ctx;

static int cb_visit(void *user_data, const kplm_snapshot *sn) {
    visit_ctx *v = user_data;
    slot *s = v->s;
    chain_push(s);
    CHECK(!v->stopped); /* never called again after asking to stop */
    CHECK(sn != NULL);
    v->visits++;
    check_snapshot_sane(sn, s->level, s->window, 1);
    if (s->model_ok) {
        keyref k = keyref_of(sn->name, sn->dimensions, sn->dimension_count);
        int at = find_key(s, &k);
        CHECK(at >= 0);           /* only keys that were recorded */
        CHECK(!v->seen[at]);      /* once per key */
        v->seen[at] = 1;
        if (v->prev >= 0) {       /* in export order */
            keyview a = view_of_key(&s->keys[v->prev].k), b = view_of_key(&s->keys[at].k);
            CHECK(view_cmp(&a, &b) < 0);
        }
        v->prev = at;
        if (v->exact) {
            CHECK(v->wc[at] > 0 && sn->count == (uint64_t)v->wc[at]);
            CHECK(sn->min == v->wmin[at] && sn->max == v->wmax[at]);
            CHECK(sn->window_start == (double)v->wold[at]);
            CHECK(sn->window_end == (double)v->wnew[at] + 1);
        }
    }
    int stop = v->stop_after && v->visits >= v->stop_after;
    if (cb_mode(s) != MODE_STATELESS) reenter(s);
    if (stop) v->stopped = 1;
    chain_pop();
    return stop ? (v->visits & 1 ? 1 : -5) : 0;
}

/* ------------------------------------------------------------------------ */
/* Operations: each predicts the contract's answer, calls, and checks.       */
/* ------------------------------------------------------------------------ */

static const char *esc(const char *p) {
    static _Thread_local char buf[8][48];
    static _Thread_local int next;
    if (!p) return "NULL";
    char *b = buf[next++ & 7];
    size_t n = strlen(p), o = 0;
    b[o++] = '"';
    for (size_t i = 0; i < n && o < 30; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') b[o++] = (char)c;
        else o += (size_t)snprintf(b + o, 48 - o, "\\x%02x", c);
    }
    if (n > 20) o += (size_t)snprintf(b + o, 48 - o, "..(%zu)", n);
    snprintf(b + o, 48 - o, "\"");
    return b;
}

/* Predicted outcome of a put or metric_get: the set of allowed statuses,
 * and for a certain KPLM_OK the key (created in the model if new). */
typedef struct {
    unsigned allowed;
    int key;       /* model key, or -1 */
    int refused;   /* certain KPLM_ELIMIT */
    int uncertain; /* KPLM_OK or KPLM_ELIMIT (SPEC §10): the model follows the answer */
} prediction;

static prediction predict_key(slot *s, const char *name, const char *st, const char *sh, const char *ec,
                              int value_ok, int is_get) {
    prediction p = {0, -1, 0, 0};
    if (s->level == KPLM_LEVEL_NONE) {
        /* Only the NULL/empty name, the value and closed are checked. */
        if (!name || !*name || !value_ok) p.allowed |= ST(KPLM_EINVAL);
        /* metric_get: "same key rules and checks as kplm_put"; whether it
         * validates the rest at NONE is not said. */
        if (is_get && !(arg_name_ok(name) && arg_dim_ok(st) && arg_dim_ok(sh) && arg_dim_ok(ec)))
            p.allowed |= ST(KPLM_EINVAL);
        if (s->closing) p.allowed |= ST(KPLM_ECLOSED);
        if (!p.allowed || (is_get && !s->closing && name && *name && value_ok)) p.allowed |= ST(KPLM_OK);
        return p;
    }
    int invalid = !value_ok || !arg_name_ok(name) || !arg_dim_ok(st) || !arg_dim_ok(sh) || !arg_dim_ok(ec);
    if (invalid) p.allowed |= ST(KPLM_EINVAL);
    if (s->closing) p.allowed |= ST(KPLM_ECLOSED);
    if (p.allowed) return p;
    keyref k = form_key(s, name, st, sh, ec);
    int at = find_key(s, &k);
    if (at >= 0) {
        p.key = at;
        p.allowed = ST(KPLM_OK);
        if (!is_refused_key(&k) && cap_uncertain_for(s, at)) {
            p.allowed |= ST(KPLM_ELIMIT);
            p.uncertain = 1;
        }
        return p;
    }
    if (is_refused_key(&k)) {
        p.key = add_key(s, &k, 0);
        if (p.key >= 0) s->refused_key = p.key;
        p.allowed = ST(KPLM_OK);
        return p;
    }
    if ((uint32_t)s->capped < s->max_metrics) {
        p.key = add_key(s, &k, 1);
        p.allowed = ST(KPLM_OK);
        return p;
    }
    if (may_be_removed(s, -1)) {
        p.allowed = ST(KPLM_ELIMIT) | ST(KPLM_OK);
        p.uncertain = 1;
        return p;
    }
    p.allowed = ST(KPLM_ELIMIT);
    p.refused = 1;
    return p;
}

/* After an uncertain prediction: the model follows the library's answer
 * (the key, admitted or re-created; or one refusal). Returns the key. */
static int follow_uncertain(slot *s, const prediction *p, const char *name, const char *st, const char *sh,
                            const char *ec, kplm_status r) {
    if (r == KPLM_ELIMIT) { model_refused(s); return -1; }
    if (r != KPLM_OK) return -1;
    if (p->key >= 0) return p->key;
    keyref k = form_key(s, name, st, sh, ec);
    int at = find_key(s, &k);
    return at >= 0 ? at : add_key(s, &k, 1);
}

static int expected_records(slot *s, kplm_status r) {
    return r == KPLM_OK && s->level != KPLM_LEVEL_NONE && s->started && !s->closing && s->has_sink &&
           s->cb_record && !tl_in_record[s->idx];
}

/* kplm_put, or (order >= 0) the same put through kplm_put_dims: its three
 * pairs, NULL values included (absent), in one of their 6 orders. The
 * header promises the two are exactly the same call, so the model and every
 * check are shared. */
static kplm_status put_via(slot *s, const char *name, double v, const char *st, const char *sh, const char *ec,
                           int order) {
    if (order < 0) return kplm_put(s->m, name, v, st, sh, ec);
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    const kplm_dimension seed[3] = {{"stream", st}, {"shard", sh}, {"error_code", ec}};
    kplm_dimension dims[3];
    for (int i = 0; i < 3; i++) dims[i] = seed[perms[order % 6][i]];
    return kplm_put_dims(s->m, name, v, dims, 3);
}

static void do_put(slot *s, const char *name, double v, const char *st, const char *sh, const char *ec,
                   int order) {
    call_budget--;
    prediction p = predict_key(s, name, st, sh, ec, isfinite(v), 0);
    /* Recorded before the call: a callback inside it may look. */
    if (p.allowed == ST(KPLM_OK) && s->level != KPLM_LEVEL_NONE) {
        if (p.key < 0) s->model_ok = 0;
        model_observe(s, p.key, v);
    }
    if (p.refused) model_refused(s);
    expect_frame f = {s, form_key(s, name ? name : "", st, sh, ec), v, 0, p.uncertain, 0};
    CHECK(tl_nexpect < 32);
    tl_expect[tl_nexpect++] = &f;
    kplm_status r = put_via(s, name, v, st, sh, ec, order);
    tl_nexpect--;
    if (f.resolved) CHECK(r == KPLM_OK);
    else if (p.uncertain) {
        int at = follow_uncertain(s, &p, name, st, sh, ec, r);
        if (r == KPLM_OK) model_observe(s, at, v);
    }
    trace("put%s slot%d %s %.17g %s %s %s -> %s (records %d)", order < 0 ? "" : "_dims", s->idx, esc(name), v,
          esc(st), esc(sh), esc(ec), st_name(r), f.records);
    CHECK_ST(r, p.allowed);
    CHECK(f.records == expected_records(s, r));
    s->have_last = 1;
    s->last_name = name, s->last_dim[0] = st, s->last_dim[1] = sh, s->last_dim[2] = ec;
    s->last_value = v;
}

static void op_put(slot *s) {
    const char *name = get_str(), *st = get_str(), *sh = get_str(), *ec = get_str();
    double v = get_value();
    do_put(s, name, v, st, sh, ec, -1);
}

static void op_put_dims(slot *s) {
    const char *name = get_str(), *st = get_str(), *sh = get_str(), *ec = get_str();
    double v = get_value();
    do_put(s, name, v, st, sh, ec, u8() % 6);
}

static void op_burst(slot *s) {
    unsigned n = u8() % 64 + 1;
    if (!s->have_last) return;
    for (unsigned i = 0; i < n && call_budget > 0 && s->m; i++)
        do_put(s, s->last_name, s->last_value, s->last_dim[0], s->last_dim[1], s->last_dim[2], -1);
}

static void op_metric_get(slot *s) {
    const char *name = get_str(), *st = get_str(), *sh = get_str(), *ec = get_str();
    call_budget--;
    prediction p = predict_key(s, name, st, sh, ec, 1, 1);
    if (p.refused) model_refused(s);
    kplm_metric *h = (kplm_metric *)(uintptr_t)0x1; /* must be overwritten */
    kplm_status r = kplm_metric_get(s->m, name, st, sh, ec, &h);
    trace("metric_get slot%d %s %s %s %s -> %s", s->idx, esc(name), esc(st), esc(sh), esc(ec), st_name(r));
    CHECK_ST(r, p.allowed);
    if (p.uncertain) p.key = follow_uncertain(s, &p, name, st, sh, ec, r);
    if (r != KPLM_OK) { CHECK(h == NULL); return; }
    CHECK(h != NULL);
    if (p.allowed == ST(KPLM_OK) && p.key < 0 && s->level != KPLM_LEVEL_NONE) s->model_ok = 0;
    if (s->nhandles < MAX_HANDLES) {
        s->handles[s->nhandles].h = h;
        s->handles[s->nhandles].key = s->level == KPLM_LEVEL_NONE ? -1 : p.key;
        s->nhandles++;
    }
}

static void op_metric_put(slot *s) {
    uint8_t which = u8();
    double v = get_value();
    if (!s->nhandles) return;
    int hi = which % s->nhandles;
    int at = s->handles[hi].key;
    call_budget--;
    unsigned allowed = 0;
    if (!isfinite(v)) allowed |= ST(KPLM_EINVAL);
    if (s->closing) allowed |= ST(KPLM_ECLOSED);
    if (!allowed) allowed = ST(KPLM_OK);
    /* The handle's key may have been removed and the cap filled (SPEC §10). */
    int uncertain = allowed == ST(KPLM_OK) && s->level != KPLM_LEVEL_NONE && at >= 0 &&
                    !is_refused_key(&s->keys[at].k) && cap_uncertain_for(s, at);
    if (uncertain) allowed |= ST(KPLM_ELIMIT);
    int counts = allowed == ST(KPLM_OK) && s->level != KPLM_LEVEL_NONE;
    if (counts) {
        if (at < 0) s->model_ok = 0;
        model_observe(s, at, v);
    }
    keyref k = at >= 0 ? s->keys[at].k : (keyref){"", {0}};
    expect_frame f = {s, k, v, 0, uncertain, 0};
    CHECK(tl_nexpect < 32);
    tl_expect[tl_nexpect++] = &f;
    kplm_status r = kplm_metric_put(s->handles[hi].h, v);
    tl_nexpect--;
    trace("metric_put slot%d handle%d %.17g -> %s (records %d)", s->idx, hi, v, st_name(r), f.records);
    CHECK_ST(r, allowed);
    if (f.resolved) CHECK(r == KPLM_OK);
    else if (uncertain) {
        if (r == KPLM_OK) model_observe(s, at, v);
        else if (r == KPLM_ELIMIT) model_refused(s);
    }
    if (at >= 0 || s->level == KPLM_LEVEL_NONE) CHECK(f.records == expected_records(s, r));
}

static void op_flush(slot *s) {
    unsigned allowed;
    int exporting = 0;
    if (s->level == KPLM_LEVEL_NONE) allowed = ST(KPLM_OK);
    else if (in_chain(s)) allowed = ST(KPLM_ESTATE) | (s->closing ? ST(KPLM_ECLOSED) : 0);
    else if (s->closing) {
        allowed = ST(KPLM_ECLOSED) | (!s->started ? ST(KPLM_ESTATE) : 0);
        /* Known issue: until the uploader thread runs the final work of a
         * close that timed out, flush still exports. */
        if (s->close_timed_out && known_issue("flush-after-timed-out-close"))
            allowed |= ST(KPLM_OK) | ST(KPLM_ESINK);
    }
    else if (!s->started) allowed = ST(KPLM_ESTATE);
    else if (s->noisy) allowed = ST(KPLM_OK) | ST(KPLM_ESINK);
    else { exporting = 1; allowed = 0; }
    /* Without kplm_set_sink the null sink takes everything, unseen. */
    int pending = exporting && s->model_ok && model_pending(s) && s->has_sink;
    int before = atomic_load(&s->a_exports);
    kplm_status r = kplm_flush(s->m);
    int exports = atomic_load(&s->a_exports) - before;
    trace("flush slot%d -> %s (exports %d)", s->idx, st_name(r), exports);
    if (exporting) {
        if (s->model_ok) CHECK(exports == pending);
        if (!s->has_sink) model_clear_pending(s);
        allowed = exports && s->last_export_failed ? ST(KPLM_ESINK) : ST(KPLM_OK);
    } else if (!s->noisy) {
        CHECK(exports == 0);
    }
    CHECK_ST(r, allowed);
}

static void check_totals(slot *s, const char *when) {
    long exported = atomic_load(&s->a_exported);
    if (exported != s->accepted) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: exported counts %ld != accepted observations %ld", when, exported, s->accepted);
        fail(__LINE__, msg);
    }
}

/* Waits (bounded) until the sink's close callback has run `want` times in
 * all: a close or free may return before the final export it started
 * (tiny export_timeout_ms), which then closes the sink in the background. */
static void wait_for_sink_close(slot *s, int want) {
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&s->a_closes) < want) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20) fail(__LINE__, "the background final export never closed the sink");
        sched_yield();
    }
}

/* kplm_close or kplm_free (which closes first): the shared expectations.
 * The final export is attempted by the first close after start and again
 * by every close or free after one that failed, until one is delivered
 * (s->delivered). The sink's close callback runs once: after the final
 * export that succeeded, or at free (which then discards what is pending). */
static void close_or_free(slot *s, int is_free) {
    const char *what = is_free ? "free" : "close";
    if (in_chain(s)) {
        /* From a callback of this manager: ESTATE, and nothing happens. */
        int e = atomic_load(&s->a_exports), c = atomic_load(&s->a_closes);
        if (is_free) kplm_free(s->m);
        kplm_status r = is_free ? KPLM_ESTATE : kplm_close(s->m);
        trace("%s slot%d from its own callback -> %s", what, s->idx, st_name(r));
        CHECK_ST(r, ST(KPLM_ESTATE));
        if (!s->noisy) CHECK(atomic_load(&s->a_exports) == e && atomic_load(&s->a_closes) == c);
        return;
    }
    int was_closing = s->closing;
    int final = s->level != KPLM_LEVEL_NONE && s->started && !s->delivered;
    int pending = final && !s->noisy && s->model_ok && model_pending(s) && s->has_sink;
    int e0 = atomic_load(&s->a_exports), c0 = atomic_load(&s->a_closes), o0 = atomic_load(&s->a_opens);
    s->closing = 1;
    int prev = atomic_exchange_explicit(&handoff, s->idx, memory_order_acq_rel);
    kplm_status r = KPLM_OK;
    if (is_free) kplm_free(s->m);
    else r = kplm_close(s->m);
    atomic_store_explicit(&handoff, prev, memory_order_release);
    int sink_closes = s->has_sink && s->cb_close;
    /* A free closes the sink now or, if an export still runs, when it returns. */
    if (final && is_free && s->async && sink_closes) wait_for_sink_close(s, 1);
    int exports = atomic_load(&s->a_exports) - e0, closes = atomic_load(&s->a_closes) - c0;
    trace("%s slot%d -> %s (exports %d, sink closes %d%s)", what, s->idx, st_name(r), exports, closes,
          final && was_closing ? ", a retry" : "");
    CHECK(atomic_load(&s->a_opens) == o0);
    if (!final) {
        /* Before start, at NONE, or after a delivered close: no sink call;
         * a later close is OK. */
        CHECK(exports == 0 && closes == 0);
        /* Known issue: a later close reports the failure of the final export
         * that a timed-out close left running. */
        CHECK_ST(r, ST(KPLM_OK) | (s->close_timed_out && known_issue("close-after-timed-out-close")
                                       ? ST(KPLM_ESINK) : 0));
        return;
    }
    if (s->noisy) {
        CHECK_ST(r, ST(KPLM_OK) | ST(KPLM_ESINK));
        if (r == KPLM_ESINK) {
            /* Failed (the sink stays open, the data is kept) or, with a tiny
             * timeout, still running: it may then close the sink later. */
            if (s->async) s->close_timed_out = 1;
            else CHECK(atomic_load(&s->a_closes) == 0 && !atomic_load(&s->a_last_ok));
            CHECK(atomic_load(&s->a_closes) <= sink_closes);
            return;
        }
        /* Delivered (close), or closed at free: the sink's close has run or
         * (async: a background export delivered it) is about to. */
        s->delivered = 1;
        if (s->async && sink_closes) wait_for_sink_close(s, 1);
        CHECK(atomic_load(&s->a_closes) == sink_closes);
        /* Exports are serialised and the final one comes last: if it (or, with
         * nothing left for it, the one before) succeeded, all is exported; a
         * close that returns KPLM_OK has exported everything. */
        if (s->has_sink && !is_free) CHECK(atomic_load(&s->a_last_ok) || !atomic_load(&s->a_any_export));
        if (s->has_sink && (atomic_load(&s->a_last_ok) || !atomic_load(&s->a_any_export)))
            check_totals(s, what);
        return;
    }
    if (s->model_ok) CHECK(exports == pending);
    CHECK(exports <= 1);
    int failed = exports && s->last_export_failed;
    if (!is_free) CHECK_ST(r, failed ? ST(KPLM_ESINK) : ST(KPLM_OK));
    /* A failed final export keeps the sink open, except at free. */
    CHECK(closes == (failed && !is_free ? 0 : sink_closes));
    if (!s->has_sink) model_clear_pending(s);
    if (!failed && s->has_sink) {
        if (s->model_ok) CHECK(!model_pending(s));
        check_totals(s, what);
    }
    if (!failed || is_free) s->delivered = 1;
}

static void clear_slot(slot *s) {
    s->m = NULL;
    s->nhandles = 0;
    s->have_last = 0;
}

static void op_close(slot *s) { close_or_free(s, 0); }

static void op_free(slot *s) {
    int own = in_chain(s);
    close_or_free(s, 1);
    if (!own) clear_slot(s);
}

static void op_start(slot *s) {
    int o0 = atomic_load(&s->a_opens);
    unsigned allowed;
    int attempt = 0;
    s->last_open_failed = 0;
    if (s->level == KPLM_LEVEL_NONE) allowed = ST(KPLM_OK);
    else if (in_chain(s) || s->started || s->closing) allowed = ST(KPLM_ESTATE);
    else { attempt = 1; allowed = ST(KPLM_OK) | ST(KPLM_ESINK) | ST(KPLM_ENOMEM); }
    threads_started = 1;
    kplm_status r = kplm_start(s->m);
    int opens = atomic_load(&s->a_opens) - o0;
    trace("start slot%d -> %s (opens %d)", s->idx, st_name(r), opens);
    CHECK_ST(r, allowed);
    CHECK(opens == (attempt && s->has_sink && s->cb_open));
    if (attempt) {
        /* ESINK exactly when open failed. */
        int open_failed = s->has_sink && s->cb_open && s->last_open_failed;
        if (r != KPLM_ENOMEM) CHECK((r == KPLM_ESINK) == open_failed);
        if (r == KPLM_OK) s->started = 1;
    }
    if (s->level == KPLM_LEVEL_NONE && r == KPLM_OK) s->started = 1;
}

static void op_snapshots(slot *s) {
    uint8_t f = u8();
    visit_ctx v;
    memset(&v, 0, sizeof v);
    v.s = s;
    v.prev = -1;
    v.stop_after = f == 0xFF ? 0 : f % 8;
    if (f == 0xFF) {
        kplm_status r = kplm_snapshots(s->m, NULL, NULL);
        trace("snapshots slot%d NULL visit -> %s", s->idx, st_name(r));
        CHECK_ST(r, ST(KPLM_EINVAL));
        return;
    }
    size_t nk = (size_t)s->nkeys + 1;
    v.seen = calloc(nk, 1);
    CHECK(v.seen != NULL);
    v.exact = s->model_ok && s->sane && s->level != KPLM_LEVEL_NONE;
    if (v.exact) {
        /* The rolling window at the current second: buckets in
         * (now - window, now]. */
        v.now_sec = (int64_t)floor(clock_now(s));
        v.wc = calloc(nk, sizeof *v.wc);
        v.wmin = calloc(nk, sizeof *v.wmin);
        v.wmax = calloc(nk, sizeof *v.wmax);
        v.wold = calloc(nk, sizeof *v.wold);
        v.wnew = calloc(nk, sizeof *v.wnew);
        CHECK(v.wc && v.wmin && v.wmax && v.wold && v.wnew);
        for (int i = 0; i < s->nevents; i++) {
            const mevent *e = &s->events[i];
            if (e->sec <= v.now_sec - (int64_t)s->window || e->sec > v.now_sec) continue;
            int k = e->key;
            if (v.wc[k] == 0) {
                v.wmin[k] = v.wmax[k] = e->value;
                v.wold[k] = v.wnew[k] = e->sec;
            } else {
                if (e->value < v.wmin[k]) v.wmin[k] = e->value;
                if (e->value > v.wmax[k]) v.wmax[k] = e->value;
                if (e->sec < v.wold[k]) v.wold[k] = e->sec;
                if (e->sec > v.wnew[k]) v.wnew[k] = e->sec;
            }
            v.wc[k]++;
        }
        for (size_t k = 0; k < nk; k++) v.nexpected += v.wc[k] > 0;
    }
    kplm_status r = kplm_snapshots(s->m, cb_visit, &v);
    trace("snapshots slot%d stop_after=%d -> %s (visits %d, expected %d)", s->idx, v.stop_after, st_name(r),
          v.visits, v.exact ? v.nexpected : -1);
    CHECK_ST(r, ST(KPLM_OK));
    if (s->level == KPLM_LEVEL_NONE) CHECK(v.visits == 0);
    if (v.exact) {
        if (v.stopped) CHECK(v.visits == v.stop_after && v.stop_after <= v.nexpected);
        else CHECK(v.visits == v.nexpected);
    }
    free(v.seen);
    free(v.wc);
    free(v.wmin);
    free(v.wmax);
    free(v.wold);
    free(v.wnew);
}

static void op_set_sink(slot *s) {
    uint8_t f = u8();
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = s;
    sink.export_snapshots = cb_export;
    int with_open = f & 1, with_record = (f >> 1) & 1, with_close = ((f >> 2) & 1) || s->async;
    if (with_open) sink.open = cb_open;
    if (with_record) sink.record = cb_record;
    if (with_close) sink.close = cb_close;
    int bad = f >> 7;
    int null_sink = bad && ((f >> 6) & 1);
    int slow = !bad && ((f >> 6) & 1);
    if (bad) sink.export_snapshots = NULL;
    unsigned allowed;
    int after = s->started || s->closing;
    if (bad) allowed = ST(KPLM_EINVAL) | (after ? ST(KPLM_ESTATE) : 0);
    else if (!after) allowed = ST(KPLM_OK);
    else if (s->level == KPLM_LEVEL_NONE) allowed = ST(KPLM_OK) | ST(KPLM_ESTATE); /* see the report */
    else allowed = ST(KPLM_ESTATE);
    kplm_status r = kplm_set_sink(s->m, null_sink ? NULL : &sink);
    trace("set_sink slot%d flags 0x%02x -> %s", s->idx, f, st_name(r));
    CHECK_ST(r, allowed);
    if (r == KPLM_OK) {
        s->has_sink = 1;
        s->cb_open = with_open;
        s->cb_record = with_record;
        s->cb_close = with_close;
        s->fail_mode = (f >> 3) & 3;
        s->open_fail = (f >> 5) & 1;
        s->slow = slow;
    }
}

static void op_clock(slot *s) {
    uint8_t c = u8();
    unsigned x = c & 15;
    double t = clock_now(s), w = (double)s->window;
    switch (c >> 4) {
    case 0: case 1: case 2: case 3: case 4: case 5: t += x; break;
    case 6: t += clock_fractions[x & 7]; break;
    case 7: t += w + (double)x - 8; break;
    case 8: t -= x + 1; break;
    case 9: t -= clock_fractions[x & 7]; break;
    case 10: t = clock_table[x]; break;
    case 11: t = f64(); break;
    case 12: t += 60.0 * (x + 1); break;
    case 13: t += 3600.0 * (x + 1); break;
    case 14: t = nextafter(t, INFINITY); break;
    default: t += ldexp(1e6, (int)x); break;
    }
    double old = clock_now(s);
    if (!clock_value_sane(t) || !(t >= old)) s->sane = 0;
    atomic_store_explicit(&s->clock_bits, double_to_bits(t), memory_order_relaxed);
    trace("clock slot%d %.17g -> %.17g%s", s->idx, old, t, s->sane ? "" : " (model: clock not monotonic)");
}

/* ------------------------------------------------------------------------ */
/* Configurations                                                            */
/* ------------------------------------------------------------------------ */

static const uint32_t window_table[8] = {0, 1, 2, 59, 61, 3600, 3601, UINT32_MAX};
static const double huge_intervals[8] = {1e9, 1e15, 1e18, 1e20, 1e300, DBL_MAX, 3.6e6, 86400000.0};
static const double bad_doubles[8] = {0.0, -0.0, -1.0, NAN, INFINITY, -INFINITY, -DBL_MAX, -4.9406564584124654e-324};
static const double timeout_table[8] = {60000.0, 1e300, DBL_MAX, 1e18, 1e-300, 0.5, 1.0, 4.9406564584124654e-324};

static int double_ok(double d) { return isfinite(d) && d > 0; }

/* Decodes a configuration, calls kplm_new and checks its answer. */
static void new_manager(slot *s) {
    uint8_t a = u8(), b = u8();
    kplm_config c;
    kplm_config_init(&c);
    const size_t first_size = offsetof(kplm_config, export_timeout_ms);
    size_t size = sizeof c;
    int null_config = 0;

    uint32_t level = a & 3;
    if (level == 3) level = u32();
    if (((a >> 2) & 3) == 3) {
        uint8_t k = u8();
        switch (k & 3) {
        case 0: null_config = 1; break;
        case 1: size = first_size; break;
        case 2: size = u32(); break;
        default: size = sizeof c + (size_t)(k >> 2) - 32; break;
        }
    }
    switch ((a >> 4) & 3) {
    case 0: break;
    case 1: c.window_seconds = 1 + u8() % 8; break;
    case 2: c.window_seconds = u32(); break;
    default: c.window_seconds = window_table[u8() & 7]; break;
    }
    switch (a >> 6) {
    case 0: break;
    case 1: c.max_metrics = 1 + u8() % 8; break;
    case 2: c.max_metrics = 0; break;
    default: c.max_metrics = u32(); break;
    }
    switch (b & 7) {
    case 4: c.upload_interval_ms = huge_intervals[u8() & 7]; break;
    case 5: c.upload_interval_ms = bad_doubles[u8() & 7]; break;
    case 6: c.upload_interval_ms = f64(); break;
    case 7: c.upload_interval_ms = 1 + u8() % 20; break;
    default: c.upload_interval_ms = 3.6e6; break;
    }
    switch ((b >> 3) & 3) {
    case 2: c.export_timeout_ms = timeout_table[u8() & 7]; break;
    case 3: c.export_timeout_ms = f64(); break;
    default: break;
    }
    int injected = ((b >> 5) & 3) != 3;
    double t0 = 0;
    if (injected) {
        uint8_t v = u8();
        t0 = v < 0xF0 ? 1000.0 + v : clock_table[v & 15];
        c.clock = cb_clock;
        c.clock_user_data = s;
    }
    memcpy(&c.level, &level, sizeof level);
    c.struct_size = (uint32_t)size;
    /* The caller's struct: c, then (for a newer caller's larger size) a
     * tail of fields this library does not know, zero or, when the input
     * says so, with one byte set. The library reads at most 1 KiB. */
    static _Alignas(8) unsigned char caller[1024];
    memset(caller, 0, sizeof caller);
    memcpy(caller, &c, sizeof c);
    int tail_set = 0;
    if (size > sizeof c && size <= sizeof caller && (b & 0x80)) {
        caller[sizeof c + (u8() % (size - sizeof c))] = 1;
        tail_set = 1;
    }

    /* What kplm_new must answer. */
    kplm_config eff = c;
    int must_fail = 0, lenient = 0;
    if (null_config) {
        kplm_config_init(&eff);
    } else {
        if (size == first_size) {
            kplm_config d;
            kplm_config_init(&d);
            eff.export_timeout_ms = d.export_timeout_ms; /* not read: the default */
        } else if (size == 0) {
            /* The 1.0 layout: this one. */
        } else if (size > sizeof c) {
            /* A newer layout: whole fields, at most 1 KiB, nothing set that
             * this library does not know. */
            if (size % 8 != 0 || size > sizeof caller || tail_set) must_fail = 1;
        } else if (size != sizeof c) {
            /* Unknown layouts must be refused; a size between the first and
             * the current layout may be a later version's: not asserted. */
            if (size > first_size && size < sizeof c) lenient = 1;
            else must_fail = 1;
        }
        if (level > 2 || !double_ok(eff.upload_interval_ms) || eff.window_seconds < KPLM_WINDOW_SECONDS_MIN ||
            eff.window_seconds > KPLM_WINDOW_SECONDS_MAX || eff.max_metrics == 0 || !double_ok(eff.export_timeout_ms))
            must_fail = 1;
    }

    atomic_store(&s->clock_bits, double_to_bits(t0));
    kplm_manager *m = (kplm_manager *)(uintptr_t)0x1;
    kplm_status r = kplm_new(null_config ? NULL : (const kplm_config *)(const void *)caller, &m);
    trace("new slot%d level=%u size=%zu%s window=%u max=%u interval=%.17g timeout=%.17g clock=%s%.17g -> %s",
          s->idx, level, size, null_config ? " (NULL config)" : "", c.window_seconds, c.max_metrics,
          c.upload_interval_ms, c.export_timeout_ms, injected ? "" : "system/", t0, st_name(r));
    if (must_fail) {
        CHECK_ST(r, ST(KPLM_EINVAL));
        CHECK(m == NULL);
        return;
    }
    if (lenient) {
        CHECK_ST(r, ST(KPLM_OK) | ST(KPLM_EINVAL));
        CHECK((r == KPLM_OK) == (m != NULL));
        kplm_free(r == KPLM_OK ? m : NULL);
        return;
    }
    CHECK_ST(r, ST(KPLM_OK));
    CHECK(m != NULL);

    /* Some managers make two of the fuzzer's names distribution metrics
     * (SPEC §6): their puts then take the distribution paths, under every
     * check that follows (the statistics are unchanged by it). Derived from
     * the config, so no input byte moves. */
    if ((c.window_seconds ^ c.max_metrics) & 1) {
        double a = c.window_seconds & 2 ? 0.1 : 0.01;
        CHECK_ST(kplm_set_distribution(m, "a", a), ST(KPLM_OK));
        CHECK_ST(kplm_set_distribution(m, "UserRecordsPut", a), ST(KPLM_OK));
        trace("set_distribution slot%d \"a\", \"UserRecordsPut\" %g -> OK", s->idx, a);
    }

    /* Fresh slot. */
    s->m = m;
    s->level = null_config ? KPLM_LEVEL_NONE : (int)level;
    s->window = eff.window_seconds;
    s->max_metrics = eff.max_metrics;
    s->interval_ms = eff.upload_interval_ms;
    s->timeout_ms = eff.export_timeout_ms;
    s->injected = injected && !null_config;
    s->sane = s->injected && clock_value_sane(t0);
    s->noisy = !(s->interval_ms >= QUIET_INTERVAL_MS) || !(s->timeout_ms >= QUIET_TIMEOUT_MS);
    s->async = !(s->timeout_ms >= QUIET_TIMEOUT_MS);
    s->model_ok = 1;
    s->started = s->closing = s->delivered = s->close_timed_out = 0;
    s->has_sink = s->cb_open = s->cb_record = s->cb_close = s->fail_mode = s->open_fail = s->slow = 0;
    s->last_export_failed = 0;
    atomic_store(&s->a_exported, 0);
    atomic_store(&s->a_exports, 0);
    atomic_store(&s->a_closes, 0);
    atomic_store(&s->a_opens, 0);
    atomic_store(&s->a_last_ok, 0);
    atomic_store(&s->a_any_export, 0);
    atomic_store(&s->a_fail_seq, 0);
    s->accepted = 0;
    s->nkeys = s->capped = s->nevents = s->nhandles = 0;
    memset(s->htab, 0xFF, sizeof s->htab);
    s->refused_key = -1;
    s->have_last = 0;
}

/* ------------------------------------------------------------------------ */
/* Miscellany: status strings, version, NULL arguments                       */
/* ------------------------------------------------------------------------ */

static void check_status_string(uint32_t v) {
    static const char *prefixes[] = {"KPLM_OK", "KPLM_EINVAL", "KPLM_ESTATE", "KPLM_ECLOSED",
                                     "KPLM_ELIMIT", "KPLM_ENOMEM", "KPLM_ESINK"};
    kplm_status st;
    memcpy(&st, &v, sizeof st < sizeof v ? sizeof st : sizeof v);
    const char *p = kplm_status_string(st);
    CHECK(p != NULL);
    size_t n = strnlen(p, 1024);
    CHECK(n >= 1 && n < 1024);
    if (v <= KPLM_ESINK) {
        size_t pl = strlen(prefixes[v]);
        CHECK(strncmp(p, prefixes[v], pl) == 0 && (p[pl] == 0 || p[pl] == ':'));
    }
}

static void op_misc(slot *s) {
    uint8_t m = u8();
    kplm_metric *h = (kplm_metric *)(uintptr_t)0x1;
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.export_snapshots = cb_export;
    sink.user_data = s;
    switch (m % 16) {
    case 0: check_status_string(u32()); break;
    case 1: check_status_string((m >> 4) & 7); break;
    case 2: {
        char want[64];
        snprintf(want, sizeof want, "%d.%d.%d", KPLM_VERSION_MAJOR, KPLM_VERSION_MINOR, KPLM_VERSION_PATCH);
        CHECK(kplm_version() != NULL && strcmp(kplm_version(), want) == 0);
        break;
    }
    case 3: CHECK_ST(kplm_put(NULL, "UserRecordsPut", 1.0, NULL, NULL, NULL), ST(KPLM_EINVAL)); break;
    case 4: CHECK_ST(kplm_flush(NULL), ST(KPLM_EINVAL)); break;
    case 5: CHECK_ST(kplm_close(NULL), ST(KPLM_EINVAL)); break;
    case 6: CHECK_ST(kplm_start(NULL), ST(KPLM_EINVAL)); break;
    case 7: CHECK_ST(kplm_set_sink(NULL, &sink), ST(KPLM_EINVAL)); break;
    case 8: CHECK_ST(kplm_snapshots(NULL, cb_visit, NULL), ST(KPLM_EINVAL)); break;
    case 9:
        CHECK_ST(kplm_metric_get(NULL, "UserRecordsPut", NULL, NULL, NULL, &h), ST(KPLM_EINVAL));
        CHECK(h == NULL);
        break;
    case 10:
        if (s->m)
            CHECK_ST(kplm_metric_get(s->m, "UserRecordsPut", NULL, NULL, NULL, NULL),
                     ST(KPLM_EINVAL) | (s->closing ? ST(KPLM_ECLOSED) : 0));
        break;
    case 11: CHECK_ST(kplm_metric_put(NULL, 1.0), ST(KPLM_EINVAL)); break;
    case 12: {
        kplm_free(NULL);
        kplm_config_init(NULL);
        /* A pause of (m >> 4) * 0.25 ms, only while periodic uploads run:
         * lets an upload be in progress when the next operation comes. */
        int ticking = 0;
        for (int i = 0; i < NSLOTS; i++)
            ticking |= S[i].m && S[i].noisy && S[i].started && !S[i].closing && S[i].level != KPLM_LEVEL_NONE;
        if (ticking && (m >> 4)) {
            struct timespec pause = {0, (long)(m >> 4) * 250000};
            nanosleep(&pause, NULL);
        }
        break;
    }
    case 13: {
        kplm_config c;
        kplm_config_init(&c);
        CHECK_ST(kplm_new(&c, NULL), ST(KPLM_EINVAL));
        kplm_manager *d = NULL;
        CHECK_ST(kplm_new(NULL, &d), ST(KPLM_OK));
        CHECK(d != NULL);
        /* The defaults: level NONE, so puts succeed and record nothing. */
        CHECK_ST(kplm_put(d, "UserRecordsPut", 1.0, "\xff", NULL, NULL), ST(KPLM_OK));
        CHECK_ST(kplm_start(d), ST(KPLM_OK));
        CHECK_ST(kplm_flush(d), ST(KPLM_OK));
        kplm_free(d);
        break;
    }
    case 14:
        if (s->m) {
            sink.export_snapshots = NULL;
            unsigned after = s->started || s->closing ? ST(KPLM_ESTATE) : 0;
            CHECK_ST(kplm_set_sink(s->m, NULL), ST(KPLM_EINVAL) | after);
            CHECK_ST(kplm_set_sink(s->m, &sink), ST(KPLM_EINVAL) | after);
            CHECK_ST(kplm_snapshots(s->m, NULL, NULL), ST(KPLM_EINVAL));
        }
        break;
    default: {
        kplm_config c;
        kplm_config_init(&c);
        CHECK(c.struct_size == sizeof c && c.level == KPLM_LEVEL_NONE && c.upload_interval_ms == 60000.0 &&
              c.window_seconds == 60 && c.clock == NULL && c.max_metrics == 100000 &&
              c.export_timeout_ms == 10000.0);
        break;
    }
    }
    trace("misc %u", m % 16);
}

/* ------------------------------------------------------------------------ */
/* Re-entry from callbacks                                                   */
/* ------------------------------------------------------------------------ */

static void reenter(slot *own) {
    if (tl_depth > MAX_DEPTH || call_budget <= 0) return;
    uint8_t b = u8();
    if (b == 0) return;
    slot *other = &S[own->idx ^ 1];
    int harness = tl_harness;
    int act = b % 15;
    trace(" re-enter from slot%d callback: action %d", own->idx, act);
    switch (act) {
    case 1: op_put(own); break;
    case 2: op_metric_put(own); break;
    case 3: op_flush(own); break;
    case 4: op_close(own); break;
    case 5: op_free(own); break;
    case 6: op_start(own); break;
    case 7: op_snapshots(own); break;
    case 8: op_metric_get(own); break;
    case 14:
        /* set_sink on a started or closed manager: KPLM_ESTATE, also from a
         * callback (it once deadlocked from an export callback). */
        if ((own->started || own->closing) && own->level != KPLM_LEVEL_NONE &&
            !known_issue("set-sink-from-callback"))
            op_set_sink(own);
        else
            (void)u8();
        break;
    default:
        /* Another manager: only from the harness thread (a callback on an
         * uploader thread must not wait for another manager's locks while
         * the harness thread holds them). */
        if (!harness || !other->m) return;
        switch (act) {
        case 9: op_put(other); break;
        case 10: op_flush(other); break;
        case 11: op_close(other); break;
        case 12: op_free(other); break;
        default: op_snapshots(other); break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The program                                                               */
/* ------------------------------------------------------------------------ */

static void run_op(void) {
    uint8_t o = u8();
    slot *s = &S[o & 1];
    int kind = (o >> 1) & 15;
    if (kind == 13) {
        /* NEW: (re)create this slot. */
        if (s->m) op_free(s);
        new_manager(s);
        return;
    }
    if (kind == 14) { op_misc(s); return; }
    if (!s->m) return;
    switch (kind) {
    case 0: case 1: op_put(s); break;
    case 2: op_put_dims(s); break;
    case 3: op_metric_get(s); break;
    case 4: op_metric_put(s); break;
    case 5: op_flush(s); break;
    case 6: op_snapshots(s); break;
    case 7: case 8: op_clock(s); break;
    case 9: op_set_sink(s); break;
    case 10: op_start(s); break;
    case 11: op_close(s); break;
    case 12: op_free(s); break;
    default: op_burst(s); break;
    }
}

/* Threads of this process, from /proc/self/status (-1 if unknown). */
static int thread_count(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

/* Waits until every uploader thread has exited: once its manager is freed
 * (and its final export done) nothing of it may keep running. This also
 * keeps LeakSanitizer from scanning a thread that is still releasing. */
static void quiesce_threads(int baseline) {
    if (baseline < 0) return;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int n = thread_count();
        if (n < 0 || n <= baseline) return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20) fail(__LINE__, "an uploader thread outlived its freed manager by 20 s");
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int baseline_threads = -2;
    if (baseline_threads == -2) {
        /* The library keeps one process-wide thread once a manager with the
         * system clock exists (kplm-clock, the current-second ticker): start
         * it before counting, so only uploader threads are waited for. */
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_DETAILED;
        kplm_manager *m = NULL;
        if (kplm_new(&cfg, &m) == KPLM_OK) kplm_free(m);
        baseline_threads = thread_count();
    }
    tl_harness = 1;
    tl_depth = 0;
    tl_nexpect = 0;
    in_begin(data, size);
    call_budget = CALL_BUDGET;
    atomic_store(&handoff, -1);
    trace("---- input of %zu bytes", size);
    for (int i = 0; i < NSLOTS; i++) {
        S[i].idx = i;
        S[i].m = NULL;
    }

    uint8_t h = u8();
    new_manager(&S[0]);
    if (h & 1) new_manager(&S[1]);
    for (int ops = 0; in_more() && ops < OP_BUDGET && call_budget > 0; ops++) run_op();

    /* Every manager is freed, so LeakSanitizer sees everything released. */
    for (int i = 0; i < NSLOTS; i++)
        if (S[i].m) op_free(&S[i]);
    CHECK(tl_depth == 0 && tl_nexpect == 0);
    if (threads_started) quiesce_threads(baseline_threads);
    threads_started = 0;
    return 0;
}
