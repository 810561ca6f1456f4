/* A deliberately naive metrics store: see naive_metrics.h. */
#define _GNU_SOURCE
#include "naive_metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/** One second of observations. */
typedef struct {
    int64_t second;
    uint64_t count;
    double sum, min, max;
} naive_bucket;

struct naive_entry {
    naive_metrics *owner;
    uint64_t hash;
    naive_bucket *buckets;   /* ascending seconds, growable */
    size_t bucket_count, bucket_capacity;
    uint64_t pending_count;  /* since the last flush */
    double pending_sum, pending_min, pending_max;
    const char *name, *stream, *shard, *error_code;   /* point into text */
    char text[];             /* the four strings, copied */
};

struct naive_metrics {
    pthread_mutex_t lock;
    naive_entry **slots;     /* open addressing, linear probing; NULL = empty */
    size_t capacity;         /* a power of two */
    size_t used;
    int64_t window;
    _Atomic int64_t now_second;   /* written by the ticker */
    pthread_t ticker;
};

/* ---- time --------------------------------------------------------------- */

static int64_t monotonic_second(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* Stores the current second, then sleeps until 2 ms after the next
 * boundary (as kplm's ticker). Ended by pthread_cancel in naive_free
 * (clock_nanosleep is a cancellation point). */
static void *ticker_main(void *arg) {
    naive_metrics *n = arg;
    for (;;) {
        int64_t second = monotonic_second();
        atomic_store_explicit(&n->now_second, second, memory_order_relaxed);
        struct timespec wake = {.tv_sec = (time_t)second + 1, .tv_nsec = 2000000};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) == EINTR) {}
    }
    return NULL;
}

/* ---- keys --------------------------------------------------------------- */

static const char *or_empty(const char *s) { return s ? s : ""; }

/* FNV-1a over the four strings, each with its terminating NUL. */
static uint64_t hash_key(const char *name, const char *stream, const char *shard, const char *error_code) {
    const char *parts[4] = {name, stream, shard, error_code};
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 4; i++) {
        const unsigned char *p = (const unsigned char *)parts[i];
        do {
            h ^= *p;
            h *= 1099511628211ULL;
        } while (*p++);
    }
    return h;
}

static int same_key(const naive_entry *e, uint64_t hash, const char *name, const char *stream,
                    const char *shard, const char *error_code) {
    return e->hash == hash && !strcmp(e->name, name) && !strcmp(e->stream, stream) &&
           !strcmp(e->shard, shard) && !strcmp(e->error_code, error_code);
}

static naive_entry *new_entry(naive_metrics *n, uint64_t hash, const char *name, const char *stream,
                              const char *shard, const char *error_code) {
    size_t l[4] = {strlen(name) + 1, strlen(stream) + 1, strlen(shard) + 1, strlen(error_code) + 1};
    naive_entry *e = malloc(sizeof *e + l[0] + l[1] + l[2] + l[3]);
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    e->owner = n;
    e->hash = hash;
    char *p = e->text;
    e->name = memcpy(p, name, l[0]);
    p += l[0];
    e->stream = memcpy(p, stream, l[1]);
    p += l[1];
    e->shard = memcpy(p, shard, l[2]);
    p += l[2];
    e->error_code = memcpy(p, error_code, l[3]);
    return e;
}

/* Doubles the table. Under the lock. */
static int grow(naive_metrics *n) {
    size_t capacity = n->capacity * 2;
    naive_entry **slots = calloc(capacity, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < n->capacity; i++) {
        naive_entry *e = n->slots[i];
        if (!e) continue;
        size_t j = (size_t)e->hash & (capacity - 1);
        while (slots[j]) j = (j + 1) & (capacity - 1);
        slots[j] = e;
    }
    free(n->slots);
    n->slots = slots;
    n->capacity = capacity;
    return 0;
}

/* Finds or inserts the key. Under the lock; NULL when out of memory. */
static naive_entry *find_or_insert(naive_metrics *n, uint64_t hash, const char *name, const char *stream,
                                   const char *shard, const char *error_code) {
    size_t mask = n->capacity - 1;
    size_t i = (size_t)hash & mask;
    for (naive_entry *e; (e = n->slots[i]) != NULL; i = (i + 1) & mask)
        if (same_key(e, hash, name, stream, shard, error_code)) return e;
    if ((n->used + 1) * 2 > n->capacity) {   /* load factor <= 1/2 */
        if (grow(n) != 0) return NULL;
        mask = n->capacity - 1;
        i = (size_t)hash & mask;
        while (n->slots[i]) i = (i + 1) & mask;
    }
    naive_entry *e = new_entry(n, hash, name, stream, shard, error_code);
    if (!e) return NULL;
    n->slots[i] = e;
    n->used++;
    return e;
}

/* ---- recording ---------------------------------------------------------- */

/* One observation at the current second. Under the lock. */
static int record(naive_entry *e, double value) {
    int64_t second = atomic_load_explicit(&e->owner->now_second, memory_order_relaxed);
    naive_bucket *b = e->bucket_count ? &e->buckets[e->bucket_count - 1] : NULL;
    if (!b || b->second != second) {
        if (e->bucket_count == e->bucket_capacity) {
            size_t capacity = e->bucket_capacity ? e->bucket_capacity * 2 : 4;
            naive_bucket *buckets = realloc(e->buckets, capacity * sizeof *buckets);
            if (!buckets) return NAIVE_ENOMEM;
            e->buckets = buckets;
            e->bucket_capacity = capacity;
        }
        b = &e->buckets[e->bucket_count++];
        b->second = second;
        b->count = 0;
        b->sum = 0;
        b->min = value;
        b->max = value;
    }
    b->count++;
    b->sum += value;
    if (value < b->min) b->min = value;
    if (value > b->max) b->max = value;
    if (e->pending_count == 0) {
        e->pending_sum = 0;
        e->pending_min = value;
        e->pending_max = value;
    }
    e->pending_count++;
    e->pending_sum += value;
    if (value < e->pending_min) e->pending_min = value;
    if (value > e->pending_max) e->pending_max = value;
    return NAIVE_OK;
}

/* ---- API ---------------------------------------------------------------- */

naive_metrics *naive_new(uint32_t window_seconds) {
    if (window_seconds == 0) return NULL;
    naive_metrics *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->capacity = 64;
    n->slots = calloc(n->capacity, sizeof *n->slots);
    n->window = window_seconds;
    atomic_store(&n->now_second, monotonic_second());
    if (!n->slots || pthread_mutex_init(&n->lock, NULL) != 0) {
        free(n->slots);
        free(n);
        return NULL;
    }
    if (pthread_create(&n->ticker, NULL, ticker_main, n) != 0) {
        pthread_mutex_destroy(&n->lock);
        free(n->slots);
        free(n);
        return NULL;
    }
    return n;
}

int naive_put(naive_metrics *n, const char *name, double value,
              const char *stream, const char *shard, const char *error_code) {
    if (!n || !name || !*name || !isfinite(value)) return NAIVE_EINVAL;
    stream = or_empty(stream);
    shard = or_empty(shard);
    error_code = or_empty(error_code);
    uint64_t hash = hash_key(name, stream, shard, error_code);
    pthread_mutex_lock(&n->lock);
    naive_entry *e = find_or_insert(n, hash, name, stream, shard, error_code);
    int st = e ? record(e, value) : NAIVE_ENOMEM;
    pthread_mutex_unlock(&n->lock);
    return st;
}

naive_entry *naive_handle_get(naive_metrics *n, const char *name,
                              const char *stream, const char *shard, const char *error_code) {
    if (!n || !name || !*name) return NULL;
    stream = or_empty(stream);
    shard = or_empty(shard);
    error_code = or_empty(error_code);
    uint64_t hash = hash_key(name, stream, shard, error_code);
    pthread_mutex_lock(&n->lock);
    naive_entry *e = find_or_insert(n, hash, name, stream, shard, error_code);
    pthread_mutex_unlock(&n->lock);
    return e;
}

int naive_handle_put(naive_entry *h, double value) {
    if (!h || !isfinite(value)) return NAIVE_EINVAL;
    pthread_mutex_lock(&h->owner->lock);
    int st = record(h, value);
    pthread_mutex_unlock(&h->owner->lock);
    return st;
}

static naive_stats stats_of(const naive_entry *e) {
    naive_stats s = {e->name, e->stream, e->shard, e->error_code, 0, 0, 0, 0};
    return s;
}

size_t naive_flush(naive_metrics *n, naive_visit visit, void *user_data) {
    size_t handed = 0;
    pthread_mutex_lock(&n->lock);
    int64_t oldest = atomic_load_explicit(&n->now_second, memory_order_relaxed) - n->window + 1;
    for (size_t i = 0; i < n->capacity; i++) {
        naive_entry *e = n->slots[i];
        if (!e) continue;
        if (e->pending_count) {
            naive_stats s = stats_of(e);
            s.count = e->pending_count;
            s.sum = e->pending_sum;
            s.min = e->pending_min;
            s.max = e->pending_max;
            visit(user_data, &s);
            e->pending_count = 0;
            handed++;
        }
        size_t keep = 0;   /* buckets still in the window start at `keep` */
        while (keep < e->bucket_count && e->buckets[keep].second < oldest) keep++;
        if (keep) {
            memmove(e->buckets, e->buckets + keep, (e->bucket_count - keep) * sizeof *e->buckets);
            e->bucket_count -= keep;
        }
    }
    pthread_mutex_unlock(&n->lock);
    return handed;
}

size_t naive_snapshots(naive_metrics *n, naive_visit visit, void *user_data) {
    size_t visited = 0;
    pthread_mutex_lock(&n->lock);
    int64_t oldest = atomic_load_explicit(&n->now_second, memory_order_relaxed) - n->window + 1;
    for (size_t i = 0; i < n->capacity; i++) {
        naive_entry *e = n->slots[i];
        if (!e) continue;
        naive_stats s = stats_of(e);
        for (size_t b = 0; b < e->bucket_count; b++) {
            const naive_bucket *k = &e->buckets[b];
            if (k->second < oldest) continue;
            if (s.count == 0 || k->min < s.min) s.min = k->min;
            if (s.count == 0 || k->max > s.max) s.max = k->max;
            s.count += k->count;
            s.sum += k->sum;
        }
        if (s.count) {
            visit(user_data, &s);
            visited++;
        }
    }
    pthread_mutex_unlock(&n->lock);
    return visited;
}

void naive_free(naive_metrics *n) {
    if (!n) return;
    pthread_cancel(n->ticker);
    pthread_join(n->ticker, NULL);
    for (size_t i = 0; i < n->capacity; i++) {
        naive_entry *e = n->slots[i];
        if (!e) continue;
        free(e->buckets);
        free(e);
    }
    free(n->slots);
    pthread_mutex_destroy(&n->lock);
    free(n);
}
