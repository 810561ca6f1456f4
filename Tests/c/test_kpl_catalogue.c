/* The KPL metric catalogue through the C ABI, against the one table
 * Tests/kpl_catalogue.csv: every row's KPLM_METRIC_* macro must expand to
 * its name (a macro missing from kplm.h does not compile), and the library
 * (KPLMetrics.swift behind kplm_metric_unit / kplm_metric_level) must give
 * its unit and KPL level. CMake turns the table into kpl_catalogue_rows.h,
 * one KPL_ROW(macro, name, unit, level) per row. That the header has no
 * KPL macro the table lacks is checked by Tests/python/test_kpl_catalogue.py. */
#include "test_support.h"

#include <string.h>

typedef struct {
    const char *macro;       /* "KPLM_METRIC_..." */
    const char *macro_value; /* what the macro expands to */
    const char *name, *unit, *level;
} kpl_row;

static const kpl_row rows[] = {
#define KPL_ROW(macro, name, unit, level) {#macro, macro, name, unit, level},
#include "kpl_catalogue_rows.h"
#undef KPL_ROW
};
static const size_t nrows = sizeof rows / sizeof rows[0];

static void macros_expand_to_the_names(void) {
    CHECK(nrows > 0);
    for (size_t i = 0; i < nrows; i++) {
        CHECK_MSG(strcmp(rows[i].macro_value, rows[i].name) == 0, "%s is \"%s\", the table says \"%s\"",
                  rows[i].macro, rows[i].macro_value, rows[i].name);
        for (size_t j = 0; j < i; j++)
            CHECK_MSG(strcmp(rows[i].name, rows[j].name) != 0, "%s twice in the table", rows[i].name);
    }
}

static void library_units_and_levels(void) {
    for (size_t i = 0; i < nrows; i++) {
        const kpl_row *r = &rows[i];
        char copy[KPLM_NAME_MAX + 1]; /* byte equality, not pointer identity */
        snprintf(copy, sizeof copy, "%s", r->name);
        kplm_unit unit = kplm_metric_unit(copy);
        CHECK_MSG(unit != KPLM_UNIT_NONE && strcmp(kplm_unit_name(unit), r->unit) == 0,
                  "kplm_metric_unit(%s) is %d (%s), the table says %s", r->name, (int)unit,
                  kplm_unit_name(unit), r->unit);
        kplm_level want = strcmp(r->level, "Summary") == 0    ? KPLM_LEVEL_SUMMARY
                          : strcmp(r->level, "Detailed") == 0 ? KPLM_LEVEL_DETAILED
                                                              : KPLM_LEVEL_NONE;
        CHECK_MSG(want != KPLM_LEVEL_NONE, "%s: level \"%s\" is not Summary or Detailed", r->name, r->level);
        CHECK_MSG(kplm_metric_level(copy) == want, "kplm_metric_level(%s) is %d, the table says %s", r->name,
                  (int)kplm_metric_level(copy), r->level);
    }
}

/* kplm's own metrics are not KPL metrics: no unit, level DETAILED. */
static void own_metrics_are_not_in_the_catalogue(void) {
    const char *own[] = {KPLM_METRIC_REFUSED, KPLM_METRIC_SINK_DROPPED};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        CHECK(kplm_metric_unit(own[i]) == KPLM_UNIT_NONE);
        CHECK(kplm_metric_level(own[i]) == KPLM_LEVEL_DETAILED);
        for (size_t j = 0; j < nrows; j++) CHECK(strcmp(rows[j].name, own[i]) != 0);
    }
}

int main(void) {
    int failures = 0;
    printf("%zu KPL metrics in the table\n", nrows);
    RUN(macros_expand_to_the_names);
    RUN(library_units_and_levels);
    RUN(own_metrics_are_not_in_the_catalogue);
    return failures ? 1 : 0;
}
