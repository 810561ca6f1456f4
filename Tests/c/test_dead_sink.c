/* A sink that stops answering: puts and other threads are never blocked by
 * it, flush and close give up after export_timeout_ms with KPLM_ESINK, and
 * nothing is lost: when the sink answers again, the final export and the
 * sink's close callback still happen. */
#include "test_support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

typedef struct {
    atomic_int hang;          /* export blocks while set */
    atomic_int in_export;     /* an export is blocked */
    atomic_ullong exported;   /* observations exported */
    atomic_int closed;        /* close callback ran */
    atomic_int closed_while_exporting;
} dead_sink;

static int dead_export(void *ud, const kplm_snapshot *s, size_t n) {
    dead_sink *d = ud;
    atomic_store(&d->in_export, 1);
    while (atomic_load(&d->hang)) test_sleep_ms(1);
    for (size_t i = 0; i < n; i++) atomic_fetch_add(&d->exported, s[i].count);
    atomic_store(&d->in_export, 0);
    return 0;
}

static void dead_close(void *ud) {
    dead_sink *d = ud;
    if (atomic_load(&d->in_export)) atomic_store(&d->closed_while_exporting, 1);
    atomic_store(&d->closed, 1);
}

static kplm_manager *make(dead_sink *d) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 3600e3;
    cfg.export_timeout_ms = 100;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = d;
    sink.export_snapshots = dead_export;
    sink.close = dead_close;
    CHECK_OK(kplm_set_sink(m, &sink));
    CHECK_OK(kplm_start(m));
    return m;
}

static void *flush_thread(void *arg) {
    CHECK_OK(kplm_flush(arg));
    return NULL;
}

static bool wait_for(atomic_int *flag, unsigned ms) {
    for (unsigned i = 0; i < ms && !atomic_load(flag); i++) test_sleep_ms(1);
    return atomic_load(flag);
}

static void flush_behind_a_hung_export(void) {
    dead_sink d = {0};
    kplm_manager *m = make(&d);
    CHECK_OK(kplm_put(m, "A", 1, NULL, NULL, NULL));
    atomic_store(&d.hang, 1);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, flush_thread, m) == 0);
    CHECK(wait_for(&d.in_export, 5000));
    for (int i = 0; i < 10000; i++) CHECK_OK(kplm_put(m, "B", 1, NULL, NULL, NULL));
    double t0 = test_wall_now();
    CHECK_ST(kplm_flush(m), KPLM_ESINK);                 /* timed out, not hung */
    CHECK_MSG(test_wall_now() - t0 < 10, "flush waited %.1f s", test_wall_now() - t0);
    atomic_store(&d.hang, 0);
    pthread_join(t, NULL);
    CHECK_OK(kplm_flush(m));
    CHECK_U64(atomic_load(&d.exported), 10001);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

static void close_with_a_dead_sink(void) {
    dead_sink d = {0};
    kplm_manager *m = make(&d);
    for (int i = 0; i < 500; i++) CHECK_OK(kplm_put(m, "A", 1, "s", NULL, NULL));
    atomic_store(&d.hang, 1);
    double t0 = test_wall_now();
    CHECK_ST(kplm_close(m), KPLM_ESINK);                 /* bounded */
    CHECK_MSG(test_wall_now() - t0 < 10, "close waited %.1f s", test_wall_now() - t0);
    CHECK_ST(kplm_put(m, "A", 1, "s", NULL, NULL), KPLM_ECLOSED);
    CHECK(!atomic_load(&d.closed));                     /* export still running */
    /* The sink answers again: the final export lands, then close runs. */
    atomic_store(&d.hang, 0);
    CHECK(wait_for(&d.closed, 5000));
    CHECK(!atomic_load(&d.closed_while_exporting));
    CHECK_U64(atomic_load(&d.exported), 500);
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN(flush_behind_a_hung_export);
    RUN(close_with_a_dead_sink);
    return failures ? 1 : 0;
}
