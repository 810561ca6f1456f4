/* fork() with a live manager: the parent keeps working; in the child, the
 * inherited manager refuses every call with KPLM_ESTATE (its locks may be
 * held by parent threads that do not exist in the child) and never
 * deadlocks, while a manager created in the child works normally (also
 * when the fork lands while another thread allocates keys' blocks). */
#include "test_support.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop_putting;

static void *putter(void *arg) {
    kplm_manager *m = arg;
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsPut", "s", NULL, NULL, &h));
    while (!atomic_load(&stop_putting)) {
        /* New keys keep the registry lock busy; handles and flushes the rest. */
        for (int i = 0; i < 100; i++) {
            char name[32];
            snprintf(name, sizeof name, "K%d", i);
            CHECK_OK(kplm_put(m, name, 1, "s", "shard-1", NULL));
            CHECK_OK(kplm_metric_put(h, 2));
        }
    }
    return NULL;
}

/* Managers made and freed in a loop: their keys take header lines and
 * cells from the block pools and give them back, so a fork often finds a
 * pool in use (the pools' atfork handler keeps the child's copy usable). */
static void *churner(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_putting)) {
        kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, NULL);
        cfg.upload_interval_ms = 3600e3;
        kplm_manager *m = NULL;
        CHECK_OK(kplm_new(&cfg, &m));
        CHECK_OK(kplm_start(m));
        for (int i = 0; i < 50; i++) {
            char shard[32];
            snprintf(shard, sizeof shard, "shard-%d", i);
            CHECK_OK(kplm_put(m, "Churn", 1, "s", shard, NULL));
        }
        CHECK_OK(kplm_close(m));
        kplm_free(m);
    }
    return NULL;
}

static int count_export(void *ud, const kplm_snapshot *s, size_t n) {
    atomic_ullong *total = ud;
    for (size_t i = 0; i < n; i++) atomic_fetch_add(total, s[i].count);
    return 0;
}

static int visit_nothing(void *ud, const kplm_snapshot *s) { (void)ud; (void)s; return 0; }

/* Runs in the child: returns the exit status. */
static int child_main(kplm_manager *inherited, kplm_metric *inherited_handle) {
    kplm_metric *h = NULL;
    /* Every call on the inherited manager is refused, without blocking. */
    if (kplm_put(inherited, "UserRecordsPut", 1, NULL, NULL, NULL) != KPLM_ESTATE) return 10;
    if (kplm_metric_put(inherited_handle, 1) != KPLM_ESTATE) return 11;
    if (kplm_metric_get(inherited, "X", NULL, NULL, NULL, &h) != KPLM_ESTATE || h != NULL) return 12;
    if (kplm_flush(inherited) != KPLM_ESTATE) return 13;
    if (kplm_snapshots(inherited, visit_nothing, NULL) != KPLM_ESTATE) return 14;
    if (kplm_close(inherited) != KPLM_ESTATE) return 15;
    kplm_free(inherited);   /* leaks it: must not touch its locks */

    /* A manager created in the child works, uploader thread included. */
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 10;
    kplm_manager *m = NULL;
    if (kplm_new(&cfg, &m) != KPLM_OK) return 20;
    atomic_ullong exported = 0;
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = &exported;
    sink.export_snapshots = count_export;
    if (kplm_set_sink(m, &sink) != KPLM_OK) return 21;
    if (kplm_start(m) != KPLM_OK) return 22;
    for (int i = 0; i < 1000; i++)
        if (kplm_put(m, "ChildPut", 1, "s", NULL, NULL) != KPLM_OK) return 23;
    if (kplm_close(m) != KPLM_OK) return 24;
    kplm_free(m);
    return atomic_load(&exported) == 1000 ? 0 : 25;
}

static void fork_while_busy(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 1;   /* the uploader flushes all the time */
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    atomic_ullong exported = 0;
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = &exported;
    sink.export_snapshots = count_export;
    CHECK_OK(kplm_set_sink(m, &sink));
    CHECK_OK(kplm_start(m));
    kplm_metric *h = NULL;
    CHECK_OK(kplm_metric_get(m, "Handle", NULL, NULL, NULL, &h));

    atomic_store(&stop_putting, 0);
    pthread_t threads[2], churning;
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&threads[i], NULL, putter, m) == 0);
    CHECK(pthread_create(&churning, NULL, churner, NULL) == 0);
    /* Forks start once the first flushes are done: a fork while another
     * thread runs one of the Swift runtime's first-time initialisations (of
     * a type a flush uses) leaves that initialisation unfinished in the
     * child for ever, a limitation of the runtime documented in the README.
     * From then on the parent is as busy as ever. */
    test_sleep_ms(100);

    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(20);   /* a deadlock in the child kills it: a failure */
            _exit(child_main(m, h));
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status), "child of round %d died (signal %d)", round,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        CHECK_MSG(WEXITSTATUS(status) == 0, "child of round %d exited with %d", round,
                  WEXITSTATUS(status));
        /* The parent is unaffected. */
        CHECK_OK(kplm_put(m, "ParentPut", 1, NULL, NULL, NULL));
        test_sleep_ms(5);
    }
    atomic_store(&stop_putting, 1);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    pthread_join(churning, NULL);
    CHECK_OK(kplm_close(m));
    CHECK(atomic_load(&exported) > 0);
    kplm_free(m);
}

/* The key index's read sections in a child: parent threads putting by names
 * are inside one most of the time, so at fork their writer indices' words
 * are odd. In the child those indices go to new threads, and a flush that
 * removes idle keys waits for every open section before it frees what it
 * unlinked: it must not wait for a vanished thread (the words are reset at
 * fork), and the new threads' lookups must be protected again. */
static double child_clock_now = 1000.0;
static double child_clock(void *ud) { (void)ud; return child_clock_now; }

static void *child_putter(void *arg) {
    kplm_manager *m = arg;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 200; i++) {
            char stream[32];
            snprintf(stream, sizeof stream, "c%d", i);
            if (kplm_put(m, "ChildChurn", 1, stream, NULL, NULL) != KPLM_OK) return (void *)1;
        }
    return NULL;
}

static int child_churns_keys(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.upload_interval_ms = 3600e3;
    cfg.window_seconds = 1;
    cfg.clock = child_clock;
    kplm_manager *m = NULL;
    if (kplm_new(&cfg, &m) != KPLM_OK) return 30;
    atomic_ullong exported = 0;
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = &exported;
    sink.export_snapshots = count_export;
    if (kplm_set_sink(m, &sink) != KPLM_OK || kplm_start(m) != KPLM_OK) return 31;
    for (int cycle = 0; cycle < 3; cycle++) {
        /* Several new threads: they are given the vanished putters' indices. */
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[i], NULL, child_putter, m) != 0) return 32;
        for (int i = 0; i < 4; i++) {
            void *r = NULL;
            pthread_join(t[i], &r);
            if (r != NULL) return 33;
        }
        if (kplm_flush(m) != KPLM_OK) return 34;
        child_clock_now += 3;                       /* every key idle */
        if (kplm_flush(m) != KPLM_OK) return 35;    /* removes them: waits for readers */
    }
    if (kplm_close(m) != KPLM_OK) return 36;
    kplm_free(m);
    return atomic_load(&exported) == 3ull * 4 * 3 * 200 ? 0 : 37;
}

static void fork_while_putting_by_names(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    atomic_store(&stop_putting, 0);
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&threads[i], NULL, putter, m) == 0);
    test_sleep_ms(100);   /* past the first-time initialisations (see above) */
    for (int round = 0; round < 10; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(20);   /* a hang in the child kills it: a failure */
            _exit(child_churns_keys());
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child of round %d: %s %d", round,
                  WIFEXITED(status) ? "exit status" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        test_sleep_ms(5);
    }
    atomic_store(&stop_putting, 1);
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN_T(fork_while_busy, 120);
    RUN_T(fork_while_putting_by_names, 120);
    return failures ? 1 : 0;
}
