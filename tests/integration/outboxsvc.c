/*
 * outboxsvc: a service for tests/integration/test_store_outbox.py. POST /notes
 * stores a note and a "notes.created" event in one group-committed write; the
 * outbox relay publishes the events to stream NOTES; a svc_app_on_stream_db
 * consumer of NOTES counts, per message id, how often its effect ran
 * (effects.n must never pass 1). GET /state reports the tables.
 *
 * Environment (besides svckit's): OUTBOXSVC_DEDUP_MS (120000), the stream's
 * duplicate window. A note whose body is "refuse" makes the effect refuse
 * its event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svckit.h"
#include "svckit/outbox.h"

static const svc_migration migrations[] = {
    {1, "notes",
     "CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
     "CREATE TABLE effects (msg_id TEXT PRIMARY KEY, n INTEGER NOT NULL)", NULL},
};

static svc_db *db;
static svc_outbox_relay *relay;
static svc_db_consumer consumer;

typedef struct note {
    const char *body;
    size_t len;
    int64_t id;
} note;

static int add_note(svc_db *d, void *ud) {
    note *n = ud;
    svc_stmt *s = svc_db_stmt(d, "INSERT INTO notes (body) VALUES (?1) RETURNING id");
    if (!s) return SVC_EIO;
    svc_stmt_bind_blob(s, 1, n->body, n->len);
    int rc = svc_stmt_step(s);
    if (rc == SVC_DB_ROW) n->id = svc_stmt_i64(s, 0);
    svc_stmt_reset(s);
    if (rc != SVC_DB_ROW) return rc < 0 ? rc : SVC_EIO;
    return svc_db_outbox_add(d, "notes.created", n->body, n->len, NULL);
}

static svc_outcome post_note(svc_req *req, svc_res *res) {
    note n = {0};
    n.body = svc_req_body(req, &n.len);
    int rc = svc_db_write_wait(db, add_note, &n);
    if (rc == SVC_EAGAIN) return svc_res_error(res, 503, "busy", "write queue full");
    if (rc != SVC_OK) return svc_res_error(res, 500, "internal", "%s", svc_status_str(rc));
    return svc_res_printf(res, 201, "application/json", "{\"id\":%lld}", (long long)n.id);
}

static long long count(const char *sql) {
    svc_stmt *s = svc_db_stmt(db, sql);
    long long v = s && svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    if (s) svc_stmt_reset(s);
    return v;
}

static svc_outcome state(svc_req *req, svc_res *res) {
    (void)req;
    return svc_res_printf(res, 200, "application/json",
                          "{\"notes\":%lld,\"outbox\":%lld,\"effects\":%lld,\"max_n\":%lld,\"inbox\":%lld}",
                          count("SELECT count(*) FROM notes"), count("SELECT count(*) FROM svc_outbox"),
                          count("SELECT count(*) FROM effects"), count("SELECT coalesce(max(n), 0) FROM effects"),
                          count("SELECT count(*) FROM svc_inbox"));
}

static int effect(svc_db *d, const svc_event *ev, void *ud) {
    (void)ud;
    if (ev->len == 6 && memcmp(ev->data, "refuse", 6) == 0) return SVC_EINVAL;
    svc_stmt *s = svc_db_stmt(
        d, "INSERT INTO effects (msg_id, n) VALUES (?1, 1) ON CONFLICT (msg_id) DO UPDATE SET n = effects.n + 1");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, ev->msg_id);
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : SVC_OK;
}

static int start(svc_app *app, void *ud) {
    (void)ud;
    const char *dir = getenv("DATA_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/outboxsvc.db", dir && *dir ? dir : ".");
    if (svc_db_open(path, migrations, 1, &db) != SVC_OK) return SVC_EIO;
    const char *subjects[] = {"notes.>", NULL};
    const char *dedup = svc_app_env(app, "OUTBOXSVC_DEDUP_MS");
    int rc = svc_js_stream_ensure(app, "NOTES", subjects, atoll(dedup));
    if (rc != SVC_OK) svc_warn("stream NOTES not declared yet: %s", svc_status_str(rc));
    consumer.db = db;
    return svc_outbox_relay_start(app, db, &relay);
}

static void stop(svc_app *app, void *ud) {
    (void)app, (void)ud;
    svc_outbox_relay_stop(relay);
    consumer.db = NULL;
    svc_db_close(db);
}

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("outboxsvc", argc, argv);
    svc_app_env_declare(app, "OUTBOXSVC_DEDUP_MS", "120000", "duplicate window of stream NOTES");
    svc_app_post(app, "/notes", post_note, SVC_OFFLOAD);
    svc_app_get(app, "/state", state, SVC_OFFLOAD);
    consumer.effect = effect;
    svc_app_on_stream_db(app, "NOTES", "notes.>", "outboxsvc", 2000, &consumer);
    svc_app_on_start(app, start, NULL);
    svc_app_on_stop(app, stop, NULL);
    return svc_app_run(app);
}
