/* Private helpers the Swift core cannot express without Foundation. Not part
 * of the public ABI: the exported library hides these symbols. */
#ifndef KPLM_SHIMS_H
#define KPLM_SHIMS_H

/** Names the calling thread (at most 15 bytes are kept). Best effort. */
void kplmshim_set_thread_name(const char *name);

/** Per-thread pointer the core uses to detect re-entrant callbacks. */
void *kplmshim_callback_frame_get(void);
void kplmshim_callback_frame_set(void *frame);

#endif
