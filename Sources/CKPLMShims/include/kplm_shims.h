/* Private helpers the Swift core cannot express without Foundation. Not part
 * of the public ABI: the exported library hides these symbols. */
#ifndef KPLM_SHIMS_H
#define KPLM_SHIMS_H

#include <stdint.h>

/** Names the calling thread (at most 15 bytes are kept). Best effort. */
void kplmshim_set_thread_name(const char *name);

/** Per-thread pointer the core uses to detect re-entrant callbacks. */
void *kplmshim_callback_frame_get(void);
void kplmshim_callback_frame_set(void *frame);

/* ---- Per-thread cells of the hot path ------------------------------------
 * A thread that puts gets a small index (its "writer index") that selects its
 * single-writer cell in every metric. Indices are recycled when threads exit
 * (a pthread key destructor) and re-dealt in a forked child. */

/** How many threads can hold a writer index at once; others take the shared,
 * locked path. */
#define KPLMSHIM_MAX_WRITERS 64

/** Per-thread: 0 = no index yet, k > 0 = index k - 1, -1 = none (the table
 * was full, or the thread is exiting): use the shared path. Initial-exec TLS,
 * so reading it is one load relative to the thread pointer. */
extern __thread int kplmshim_writer_plus1 __attribute__((tls_model("initial-exec")));

/** The calling thread's writer index, or -1 for the shared path. Assigns one
 * on the first call (slow; takes a mutex once per thread). */
int kplmshim_writer_assign(void);

/** The read-section words of the C ABI's key index: KPLMSHIM_MAX_WRITERS
 * 64-byte lines of 8 uint64_t, the first word of line i for writer index i.
 * Zeroed in a forked child (no thread of the parent is in a section there). */
void *kplmshim_reader_words(void);

/** The calling thread's writer index (-1: shared path). Inlined into Swift. */
static inline int kplmshim_writer_index(void) {
    int v = kplmshim_writer_plus1;
    return v > 0 ? v - 1 : (v == 0 ? kplmshim_writer_assign() : -1);
}

/** The raw per-thread value (see kplmshim_writer_plus1), for the hot path. */
static inline int kplmshim_writer_raw(void) { return kplmshim_writer_plus1; }

/** Number of writer indices in use (for tests: threads give theirs back). */
int kplmshim_writers_in_use(void);

/** Asks the CPU to start loading the cache line at `p` (a hint: never
 * faults, whatever `p` is). Passes over many keys issue it a few keys ahead,
 * so that the misses of several keys overlap instead of queueing. */
static inline void kplmshim_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/* ThreadSanitizer's annotation interface: defined in sanitized processes
 * only (weak: null elsewhere). */
extern void __tsan_acquire(void *addr) __attribute__((weak));
extern void __tsan_release(void *addr) __attribute__((weak));

/** Tells ThreadSanitizer, in a sanitized process, that the lock identified
 * by `addr` was just acquired; does nothing otherwise (a test of a weak
 * symbol). For locks whose code it cannot see (Synchronization.Mutex: the
 * standard library's prebuilt futex code), so that it orders their
 * critical sections as it does a pthread mutex's. */
static inline void kplmshim_tsan_acquire(void *addr) { if (__tsan_acquire) __tsan_acquire(addr); }

/** The other half of kplmshim_tsan_acquire: the lock identified by `addr`
 * is about to be released. */
static inline void kplmshim_tsan_release(void *addr) { if (__tsan_release) __tsan_release(addr); }

/** Keeps the compiler from moving memory accesses across this point (no
 * instruction is emitted). The other half of an asymmetric barrier: see
 * kplmshim_heavy_barrier. */
static inline void kplmshim_compiler_barrier(void) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

/** Registers the process for expedited membarrier. Returns 1 when
 * kplmshim_heavy_barrier is usable, 0 when the kernel lacks it (the core
 * then keeps every put on the shared, locked path). */
int kplmshim_heavy_barrier_available(void);

/** Makes every running thread of the process execute a full memory barrier
 * before returning (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)), so a
 * compiler barrier on the writer's side acts as a full fence against this
 * call. Returns 0 on success, -1 if it failed (the caller must not rely on
 * it). */
int kplmshim_heavy_barrier(void);

/* ---- Current second ------------------------------------------------------
 * The whole seconds of CLOCK_MONOTONIC_COARSE, kept fresh by one process-wide
 * thread ("kplm-clock") that wakes just after each second boundary, so a put
 * reads its bucket's second with one load instead of a clock call. */

/** The cached second, or INT64_MIN while no ticker runs (before the first
 * start, or in a forked child): the caller then reads the clock itself. */
extern long long kplmshim_second_now;

/** The cached second (relaxed load), or INT64_MIN: see kplmshim_second_now. */
static inline long long kplmshim_cached_second(void) {
    return __atomic_load_n(&kplmshim_second_now, __ATOMIC_RELAXED);
}

/** Starts the ticker thread if it is not running (idempotent, thread-safe;
 * again in a forked child). Returns 0, or -1 if no thread could start. */
int kplmshim_second_ticker_start(void);

/* ---- Fork generation -----------------------------------------------------
 * Incremented in a forked child at each fork (never in the parent). A manager
 * records the generation it was created in; one created before a fork is
 * refused in the child (the core's ForkGuard). A C variable, so that a put
 * inlined into another Swift module reads it with one load. */

/** The current generation (written by the fork handler only). */
extern unsigned long long kplmshim_fork_generation;

/** The current generation (relaxed load). */
static inline unsigned long long kplmshim_fork_generation_now(void) {
    return __atomic_load_n(&kplmshim_fork_generation, __ATOMIC_RELAXED);
}

/** Registers the fork handler that increments it (idempotent, thread-safe). */
void kplmshim_fork_generation_watch(void);

/* ---- Block pools -----------------------------------------------------------
 * Fixed-size blocks carved from 64 KiB chunks, each aligned to its size: a
 * metric's header line (64 bytes; a chunk of lines also keeps its dense
 * cells' region words, see below), a writer cell (128 bytes: only the
 * placeholder of removed keys now, a metric's cells are dense) and a key
 * index entry (64 bytes). Issue #13:
 * blocks of one kind sit side by side (a put at 100,000 keys walks 6.4 MB of
 * header lines, not one line per kilobyte of heap), and an aligned
 * allocation costs no padding. A freed
 * block is reused by a later allocation of its kind; allocations fill the
 * oldest chunks with free blocks first, and a chunk whose blocks are all
 * free is given back to the C allocator (one empty chunk per pool is kept
 * in reserve). Thread-safe (a mutex per pool, held across fork by an atfork
 * handler, so a forked child finds the pools consistent). Under
 * AddressSanitizer, a free block is poisoned. */

/** The pools: a block of KPLMSHIM_POOL_LINES is 64 bytes (a chunk hands
 * out 1,015: its first nine lines are its bookkeeping and region words), one
 * of KPLMSHIM_POOL_CELLS 128 bytes, one of KPLMSHIM_POOL_INDEX_ENTRIES 64
 * bytes (the key index's entries that fit in a line: one line each, read by
 * a put by names in one miss), one of KPLMSHIM_POOL_KEY_RECORDS 64 bytes
 * (a key's record in its indexed form: its index line, which can serve as
 * its key index entry). */
enum {
    KPLMSHIM_POOL_LINES = 0,
    KPLMSHIM_POOL_CELLS = 1,
    KPLMSHIM_POOL_INDEX_ENTRIES = 2,
    KPLMSHIM_POOL_KEY_RECORDS = 3,
    KPLMSHIM_POOL_COUNT = 4
};

/** A block of `pool` (uninitialised), or NULL when out of memory. */
void *kplmshim_block_alloc(int pool);

/** Gives back a block of `pool` (NULL is fine). A line's dense cells (see
 * below) are zeroed as it is given back. */
void kplmshim_block_free(int pool, void *block);

/** Blocks of `pool` allocated and not freed (for tests: a freed key gives
 * its blocks back). */
long kplmshim_blocks_live(int pool);

/** Chunks `pool` holds, the reserve included (for tests: emptied chunks
 * are given back). */
long kplmshim_block_chunks(int pool);

/* ---- Dense writer cells ---------------------------------------------------
 * Each writer index's cells of the keys whose header lines share a chunk of
 * KPLMSHIM_POOL_LINES sit in one region of that chunk and writer, in the
 * order of the lines: the cell of writer w for the line at offset 64 * j of
 * its chunk is at region(w) + 128 * j. The chunk keeps the regions'
 * addresses (one word a writer index, after its bookkeeping), so a put finds
 * its cell's address from the line's address and a word that the chunk's
 * other 1,000-odd keys share (in the cache), without waiting for the line:
 * the two misses of a put at many keys overlap (issue #13). A region (128
 * KiB of address space, mapped when the writer first needs a cell of the
 * chunk) makes resident only the pages its cells are on; the regions of a
 * chunk are unmapped when its last line in use is freed. */

/** Bytes of a chunk of lines (aligned to its size: a line's chunk is its
 * address with the low bits cleared). */
#define KPLMSHIM_LINE_CHUNK_BYTES 65536
/** Bytes of a dense cell (a WriterCell). */
#define KPLMSHIM_DENSE_CELL_BYTES 128
/** Bytes of a region: a cell for each line of a chunk. */
#define KPLMSHIM_DENSE_REGION_BYTES (KPLMSHIM_LINE_CHUNK_BYTES / 64 * KPLMSHIM_DENSE_CELL_BYTES)
/** Where a chunk of lines keeps its region words (bytes from its start). */
#define KPLMSHIM_DENSE_REGIONS_OFFSET 64

/** The cell of writer index `writer` for the header line `line` (a block of
 * KPLMSHIM_POOL_LINES in use), its region mapped if it was not; NULL when
 * out of memory or for a writer index out of range. The cells of a line
 * read zero when the line is handed out (a region is zero when mapped, and
 * kplmshim_block_free zeroes the cells of the line it frees), so a cell's
 * user can tell a cell it made from one it did not (see WriterCell's tag);
 * it releases what a cell points to before its line is freed. Thread-safe. */
void *kplmshim_dense_cell(const void *line, int writer);

/** Regions mapped now (for tests: a chunk's go when its lines are all free). */
long kplmshim_dense_regions_mapped(void);

/** The word of `line`'s chunk that holds the region of writer index
 * `writer` (0 to KPLMSHIM_MAX_WRITERS - 1; 0 while none is mapped). */
static inline uintptr_t *kplmshim_dense_region_word(const void *line, int writer) {
    uintptr_t chunk = (uintptr_t)line & ~(uintptr_t)(KPLMSHIM_LINE_CHUNK_BYTES - 1);
    return (uintptr_t *)(chunk + KPLMSHIM_DENSE_REGIONS_OFFSET) + writer;
}

/** The cell for `line` in `region` (a region of `line`'s chunk). */
static inline void *kplmshim_dense_cell_in(uintptr_t region, const void *line) {
    uintptr_t offset = (uintptr_t)line & (KPLMSHIM_LINE_CHUNK_BYTES - 1);
    return (void *)(region + offset / 64 * KPLMSHIM_DENSE_CELL_BYTES);
}

/** The dense cell of writer index `writer_plus1 - 1` (1 to
 * KPLMSHIM_MAX_WRITERS) for the header line `line` (in use), or NULL if its
 * region is not mapped (then no cell of that writer for the line was ever
 * made by kplmshim_dense_cell). For the hot path: a word of the line's chunk,
 * no call. */
static inline void *kplmshim_dense_cell_of(const void *line, int writer_plus1) {
    uintptr_t region = __atomic_load_n(kplmshim_dense_region_word(line, writer_plus1 - 1), __ATOMIC_RELAXED);
    return region ? kplmshim_dense_cell_in(region, line) : (void *)0;
}

/** Starts loading the dense cell of writer index `writer_plus1 - 1` (1 to
 * KPLMSHIM_MAX_WRITERS) for the header line `line` (in use), if its region
 * is mapped: a hint, for a put about to read the line and then its cell. */
static inline void kplmshim_prefetch_dense_cell(const void *line, int writer_plus1) {
    const char *cell = (const char *)kplmshim_dense_cell_of(line, writer_plus1);
    if (cell) {
        __builtin_prefetch(cell, 1, 3);
        __builtin_prefetch(cell + 64, 1, 3);
    }
}

#endif
