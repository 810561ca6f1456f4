/*
 * The CloudWatch/OTLP shim declares the part of the libcurl, OpenSSL and
 * zlib ABIs it calls itself (Sources/CKPLMCloudWatch/kplm_shim_abi.h), so
 * that libkplm builds without their -dev headers and loads the libraries at
 * run time. This file, compiled against the real headers (ctest shim_abi,
 * registered only where curl/curl.h, openssl/evp.h and zlib.h are
 * installed), checks that every constant, the layout of z_stream and the
 * function types the shim uses match them. Most checks are compile-time
 * (_Static_assert): a mismatch fails the build of this test.
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <zlib.h>

#include "../../Sources/CKPLMCloudWatch/kplm_shim_abi.h"

#define SAME(a, b) _Static_assert((long)(a) == (long)(b), #a " != " #b)

/* libcurl */
SAME(KPLMSHIM_CURLOPTTYPE_LONG, CURLOPTTYPE_LONG);
SAME(KPLMSHIM_CURLOPTTYPE_OBJECTPOINT, CURLOPTTYPE_OBJECTPOINT);
SAME(KPLMSHIM_CURLOPTTYPE_FUNCTIONPOINT, CURLOPTTYPE_FUNCTIONPOINT);
SAME(KPLMSHIM_CURLOPTTYPE_OFF_T, CURLOPTTYPE_OFF_T);
SAME(KPLMSHIM_CURLOPT_WRITEDATA, CURLOPT_WRITEDATA);
SAME(KPLMSHIM_CURLOPT_URL, CURLOPT_URL);
SAME(KPLMSHIM_CURLOPT_ERRORBUFFER, CURLOPT_ERRORBUFFER);
SAME(KPLMSHIM_CURLOPT_WRITEFUNCTION, CURLOPT_WRITEFUNCTION);
SAME(KPLMSHIM_CURLOPT_POSTFIELDS, CURLOPT_POSTFIELDS);
SAME(KPLMSHIM_CURLOPT_USERAGENT, CURLOPT_USERAGENT);
SAME(KPLMSHIM_CURLOPT_HTTPHEADER, CURLOPT_HTTPHEADER);
SAME(KPLMSHIM_CURLOPT_HEADERDATA, CURLOPT_HEADERDATA);
SAME(KPLMSHIM_CURLOPT_CUSTOMREQUEST, CURLOPT_CUSTOMREQUEST);
SAME(KPLMSHIM_CURLOPT_POST, CURLOPT_POST);
SAME(KPLMSHIM_CURLOPT_FOLLOWLOCATION, CURLOPT_FOLLOWLOCATION);
SAME(KPLMSHIM_CURLOPT_HEADERFUNCTION, CURLOPT_HEADERFUNCTION);
SAME(KPLMSHIM_CURLOPT_HTTPGET, CURLOPT_HTTPGET);
SAME(KPLMSHIM_CURLOPT_NOSIGNAL, CURLOPT_NOSIGNAL);
SAME(KPLMSHIM_CURLOPT_POSTFIELDSIZE_LARGE, CURLOPT_POSTFIELDSIZE_LARGE);
SAME(KPLMSHIM_CURLOPT_TIMEOUT_MS, CURLOPT_TIMEOUT_MS);
SAME(KPLMSHIM_CURLOPT_CONNECTTIMEOUT_MS, CURLOPT_CONNECTTIMEOUT_MS);
SAME(KPLMSHIM_CURLOPT_PROTOCOLS_STR, CURLOPT_PROTOCOLS_STR);
SAME(KPLMSHIM_CURLOPT_NOPROXY, CURLOPT_NOPROXY);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
SAME(KPLMSHIM_CURLOPT_PROTOCOLS, CURLOPT_PROTOCOLS);
#pragma GCC diagnostic pop
SAME(KPLMSHIM_CURLPROTO_HTTP, CURLPROTO_HTTP);
SAME(KPLMSHIM_CURLPROTO_HTTPS, CURLPROTO_HTTPS);
SAME(KPLMSHIM_CURLINFO_LONG, CURLINFO_LONG);
SAME(KPLMSHIM_CURLINFO_RESPONSE_CODE, CURLINFO_RESPONSE_CODE);
SAME(KPLMSHIM_CURL_ERROR_SIZE, CURL_ERROR_SIZE);
SAME(KPLMSHIM_CURL_GLOBAL_DEFAULT, CURL_GLOBAL_DEFAULT);
SAME(KPLMSHIM_CURLE_OK, CURLE_OK);
SAME(KPLMSHIM_CURLE_FAILED_INIT, CURLE_FAILED_INIT);
SAME(KPLMSHIM_CURLE_OUT_OF_MEMORY, CURLE_OUT_OF_MEMORY);
SAME(KPLMSHIM_CURLE_BAD_FUNCTION_ARGUMENT, CURLE_BAD_FUNCTION_ARGUMENT);
_Static_assert(sizeof(kplmshim_CURLcode) == sizeof(CURLcode), "CURLcode size");
_Static_assert(sizeof(kplmshim_CURLoption) == sizeof(CURLoption), "CURLoption size");
_Static_assert(sizeof(kplmshim_CURLINFO) == sizeof(CURLINFO), "CURLINFO size");
_Static_assert(sizeof(kplmshim_curl_off_t) == sizeof(curl_off_t), "curl_off_t size");
_Static_assert(__builtin_types_compatible_p(kplmshim_CURL, CURL), "CURL");
_Static_assert(__builtin_types_compatible_p(kplmshim_curl_easy_init_fn, __typeof__(&curl_easy_init)),
               "curl_easy_init");
_Static_assert(__builtin_types_compatible_p(kplmshim_curl_easy_cleanup_fn, __typeof__(&curl_easy_cleanup)),
               "curl_easy_cleanup");
_Static_assert(__builtin_types_compatible_p(kplmshim_curl_slist_append_fn, __typeof__(&curl_slist_append)),
               "curl_slist_append");
_Static_assert(__builtin_types_compatible_p(kplmshim_curl_slist_free_all_fn, __typeof__(&curl_slist_free_all)),
               "curl_slist_free_all");

/* OpenSSL: the same struct tags, so the function types compare exactly. */
_Static_assert(__builtin_types_compatible_p(kplmshim_EVP_Digest_fn, __typeof__(&EVP_Digest)), "EVP_Digest");
_Static_assert(__builtin_types_compatible_p(kplmshim_EVP_sha256_fn, __typeof__(&EVP_sha256)), "EVP_sha256");
_Static_assert(__builtin_types_compatible_p(kplmshim_HMAC_fn, __typeof__(&HMAC)), "HMAC");

/* zlib */
SAME(KPLMSHIM_Z_OK, Z_OK);
SAME(KPLMSHIM_Z_STREAM_END, Z_STREAM_END);
SAME(KPLMSHIM_Z_FINISH, Z_FINISH);
SAME(KPLMSHIM_Z_DEFAULT_COMPRESSION, Z_DEFAULT_COMPRESSION);
SAME(KPLMSHIM_Z_DEFLATED, Z_DEFLATED);
SAME(KPLMSHIM_Z_DEFAULT_STRATEGY, Z_DEFAULT_STRATEGY);
_Static_assert(sizeof(kplmshim_z_stream) == sizeof(z_stream), "sizeof z_stream");
#define FIELD(f)                                                                                                  \
    _Static_assert(offsetof(kplmshim_z_stream, f) == offsetof(z_stream, f), "offset of z_stream." #f);          \
    _Static_assert(sizeof(((kplmshim_z_stream *)0)->f) == sizeof(((z_stream *)0)->f), "size of z_stream." #f)
FIELD(next_in);
FIELD(avail_in);
FIELD(total_in);
FIELD(next_out);
FIELD(avail_out);
FIELD(total_out);
FIELD(msg);
FIELD(state);
FIELD(zalloc);
FIELD(zfree);
FIELD(opaque);
FIELD(data_type);
FIELD(adler);
FIELD(reserved);

int main(void) {
    /* The zlib version the shim hands to deflateInit2_ has the header's major version. */
    if (KPLMSHIM_ZLIB_VERSION[0] != ZLIB_VERSION[0]) {
        fprintf(stderr, "FAIL: KPLMSHIM_ZLIB_VERSION %s, zlib.h %s\n", KPLMSHIM_ZLIB_VERSION, ZLIB_VERSION);
        return 1;
    }
    printf("OK: the shim's libcurl, libcrypto and zlib declarations match the installed headers "
           "(curl %s, zlib %s, sizeof(z_stream) %zu)\n", LIBCURL_VERSION, ZLIB_VERSION, sizeof(z_stream));
    return 0;
}
