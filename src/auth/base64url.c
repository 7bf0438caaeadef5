/*
 * base64url without padding, as JWS and JWK use it, and the process-wide
 * sodium_init(). Decoding is strict on purpose: a token has exactly one
 * spelling, so nothing downstream (the verified-token cache, logs) can be
 * fooled by a second encoding of the same bytes.
 */
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "auth/internal.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status = SVC_ERR;

static void sodium_setup(void) {
    if (sodium_init() < 0) {
        svc_error("libsodium failed to initialise");
        sodium_status = SVC_ERR;
    } else {
        sodium_status = SVC_OK;
    }
}

int svc__auth_sodium_init(void) {
    pthread_once(&sodium_once, sodium_setup);
    return sodium_status;
}

void svc__b64url_encode_str(char *out, const void *data, size_t n) {
    /* sodium_bin2base64 wants room for the NUL and writes exactly the
     * unpadded length plus it. */
    sodium_bin2base64(out, SVC__B64URL_LEN(n) + 1, data, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void svc__b64url_encode(svc_buf *out, const void *data, size_t n) {
    size_t need = SVC__B64URL_LEN(n);
    if (svc_buf_reserve(out, need + 1) != SVC_OK) return;
    svc__b64url_encode_str(out->data + out->len, data, n);
    out->len += need;
}

static int is_b64url(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int svc__b64url_decode(const char *in, size_t inlen, unsigned char *out,
                       size_t outcap, size_t *outlen) {
    *outlen = 0;
    if (inlen % 4 == 1) return SVC_EINVAL;
    for (size_t i = 0; i < inlen; i++)
        if (!is_b64url((unsigned char)in[i])) return SVC_EINVAL;
    size_t need = inlen / 4 * 3 + (inlen % 4 ? inlen % 4 - 1 : 0);
    if (need > outcap) return SVC_ERANGE;
    if (inlen == 0) return SVC_OK;
    const char *end = NULL;
    size_t got = 0;
    /* libsodium also rejects non-zero trailing bits, which makes the
     * encoding canonical. */
    if (sodium_base642bin(out, outcap, in, inlen, NULL, &got, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != in + inlen || got != need)
        return SVC_EINVAL;
    *outlen = got;
    return SVC_OK;
}
