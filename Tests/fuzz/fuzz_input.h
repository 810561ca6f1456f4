/*
 * fuzz_input.h — reading a fuzz input, shared by the fuzz targets
 * (fuzz_abi.c, fuzz_sinks.c). Each target is its own executable: the state
 * here is per target. Define FUZZ_ARENA_SIZE (bytes of string arena per
 * input) before including it.
 *
 * Integers are little endian; reading past the end gives 0. Strings made
 * from the input live in an arena that lasts one input.
 */
#ifndef KPLM_FUZZ_INPUT_H
#define KPLM_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef FUZZ_ARENA_SIZE
#error "define FUZZ_ARENA_SIZE before including fuzz_input.h"
#endif

static const uint8_t *in_data;
static size_t in_size, in_pos;

static char arena[FUZZ_ARENA_SIZE];
static size_t arena_used;

/* Starts reading `data` and empties the arena. */
static inline void in_begin(const uint8_t *data, size_t size) {
    in_data = data;
    in_size = size;
    in_pos = 0;
    arena_used = 0;
}

static inline int in_more(void) { return in_pos < in_size; }
static inline uint8_t u8(void) { return in_pos < in_size ? in_data[in_pos++] : 0; }
static inline uint16_t u16(void) { uint16_t lo = u8(); return (uint16_t)(lo | (uint16_t)u8() << 8); }
static inline uint32_t u32(void) { uint32_t lo = u16(); return lo | (uint32_t)u16() << 16; }
static inline uint64_t u64(void) { uint64_t lo = u32(); return lo | (uint64_t)u32() << 32; }
static inline double f64(void) { uint64_t b = u64(); double d; memcpy(&d, &b, sizeof d); return d; }

/* A NUL-terminated copy of `len` bytes in the arena ("arena-full" when full). */
static inline const char *arena_copy(const void *bytes, size_t len) {
    if (arena_used + len + 1 > FUZZ_ARENA_SIZE) return "arena-full";
    char *p = arena + arena_used;
    memcpy(p, bytes, len);
    p[len] = 0;
    arena_used += len + 1;
    return p;
}

/* A string of the next `len` (< 64) input bytes, byte by byte. */
static inline const char *in_short_str(size_t len) {
    char buf[64];
    size_t i;
    for (i = 0; i < len && i < sizeof buf && in_more(); i++) buf[i] = (char)u8();
    return arena_copy(buf, i);
}

/* A string of up to 1199 input bytes, its length read first. */
static inline const char *in_long_str(void) {
    size_t len = u16() % 1200;
    if (len > in_size - in_pos) len = in_size - in_pos;
    const char *p = arena_copy(in_data + in_pos, len);
    in_pos += len;
    return p;
}

#endif
