/* max_metrics bounds memory: a put refused with KPLM_ELIMIT keeps nothing.
 *
 * Two scenarios, each measured in a fresh forked process so that neither
 * inherits the other's heap:
 *  - "full": a manager with max_metrics 1,000 gets exactly 1,000 distinct
 *    keys (its cap, nothing refused);
 *  - "flooded": the same manager gets the same 1,000 keys, then 199,000 more
 *    distinct keys, all refused.
 * The resident-set growth of "flooded" may exceed that of "full" by at most
 * REFUSAL_MARGIN: were a refusal to keep even a few bytes (a registry entry,
 * a key string, a bucket), 199,000 of them would add megabytes. Then, with a
 * sink, the refusals exported under KPLM_METRIC_REFUSED must equal the number
 * of refusals exactly (count and sum), and every accepted key its puts.
 * The memory comparison is skipped under ASan and TSan (ASan's quarantine
 * keeps freed memory on purpose); the exact counts are always checked.
 */
#define _GNU_SOURCE
#include "test_support.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CAP_SANITIZED 1
#endif
#endif
#ifndef CAP_SANITIZED
#define CAP_SANITIZED 0
#endif

#define CAP 1000
#define TOTAL_KEYS 200000
#define REFUSED (TOTAL_KEYS - CAP)
/* Slack for the allocator: the transient garbage of one refused put (its
 * key strings, the error message) is freed before the next put, so the flood
 * reuses the same few chunks, but glibc trims and regrows the top of the
 * heap, which moves RSS by about +-192 KiB from run to run. 1 MiB is about
 * 5 bytes per refusal: keeping even one pointer per refusal (8 bytes, 1.5
 * MiB) fails, a registry entry (key strings, a series: 100+ bytes) by far. */
#define REFUSAL_MARGIN (1024.0 * 1024)

/* Distinct keys, all long enough (> 15 bytes) that Swift stores them on the
 * heap: a retained copy would show. Key i varies the name, the stream and
 * the shard; the error code is dropped at SUMMARY, kept here (DETAILED). */
static void key_for(int i, char *name, char *stream, char *shard, size_t len) {
    snprintf(name, len, "CapMetric-%06d", i % 997);
    snprintf(stream, len, "stream-%06d", i / 997);
    snprintf(shard, len, "shardId-%012d", i);
}

static double rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK_MSG(f != NULL, "cannot open /proc/self/statm");
    unsigned long size = 0, resident = 0;
    CHECK(fscanf(f, "%lu %lu", &size, &resident) == 2);
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

typedef struct {
    pthread_mutex_t lock;
    uint64_t refused_count, accepted_count, other;
    double refused_sum, accepted_sum;
    int exports;
} cap_sink;

static int cap_export(void *ud, const kplm_snapshot *s, size_t n) {
    cap_sink *c = ud;
    pthread_mutex_lock(&c->lock);
    c->exports++;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].name, KPLM_METRIC_REFUSED) == 0) {
            if (s[i].dimension_count != 0) c->other++;
            c->refused_count += s[i].count;
            c->refused_sum += s[i].sum;
        } else if (strncmp(s[i].name, "CapMetric-", 10) == 0 && s[i].dimension_count == 3) {
            c->accepted_count += s[i].count;
            c->accepted_sum += s[i].sum;
        } else {
            c->other++;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Puts `nkeys` distinct keys into a started manager with max_metrics CAP:
 * the first CAP by kplm_put, then (beyond the cap) alternately kplm_put and
 * kplm_metric_get. Returns the number of refusals; checks every status. */
static long flood(kplm_manager *m, int nkeys) {
    char name[64], stream[64], shard[64];
    long refused = 0;
    for (int i = 0; i < nkeys; i++) {
        key_for(i, name, stream, shard, sizeof name);
        kplm_status st;
        if (i >= CAP && i % 2) {
            kplm_metric *h = (kplm_metric *)(uintptr_t)1;
            st = kplm_metric_get(m, name, stream, shard, "SomeErrorCode", &h);
            CHECK(st != KPLM_ELIMIT || h == NULL);
        } else {
            st = kplm_put(m, name, 2.0, stream, shard, "SomeErrorCode");
        }
        if (i < CAP) {
            CHECK_MSG(st == KPLM_OK, "key #%d (under the cap) returned %s", i, test_status_name(st));
        } else {
            CHECK_MSG(st == KPLM_ELIMIT, "key #%d (over the cap) returned %s", i,
                      test_status_name(st));
            refused++;
        }
    }
    return refused;
}

static kplm_manager *new_capped(cap_sink *c) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = KPLM_LEVEL_DETAILED;
    cfg.max_metrics = CAP;
    /* Only explicit flushes: the measurement sees no uploader activity. */
    cfg.upload_interval_ms = 3600.0 * 1000.0;
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    kplm_sink s = {0};
    s.user_data = c;
    s.export_snapshots = cap_export;
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    return m;
}

/* In a forked child: RSS growth of putting nkeys keys (measured with the
 * manager alive). Returns the growth in bytes. */
static double measure_growth(int nkeys) {
    int fd[2];
    CHECK(pipe(fd) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        cap_sink c;
        kplm_manager *m = new_capped(&c);
        /* Warm up the paths a put takes (and the refusal path) on keys of
         * the same shapes, in another manager, so the first-use costs of the
         * Swift runtime (metadata, caches) are not charged to either run. */
        {
            cap_sink c2;
            kplm_manager *w = new_capped(&c2);
            (void)flood(w, CAP + 100);
            kplm_free(w);
            pthread_mutex_destroy(&c2.lock);
        }
        double before = rss_bytes();
        long refused = flood(m, nkeys);
        double after = rss_bytes();
        CHECK(refused == (nkeys > CAP ? nkeys - CAP : 0));
        double growth = after - before;
        ssize_t wr = write(fd[1], &growth, sizeof growth);
        CHECK(wr == (ssize_t)sizeof growth);
        close(fd[1]);
        kplm_free(m);
        pthread_mutex_destroy(&c.lock);
        _exit(0);
    }
    close(fd[1]);
    double growth = -1.0;
    ssize_t rd = read(fd[0], &growth, sizeof growth);
    close(fd[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0 && rd == (ssize_t)sizeof growth,
              "measuring child for %d keys failed", nkeys);
    return growth;
}

static void refusals_keep_no_memory(void) {
    if (CAP_SANITIZED) {
        printf("  skipped: sanitizer build (RSS is not meaningful)\n");
        return;
    }
    double full = measure_growth(CAP);
    double flooded = measure_growth(TOTAL_KEYS);
    printf("  RSS growth: %d keys (the cap) %.0f KiB; %d keys (%d refused) %.0f KiB; "
           "difference %+.0f KiB (allowed %.0f KiB)\n",
           CAP, full / 1024.0, TOTAL_KEYS, REFUSED, flooded / 1024.0, (flooded - full) / 1024.0,
           REFUSAL_MARGIN / 1024.0);
    CHECK_MSG(flooded - full <= REFUSAL_MARGIN,
              "%d refused keys grew memory by %.0f KiB more than the cap's %d keys "
              "(%.1f bytes per refusal): refusals must allocate nothing durable",
              REFUSED, (flooded - full) / 1024.0, CAP, (flooded - full) / REFUSED);
}

static void refusals_exported_exactly(void) {
    cap_sink c;
    kplm_manager *m = new_capped(&c);
    long refused = flood(m, TOTAL_KEYS);
    CHECK(refused == REFUSED);
    /* Existing keys still work at the cap, and a refusal after a flush is
     * counted in the next export. */
    CHECK_OK(kplm_flush(m));
    char name[64], stream[64], shard[64];
    key_for(0, name, stream, shard, sizeof name);
    CHECK_OK(kplm_put(m, name, 2.0, stream, shard, "SomeErrorCode"));
    key_for(TOTAL_KEYS, name, stream, shard, sizeof name);
    CHECK_ST(kplm_put(m, name, 2.0, stream, shard, "SomeErrorCode"), KPLM_ELIMIT);
    CHECK_OK(kplm_close(m));
    CHECK(c.exports == 2);
    CHECK_U64(c.refused_count, REFUSED + 1);
    CHECK_DEQ(c.refused_sum, (double)(REFUSED + 1));
    CHECK_U64(c.accepted_count, CAP + 1);
    CHECK_DEQ(c.accepted_sum, 2.0 * (CAP + 1));
    CHECK_U64(c.other, 0);
    kplm_free(m);
    pthread_mutex_destroy(&c.lock);
}

int main(void) {
    int failures = 0;
    RUN_T(refusals_keep_no_memory, 120);
    RUN_T(refusals_exported_exactly, 120);
    return failures ? 1 : 0;
}
