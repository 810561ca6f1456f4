/*
 * fuzz_sinks.c — coverage-guided fuzz target for the C constructors of the
 * built-in network sinks (kplm_sink_dogstatsd, kplm_sink_emf,
 * kplm_sink_prometheus, kplm_sink_otlp, kplm_sink_cloudwatch) and for the
 * ownership of what they return.
 *
 * Each input is a sequence of records. A record picks a sink kind, starts
 * from the kind's kplm_*_config_init defaults, then sets fields from the
 * input: strings taken byte for byte (NULL, empty, invalid UTF-8, blanks,
 * up to 1100 bytes), ports, sizes, counts and doubles (NaN, ±inf, 0,
 * negative, huge), a wrong struct_size, a NULL config or out. It calls the
 * constructor and then disposes of the sink: kplm_sink_release (twice), or
 * kplm_set_sink on a manager that is freed without being started, or a
 * manager at level NONE that is started, given puts, flushed and closed
 * (level NONE opens no sink, so nothing touches the network).
 *
 * Beside the sanitizers (crash, overflow, use after free, leak: every sink
 * must be released by one of those paths), it abort()s when the library
 * disagrees with kplm.h:
 *  - the status is KPLM_OK, KPLM_EINVAL or KPLM_ENOMEM, and KPLM_EINVAL for
 *    a NULL config or out or an unknown struct_size;
 *  - the defaults (plus a region for CloudWatch) are accepted;
 *  - on failure *out is all zero; on success export_snapshots is set;
 *  - kplm_sink_release clears *out; kplm_set_sink of a built-in sink
 *    succeeds on a new manager.
 * No network and no file system: constructors resolve and open nothing, and
 * the harness never starts a sink above level NONE. The CloudWatch
 * constructor reads its region from the environment, which the harness
 * empties (LLVMFuzzerInitialize).
 *
 * Input format (little endian; reading past the end gives 0):
 *   record*   u8 kind (% 5), u8 dispose, u8 flags, then the kind's fields
 * Build: scripts/fuzz.sh --target sinks; Tests/fuzz/replay_main.c replays
 * files without libFuzzer.
 */
#define _GNU_SOURCE
#include "kplm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECORDS 64
#define MAX_TAGS 8
#define ARENA_SIZE (1u << 20)

static void fail(int line, const char *what) __attribute__((noreturn));
static void fail(int line, const char *what) {
    fprintf(stderr, "\n==== fuzz_sinks: invariant violated at fuzz_sinks.c:%d: %s\n", line, what);
    fflush(stderr);
    abort();
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) fail(__LINE__, #cond);                                  \
    } while (0)

/* KPLM_FUZZ_TRACE=1: print every constructor call and its status. */
static int trace_on = -1;
static void trace_call(const char *ctor, unsigned flags, int status) {
    if (trace_on < 0) {
        const char *e = getenv("KPLM_FUZZ_TRACE");
        trace_on = e && *e && *e != '0';
    }
    if (trace_on) fprintf(stderr, "trace: %s flags=0x%x -> %d\n", ctor, flags, status);
}

/* ------------------------------------------------------------------------ */
/* Input                                                                     */
/* ------------------------------------------------------------------------ */

/* u8() ... f64(), in_more() and the string arena (fuzz_input.h). */
#define FUZZ_ARENA_SIZE ARENA_SIZE
#include "fuzz_input.h"

/* Strings the constructors give meaning to, and edge cases of UTF-8. */
static const char *const string_table[32] = {
    "127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "256.1.1.1", "host name", "h\xc3\xa9",
    "http://127.0.0.1:4318/v1/metrics", "https://monitoring.us-east-1.amazonaws.com/",
    "http://[::1]:9/x", "http://h:0/", "http://h:65536/", "ftp://h/", "http://u@h/", "http://h/?q",
    "us-east-1", "US-EAST-1", "cn-north-1", "kplm_", "KinesisProducerLibrary", "AWS/Kinesis",
    "env:prod", "a:b:c", "\xff", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", " ", "\t", "/tmp/x", "default",
};

static const size_t fill_lengths[8] = {1, 63, 64, 255, 256, 257, 1024, 1100};
static const char *const fill_patterns[8] = {"a", "\xc3\xa9", "\xff", ".", ":", "0", "\xf0\x9f\x98\x80", "-"};

/* NULL, "", a table entry, raw input bytes (cut at the first NUL), or a
 * pattern repeated to an interesting length. */
static const char *get_str(void) {
    uint8_t c = u8();
    switch (c >> 5) {
    case 0: return NULL;
    case 1: return "";
    case 2: case 3: return string_table[c & 31];
    case 4: case 5: return in_short_str(c & 63);
    case 6: return in_long_str();
    default: {
        uint8_t k = u8();
        size_t len = fill_lengths[k & 7];
        const char *pat = fill_patterns[(k >> 3) & 7];
        size_t plen = strlen(pat);
        char buf[1200];
        for (size_t i = 0; i < len; i++) buf[i] = pat[i % plen];
        return arena_copy(buf, len);
    }
    }
}

static const double double_table[16] = {
    0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5000.0, 2000.0, 1e9, 1e300, NAN, -NAN, INFINITY, -INFINITY, 4.9e-324, 1e15,
};

static double get_double(void) {
    uint8_t v = u8();
    if (v < 128) return double_table[v & 15];
    return f64();
}

static uint16_t get_port(void) {
    static const uint16_t ports[8] = {0, 1, 80, 443, 4318, 8125, 9464, 65535};
    uint8_t v = u8();
    return v < 128 ? ports[v & 7] : u16();
}

/* ------------------------------------------------------------------------ */
/* One record                                                                */
/* ------------------------------------------------------------------------ */

static int is_zero_sink(const kplm_sink *s) {
    return s->open == NULL && s->export_snapshots == NULL && s->close == NULL && s->record == NULL &&
           s->user_data == NULL;
}

/* What the record asks beyond its fields (the flags byte). */
enum {
    F_SET_FIELDS = 1,   /* take fields from the input (else the defaults) */
    F_NULL_CONFIG = 2,  /* pass a NULL config */
    F_NULL_OUT = 4,     /* pass a NULL out */
    F_BAD_SIZE = 8,     /* a wrong struct_size */
};

static void dispose(kplm_sink *sink, uint8_t how) {
    switch (how % 3) {
    case 0:
        kplm_sink_release(sink);
        CHECK(is_zero_sink(sink));
        kplm_sink_release(sink); /* cleared: nothing left to release */
        kplm_sink_release(NULL);
        break;
    case 1: {
        /* Owned by a manager that is never started: freed with it. */
        kplm_manager *m = NULL;
        kplm_config c;
        kplm_config_init(&c);
        c.level = KPLM_LEVEL_DETAILED;
        CHECK(kplm_new(&c, &m) == KPLM_OK);
        CHECK(kplm_set_sink(m, sink) == KPLM_OK);
        CHECK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL) == KPLM_OK);
        kplm_free(m);
        break;
    }
    default: {
        /* Level NONE: start and close do nothing, the sink is never opened. */
        kplm_manager *m = NULL;
        kplm_config c;
        kplm_config_init(&c);
        c.level = KPLM_LEVEL_NONE;
        CHECK(kplm_new(&c, &m) == KPLM_OK);
        CHECK(kplm_set_sink(m, sink) == KPLM_OK);
        CHECK(kplm_start(m) == KPLM_OK);
        CHECK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL) == KPLM_OK);
        CHECK(kplm_flush(m) == KPLM_OK);
        CHECK(kplm_close(m) == KPLM_OK);
        kplm_free(m);
        break;
    }
    }
}

/* Calls the constructor of `kind` on config (or NULL) and checks the
 * status and *out. `must_succeed`: the defaults, which kplm.h accepts. */
#define CONSTRUCT(ctor, cfg, flags, must_succeed, dispose_how)                          \
    do {                                                                                \
        kplm_sink out_;                                                                 \
        memset(&out_, 0xA5, sizeof out_);                                               \
        kplm_status st_ = ctor(((flags) & F_NULL_CONFIG) ? NULL : (cfg),                \
                               ((flags) & F_NULL_OUT) ? NULL : &out_);                  \
        trace_call(#ctor, (flags), (int)st_);                                           \
        CHECK(st_ == KPLM_OK || st_ == KPLM_EINVAL || st_ == KPLM_ENOMEM);              \
        if ((flags) & (F_NULL_CONFIG | F_NULL_OUT | F_BAD_SIZE)) CHECK(st_ == KPLM_EINVAL); \
        else if (must_succeed) CHECK(st_ == KPLM_OK);                                   \
        if (!((flags) & F_NULL_OUT)) {                                                  \
            if (st_ == KPLM_OK) {                                                       \
                CHECK(out_.export_snapshots != NULL);                                   \
                dispose(&out_, (dispose_how));                                          \
            } else {                                                                    \
                CHECK(is_zero_sink(&out_));                                             \
            }                                                                           \
        }                                                                               \
    } while (0)

/* A struct_size the constructors refuse without reading past the struct:
 * no layout (0 is the 1.0 one), not whole fields, or over the 1 KiB bound
 * (a larger multiple of 8 would be a newer layout, read to its end). */
static uint32_t bad_size(uint32_t good) {
    static const uint32_t sizes[4] = {4, 12, 1u << 31, UINT32_MAX};
    uint8_t v = u8();
    uint32_t s = v < 192 ? sizes[v & 3] : good + 1 + (v & 15);
    return (s - good) % 8 == 0 ? s + 1 : s;
}

static void run_record(void) {
    uint8_t kind = u8() % 5, how = u8(), flags = u8();
    int fields = flags & F_SET_FIELDS;
    switch (kind) {
    case 0: {
        kplm_dogstatsd_config c;
        kplm_dogstatsd_config_init(&c);
        const char *tags[MAX_TAGS];
        if (fields) {
            c.host = get_str();
            c.port = get_port();
            c.prefix = get_str();
            uint8_t n = u8();
            c.tag_count = n % (MAX_TAGS + 1);
            for (size_t i = 0; i < c.tag_count; i++) tags[i] = get_str();
            c.tags = (n & 0x80) ? NULL : tags; /* NULL with a count > 0 must be refused */
            uint8_t m = u8();
            c.max_datagram_bytes = m < 128 ? (uint32_t[]){0, 63, 64, 1432, 65507, 65508, 1 << 20, UINT32_MAX}[m & 7]
                                           : u32();
        }
        if (flags & F_BAD_SIZE) c.struct_size = bad_size(c.struct_size);
        CONSTRUCT(kplm_sink_dogstatsd, &c, flags, !fields, how);
        break;
    }
    case 1: {
        kplm_emf_config c;
        kplm_emf_config_init(&c);
        if (fields) {
            uint8_t d = u8();
            c.destination = (kplm_emf_destination)(d < 200 ? d % 5 : u32());
            c.path = get_str();
            c.host = get_str();
            c.port = get_port();
            c.cw_namespace = get_str();
            c.timeout_ms = get_double();
        }
        if (flags & F_BAD_SIZE) c.struct_size = bad_size(c.struct_size);
        CONSTRUCT(kplm_sink_emf, &c, flags, !fields, how);
        break;
    }
    case 2: {
        kplm_prometheus_config c;
        kplm_prometheus_config_init(&c);
        if (fields) {
            c.address = get_str();
            c.port = get_port();
            c.prefix = get_str();
        }
        if (flags & F_BAD_SIZE) c.struct_size = bad_size(c.struct_size);
        CONSTRUCT(kplm_sink_prometheus, &c, flags, !fields, how);
        break;
    }
    case 3: {
        kplm_otlp_config c;
        kplm_otlp_config_init(&c);
        if (fields) {
            c.endpoint = get_str();
            c.timeout_ms = get_double();
            c.max_retries = u8() < 200 ? u8() % 8 : u32();
            c.service_name = get_str();
        }
        if (flags & F_BAD_SIZE) c.struct_size = bad_size(c.struct_size);
        CONSTRUCT(kplm_sink_otlp, &c, flags, !fields, how);
        break;
    }
    default: {
        kplm_cloudwatch_config c;
        kplm_cloudwatch_config_init(&c);
        c.region = "us-east-1";
        if (fields) {
            c.region = get_str();
            c.endpoint = get_str();
            c.cw_namespace = get_str();
            c.access_key_id = get_str();
            c.secret_access_key = get_str();
            c.session_token = get_str();
            c.profile = get_str();
            c.timeout_ms = get_double();
            c.max_retries = u8() < 200 ? u8() % 8 : u32();
        }
        if (flags & F_BAD_SIZE) c.struct_size = bad_size(c.struct_size);
        CONSTRUCT(kplm_sink_cloudwatch, &c, flags, !fields, how);
        break;
    }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* The CloudWatch constructor looks for a region and a profile here. */
    static const char *const unset[] = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                                        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"};
    for (size_t i = 0; i < sizeof unset / sizeof *unset; i++) unsetenv(unset[i]);
    setenv("AWS_CONFIG_FILE", "/nonexistent/kplm-fuzz/config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kplm-fuzz/credentials", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int initialised;
    if (!initialised) {
        /* Also when replayed without libFuzzer (replay_main.c). */
        LLVMFuzzerInitialize(NULL, NULL);
        initialised = 1;
    }
    in_begin(data, size);
    /* NULL is ignored by every config initialiser. */
    kplm_dogstatsd_config_init(NULL);
    kplm_emf_config_init(NULL);
    kplm_prometheus_config_init(NULL);
    kplm_otlp_config_init(NULL);
    kplm_cloudwatch_config_init(NULL);
    for (int i = 0; i < MAX_RECORDS && in_more(); i++) run_record();
    return 0;
}
