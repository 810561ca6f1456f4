/* kplm_status_string: never NULL, one readable name per status. */
#include "test_support.h"

#include <limits.h>
#include <string.h>

static void known_statuses(void) {
    static const struct {
        kplm_status st;
        const char *prefix;
    } all[] = {
        {KPLM_OK, "KPLM_OK"},         {KPLM_EINVAL, "KPLM_EINVAL"},
        {KPLM_ESTATE, "KPLM_ESTATE"}, {KPLM_ECLOSED, "KPLM_ECLOSED"},
        {KPLM_ELIMIT, "KPLM_ELIMIT"}, {KPLM_ENOMEM, "KPLM_ENOMEM"},
        {KPLM_ESINK, "KPLM_ESINK"},
    };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = kplm_status_string(all[i].st);
        CHECK_MSG(s != NULL, "kplm_status_string(%d) is NULL", (int)all[i].st);
        CHECK_MSG(s[0] != '\0', "kplm_status_string(%d) is empty", (int)all[i].st);
        /* The header documents the form "KPLM_EINVAL: ...". */
        size_t pl = strlen(all[i].prefix);
        CHECK_MSG(strncmp(s, all[i].prefix, pl) == 0 &&
                      (s[pl] == '\0' || s[pl] == ':' || s[pl] == ' '),
                  "kplm_status_string(%d) = \"%s\" does not name %s", (int)all[i].st, s,
                  all[i].prefix);
        printf("  %d: %s\n", (int)all[i].st, s);
        for (size_t j = 0; j < i; j++)
            CHECK_MSG(strcmp(s, kplm_status_string(all[j].st)) != 0,
                      "statuses %d and %d have the same string", (int)all[i].st,
                      (int)all[j].st);
    }
}

static void unknown_statuses(void) {
    int values[] = {7, 8, 42, 255, 1000, INT_MAX, -1, INT_MIN};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const char *s = kplm_status_string((kplm_status)values[i]);
        CHECK_MSG(s != NULL, "kplm_status_string(%d) is NULL", values[i]);
        CHECK_MSG(s[0] != '\0', "kplm_status_string(%d) is empty", values[i]);
    }
}

int main(void) {
    int failures = 0;
    RUN(known_statuses);
    RUN(unknown_statuses);
    return failures ? 1 : 0;
}
