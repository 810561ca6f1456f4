/* kplm_config_init defaults and kplm_new's validation of a config. */
#include "test_support.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A pointer that is not NULL, to see *out being reset on failure. */
static kplm_manager *const SENTINEL = (kplm_manager *)(uintptr_t)0x1000;

static void defaults(void) {
    kplm_config cfg;
    memset(&cfg, 0xA5, sizeof cfg);
    kplm_config_init(&cfg);
    CHECK_U64(cfg.struct_size, sizeof(kplm_config));
    CHECK(cfg.level == KPLM_LEVEL_NONE);
    CHECK_DEQ(cfg.upload_interval_ms, 60000.0);
    CHECK_DEQ(cfg.export_timeout_ms, 10000.0);
    CHECK_U64(cfg.window_seconds, 60);
    CHECK(cfg.clock == NULL);
    CHECK(cfg.clock_user_data == NULL);
    CHECK_U64(cfg.max_metrics, 100000);
    kplm_config_init(NULL); /* ignored, no crash */
}

static void new_with_defaults(void) {
    kplm_manager *m = SENTINEL;
    CHECK_OK(kplm_new(NULL, &m));
    CHECK(m != NULL && m != SENTINEL);
    kplm_free(m);

    kplm_config cfg;
    kplm_config_init(&cfg);
    m = SENTINEL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK(m != NULL && m != SENTINEL);
    kplm_free(m);
}

static void expect_einval(const kplm_config *cfg, const char *what) {
    kplm_manager *m = SENTINEL;
    kplm_status st = kplm_new(cfg, &m);
    CHECK_MSG(st == KPLM_EINVAL, "kplm_new with %s returned %s, expected KPLM_EINVAL",
              what, test_status_name(st));
    CHECK_MSG(m == NULL, "kplm_new with %s left *out non-NULL", what);
}

static void expect_ok(const kplm_config *cfg, const char *what) {
    kplm_manager *m = SENTINEL;
    kplm_status st = kplm_new(cfg, &m);
    CHECK_MSG(st == KPLM_OK, "kplm_new with %s returned %s, expected KPLM_OK", what,
              test_status_name(st));
    CHECK_MSG(m != NULL && m != SENTINEL, "kplm_new with %s gave no manager", what);
    kplm_free(m);
}

static void null_out(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    CHECK_ST(kplm_new(&cfg, NULL), KPLM_EINVAL);
    CHECK_ST(kplm_new(NULL, NULL), KPLM_EINVAL);
}

static void bad_struct_size(void) {
    /* offsetof(kplm_config, export_timeout_ms) is the first (0.1.0) layout's
     * size and is accepted: see legacy_struct_size; 0 means the 1.0 layout
     * and larger sizes a newer one (Tests/abi). */
    uint32_t sizes[] = {1, 4, (uint32_t)sizeof(kplm_config) - 1,
                        (uint32_t)offsetof(kplm_config, export_timeout_ms) - 4,
                        (uint32_t)offsetof(kplm_config, export_timeout_ms) + 4,
                        (uint32_t)sizeof(kplm_config) + 1,
                        4096, UINT32_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_DETAILED;
        cfg.struct_size = sizes[i];
        char what[64];
        snprintf(what, sizeof what, "struct_size %u", (unsigned)sizes[i]);
        expect_einval(&cfg, what);
    }
}

/* A caller built against the first layout (no export_timeout_ms) passes a
 * shorter struct: it is accepted, read only up to its end, and the missing
 * field gets its default. The struct is placed at the very end of a page
 * followed by an inaccessible page, so reading past it would crash. */
static void legacy_struct_size(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *area = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(area != MAP_FAILED);
    CHECK(mprotect(area + page, page, PROT_NONE) == 0);
    size_t legacy = offsetof(kplm_config, export_timeout_ms);
    kplm_config full;
    kplm_config_init(&full);
    full.struct_size = (uint32_t)legacy;
    full.level = KPLM_LEVEL_DETAILED;
    unsigned char *at = area + page - legacy;
    memcpy(at, &full, legacy);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new((const kplm_config *)(const void *)at, &m));
    CHECK(m != NULL);
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1, NULL, NULL, NULL));
    kplm_free(m);
    munmap(area, 2 * page);
}

static void bad_export_timeout(void) {
    double timeouts[] = {0, -1, NAN, INFINITY};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.export_timeout_ms = timeouts[i];
        char what[64];
        snprintf(what, sizeof what, "export_timeout_ms %g", timeouts[i]);
        expect_einval(&cfg, what);
    }
}

static void bad_level(void) {
    int levels[] = {3, 4, 99, -1, 0x7fffffff};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = (kplm_level)levels[i];
        char what[64];
        snprintf(what, sizeof what, "level %d", levels[i]);
        expect_einval(&cfg, what);
    }
}

static void bad_interval(void) {
    double values[] = {0.0, -0.0, -1.0, -60000.0, NAN, INFINITY, -INFINITY};
    const char *names[] = {"0", "-0", "-1", "-60000", "NaN", "+inf", "-inf"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_DETAILED;
        cfg.upload_interval_ms = values[i];
        char what[64];
        snprintf(what, sizeof what, "upload_interval_ms %s", names[i]);
        expect_einval(&cfg, what);
    }
    /* Also refused at NONE: the config is validated whatever the level. */
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.upload_interval_ms = 0.0;
    expect_einval(&cfg, "upload_interval_ms 0 at level NONE");
}

static void bad_window(void) {
    uint32_t values[] = {0, 3601, 86400, UINT32_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_SUMMARY;
        cfg.window_seconds = values[i];
        char what[64];
        snprintf(what, sizeof what, "window_seconds %u", (unsigned)values[i]);
        expect_einval(&cfg, what);
    }
}

static void bad_max_metrics(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.max_metrics = 0;
    expect_einval(&cfg, "max_metrics 0");
}

static void accepted_bounds(void) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_SUMMARY;
    expect_ok(&cfg, "level SUMMARY");
    cfg.level = KPLM_LEVEL_DETAILED;
    expect_ok(&cfg, "level DETAILED");
    cfg.window_seconds = 1;
    expect_ok(&cfg, "window_seconds 1");
    cfg.window_seconds = 3600;
    expect_ok(&cfg, "window_seconds 3600");
    cfg.max_metrics = 1;
    expect_ok(&cfg, "max_metrics 1");
    cfg.max_metrics = UINT32_MAX;
    expect_ok(&cfg, "max_metrics UINT32_MAX");
    cfg.upload_interval_ms = 0.5;
    expect_ok(&cfg, "upload_interval_ms 0.5");
    cfg.upload_interval_ms = 1e12;
    expect_ok(&cfg, "upload_interval_ms 1e12");
    tclock clk;
    tclock_set(&clk, 5.0);
    cfg.clock = tclock_read;
    cfg.clock_user_data = &clk;
    expect_ok(&cfg, "an injected clock");
}

/* Any finite interval > 0 is valid, however large: starting and closing such
 * a manager must not trap on a conversion. */
static void huge_interval_starts(void) {
    double values[] = {1e12, 1e300, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        kplm_config cfg;
        kplm_config_init(&cfg);
        cfg.level = KPLM_LEVEL_DETAILED;
        cfg.upload_interval_ms = values[i];
        kplm_manager *m = NULL;
        CHECK_OK(kplm_new(&cfg, &m));
        msink ms;
        msink_init(&ms);
        kplm_sink sink = msink_sink(&ms, 1, 0, 1);
        CHECK_OK(kplm_set_sink(m, &sink));
        CHECK_OK(kplm_start(m));
        CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL));
        CHECK_OK(kplm_flush(m));
        CHECK_OK(kplm_close(m));
        CHECK(ms.exports_ok == 1);
        CHECK(ms.closes == 1);
        kplm_free(m);
        msink_destroy(&ms);
    }
}

int main(void) {
    int failures = 0;
    RUN(defaults);
    RUN(new_with_defaults);
    RUN(null_out);
    RUN(bad_struct_size);
    RUN(legacy_struct_size);
    RUN(bad_export_timeout);
    RUN(bad_level);
    RUN(bad_interval);
    RUN(bad_window);
    RUN(bad_max_metrics);
    RUN(accepted_bounds);
    RUN(huge_interval_starts);
    return failures ? 1 : 0;
}
