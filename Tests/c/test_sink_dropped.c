/* SPEC §9 "Dropped observations are counted", through the C ABI: for each
 * built-in sink that can accept an observation it then cannot deliver
 * (DogStatsD: a line longer than max_datagram_bytes; EMF: a key over EMF's
 * limits; CloudWatch: a datum outside the accepted time range or value
 * range), the flush still returns KPLM_OK, the deliverable keys are
 * delivered, kplm_snapshots shows KPLM_METRIC_SINK_DROPPED with the exact
 * count, and the next flush delivers that count. Every receiver (a UDP
 * socket, a file, a small HTTP server in a thread) runs in the test. */
#define _GNU_SOURCE /* mkstemp, strcasestr */
#include "test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* The count of KPLM_METRIC_SINK_DROPPED in kplm_snapshots(m) (0 when
 * absent), checked to be one observation of 1 per dropped item. */
static uint64_t dropped_count(kplm_manager *m) {
    tsnap_list l = {0};
    collect_snapshots(m, &l);
    const tsnap *d = find_snap(&l, KPLM_METRIC_SINK_DROPPED, NULL, NULL, NULL);
    uint64_t n = 0;
    if (d != NULL) {
        n = d->count;
        CHECK_U64(d->ndims, 0);
        CHECK_DEQ(d->sum, (double)d->count);
        CHECK_DEQ(d->min, 1.0);
        CHECK_DEQ(d->max, 1.0);
    }
    tsnap_list_clear(&l);
    return n;
}

/* A growable text buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} text;

static void text_add(text *t, const char *s, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (t->n + n + 1 > cap) cap *= 2;
        char *p = realloc(t->p, cap);
        CHECK(p != NULL);
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void text_reset(text *t) {
    t->n = 0;
    if (t->p) t->p[0] = '\0';
}

static const char *text_str(text *t) {
    if (t->p == NULL) text_add(t, "", 0);
    return t->p;
}

/* A string of n copies of c (static buffer, n < 1024). */
static const char *repeat(char c, size_t n) {
    static char buf[1024];
    CHECK(n < sizeof buf);
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------ */
/* DogStatsD: lines longer than a datagram                                   */
/* ------------------------------------------------------------------------ */

/* Appends every datagram that arrives until none comes for 300 ms, lines
 * separated by '\n'. */
static void receive_all(int fd, text *out) {
    static char buf[65536];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 300) == 1) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        CHECK(n >= 0);
        text_add(out, buf, (size_t)n);
        text_add(out, "\n", 1);
    }
}

static void dogstatsd_long_lines(void) {
    uint16_t port;
    int rx = test_loopback_socket(SOCK_DGRAM, 0, &port);
    tclock clock;
    tclock_set(&clock, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clock);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_dogstatsd_config dc;
    kplm_dogstatsd_config_init(&dc);
    dc.port = port;
    dc.max_datagram_bytes = 64;
    kplm_sink s;
    CHECK_OK(kplm_sink_dogstatsd(&dc, &s));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    CHECK_OK(kplm_put(m, "Short", 1, NULL, NULL, NULL));
    /* Each of its 4 lines carries the tag "stream:xxx…" (107 bytes): none
     * fits in a 64-byte datagram. */
    CHECK_OK(kplm_put(m, "Long", 2, repeat('x', 100), NULL, NULL));
    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));

    text got = {0};
    receive_all(rx, &got);
    const char *t = text_str(&got);
    CHECK_MSG(strstr(t, "Short.count:1|c") && strstr(t, "Short.sum:1|c") && strstr(t, "Short.min:1|g") &&
                  strstr(t, "Short.max:1|g"),
              "the deliverable key was not delivered: %s", t);
    CHECK_MSG(strstr(t, "Long") == NULL, "an oversized line was sent: %s", t);
    CHECK_U64(dropped_count(m), 4);

    /* The next flush sends the count (its lines fit) and drops nothing more. */
    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));
    text_reset(&got);
    receive_all(rx, &got);
    t = text_str(&got);
    CHECK_MSG(strstr(t, KPLM_METRIC_SINK_DROPPED ".count:4|c") != NULL, "the count was not sent: %s", t);
    CHECK_U64(dropped_count(m), 4);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    free(got.p);
    close(rx);
}

/* ------------------------------------------------------------------------ */
/* EMF: keys over EMF's limits                                               */
/* ------------------------------------------------------------------------ */

static void read_file(const char *path, text *out) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    char buf[4096];
    size_t n;
    text_reset(out);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text_add(out, buf, n);
    fclose(f);
}

static void emf_over_limits(void) {
    char path[] = "/tmp/kplm_sink_dropped_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);

    tclock clock;
    tclock_set(&clock, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clock);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_emf_config ec;
    kplm_emf_config_init(&ec);
    ec.destination = KPLM_EMF_FILE;
    ec.path = path;
    ec.cw_namespace = "CTest";
    kplm_sink s;
    CHECK_OK(kplm_sink_emf(&ec, &s));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    CHECK_OK(kplm_put(m, "Short", 7, "orders", NULL, NULL));
    /* A name of KPLM_NAME_MAX bytes is a valid key, but its EMF metric
     * "<Name>.Count" would be over CloudWatch's 255 characters: two keys. */
    char long_name[KPLM_NAME_MAX + 1];
    memcpy(long_name, repeat('N', KPLM_NAME_MAX), sizeof long_name);
    CHECK_OK(kplm_put(m, long_name, 1, "a", NULL, NULL));
    CHECK_OK(kplm_put(m, long_name, 1, "b", NULL, NULL));
    /* A value beyond +-2^360, which CloudWatch refuses: one key. */
    CHECK_OK(kplm_put(m, "Huge", 1e300, NULL, NULL, NULL));
    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));

    text got = {0};
    read_file(path, &got);
    const char *t = text_str(&got);
    CHECK_MSG(strstr(t, "\"Short.Count\":1") != NULL && strstr(t, "\"StreamName\":\"orders\"") != NULL,
              "the deliverable key was not written: %s", t);
    CHECK_MSG(strstr(t, "NNNNNNNN") == NULL && strstr(t, "Huge") == NULL, "a dropped key was written: %s", t);
    CHECK_U64(dropped_count(m), 3);

    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));
    read_file(path, &got);
    t = text_str(&got);
    CHECK_MSG(strstr(t, "\"" KPLM_METRIC_SINK_DROPPED ".Count\":3") != NULL, "the count was not written: %s", t);
    CHECK_U64(dropped_count(m), 3);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    free(got.p);
    unlink(path);
}

/* ------------------------------------------------------------------------ */
/* CloudWatch: datums outside the accepted ranges, against a local server    */
/* ------------------------------------------------------------------------ */

/* A loopback HTTP/1.1 server answering every request 200 "{}" and keeping
 * the request bodies (each followed by '\n'). */
typedef struct {
    int listener;
    uint16_t port;
    _Atomic int stop;
    pthread_mutex_t lock;
    text bodies;
    int requests;
    pthread_t thread;
} http_server;

static void http_handle(http_server *h, int conn) {
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    text req = {0};
    char buf[8192];
    size_t head_end = 0, content_length = 0;
    int have_head = 0;
    for (;;) {
        if (!have_head && req.p != NULL) {
            char *e = strstr(req.p, "\r\n\r\n");
            if (e != NULL) {
                have_head = 1;
                head_end = (size_t)(e - req.p) + 4;
                *e = '\0'; /* search the head only */
                const char *cl = strcasestr(req.p, "\r\ncontent-length:");
                if (cl != NULL) content_length = strtoul(cl + 17, NULL, 10);
                *e = '\r';
            }
        }
        if (have_head && req.n >= head_end + content_length) break;
        ssize_t n = recv(conn, buf, sizeof buf, 0);
        if (n <= 0) break;
        text_add(&req, buf, (size_t)n);
    }
    if (have_head) {
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                                     "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
        pthread_mutex_lock(&h->lock);
        size_t n = req.n - head_end < content_length ? req.n - head_end : content_length;
        text_add(&h->bodies, req.p + head_end, n);
        text_add(&h->bodies, "\n", 1);
        h->requests++;
        pthread_mutex_unlock(&h->lock);
        ssize_t sent = send(conn, answer, sizeof answer - 1, MSG_NOSIGNAL);
        (void)sent;
    }
    free(req.p);
    close(conn);
}

static void *http_serve(void *arg) {
    http_server *h = arg;
    struct pollfd p = {.fd = h->listener, .events = POLLIN};
    while (!atomic_load(&h->stop)) {
        if (poll(&p, 1, 50) != 1) continue;
        int conn = accept(h->listener, NULL, NULL);
        if (conn >= 0) http_handle(h, conn);
    }
    return NULL;
}

static void http_start(http_server *h) {
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    h->listener = test_loopback_socket(SOCK_STREAM, 16, &h->port);
    CHECK(pthread_create(&h->thread, NULL, http_serve, h) == 0);
}

static void http_stop(http_server *h) {
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    close(h->listener);
    free(h->bodies.p);
    pthread_mutex_destroy(&h->lock);
}

/* The bodies received so far (a copy; free it), and clears them. */
static char *http_take_bodies(http_server *h, int *requests) {
    pthread_mutex_lock(&h->lock);
    char *s = strdup(text_str(&h->bodies));
    text_reset(&h->bodies);
    *requests = h->requests;
    h->requests = 0;
    pthread_mutex_unlock(&h->lock);
    CHECK(s != NULL);
    return s;
}

/* No region, profile or keys from the environment of whoever runs the tests. */
static void clean_aws_environment(void) {
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_CONFIG_FILE", "/nonexistent/kplm-test/config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kplm-test/credentials", 1);
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void cloudwatch_out_of_range(void) {
    clean_aws_environment();
    http_server h;
    http_start(&h);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/", (unsigned)h.port);

    tclock clock;
    tclock_set(&clock, 100);
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, &clock);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    kplm_cloudwatch_config cc;
    kplm_cloudwatch_config_init(&cc);
    cc.region = "us-east-1";
    cc.endpoint = endpoint;
    cc.cw_namespace = "CTest";
    cc.access_key_id = "AKIDEXAMPLE";
    cc.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    cc.timeout_ms = 5000;
    cc.max_retries = 0;
    kplm_sink s;
    CHECK_OK(kplm_sink_cloudwatch(&cc, &s));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));

    /* Two keys put, then 15 days pass on the manager's clock before the
     * flush: their timestamps are more than 14 days old. */
    CHECK_OK(kplm_put(m, "StaleMetric", 2, "a", NULL, NULL));
    CHECK_OK(kplm_put(m, "StaleMetric", 3, "b", NULL, NULL));
    tclock_advance(&clock, 15 * 86400.0);
    CHECK_OK(kplm_put(m, "FreshMetric", 5, "orders", NULL, NULL));
    /* A value beyond +-2^360, which CloudWatch refuses. */
    CHECK_OK(kplm_put(m, "HugeMetric", 1e300, NULL, NULL, NULL));
    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));

    int requests = 0;
    char *bodies = http_take_bodies(&h, &requests);
    CHECK_MSG(requests == 1, "%d requests: %s", requests, bodies);
    CHECK_MSG(strstr(bodies, "\"MetricName\":\"FreshMetric\"") != NULL, "the deliverable key was not sent: %s",
              bodies);
    CHECK_MSG(strstr(bodies, "StaleMetric") == NULL && strstr(bodies, "HugeMetric") == NULL,
              "a datum CloudWatch refuses was sent: %s", bodies);
    free(bodies);
    CHECK_U64(dropped_count(m), 3);

    /* The next flush sends the count. */
    tclock_advance(&clock, 1);
    CHECK_OK(kplm_flush(m));
    bodies = http_take_bodies(&h, &requests);
    const char *d = strstr(bodies, "\"MetricName\":\"" KPLM_METRIC_SINK_DROPPED "\"");
    CHECK_MSG(d != NULL, "the count was not sent: %s", bodies);
    const char *sc = strstr(d, "\"SampleCount\":");
    CHECK_MSG(sc != NULL && strtod(sc + 14, NULL) == 3.0, "wrong count sent: %s", bodies);
    free(bodies);
    CHECK_U64(dropped_count(m), 3);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
    http_stop(&h);
}

int main(void) {
    int failures = 0;
    RUN(dogstatsd_long_lines);
    RUN(emf_over_limits);
    RUN(cloudwatch_out_of_range);
    return failures ? 1 : 0;
}
