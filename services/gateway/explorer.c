/*
 * The API explorer: GET /docs, a page (HTML, CSS, JS from
 * services/gateway/explorer/, compiled in by tools/svckit/embed.sh) that
 * reads the merged /openapi.json (openapi.c), lists every endpoint by
 * service, and sends the requests a person fills in, from their browser to
 * this gateway, with the token they paste or the one a login answer gave.
 *
 * Open to anyone, as /openapi.json is: the page holds no secret and is the
 * same for everyone, and what it sends carries the user's own token through
 * the same edge checks as any other request. Its responses carry the pages'
 * strict Content-Security-Policy (page.c). The files change only with the
 * binary, so they are sent with Cache-Control: no-cache and one strong ETag
 * of all of them: a browser revalidates and gets 304 until the gateway is
 * upgraded. /docs/ (a trailing slash, as people type it) is a 301 to /docs.
 */
#include <sodium.h>
#include <string.h>

#include "gateway.h"

#define ETAG_BYTES 16

static char etag[2 * ETAG_BYTES + 3]; /* "<hex>", set before the workers start */

static svc_outcome send_file(svc_req *req, svc_res *res, const char *name) {
    gw_page_headers(res);
    return gw_page_send(req, res, gw_explorer_files, gw_explorer_files_count, name, etag);
}

static svc_outcome page(svc_req *req, svc_res *res) { return send_file(req, res, "index.html"); }

static svc_outcome file(svc_req *req, svc_res *res) { return send_file(req, res, svc_req_param(req, "file")); }

static svc_outcome to_page(svc_req *req, svc_res *res) {
    gw_page_headers(res);
    svc_res_header(res, "Location", "/docs");
    return svc_res_status(res, 301);
}

void gw_explorer_routes(svc_app *app) {
    unsigned char h[ETAG_BYTES];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    for (size_t i = 0; i < gw_explorer_files_count; i++) {
        crypto_generichash_update(&st, (const unsigned char *)gw_explorer_files[i].path,
                                  strlen(gw_explorer_files[i].path) + 1);
        crypto_generichash_update(&st, gw_explorer_files[i].data, gw_explorer_files[i].len);
    }
    crypto_generichash_final(&st, h, sizeof h);
    etag[0] = '"';
    sodium_bin2hex(etag + 1, sizeof etag - 2, h, sizeof h);
    etag[sizeof etag - 2] = '"';
    svc_app_get(app, "/docs", page, 0);
    svc_app_get(app, "/docs/", to_page, 0);
    svc_app_get(app, "/docs/:file", file, 0);
}
