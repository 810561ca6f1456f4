/*
 * replay_main.c — runs the fuzz target once per input file, without
 * libFuzzer: `kplm_fuzz_replay FILE|DIR...` (directories: every regular
 * file in them, in name order). Used by the CMake option KPLM_FUZZ to replay
 * Tests/fuzz/corpus and Tests/fuzz/crashes against the shipped libkplm.so.
 * A violated invariant aborts, like under the fuzzer.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A hang (deadlock) is a failure, as under the fuzzer's -timeout. */
#define INPUT_TIMEOUT_SECONDS 60
static const char *current_input;

static void on_timeout(int sig) {
    (void)sig;
    static const char msg[] = "kplm_fuzz_replay: timeout (deadlock?) in input ";
    (void)!write(2, msg, sizeof msg - 1);
    if (current_input) (void)!write(2, current_input, strlen(current_input));
    (void)!write(2, "\n", 1);
    abort();
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) { fclose(f); return 1; }
    for (;;) {
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap *= 2);
            if (!bigger) { free(buf); fclose(f); return 1; }
            buf = bigger;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    current_input = path;
    alarm(INPUT_TIMEOUT_SECONDS);
    LLVMFuzzerTestOneInput(buf, n);
    alarm(0);
    free(buf);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    int files = 0, errors = 0;
    signal(SIGALRM, on_timeout);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); errors++; continue; }
        if (!S_ISDIR(st.st_mode)) { errors += run_file(argv[i]); files++; continue; }
        DIR *d = opendir(argv[i]);
        if (!d) { perror(argv[i]); errors++; continue; }
        char **names = NULL;
        size_t count = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char **more = realloc(names, (count + 1) * sizeof *names);
            if (!more) break;
            names = more;
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            names[count] = malloc(len);
            if (!names[count]) break;
            snprintf(names[count], len, "%s/%s", argv[i], e->d_name);
            count++;
        }
        closedir(d);
        qsort(names, count, sizeof *names, by_name);
        for (size_t k = 0; k < count; k++) {
            struct stat fs;
            if (stat(names[k], &fs) == 0 && S_ISREG(fs.st_mode)) {
                errors += run_file(names[k]);
                files++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("kplm_fuzz_replay: %d inputs replayed, %d unreadable\n", files, errors);
    return errors != 0;
}
