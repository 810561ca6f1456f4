/*
 * The part of the libcurl 7/8 (libcurl.so.4), OpenSSL 3 (libcrypto.so.3) and
 * zlib 1.x (libz.so.1) ABIs that cloudwatch_shim.c calls, declared here so
 * that the shim builds without their -dev headers: the functions' types (the
 * shim looks them up with dlsym), the option and info numbers, and zlib's
 * struct z_stream, each as the libraries' public headers define them.
 *
 * Tests/c/test_shim_abi.c, compiled against the real headers where they are
 * installed (ctest shim_abi), checks every constant, the size and offset of
 * every z_stream field, and the function types that can be compared.
 * Private to the shim; never installed.
 */
#ifndef KPLM_SHIM_ABI_H
#define KPLM_SHIM_ABI_H

#include <stddef.h>
#include <stdint.h>

/* ---- libcurl (curl/curl.h) ---------------------------------------------- */

/** CURL is `typedef void CURL`. */
typedef void kplmshim_CURL;
/** struct curl_slist: only pointers to it are used (the real tag). */
struct curl_slist;
/** CURLcode, CURLoption, CURLINFO: enums, int-sized. */
typedef int kplmshim_CURLcode;
typedef int kplmshim_CURLoption;
typedef int kplmshim_CURLINFO;
/** curl_off_t: 64-bit (curl/system.h). */
typedef int64_t kplmshim_curl_off_t;

/* CURLOPTTYPE_* bases of the option numbers. */
#define KPLMSHIM_CURLOPTTYPE_LONG 0
#define KPLMSHIM_CURLOPTTYPE_OBJECTPOINT 10000
#define KPLMSHIM_CURLOPTTYPE_FUNCTIONPOINT 20000
#define KPLMSHIM_CURLOPTTYPE_OFF_T 30000

#define KPLMSHIM_CURLOPT_WRITEDATA (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 1)
#define KPLMSHIM_CURLOPT_URL (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 2)
#define KPLMSHIM_CURLOPT_ERRORBUFFER (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 10)
#define KPLMSHIM_CURLOPT_WRITEFUNCTION (KPLMSHIM_CURLOPTTYPE_FUNCTIONPOINT + 11)
#define KPLMSHIM_CURLOPT_POSTFIELDS (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 15)
#define KPLMSHIM_CURLOPT_USERAGENT (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 18)
#define KPLMSHIM_CURLOPT_HTTPHEADER (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 23)
#define KPLMSHIM_CURLOPT_HEADERDATA (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 29)
#define KPLMSHIM_CURLOPT_CUSTOMREQUEST (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 36)
#define KPLMSHIM_CURLOPT_POST (KPLMSHIM_CURLOPTTYPE_LONG + 47)
#define KPLMSHIM_CURLOPT_FOLLOWLOCATION (KPLMSHIM_CURLOPTTYPE_LONG + 52)
#define KPLMSHIM_CURLOPT_HEADERFUNCTION (KPLMSHIM_CURLOPTTYPE_FUNCTIONPOINT + 79)
#define KPLMSHIM_CURLOPT_HTTPGET (KPLMSHIM_CURLOPTTYPE_LONG + 80)
#define KPLMSHIM_CURLOPT_NOSIGNAL (KPLMSHIM_CURLOPTTYPE_LONG + 99)
#define KPLMSHIM_CURLOPT_POSTFIELDSIZE_LARGE (KPLMSHIM_CURLOPTTYPE_OFF_T + 120)
#define KPLMSHIM_CURLOPT_TIMEOUT_MS (KPLMSHIM_CURLOPTTYPE_LONG + 155)
#define KPLMSHIM_CURLOPT_CONNECTTIMEOUT_MS (KPLMSHIM_CURLOPTTYPE_LONG + 156)
/** Deprecated since 7.85, used only where CURLOPT_PROTOCOLS_STR is unknown. */
#define KPLMSHIM_CURLOPT_PROTOCOLS (KPLMSHIM_CURLOPTTYPE_LONG + 181)
#define KPLMSHIM_CURLOPT_PROTOCOLS_STR (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 318)
#define KPLMSHIM_CURLOPT_NOPROXY (KPLMSHIM_CURLOPTTYPE_OBJECTPOINT + 177)

#define KPLMSHIM_CURLPROTO_HTTP (1 << 0)
#define KPLMSHIM_CURLPROTO_HTTPS (1 << 1)

#define KPLMSHIM_CURLINFO_LONG 0x200000
#define KPLMSHIM_CURLINFO_RESPONSE_CODE (KPLMSHIM_CURLINFO_LONG + 2)

#define KPLMSHIM_CURL_ERROR_SIZE 256
#define KPLMSHIM_CURL_GLOBAL_DEFAULT 3 /* CURL_GLOBAL_SSL | CURL_GLOBAL_WIN32 */

#define KPLMSHIM_CURLE_OK 0
#define KPLMSHIM_CURLE_FAILED_INIT 2
#define KPLMSHIM_CURLE_OUT_OF_MEMORY 27
#define KPLMSHIM_CURLE_BAD_FUNCTION_ARGUMENT 43

typedef kplmshim_CURLcode (*kplmshim_curl_global_init_fn)(long flags);
typedef kplmshim_CURL *(*kplmshim_curl_easy_init_fn)(void);
typedef kplmshim_CURLcode (*kplmshim_curl_easy_setopt_fn)(kplmshim_CURL *curl, kplmshim_CURLoption option, ...);
typedef kplmshim_CURLcode (*kplmshim_curl_easy_perform_fn)(kplmshim_CURL *curl);
typedef kplmshim_CURLcode (*kplmshim_curl_easy_getinfo_fn)(kplmshim_CURL *curl, kplmshim_CURLINFO info, ...);
typedef void (*kplmshim_curl_easy_cleanup_fn)(kplmshim_CURL *curl);
typedef const char *(*kplmshim_curl_easy_strerror_fn)(kplmshim_CURLcode code);
typedef struct curl_slist *(*kplmshim_curl_slist_append_fn)(struct curl_slist *list, const char *line);
typedef void (*kplmshim_curl_slist_free_all_fn)(struct curl_slist *list);

/* ---- OpenSSL 3 libcrypto (openssl/evp.h, openssl/hmac.h) ----------------- */

/** EVP_MD and ENGINE, opaque (the real tags of openssl/types.h). */
typedef struct evp_md_st kplmshim_EVP_MD;
typedef struct engine_st kplmshim_ENGINE;

typedef int (*kplmshim_EVP_Digest_fn)(const void *data, size_t count, unsigned char *md, unsigned int *size,
                                      const kplmshim_EVP_MD *type, kplmshim_ENGINE *impl);
typedef const kplmshim_EVP_MD *(*kplmshim_EVP_sha256_fn)(void);
typedef unsigned char *(*kplmshim_HMAC_fn)(const kplmshim_EVP_MD *evp_md, const void *key, int key_len,
                                           const unsigned char *data, size_t data_len, unsigned char *md,
                                           unsigned int *md_len);

/* ---- zlib 1.x (zlib.h) ---------------------------------------------------- */

/** struct z_stream_s, field for field (uInt = unsigned int, uLong =
 * unsigned long, voidpf = void *). */
typedef struct kplmshim_z_stream {
    const unsigned char *next_in;
    unsigned int avail_in;
    unsigned long total_in;
    unsigned char *next_out;
    unsigned int avail_out;
    unsigned long total_out;
    const char *msg;
    void *state;
    void *(*zalloc)(void *opaque, unsigned int items, unsigned int size);
    void (*zfree)(void *opaque, void *address);
    void *opaque;
    int data_type;
    unsigned long adler;
    unsigned long reserved;
} kplmshim_z_stream;

#define KPLMSHIM_Z_OK 0
#define KPLMSHIM_Z_STREAM_END 1
#define KPLMSHIM_Z_FINISH 4
#define KPLMSHIM_Z_DEFAULT_COMPRESSION (-1)
#define KPLMSHIM_Z_DEFLATED 8
#define KPLMSHIM_Z_DEFAULT_STRATEGY 0
/** The version handed to deflateInit2_/inflateInit2_, which check only its
 * first character (the major version) and sizeof(z_stream). */
#define KPLMSHIM_ZLIB_VERSION "1.2.13"

typedef int (*kplmshim_deflateInit2__fn)(kplmshim_z_stream *strm, int level, int method, int window_bits,
                                         int mem_level, int strategy, const char *version, int stream_size);
typedef unsigned long (*kplmshim_deflateBound_fn)(kplmshim_z_stream *strm, unsigned long source_len);
typedef int (*kplmshim_deflate_fn)(kplmshim_z_stream *strm, int flush);
typedef int (*kplmshim_deflateEnd_fn)(kplmshim_z_stream *strm);
typedef int (*kplmshim_inflateInit2__fn)(kplmshim_z_stream *strm, int window_bits, const char *version,
                                         int stream_size);
typedef int (*kplmshim_inflate_fn)(kplmshim_z_stream *strm, int flush);
typedef int (*kplmshim_inflateEnd_fn)(kplmshim_z_stream *strm);

#endif
