/* SPEC section 2, "bad input gets a status, never a crash": every case gets
 * its status, *out is NULL on failure, and a refused call records nothing. */
#include "test_support.h"

#include <float.h>
#include <math.h>
#include <string.h>

static kplm_metric *const METRIC_SENTINEL = (kplm_metric *)(uintptr_t)0x2000;

static int count_visit(void *ud, const kplm_snapshot *s) {
    (void)s;
    (*(int *)ud)++;
    return 0;
}

static int snapshot_count(kplm_manager *m) {
    int n = 0;
    CHECK_OK(kplm_snapshots(m, count_visit, &n));
    return n;
}

static kplm_manager *new_manager(kplm_level level) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = level;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK(m != NULL);
    return m;
}

/* Both kplm_put and kplm_metric_get refuse the key with `want`. */
static void refuse_key(kplm_manager *m, const char *name, const char *stream,
                       const char *shard, const char *ec, kplm_status want,
                       const char *what) {
    kplm_status st = kplm_put(m, name, 1.0, stream, shard, ec);
    CHECK_MSG(st == want, "kplm_put with %s returned %s, expected %s", what,
              test_status_name(st), test_status_name(want));
    kplm_metric *h = METRIC_SENTINEL;
    st = kplm_metric_get(m, name, stream, shard, ec, &h);
    CHECK_MSG(st == want, "kplm_metric_get with %s returned %s, expected %s", what,
              test_status_name(st), test_status_name(want));
    CHECK_MSG(h == NULL, "kplm_metric_get with %s left *out non-NULL", what);
}

static void accept_key(kplm_manager *m, const char *name, const char *stream,
                       const char *shard, const char *ec, const char *what) {
    kplm_status st = kplm_put(m, name, 1.0, stream, shard, ec);
    CHECK_MSG(st == KPLM_OK, "kplm_put with %s returned %s, expected KPLM_OK", what,
              test_status_name(st));
    kplm_metric *h = NULL;
    st = kplm_metric_get(m, name, stream, shard, ec, &h);
    CHECK_MSG(st == KPLM_OK, "kplm_metric_get with %s returned %s, expected KPLM_OK",
              what, test_status_name(st));
    CHECK_MSG(h != NULL, "kplm_metric_get with %s gave a NULL handle", what);
    CHECK_OK(kplm_metric_put(h, 2.0));
}

static int dummy_export(void *ud, const kplm_snapshot *s, size_t n) {
    (void)ud, (void)s, (void)n;
    return 0;
}

static int dummy_visit(void *ud, const kplm_snapshot *s) {
    (void)ud, (void)s;
    return 0;
}

static void null_manager(void) {
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.export_snapshots = dummy_export;
    CHECK_ST(kplm_set_sink(NULL, &sink), KPLM_EINVAL);
    CHECK_ST(kplm_start(NULL), KPLM_EINVAL);
    CHECK_ST(kplm_put(NULL, "UserRecordsPut", 1.0, NULL, NULL, NULL), KPLM_EINVAL);
    kplm_metric *h = METRIC_SENTINEL;
    CHECK_ST(kplm_metric_get(NULL, "UserRecordsPut", NULL, NULL, NULL, &h), KPLM_EINVAL);
    CHECK(h == NULL);
    CHECK_ST(kplm_metric_put(NULL, 1.0), KPLM_EINVAL);
    CHECK_ST(kplm_snapshots(NULL, dummy_visit, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_flush(NULL), KPLM_EINVAL);
    CHECK_ST(kplm_close(NULL), KPLM_EINVAL);
    kplm_free(NULL);
}

static void null_arguments(void) {
    kplm_level levels[] = {KPLM_LEVEL_NONE, KPLM_LEVEL_SUMMARY, KPLM_LEVEL_DETAILED};
    for (int i = 0; i < 3; i++) {
        kplm_manager *m = new_manager(levels[i]);
        CHECK_ST(kplm_put(m, NULL, 1.0, "s", NULL, NULL), KPLM_EINVAL);
        CHECK_ST(kplm_put(m, "", 1.0, "s", NULL, NULL), KPLM_EINVAL);
        kplm_metric *h = METRIC_SENTINEL;
        CHECK_ST(kplm_metric_get(m, NULL, NULL, NULL, NULL, &h), KPLM_EINVAL);
        CHECK(h == NULL);
        h = METRIC_SENTINEL;
        CHECK_ST(kplm_metric_get(m, "", NULL, NULL, NULL, &h), KPLM_EINVAL);
        CHECK(h == NULL);
        CHECK_ST(kplm_metric_get(m, "UserRecordsPut", NULL, NULL, NULL, NULL), KPLM_EINVAL);
        CHECK_ST(kplm_snapshots(m, NULL, NULL), KPLM_EINVAL);
        CHECK_ST(kplm_set_sink(m, NULL), KPLM_EINVAL);
        kplm_sink sink;
        memset(&sink, 0, sizeof sink); /* no export_snapshots */
        CHECK_ST(kplm_set_sink(m, &sink), KPLM_EINVAL);
        CHECK(snapshot_count(m) == 0);
        kplm_free(m);
    }
}

static void non_finite_values(void) {
    kplm_level levels[] = {KPLM_LEVEL_NONE, KPLM_LEVEL_SUMMARY, KPLM_LEVEL_DETAILED};
    double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (int l = 0; l < 3; l++) {
        kplm_manager *m = new_manager(levels[l]);
        kplm_metric *h = NULL;
        CHECK_OK(kplm_metric_get(m, "UserRecordsPut", "s", NULL, NULL, &h));
        CHECK(h != NULL);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            CHECK_MSG(kplm_put(m, "UserRecordsPut", bad[i], "s", NULL, NULL) == KPLM_EINVAL,
                      "kplm_put(%g) at level %d not refused", bad[i], (int)levels[l]);
            CHECK_MSG(kplm_metric_put(h, bad[i]) == KPLM_EINVAL,
                      "kplm_metric_put(%g) at level %d not refused", bad[i], (int)levels[l]);
        }
        CHECK(snapshot_count(m) == 0);
        /* Finite extremes are fine (each on its own key: no overflowing sum). */
        if (levels[l] != KPLM_LEVEL_NONE) {
            CHECK_OK(kplm_put(m, "Big", DBL_MAX, NULL, NULL, NULL));
            CHECK_OK(kplm_put(m, "Small", -DBL_MAX, NULL, NULL, NULL));
            CHECK_OK(kplm_put(m, "Tiny", 4.9406564584124654e-324, NULL, NULL, NULL));
            CHECK_OK(kplm_put(m, "Zero", -0.0, NULL, NULL, NULL));
            tsnap_list l2 = {0};
            collect_snapshots(m, &l2);
            CHECK_SNAP(find_snap(&l2, "Big", NULL, NULL, NULL), 1, DBL_MAX, DBL_MAX, DBL_MAX);
            CHECK_SNAP(find_snap(&l2, "Small", NULL, NULL, NULL), 1, -DBL_MAX, -DBL_MAX,
                       -DBL_MAX);
            CHECK_SNAP(find_snap(&l2, "Tiny", NULL, NULL, NULL), 1, 4.9406564584124654e-324,
                       4.9406564584124654e-324, 4.9406564584124654e-324);
            CHECK_SNAP(find_snap(&l2, "Zero", NULL, NULL, NULL), 1, 0.0, 0.0, 0.0);
            CHECK(l2.n == 4);
            tsnap_list_clear(&l2);
        }
        kplm_free(m);
    }
}

static const struct {
    const char *s;
    const char *what;
} invalid_utf8[] = {
    {"\xC0\xAF", "overlong 2-byte '/' (C0 AF)"},
    {"\xC1\xBF", "overlong 2-byte (C1 BF)"},
    {"\xE0\x80\xAF", "overlong 3-byte (E0 80 AF)"},
    {"\xE0\x9F\xBF", "overlong 3-byte (E0 9F BF)"},
    {"\xF0\x80\x80\xAF", "overlong 4-byte (F0 80 80 AF)"},
    {"\xF0\x8F\xBF\xBF", "overlong 4-byte (F0 8F BF BF)"},
    {"\xED\xA0\x80", "surrogate U+D800 (ED A0 80)"},
    {"\xED\xBF\xBF", "surrogate U+DFFF (ED BF BF)"},
    {"\xED\xA0\xBD\xED\xB8\x80", "CESU-8 surrogate pair"},
    {"\xF4\x90\x80\x80", "U+110000 (F4 90 80 80)"},
    {"\xF5\x80\x80\x80", "lead byte F5"},
    {"\xF7\xBF\xBF\xBF", "lead byte F7"},
    {"\xF8\x88\x80\x80\x80", "5-byte form"},
    {"\xFC\x84\x80\x80\x80\x80", "6-byte form"},
    {"\xFE", "byte FE"},
    {"\xFF", "byte FF"},
    {"\x80", "lone continuation byte"},
    {"a\xBF" "b", "continuation byte in the middle"},
    {"\xC3", "truncated 2-byte sequence"},
    {"\xE2\x82", "truncated 3-byte sequence"},
    {"\xF0\x9F\x98", "truncated 4-byte sequence"},
    {"ok\xE2\x82", "truncated sequence at the end"},
    {"\xC3(", "bad continuation (C3 28)"},
    {"\xE2(\xA1", "bad continuation (E2 28 A1)"},
    {"\xF0\x9F(\x80", "bad continuation (F0 9F 28 80)"},
};

static const char *valid_utf8[] = {
    "plain",
    "caf\xC3\xA9",                 /* é */
    "\xE2\x82\xAC",                /* € */
    "\xF0\x9F\x98\x80",            /* U+1F600 */
    "\xF4\x8F\xBF\xBF",            /* U+10FFFF */
    "\xED\x9F\xBF",                /* U+D7FF, just below the surrogates */
    "\xEE\x80\x80",                /* U+E000, just above */
    "\xEF\xBF\xBF",                /* U+FFFF */
    "\xC2\x80",                    /* U+0080 */
    "\xE0\xA0\x80",                /* U+0800 */
    "\xF0\x90\x80\x80",            /* U+10000 */
    "with space and\ttab",
};

static void invalid_utf8_refused(void) {
    kplm_level levels[] = {KPLM_LEVEL_SUMMARY, KPLM_LEVEL_DETAILED};
    for (int l = 0; l < 2; l++) {
        kplm_manager *m = new_manager(levels[l]);
        for (size_t i = 0; i < sizeof invalid_utf8 / sizeof invalid_utf8[0]; i++) {
            char what[160];
            const char *bad = invalid_utf8[i].s;
            snprintf(what, sizeof what, "%s as the name (level %d)", invalid_utf8[i].what,
                     (int)levels[l]);
            refuse_key(m, bad, NULL, NULL, NULL, KPLM_EINVAL, what);
            snprintf(what, sizeof what, "%s as the stream (level %d)", invalid_utf8[i].what,
                     (int)levels[l]);
            refuse_key(m, "UserRecordsPut", bad, NULL, NULL, KPLM_EINVAL, what);
            /* At SUMMARY shard and error_code are dropped, but still validated. */
            snprintf(what, sizeof what, "%s as the shard (level %d)", invalid_utf8[i].what,
                     (int)levels[l]);
            refuse_key(m, "UserRecordsPut", "s", bad, NULL, KPLM_EINVAL, what);
            snprintf(what, sizeof what, "%s as the error code (level %d)",
                     invalid_utf8[i].what, (int)levels[l]);
            refuse_key(m, "ErrorsByCode", "s", "shard", bad, KPLM_EINVAL, what);
        }
        CHECK_MSG(snapshot_count(m) == 0, "refused puts recorded something");
        kplm_free(m);
    }
}

static void valid_utf8_accepted(void) {
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED);
    size_t n = sizeof valid_utf8 / sizeof valid_utf8[0];
    for (size_t i = 0; i < n; i++) {
        char what[160];
        snprintf(what, sizeof what, "valid UTF-8 #%zu", i);
        accept_key(m, valid_utf8[i], valid_utf8[i], valid_utf8[i], valid_utf8[i], what);
    }
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == n);
    for (size_t i = 0; i < n; i++)
        CHECK_SNAP(find_snap(&l, valid_utf8[i], valid_utf8[i], valid_utf8[i], valid_utf8[i]),
                   2, 3.0, 1.0, 2.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static char *repeat(char c, size_t n) {
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void lengths(void) {
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED);
    char *name255 = repeat('n', 255), *name256 = repeat('n', 256);
    char *dim1024 = repeat('d', 1024), *dim1025 = repeat('d', 1025);
    char *huge = repeat('h', 100000);

    refuse_key(m, name256, NULL, NULL, NULL, KPLM_EINVAL, "a 256-byte name");
    refuse_key(m, huge, NULL, NULL, NULL, KPLM_EINVAL, "a 100000-byte name");
    refuse_key(m, "N", dim1025, NULL, NULL, KPLM_EINVAL, "a 1025-byte stream");
    refuse_key(m, "N", NULL, dim1025, NULL, KPLM_EINVAL, "a 1025-byte shard");
    refuse_key(m, "N", NULL, NULL, dim1025, KPLM_EINVAL, "a 1025-byte error code");
    refuse_key(m, "N", huge, NULL, NULL, KPLM_EINVAL, "a 100000-byte stream");
    CHECK(snapshot_count(m) == 0);

    accept_key(m, name255, NULL, NULL, NULL, "a 255-byte name");
    accept_key(m, "N", dim1024, NULL, NULL, "a 1024-byte stream");
    accept_key(m, "N", NULL, dim1024, NULL, "a 1024-byte shard");
    accept_key(m, "N", NULL, NULL, dim1024, "a 1024-byte error code");
    accept_key(m, name255, dim1024, dim1024, dim1024, "every part at its limit");

    /* Limits are in bytes, not characters: 253 ASCII + a 2-byte é = 255. */
    char name_e[300];
    memset(name_e, 'e', 253);
    memcpy(name_e + 253, "\xC3\xA9", 3);
    accept_key(m, name_e, NULL, NULL, NULL, "253 bytes + U+00E9 (255 bytes)");
    memset(name_e, 'e', 254);
    memcpy(name_e + 254, "\xC3\xA9", 3);
    refuse_key(m, name_e, NULL, NULL, NULL, KPLM_EINVAL, "254 bytes + U+00E9 (256 bytes)");
    char dim_e[1100];
    memset(dim_e, 'e', 1021);
    memcpy(dim_e + 1021, "\xE2\x82\xAC", 4);
    accept_key(m, "E", dim_e, NULL, NULL, "1021 bytes + U+20AC (1024 bytes)");
    memset(dim_e, 'e', 1022);
    memcpy(dim_e + 1022, "\xE2\x82\xAC", 4);
    refuse_key(m, "E", dim_e, NULL, NULL, KPLM_EINVAL, "1022 bytes + U+20AC (1025 bytes)");

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 7);
    CHECK_SNAP(find_snap(&l, name255, NULL, NULL, NULL), 2, 3.0, 1.0, 2.0);
    CHECK_SNAP(find_snap(&l, "N", dim1024, NULL, NULL), 2, 3.0, 1.0, 2.0);
    CHECK_SNAP(find_snap(&l, "N", NULL, dim1024, NULL), 2, 3.0, 1.0, 2.0);
    CHECK_SNAP(find_snap(&l, "N", NULL, NULL, dim1024), 2, 3.0, 1.0, 2.0);
    CHECK_SNAP(find_snap(&l, name255, dim1024, dim1024, dim1024), 2, 3.0, 1.0, 2.0);
    tsnap_list_clear(&l);

    /* SUMMARY drops shard and error code, but their length is still checked. */
    kplm_manager *s = new_manager(KPLM_LEVEL_SUMMARY);
    refuse_key(s, "N", "s", dim1025, NULL, KPLM_EINVAL, "a 1025-byte shard at SUMMARY");
    refuse_key(s, "N", "s", NULL, dim1025, KPLM_EINVAL, "a 1025-byte error code at SUMMARY");
    refuse_key(s, name256, "s", NULL, NULL, KPLM_EINVAL, "a 256-byte name at SUMMARY");
    CHECK(snapshot_count(s) == 0);
    kplm_free(s);

    free(name255), free(name256), free(dim1024), free(dim1025), free(huge);
    kplm_free(m);
}

/* At NONE only the cheap checks are promised; whatever else the library does,
 * a refused or accepted put must not crash and nothing is recorded. */
static void none_level_cheap_checks(void) {
    kplm_manager *m = new_manager(KPLM_LEVEL_NONE);
    CHECK_ST(kplm_put(m, NULL, 1.0, NULL, NULL, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_put(m, "", 1.0, NULL, NULL, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_put(m, "UserRecordsPut", NAN, NULL, NULL, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_put(m, "UserRecordsPut", INFINITY, NULL, NULL, NULL), KPLM_EINVAL);
    kplm_status st = kplm_put(m, "\xC0\xAF", 1.0, NULL, NULL, NULL);
    CHECK(st == KPLM_OK || st == KPLM_EINVAL);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", "shard", "code"));
    CHECK(snapshot_count(m) == 0);
    CHECK_OK(kplm_close(m));
    CHECK_ST(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL), KPLM_ECLOSED);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(null_manager);
    RUN(null_arguments);
    RUN(non_finite_values);
    RUN(invalid_utf8_refused);
    RUN(valid_utf8_accepted);
    RUN(lengths);
    RUN(none_level_cheap_checks);
    return failures ? 1 : 0;
}
