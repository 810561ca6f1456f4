#define _GNU_SOURCE
#include "test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

const char *test_status_name(kplm_status st) {
    switch (st) {
    case KPLM_OK: return "KPLM_OK";
    case KPLM_EINVAL: return "KPLM_EINVAL";
    case KPLM_ESTATE: return "KPLM_ESTATE";
    case KPLM_ECLOSED: return "KPLM_ECLOSED";
    case KPLM_ELIMIT: return "KPLM_ELIMIT";
    case KPLM_ENOMEM: return "KPLM_ENOMEM";
    case KPLM_ESINK: return "KPLM_ESINK";
    }
    return "(unknown status)";
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "watchdog: sub-test timed out (deadlock or hang?)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(124);
}

/* LeakSanitizer's entry point, present only in ASan builds (KPLM_SANITIZE,
 * scripts/sanitize.sh). Its leak check runs at exit, which a sub-test's
 * _exit skips, so test_run calls it before _exit. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

int test_run(const char *name, void (*fn)(void), unsigned seconds) {
    static int unbuffered;
    if (!unbuffered) {
        /* Keep PASS/FAIL lines and the children's messages in order. */
        setvbuf(stdout, NULL, _IONBF, 0);
        unbuffered = 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        signal(SIGALRM, on_alarm);
        alarm(seconds);
        fn();
        fflush(stdout);
        fflush(stderr);
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) {
            fprintf(stderr, "LeakSanitizer: the sub-test leaked memory (report above)\n");
            _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("PASS %s\n", name);
        return 0;
    }
    if (WIFSIGNALED(status))
        printf("FAIL %s (killed by signal %d: %s)\n", name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 124)
        printf("FAIL %s (timed out after %u s)\n", name, seconds);
    else
        printf("FAIL %s (exit status %d)\n", name, WEXITSTATUS(status));
    fflush(stdout);
    return 1;
}

double test_wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void test_sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------ */

void tclock_set(tclock *c, double seconds) {
    atomic_store(&c->ticks, llround(seconds * 1024.0));
}

void tclock_advance(tclock *c, double seconds) {
    atomic_fetch_add(&c->ticks, llround(seconds * 1024.0));
}

double tclock_now(tclock *c) { return (double)atomic_load(&c->ticks) / 1024.0; }

double tclock_read(void *user_data) { return tclock_now((tclock *)user_data); }

kplm_config test_config(kplm_level level, tclock *clock) {
    kplm_config cfg;
    kplm_config_init(&cfg);
    cfg.level = level;
    if (clock) {
        cfg.clock = tclock_read;
        cfg.clock_user_data = clock;
    }
    return cfg;
}

/* ------------------------------------------------------------------------ */

static char *xstrdup(const char *s) {
    if (s == NULL) return NULL;
    char *d = strdup(s);
    if (!d) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return d;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return q;
}

void tsnap_list_add(tsnap_list *l, const kplm_snapshot *s, int batch) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    tsnap *d = &l->v[l->n++];
    memset(d, 0, sizeof *d);
    d->name = xstrdup(s->name);
    d->count = s->count;
    d->sum = s->sum;
    d->min = s->min;
    d->max = s->max;
    d->ndims = s->dimension_count;
    if (d->ndims > TEST_MAX_DIMS) {
        fprintf(stderr, "snapshot with %zu dimensions\n", d->ndims);
        exit(1);
    }
    for (size_t i = 0; i < d->ndims; i++) {
        d->dim_name[i] = xstrdup(s->dimensions[i].name);
        d->dim_value[i] = xstrdup(s->dimensions[i].value);
    }
    d->window_start = s->window_start;
    d->window_end = s->window_end;
    d->timestamp_unix = s->timestamp_unix;
    d->batch = batch;
}

void tsnap_list_clear(tsnap_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        for (size_t j = 0; j < l->v[i].ndims; j++) {
            free(l->v[i].dim_name[j]);
            free(l->v[i].dim_value[j]);
        }
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int collect_visit(void *ud, const kplm_snapshot *s) {
    CHECK(s != NULL);
    CHECK(s->name != NULL);
    CHECK(s->dimension_count == 0 || s->dimensions != NULL);
    tsnap_list_add((tsnap_list *)ud, s, 0);
    return 0;
}

void collect_snapshots(kplm_manager *m, tsnap_list *out) {
    tsnap_list_clear(out);
    CHECK_OK(kplm_snapshots(m, collect_visit, out));
}

static int snap_matches(const tsnap *s, const char *name, const char *stream,
                        const char *shard, const char *error_code) {
    if (strcmp(s->name, name) != 0) return 0;
    const char *names[3] = {"stream", "shard", "error_code"};
    const char *values[3] = {stream, shard, error_code};
    size_t k = 0;
    for (int i = 0; i < 3; i++) {
        if (values[i] == NULL || values[i][0] == '\0') continue;
        if (k >= s->ndims) return 0;
        if (!s->dim_name[k] || strcmp(s->dim_name[k], names[i]) != 0) return 0;
        if (!s->dim_value[k] || strcmp(s->dim_value[k], values[i]) != 0) return 0;
        k++;
    }
    return k == s->ndims;
}

const tsnap *find_snap_in_batch(const tsnap_list *l, int batch, const char *name,
                                const char *stream, const char *shard,
                                const char *error_code) {
    const tsnap *found = NULL;
    for (size_t i = 0; i < l->n; i++) {
        if (batch >= 0 && l->v[i].batch != batch) continue;
        if (!snap_matches(&l->v[i], name, stream, shard, error_code)) continue;
        CHECK_MSG(found == NULL, "key %s/%s/%s/%s appears twice", name,
                  stream ? stream : "-", shard ? shard : "-",
                  error_code ? error_code : "-");
        found = &l->v[i];
    }
    return found;
}

const tsnap *find_snap(const tsnap_list *l, const char *name, const char *stream,
                       const char *shard, const char *error_code) {
    return find_snap_in_batch(l, -1, name, stream, shard, error_code);
}

size_t count_in_batch(const tsnap_list *l, int batch) {
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].batch == batch) n++;
    return n;
}

static int bytes_cmp(const char *a, const char *b) {
    /* strcmp compares as unsigned char, i.e. bytewise. */
    int c = strcmp(a ? a : "", b ? b : "");
    return (c > 0) - (c < 0);
}

int snap_order(const char *an, const kplm_dimension *ad, size_t adn,
               const char *bn, const kplm_dimension *bd, size_t bdn) {
    int c = bytes_cmp(an, bn);
    if (c) return c;
    for (size_t i = 0; i < adn && i < bdn; i++) {
        c = bytes_cmp(ad[i].name, bd[i].name);
        if (c) return c;
        c = bytes_cmp(ad[i].value, bd[i].value);
        if (c) return c;
    }
    return (adn > bdn) - (adn < bdn);
}

static void append(char *buf, size_t len, size_t *pos, const char *s) {
    while (*s && *pos + 1 < len) buf[(*pos)++] = *s++;
    buf[*pos] = '\0';
}

void key_of_snapshot(const kplm_snapshot *s, char *buf, size_t len) {
    size_t pos = 0;
    buf[0] = '\0';
    append(buf, len, &pos, s->name);
    for (size_t i = 0; i < s->dimension_count; i++) {
        append(buf, len, &pos, "|");
        append(buf, len, &pos, s->dimensions[i].name);
        append(buf, len, &pos, "=");
        append(buf, len, &pos, s->dimensions[i].value);
    }
}

void key_of_parts(const char *name, const char *stream, const char *shard,
                  const char *error_code, char *buf, size_t len) {
    kplm_dimension dims[3];
    size_t n = 0;
    if (stream && *stream) dims[n++] = (kplm_dimension){"stream", stream};
    if (shard && *shard) dims[n++] = (kplm_dimension){"shard", shard};
    if (error_code && *error_code) dims[n++] = (kplm_dimension){"error_code", error_code};
    kplm_snapshot s;
    memset(&s, 0, sizeof s);
    s.name = name;
    s.dimensions = dims;
    s.dimension_count = n;
    key_of_snapshot(&s, buf, len);
}

/* ------------------------------------------------------------------------ */

void msink_init(msink *ms) {
    memset(ms, 0, sizeof *ms);
    pthread_mutex_init(&ms->lock, NULL);
    ms->keep = 1;
    atomic_init(&ms->in_serial_callback, 0);
}

void msink_destroy(msink *ms) {
    tsnap_list_clear(&ms->snaps);
    for (size_t i = 0; i < ms->nevents; i++) {
        free(ms->events[i].name);
        for (size_t j = 0; j < ms->events[i].ndims; j++) {
            free(ms->events[i].dim_name[j]);
            free(ms->events[i].dim_value[j]);
        }
    }
    free(ms->events);
    for (size_t i = 0; i < ms->nacc; i++) free(ms->acc[i].key);
    free(ms->acc);
    pthread_mutex_destroy(&ms->lock);
}

static void serial_enter(msink *ms) {
    if (atomic_fetch_add(&ms->in_serial_callback, 1) != 0) {
        pthread_mutex_lock(&ms->lock);
        ms->concurrency_violations++;
        pthread_mutex_unlock(&ms->lock);
    }
}

static void serial_leave(msink *ms) { atomic_fetch_sub(&ms->in_serial_callback, 1); }

static int ms_open(void *ud) {
    msink *ms = ud;
    serial_enter(ms);
    pthread_mutex_lock(&ms->lock);
    ms->opens++;
    int fail = 0;
    if (ms->fail_opens > 0) {
        ms->fail_opens--;
        fail = 1;
    }
    pthread_mutex_unlock(&ms->lock);
    int r = 0;
    if (ms->on_open) r = ms->on_open(ms);
    serial_leave(ms);
    return fail ? 1 : r;
}

static void ms_close(void *ud) {
    msink *ms = ud;
    serial_enter(ms);
    pthread_mutex_lock(&ms->lock);
    ms->closes++;
    pthread_mutex_unlock(&ms->lock);
    if (ms->on_close) ms->on_close(ms);
    serial_leave(ms);
}

static tacc *acc_find_locked(msink *ms, const char *key, int create) {
    for (size_t i = 0; i < ms->nacc; i++)
        if (strcmp(ms->acc[i].key, key) == 0) return &ms->acc[i];
    if (!create) return NULL;
    if (ms->nacc == ms->capacc) {
        ms->capacc = ms->capacc ? ms->capacc * 2 : 16;
        ms->acc = xrealloc(ms->acc, ms->capacc * sizeof *ms->acc);
    }
    tacc *a = &ms->acc[ms->nacc++];
    a->key = xstrdup(key);
    a->count = 0;
    a->sum = 0.0;
    a->min = INFINITY;
    a->max = -INFINITY;
    return a;
}

static int ms_export(void *ud, const kplm_snapshot *s, size_t n) {
    msink *ms = ud;
    serial_enter(ms);

    /* Checks on the batch, before anything else. */
    int order_bad = 0, dup = 0, bad = 0, empty = (n == 0 || s == NULL);
    for (size_t i = 0; !empty && i < n; i++) {
        if (s[i].name == NULL || (s[i].dimension_count > 0 && s[i].dimensions == NULL)) {
            bad++;
            continue;
        }
        if (s[i].count == 0 || !(s[i].min <= s[i].max) ||
            !(s[i].window_start < s[i].window_end) ||
            s[i].window_start != floor(s[i].window_start) ||
            s[i].window_end != floor(s[i].window_end))
            bad++;
        if (i > 0 && s[i - 1].name != NULL) {
            int c = snap_order(s[i - 1].name, s[i - 1].dimensions, s[i - 1].dimension_count,
                               s[i].name, s[i].dimensions, s[i].dimension_count);
            if (c > 0) order_bad++;
            if (c == 0) dup++;
        }
    }

    pthread_mutex_lock(&ms->lock);
    ms->export_calls++;
    ms->last_export_thread = pthread_self();
    ms->order_violations += order_bad;
    ms->duplicate_keys += dup;
    ms->bad_snapshots += bad;
    ms->empty_batches += empty;
    int fail = 0;
    if (ms->fail_exports != 0) {
        if (ms->fail_exports > 0) ms->fail_exports--;
        fail = 1;
    }
    if (ms->fail_every > 0 && ms->export_calls % ms->fail_every == 0) fail = 1;
    if (fail) {
        ms->exports_failed++;
    } else if (!empty) {
        ms->exports_ok++;
        char key[4096];
        for (size_t i = 0; i < n; i++) {
            if (s[i].name == NULL) continue;
            if (ms->keep) tsnap_list_add(&ms->snaps, &s[i], ms->exports_ok);
            key_of_snapshot(&s[i], key, sizeof key);
            tacc *a = acc_find_locked(ms, key, 1);
            a->count += s[i].count;
            a->sum += s[i].sum;
            if (s[i].min < a->min) a->min = s[i].min;
            if (s[i].max > a->max) a->max = s[i].max;
        }
    } else {
        ms->exports_ok++;
    }
    pthread_mutex_unlock(&ms->lock);

    if (ms->on_export) ms->on_export(ms, s, n);
    serial_leave(ms);
    return fail ? 1 : 0;
}

static void ms_record(void *ud, const kplm_event *e) {
    msink *ms = ud;
    pthread_mutex_lock(&ms->lock);
    ms->records++;
    if (ms->keep) {
        if (ms->nevents == ms->capevents) {
            ms->capevents = ms->capevents ? ms->capevents * 2 : 16;
            ms->events = xrealloc(ms->events, ms->capevents * sizeof *ms->events);
        }
        tevent *d = &ms->events[ms->nevents++];
        memset(d, 0, sizeof *d);
        d->name = xstrdup(e->name);
        d->value = e->value;
        d->timestamp = e->timestamp;
        d->ndims = e->dimension_count < TEST_MAX_DIMS ? e->dimension_count : TEST_MAX_DIMS;
        for (size_t i = 0; i < d->ndims; i++) {
            d->dim_name[i] = xstrdup(e->dimensions[i].name);
            d->dim_value[i] = xstrdup(e->dimensions[i].value);
        }
        d->thread = pthread_self();
    }
    pthread_mutex_unlock(&ms->lock);
    if (ms->on_record) ms->on_record(ms, e);
}

kplm_sink msink_sink(msink *ms, int with_open, int with_record, int with_close) {
    kplm_sink s;
    memset(&s, 0, sizeof s);
    s.user_data = ms;
    s.open = with_open ? ms_open : NULL;
    s.export_snapshots = ms_export;
    s.record = with_record ? ms_record : NULL;
    s.close = with_close ? ms_close : NULL;
    return s;
}

int msink_export_calls(msink *ms) {
    pthread_mutex_lock(&ms->lock);
    int n = ms->export_calls;
    pthread_mutex_unlock(&ms->lock);
    return n;
}

int msink_exports_ok(msink *ms) {
    pthread_mutex_lock(&ms->lock);
    int n = ms->exports_ok;
    pthread_mutex_unlock(&ms->lock);
    return n;
}

long msink_records(msink *ms) {
    pthread_mutex_lock(&ms->lock);
    long n = ms->records;
    pthread_mutex_unlock(&ms->lock);
    return n;
}

const tacc *msink_find_acc(msink *ms, const char *key) {
    pthread_mutex_lock(&ms->lock);
    const tacc *a = acc_find_locked(ms, key, 0);
    pthread_mutex_unlock(&ms->lock);
    return a;
}

void msink_check_clean(msink *ms) {
    pthread_mutex_lock(&ms->lock);
    int cv = ms->concurrency_violations, ov = ms->order_violations,
        dk = ms->duplicate_keys, eb = ms->empty_batches, bs = ms->bad_snapshots;
    pthread_mutex_unlock(&ms->lock);
    CHECK_MSG(cv == 0, "open/export/close ran concurrently %d time(s)", cv);
    CHECK_MSG(ov == 0, "%d exported batch(es) out of spec order", ov);
    CHECK_MSG(dk == 0, "%d key(s) exported twice within one batch", dk);
    CHECK_MSG(eb == 0, "%d export call(s) with no snapshot", eb);
    CHECK_MSG(bs == 0, "%d exported snapshot(s) with count 0, min > max or a bad window", bs);
}

/* ---- Built-in sinks ---------------------------------------------------- */

int test_loopback_socket(int type, int backlog, uint16_t *port) {
    int fd = socket(AF_INET, type, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, len) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    if (backlog > 0) CHECK(listen(fd, backlog) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int test_sink_is_cleared(const kplm_sink *s) {
    return s->user_data == NULL && s->open == NULL && s->export_snapshots == NULL && s->record == NULL &&
           s->close == NULL;
}

kplm_sink *test_garbage_sink(kplm_sink *s) {
    memset(s, 0x5A, sizeof *s);
    return s;
}

void test_check_sink_einval(kplm_status st, const kplm_sink *s, const char *file, int line) {
    if (st != KPLM_EINVAL) test_fail(file, line, "expected KPLM_EINVAL, got %s", test_status_name(st));
    if (!test_sink_is_cleared(s)) test_fail(file, line, "*out not cleared on failure");
}
