/*
 * Live instances. Discovery writes the shared directory about once a second;
 * each worker keeps its own copy (gw_pools) that it balances over, refreshed
 * only when the directory's version moved, so the request path touches no
 * shared memory but one atomic counter. Failure marks are per worker: a
 * worker that saw an instance time out skips it for a while without telling
 * the others, which learn the same within a request or two if it is real.
 *
 * An instance that missed the last discovery round is silent: picked no more
 * (requests go to the others, or to the service's queue subject when none
 * is left) until it answers a round again, and dropped after
 * GW_DISCOVERY_MISSES more. So a host cut off stops getting requests one
 * round after it fell silent (at most interval + gather), while a live
 * instance whose PING answer came late once is out of rotation for one
 * round only and keeps the calls it holds.
 *
 * An instance that said it is leaving (its leave notice, or a reply saying
 * it drains) stays listed, marked: it is picked no more, but calls already
 * on it wait for its answer (it drains), instead of moving as calls on a
 * vanished instance do. Discovery drops it once it stops answering PINGs.
 */
#include <string.h>

#include "gateway.h"
#include "svckit/msg.h"

void gw_directory_init(gw_directory *d, int nservices) {
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    atomic_init(&d->version, 1);
    atomic_init(&d->wanted, 0);
    d->nservices = nservices < 0 ? 0 : nservices > GW_MAX_SERVICES ? GW_MAX_SERVICES : nservices;
}

void gw_directory_destroy(gw_directory *d) { pthread_mutex_destroy(&d->mu); }

/* 1..max of [A-Za-z0-9_-]: a service name or an instance id. */
static int word_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static int id_ok(const char *id) { return word_ok(id, GW_INSTANCE_ID_MAX); }

int gw_ping_parse(const char *data, size_t len, char *name, size_t namelen, char *id, size_t idlen) {
    json_t *doc = NULL;
    svc_json_limits lim = {.max_bytes = GW_PING_MAX_BYTES, .max_depth = 8};
    if (!data || !name || !id || svc_json_parse(data, len, &lim, &doc, NULL, 0) != SVC_OK) return 0;
    const char *n = json_string_value(json_object_get(doc, "name"));
    const char *i = json_string_value(json_object_get(doc, "id"));
    int ok = n && i && strlen(n) < namelen && strlen(i) < idlen && id_ok(i);
    if (ok) {
        strcpy(name, n);
        strcpy(id, i);
    }
    json_decref(doc);
    return ok;
}

int gw_leave_parse(const char *subject, char *name, size_t namelen, char *id, size_t idlen) {
    size_t pl = strlen(SVC_MSG_LEAVE_PREFIX);
    if (!subject || !name || !id || strncmp(subject, SVC_MSG_LEAVE_PREFIX, pl) != 0 || subject[pl] != '.') return 0;
    const char *n = subject + pl + 1, *dot = strchr(n, '.');
    if (!dot) return 0;
    size_t nl = (size_t)(dot - n);
    const char *i = dot + 1;
    size_t il = strlen(i);
    if (nl == 0 || nl >= namelen || il >= idlen) return 0;
    memcpy(name, n, nl);
    name[nl] = '\0';
    memcpy(id, i, il + 1);
    return word_ok(name, GW_MAX_SERVICE_NAME) && id_ok(id);
}

int gw_directory_update(gw_directory *d, int service, const char *const *ids, int n) {
    if (service < 0 || service >= d->nservices) return 0;
    pthread_mutex_lock(&d->mu);
    gw_dir_entry *e = d->entries[service];
    int count = d->count[service], known = count, changed = 0;
    char answered[GW_MAX_INSTANCES] = {0};
    for (int k = 0; k < n; k++) {
        if (!ids[k] || !id_ok(ids[k])) continue;
        int i = 0;
        while (i < count && strcmp(e[i].id, ids[k]) != 0) i++;
        if (i == count && count < GW_MAX_INSTANCES) {
            strcpy(e[count].id, ids[k]);
            e[count].misses = 0;
            e[count].leaving = 0;
            count++;
            changed = 1;
        }
        if (i < known) answered[i] = 1;
    }
    /* Silent (out of rotation) from the first round missed, back at the
     * first answered: both change what workers pick. */
    for (int i = 0; i < known; i++) {
        changed |= answered[i] ? e[i].misses > 0 : e[i].misses == 0;
        e[i].misses = answered[i] ? 0 : e[i].misses + 1;
    }
    for (int i = 0; i < count;) {
        if (e[i].misses > GW_DISCOVERY_MISSES) {
            e[i] = e[--count];
            changed = 1;
        } else {
            i++;
        }
    }
    d->count[service] = count;
    if (changed) atomic_fetch_add(&d->version, 1);
    pthread_mutex_unlock(&d->mu);
    return count;
}

void gw_directory_forget(gw_directory *d, int service, const char *id) {
    if (service < 0 || service >= d->nservices || !id) return;
    pthread_mutex_lock(&d->mu);
    gw_dir_entry *e = d->entries[service];
    for (int i = 0; i < d->count[service]; i++) {
        if (strcmp(e[i].id, id) == 0) {
            e[i] = e[--d->count[service]];
            atomic_fetch_add(&d->version, 1);
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

void gw_directory_leave(gw_directory *d, int service, const char *id) {
    if (service < 0 || service >= d->nservices || !id || !id_ok(id)) return;
    pthread_mutex_lock(&d->mu);
    gw_dir_entry *e = d->entries[service];
    int i = 0;
    while (i < d->count[service] && strcmp(e[i].id, id) != 0) i++;
    if (i == d->count[service] && i < GW_MAX_INSTANCES) {
        strcpy(e[i].id, id);
        e[i].misses = 0;
        e[i].leaving = 0;
        d->count[service]++;
    }
    if (i < d->count[service] && !e[i].leaving) {
        e[i].leaving = 1;
        atomic_fetch_add(&d->version, 1);
    }
    pthread_mutex_unlock(&d->mu);
}

int gw_directory_count(gw_directory *d, int service) {
    if (service < 0 || service >= d->nservices) return 0;
    pthread_mutex_lock(&d->mu);
    int n = 0;
    for (int i = 0; i < d->count[service]; i++) n += !d->entries[service][i].leaving && !d->entries[service][i].misses;
    pthread_mutex_unlock(&d->mu);
    return n;
}

int gw_pools_sync(gw_pools *p, gw_directory *d) {
    unsigned v = atomic_load_explicit(&d->version, memory_order_acquire);
    if (v == p->version) return 0;
    pthread_mutex_lock(&d->mu);
    p->nservices = d->nservices;
    for (int s = 0; s < d->nservices; s++) {
        gw_pool *pool = &p->pool[s];
        gw_pool old = *pool;
        pool->n = 0;
        for (int i = 0; i < d->count[s]; i++) {
            strcpy(pool->inst[pool->n].id, d->entries[s][i].id);
            pool->inst[pool->n].skip_until_ms = 0;
            pool->inst[pool->n].leaving = d->entries[s][i].leaving;
            pool->inst[pool->n].silent = d->entries[s][i].misses > 0;
            for (int j = 0; j < old.n; j++)
                if (strcmp(old.inst[j].id, pool->inst[pool->n].id) == 0)
                    pool->inst[pool->n].skip_until_ms = old.inst[j].skip_until_ms;
            pool->n++;
        }
    }
    p->version = atomic_load_explicit(&d->version, memory_order_relaxed);
    pthread_mutex_unlock(&d->mu);
    return 1;
}

int gw_pool_has(const gw_pools *p, int service, const char *id) {
    if (service < 0 || service >= p->nservices || !id) return 0;
    const gw_pool *pool = &p->pool[service];
    for (int i = 0; i < pool->n; i++)
        if (strcmp(pool->inst[i].id, id) == 0) return 1;
    return 0;
}

int gw_pool_live(const gw_pools *p, int service) {
    if (service < 0 || service >= p->nservices) return 0;
    int n = 0;
    for (int i = 0; i < p->pool[service].n; i++) n += !p->pool[service].inst[i].leaving;
    return n;
}

const char *gw_pool_pick(gw_pools *p, int service, uint64_t now_ms, const char *exclude) {
    if (service < 0 || service >= p->nservices) return NULL;
    gw_pool *pool = &p->pool[service];
    for (int k = 0; k < pool->n; k++) {
        int i = (int)(pool->next++ % (unsigned)pool->n);
        if (pool->inst[i].leaving || pool->inst[i].silent || pool->inst[i].skip_until_ms > now_ms) continue;
        if (exclude && strcmp(pool->inst[i].id, exclude) == 0) continue;
        return pool->inst[i].id;
    }
    return NULL;
}

void gw_pool_skip(gw_pools *p, int service, const char *id, uint64_t now_ms) {
    if (service < 0 || service >= p->nservices || !id) return;
    gw_pool *pool = &p->pool[service];
    for (int i = 0; i < pool->n; i++)
        if (strcmp(pool->inst[i].id, id) == 0) pool->inst[i].skip_until_ms = now_ms + GW_INSTANCE_SKIP_MS;
}

void gw_pool_remove(gw_pools *p, int service, const char *id) {
    if (service < 0 || service >= p->nservices || !id) return;
    gw_pool *pool = &p->pool[service];
    for (int i = 0; i < pool->n; i++) {
        if (strcmp(pool->inst[i].id, id) == 0) {
            pool->inst[i] = pool->inst[--pool->n];
            return;
        }
    }
}
