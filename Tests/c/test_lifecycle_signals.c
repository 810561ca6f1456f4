/* SPEC §9, C half: same-thread re-entry (a SIGTERM handler that interrupted
 * kplm_put calls kplm_close / kplm_flush / kplm_free), close's one time
 * budget, a failed final export kept for a later close, the sink's close
 * callback run exactly once, and puts made inside `record` not recursing.
 *
 * The signal tests make more than 64 threads (KPLMSHIM_MAX_WRITERS) hold a
 * writer slot first, so that the main thread has none and every put of it
 * takes the shared path (counted in by the put gate, under a series lock). */
#define _GNU_SOURCE   /* sigaction, clock_gettime, pthread_kill */
#include "test_support.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOT_HOLDERS 70

/* ------------------------------------------------------------------------ */
/* Threads that hold writer slots until the sub-test ends.                   */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int holders_ready, holders_release;

static void *hold_slot(void *p) {
    kplm_manager *scratch = p;
    /* The first put of a thread takes a writer slot (process-wide). */
    CHECK_OK(kplm_put(scratch, "Hold", 1.0, NULL, NULL, NULL));
    pthread_mutex_lock(&hold_lock);
    holders_ready++;
    pthread_cond_broadcast(&hold_cond);
    while (!holders_release) pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    return NULL;
}

static kplm_manager *holders_scratch;
static pthread_t holders[SLOT_HOLDERS];

/* Takes every writer slot from other threads: the caller has none after. */
static void take_all_writer_slots(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    CHECK_OK(kplm_new(&cfg, &holders_scratch));
    for (int i = 0; i < SLOT_HOLDERS; i++)
        CHECK(pthread_create(&holders[i], NULL, hold_slot, holders_scratch) == 0);
    pthread_mutex_lock(&hold_lock);
    while (holders_ready < SLOT_HOLDERS) pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
}

static void release_writer_slots(void) {
    pthread_mutex_lock(&hold_lock);
    holders_release = 1;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
    for (int i = 0; i < SLOT_HOLDERS; i++) pthread_join(holders[i], NULL);
    kplm_free(holders_scratch);
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* 1. Deterministic: SIGTERM raised from inside kplm_put (by the clock the   */
/*    put reads), on the shared path.                                        */
/* ------------------------------------------------------------------------ */

static kplm_manager *sig_m;
static tclock sig_clock;
static pthread_t main_thread;
static volatile sig_atomic_t raise_armed;
static volatile sig_atomic_t handler_ran;
static kplm_status handler_close, handler_flush;
static double handler_seconds;

static double raising_clock(void *ud) {
    (void)ud;
    if (raise_armed && pthread_equal(pthread_self(), main_thread)) {
        raise_armed = 0;
        raise(SIGTERM);   /* delivered now, on this thread, inside kplm_put */
    }
    return tclock_now(&sig_clock);
}

static void closing_handler(int sig) {
    (void)sig;
    double t0 = mono_now();
    handler_close = kplm_close(sig_m);
    handler_flush = kplm_flush(sig_m);
    kplm_free(sig_m);   /* must do nothing here */
    handler_seconds = mono_now() - t0;
    handler_ran = 1;
}

static void install(void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
}

static void close_in_handler_inside_put_is_estate(void) {
    take_all_writer_slots();
    main_thread = pthread_self();
    tclock_set(&sig_clock, 10.0);
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.clock = raising_clock;
    cfg.export_timeout_ms = 2000;
    CHECK_OK(kplm_new(&cfg, &sig_m));
    msink ms;
    msink_init(&ms);
    kplm_sink s = msink_sink(&ms, 1, 0, 1);
    CHECK_OK(kplm_set_sink(sig_m, &s));
    CHECK_OK(kplm_start(sig_m));
    install(closing_handler);
    for (int i = 0; i < 100; i++) CHECK_OK(kplm_put(sig_m, "A", 1.0, NULL, NULL, NULL));
    raise_armed = 1;
    /* The handler runs inside this put: close and flush would wait for it. */
    CHECK_OK(kplm_put(sig_m, "A", 1.0, NULL, NULL, NULL));
    CHECK(handler_ran);
    printf("    handler: close %s, flush %s, in %.3f s\n", test_status_name(handler_close),
           test_status_name(handler_flush), handler_seconds);
    CHECK_ST(handler_close, KPLM_ESTATE);
    CHECK_ST(handler_flush, KPLM_ESTATE);
    CHECK_MSG(handler_seconds < 0.5, "the handler took %.3f s", handler_seconds);
    /* Nothing changed: the manager still takes puts; an ordinary close
     * exports every one of them, and the sink closes once. */
    for (int i = 0; i < 99; i++) CHECK_OK(kplm_put(sig_m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_close(sig_m));
    const tacc *a = msink_find_acc(&ms, "A");
    CHECK(a != NULL);
    CHECK_U64(a->count, 200);
    CHECK(ms.closes == 1);
    kplm_free(sig_m);
    CHECK(ms.closes == 1);
    msink_check_clean(&ms);
    msink_destroy(&ms);
    release_writer_slots();
}

/* ------------------------------------------------------------------------ */
/* 2. The tester's case: a real SIGTERM sent by another thread at a random   */
/*    time while the main thread loops kplm_put on the shared path.          */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_putting;

static void closing_handler_random(int sig) {
    (void)sig;
    double t0 = mono_now();
    /* A flush first: inside a put it finds the put's open section in its
     * collection (writer cells) or its frame (shared path). */
    handler_flush = kplm_flush(sig_m);
    handler_close = kplm_close(sig_m);
    handler_seconds = mono_now() - t0;
    stop_putting = 1;
}

static void *killer(void *p) {
    unsigned ms = *(unsigned *)p;
    test_sleep_ms(ms);
    pthread_kill(main_thread, SIGTERM);
    return NULL;
}

static void random_sigterm_rounds(int shared) {
    if (shared) take_all_writer_slots();
    main_thread = pthread_self();
    install(closing_handler_random);
    int estate = 0, ok = 0;
    srand((unsigned)time(NULL));
    for (int round = 0; round < 8; round++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_DETAILED;
        cfg.export_timeout_ms = 2000;
        CHECK_OK(kplm_new(&cfg, &sig_m));
        msink ms;
        msink_init(&ms);
        ms.keep = 0;
        kplm_sink s = msink_sink(&ms, 0, 0, 1);
        CHECK_OK(kplm_set_sink(sig_m, &s));
        CHECK_OK(kplm_start(sig_m));
        kplm_metric *h = NULL;
        CHECK_OK(kplm_metric_get(sig_m, "A", NULL, NULL, NULL, &h));
        stop_putting = 0;
        handler_close = handler_flush = (kplm_status)-1;
        unsigned delay = 5 + (unsigned)(rand() % 40);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, killer, &delay) == 0);
        uint64_t accepted = 0;
        while (!stop_putting) {
            /* By names and by handle, alternately. */
            kplm_status st = (accepted & 1) ? kplm_metric_put(h, 1.0)
                                            : kplm_put(sig_m, "A", 1.0, NULL, NULL, NULL);
            if (st == KPLM_OK) accepted++;
            else CHECK_ST(st, KPLM_ECLOSED);
        }
        pthread_join(t, NULL);
        CHECK_MSG(handler_close == KPLM_ESTATE || handler_close == KPLM_OK,
                  "close in the handler returned %s", test_status_name(handler_close));
        /* Both refused inside a put, both done outside one. */
        CHECK_MSG(handler_flush == handler_close, "flush in the handler returned %s, close %s",
                  test_status_name(handler_flush), test_status_name(handler_close));
        CHECK_MSG(handler_seconds < 1.5, "close in the handler took %.3f s", handler_seconds);
        if (handler_close == KPLM_ESTATE) {
            estate++;
            CHECK_OK(kplm_close(sig_m));   /* the ordinary close, off the handler */
        } else {
            ok++;
        }
        const tacc *a = msink_find_acc(&ms, "A");
        CHECK_MSG(a != NULL && a->count == accepted, "exported %llu of %llu accepted puts",
                  a ? (unsigned long long)a->count : 0ULL, (unsigned long long)accepted);
        CHECK(ms.closes == 1);
        kplm_free(sig_m);
        CHECK(ms.closes == 1);
        msink_destroy(&ms);
    }
    printf("    8 rounds (%s path): close in the handler returned ESTATE %d times, OK %d times\n",
           shared ? "shared" : "writer-cell", estate, ok);
    if (shared) release_writer_slots();
}

static void sigterm_during_shared_puts(void) { random_sigterm_rounds(1); }
static void sigterm_during_cell_puts(void) { random_sigterm_rounds(0); }

/* ------------------------------------------------------------------------ */
/* 3. One time budget for close: a flush hangs in export on another thread,  */
/*    close must give up after export_timeout_ms in total (not 2x).          */
/* ------------------------------------------------------------------------ */

typedef struct {
    _Atomic int hang, in_export, closed, exports_ok;
    _Atomic unsigned long long exported;
} slow_sink;

static int slow_export(void *ud, const kplm_snapshot *s, size_t n) {
    slow_sink *k = ud;
    atomic_store(&k->in_export, 1);
    while (atomic_load(&k->hang)) test_sleep_ms(5);
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, "A") == 0) atomic_fetch_add(&k->exported, s[i].count);
    atomic_fetch_add(&k->exports_ok, 1);
    return 0;
}

static void slow_close(void *ud) { atomic_fetch_add(&((slow_sink *)ud)->closed, 1); }

static void *flush_in_thread(void *p) {
    kplm_status st = kplm_flush(p);
    CHECK(st == KPLM_OK || st == KPLM_ESINK);
    return NULL;
}

static int wait_flag(_Atomic int *flag, unsigned ms) {
    for (unsigned i = 0; i < ms / 5 && !atomic_load(flag); i++) test_sleep_ms(5);
    return atomic_load(flag);
}

static void close_has_one_budget(void) {
    slow_sink k;
    memset(&k, 0, sizeof k);
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.export_timeout_ms = 1000;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s;
    memset(&s, 0, sizeof s);
    s.user_data = &k;
    s.export_snapshots = slow_export;
    s.close = slow_close;
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    for (int i = 0; i < 300; i++) CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    atomic_store(&k.hang, 1);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, flush_in_thread, m) == 0);
    CHECK(wait_flag(&k.in_export, 5000));
    for (int i = 0; i < 700; i++) CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    double t0 = mono_now();
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    double took = mono_now() - t0;
    printf("    close with a hung export returned in %.3f s (export_timeout_ms 1000)\n", took);
    CHECK_MSG(took < 1.5, "close took %.3f s: more than 1.5 x export_timeout_ms", took);
    CHECK_ST(kplm_put(m, "A", 1.0, NULL, NULL, NULL), KPLM_ECLOSED);
    /* The sink comes back: the final export lands in the background, then
     * the sink closes, once. */
    atomic_store(&k.hang, 0);
    pthread_join(t, NULL);
    CHECK(wait_flag(&k.closed, 5000));
    CHECK_U64(atomic_load(&k.exported), 1000);
    CHECK_OK(kplm_close(m));   /* delivered: idempotent */
    kplm_free(m);
    CHECK(atomic_load(&k.closed) == 1);
}

/* The same bound for kplm_free (close, then discard): within ~1x, here with
 * the uploader's own periodic flush hung in export. */
static void free_has_one_budget(void) {
    slow_sink k;
    memset(&k, 0, sizeof k);
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 50;
    cfg.export_timeout_ms = 1000;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s;
    memset(&s, 0, sizeof s);
    s.user_data = &k;
    s.export_snapshots = slow_export;
    s.close = slow_close;
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    atomic_store(&k.hang, 1);
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK(wait_flag(&k.in_export, 5000));   /* the periodic flush hangs */
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    double t0 = mono_now();
    kplm_free(m);
    double took = mono_now() - t0;
    printf("    free with a hung export returned in %.3f s (export_timeout_ms 1000)\n", took);
    CHECK_MSG(took < 1.5, "free took %.3f s: more than 1.5 x export_timeout_ms", took);
    atomic_store(&k.hang, 0);
    /* The final export still lands, and the sink closes once (k lives on). */
    CHECK(wait_flag(&k.closed, 5000));
    CHECK_U64(atomic_load(&k.exported), 2);
    test_sleep_ms(50);
    CHECK(atomic_load(&k.closed) == 1);
}

/* ------------------------------------------------------------------------ */
/* 4. A failed final export is kept and retried; the sink closes once.       */
/* ------------------------------------------------------------------------ */

static kplm_manager *new_with(msink *ms, int with_record) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.export_timeout_ms = 2000;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s = msink_sink(ms, 1, with_record, 1);
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    return m;
}

static void failed_final_export_is_retried(void) {
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_with(&ms, 0);
    for (int i = 0; i < 1000; i++) CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    ms.fail_exports = 1;
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    CHECK(ms.export_calls == 1 && ms.closes == 0);   /* kept, sink still open */
    CHECK_ST(kplm_put(m, "A", 1.0, NULL, NULL, NULL), KPLM_ECLOSED);
    CHECK_ST(kplm_flush(m), KPLM_ECLOSED);
    CHECK_OK(kplm_close(m));                           /* retried: delivered */
    CHECK(ms.export_calls == 2 && ms.closes == 1);
    const tacc *a = msink_find_acc(&ms, "A");
    CHECK(a != NULL);
    CHECK_U64(a->count, 1000);
    CHECK_OK(kplm_close(m));                           /* nothing left to do */
    CHECK(ms.export_calls == 2 && ms.closes == 1);
    kplm_free(m);
    CHECK(ms.export_calls == 2 && ms.closes == 1);
    msink_check_clean(&ms);
    msink_destroy(&ms);
}

static void never_delivered_closes_at_free(void) {
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_with(&ms, 0);
    for (int i = 0; i < 1000; i++) CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    ms.fail_exports = -1;
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    CHECK_ST(kplm_close(m), KPLM_ESINK);               /* each close retries */
    CHECK(ms.export_calls == 2 && ms.closes == 0);
    kplm_free(m);              /* closes first (one more try), discards, closes the sink */
    CHECK(ms.export_calls == 3 && ms.closes == 1);
    CHECK(msink_find_acc(&ms, "A") == NULL);
    msink_destroy(&ms);
}

/* ------------------------------------------------------------------------ */
/* 5. Puts inside `record` are recorded and exported, without recursion.     */
/* ------------------------------------------------------------------------ */

static void put_in_record(msink *ms, const kplm_event *e) {
    /* Would recurse for ever if this put called record again. */
    kplm_status st = kplm_put(ms->hook_data, "Inner", 2.0, NULL, NULL, NULL);
    CHECK_MSG(st == KPLM_OK, "put in record (for %s) returned %s", e->name, test_status_name(st));
}

static void record_does_not_recurse(void) {
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_with(&ms, 1);
    ms.hook_data = m;
    ms.on_record = put_in_record;
    for (int i = 0; i < 100; i++) CHECK_OK(kplm_put(m, "Outer", 1.0, NULL, NULL, NULL));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "Outer", NULL, NULL, NULL, &h));
    for (int i = 0; i < 50; i++) CHECK_OK(kplm_metric_put(h, 1.0));
    CHECK_U64(msink_records(&ms), 150);               /* one per outer put */
    CHECK_OK(kplm_close(m));
    const tacc *in = msink_find_acc(&ms, "Inner");
    const tacc *out = msink_find_acc(&ms, "Outer");
    CHECK(in != NULL && out != NULL);
    CHECK_U64(out->count, 150);
    CHECK_U64(in->count, 150);
    CHECK_DEQ(in->sum, 300.0);
    kplm_free(m);
    msink_check_clean(&ms);
    msink_destroy(&ms);
}

/* ------------------------------------------------------------------------ */
/* What held before and keeps holding.                                       */
/* ------------------------------------------------------------------------ */

static kplm_status export_cb_close, export_cb_flush;
static kplm_status export_cb_put;

static void reenter_in_export(msink *ms, const kplm_snapshot *s, size_t n) {
    (void)s;
    (void)n;
    kplm_manager *m = ms->hook_data;
    export_cb_close = kplm_close(m);
    export_cb_flush = kplm_flush(m);
    kplm_free(m);   /* does nothing from a callback */
    export_cb_put = kplm_put(m, "FromExport", 1.0, NULL, NULL, NULL);
}

static void callbacks_get_estate_and_may_put(void) {
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_with(&ms, 0);
    ms.hook_data = m;
    ms.on_export = reenter_in_export;
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_flush(m));
    CHECK_ST(export_cb_close, KPLM_ESTATE);
    CHECK_ST(export_cb_flush, KPLM_ESTATE);
    CHECK_OK(export_cb_put);   /* a put from an export callback keeps working */
    ms.on_export = NULL;
    CHECK_OK(kplm_close(m));
    const tacc *a = msink_find_acc(&ms, "FromExport");
    CHECK(a != NULL && a->count == 1);
    CHECK(ms.closes == 1);
    kplm_free(m);
    msink_destroy(&ms);
}

static void close_is_idempotent_once_delivered(void) {
    msink ms;
    msink_init(&ms);
    kplm_manager *m = new_with(&ms, 0);
    CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    CHECK_OK(kplm_close(m));
    CHECK_OK(kplm_close(m));
    CHECK(ms.export_calls == 1 && ms.closes == 1);
    kplm_free(m);
    CHECK(ms.export_calls == 1 && ms.closes == 1);
    msink_destroy(&ms);
}

/* A close whose final export is slower than the timeout returns ESINK after
 * about one budget; the export lands later, and the sink closes once. */
static void slow_final_export_lands_in_background(void) {
    slow_sink k;
    memset(&k, 0, sizeof k);
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.export_timeout_ms = 500;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink s;
    memset(&s, 0, sizeof s);
    s.user_data = &k;
    s.export_snapshots = slow_export;
    s.close = slow_close;
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    for (int i = 0; i < 10; i++) CHECK_OK(kplm_put(m, "A", 1.0, NULL, NULL, NULL));
    atomic_store(&k.hang, 1);
    double t0 = mono_now();
    CHECK_ST(kplm_close(m), KPLM_ESINK);
    double took = mono_now() - t0;
    printf("    close with a hung final export returned in %.3f s (export_timeout_ms 500)\n", took);
    CHECK_MSG(took < 0.75, "close took %.3f s", took);
    CHECK(atomic_load(&k.closed) == 0);
    atomic_store(&k.hang, 0);
    CHECK(wait_flag(&k.closed, 5000));
    CHECK_U64(atomic_load(&k.exported), 10);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    CHECK(atomic_load(&k.closed) == 1);
}

int main(void) {
    int failures = 0;
    RUN(close_in_handler_inside_put_is_estate);
    RUN(sigterm_during_shared_puts);
    RUN(sigterm_during_cell_puts);
    RUN(close_has_one_budget);
    RUN(free_has_one_budget);
    RUN(failed_final_export_is_retried);
    RUN(never_delivered_closes_at_free);
    RUN(record_does_not_recurse);
    RUN(callbacks_get_estate_and_may_put);
    RUN(close_is_idempotent_once_delivered);
    RUN(slow_final_export_lands_in_background);
    return failures ? 1 : 0;
}
