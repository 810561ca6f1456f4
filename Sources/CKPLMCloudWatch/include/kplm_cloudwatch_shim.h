/*
 * Private helpers of the CloudWatch and OTLP sinks (not part of the C ABI;
 * hidden by the export list): SHA-256 and HMAC-SHA256 from OpenSSL's
 * libcrypto, gzip from zlib and one HTTP(S) request through libcurl.
 *
 * libkplm.so does not link these libraries: kplmshim_load opens them at run
 * time by SONAME (libcurl.so.4, libcrypto.so.3, libz.so.1), so a program that
 * uses no network sink needs none of them installed. The shim declares the
 * small part of their ABI it uses itself (kplm_shim_abi.h), so it builds
 * without their -dev headers. Only plain C types here, so that Swift never
 * imports the OpenSSL, zlib or curl headers.
 */
#ifndef KPLM_CLOUDWATCH_SHIM_H
#define KPLM_CLOUDWATCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The libraries kplmshim_load opens (bits). */
enum {
    KPLMSHIM_LIB_CURL = 1,   /**< libcurl.so.4 */
    KPLMSHIM_LIB_CRYPTO = 2, /**< libcrypto.so.3 */
    KPLMSHIM_LIB_Z = 4       /**< libz.so.1 */
};

/**
 * Opens libcurl.so.4, libcrypto.so.3 and libz.so.1 and looks up the functions
 * the shim calls, all once per process (pthread_once; thread-safe; a library
 * that failed is not tried again). Returns 0 when every library of `which`
 * (KPLMSHIM_LIB_* bits) is usable, else -1 with a NUL-terminated message in
 * error[error_size] naming the first missing library, why (dlerror) and the
 * Debian packages that provide it. error may be NULL.
 * Every other function below needs its library loaded (it fails otherwise).
 */
int kplmshim_load(unsigned which, char *error, size_t error_size);

/** out[32] = SHA-256(data). Returns 0, or -1 if libcrypto failed. */
int kplmshim_cw_sha256(const void *data, size_t len, uint8_t *out);

/** out[32] = HMAC-SHA256(key, data). Returns 0, or -1 if libcrypto failed. */
int kplmshim_cw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t *out);

/** A gzip member (RFC 1952) of data in *out (malloc'd, free with
 * kplmshim_cw_free), its size in *out_len. Returns 0, or -1 on failure. */
int kplmshim_cw_gzip(const void *data, size_t len, uint8_t **out, size_t *out_len);

/** The data of a gzip member in *out (malloc'd, free with kplmshim_cw_free),
 * at most max_out bytes. Returns 0, or -1 for bad or oversized input. */
int kplmshim_cw_gunzip(const void *data, size_t len, size_t max_out, uint8_t **out, size_t *out_len);

/** Frees what kplmshim_cw_gzip or kplmshim_cw_request allocated (NULL is ignored). */
void kplmshim_cw_free(void *p);

/** The outcome of kplmshim_cw_request. */
typedef struct {
    /** 0 when the server answered (see status), else the libcurl error code. */
    int curl_code;
    /** HTTP status of the answer (0 when there was none). */
    long status;
    /** The answer's body, at most max_body bytes kept, NUL-terminated
     * (malloc'd; free with kplmshim_cw_free). */
    char *body;
    size_t body_len;
    /** The value of an x-amzn-query-error header, "" when absent (NUL-terminated). */
    char query_error[128];
    /** The value of a Retry-After header, "" when absent (NUL-terminated). */
    char retry_after[64];
    /** libcurl's description of a failure, "" on success (NUL-terminated). */
    char error[256];
} kplmshim_cw_response;

/**
 * Sends one request to url (http:// or https://): method "POST" or "PUT"
 * with body (body_len bytes, may be 0), or "GET" (body ignored), with the
 * given header lines ("Name: value"), following no redirects, with a connect
 * timeout and a total timeout in milliseconds (both >= 1). With bypass_proxy
 * non-zero no proxy is used whatever http_proxy / https_proxy say (the
 * metadata services: credentials must never cross a proxy); otherwise
 * libcurl honours the proxy variables. Fills *response (always; free
 * response->body). Returns response->curl_code (libcurl must be loaded:
 * kplmshim_load).
 */
int kplmshim_cw_request(const char *method, const char *url, const char *const *headers, size_t header_count,
                        const void *body, size_t body_len, long connect_timeout_ms, long total_timeout_ms,
                        size_t max_body, int bypass_proxy, kplmshim_cw_response *response);

#ifdef __cplusplus
}
#endif

#endif
