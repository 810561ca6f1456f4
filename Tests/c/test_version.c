/* kplm_version() and the version macros agree. */
#include "test_support.h"

#include <string.h>

static void version_string_matches_macros(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", KPLM_VERSION_MAJOR, KPLM_VERSION_MINOR,
             KPLM_VERSION_PATCH);
    const char *v = kplm_version();
    CHECK(v != NULL);
    CHECK_STR(v, want);
    /* Static string: the same text on every call. */
    CHECK_STR(kplm_version(), v);
}

static void version_number_macro(void) {
    CHECK(KPLM_VERSION_NUMBER ==
          KPLM_VERSION_MAJOR * 10000 + KPLM_VERSION_MINOR * 100 + KPLM_VERSION_PATCH);
    CHECK(KPLM_VERSION_NUMBER == 10200); /* 1.2.0 */
}

static void abi_constants(void) {
    /* Values fixed by the header; bindings (ctypes...) depend on them. */
    CHECK(KPLM_LEVEL_NONE == 0 && KPLM_LEVEL_SUMMARY == 1 && KPLM_LEVEL_DETAILED == 2);
    CHECK(KPLM_OK == 0 && KPLM_EINVAL == 1 && KPLM_ESTATE == 2 && KPLM_ECLOSED == 3 &&
          KPLM_ELIMIT == 4 && KPLM_ENOMEM == 5 && KPLM_ESINK == 6);
    CHECK(KPLM_NAME_MAX == 255);
    CHECK(KPLM_DIMENSION_VALUE_MAX == 1024);
    CHECK(KPLM_WINDOW_SECONDS_MIN == 1 && KPLM_WINDOW_SECONDS_MAX == 3600);
    CHECK_STR(KPLM_METRIC_REFUSED, "KplmMetricsRefused");
}

int main(void) {
    int failures = 0;
    RUN(version_string_matches_macros);
    RUN(version_number_macro);
    RUN(abi_constants);
    return failures ? 1 : 0;
}
