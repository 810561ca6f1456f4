#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kplm_shims.h"

void kplmshim_set_thread_name(const char *name) {
    (void)pthread_setname_np(pthread_self(), name);
}

/* One slot per thread: the innermost callback this thread is running. */
static _Thread_local void *callback_frame;

void *kplmshim_callback_frame_get(void) { return callback_frame; }
void kplmshim_callback_frame_set(void *frame) { callback_frame = frame; }

/* ---- Writer indices --------------------------------------------------- */

__thread int kplmshim_writer_plus1 __attribute__((tls_model("initial-exec"))) = 0;

static pthread_mutex_t writers_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t writers_used;            /* bit i: index i is held */
static pthread_key_t writers_key;
static pthread_once_t writers_once = PTHREAD_ONCE_INIT;

_Static_assert(KPLMSHIM_MAX_WRITERS == 64, "writers_used is one 64-bit word");

/* Thread exit: give the index back. The thread has finished every put, so
 * the next owner of the index continues its cells as their single writer
 * (the mutex orders the old owner's writes before the new owner's). A put
 * from a later destructor of the same thread takes the shared path. */
static void writer_release(void *value) {
    int index = (int)(intptr_t)value - 1;
    kplmshim_writer_plus1 = -1;
    pthread_mutex_lock(&writers_lock);
    writers_used &= ~(UINT64_C(1) << index);
    pthread_mutex_unlock(&writers_lock);
}

/* Read sections of the C ABI's key index (KPLMCABI's KeyIndexReaders):
 * one 64-byte line per writer index, odd while its thread is in a lookup. */
static _Alignas(64) uint64_t reader_words[KPLMSHIM_MAX_WRITERS * 8];

void *kplmshim_reader_words(void) { return reader_words; }

/* In a forked child only the forking thread exists: every other index is
 * free again, and no read section is open (a vanished thread's odd word
 * would make the index wait for ever, and fool its index's next owner).
 * The lock may have been held by a vanished thread: re-create. */
static void writers_after_fork_in_child(void) {
    for (size_t i = 0; i < sizeof reader_words / sizeof reader_words[0]; i++) reader_words[i] = 0;
    pthread_mutex_init(&writers_lock, NULL);
    int mine = kplmshim_writer_plus1;
    writers_used = mine > 0 ? UINT64_C(1) << (mine - 1) : 0;
}

static void writers_init(void) {
    (void)pthread_key_create(&writers_key, writer_release);
    (void)pthread_atfork(NULL, NULL, writers_after_fork_in_child);
}

int kplmshim_writer_assign(void) {
    if (kplmshim_writer_plus1 != 0) return kplmshim_writer_plus1 > 0 ? kplmshim_writer_plus1 - 1 : -1;
    pthread_once(&writers_once, writers_init);
    pthread_mutex_lock(&writers_lock);
    int index = -1;
    if (~writers_used != 0) {
        index = __builtin_ctzll(~writers_used);
        writers_used |= UINT64_C(1) << index;
    }
    pthread_mutex_unlock(&writers_lock);
    if (index >= 0 && pthread_setspecific(writers_key, (void *)(intptr_t)(index + 1)) != 0) {
        /* No destructor could be registered: the index would never come back. */
        pthread_mutex_lock(&writers_lock);
        writers_used &= ~(UINT64_C(1) << index);
        pthread_mutex_unlock(&writers_lock);
        index = -1;
    }
    kplmshim_writer_plus1 = index >= 0 ? index + 1 : -1;
    return index;
}

int kplmshim_writers_in_use(void) {
    pthread_once(&writers_once, writers_init);
    pthread_mutex_lock(&writers_lock);
    int n = __builtin_popcountll(writers_used);
    pthread_mutex_unlock(&writers_lock);
    return n;
}

/* ---- Asymmetric barrier ------------------------------------------------ */

static int membarrier_call(int cmd) { return (int)syscall(SYS_membarrier, cmd, 0, 0); }

static pthread_once_t barrier_once = PTHREAD_ONCE_INIT;
static int barrier_ok;

static void barrier_register(void) {
    int supported = membarrier_call(MEMBARRIER_CMD_QUERY);
    barrier_ok = supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                 membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

int kplmshim_heavy_barrier_available(void) {
    pthread_once(&barrier_once, barrier_register);
    return barrier_ok;
}

int kplmshim_heavy_barrier(void) {
    if (membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return 0;
    /* A forked child may need to register again. */
    if (errno == EPERM && membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
        membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return 0;
    return -1;
}

/* ---- Current second ----------------------------------------------------- */

long long kplmshim_second_now = LLONG_MIN;

static pthread_mutex_t ticker_lock = PTHREAD_MUTEX_INITIALIZER;
static int ticker_running;
static pthread_once_t ticker_once = PTHREAD_ONCE_INIT;

static long long coarse_second(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec;
}

static void *ticker_main(void *unused) {
    (void)unused;
    (void)pthread_setname_np(pthread_self(), "kplm-clock");
    for (;;) {
        long long second = coarse_second();
        __atomic_store_n(&kplmshim_second_now, second, __ATOMIC_RELAXED);
        /* Wake 2 ms after the next boundary of the precise clock (same
         * origin): by then the coarse clock, updated every tick, has moved on
         * too; if not, the loop stores the same second and sleeps 2 ms. */
        struct timespec wake = {.tv_sec = (time_t)second + 1, .tv_nsec = 2000000};
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > (time_t)second) {
            wake = now;
            wake.tv_nsec += 2000000;
            if (wake.tv_nsec >= 1000000000L) { wake.tv_sec += 1; wake.tv_nsec -= 1000000000L; }
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) == EINTR) {}
    }
    return NULL;
}

/* The ticker does not survive fork: the child reads the clock until a new
 * manager restarts it. */
static void ticker_after_fork_in_child(void) {
    pthread_mutex_init(&ticker_lock, NULL);
    ticker_running = 0;
    __atomic_store_n(&kplmshim_second_now, LLONG_MIN, __ATOMIC_RELAXED);
}

static void ticker_init(void) { (void)pthread_atfork(NULL, NULL, ticker_after_fork_in_child); }

int kplmshim_second_ticker_start(void) {
    pthread_once(&ticker_once, ticker_init);
    int result = 0;
    pthread_mutex_lock(&ticker_lock);
    if (!ticker_running) {
        pthread_attr_t attr;
        pthread_t thread;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        /* Every signal blocked in the ticker: it must never run a handler. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        /* Valid at once, not only once the thread has run. */
        __atomic_store_n(&kplmshim_second_now, coarse_second(), __ATOMIC_RELAXED);
        if (pthread_create(&thread, &attr, ticker_main, NULL) == 0) {
            ticker_running = 1;
        } else {
            __atomic_store_n(&kplmshim_second_now, LLONG_MIN, __ATOMIC_RELAXED);
            result = -1;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&ticker_lock);
    return result;
}

/* ---- Fork generation ---------------------------------------------------- */

unsigned long long kplmshim_fork_generation = 0;

static void fork_generation_child(void) {
    __atomic_add_fetch(&kplmshim_fork_generation, 1, __ATOMIC_RELAXED);
}

static pthread_once_t fork_generation_once = PTHREAD_ONCE_INIT;

static void fork_generation_register(void) {
    pthread_atfork(NULL, NULL, fork_generation_child);
}

void kplmshim_fork_generation_watch(void) {
    pthread_once(&fork_generation_once, fork_generation_register);
}

/* ---- Block pools ------------------------------------------------------ */

/* AddressSanitizer's manual poisoning (weak: null outside sanitized
 * processes). */
extern void __asan_poison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));
extern void __asan_unpoison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));

static void pool_poison(void *p, size_t n) { if (__asan_poison_memory_region) __asan_poison_memory_region(p, n); }
static void pool_unpoison(void *p, size_t n) { if (__asan_unpoison_memory_region) __asan_unpoison_memory_region(p, n); }

/* A chunk: 64 KiB aligned to its size, so a block finds its chunk by
 * masking its address. Its first block holds this header; the others are
 * handed out, first in address order (`fresh`), then from its free list. */
#define POOL_CHUNK_BYTES ((uintptr_t)64 * 1024)

typedef struct pool_chunk {
    struct pool_chunk *prev, *next;                 /* every chunk of the pool */
    struct pool_chunk *partial_prev, *partial_next; /* chunks with a free block */
    void *free_blocks;                              /* linked through their first word */
    uint32_t fresh;                                 /* index of the next never-used block */
    uint32_t free_count;                            /* blocks not handed out */
    int in_partial;
} pool_chunk;

typedef struct {
    pthread_mutex_t lock;
    size_t block_bytes;
    uint32_t header_blocks;                      /* blocks at a chunk's start not handed out */
    pool_chunk *chunks;                          /* every chunk */
    pool_chunk *partial_head, *partial_tail;     /* allocations come from the head */
    long chunk_count;
    long empty_chunks;                           /* kept as a reserve: at most one */
    long live;
} block_pool;

/* A chunk of lines keeps its writers' dense cell regions (see
 * kplm_shims.h) in the eight lines after its header: one word a writer index. */
#define LINE_CHUNK_HEADER_BLOCKS (1 + KPLMSHIM_MAX_WRITERS * 8 / 64)
_Static_assert(sizeof(pool_chunk) <= KPLMSHIM_DENSE_REGIONS_OFFSET, "the regions follow the chunk's bookkeeping");
_Static_assert(KPLMSHIM_LINE_CHUNK_BYTES == POOL_CHUNK_BYTES, "the header's chunk size is the pools'");

static block_pool pools[KPLMSHIM_POOL_COUNT] = {
    {PTHREAD_MUTEX_INITIALIZER, 64, LINE_CHUNK_HEADER_BLOCKS, NULL, NULL, NULL, 0, 0, 0},
    {PTHREAD_MUTEX_INITIALIZER, 128, 1, NULL, NULL, NULL, 0, 0, 0},
    {PTHREAD_MUTEX_INITIALIZER, 64, 1, NULL, NULL, NULL, 0, 0, 0},
    {PTHREAD_MUTEX_INITIALIZER, 64, 1, NULL, NULL, NULL, 0, 0, 0},
};

/* Blocks a chunk hands out. */
static uint32_t pool_blocks_per_chunk(const block_pool *p) {
    return (uint32_t)(POOL_CHUNK_BYTES / p->block_bytes) - p->header_blocks;
}

/* AddressSanitizer's view of a block handed out or given back. */
static void block_unpoison(const block_pool *p, void *block) { pool_unpoison(block, p->block_bytes); }
static void block_poison(const block_pool *p, void *block) { pool_poison(block, p->block_bytes); }

/* A chunk of lines' region words (any address in the chunk finds them). */
static uintptr_t *dense_regions(void *chunk) { return kplmshim_dense_region_word(chunk, 0); }

static long dense_regions_mapped;   /* atomic: regions mapped now, for tests */

/* LeakSanitizer's root regions (weak: null outside sanitized processes). A
 * cell holds the only pointer to its distribution counts (CellBuckets): the
 * leak check must scan the regions, as it scans the heap. */
extern void __lsan_register_root_region(const void *p, size_t size) __attribute__((weak));
extern void __lsan_unregister_root_region(const void *p, size_t size) __attribute__((weak));

/* Unmaps the regions of a chunk of lines whose lines are all free (so no
 * cell of them is in use, and no line of the chunk can be passed to
 * kplmshim_dense_cell until one is allocated again, under the pool's lock). */
static void dense_regions_unmap(pool_chunk *c) {
    uintptr_t *regions = dense_regions(c);
    for (int w = 0; w < KPLMSHIM_MAX_WRITERS; w++) {
        if (!regions[w]) continue;
        if (__lsan_unregister_root_region) __lsan_unregister_root_region((void *)regions[w], KPLMSHIM_DENSE_REGION_BYTES);
        munmap((void *)regions[w], KPLMSHIM_DENSE_REGION_BYTES);
        regions[w] = 0;
        __atomic_fetch_sub(&dense_regions_mapped, 1, __ATOMIC_RELAXED);
    }
}

static void partial_append(block_pool *p, pool_chunk *c) {
    c->partial_prev = p->partial_tail;
    c->partial_next = NULL;
    if (p->partial_tail) p->partial_tail->partial_next = c; else p->partial_head = c;
    p->partial_tail = c;
    c->in_partial = 1;
}

static void partial_remove(block_pool *p, pool_chunk *c) {
    if (c->partial_prev) c->partial_prev->partial_next = c->partial_next; else p->partial_head = c->partial_next;
    if (c->partial_next) c->partial_next->partial_prev = c->partial_prev; else p->partial_tail = c->partial_prev;
    c->partial_prev = c->partial_next = NULL;
    c->in_partial = 0;
}

static pool_chunk *chunk_new(block_pool *p) {
    pool_chunk *c = aligned_alloc(POOL_CHUNK_BYTES, POOL_CHUNK_BYTES);
    if (!c) return NULL;
    c->prev = NULL;
    c->next = p->chunks;
    if (p->chunks) p->chunks->prev = c;
    p->chunks = c;
    c->free_blocks = NULL;
    c->fresh = p->header_blocks;
    if (p == &pools[KPLMSHIM_POOL_LINES]) memset(dense_regions(c), 0, KPLMSHIM_MAX_WRITERS * sizeof(uintptr_t));
    c->free_count = pool_blocks_per_chunk(p);
    p->chunk_count++;
    p->empty_chunks++;
    partial_append(p, c);
    pool_poison((char *)c + p->header_blocks * p->block_bytes, POOL_CHUNK_BYTES - p->header_blocks * p->block_bytes);
    return c;
}

static void chunk_release(block_pool *p, pool_chunk *c) {
    if (c->in_partial) partial_remove(p, c);
    if (c->prev) c->prev->next = c->next; else p->chunks = c->next;
    if (c->next) c->next->prev = c->prev;
    p->chunk_count--;
    pool_unpoison(c, POOL_CHUNK_BYTES);
    free(c);
}

/* Fork: held across it, so that no other thread is halfway through a pool
 * in the child's copy; released in both processes after. */
static void pools_before_fork(void) {
    for (int i = 0; i < KPLMSHIM_POOL_COUNT; i++) pthread_mutex_lock(&pools[i].lock);
}
static void pools_after_fork(void) {
    for (int i = KPLMSHIM_POOL_COUNT - 1; i >= 0; i--) pthread_mutex_unlock(&pools[i].lock);
}
static pthread_once_t pools_once = PTHREAD_ONCE_INIT;
static void pools_register(void) { (void)pthread_atfork(pools_before_fork, pools_after_fork, pools_after_fork); }

void *kplmshim_block_alloc(int pool) {
    if (pool < 0 || pool >= KPLMSHIM_POOL_COUNT) return NULL;
    pthread_once(&pools_once, pools_register);
    block_pool *p = &pools[pool];
    void *block = NULL;
    pthread_mutex_lock(&p->lock);
    pool_chunk *c = p->partial_head ? p->partial_head : chunk_new(p);
    if (c) {
        if (c->free_count == pool_blocks_per_chunk(p)) p->empty_chunks--;
        if (c->free_blocks) {
            block = c->free_blocks;
            block_unpoison(p, block);
            c->free_blocks = *(void **)block;
        } else {
            block = (char *)c + (size_t)c->fresh * p->block_bytes;
            c->fresh++;
            block_unpoison(p, block);
        }
        if (--c->free_count == 0) partial_remove(p, c);
        p->live++;
    }
    pthread_mutex_unlock(&p->lock);
    return block;
}

void kplmshim_block_free(int pool, void *block) {
    if (!block || pool < 0 || pool >= KPLMSHIM_POOL_COUNT) return;
    block_pool *p = &pools[pool];
    pool_chunk *c = (pool_chunk *)((uintptr_t)block & ~(POOL_CHUNK_BYTES - 1));
    if (pool == KPLMSHIM_POOL_LINES) {
        /* The next line handed out here finds its cells zero (no thread
         * reaches the cells of a line being freed; the regions stay mapped
         * while the line is in use, so until the lock below). A cell that
         * reads zero is not written: its page may never have been touched
         * (reading it maps the shared zero page), and writing would make
         * it resident. */
        uintptr_t *regions = dense_regions(c);
        for (int w = 0; w < KPLMSHIM_MAX_WRITERS; w++) {
            uintptr_t region = __atomic_load_n(&regions[w], __ATOMIC_ACQUIRE);
            if (!region) continue;
            uint64_t *cell = kplmshim_dense_cell_in(region, block);
            uint64_t any = 0;
            for (size_t i = 0; i < KPLMSHIM_DENSE_CELL_BYTES / 8; i++) any |= cell[i];
            if (any) memset(cell, 0, KPLMSHIM_DENSE_CELL_BYTES);
        }
    }
    pthread_mutex_lock(&p->lock);
    *(void **)block = c->free_blocks;
    c->free_blocks = block;
    block_poison(p, block);
    p->live--;
    /* A chunk that was full takes allocations again after the others (the
     * older chunks fill first, so that emptied ones can be given back). */
    if (c->free_count++ == 0) partial_append(p, c);
    if (c->free_count == pool_blocks_per_chunk(p)) {
        if (p == &pools[KPLMSHIM_POOL_LINES]) dense_regions_unmap(c);
        /* Empty: kept if it is the only empty chunk (a reserve against
         * allocating and freeing a chunk at every key), else given back. */
        if (p->empty_chunks > 0) chunk_release(p, c);
        else p->empty_chunks++;
    }
    pthread_mutex_unlock(&p->lock);
}

void *kplmshim_dense_cell(const void *line, int writer) {
    if (writer < 0 || writer >= KPLMSHIM_MAX_WRITERS) return NULL;
    uintptr_t *word = kplmshim_dense_region_word(line, writer);
    uintptr_t region = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (!region) {
        /* Untouched pages cost no memory: a writer that puts on one key of
         * the chunk makes one page resident. (Under strict overcommit,
         * vm.overcommit_memory = 2, the whole region is committed: 128 KiB a
         * (chunk of 1,015 keys, writer index with a cell in it).) */
        void *made = mmap(NULL, KPLMSHIM_DENSE_REGION_BYTES, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (made == MAP_FAILED) return NULL;
        uintptr_t expected = 0;
        if (__atomic_compare_exchange_n(word, &expected, (uintptr_t)made, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            region = (uintptr_t)made;
            __atomic_fetch_add(&dense_regions_mapped, 1, __ATOMIC_RELAXED);
            if (__lsan_register_root_region) __lsan_register_root_region(made, KPLMSHIM_DENSE_REGION_BYTES);
        } else {
            munmap(made, KPLMSHIM_DENSE_REGION_BYTES);
            region = expected;
        }
    }
    return kplmshim_dense_cell_in(region, line);
}

long kplmshim_dense_regions_mapped(void) { return __atomic_load_n(&dense_regions_mapped, __ATOMIC_RELAXED); }

long kplmshim_blocks_live(int pool) {
    if (pool < 0 || pool >= KPLMSHIM_POOL_COUNT) return 0;
    block_pool *p = &pools[pool];
    pthread_mutex_lock(&p->lock);
    long live = p->live;
    pthread_mutex_unlock(&p->lock);
    return live;
}

long kplmshim_block_chunks(int pool) {
    if (pool < 0 || pool >= KPLMSHIM_POOL_COUNT) return 0;
    block_pool *p = &pools[pool];
    pthread_mutex_lock(&p->lock);
    long chunks = p->chunk_count;
    pthread_mutex_unlock(&p->lock);
    return chunks;
}
