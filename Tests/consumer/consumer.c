/* Consumer of an installed kplm: includes <kplm.h>, links -lkplm, records a
 * few observations at DETAILED into a memory-accumulating callback sink,
 * flushes, closes and checks what arrived. Exit 0 on success. */
#include <kplm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

#define CHECK_OK(call)                                                      \
    do {                                                                    \
        kplm_status st_ = (call);                                           \
        if (st_ != KPLM_OK) {                                               \
            fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #call, \
                    kplm_status_string(st_));                               \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

typedef struct {
    int opened, closed, exports;
    uint64_t puts_count;     /* UserRecordsPut, stream s, shard 0 */
    double puts_sum;
    uint64_t bytes_count;    /* UserRecordsDataPut, stream s */
    double bytes_sum, bytes_min, bytes_max;
    int other;
} memory_sink;

static int on_open(void *ud) { ((memory_sink *)ud)->opened++; return 0; }
static void on_close(void *ud) { ((memory_sink *)ud)->closed++; }

static int on_export(void *ud, const kplm_snapshot *s, size_t n) {
    memory_sink *m = ud;
    m->exports++;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].name, "UserRecordsPut") == 0 && s[i].dimension_count == 2 &&
            strcmp(s[i].dimensions[0].name, "stream") == 0 &&
            strcmp(s[i].dimensions[0].value, "s") == 0 &&
            strcmp(s[i].dimensions[1].name, "shard") == 0 &&
            strcmp(s[i].dimensions[1].value, "shardId-000000000000") == 0) {
            m->puts_count += s[i].count;
            m->puts_sum += s[i].sum;
        } else if (strcmp(s[i].name, "UserRecordsDataPut") == 0 &&
                   s[i].dimension_count == 1 &&
                   strcmp(s[i].dimensions[0].value, "s") == 0) {
            m->bytes_count += s[i].count;
            m->bytes_sum += s[i].sum;
            m->bytes_min = s[i].min;
            m->bytes_max = s[i].max;
        } else {
            m->other++;
        }
    }
    return 0;
}

int main(void) {
    printf("kplm %s (header %d.%d.%d)\n", kplm_version(), KPLM_VERSION_MAJOR,
           KPLM_VERSION_MINOR, KPLM_VERSION_PATCH);
    CHECK(strcmp(kplm_version(), "1.2.0") == 0);

    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;

    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK(m != NULL);

    memory_sink mem;
    memset(&mem, 0, sizeof mem);
    kplm_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.user_data = &mem;
    sink.open = on_open;
    sink.export_snapshots = on_export;
    sink.close = on_close;
    CHECK_OK(kplm_set_sink(m, &sink));
    CHECK_OK(kplm_start(m));
    CHECK(mem.opened == 1);

    for (int i = 0; i < 10; i++)
        CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "s", "shardId-000000000000", NULL));
    kplm_metric *bytes = NULL;
    CHECK_OK(kplm_metric_get(m, "UserRecordsDataPut", "s", NULL, NULL, &bytes));
    CHECK(bytes != NULL);
    CHECK_OK(kplm_metric_put(bytes, 100.0));
    CHECK_OK(kplm_metric_put(bytes, 300.0));
    CHECK_OK(kplm_metric_put(bytes, 200.0));

    CHECK_OK(kplm_flush(m));
    CHECK(mem.exports == 1);
    CHECK(mem.puts_count == 10 && mem.puts_sum == 10.0);
    CHECK(mem.bytes_count == 3 && mem.bytes_sum == 600.0);
    CHECK(mem.bytes_min == 100.0 && mem.bytes_max == 300.0);
    CHECK(mem.other == 0);

    CHECK(kplm_put(m, "", 1.0, NULL, NULL, NULL) == KPLM_EINVAL);

    CHECK_OK(kplm_close(m));
    CHECK(mem.closed == 1);
    CHECK(mem.exports == 1); /* nothing new for the final flush */
    CHECK(kplm_put(m, "UserRecordsPut", 1.0, "s", NULL, NULL) == KPLM_ECLOSED);
    kplm_free(m);

    printf("consumer OK: %llu puts, %llu byte observations (sum %.0f)\n",
           (unsigned long long)mem.puts_count, (unsigned long long)mem.bytes_count,
           mem.bytes_sum);
    return 0;
}
