/* Callbacks may call kplm_put on their own manager; kplm_flush, kplm_close,
 * kplm_start and kplm_free on their own manager give KPLM_ESTATE (free: does
 * nothing), never a deadlock. A watchdog turns a deadlock into a failure. */
#include "test_support.h"

#include <string.h>

typedef struct {
    kplm_manager *m;
    kplm_manager *other; /* another manager, which callbacks may flush */
    int in_record_calls;
    kplm_status put_st, flush_st, close_st, start_st, setsink_st, other_flush_st;
    kplm_status final_put_st, close_cb_put_st, open_put_st, open_start_st;
    int exports_seen;
    int closing;
} ctx;

static void record_hook(msink *ms, const kplm_event *e) {
    ctx *c = ms->hook_data;
    if (strcmp(e->name, "Trigger") != 0) return;
    c->in_record_calls++;
    c->put_st = kplm_put(c->m, "FromRecord", 2.0, "s", NULL, NULL);
    c->flush_st = kplm_flush(c->m);
    c->close_st = kplm_close(c->m);
    c->start_st = kplm_start(c->m);
    kplm_sink s = msink_sink(ms, 1, 1, 1);
    c->setsink_st = kplm_set_sink(c->m, &s);
    kplm_free(c->m); /* must do nothing */
}

static void from_record(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    msink ms;
    msink_init(&ms);
    ctx c;
    memset(&c, 0, sizeof c);
    CHECK_OK(kplm_new(&cfg, &c.m));
    ms.hook_data = &c;
    ms.on_record = record_hook;
    kplm_sink s = msink_sink(&ms, 1, 1, 1);
    CHECK_OK(kplm_set_sink(c.m, &s));
    CHECK_OK(kplm_start(c.m));

    CHECK_OK(kplm_put(c.m, "Trigger", 1.0, NULL, NULL, NULL));
    CHECK(c.in_record_calls == 1);
    CHECK_ST(c.put_st, KPLM_OK);
    CHECK_ST(c.flush_st, KPLM_ESTATE);
    CHECK_ST(c.close_st, KPLM_ESTATE);
    CHECK_ST(c.start_st, KPLM_ESTATE);
    CHECK_ST(c.setsink_st, KPLM_ESTATE);
    /* The nested put is recorded, but calls no record (SPEC §9). */
    CHECK(ms.records == 1);
    CHECK_STR(ms.events[0].name, "Trigger");

    /* The manager survived the kplm_free from the callback and still works. */
    CHECK_OK(kplm_put(c.m, "After", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(c.m));
    CHECK(ms.exports_ok == 1);
    CHECK_SNAP(find_snap(&ms.snaps, "Trigger", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    CHECK_SNAP(find_snap(&ms.snaps, "FromRecord", "s", NULL, NULL), 1, 2.0, 2.0, 2.0);
    CHECK_SNAP(find_snap(&ms.snaps, "After", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    CHECK_OK(kplm_close(c.m));
    CHECK(ms.closes == 1);
    kplm_free(c.m);
    msink_destroy(&ms);
}

/* Record hook on several threads at once, each putting from the callback. */
static void record_hook_mt(msink *ms, const kplm_event *e) {
    ctx *c = ms->hook_data;
    if (strcmp(e->name, "Trigger") != 0) return;
    if (kplm_put(c->m, "FromRecord", 1.0, NULL, NULL, NULL) != KPLM_OK) abort();
    if (kplm_flush(c->m) != KPLM_ESTATE) abort();
}

static void *trigger_thread(void *p) {
    ctx *c = p;
    for (int i = 0; i < 2000; i++) CHECK_OK(kplm_put(c->m, "Trigger", 1.0, NULL, NULL, NULL));
    return NULL;
}

static void from_record_many_threads(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    msink ms;
    msink_init(&ms);
    ms.keep = 0;
    ctx c;
    memset(&c, 0, sizeof c);
    CHECK_OK(kplm_new(&cfg, &c.m));
    ms.hook_data = &c;
    ms.on_record = record_hook_mt;
    kplm_sink s = msink_sink(&ms, 0, 1, 0);
    CHECK_OK(kplm_set_sink(c.m, &s));
    CHECK_OK(kplm_start(c.m));
    pthread_t t[3];
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&t[i], NULL, trigger_thread, &c) == 0);
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(ms.records == 6000);   /* the puts made in record call no record */
    tsnap_list l = {0};
    collect_snapshots(c.m, &l);
    CHECK_SNAP(find_snap(&l, "Trigger", NULL, NULL, NULL), 6000, 6000.0, 1.0, 1.0);
    CHECK_SNAP(find_snap(&l, "FromRecord", NULL, NULL, NULL), 6000, 6000.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    CHECK_OK(kplm_close(c.m));
    kplm_free(c.m);
    msink_destroy(&ms);
}

static void export_hook(msink *ms, const kplm_snapshot *s, size_t n) {
    (void)s, (void)n;
    ctx *c = ms->hook_data;
    c->exports_seen++;
    if (c->closing) {
        /* Final export inside kplm_close: close has begun, puts refused. */
        c->final_put_st = kplm_put(c->m, "FromFinalExport", 1.0, NULL, NULL, NULL);
        return;
    }
    if (c->exports_seen == 1) {
        c->put_st = kplm_put(c->m, "FromExport", 1.0, NULL, NULL, NULL);
        c->flush_st = kplm_flush(c->m);
        c->close_st = kplm_close(c->m);
        c->start_st = kplm_start(c->m);
        c->other_flush_st = kplm_flush(c->other);
        kplm_free(c->m); /* must do nothing */
    }
}

static int open_hook(msink *ms) {
    ctx *c = ms->hook_data;
    c->open_put_st = kplm_put(c->m, "FromOpen", 1.0, NULL, NULL, NULL);
    c->open_start_st = kplm_start(c->m);
    return 0;
}

static void close_hook(msink *ms) {
    ctx *c = ms->hook_data;
    c->close_cb_put_st = kplm_put(c->m, "FromCloseCallback", 1.0, NULL, NULL, NULL);
}

static void from_open_export_close(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    msink ms, other_ms;
    msink_init(&ms);
    msink_init(&other_ms);
    ctx c;
    memset(&c, 0, sizeof c);
    CHECK_OK(kplm_new(&cfg, &c.m));
    CHECK_OK(kplm_new(&cfg, &c.other));
    kplm_sink os = msink_sink(&other_ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(c.other, &os));
    CHECK_OK(kplm_start(c.other));
    CHECK_OK(kplm_put(c.other, "Other", 1.0, NULL, NULL, NULL));

    ms.hook_data = &c;
    ms.on_open = open_hook;
    ms.on_export = export_hook;
    ms.on_close = close_hook;
    kplm_sink s = msink_sink(&ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(c.m, &s));

    CHECK_OK(kplm_start(c.m));
    CHECK_ST(c.open_put_st, KPLM_OK);
    CHECK_ST(c.open_start_st, KPLM_ESTATE);

    CHECK_OK(kplm_put(c.m, "Before", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(c.m));
    CHECK(c.exports_seen == 1);
    CHECK_ST(c.put_st, KPLM_OK);
    CHECK_ST(c.flush_st, KPLM_ESTATE);
    CHECK_ST(c.close_st, KPLM_ESTATE);
    CHECK_ST(c.start_st, KPLM_ESTATE);
    /* Only its own manager is off limits: another one can be flushed. */
    CHECK_ST(c.other_flush_st, KPLM_OK);
    CHECK(other_ms.exports_ok == 1);

    CHECK(ms.exports_ok == 1);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 1, "Before", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 1, "FromOpen", NULL, NULL, NULL), 1, 1.0, 1.0, 1.0);
    CHECK(find_snap_in_batch(&ms.snaps, 1, "FromExport", NULL, NULL, NULL) == NULL);

    /* The put made inside the export goes out with the next flush. */
    CHECK_OK(kplm_flush(c.m));
    CHECK(ms.exports_ok == 2);
    CHECK(count_in_batch(&ms.snaps, 2) == 1);
    CHECK_SNAP(find_snap_in_batch(&ms.snaps, 2, "FromExport", NULL, NULL, NULL), 1, 1.0, 1.0,
               1.0);

    /* Inside close's final export and close callback, puts are refused. */
    CHECK_OK(kplm_put(c.m, "Last", 1.0, NULL, NULL, NULL));
    c.closing = 1;
    CHECK_OK(kplm_close(c.m));
    CHECK(ms.exports_ok == 3);
    CHECK_ST(c.final_put_st, KPLM_ECLOSED);
    CHECK_ST(c.close_cb_put_st, KPLM_ECLOSED);
    CHECK(ms.closes == 1);
    tsnap_list l = {0};
    collect_snapshots(c.m, &l);
    CHECK(find_snap(&l, "FromFinalExport", NULL, NULL, NULL) == NULL);
    CHECK(find_snap(&l, "FromCloseCallback", NULL, NULL, NULL) == NULL);
    tsnap_list_clear(&l);
    msink_check_clean(&ms);
    kplm_free(c.m);
    kplm_free(c.other);
    msink_destroy(&ms);
    msink_destroy(&other_ms);
}

/* The uploader thread's exports are callbacks too. */
static void export_hook_uploader(msink *ms, const kplm_snapshot *s, size_t n) {
    (void)s, (void)n;
    ctx *c = ms->hook_data;
    if (c->closing) return;
    __atomic_store_n(&c->flush_st, kplm_flush(c->m), __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->close_st, kplm_close(c->m), __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->put_st, kplm_put(c->m, "FromUploader", 1.0, NULL, NULL, NULL),
                     __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&c->exports_seen, 1, __ATOMIC_SEQ_CST);
}

static void from_uploader_export(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 20.0;
    msink ms;
    msink_init(&ms);
    ctx c;
    memset(&c, 0, sizeof c);
    c.flush_st = c.close_st = c.put_st = (kplm_status)-1;
    CHECK_OK(kplm_new(&cfg, &c.m));
    ms.hook_data = &c;
    ms.on_export = export_hook_uploader;
    kplm_sink s = msink_sink(&ms, 0, 0, 0);
    CHECK_OK(kplm_set_sink(c.m, &s));
    CHECK_OK(kplm_start(c.m));
    CHECK_OK(kplm_put(c.m, "X", 1.0, NULL, NULL, NULL));
    for (int i = 0; i < 500 && __atomic_load_n(&c.exports_seen, __ATOMIC_SEQ_CST) == 0; i++)
        test_sleep_ms(10);
    CHECK_MSG(__atomic_load_n(&c.exports_seen, __ATOMIC_SEQ_CST) > 0,
              "the uploader exported nothing within 5 s");
    __atomic_store_n(&c.closing, 1, __ATOMIC_SEQ_CST);
    CHECK_ST(__atomic_load_n(&c.flush_st, __ATOMIC_SEQ_CST), KPLM_ESTATE);
    CHECK_ST(__atomic_load_n(&c.close_st, __ATOMIC_SEQ_CST), KPLM_ESTATE);
    kplm_status pst = __atomic_load_n(&c.put_st, __ATOMIC_SEQ_CST);
    CHECK(pst == KPLM_OK);
    CHECK_OK(kplm_close(c.m));
    kplm_free(c.m);
    msink_destroy(&ms);
}

/* No lock kplm_put needs is held while kplm_snapshots calls visit. */
typedef struct {
    kplm_manager *m;
    int visits;
    kplm_status st;
} visit_ctx;

static int visit_puts(void *ud, const kplm_snapshot *s) {
    visit_ctx *v = ud;
    (void)s;
    v->visits++;
    v->st = kplm_put(v->m, "FromVisit", 1.0, NULL, NULL, NULL);
    return 0;
}

static void from_snapshots_visit(void) {
    tclock clk;
    tclock_set(&clk, 10.0);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clk);
    visit_ctx v = {NULL, 0, (kplm_status)-1};
    CHECK_OK(kplm_new(&cfg, &v.m));
    CHECK_OK(kplm_put(v.m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_put(v.m, "B", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_snapshots(v.m, visit_puts, &v));
    CHECK(v.visits == 2);
    CHECK_ST(v.st, KPLM_OK);
    tsnap_list l = {0};
    collect_snapshots(v.m, &l);
    CHECK_SNAP(find_snap(&l, "FromVisit", NULL, NULL, NULL), 2, 2.0, 1.0, 1.0);
    tsnap_list_clear(&l);
    kplm_free(v.m);
}

int main(void) {
    int failures = 0;
    RUN(from_record);
    RUN(from_record_many_threads);
    RUN(from_open_export_close);
    RUN(from_uploader_export);
    RUN(from_snapshots_visit);
    return failures ? 1 : 0;
}
