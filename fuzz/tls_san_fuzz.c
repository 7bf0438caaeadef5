/*
 * Fuzzes the IP address check of TLS to NATS (svc__tls_san_has_ip,
 * src/net/tls.c): the subjectAltName of a server's certificate, walked by
 * tls.c because mbed TLS 2.28 lists DNS names only.
 *
 * The input is a DER certificate as a server would send it; what mbed TLS's
 * parser accepts is searched for 127.0.0.1 and ::1. Besides the sanitizers,
 * it checks that a match is a real one: the address's bytes are in the
 * certificate.
 */
#define _GNU_SOURCE /* memmem */
#include <mbedtls/x509_crt.h>
#include <stdint.h>
#include <string.h>

#include "net/tls.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const unsigned char v4[4] = {127, 0, 0, 1};
    static const unsigned char v6[16] = {[15] = 1};
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    if (mbedtls_x509_crt_parse_der(&crt, data, size) == 0) {
        if (svc__tls_san_has_ip(&crt, v4, sizeof v4)) CHECK(memmem(data, size, v4, sizeof v4));
        if (svc__tls_san_has_ip(&crt, v6, sizeof v6)) CHECK(memmem(data, size, v6, sizeof v6));
    }
    mbedtls_x509_crt_free(&crt);
    return 0;
}
