/*
 * Struct growth across versions (kplm.h "Struct growth", SPEC §4). This file
 * is compiled twice, each time against another kplm.h, and run against the
 * library of this tree:
 *  - abi_v1: against the frozen 1.0 header (Tests/abi/v1.0/kplm.h): a
 *    program built for 1.0 on this (and every later) library;
 *  - abi_next (KPLM_ABI_NEXT): against a header generated from
 *    include/kplm.h with one more trailing field, abi_next_field, in every
 *    struct (make_next_header.py): a program of a later version on this
 *    library, which must see zeros in the field it does not know and must
 *    have non-zero values in it refused.
 * abi_v1_on_next runs the first against a library built with the generated
 * header (a later library, 1.0 caller), when that library is built.
 * Each check places the caller's struct against an inaccessible page where
 * it matters, so a read or write past the caller's layout crashes.
 */
#include "test_support.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef KPLM_ABI_NEXT
#define NEXT_FIELD_IS_ZERO(p) ((p)->abi_next_field == 0)
#define SET_NEXT_FIELD(p, v) ((p)->abi_next_field = (v))
#else
#define NEXT_FIELD_IS_ZERO(p) 1
#define SET_NEXT_FIELD(p, v) ((void)(p), (void)(v))
#endif

/* ------------------------------------------------------------------------ */
/* Memory that ends where the caller's struct ends                           */
/* ------------------------------------------------------------------------ */

typedef struct {
    unsigned char *area;
    size_t page;
} fenced;

/* `size` bytes that end right before an inaccessible page. */
static void *fenced_alloc(fenced *f, size_t size) {
    f->page = (size_t)sysconf(_SC_PAGESIZE);
    f->area = mmap(NULL, 2 * f->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(f->area != MAP_FAILED);
    CHECK(mprotect(f->area + f->page, f->page, PROT_NONE) == 0);
    memset(f->area, 0xA5, f->page);
    return f->area + f->page - size;
}

static void fenced_free(fenced *f) { munmap(f->area, 2 * f->page); }

/* ------------------------------------------------------------------------ */
/* Config structs                                                            */
/* ------------------------------------------------------------------------ */

/* The init macro writes exactly sizeof the caller's struct (a write past it
 * would hit the fence) and sets struct_size to it. */
#define CHECK_INIT_FENCED(type, init)                                        \
    do {                                                                     \
        fenced f_;                                                           \
        type *c_ = fenced_alloc(&f_, sizeof(type));                          \
        init(c_);                                                            \
        CHECK_U64(c_->struct_size, sizeof(type));                            \
        CHECK(NEXT_FIELD_IS_ZERO(c_));                                       \
        fenced_free(&f_);                                                    \
    } while (0)

static void config_inits_write_the_callers_size(void) {
    CHECK_INIT_FENCED(kplm_config, kplm_config_init);
    CHECK_INIT_FENCED(kplm_dogstatsd_config, kplm_dogstatsd_config_init);
    CHECK_INIT_FENCED(kplm_emf_config, kplm_emf_config_init);
    CHECK_INIT_FENCED(kplm_prometheus_config, kplm_prometheus_config_init);
    CHECK_INIT_FENCED(kplm_otlp_config, kplm_otlp_config_init);
    CHECK_INIT_FENCED(kplm_cloudwatch_config, kplm_cloudwatch_config_init);
}

/* The exported kplm_config_init (what binaries built before 1.0 call, with
 * the 48-byte layout of SPEC §2) writes exactly that layout. */
static void pre_1_0_config_init_symbol(void) {
    size_t first = offsetof(kplm_config, export_timeout_ms);
    CHECK_U64(first, 6 * 8);
    fenced f;
    kplm_config *c = fenced_alloc(&f, first);
    (kplm_config_init)(c);
    CHECK_U64(c->struct_size, first);
    CHECK(c->level == KPLM_LEVEL_NONE && c->upload_interval_ms == 60000 && c->window_seconds == 60 &&
          c->clock == NULL && c->max_metrics == 100000);
    /* kplm_new reads it as that layout (not past its end). */
    c->level = KPLM_LEVEL_DETAILED;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(c, &m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1, "s", NULL, NULL));
    kplm_free(m);
    fenced_free(&f);
}

/* kplm_new reads exactly the caller's struct; 0 means the 1.0 layout, which
 * every later layout starts with. */
static void new_reads_the_callers_size(void) {
    fenced f;
    kplm_config *c = fenced_alloc(&f, sizeof(kplm_config));
    kplm_config_init(c);
    c->level = KPLM_LEVEL_DETAILED;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(c, &m));
    kplm_free(m);
    c->struct_size = 0;
    CHECK_OK(kplm_new(c, &m));
    kplm_free(m);
    /* A designated initializer (struct_size 0, fields left out zero: the
     * 1.0 fields whose zero is invalid are set). */
    kplm_config designated = {.level = KPLM_LEVEL_SUMMARY, .upload_interval_ms = 1000,
                              .window_seconds = 10, .max_metrics = 5, .export_timeout_ms = 1000};
    CHECK_OK(kplm_new(&designated, &m));
    kplm_free(m);
#ifdef KPLM_ABI_NEXT
    /* A field this library does not know, set: refused, nothing created. */
    c->struct_size = sizeof *c;
    c->abi_next_field = 1;
    m = (kplm_manager *)(uintptr_t)1;
    CHECK_ST(kplm_new(c, &m), KPLM_EINVAL);
    CHECK(m == NULL);
#endif
    fenced_free(&f);
}

/* Each sink constructor takes its config at the caller's size, 0 included,
 * and refuses a newer layout with an unknown field set. */
#define CHECK_SINK_CONFIG(type, init, ctor, setup)                           \
    do {                                                                     \
        fenced f_;                                                           \
        type *c_ = fenced_alloc(&f_, sizeof(type));                          \
        init(c_);                                                            \
        setup;                                                               \
        kplm_sink s_;                                                        \
        CHECK_OK(ctor(c_, &s_));                                             \
        kplm_sink_release(&s_);                                              \
        c_->struct_size = 0;                                                 \
        CHECK_OK(ctor(c_, &s_));                                             \
        kplm_sink_release(&s_);                                              \
        c_->struct_size = sizeof(type);                                      \
        SET_NEXT_FIELD(c_, 7);                                               \
        CHECK_ST(ctor(c_, &s_), NEXT_FIELD_IS_ZERO(c_) ? KPLM_OK : KPLM_EINVAL); \
        kplm_sink_release(&s_);                                              \
        fenced_free(&f_);                                                    \
    } while (0)

static void sink_configs_at_the_callers_size(void) {
    CHECK_SINK_CONFIG(kplm_dogstatsd_config, kplm_dogstatsd_config_init, kplm_sink_dogstatsd, (void)0);
    CHECK_SINK_CONFIG(kplm_emf_config, kplm_emf_config_init, kplm_sink_emf, (void)0);
    CHECK_SINK_CONFIG(kplm_prometheus_config, kplm_prometheus_config_init, kplm_sink_prometheus, (void)0);
    CHECK_SINK_CONFIG(kplm_otlp_config, kplm_otlp_config_init, kplm_sink_otlp, (void)0);
    CHECK_SINK_CONFIG(kplm_cloudwatch_config, kplm_cloudwatch_config_init, kplm_sink_cloudwatch,
                      (c_->region = "us-east-1", c_->access_key_id = "AKID", c_->secret_access_key = "SECRET"));
}

/* ------------------------------------------------------------------------ */
/* What callbacks are handed                                                 */
/* ------------------------------------------------------------------------ */

typedef struct {
    int exports, records, bad;
    uint64_t total;
    size_t snapshots;
} probe;

/* Checks every snapshot as this program's kplm_snapshot (s[i]). */
static int probe_export(void *user_data, const kplm_snapshot *s, size_t n) {
    probe *p = user_data;
    p->exports++;
    for (size_t i = 0; i < n; i++) {
        int ok = s[i].name != NULL && strcmp(s[i].name, "UserRecordsPut") == 0 && s[i].count >= 1 &&
                 s[i].sum == (double)s[i].count * 2 && s[i].min == 2 && s[i].max == 2 &&
                 s[i].dimension_count == 1 && strcmp(s[i].dimensions[0].name, "stream") == 0 &&
                 s[i].window_end > s[i].window_start && s[i].timestamp_unix > 1e9 && NEXT_FIELD_IS_ZERO(&s[i]);
        if (!ok) p->bad++;
        p->total += s[i].count;
        p->snapshots++;
    }
    return 0;
}

static void probe_record(void *user_data, const kplm_event *e) {
    probe *p = user_data;
    p->records++;
    if (e->name == NULL || strcmp(e->name, "UserRecordsPut") != 0 || e->value != 2 || e->dimension_count != 1 ||
        !NEXT_FIELD_IS_ZERO(e))
        p->bad++;
}

static int probe_visit(void *user_data, const kplm_snapshot *s) {
    return probe_export(user_data, s, 1);
}

static void callbacks_get_the_callers_layout(void) {
    tclock clock;
    tclock_set(&clock, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clock);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    probe p = {0};
    kplm_sink sink = {.user_data = &p, .export_snapshots = probe_export, .record = probe_record};
    CHECK_OK(kplm_set_sink(m, &sink));
    CHECK_OK(kplm_start(m));
    const char *streams[] = {"a", "b", "c"};
    for (int i = 0; i < 30; i++) CHECK_OK(kplm_put(m, "UserRecordsPut", 2, streams[i % 3], NULL, NULL));
    CHECK_OK(kplm_flush(m));
    CHECK(p.exports == 1 && p.snapshots == 3 && p.total == 30 && p.records == 30);
    CHECK_MSG(p.bad == 0, "%d snapshots or events not as this program laid them out", p.bad);

    probe visited = {0};
    CHECK_OK(kplm_snapshots(m, probe_visit, &visited));
    CHECK(visited.snapshots == 3 && visited.total == 30 && visited.bad == 0);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

/* kplm_set_sink reads exactly the caller's kplm_sink; a newer one with an
 * unknown field set is refused. */
static void set_sink_reads_the_callers_size(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    probe p = {0};
    fenced f;
    kplm_sink *sink = fenced_alloc(&f, sizeof(kplm_sink));
    memset(sink, 0, sizeof *sink);
    sink->user_data = &p;
    sink->export_snapshots = probe_export;
    CHECK_OK(kplm_set_sink(m, sink));
    SET_NEXT_FIELD(sink, 1);
    CHECK_ST(kplm_set_sink(m, sink), NEXT_FIELD_IS_ZERO(sink) ? KPLM_OK : KPLM_EINVAL);
    kplm_free(m);
    fenced_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Structs the caller hands in or gets back                                  */
/* ------------------------------------------------------------------------ */

static void query_writes_the_callers_size(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    for (int i = 1; i <= 4; i++) CHECK_OK(kplm_put(m, "RequestTime", i, "s", NULL, NULL));
    fenced f;
    kplm_statistics *st = fenced_alloc(&f, sizeof(kplm_statistics));
    CHECK_OK(kplm_query(m, "RequestTime", "s", NULL, NULL, KPLM_CUMULATIVE, st));
    CHECK(st->count == 4 && st->sum == 10 && st->min == 1 && st->max == 4 && NEXT_FIELD_IS_ZERO(st));
    memset(st, 0xA5, sizeof *st);
    CHECK_OK(kplm_query_name(m, "RequestTime", 1, st));
    CHECK(st->count == 4 && st->sum == 10 && NEXT_FIELD_IS_ZERO(st));
    kplm_free(m);
    fenced_free(&f);
}

typedef struct {
    int requests;
    size_t datums;
    int names_found;
} cw_probe;

static int cw_emit(void *user_data, const char *body, size_t body_len, size_t datums) {
    cw_probe *p = user_data;
    p->requests++;
    p->datums += datums;
    if (strlen(body) == body_len && strstr(body, "\"MetricName\":\"UserRecordsPut\"") &&
        strstr(body, "\"MetricName\":\"BufferingTime\""))
        p->names_found++;
    return 0;
}

/* kplm_cloudwatch_requests indexes the caller's array at the caller's stride
 * (and does not read a field it does not know: set here to garbage). */
static void cloudwatch_requests_at_the_callers_stride(void) {
    kplm_dimension dims[] = {{"stream", "orders"}};
    double now = test_wall_now();
    fenced f;
    kplm_snapshot *s = fenced_alloc(&f, 2 * sizeof(kplm_snapshot));
    memset(s, 0, 2 * sizeof(kplm_snapshot));
    const char *names[] = {"UserRecordsPut", "BufferingTime"};
    for (int i = 0; i < 2; i++) {
        s[i].name = names[i];
        s[i].count = 3;
        s[i].sum = 6;
        s[i].min = 1;
        s[i].max = 3;
        s[i].dimensions = dims;
        s[i].dimension_count = 1;
        s[i].window_start = 10;
        s[i].window_end = 11;
        s[i].timestamp_unix = now;
        SET_NEXT_FIELD(&s[i], 0xFFFFFFFFFFFFFFFFull);
    }
    cw_probe p = {0};
    size_t dropped = 99;
    CHECK_OK(kplm_cloudwatch_requests(s, 2, "KinesisProducerLibrary", now, cw_emit, &p, &dropped));
    CHECK(p.requests == 1 && p.datums == 2 && p.names_found == 1 && dropped == 0);
    fenced_free(&f);
}

int main(void) {
    int failures = 0;
    RUN(config_inits_write_the_callers_size);
    RUN(pre_1_0_config_init_symbol);
    RUN(new_reads_the_callers_size);
    RUN(sink_configs_at_the_callers_size);
    RUN(callbacks_get_the_callers_layout);
    RUN(set_sink_reads_the_callers_size);
    RUN(query_writes_the_callers_size);
    RUN(cloudwatch_requests_at_the_callers_stride);
    return failures ? 1 : 0;
}
