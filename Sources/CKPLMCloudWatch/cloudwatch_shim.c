/* See kplm_cloudwatch_shim.h. */
#include "kplm_cloudwatch_shim.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

int kplmshim_cw_sha256(const void *data, size_t len, uint8_t *out) {
    static const uint8_t empty = 0;
    return SHA256(data ? data : &empty, len, out) ? 0 : -1;
}

int kplmshim_cw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t *out) {
    static const uint8_t empty = 0;
    unsigned int out_len = 0;
    if (key_len > INT32_MAX) return -1;
    if (!HMAC(EVP_sha256(), key ? key : &empty, (int)key_len, data ? data : &empty, len, out, &out_len)) return -1;
    return out_len == 32 ? 0 : -1;
}

int kplmshim_cw_gzip(const void *data, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    uLong bound = deflateBound(&z, (uLong)len);
    uint8_t *buffer = malloc(bound + 32);
    if (!buffer) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = buffer;
    z.avail_out = (uInt)(bound + 32);
    int rc = deflate(&z, Z_FINISH);
    size_t produced = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || len > UINT32_MAX) {
        free(buffer);
        return -1;
    }
    *out = buffer;
    *out_len = produced;
    return 0;
}

int kplmshim_cw_gunzip(const void *data, size_t len, size_t max_out, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX || max_out > UINT32_MAX) return -1;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) return -1;
    uint8_t *buffer = malloc(max_out + 1);
    if (!buffer) {
        inflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = buffer;
    z.avail_out = (uInt)(max_out + 1);
    int rc = inflate(&z, Z_FINISH);
    size_t produced = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || produced > max_out) {
        free(buffer);
        return -1;
    }
    *out = buffer;
    *out_len = produced;
    return 0;
}

void kplmshim_cw_free(void *p) { free(p); }

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code = CURLE_OK;

static void curl_init(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

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

static size_t on_header(char *data, size_t size, size_t count, void *user) {
    kplmshim_cw_response *r = user;
    size_t n = size * count;
    static const char name[] = "x-amzn-query-error:";
    size_t name_len = sizeof name - 1;
    if (n > name_len && strncasecmp(data, name, name_len) == 0) {
        const char *v = data + name_len;
        size_t left = n - name_len;
        while (left > 0 && (*v == ' ' || *v == '\t')) v++, left--;
        while (left > 0 && (v[left - 1] == '\r' || v[left - 1] == '\n' || v[left - 1] == ' ')) left--;
        if (left >= sizeof r->query_error) left = sizeof r->query_error - 1;
        memcpy(r->query_error, v, left);
        r->query_error[left] = 0;
    } else if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        r->query_error[0] = 0; /* a new response (after a 100 Continue) */
    }
    return n;
}

int kplmshim_cw_request(const char *method, const char *url, const char *const *headers, size_t header_count,
                        const void *body, size_t body_len, long connect_timeout_ms, long total_timeout_ms,
                        size_t max_body, kplmshim_cw_response *response) {
    memset(response, 0, sizeof *response);
    int is_get = strcmp(method, "GET") == 0;
    if (!is_get && strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0) {
        response->curl_code = (int)CURLE_BAD_FUNCTION_ARGUMENT;
        strncpy(response->error, "unsupported HTTP method", sizeof response->error - 1);
        return response->curl_code;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_code != CURLE_OK) {
        response->curl_code = (int)curl_init_code;
        strncpy(response->error, curl_easy_strerror(curl_init_code), sizeof response->error - 1);
        return response->curl_code;
    }
    CURL *curl = curl_easy_init();
    if (!curl) {
        response->curl_code = (int)CURLE_FAILED_INIT;
        strncpy(response->error, "curl_easy_init failed", sizeof response->error - 1);
        return response->curl_code;
    }
    struct curl_slist *list = NULL;
    CURLcode rc = CURLE_OK;
    for (size_t i = 0; i < header_count && rc == CURLE_OK; i++) {
        struct curl_slist *grown = curl_slist_append(list, headers[i]);
        if (!grown) rc = CURLE_OUT_OF_MEMORY;
        else list = grown;
    }
    /* No "Expect: 100-continue" round trip for large bodies. */
    struct curl_slist *grown = rc == CURLE_OK ? curl_slist_append(list, "Expect:") : NULL;
    if (!grown) rc = CURLE_OUT_OF_MEMORY;
    else list = grown;
    /* No form Content-Type that libcurl would add to an empty PUT. */
    if (rc == CURLE_OK && !is_get && body_len == 0) {
        grown = curl_slist_append(list, "Content-Type:");
        if (!grown) rc = CURLE_OUT_OF_MEMORY;
        else list = grown;
    }

    sink_state state = {response, max_body};
    char error[CURL_ERROR_SIZE];
    error[0] = 0;
    if (rc == CURLE_OK) {
        static const char empty = 0;
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        if (is_get) {
            curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        } else {
            /* A PUT is a POST with another verb: the body still goes out
             * from memory, with its Content-Length. */
            curl_easy_setopt(curl, CURLOPT_POST, 1L);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : &empty);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            if (strcmp(method, "PUT") == 0) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
        }
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: thread-safe */
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms < 1 ? 1L : connect_timeout_ms);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, total_timeout_ms < 1 ? 1L : total_timeout_ms);
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, response);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "kplm-cloudwatch");
        rc = curl_easy_perform(curl);
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    response->status = rc == CURLE_OK ? status : 0;
    response->curl_code = (int)rc;
    if (rc != CURLE_OK) {
        const char *why = error[0] ? error : curl_easy_strerror(rc);
        strncpy(response->error, why, sizeof response->error - 1);
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    return response->curl_code;
}
