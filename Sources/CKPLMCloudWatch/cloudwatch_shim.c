/* See kplm_cloudwatch_shim.h. */
#include "kplm_cloudwatch_shim.h"
#include "kplm_shim_abi.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Loading the libraries ------------------------------------------------ */

static struct {
    kplmshim_curl_global_init_fn global_init;
    kplmshim_curl_easy_init_fn easy_init;
    kplmshim_curl_easy_setopt_fn easy_setopt;
    kplmshim_curl_easy_perform_fn easy_perform;
    kplmshim_curl_easy_getinfo_fn easy_getinfo;
    kplmshim_curl_easy_cleanup_fn easy_cleanup;
    kplmshim_curl_easy_strerror_fn easy_strerror;
    kplmshim_curl_slist_append_fn slist_append;
    kplmshim_curl_slist_free_all_fn slist_free_all;
} curl;

static struct {
    kplmshim_EVP_Digest_fn digest;
    kplmshim_EVP_sha256_fn sha256;
    kplmshim_HMAC_fn hmac;
} crypto;

static struct {
    kplmshim_deflateInit2__fn deflate_init2;
    kplmshim_deflateBound_fn deflate_bound;
    kplmshim_deflate_fn deflate;
    kplmshim_deflateEnd_fn deflate_end;
    kplmshim_inflateInit2__fn inflate_init2;
    kplmshim_inflate_fn inflate;
    kplmshim_inflateEnd_fn inflate_end;
} zlib;

/** One function to look up: its name and where its address goes. */
typedef struct {
    const char *name;
    void **slot;
} symbol;

/** One library: its SONAME, what it is for, the Debian packages providing
 * it, its functions; after loading, whether it is usable and why not. */
typedef struct {
    unsigned bit;
    const char *soname;
    const char *what;
    const char *packages;
    const symbol *symbols;
    size_t symbol_count;
    int loaded;
    char error[320];
} library;

#define SLOT(table, field, fn) {#fn, (void **)&table.field}
static const symbol curl_symbols[] = {
    SLOT(curl, global_init, curl_global_init),     SLOT(curl, easy_init, curl_easy_init),
    SLOT(curl, easy_setopt, curl_easy_setopt),     SLOT(curl, easy_perform, curl_easy_perform),
    SLOT(curl, easy_getinfo, curl_easy_getinfo),   SLOT(curl, easy_cleanup, curl_easy_cleanup),
    SLOT(curl, easy_strerror, curl_easy_strerror), SLOT(curl, slist_append, curl_slist_append),
    SLOT(curl, slist_free_all, curl_slist_free_all),
};
static const symbol crypto_symbols[] = {
    SLOT(crypto, digest, EVP_Digest),
    SLOT(crypto, sha256, EVP_sha256),
    SLOT(crypto, hmac, HMAC),
};
static const symbol zlib_symbols[] = {
    SLOT(zlib, deflate_init2, deflateInit2_), SLOT(zlib, deflate_bound, deflateBound),
    SLOT(zlib, deflate, deflate),             SLOT(zlib, deflate_end, deflateEnd),
    SLOT(zlib, inflate_init2, inflateInit2_), SLOT(zlib, inflate, inflate),
    SLOT(zlib, inflate_end, inflateEnd),
};
#undef SLOT

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
static library libraries[] = {
    {KPLMSHIM_LIB_CURL, "libcurl.so.4", "HTTP(S) requests",
     "libcurl4 (Debian 12) or libcurl4t64 (Debian 13 and later)", curl_symbols, COUNT(curl_symbols), 0, ""},
    {KPLMSHIM_LIB_CRYPTO, "libcrypto.so.3", "SigV4 signing (SHA-256, HMAC)",
     "libssl3 (Debian 12) or libssl3t64 (Debian 13 and later)", crypto_symbols, COUNT(crypto_symbols), 0, ""},
    {KPLMSHIM_LIB_Z, "libz.so.1", "gzip", "zlib1g", zlib_symbols, COUNT(zlib_symbols), 0, ""},
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int curl_init_code = -1;

static void load_library(library *lib) {
    /* RTLD_LOCAL: the library's symbols do not leak into the process's
     * global scope. The handle is kept for the life of the process. */
    void *handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(lib->error, sizeof lib->error, "%s", why ? why : "dlopen failed");
        return;
    }
    for (size_t i = 0; i < lib->symbol_count; i++) {
        void *address = dlsym(handle, lib->symbols[i].name);
        if (!address) {
            snprintf(lib->error, sizeof lib->error, "%s has no function %s", lib->soname, lib->symbols[i].name);
            for (size_t j = 0; j < i; j++) *lib->symbols[j].slot = NULL;
            dlclose(handle);
            return;
        }
        *lib->symbols[i].slot = address;
    }
    lib->loaded = 1;
}

static void load_all(void) {
    for (size_t i = 0; i < COUNT(libraries); i++) load_library(&libraries[i]);
    if (libraries[0].loaded) curl_init_code = curl.global_init(KPLMSHIM_CURL_GLOBAL_DEFAULT);
}

int kplmshim_load(unsigned which, char *error, size_t error_size) {
    pthread_once(&load_once, load_all);
    for (size_t i = 0; i < COUNT(libraries); i++) {
        const library *lib = &libraries[i];
        if (!(which & lib->bit) || lib->loaded) continue;
        if (error && error_size > 0) {
            snprintf(error, error_size, "%s (%s) cannot be loaded: %s; install the Debian package %s", lib->soname,
                     lib->what, lib->error, lib->packages);
        }
        return -1;
    }
    if ((which & KPLMSHIM_LIB_CURL) && curl_init_code != KPLMSHIM_CURLE_OK) {
        if (error && error_size > 0) {
            snprintf(error, error_size, "libcurl.so.4: curl_global_init failed (%d)", curl_init_code);
        }
        return -1;
    }
    return 0;
}

/** Whether the library of `bit` was loaded (after kplmshim_load). */
static int usable(unsigned bit) { return kplmshim_load(bit, NULL, 0) == 0; }

/* ---- Digests, gzip, HTTP ---------------------------------------------------- */

int kplmshim_cw_sha256(const void *data, size_t len, uint8_t *out) {
    static const uint8_t empty = 0;
    unsigned int out_len = 0;
    if (!usable(KPLMSHIM_LIB_CRYPTO)) return -1;
    if (!crypto.digest(data ? data : &empty, len, out, &out_len, crypto.sha256(), NULL)) return -1;
    return out_len == 32 ? 0 : -1;
}

int kplmshim_cw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t *out) {
    static const uint8_t empty = 0;
    unsigned int out_len = 0;
    if (key_len > INT32_MAX || !usable(KPLMSHIM_LIB_CRYPTO)) return -1;
    if (!crypto.hmac(crypto.sha256(), key ? key : &empty, (int)key_len, data ? data : &empty, len, out, &out_len)) {
        return -1;
    }
    return out_len == 32 ? 0 : -1;
}

/* Runs an initialised zlib stream over data[0..<len] in one Z_FINISH step
 * into a new buffer of `capacity` bytes, then ends the stream. The buffer
 * and the bytes produced on Z_STREAM_END with at most `max_out` produced;
 * else -1 (nothing to free). */
static int finish_z_stream(kplmshim_z_stream *z, kplmshim_deflate_fn step, kplmshim_deflateEnd_fn end,
                           const void *data, size_t len, size_t capacity, size_t max_out,
                           uint8_t **out, size_t *out_len) {
    uint8_t *buffer = malloc(capacity);
    if (!buffer) {
        end(z);
        return -1;
    }
    z->next_in = data;
    z->avail_in = (unsigned int)len;
    z->next_out = buffer;
    z->avail_out = (unsigned int)capacity;
    int rc = step(z, KPLMSHIM_Z_FINISH);
    size_t produced = z->total_out;
    end(z);
    if (rc != KPLMSHIM_Z_STREAM_END || produced > max_out) {
        free(buffer);
        return -1;
    }
    *out = buffer;
    *out_len = produced;
    return 0;
}

int kplmshim_cw_gzip(const void *data, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX || !usable(KPLMSHIM_LIB_Z)) return -1;
    kplmshim_z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
    if (zlib.deflate_init2(&z, KPLMSHIM_Z_DEFAULT_COMPRESSION, KPLMSHIM_Z_DEFLATED, 15 + 16, 8,
                           KPLMSHIM_Z_DEFAULT_STRATEGY, KPLMSHIM_ZLIB_VERSION, (int)sizeof z) != KPLMSHIM_Z_OK) {
        return -1;
    }
    size_t bound = zlib.deflate_bound(&z, (unsigned long)len) + 32;
    return finish_z_stream(&z, zlib.deflate, zlib.deflate_end, data, len, bound, bound, out, out_len);
}

int kplmshim_cw_gunzip(const void *data, size_t len, size_t max_out, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX || max_out > UINT32_MAX || !usable(KPLMSHIM_LIB_Z)) return -1;
    kplmshim_z_stream z;
    memset(&z, 0, sizeof z);
    if (zlib.inflate_init2(&z, 15 + 16, KPLMSHIM_ZLIB_VERSION, (int)sizeof z) != KPLMSHIM_Z_OK) return -1;
    /* One byte more than allowed: a body that fills it is too large. */
    return finish_z_stream(&z, zlib.inflate, zlib.inflate_end, data, len, max_out + 1, max_out, out, out_len);
}

void kplmshim_cw_free(void *p) { free(p); }

typedef struct {
    kplmshim_cw_response *response;
    size_t max_body;
} sink_state;

static size_t on_body(char *data, size_t size, size_t count, void *user) {
    sink_state *s = user;
    size_t n = size * count;
    size_t room = s->max_body > s->response->body_len ? s->max_body - s->response->body_len : 0;
    size_t keep = n < room ? n : room;
    if (keep > 0) {
        char *grown = realloc(s->response->body, s->response->body_len + keep + 1);
        if (!grown) return 0; /* fails the transfer */
        memcpy(grown + s->response->body_len, data, keep);
        s->response->body = grown;
        s->response->body_len += keep;
        grown[s->response->body_len] = 0;
    }
    return n;
}

/** Copies the value of header line data[n] into out[out_size] if its name
 * (with the colon) is `name`, case-insensitively; returns whether it was. */
static int header_value(const char *data, size_t n, const char *name, char *out, size_t out_size) {
    size_t name_len = strlen(name);
    if (n <= name_len || strncasecmp(data, name, name_len) != 0) return 0;
    const char *v = data + name_len;
    size_t left = n - name_len;
    while (left > 0 && (*v == ' ' || *v == '\t')) v++, left--;
    while (left > 0 && (v[left - 1] == '\r' || v[left - 1] == '\n' || v[left - 1] == ' ')) left--;
    if (left >= out_size) left = out_size - 1;
    memcpy(out, v, left);
    out[left] = 0;
    return 1;
}

static size_t on_header(char *data, size_t size, size_t count, void *user) {
    kplmshim_cw_response *r = user;
    size_t n = size * count;
    if (header_value(data, n, "x-amzn-query-error:", r->query_error, sizeof r->query_error)) return n;
    if (header_value(data, n, "retry-after:", r->retry_after, sizeof r->retry_after)) return n;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue). */
        r->query_error[0] = 0;
        r->retry_after[0] = 0;
    }
    return n;
}

int kplmshim_cw_request(const char *method, const char *url, const char *const *headers, size_t header_count,
                        const void *body, size_t body_len, long connect_timeout_ms, long total_timeout_ms,
                        size_t max_body, int bypass_proxy, kplmshim_cw_response *response) {
    memset(response, 0, sizeof *response);
    int is_get = strcmp(method, "GET") == 0;
    if (!is_get && strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0) {
        response->curl_code = KPLMSHIM_CURLE_BAD_FUNCTION_ARGUMENT;
        snprintf(response->error, sizeof response->error, "%s", "unsupported HTTP method");
        return response->curl_code;
    }
    if (kplmshim_load(KPLMSHIM_LIB_CURL, response->error, sizeof response->error) != 0) {
        response->curl_code = KPLMSHIM_CURLE_FAILED_INIT;
        return response->curl_code;
    }
    kplmshim_CURL *handle = curl.easy_init();
    if (!handle) {
        response->curl_code = KPLMSHIM_CURLE_FAILED_INIT;
        snprintf(response->error, sizeof response->error, "%s", "curl_easy_init failed");
        return response->curl_code;
    }
    struct curl_slist *list = NULL;
    kplmshim_CURLcode rc = KPLMSHIM_CURLE_OK;
    for (size_t i = 0; i < header_count && rc == KPLMSHIM_CURLE_OK; i++) {
        struct curl_slist *grown = curl.slist_append(list, headers[i]);
        if (!grown) rc = KPLMSHIM_CURLE_OUT_OF_MEMORY;
        else list = grown;
    }
    /* No "Expect: 100-continue" round trip for large bodies. */
    struct curl_slist *grown = rc == KPLMSHIM_CURLE_OK ? curl.slist_append(list, "Expect:") : NULL;
    if (!grown) rc = KPLMSHIM_CURLE_OUT_OF_MEMORY;
    else list = grown;
    /* No form Content-Type that libcurl would add to an empty PUT. */
    if (rc == KPLMSHIM_CURLE_OK && !is_get && body_len == 0) {
        grown = curl.slist_append(list, "Content-Type:");
        if (!grown) rc = KPLMSHIM_CURLE_OUT_OF_MEMORY;
        else list = grown;
    }

    sink_state state = {response, max_body};
    char error[KPLMSHIM_CURL_ERROR_SIZE];
    error[0] = 0;
    if (rc == KPLMSHIM_CURLE_OK) {
        static const char empty = 0;
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_ERRORBUFFER, error);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_URL, url);
        /* http and https only (the option is 7.85's; older: the bitmask). */
        if (curl.easy_setopt(handle, KPLMSHIM_CURLOPT_PROTOCOLS_STR, "http,https") != KPLMSHIM_CURLE_OK) {
            curl.easy_setopt(handle, KPLMSHIM_CURLOPT_PROTOCOLS, (long)(KPLMSHIM_CURLPROTO_HTTP | KPLMSHIM_CURLPROTO_HTTPS));
        }
        if (is_get) {
            curl.easy_setopt(handle, KPLMSHIM_CURLOPT_HTTPGET, 1L);
        } else {
            /* A PUT is a POST with another verb: the body still goes out
             * from memory, with its Content-Length. */
            curl.easy_setopt(handle, KPLMSHIM_CURLOPT_POST, 1L);
            curl.easy_setopt(handle, KPLMSHIM_CURLOPT_POSTFIELDS, body ? body : &empty);
            curl.easy_setopt(handle, KPLMSHIM_CURLOPT_POSTFIELDSIZE_LARGE, (kplmshim_curl_off_t)body_len);
            if (strcmp(method, "PUT") == 0) curl.easy_setopt(handle, KPLMSHIM_CURLOPT_CUSTOMREQUEST, "PUT");
        }
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_HTTPHEADER, list);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: thread-safe */
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms < 1 ? 1L : connect_timeout_ms);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_TIMEOUT_MS, total_timeout_ms < 1 ? 1L : total_timeout_ms);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_FOLLOWLOCATION, 0L);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_WRITEFUNCTION, on_body);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_WRITEDATA, &state);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_HEADERFUNCTION, on_header);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_HEADERDATA, response);
        curl.easy_setopt(handle, KPLMSHIM_CURLOPT_USERAGENT, "kplm-cloudwatch");
        /* "*": no host goes through a proxy for this request. */
        if (bypass_proxy) curl.easy_setopt(handle, KPLMSHIM_CURLOPT_NOPROXY, "*");
        rc = curl.easy_perform(handle);
    }
    long status = 0;
    curl.easy_getinfo(handle, KPLMSHIM_CURLINFO_RESPONSE_CODE, &status);
    response->status = rc == KPLMSHIM_CURLE_OK ? status : 0;
    response->curl_code = rc;
    if (rc != KPLMSHIM_CURLE_OK) {
        const char *why = error[0] ? error : curl.easy_strerror(rc);
        snprintf(response->error, sizeof response->error, "%s", why);
    }
    curl.slist_free_all(list);
    curl.easy_cleanup(handle);
    return response->curl_code;
}
