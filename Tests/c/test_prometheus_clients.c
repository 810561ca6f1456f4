/* The Prometheus sink's server under hostile clients (issue #10), over
 * loopback through the C ABI:
 *   - 64 idle connections, a half-sent request ("GET /metr") and a client
 *     streaming a 10 MB request are attached: every scrape is answered in
 *     well under a second (the server of one connection at a time took 5 s
 *     per idle client), the 10 MB request is cut off (431, then the
 *     connection is closed, not read to its end), the half-sent request is
 *     still answered once completed, and a thread putting meanwhile keeps
 *     putting (puts per second in a quiet and in the hostile phase printed);
 *   - more connections than the cap (128): the oldest idle ones are dropped,
 *     the newer ones stay open, and a scrape succeeds;
 *   - two clients that request a 5.5 MB exposition and never read it do
 *     not delay other scrapes (responses are written non-blockingly; bound
 *     3 s there, as rendering that much is slow under sanitizers);
 *   - kplm_close returns promptly with all of these attached.
 * The latency bound asserted is 1 s (the old server needed >= 5 s); the
 * measured figures are printed. */
#define _GNU_SOURCE
#include "test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define IDLE_CLIENTS 64
#define SERVER_CAP 128               /* PrometheusServer.maxConnections */
#define STREAM_BYTES (10 * 1024 * 1024)
#define SCRAPES 40
#define SCRAPE_BOUND_S 1.0           /* the old server: >= 5 s */

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A port that was free a moment ago. */
static uint16_t free_port(void) {
    uint16_t port;
    close(test_loopback_socket(SOCK_STREAM, 4, &port));
    return port;
}

/* A blocking TCP connection to 127.0.0.1:port whose receives and sends time
 * out after `timeout_s` seconds. */
static int connect_to(uint16_t port, int timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_MSG(connect(fd, (struct sockaddr *)&a, sizeof a) == 0,
              "connect: %s (the server did not accept within %d s)", strerror(errno), timeout_s);
    return fd;
}

/* An idle client: a connection to 127.0.0.1:port that sends nothing (not
 * waited for: with a server that does not accept, the listen backlog fills
 * up and later connections wait). */
static int connect_idle(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    CHECK_MSG(rc == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *text) {
    size_t n = strlen(text);
    CHECK_MSG(send(fd, text, n, MSG_NOSIGNAL) == (ssize_t)n, "send: %s", strerror(errno));
}

/* Reads fd to its end into buf (NUL-terminated, truncated at cap - 1 with
 * the rest discarded); fails on a receive timeout. Returns the bytes read. */
static size_t read_to_end(int fd, char *buf, size_t cap) {
    size_t got = 0, total = 0;
    char sink[65536];
    for (;;) {
        char *into = got < cap - 1 ? buf + got : sink;
        size_t room = got < cap - 1 ? cap - 1 - got : sizeof sink;
        ssize_t r = recv(fd, into, room, 0);
        CHECK_MSG(r >= 0, "recv after %zu bytes: %s (the server did not answer in time)", total,
                  strerror(errno));
        if (r == 0) break;
        if (into == buf + got) got += (size_t)r;
        total += (size_t)r;
    }
    buf[got] = '\0';
    return total;
}

/* One scrape of GET /metrics: checks a 200 with `expect` in it, returns the
 * seconds it took (connect to the end of the response). */
static double scrape(uint16_t port, const char *expect) {
    static char buf[1 << 16];
    double t0 = mono_now();
    /* (A receive timeout of 3 s: the old server's answer comes >= 5 s late.) */
    int fd = connect_to(port, 3);
    send_all(fd, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    read_to_end(fd, buf, sizeof buf);
    double dt = mono_now() - t0;
    close(fd);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "status line: %.40s", buf);
    CHECK_MSG(strstr(buf, expect) != NULL, "%s missing from:\n%.400s", expect, buf);
    return dt;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Scrapes `n` times; checks each is under the bound; prints max and median. */
static void scrape_repeatedly(uint16_t port, int n, const char *what) {
    double lat[SCRAPES];
    CHECK(n <= SCRAPES);
    for (int i = 0; i < n; i++) {
        lat[i] = scrape(port, "kplm_user_records_put_count");
        CHECK_MSG(lat[i] < SCRAPE_BOUND_S, "scrape %d took %.3f s (%s)", i, lat[i], what);
    }
    qsort(lat, (size_t)n, sizeof lat[0], by_value);
    printf("  %d scrapes %s: median %.2f ms, max %.2f ms\n", n, what, lat[n / 2] * 1e3, lat[n - 1] * 1e3);
}

static kplm_manager *start_manager(tclock *clk, uint16_t port) {
    kplm_prometheus_config c;
    kplm_prometheus_config_init(&c);
    c.port = port;
    kplm_sink s;
    CHECK_OK(kplm_sink_prometheus(&c, &s));
    kplm_config cfg = test_config(KPLM_LEVEL_DETAILED, clk);
    kplm_manager *m = NULL;
    CHECK_OK(kplm_new(&cfg, &m));
    CHECK_OK(kplm_set_sink(m, &s));
    CHECK_OK(kplm_start(m));
    CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "orders", "shardId-1", NULL));
    CHECK_OK(kplm_flush(m));
    return m;
}

/* ------------------------------------------------------------------------ */
/* A thread putting as fast as it can.                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    kplm_manager *m;
    atomic_llong puts;
    atomic_int stop;
} putter;

static void *put_loop(void *arg) {
    putter *p = arg;
    while (!atomic_load(&p->stop)) {
        if (kplm_put(p->m, "UserRecordsPut", 1.0, "orders", "shardId-1", NULL) != KPLM_OK) abort();
        atomic_fetch_add(&p->puts, 1);
    }
    return NULL;
}

/* Puts per second over `ms` milliseconds. */
static double put_rate(putter *p, unsigned ms) {
    long long before = atomic_load(&p->puts);
    double t0 = mono_now();
    test_sleep_ms(ms);
    return (double)(atomic_load(&p->puts) - before) / (mono_now() - t0);
}

/* ------------------------------------------------------------------------ */
/* A client streaming a 10 MB request head.                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint16_t port;
    size_t sent;         /* bytes the kernel took */
    int send_errno;      /* why sending stopped (0: all was sent) */
    int got_431;         /* the response read after sending stopped */
    double seconds;      /* until sending stopped */
} streamer;

static void *stream_loop(void *arg) {
    streamer *s = arg;
    int fd = connect_to(s->port, 3);
    static char chunk[64 * 1024];
    memset(chunk, 'a', sizeof chunk);
    memcpy(chunk, "GET /metrics HTTP/1.1\r\nX-Big: ", 30);
    double t0 = mono_now();
    while (s->sent < STREAM_BYTES) {
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n < 0) {
            s->send_errno = errno;
            break;
        }
        s->sent += (size_t)n;
        memset(chunk, 'a', 30); /* the request line only once */
    }
    s->seconds = mono_now() - t0;
    char buf[256];
    ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
    if (r > 0) {
        buf[r] = '\0';
        s->got_431 = strncmp(buf, "HTTP/1.1 431 ", 13) == 0;
    }
    close(fd);
    return NULL;
}

/* ------------------------------------------------------------------------ */

/* Whether the server closed fd (EOF or reset) within `ms`. */
static int closed_within(int fd, int ms) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) != 1) return 0;
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void hostile_clients(void) {
    tclock clk;
    tclock_set(&clk, 100.0);
    uint16_t port = free_port();
    kplm_manager *m = start_manager(&clk, port);

    putter p = {.m = m};
    pthread_t put_thread;
    CHECK(pthread_create(&put_thread, NULL, put_loop, &p) == 0);
    test_sleep_ms(100);
    scrape_repeatedly(port, 10, "quiet");
    double quiet_rate = put_rate(&p, 500);

    /* Attach 64 idle connections and a half-sent request. */
    int idle[IDLE_CLIENTS];
    for (int i = 0; i < IDLE_CLIENTS; i++) idle[i] = connect_idle(port);
    int half = connect_to(port, 3);
    send_all(half, "GET /metr");
    streamer st = {.port = port};
    pthread_t stream_thread;
    CHECK(pthread_create(&stream_thread, NULL, stream_loop, &st) == 0);
    double hostile_t0 = mono_now();
    scrape_repeatedly(port, SCRAPES, "with 64 idle, a half-sent and a 10 MB request attached");
    double hostile_rate = put_rate(&p, 500);
    CHECK(pthread_join(stream_thread, NULL) == 0);
    printf("  puts/s: quiet %.0f, hostile %.0f (ratio %.2f)\n", quiet_rate, hostile_rate,
           hostile_rate / quiet_rate);
    printf("  10 MB request: cut off after %zu bytes sent (%.3f s, %s), 431 read back: %s\n", st.sent,
           st.seconds, st.send_errno ? strerror(st.send_errno) : "all sent", st.got_431 ? "yes" : "no");
    CHECK_MSG(st.sent < STREAM_BYTES && (st.send_errno == ECONNRESET || st.send_errno == EPIPE),
              "the 10 MB request was not cut off: %zu bytes sent, %s", st.sent,
              st.send_errno ? strerror(st.send_errno) : "no error");
    CHECK(hostile_rate > 0);

    /* The half-sent request, completed (within its 5 s), is answered. */
    CHECK_MSG(mono_now() - hostile_t0 < 4.0, "the hostile phase took too long to check the half-sent request");
    send_all(half, "ics HTTP/1.1\r\n\r\n");
    static char buf[1 << 16];
    read_to_end(half, buf, sizeof buf);
    CHECK_MSG(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "half-sent request got: %.60s", buf);
    close(half);

    /* The idle connections are still open (not answered, not closed). */
    for (int i = 0; i < IDLE_CLIENTS; i++) {
        char c;
        errno = 0;
        CHECK_MSG(recv(idle[i], &c, 1, MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
                  "idle connection %d was closed or answered (errno %d)", i, errno);
    }

    /* close returns promptly with 64 connections attached. */
    atomic_store(&p.stop, 1);
    CHECK(pthread_join(put_thread, NULL) == 0);
    double t0 = mono_now();
    CHECK_OK(kplm_close(m));
    double close_s = mono_now() - t0;
    printf("  kplm_close with %d idle connections attached: %.2f ms\n", IDLE_CLIENTS, close_s * 1e3);
    CHECK_MSG(close_s < 1.0, "kplm_close took %.3f s", close_s);
    /* ... and the server closed them. */
    for (int i = 0; i < IDLE_CLIENTS; i++) {
        CHECK_MSG(closed_within(idle[i], 1000), "idle connection %d still open after close", i);
        close(idle[i]);
    }
    kplm_free(m);
}

static void cap_drops_oldest_idle(void) {
    tclock clk;
    tclock_set(&clk, 100.0);
    uint16_t port = free_port();
    kplm_manager *m = start_manager(&clk, port);

    enum { EXTRA = 8, N = SERVER_CAP + EXTRA };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_idle(port);
        test_sleep_ms(1); /* (accepted in this order) */
    }
    double dt = scrape(port, "kplm_user_records_put_count");
    printf("  scrape with %d idle connections attached (cap %d): %.2f ms\n", N, SERVER_CAP, dt * 1e3);
    CHECK_MSG(dt < SCRAPE_BOUND_S, "scrape took %.3f s", dt);
    /* The scrape made N + 1 connections: the EXTRA + 1 oldest were dropped. */
    for (int i = 0; i <= EXTRA; i++) CHECK_MSG(closed_within(fds[i], 2000), "connection %d still open", i);
    for (int i = EXTRA + 1; i < N; i++) {
        char c;
        errno = 0;
        CHECK_MSG(recv(fds[i], &c, 1, MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
                  "connection %d was dropped (errno %d)", i, errno);
    }
    /* The scrape is done: 127 left. One more fills the last slot, the next
     * drops the oldest left, and so does a scrape. */
    int more[2] = {connect_idle(port), -1};
    test_sleep_ms(50);
    CHECK_MSG(!closed_within(fds[EXTRA + 1], 0), "connection %d dropped with a free slot", EXTRA + 1);
    more[1] = connect_idle(port);
    CHECK_MSG(closed_within(fds[EXTRA + 1], 2000), "connection %d still open", EXTRA + 1);
    dt = scrape(port, "kplm_user_records_put_count");
    CHECK_MSG(dt < SCRAPE_BOUND_S, "scrape took %.3f s", dt);
    CHECK_MSG(closed_within(fds[EXTRA + 2], 2000), "connection %d still open", EXTRA + 2);
    CHECK_MSG(!closed_within(fds[EXTRA + 3], 0), "connection %d dropped", EXTRA + 3);
    for (int i = 0; i < N; i++) close(fds[i]);
    for (int i = 0; i < 2; i++) close(more[i]);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

static void slow_reader_does_not_stall(void) {
    tclock clk;
    tclock_set(&clk, 100.0);
    uint16_t port = free_port();
    kplm_manager *m = start_manager(&clk, port);
    /* An exposition of ~5.5 MB (20000 series), more than the socket buffers
     * of a client that does not read take (about 4 MB on Linux). */
    char shard[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(shard, sizeof shard, "shardId-%06d", i);
        CHECK_OK(kplm_put(m, "UserRecordsPut", 1.0, "orders", shard, NULL));
    }
    CHECK_OK(kplm_flush(m));

    /* Two clients request it and never read. */
    int slow[2];
    for (int i = 0; i < 2; i++) {
        slow[i] = connect_to(port, 3);
        int small = 4096;
        setsockopt(slow[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        send_all(slow[i], "GET /metrics HTTP/1.1\r\n\r\n");
    }
    test_sleep_ms(50);
    /* (Each scrape renders 5.5 MB, slowly under sanitizers: 3 s under TSan
     * on a loaded 2-core machine. The old server made every scrape wait 5 s
     * per client not reading, 10 s here: a bound of 6 s tells them apart.) */
    double worst = 0;
    size_t size = 0;
    for (int i = 0; i < 5; i++) {
        double t0 = mono_now();
        int fd = connect_to(port, 4);
        send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n");
        static char head[1024];
        size = read_to_end(fd, head, sizeof head);
        close(fd);
        double dt = mono_now() - t0;
        CHECK_MSG(strncmp(head, "HTTP/1.1 200 OK\r\n", 17) == 0, "status line: %.40s", head);
        if (dt > worst) worst = dt;
    }
    printf("  5 scrapes of %zu bytes while 2 clients do not read theirs: max %.2f ms\n", size, worst * 1e3);
    CHECK_MSG(size > 5000000, "the exposition is only %zu bytes", size);
    CHECK_MSG(worst < 6.0, "a scrape took %.3f s", worst);
    for (int i = 0; i < 2; i++) close(slow[i]);
    CHECK_OK(kplm_close(m));
    kplm_free(m);
}

int main(void) {
    int failures = 0;
    RUN_T(hostile_clients, 60);
    RUN_T(cap_drops_oldest_idle, 60);
    RUN_T(slow_reader_does_not_stall, 60);
    return failures ? 1 : 0;
}
