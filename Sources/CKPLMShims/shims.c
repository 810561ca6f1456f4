#define _GNU_SOURCE
#include <pthread.h>
#include "kplm_shims.h"

void kplmshim_set_thread_name(const char *name) {
    (void)pthread_setname_np(pthread_self(), name);
}

/* One slot per thread: the innermost callback this thread is running. */
static _Thread_local void *callback_frame;

void *kplmshim_callback_frame_get(void) { return callback_frame; }
void kplmshim_callback_frame_set(void *frame) { callback_frame = frame; }
