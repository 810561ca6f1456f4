/*
 * Private helpers of the CloudWatch sink (not part of the C ABI; hidden by
 * the export list): SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto, gzip
 * from zlib and one HTTP(S) request through libcurl. Only plain C types here, so
 * that Swift never imports the OpenSSL, zlib or curl headers.
 */
#ifndef KPLM_CLOUDWATCH_SHIM_H
#define KPLM_CLOUDWATCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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
    /** libcurl's description of a failure, "" on success (NUL-terminated). */
    char error[256];
} kplmshim_cw_response;

/**
 * Sends one request to url (http:// or https://): method "POST" or "PUT"
 * with body (body_len bytes, may be 0), or "GET" (body ignored), with the
 * given header lines ("Name: value"), following no redirects, with a connect
 * timeout and a total timeout in milliseconds (both >= 1). Fills *response
 * (always; free response->body). Returns response->curl_code.
 */
int kplmshim_cw_request(const char *method, const char *url, const char *const *headers, size_t header_count,
                        const void *body, size_t body_len, long connect_timeout_ms, long total_timeout_ms,
                        size_t max_body, kplmshim_cw_response *response);

#ifdef __cplusplus
}
#endif

#endif
