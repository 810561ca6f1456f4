/* Snapshot order: by name bytewise, then dimension list pair by pair (name
 * bytes, value bytes), a prefix first; the same order for flush. Keys are
 * compared as bytes (no Unicode normalisation). */
#include "test_support.h"

#include <string.h>

typedef struct {
    const char *name, *stream, *shard, *ec;
} key;

/* Expected order, written out by hand from the rule. */
static const key expected[] = {
    {"B", NULL, NULL, NULL},                   /* 'B' 0x42 < 'a' 0x61 */
    {"a", NULL, NULL, NULL},                   /* no dimensions: a prefix of all */
    {"a", NULL, NULL, "E1"},                   /* "error_code" < "shard" < "stream" */
    {"a", NULL, "0", NULL},
    {"a", NULL, "0", "x"},
    {"a", NULL, "1", NULL},
    {"a", "A", NULL, NULL},                    /* 'A' < 's' */
    {"a", "s1", NULL, NULL},
    {"a", "s1", NULL, "z"},                    /* ("error_code",..) < ("shard",..) */
    {"a", "s1", "0", NULL},
    {"a", "s1", "0", "a"},
    {"a", "s1", "1", NULL},
    {"a", "s10", NULL, NULL},                  /* "s1" < "s10" < "s2" */
    {"a", "s2", NULL, NULL},
    {"aa", NULL, NULL, NULL},
    {"ab", NULL, NULL, NULL},
    {"a\xC3\xA9", NULL, NULL, NULL},           /* 0xC3 > 'b' */
    {"b", NULL, NULL, NULL},
    {"cafe\xCC\x81", NULL, NULL, NULL},        /* e + U+0301: 'e' < 0xC3 */
    {"caf\xC3\xA9", NULL, NULL, NULL},         /* precomposed: a different key */
    {"e\xCC\x81x", NULL, NULL, NULL},          /* bytes first, although the NFC */
    {"\xC3\xA9" "a", NULL, NULL, NULL},         /* forms would sort "ea" < "ex" */
    {"\xEF\xBC\xA1", NULL, NULL, NULL},        /* U+FF21 before U+1F600 in UTF-8 */
    {"\xF0\x9F\x98\x80", NULL, NULL, NULL},    /* (UTF-16 order would swap them) */
};
#define NKEYS (sizeof expected / sizeof expected[0])

static void put_all_scrambled(kplm_manager *m, double value) {
    /* A fixed permutation, so insertion order is not the answer. */
    for (size_t i = 0; i < NKEYS; i++) {
        size_t j = (i * 7 + 3) % NKEYS; /* 7 is coprime with NKEYS (24) */
        const key *k = &expected[j];
        CHECK_MSG(kplm_put(m, k->name, value, k->stream, k->shard, k->ec) == KPLM_OK,
                  "put of key #%zu failed", j);
    }
}

static void check_list(const tsnap_list *l, int batch) {
    size_t idx = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (batch >= 0 && l->v[i].batch != batch) continue;
        CHECK_MSG(idx < NKEYS, "more snapshots than keys");
        const key *k = &expected[idx];
        const tsnap *s = &l->v[i];
        const tsnap *want = find_snap_in_batch(l, batch, k->name, k->stream, k->shard, k->ec);
        CHECK_MSG(want == s,
                  "position %zu: got name \"%s\" with %zu dimension(s)%s%s%s%s, expected "
                  "key #%zu (\"%s\" %s/%s/%s)",
                  idx, s->name, s->ndims, s->ndims > 0 ? " first " : "",
                  s->ndims > 0 ? s->dim_name[0] : "", s->ndims > 0 ? "=" : "",
                  s->ndims > 0 ? s->dim_value[0] : "", idx, k->name,
                  k->stream ? k->stream : "-", k->shard ? k->shard : "-", k->ec ? k->ec : "-");
        idx++;
    }
    CHECK_MSG(idx == NKEYS, "%zu snapshots, expected %zu", idx, (size_t)NKEYS);
}

static void expected_table_follows_rule(void) {
    /* Self-check of the table against the comparator of test_support. */
    for (size_t i = 1; i < NKEYS; i++) {
        kplm_dimension da[3], db[3];
        size_t na = 0, nb = 0;
        const key *a = &expected[i - 1], *b = &expected[i];
        if (a->stream) da[na++] = (kplm_dimension){"stream", a->stream};
        if (a->shard) da[na++] = (kplm_dimension){"shard", a->shard};
        if (a->ec) da[na++] = (kplm_dimension){"error_code", a->ec};
        if (b->stream) db[nb++] = (kplm_dimension){"stream", b->stream};
        if (b->shard) db[nb++] = (kplm_dimension){"shard", b->shard};
        if (b->ec) db[nb++] = (kplm_dimension){"error_code", b->ec};
        CHECK_MSG(snap_order(a->name, da, na, b->name, db, nb) < 0,
                  "table rows %zu and %zu are not in order", i - 1, i);
    }
}

static void snapshots_order(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    put_all_scrambled(m, 1.0);
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    check_list(&l, -1);
    /* Precomposed and decomposed forms are two keys with one put each. */
    CHECK_SNAP(find_snap(&l, "caf\xC3\xA9", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    CHECK_SNAP(find_snap(&l, "cafe\xCC\x81", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

static void flush_order(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    put_all_scrambled(m, 2.0);
    CHECK_OK(kplm_flush(m));
    CHECK(ms.exports_ok == 1);
    check_list(&ms.snaps, 1);
    /* Second round, across two seconds: still one sorted batch. */
    tclock_advance(&clk, 1.0);
    put_all_scrambled(m, 3.0);
    tclock_advance(&clk, 1.0);
    put_all_scrambled(m, 4.0);
    CHECK_OK(kplm_close(m));
    CHECK(ms.exports_ok == 2);
    check_list(&ms.snaps, 2);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 2, "a", "s1", "0", "a"), 2, 7.0, 3.0, 4.0);
    msink_check_clean(&ms);
    kplm_free(m);
    msink_destroy(&ms);
}

/* SUMMARY merges keys that differ only in shard/error code: the sorted
 * output has each coarse key once. */
static void summary_order(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_SUMMARY, &clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    put_all_scrambled(m, 1.0);
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    /* Coarse keys: B, a, a/A, a/s1, a/s10, a/s2, aa, ab, aé, b, cafe+U+301,
     * café, e+U+301+x, éa, U+FF21, U+1F600. */
    CHECK_MSG(l.n == 16, "%zu snapshots at SUMMARY, expected 16", l.n);
    for (size_t i = 1; i < l.n; i++) {
        kplm_dimension da[TEST_MAX_DIMS], db[TEST_MAX_DIMS];
        for (size_t j = 0; j < l.v[i - 1].ndims; j++)
            da[j] = (kplm_dimension){l.v[i - 1].dim_name[j], l.v[i - 1].dim_value[j]};
        for (size_t j = 0; j < l.v[i].ndims; j++)
            db[j] = (kplm_dimension){l.v[i].dim_name[j], l.v[i].dim_value[j]};
        CHECK_MSG(snap_order(l.v[i - 1].name, da, l.v[i - 1].ndims, l.v[i].name, db,
                             l.v[i].ndims) < 0,
                  "snapshots %zu and %zu out of order at SUMMARY", i - 1, i);
    }
    CHECK_SNAP(find_snap(&l, "a", NULL, NULL, NULL), 5, 5.0, 1.0, 1.0);
    CHECK_SNAP(find_snap(&l, "a", "s1", NULL, NULL), 5, 5.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(expected_table_follows_rule);
    RUN(snapshots_order);
    RUN(flush_order);
    RUN(summary_order);
    return failures ? 1 : 0;
}
