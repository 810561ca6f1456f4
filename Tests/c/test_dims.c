/* Free-form dimensions (SPEC §5): kplm_put_dims, kplm_metric_get_dims and
 * kplm_query_dims. A key is a name plus a set of (name, value) pairs: the
 * same pairs in any order are one key, kplm_put is the case of "stream",
 * "shard" and "error_code", reported order is those three then the others
 * bytewise, SUMMARY drops "shard" and "error_code", and a put of a known key
 * through kplm_put_dims allocates nothing. */
#define _GNU_SOURCE
#include "test_support.h"

#include <errno.h>
#include <string.h>

#define D(n, v) ((kplm_dimension){(n), (v)})
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Allocations of this thread, counted by wrappers of the allocator's entry
 * points (glibc's __libc_* underneath); libkplm.so's calls to malloc reach
 * them through the dynamic linker. Not under a sanitizer, whose runtime
 * owns these names. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef COUNTS_ALLOCATIONS
#define COUNTS_ALLOCATIONS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static _Thread_local long allocations;
void *malloc(size_t n) { allocations++; return __libc_malloc(n); }
void *calloc(size_t n, size_t size) { allocations++; return __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { allocations++; return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t alignment, size_t n) { allocations++; return __libc_memalign(alignment, n); }
void *aligned_alloc(size_t alignment, size_t n) { allocations++; return __libc_memalign(alignment, n); }
int posix_memalign(void **out, size_t alignment, size_t n) {
    allocations++;
    void *p = __libc_memalign(alignment, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
#endif

static kplm_manager *new_manager(kplm_level level, tclock *clk) {
    kplm_config cfg = test_config(level, clk);
    cfg.upload_interval_ms = 3600e3;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    return m;
}

static uint64_t query_count(kplm_manager *m, const char *name, const kplm_dimension *dims, size_t n) {
    kplm_statistics st;
    CHECK_OK(kplm_query_dims(m, name, dims, n, KPLM_CUMULATIVE, &st));
    return st.count;
}

static size_t key_count(kplm_manager *m) {
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    size_t n = l.n;
    tsnap_list_clear(&l);
    return n;
}

static void any_order_is_one_key(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    kplm_dimension a[] = {D("host", "h1"), D("az", "use1-az1"), D("app", "orders")};
    kplm_dimension b[] = {D("app", "orders"), D("host", "h1"), D("az", "use1-az1")};
    kplm_dimension c[] = {D("az", "use1-az1"), D("app", "orders"), D("host", "h1")};
    for (int i = 0; i < 3; i++) {   /* twice each: the second through the index */
        CHECK_OK(kplm_put_dims(m, "Requests", 1, a, COUNT(a)));
        CHECK_OK(kplm_put_dims(m, "Requests", 2, b, COUNT(b)));
    }
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get_dims(m, "Requests", c, COUNT(c), &h));
    CHECK(h != NULL);
    CHECK_OK(kplm_metric_put(h, 4));
    kplm_statistics st;
    CHECK_OK(kplm_query_dims(m, "Requests", c, COUNT(c), KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 7);
    CHECK_DEQ(st.sum, 13);
    CHECK(key_count(m) == 1);
    /* Names and values are not interchangeable, nor split differently. */
    kplm_dimension swapped[] = {D("ab", "c")}, split[] = {D("a", "bc")}, other[] = {D("c", "ab")};
    CHECK_OK(kplm_put_dims(m, "R", 1, swapped, 1));
    CHECK_OK(kplm_put_dims(m, "R", 1, split, 1));
    CHECK_OK(kplm_put_dims(m, "R", 1, other, 1));
    CHECK_OK(kplm_put_dims(m, "R", 1, split, 1));
    CHECK_U64(query_count(m, "R", split, 1), 2);
    CHECK_U64(query_count(m, "R", swapped, 1), 1);
    CHECK(key_count(m) == 4);
    kplm_free(m);
}

static void kplm_put_is_the_case_of_three_names(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    kplm_dimension three[] = {D("error_code", "Throttled"), D("shard", "shardId-1"), D("stream", "orders")};
    for (int i = 0; i < 2; i++) {
        CHECK_OK(kplm_put(m, "UserRecordsPut", 1, "orders", "shardId-1", "Throttled"));
        CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 2, three, COUNT(three)));
    }
    kplm_statistics st;
    CHECK_OK(kplm_query(m, "UserRecordsPut", "orders", "shardId-1", "Throttled", KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 4);
    CHECK_DEQ(st.sum, 6);
    /* An absent value (NULL or "") is an absent pair. */
    kplm_dimension with_absent[] = {D("stream", "orders"), D("shard", NULL), D("az", "")};
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, with_absent, COUNT(with_absent)));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1, "orders", NULL, NULL));
    CHECK_OK(kplm_query(m, "UserRecordsPut", "orders", NULL, NULL, KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, 2);
    /* No pairs at all; dims may then be NULL. */
    CHECK_OK(kplm_put_dims(m, "Bare", 1, NULL, 0));
    CHECK_OK(kplm_put(m, "Bare", 1, NULL, NULL, NULL));
    CHECK_U64(query_count(m, "Bare", NULL, 0), 2);
    CHECK(key_count(m) == 3);
    kplm_free(m);
}

static void reported_order(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    /* Bytewise: "Zone" (0x5A) < "app" < "host" < "zz" < "z\xC3\xA9". */
    kplm_dimension dims[] = {D("z\xC3\xA9", "1"), D("host", "h"), D("error_code", "E"), D("app", "a"),
                             D("Zone", "z"), D("stream", "s"), D("zz", "2"), D("shard", "sh")};
    CHECK_OK(kplm_put_dims(m, "Requests", 1, dims, COUNT(dims)));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    const char *names[] = {"stream", "shard", "error_code", "Zone", "app", "host", "zz", "z\xC3\xA9"};
    const char *values[] = {"s", "sh", "E", "z", "a", "h", "2", "1"};
    CHECK(l.v[0].ndims == COUNT(names));
    for (size_t i = 0; i < COUNT(names) && i < l.v[0].ndims; i++) {
        CHECK_STR(l.v[0].dim_name[i], names[i]);
        CHECK_STR(l.v[0].dim_value[i], values[i]);
    }
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void limits_and_errors(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    char names[KPLM_DIMENSIONS_MAX + 1][8];
    kplm_dimension wide[KPLM_DIMENSIONS_MAX + 1];
    for (int i = 0; i <= KPLM_DIMENSIONS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "d%02d", i);
        wide[i] = D(names[i], "v");
    }
    CHECK_OK(kplm_put_dims(m, "Wide", 1, wide, KPLM_DIMENSIONS_MAX));
    CHECK_OK(kplm_put_dims(m, "Wide", 1, wide, KPLM_DIMENSIONS_MAX));
    CHECK_ST(kplm_put_dims(m, "Wide", 1, wide, KPLM_DIMENSIONS_MAX + 1), KPLM_EINVAL);
    wide[KPLM_DIMENSIONS_MAX].value = NULL;   /* absent, still a 31st pair */
    CHECK_ST(kplm_put_dims(m, "Wide", 1, wide, KPLM_DIMENSIONS_MAX + 1), KPLM_EINVAL);
    CHECK_ST(kplm_put_dims(m, "Wide", 1, NULL, 1), KPLM_EINVAL);
    CHECK_ST(kplm_put_dims(m, "Wide", 1, wide, (size_t)-1), KPLM_EINVAL);
    CHECK_U64(query_count(m, "Wide", wide, KPLM_DIMENSIONS_MAX), 2);

    char long_name[KPLM_NAME_MAX + 2], long_value[KPLM_DIMENSION_VALUE_MAX + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    kplm_dimension bad[][2] = {
        {D(NULL, "v"), D("b", "v")},            /* NULL name */
        {D("", "v"), D("b", "v")},              /* empty name */
        {D(long_name, "v"), D("b", "v")},       /* 256-byte name */
        {D("a", long_value), D("b", "v")},      /* 1025-byte value */
        {D("a", "1"), D("a", "2")},             /* repeated name */
        {D("a", "1"), D("a", "1")},             /* repeated pair */
        {D("a", NULL), D("a", "1")},            /* repeated, the first absent */
        {D("stream", "s"), D("stream", "")},    /* one of the three, repeated */
        {D("a\xC3", "v"), D("b", "v")},         /* invalid UTF-8 name */
        {D("a", "\xFF"), D("b", "v")},          /* invalid UTF-8 value */
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        for (int twice = 0; twice < 2; twice++) {   /* a refused call leaves nothing to find */
            CHECK_MSG(kplm_put_dims(m, "Bad", 1, bad[i], 2) == KPLM_EINVAL, "bad[%zu] put", i);
        }
        kplm_metric *h = (kplm_metric *)&clk;
        CHECK_MSG(kplm_metric_get_dims(m, "Bad", bad[i], 2, &h) == KPLM_EINVAL && h == NULL, "bad[%zu] get", i);
        kplm_statistics st;
        CHECK_MSG(kplm_query_dims(m, "Bad", bad[i], 2, KPLM_CUMULATIVE, &st) == KPLM_EINVAL, "bad[%zu] query", i);
    }
    long_name[KPLM_NAME_MAX] = '\0';
    long_value[KPLM_DIMENSION_VALUE_MAX] = '\0';
    kplm_dimension longest[] = {D(long_name, long_value)};
    CHECK_OK(kplm_put_dims(m, "Long", 1, longest, 1));
    kplm_dimension one[] = {D("a", "1")};
    CHECK_ST(kplm_put_dims(NULL, "Bad", 1, one, 1), KPLM_EINVAL);
    CHECK_ST(kplm_put_dims(m, NULL, 1, one, 1), KPLM_EINVAL);
    CHECK_ST(kplm_put_dims(m, "", 1, one, 1), KPLM_EINVAL);
    CHECK_ST(kplm_put_dims(m, "Bad", 0.0 / 0.0, one, 1), KPLM_EINVAL);
    CHECK_ST(kplm_metric_get_dims(m, "Bad", one, 1, NULL), KPLM_EINVAL);
    CHECK(key_count(m) == 2);   /* Wide and Long */
    kplm_free(m);
}

static void summary_keeps_the_free_form_pairs(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_SUMMARY, &clk);
    kplm_dimension a[] = {D("stream", "s"), D("shard", "sh1"), D("error_code", "E"), D("host", "h")};
    kplm_dimension b[] = {D("host", "h"), D("stream", "s"), D("shard", "sh2")};
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, a, COUNT(a)));
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, b, COUNT(b)));
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, b, COUNT(b)));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_U64(l.v[0].count, 3);
    CHECK(l.v[0].ndims == 2);
    CHECK_STR(l.v[0].dim_name[0], "stream");
    CHECK_STR(l.v[0].dim_name[1], "host");
    tsnap_list_clear(&l);
    kplm_free(m);

    m = new_manager(KPLM_LEVEL_NONE, &clk);
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, a, COUNT(a)));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get_dims(m, "UserRecordsPut", a, COUNT(a), &h));
    CHECK_OK(kplm_metric_put(h, 1));
    CHECK(key_count(m) == 0);
    kplm_free(m);
}

static void exported_exactly_once(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    kplm_dimension a[] = {D("region", "eu"), D("host", "h")}, b[] = {D("host", "h"), D("region", "eu")};
    for (int i = 1; i <= 10; i++) CHECK_OK(kplm_put_dims(m, "Latency", i, i % 2 ? a : b, 2));
    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_put_dims(m, "Latency", 100, a, 2));
    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_flush(m));
    const tacc *acc = msink_find_acc(&ms, "Latency|host=h|region=eu");
    CHECK(acc != NULL);
    if (acc) {
        CHECK_U64(acc->count, 11);
        CHECK_DEQ(acc->sum, 155);
        CHECK_DEQ(acc->min, 1);
        CHECK_DEQ(acc->max, 100);
    }
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    msink_destroy(&ms);
}

/* With a granularity, free-form dimensions attach at the global level
 * (every line) unless kplm_set_dimension_granularity says otherwise. */
static void rollups_attach_them_where_configured(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    cfg.upload_interval_ms = 3600e3;
    cfg.granularity = KPLM_GRANULARITY_SHARD;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_dimension_granularity(m, "rack", KPLM_GRANULARITY_SHARD));
    CHECK_ST(kplm_set_dimension_granularity(m, "rack", KPLM_GRANULARITY_NONE), KPLM_EINVAL);
    CHECK_ST(kplm_set_dimension_granularity(m, "", KPLM_GRANULARITY_SHARD), KPLM_EINVAL);
    CHECK_ST(kplm_set_dimension_granularity(m, NULL, KPLM_GRANULARITY_SHARD), KPLM_EINVAL);
    kplm_dimension dims[] = {D("stream", "s"), D("shard", "sh1"), D("rack", "r1"), D("host", "h")};
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 5, dims, COUNT(dims)));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 3);   /* name, stream, shard lines */
    const char *want[3][5] = {
        {"host", NULL},
        {"host", "StreamName", NULL},
        {"host", "StreamName", "ShardId", "rack", NULL},
    };
    for (size_t i = 0; i < l.n && i < 3; i++) {
        size_t n = 0;
        while (want[i][n]) n++;
        CHECK_MSG(l.v[i].ndims == n, "line %zu has %zu dimensions", i, l.v[i].ndims);
        for (size_t k = 0; k < n && k < l.v[i].ndims; k++) CHECK_STR(l.v[i].dim_name[k], want[i][k]);
        CHECK_U64(l.v[i].count, 1);
    }
    tsnap_list_clear(&l);
    CHECK_OK(kplm_start(m));
    CHECK_ST(kplm_set_dimension_granularity(m, "host", KPLM_GRANULARITY_STREAM), KPLM_ESTATE);
    kplm_free(m);
}

/* The Prometheus sink refuses a new key whose dimension names become one
 * label name (in the key, or against a key seen before). Not started: the
 * check needs no server. */
static void prometheus_refuses_names_that_become_one_label(void) {
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    kplm_prometheus_config pc;
    kplm_prometheus_config_init(&pc);
    kplm_sink s;
    CHECK_OK(kplm_sink_prometheus(&pc, &s));
    CHECK_OK(kplm_set_sink(m, &s));
    kplm_dimension both[] = {D("a-b", "1"), D("a_b", "2")}, first[] = {D("zone.id", "1")},
                   second[] = {D("zone_id", "1")};
    CHECK_ST(kplm_put_dims(m, "R", 1, both, 2), KPLM_EINVAL);
    CHECK_OK(kplm_put_dims(m, "R", 1, first, 1));
    CHECK_OK(kplm_put_dims(m, "R", 1, first, 1));
    CHECK_ST(kplm_put_dims(m, "S", 1, second, 1), KPLM_EINVAL);
    kplm_metric *h = NULL;
    CHECK_ST(kplm_metric_get_dims(m, "S", second, 1, &h), KPLM_EINVAL);
    CHECK(key_count(m) == 1);
    kplm_free(m);
}

/* A put of a known key through kplm_put_dims allocates nothing (nor does
 * kplm_put, the control: the same wrappers see the allocations of a put
 * that creates a key). */
static void a_known_key_allocates_nothing(void) {
#if COUNTS_ALLOCATIONS
    tclock clk;
    tclock_set(&clk, 100);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    kplm_dimension dims[] = {D("stream", "orders"), D("shard", "shardId-000000000001"), D("host", "ip-10-0-0-1")};
    long before = allocations;
    CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, dims, COUNT(dims)));
    CHECK_MSG(allocations > before, "creating a key allocated nothing: are the wrappers reached?");
    for (int i = 0; i < 100; i++) CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, dims, COUNT(dims)));
    before = allocations;
    for (int i = 0; i < 100000; i++) CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, dims, COUNT(dims)));
    CHECK_MSG(allocations == before, "100,000 puts of a known key allocated %ld times", allocations - before);
    kplm_dimension reordered[] = {dims[2], dims[0], dims[1]};
    for (int i = 0; i < 100; i++) CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, reordered, COUNT(reordered)));
    before = allocations;
    for (int i = 0; i < 100000; i++) CHECK_OK(kplm_put_dims(m, "UserRecordsPut", 1, reordered, COUNT(reordered)));
    CHECK_MSG(allocations == before, "puts in another order allocated %ld times", allocations - before);
    CHECK_U64(query_count(m, "UserRecordsPut", dims, COUNT(dims)), 200201);
    kplm_free(m);
#else
    printf("  (not counted under a sanitizer)\n");
#endif
}

int main(void) {
    int failures = 0;
    RUN(any_order_is_one_key);
    RUN(kplm_put_is_the_case_of_three_names);
    RUN(reported_order);
    RUN(limits_and_errors);
    RUN(summary_keeps_the_free_form_pairs);
    RUN(exported_exactly_once);
    RUN(rollups_attach_them_where_configured);
    RUN(prometheus_refuses_names_that_become_one_label);
    RUN(a_known_key_allocates_nothing);
    return failures != 0;
}
