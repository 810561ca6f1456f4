/* Distribution metrics (SPEC §6) through the C ABI: kplm_set_distribution
 * and kplm_query_quantile. Every quantile is checked against the exact
 * sample quantile (rank floor(q·(n−1)) of the sorted observations) on the
 * issue's data shapes, over the last seconds and cumulatively, with puts
 * from two threads; and every error the header lists. */
#define _GNU_SOURCE
#include "test_support.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define N 20000

static const double quantiles[] = {0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1};

/* SplitMix64, uniform in (0, 1): a fixed sequence per seed. */
static uint64_t rng_state;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unit(void) { return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The data shapes: lognormal, uniform over 12 decades, signed with zeros,
 * constant, and the edges of the double range. Returns the count. */
static size_t fill(int shape, double *v) {
    rng_state = 1000 + (uint64_t)shape;
    size_t n = N;
    for (size_t i = 0; i < n; i++) {
        switch (shape) {
        case 0: v[i] = exp(1 + 2 * sqrt(-2 * log(unit())) * cos(2 * M_PI * unit())); break;
        case 1: v[i] = pow(10, -6 + 12 * unit()); break;
        case 2: v[i] = i % 7 == 0 ? (i % 14 ? -0.0 : 0.0) : ((next_u64() & 1) ? -1 : 1) * pow(10, -3 + 6 * unit()); break;
        case 3: v[i] = 0.125; break;
        default: {
            static const double edges[] = {5e-324, -5e-324, 1e-320, 2.2250738585072014e-308, 1.7976931348623157e308,
                                           -1.7976931348623157e308, 1e300, 0.0, -0.0, 1.0};
            v[i] = i < 10 ? edges[i] : (unit() - 0.5) * 1e-310;
        }
        }
    }
    return n;
}

typedef struct {
    kplm_manager *m;
    const double *v;
    size_t from, to;
} put_job;

static void *put_range(void *arg) {
    put_job *j = arg;
    const kplm_dimension dims[] = {{"stream", "orders"}};
    for (size_t i = j->from; i < j->to; i++) CHECK_OK(kplm_put_dims(j->m, "RequestTime", j->v[i], dims, 1));
    return NULL;
}

/* A manager at the detailed level, its window 10 s, exporting on flush
 * only, with `name` (unless NULL) a distribution metric at `accuracy`;
 * `clk` NULL: the system clock. */
static kplm_manager *new_manager(tclock *clk, const char *name, double accuracy) {
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    cfg.window_seconds = 10;
    cfg.upload_interval_ms = 3600e3;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    if (name) CHECK_OK(kplm_set_distribution(m, name, accuracy));
    return m;
}

static void quantiles_within_the_accuracy(void) {
    static double v[N], sorted[N];
    const double accuracies[] = {0.01, 0.001};
    for (int shape = 0; shape < 5; shape++) {
        for (size_t ai = 0; ai < 2; ai++) {
            double a = accuracies[ai];
            if (shape == 4 && a < 0.0056) continue;   /* the bucket cap spans less than every double there */
            size_t n = fill(shape, v);
            memcpy(sorted, v, sizeof v);
            qsort(sorted, n, sizeof *sorted, cmp_double);
            tclock clk;
            tclock_set(&clk, 1000);
            kplm_manager *m = new_manager(&clk, "RequestTime", a);
            /* Two threads, then over two seconds. */
            put_job jobs[2] = {{m, v, 0, n / 2}, {m, v, n / 2, n}};
            pthread_t t[2];
            for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, put_range, &jobs[i]) == 0);
            for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
            const kplm_dimension dims[] = {{"stream", "orders"}};
            kplm_statistics st;
            CHECK_OK(kplm_query_dims(m, "RequestTime", dims, 1, KPLM_CUMULATIVE, &st));
            CHECK_U64(st.count, n);
            CHECK(st.min == sorted[0] && st.max == sorted[n - 1]);
            for (size_t qi = 0; qi < sizeof quantiles / sizeof *quantiles; qi++) {
                double q = quantiles[qi], x = sorted[(size_t)floor(q * (double)(n - 1))];
                const uint32_t spans[] = {KPLM_CUMULATIVE, 1, 10};
                for (int si = 0; si < 3; si++) {
                    double got = NAN;
                    CHECK_OK(kplm_query_quantile(m, "RequestTime", dims, 1, spans[si], q, &got));
                    CHECK_MSG(fabs(got - x) <= a * fabs(x), "shape %d a=%g q=%g seconds=%u: got %.17g, exact %.17g",
                              shape, a, q, spans[si], got, x);
                }
            }
            /* Seconds after, the last second holds nothing; the window still all. */
            tclock_advance(&clk, 3);
            double got = 0;
            CHECK_OK(kplm_query_quantile(m, "RequestTime", dims, 1, 1, 0.5, &got));
            CHECK(isnan(got));
            CHECK_OK(kplm_query_quantile(m, "RequestTime", dims, 1, 10, 0.5, &got));
            CHECK(!isnan(got));
            kplm_free(m);
        }
    }
}

/* What the export callback saw of "RequestTime": the last attempt's
 * statistics and buckets, and whether to fail it. */
typedef struct {
    int attempts, fail_next;
    uint64_t count, bucket_total;
    size_t bucket_count, plain_buckets;
    double p50, min, max;
    int ascending;
} seen_export;

static int capture_export(void *user_data, const kplm_snapshot *snaps, size_t n) {
    seen_export *seen = user_data;
    for (size_t i = 0; i < n; i++) {
        const kplm_snapshot *s = &snaps[i];
        if (strcmp(s->name, "RequestTime") != 0) {
            seen->plain_buckets += s->bucket_count + (s->buckets != NULL);
            continue;
        }
        seen->attempts++;
        seen->count = s->count;
        seen->bucket_count = s->bucket_count;
        seen->bucket_total = 0;
        seen->ascending = 1;
        seen->min = s->min, seen->max = s->max;
        /* The median from the buckets: rank floor(0.5·(n−1)). */
        uint64_t rank = (s->count - 1) / 2, before = 0;
        seen->p50 = NAN;
        for (size_t b = 0; b < s->bucket_count; b++) {
            if (b > 0 && !(s->buckets[b - 1].value < s->buckets[b].value)) seen->ascending = 0;
            if (isnan(seen->p50) && rank < before + s->buckets[b].count) seen->p50 = s->buckets[b].value;
            before += s->buckets[b].count;
        }
        seen->bucket_total = before;
    }
    if (seen->fail_next) { seen->fail_next = 0; return -1; }
    return 0;
}

/* A sink gets the buckets with the statistics: counts adding up, values
 * ascending and within the accuracy; kept and merged after a failed
 * export; never for a plain metric. */
static void exports_carry_the_buckets(void) {
    tclock clk;
    tclock_set(&clk, 1000);
    kplm_manager *m = new_manager(&clk, "RequestTime", 0.01);
    seen_export seen = {0};
    kplm_sink sink = {0};
    sink.user_data = &seen;
    sink.export_snapshots = capture_export;
    CHECK_OK(kplm_set_sink(m, &sink));
    CHECK_OK(kplm_start(m));
    for (int i = 1; i <= 1000; i++) CHECK_OK(kplm_put(m, "RequestTime", i, "s", NULL, NULL));
    CHECK_OK(kplm_put(m, "Plain", 1, NULL, NULL, NULL));
    seen.fail_next = 1;
    CHECK_ST(kplm_flush(m), KPLM_ESINK);
    CHECK_U64(seen.count, 1000);
    tclock_advance(&clk, 1);
    for (int i = 1001; i <= 2001; i++) CHECK_OK(kplm_put(m, "RequestTime", i, "s", NULL, NULL));
    CHECK_OK(kplm_flush(m));
    CHECK(seen.attempts == 2);
    CHECK_U64(seen.count, 2001);
    CHECK_U64(seen.bucket_total, 2001);
    CHECK(seen.bucket_count > 100 && seen.ascending);
    CHECK_MSG(fabs(seen.p50 - 1001) <= 0.01 * 1001, "p50 from the buckets: %.17g", seen.p50);
    CHECK(seen.plain_buckets == 0);
    CHECK_OK(kplm_flush(m));
    CHECK(seen.attempts == 2);   /* exported once */
    kplm_free(m);
}

/* With the system clock the puts take the cells' common case: two threads
 * on one handle, checked against the exact sample as above. */
static void lock_free_puts_with_the_system_clock(void) {
    static double v[N], sorted[N];
    size_t n = fill(1, v);
    memcpy(sorted, v, sizeof v);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    kplm_manager *m = new_manager(NULL, "RequestTime", 0.01);
    put_job jobs[2] = {{m, v, 0, n / 2}, {m, v, n / 2, n}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, put_range, &jobs[i]) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    const kplm_dimension dims[] = {{"stream", "orders"}};
    for (size_t qi = 0; qi < sizeof quantiles / sizeof *quantiles; qi++) {
        double q = quantiles[qi], x = sorted[(size_t)floor(q * (double)(n - 1))], got = NAN;
        CHECK_OK(kplm_query_quantile(m, "RequestTime", dims, 1, KPLM_CUMULATIVE, q, &got));
        CHECK_MSG(fabs(got - x) <= 0.01 * fabs(x), "q=%g: got %.17g, exact %.17g", q, got, x);
    }
    kplm_statistics st;
    CHECK_OK(kplm_query_dims(m, "RequestTime", dims, 1, KPLM_CUMULATIVE, &st));
    CHECK_U64(st.count, n);
    kplm_free(m);
}

/* kplm_config.kpl_distributions: the KPL's latency metrics at 1%. */
static void the_kpl_list_in_the_config(void) {
    tclock clk;
    tclock_set(&clk, 1000);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    cfg.kpl_distributions = 1;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    for (int i = 1; i <= 100; i++) {
        CHECK_OK(kplm_put(m, KPLM_METRIC_BUFFERING_TIME, i, "s", NULL, NULL));
        CHECK_OK(kplm_put(m, KPLM_METRIC_REQUEST_TIME, 2 * i, "s", NULL, NULL));
    }
    const kplm_dimension dims[] = {{"stream", "s"}};
    double p50 = 0;
    CHECK_OK(kplm_query_quantile(m, KPLM_METRIC_BUFFERING_TIME, dims, 1, KPLM_CUMULATIVE, 0.5, &p50));
    CHECK_MSG(fabs(p50 - 50) <= 0.5, "p50 %g", p50);
    CHECK_OK(kplm_query_quantile(m, KPLM_METRIC_REQUEST_TIME, dims, 1, KPLM_CUMULATIVE, 0.5, &p50));
    CHECK_MSG(fabs(p50 - 100) <= 1, "p50 %g", p50);
    CHECK_ST(kplm_query_quantile(m, KPLM_METRIC_USER_RECORDS_PUT, dims, 1, KPLM_CUMULATIVE, 0.5, &p50), KPLM_EINVAL);
    CHECK_OK(kplm_set_distribution(m, "Other", 0.05));   /* more may be added */
    kplm_free(m);
    /* Default: none. */
    kplm_config plain;
    kplm_config_init(&plain);
    CHECK(plain.kpl_distributions == 0);
    plain.level = KPLM_LEVEL_DETAILED;
    CHECK_OK(kplm_new(&plain, &m));
    CHECK_ST(kplm_query_quantile(m, KPLM_METRIC_BUFFERING_TIME, NULL, 0, KPLM_CUMULATIVE, 0.5, &p50), KPLM_EINVAL);
    kplm_free(m);
}

static void errors_and_empty_answers(void) {
    tclock clk;
    tclock_set(&clk, 1000);
    kplm_manager *m = new_manager(&clk, NULL, 0);
    double out = 0;
    CHECK_ST(kplm_set_distribution(NULL, "A", 0.01), KPLM_EINVAL);
    CHECK_ST(kplm_set_distribution(m, NULL, 0.01), KPLM_EINVAL);
    CHECK_ST(kplm_set_distribution(m, "", 0.01), KPLM_EINVAL);
    CHECK_ST(kplm_set_distribution(m, "A", 0), KPLM_EINVAL);
    CHECK_ST(kplm_set_distribution(m, "A", 0.11), KPLM_EINVAL);
    CHECK_ST(kplm_set_distribution(m, "A", NAN), KPLM_EINVAL);
    CHECK_ST(kplm_set_distribution(m, KPLM_METRIC_REFUSED, 0.01), KPLM_EINVAL);
    CHECK_OK(kplm_set_distribution(m, "A", 0.1));
    CHECK_OK(kplm_set_distribution(m, "A", 0.02));   /* again: the new accuracy */
    CHECK_OK(kplm_query_quantile(m, "A", NULL, 0, KPLM_CUMULATIVE, 0.5, &out));
    CHECK(isnan(out));                              /* no observation */
    out = 0;
    CHECK_ST(kplm_query_quantile(m, "Plain", NULL, 0, KPLM_CUMULATIVE, 0.5, &out), KPLM_EINVAL);
    CHECK(isnan(out));
    CHECK_ST(kplm_query_quantile(m, "A", NULL, 0, KPLM_CUMULATIVE, 1.01, &out), KPLM_EINVAL);
    CHECK_ST(kplm_query_quantile(m, "A", NULL, 0, KPLM_CUMULATIVE, NAN, &out), KPLM_EINVAL);
    CHECK_ST(kplm_query_quantile(m, "A", NULL, 0, 11, 0.5, &out), KPLM_EINVAL);
    CHECK_ST(kplm_query_quantile(m, "A", NULL, 0, KPLM_CUMULATIVE, 0.5, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_query_quantile(NULL, "A", NULL, 0, KPLM_CUMULATIVE, 0.5, &out), KPLM_EINVAL);
    CHECK_OK(kplm_put(m, "A", 3, NULL, NULL, NULL));
    CHECK_OK(kplm_query_quantile(m, "A", NULL, 0, KPLM_CUMULATIVE, 0.5, &out));
    CHECK_DEQ(out, 3);
    CHECK_OK(kplm_put(m, "B", 3, NULL, NULL, NULL));
    CHECK_ST(kplm_set_distribution(m, "B", 0.01), KPLM_ESTATE);   /* a key of that name exists */
    CHECK_OK(kplm_start(m));
    CHECK_ST(kplm_set_distribution(m, "C", 0.01), KPLM_ESTATE);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN_T(quantiles_within_the_accuracy, 120);
    RUN(lock_free_puts_with_the_system_clock);
    RUN(the_kpl_list_in_the_config);
    RUN(errors_and_empty_answers);
    RUN(exports_carry_the_buckets);
    return failures != 0;
}
