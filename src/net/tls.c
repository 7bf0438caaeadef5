/*
 * TLS for the NATS client (tls.h): OpenSSL with two memory BIOs per session.
 * The socket's bytes are written into rbio and OpenSSL's records are taken
 * out of wbio; OpenSSL never touches a file descriptor, so the client keeps
 * its libuv stream, its coalesced writes and its timers.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

struct svc_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct svc_tls {
    SSL *ssl;
    BIO *rbio, *wbio;                /* owned by ssl */
    int ready;                       /* the handshake succeeded */
    char error[SVC_TLS_MAX_ERROR];
};

/* OpenSSL's reason for the oldest error of this thread's queue, or dflt. */
static const char *openssl_reason(const char *dflt) {
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : dflt;
}

static svc_tls_ctx *ctx_fail(svc_tls_ctx *c, char *err, size_t errlen, const char *what, const char *file) {
    snprintf(err, errlen, "%s %s: %s", what, file, openssl_reason("unknown error"));
    ERR_clear_error();
    SSL_CTX_free(c->ssl_ctx);
    free(c);
    return NULL;
}

static svc_tls_ctx *tls_ctx_new(const char *ca, const char *cert, const char *key, char *err, size_t errlen) {
    if (!cert != !key) {
        snprintf(err, errlen, "a client certificate needs both its certificate and its key");
        return NULL;
    }
    svc_tls_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->ssl_ctx = SSL_CTX_new(TLS_client_method()))) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca ? SSL_CTX_load_verify_locations(c->ssl_ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(c->ssl_ctx);
    if (ok != 1) return ctx_fail(c, err, errlen, "cannot load the CA file", ca ? ca : "(the system's store)");
    if (cert && SSL_CTX_use_certificate_chain_file(c->ssl_ctx, cert) != 1)
        return ctx_fail(c, err, errlen, "cannot load the client certificate", cert);
    /* Also checks that the key is the certificate's ("key values mismatch"). */
    if (key && SSL_CTX_use_PrivateKey_file(c->ssl_ctx, key, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(c, err, errlen, "cannot load the client key", key);
    return c;
}

static void tls_ctx_free(svc_tls_ctx *c) {
    if (!c) return;
    SSL_CTX_free(c->ssl_ctx);
    free(c);
}

static void tls_session_free(svc_tls *t) {
    if (!t) return;
    SSL_free(t->ssl);
    free(t);
}

/* Sets t->error from a failed SSL call (its return value r) and returns -1.
 * A refused certificate says why in the words of X509 verification (wrong
 * host, expired, unknown issuer), which is what an operator needs. */
static int fail(svc_tls *t, int r, const char *doing) {
    long vr = SSL_get_verify_result(t->ssl);
    int e = SSL_get_error(t->ssl, r);
    if (vr != X509_V_OK)
        snprintf(t->error, sizeof t->error, "server certificate refused: %s", X509_verify_cert_error_string(vr));
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(t->error, sizeof t->error, "%s: the server closed the TLS session", doing);
    else
        snprintf(t->error, sizeof t->error, "%s: %s", doing, openssl_reason("TLS protocol error"));
    ERR_clear_error();
    return -1;
}

static svc_tls *tls_session_new(svc_tls_ctx *c, const char *host) {
    svc_tls *t = calloc(1, sizeof *t);
    if (!t || !(t->ssl = SSL_new(c->ssl_ctx))) {
        free(t);
        return NULL;
    }
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        tls_session_free(t);
        return NULL;
    }
    /* Without data, a memory BIO reports "retry" rather than end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    unsigned char addr[16];
    int named = !inet_pton(AF_INET, host, addr) && !inet_pton(AF_INET6, host, addr);
    int ok = named ? SSL_set1_host(t->ssl, host) == 1 && SSL_set_tlsext_host_name(t->ssl, host) == 1
                   : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
    if (!ok) {
        tls_session_free(t);
        return NULL;
    }
    if (named) X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(t->ssl), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    /* Queues the ClientHello in wbio; the answer comes through input. */
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        tls_session_free(t);
        return NULL;
    }
    return t;
}

static int tls_input(svc_tls *t, const char *data, size_t len, svc_tls_ready_fn ready, svc_tls_data_fn plain,
                     void *ud) {
    /* A memory BIO takes all it is given, or fails for want of memory. */
    if (len && BIO_write(t->rbio, data, (int)len) != (int)len) {
        snprintf(t->error, sizeof t->error, "out of memory");
        return -1;
    }
    ERR_clear_error();
    if (!t->ready) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) return SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ ? 0 : fail(t, r, "TLS handshake failed");
        t->ready = 1;
        int rc = ready(ud);
        if (rc) return rc;
    }
    char buf[SVC_TLS_READ_CHUNK];
    for (;;) {
        int n = SSL_read(t->ssl, buf, sizeof buf);
        if (n > 0) {
            int rc = plain(ud, buf, (size_t)n);
            if (rc) return rc;
            continue;
        }
        return SSL_get_error(t->ssl, n) == SSL_ERROR_WANT_READ ? 0 : fail(t, n, "TLS read failed");
    }
}

static int tls_output(svc_tls *t, const char *plain, size_t len, svc_tls_data_fn out, void *ud) {
    ERR_clear_error();
    if (len) {
        if (!t->ready) {
            snprintf(t->error, sizeof t->error, "data to send before the TLS handshake completed");
            return -1;
        }
        /* Into a memory BIO a write is whole (no partial-write mode). The
         * caller's output is bounded (SVC_NATS_MAX_OUTPUT) far below INT_MAX. */
        int n = SSL_write(t->ssl, plain, (int)len);
        if (n <= 0) return fail(t, n, "TLS write failed");
    }
    char *p;
    long n = BIO_get_mem_data(t->wbio, &p);
    if (n <= 0) return 0;
    int rc = out(ud, p, (size_t)n);
    (void)BIO_reset(t->wbio);
    return rc;
}

static const char *tls_error(const svc_tls *t) { return t->error; }

const svc_tls_ops svc__tls = {
    .ctx_new = tls_ctx_new,
    .ctx_free = tls_ctx_free,
    .session_new = tls_session_new,
    .session_free = tls_session_free,
    .input = tls_input,
    .output = tls_output,
    .error = tls_error,
};
