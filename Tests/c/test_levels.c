/* NONE / SUMMARY / DETAILED, dimension names and order, "" == NULL. */
#include "test_support.h"

#include <string.h>

static kplm_manager *new_manager(kplm_level level, tclock *clk) {
    kplm_config cfg = test_config(level, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    return m;
}

static void level_none_records_nothing(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_NONE, &clk);
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 1, 1, 1);
    CHECK_OK(kplm_set_sink(m, &s));

    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "s", "shard", "code"));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsDataPut", "s", NULL, NULL, &h));
    CHECK(h != NULL);
    CHECK_OK(kplm_metric_put(h, 100.0));

    CHECK_OK(kplm_start(m));
    CHECK(ms.opens == 0);
    for (int i = 0; i < 1000; i++)
        CHECK_OK(kplm_put(m, "UserRecordsPut", (double)i, "s", "shard", NULL));
    CHECK_OK(kplm_metric_put(h, 100.0));
    CHECK_OK(kplm_flush(m));
    CHECK_OK(kplm_flush(m));

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 0);

    CHECK_OK(kplm_close(m));
    CHECK(ms.opens == 0 && ms.export_calls == 0 && ms.records == 0 && ms.closes == 0);
    collect_snapshots(m, &l);
    CHECK(l.n == 0);
    kplm_free(m);
    CHECK(ms.opens == 0 && ms.export_calls == 0 && ms.records == 0 && ms.closes == 0);
    msink_destroy(&ms);
}

static void level_summary_drops_shard_and_error_code(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_SUMMARY, &clk);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", "shardId-1", "E1"));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 2.0, "s", "shardId-2", "E2"));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 4.0, "s", NULL, NULL));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsPut", "s", "shardId-3", "E3", &h));
    CHECK_OK(kplm_metric_put(h, 8.0));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 16.0, NULL, "shardId-1", "E1"));
    CHECK_OK(kplm_put(m, "ErrorsByCode", 1.0, "t", NULL, "Throttled"));

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 3);
    const tsnap *a = find_snap(&l, "UserRecordsPut", "s", NULL, NULL);
    CHECK_SNAP(a, 4, 15.0, 1.0, 8.0);
    CHECK(a->ndims == 1);
    CHECK_STR(a->dim_name[0], "stream");
    CHECK_STR(a->dim_value[0], "s");
    const tsnap *b = find_snap(&l, "UserRecordsPut", NULL, NULL, NULL);
    CHECK_SNAP(b, 1, 16.0, 16.0, 16.0);
    CHECK(b->ndims == 0);
    CHECK_SNAP(find_snap(&l, "ErrorsByCode", "t", NULL, NULL), 1, 1.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void level_detailed_keeps_everything(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    CHECK_OK(kplm_put(m, "M", 1.0, "s", "sh", "ec"));
    CHECK_OK(kplm_put(m, "M", 2.0, "s", "sh", NULL));
    CHECK_OK(kplm_put(m, "M", 4.0, "s", NULL, "ec"));
    CHECK_OK(kplm_put(m, "M", 8.0, NULL, "sh", "ec"));
    CHECK_OK(kplm_put(m, "M", 16.0, NULL, "sh", NULL));
    CHECK_OK(kplm_put(m, "M", 32.0, NULL, NULL, "ec"));
    CHECK_OK(kplm_put(m, "M", 64.0, "s", NULL, NULL));
    CHECK_OK(kplm_put(m, "M", 128.0, NULL, NULL, NULL));
    /* Two keys that differ only in one part are distinct. */
    CHECK_OK(kplm_put(m, "M", 256.0, "s", "sh", "ec2"));
    CHECK_OK(kplm_put(m, "M", 512.0, "s", "sh2", "ec"));
    CHECK_OK(kplm_put(m, "M", 1024.0, "s2", "sh", "ec"));
    /* Same value in different positions: still distinct keys. */
    CHECK_OK(kplm_put(m, "M", 2048.0, "x", NULL, NULL));
    CHECK_OK(kplm_put(m, "M", 4096.0, NULL, "x", NULL));
    CHECK_OK(kplm_put(m, "M", 8192.0, NULL, NULL, "x"));

    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 14);
    const tsnap *full = find_snap(&l, "M", "s", "sh", "ec");
    CHECK_SNAP(full, 1, 1.0, 1.0, 1.0);
    CHECK(full->ndims == 3);
    CHECK_STR(full->dim_name[0], "stream");
    CHECK_STR(full->dim_value[0], "s");
    CHECK_STR(full->dim_name[1], "shard");
    CHECK_STR(full->dim_value[1], "sh");
    CHECK_STR(full->dim_name[2], "error_code");
    CHECK_STR(full->dim_value[2], "ec");
    CHECK_SNAP(find_snap(&l, "M", "s", "sh", NULL), 1, 2.0, 2.0, 2.0);
    CHECK_SNAP(find_snap(&l, "M", "s", NULL, "ec"), 1, 4.0, 4.0, 4.0);
    CHECK_SNAP(find_snap(&l, "M", NULL, "sh", "ec"), 1, 8.0, 8.0, 8.0);
    CHECK_SNAP(find_snap(&l, "M", NULL, "sh", NULL), 1, 16.0, 16.0, 16.0);
    CHECK_SNAP(find_snap(&l, "M", NULL, NULL, "ec"), 1, 32.0, 32.0, 32.0);
    CHECK_SNAP(find_snap(&l, "M", "s", NULL, NULL), 1, 64.0, 64.0, 64.0);
    CHECK_SNAP(find_snap(&l, "M", NULL, NULL, NULL), 1, 128.0, 128.0, 128.0);
    CHECK_SNAP(find_snap(&l, "M", "s", "sh", "ec2"), 1, 256.0, 256.0, 256.0);
    CHECK_SNAP(find_snap(&l, "M", "s", "sh2", "ec"), 1, 512.0, 512.0, 512.0);
    CHECK_SNAP(find_snap(&l, "M", "s2", "sh", "ec"), 1, 1024.0, 1024.0, 1024.0);
    CHECK_SNAP(find_snap(&l, "M", "x", NULL, NULL), 1, 2048.0, 2048.0, 2048.0);
    CHECK_SNAP(find_snap(&l, "M", NULL, "x", NULL), 1, 4096.0, 4096.0, 4096.0);
    CHECK_SNAP(find_snap(&l, "M", NULL, NULL, "x"), 1, 8192.0, 8192.0, 8192.0);
    const tsnap *ec_only = find_snap(&l, "M", NULL, NULL, "ec");
    CHECK(ec_only->ndims == 1);
    CHECK_STR(ec_only->dim_name[0], "error_code");
    const tsnap *sh_ec = find_snap(&l, "M", NULL, "sh", "ec");
    CHECK(sh_ec->ndims == 2);
    CHECK_STR(sh_ec->dim_name[0], "shard");
    CHECK_STR(sh_ec->dim_name[1], "error_code");
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void empty_string_is_absent(void) {
    kplm_level levels[] = {KPLM_LEVEL_SUMMARY, KPLM_LEVEL_DETAILED};
    for (int i = 0; i < 2; i++) {
        tclock clk;
        tclock_set(&clk, 10.0);
        kplm_manager *m = new_manager(levels[i], &clk);
        CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
        CHECK_OK(kplm_put(m, "A", 2.0, "", "", ""));
        CHECK_OK(kplm_put(m, "A", 4.0, "", NULL, ""));
        kplm_metric *h = NULL;
        CHECK_OK(kplm_metric_get(m, "A", "", "", "", &h));
        CHECK_OK(kplm_metric_put(h, 8.0));
        CHECK_OK(kplm_put(m, "B", 1.0, "s", "", NULL));
        CHECK_OK(kplm_put(m, "B", 2.0, "s", NULL, ""));
        CHECK_OK(kplm_put(m, "C", 1.0, "", "sh", ""));
        CHECK_OK(kplm_put(m, "C", 2.0, NULL, "sh", NULL));

        tsnap_list l = {0};
        collect_snapshots(m, &l);
        const tsnap *a = find_snap(&l, "A", NULL, NULL, NULL);
        CHECK_SNAP(a, 4, 15.0, 1.0, 8.0);
        CHECK(a->ndims == 0);
        const tsnap *b = find_snap(&l, "B", "s", NULL, NULL);
        CHECK_SNAP(b, 2, 3.0, 1.0, 2.0);
        CHECK(b->ndims == 1);
        if (levels[i] == KPLM_LEVEL_DETAILED) {
            CHECK(l.n == 3);
            CHECK_SNAP(find_snap(&l, "C", NULL, "sh", NULL), 2, 3.0, 1.0, 2.0);
        } else {
            CHECK(l.n == 3);
            CHECK_SNAP(find_snap(&l, "C", NULL, NULL, NULL), 2, 3.0, 1.0, 2.0);
        }
        tsnap_list_clear(&l);
        kplm_free(m);
    }
}

/* Handles resolve to the same key as kplm_put, at every level. */
static void handles_share_the_key(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    kplm_metric *h1 = NULL, *h2 = NULL;
    CHECK_OK(kplm_metric_get(m, "K", "s", "sh", NULL, &h1));
    CHECK_OK(kplm_metric_get(m, "K", "s", "sh", "", &h2));
    CHECK(h1 != NULL && h2 != NULL);
    CHECK_OK(kplm_metric_put(h1, 1.0));
    CHECK_OK(kplm_metric_put(h2, 2.0));
    CHECK_OK(kplm_put(m, "K", 4.0, "s", "sh", NULL));
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK(l.n == 1);
    CHECK_SNAP(find_snap(&l, "K", "s", "sh", NULL), 3, 7.0, 1.0, 4.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

/* Keys are compared byte for byte: canonically equivalent but differently
 * encoded strings (precomposed U+00E9 vs e + U+0301, U+212B vs U+00C5) are
 * different names and different dimension values. */
static void keys_compare_bytes(void) {
    static const char *pairs[][2] = {
        {"caf\xC3\xA9", "cafe\xCC\x81"},
        {"\xE2\x84\xAB", "\xC3\x85"}, /* ANGSTROM SIGN vs A WITH RING ABOVE */
    };
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_manager *m = new_manager(KPLM_LEVEL_DETAILED, &clk);
    for (int i = 0; i < 2; i++) {
        const char *a = pairs[i][0], *b = pairs[i][1];
        CHECK_OK(kplm_put(m, a, 1.0, NULL, NULL, NULL));
        CHECK_OK(kplm_put(m, b, 2.0, NULL, NULL, NULL));
        CHECK_OK(kplm_put(m, "S", 1.0, a, NULL, NULL));
        CHECK_OK(kplm_put(m, "S", 2.0, b, NULL, NULL));
        CHECK_OK(kplm_put(m, "H", 1.0, NULL, a, NULL));
        CHECK_OK(kplm_put(m, "H", 2.0, NULL, b, NULL));
        CHECK_OK(kplm_put(m, "E", 1.0, NULL, NULL, a));
        CHECK_OK(kplm_put(m, "E", 2.0, NULL, NULL, b));
    }
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    CHECK_MSG(l.n == 16, "%zu distinct keys, expected 16", l.n);
    for (int i = 0; i < 2; i++) {
        const char *a = pairs[i][0], *b = pairs[i][1];
        CHECK_SNAP(find_snap(&l, a, NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
        CHECK_SNAP(find_snap(&l, b, NULL, NULL, NULL), 1, 2.0, 2.0, 2.0);
        CHECK_SNAP(find_snap(&l, "S", a, NULL, NULL), 1, 1.0, 1.0, 1.0);
        CHECK_SNAP(find_snap(&l, "S", b, NULL, NULL), 1, 2.0, 2.0, 2.0);
        CHECK_SNAP(find_snap(&l, "H", NULL, a, NULL), 1, 1.0, 1.0, 1.0);
        CHECK_SNAP(find_snap(&l, "H", NULL, b, NULL), 1, 2.0, 2.0, 2.0);
        CHECK_SNAP(find_snap(&l, "E", NULL, NULL, a), 1, 1.0, 1.0, 1.0);
        CHECK_SNAP(find_snap(&l, "E", NULL, NULL, b), 1, 2.0, 2.0, 2.0);
    }
    tsnap_list_clear(&l);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(level_none_records_nothing);
    RUN(level_summary_drops_shard_and_error_code);
    RUN(level_detailed_keeps_everything);
    RUN(empty_string_is_absent);
    RUN(handles_share_the_key);
    RUN(keys_compare_bytes);
    return failures ? 1 : 0;
}
