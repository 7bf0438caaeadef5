/*
 * Procfile parsing and word splitting.
 *
 * A Procfile is hostile input as much as a request body: every line is
 * bounded, every name checked, and errors name the line. Commands are split
 * here rather than by /bin/sh so that the supervisor signals the program
 * itself, quoting behaves the same everywhere, and a container image without a
 * shell can still run `svckit run`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) SVC_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
static int is_proc_char(char c) { return is_name_char(c) || c == '-'; }

/* ---- expansion ------------------------------------------------------------ */

/* Expands the '$' at s[*i] into b; *i ends past the expression. */
static int expand(const char *s, size_t *i, const svc__env *env, svc_buf *b, char *err, size_t errlen) {
    size_t p = *i + 1;
    if (s[p] == '$') {
        svc_buf_putc(b, '$');
        *i = p + 1;
        return SVC_OK;
    }
    if (s[p] == '{') {
        size_t n0 = ++p;
        if (!is_name_start(s[p])) goto bad;
        while (is_name_char(s[p])) p++;
        size_t nlen = p - n0;
        const char *v = svc__env_get(env, s + n0, nlen);
        if (s[p] == '}') {
            if (v) svc_buf_puts(b, v);
            *i = p + 1;
            return SVC_OK;
        }
        if (s[p] == ':' && s[p + 1] == '-') {
            size_t d0 = p + 2, d = d0;
            while (s[d] && s[d] != '}') d++;
            if (s[d] != '}') goto bad;
            if (v && *v) svc_buf_puts(b, v);
            else svc_buf_append(b, s + d0, d - d0);
            *i = d + 1;
            return SVC_OK;
        }
    bad:
        set_err(err, errlen, "bad ${...} expression (use ${NAME} or ${NAME:-default})");
        return SVC_EINVAL;
    }
    if (is_name_start(s[p])) {
        size_t n0 = p;
        while (is_name_char(s[p])) p++;
        const char *v = svc__env_get(env, s + n0, p - n0);
        if (v) svc_buf_puts(b, v);
        *i = p;
        return SVC_OK;
    }
    /* A '$' before anything else is just a dollar sign, as in sh. */
    svc_buf_putc(b, '$');
    *i = p;
    return SVC_OK;
}

/* ---- words ------------------------------------------------------------------ */

void svc__words_free(svc__words *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->argv[i]);
    free(w->argv);
    memset(w, 0, sizeof *w);
}

static int starts_assignment(const char *s) {
    if (!is_name_start(*s)) return 0;
    while (is_name_char(*s)) s++;
    return *s == '=';
}

int svc__words_split(const char *s, const svc__env *env, svc__words *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    svc_buf w = {0};
    size_t total = 0, i = 0, cap = 0;
    int rc = SVC_OK, leading = 1;
    for (;;) {
        while (is_blank(s[i])) i++;
        if (!s[i] || s[i] == '#') break;
        int assign = leading && starts_assignment(s + i);
        leading = assign;
        int quoted = 0;
        svc_buf_reset(&w);
        while (s[i] && !is_blank(s[i])) {
            char c = s[i];
            if (c == '\'') {
                const char *end = strchr(s + i + 1, '\'');
                if (!end) {
                    set_err(err, errlen, "unterminated single quote");
                    rc = SVC_EINVAL;
                    goto out;
                }
                svc_buf_append(&w, s + i + 1, (size_t)(end - (s + i + 1)));
                i = (size_t)(end - s) + 1;
                quoted = 1;
            } else if (c == '"') {
                i++;
                quoted = 1;
                while (s[i] != '"') {
                    if (!s[i]) {
                        set_err(err, errlen, "unterminated double quote");
                        rc = SVC_EINVAL;
                        goto out;
                    }
                    if (s[i] == '\\' && s[i + 1] && strchr("$`\"\\", s[i + 1])) {
                        svc_buf_putc(&w, s[i + 1]);
                        i += 2;
                    } else if (s[i] == '$') {
                        if ((rc = expand(s, &i, env, &w, err, errlen)) != SVC_OK) goto out;
                    } else {
                        svc_buf_putc(&w, s[i++]);
                    }
                }
                i++;
            } else if (c == '\\') {
                if (s[i + 1]) {
                    svc_buf_putc(&w, s[i + 1]);
                    i += 2;
                    quoted = 1;
                } else {
                    svc_buf_putc(&w, '\\');
                    i++;
                }
            } else if (c == '$') {
                if ((rc = expand(s, &i, env, &w, err, errlen)) != SVC_OK) goto out;
            } else {
                svc_buf_putc(&w, c);
                i++;
            }
            if (w.len > SVC__EXPANDED_MAX) break;
        }
        if (w.oom) {
            rc = SVC_ENOMEM;
            set_err(err, errlen, "out of memory");
            goto out;
        }
        total += w.len + 1;
        if (total > SVC__EXPANDED_MAX) {
            set_err(err, errlen, "command longer than %d bytes after expansion", SVC__EXPANDED_MAX);
            rc = SVC_ERANGE;
            goto out;
        }
        /* As in sh, an unquoted expansion to nothing is no word at all. */
        if (w.len == 0 && !quoted) continue;
        if (out->n + 2 > cap) {
            if (out->n + 2 > SVC__WORDS_MAX) {
                set_err(err, errlen, "more than %d words", SVC__WORDS_MAX - 1);
                rc = SVC_ERANGE;
                goto out;
            }
            size_t ncap = cap ? cap * 2 : 8;
            char **v = realloc(out->argv, ncap * sizeof *v);
            if (!v) {
                rc = SVC_ENOMEM;
                set_err(err, errlen, "out of memory");
                goto out;
            }
            out->argv = v;
            cap = ncap;
        }
        char *word = w.len ? strndup(w.data, w.len) : strdup("");
        if (!word) {
            rc = SVC_ENOMEM;
            set_err(err, errlen, "out of memory");
            goto out;
        }
        out->argv[out->n++] = word;
        out->argv[out->n] = NULL;
        if (assign) out->nassign++;
    }
    if (!out->argv) {
        out->argv = calloc(1, sizeof *out->argv);
        if (!out->argv) {
            rc = SVC_ENOMEM;
            set_err(err, errlen, "out of memory");
        }
    }
out:
    svc_buf_free(&w);
    if (rc != SVC_OK) svc__words_free(out);
    return rc;
}

void svc__shell_quote(svc_buf *b, const char *word) {
    int plain = *word != '\0';
    for (const char *p = word; *p; p++)
        if (!is_proc_char(*p) && !strchr("./:=,+@%", *p)) plain = 0;
    if (plain) {
        svc_buf_puts(b, word);
        return;
    }
    svc_buf_putc(b, '\'');
    for (const char *p = word; *p; p++) {
        if (*p == '\'') svc_buf_puts(b, "'\\''");
        else svc_buf_putc(b, *p);
    }
    svc_buf_putc(b, '\'');
}

/* ---- Procfile --------------------------------------------------------------- */

void svc__procfile_free(svc__procfile *pf) {
    if (!pf) return;
    for (size_t i = 0; i < pf->n; i++) free(pf->entries[i].command);
    free(pf->entries);
    memset(pf, 0, sizeof *pf);
}

const svc__entry *svc__procfile_find(const svc__procfile *pf, const char *name) {
    for (size_t i = 0; i < pf->n; i++)
        if (strcmp(pf->entries[i].name, name) == 0) return &pf->entries[i];
    return NULL;
}

/* What [stop=...] may name: signals a program can take as "shut down". KILL
 * is what the timeout sends anyway, and STOP, CHLD and the like would only
 * make every shutdown wait for it. */
static const struct {
    const char *name;
    int sig;
} stop_signals[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"HUP", SIGHUP}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
};
#define STOP_SIGNALS_TEXT "TERM, INT, QUIT, HUP, USR1 or USR2"

/* The signal of a [stop=...] value ("INT", "SIGINT", "int"), or 0. */
static int stop_signal_parse(const char *name) {
    if (strncasecmp(name, "SIG", 3) == 0) name += 3;
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++)
        if (strcasecmp(name, stop_signals[i].name) == 0) return stop_signals[i].sig;
    return 0;
}

/* Parses "[port=8082, stop=INT, manual]" content (without the brackets) into e. */
static int parse_options(const char *s, size_t len, const svc__env *env, svc__entry *e, char *err,
                         size_t errlen) {
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_blank(s[i]) || s[i] == ',')) i++;
        if (i == len) break;
        size_t k0 = i;
        while (i < len && is_proc_char(s[i])) i++;
        size_t klen = i - k0;
        if (klen == 0) {
            set_err(err, errlen, "bad option near '%.*s'", (int)(len - k0 > 20 ? 20 : len - k0), s + k0);
            return SVC_EINVAL;
        }
        const char *key = s + k0;
        char val[256];
        int has_val = 0;
        if (i < len && s[i] == '=') {
            /* The value runs to the next separator outside ${...}. */
            size_t v0 = ++i;
            int depth = 0;
            while (i < len && (depth || (!is_blank(s[i]) && s[i] != ','))) {
                if (s[i] == '{') depth++;
                else if (s[i] == '}' && depth) depth--;
                i++;
            }
            if (i - v0 >= sizeof val) {
                set_err(err, errlen, "option value too long");
                return SVC_ERANGE;
            }
            memcpy(val, s + v0, i - v0);
            val[i - v0] = '\0';
            has_val = 1;
        }
        int is_port = klen == 4 && memcmp(key, "port", 4) == 0;
        if (is_port || (klen == 10 && memcmp(key, "scale_port", 10) == 0)) {
            const char *name = is_port ? "port" : "scale_port";
            if (!has_val) {
                set_err(err, errlen, "%s needs a value: [%s=8080]", name, name);
                return SVC_EINVAL;
            }
            svc__words w;
            char werr[160];
            if (svc__words_split(val, env, &w, werr, sizeof werr) != SVC_OK) {
                set_err(err, errlen, "%s: %s", name, werr);
                return SVC_EINVAL;
            }
            int64_t port = 0;
            int ok = w.n == 1 && svc_parse_i64(w.argv[0], &port) == SVC_OK && port >= 1 && port <= 65535;
            if (!ok) {
                set_err(err, errlen, "%s must be a number from 1 to 65535, got '%s'", name, w.n ? w.argv[0] : val);
                svc__words_free(&w);
                return SVC_EINVAL;
            }
            svc__words_free(&w);
            *(is_port ? &e->port : &e->scale_port) = (int)port;
        } else if (klen == 4 && memcmp(key, "stop", 4) == 0) {
            if (!has_val) {
                set_err(err, errlen, "stop needs a signal name: [stop=INT]");
                return SVC_EINVAL;
            }
            svc__words w;
            char werr[160];
            if (svc__words_split(val, env, &w, werr, sizeof werr) != SVC_OK) {
                set_err(err, errlen, "stop: %s", werr);
                return SVC_EINVAL;
            }
            int sig = w.n == 1 ? stop_signal_parse(w.argv[0]) : 0;
            if (!sig) {
                set_err(err, errlen, "stop must be one of " STOP_SIGNALS_TEXT " (SIG prefix optional), got '%s'",
                        w.n ? w.argv[0] : val);
                svc__words_free(&w);
                return SVC_EINVAL;
            }
            svc__words_free(&w);
            e->stop_signal = sig;
        } else if (klen == 6 && memcmp(key, "manual", 6) == 0 && !has_val) {
            e->manual = 1;
        } else if (klen == 5 && memcmp(key, "after", 5) == 0) {
            /* A plain name, never expanded: the order of a system is part
             * of its Procfile, not of the environment. */
            size_t vl = has_val ? strlen(val) : 0;
            int ok = vl > 0 && vl <= SVC__NAME_MAX;
            for (size_t k = 0; ok && k < vl; k++) ok = is_proc_char(val[k]);
            if (!ok) {
                set_err(err, errlen, "after needs a process name: [after=nats]");
                return SVC_EINVAL;
            }
            if (e->nafter == SVC__AFTER_MAX) {
                set_err(err, errlen, "more than %d after= options", SVC__AFTER_MAX);
                return SVC_ERANGE;
            }
            memcpy(e->after[e->nafter++], val, vl + 1);
        } else if (klen == 5 && memcmp(key, "ready", 5) == 0) {
            if (!has_val) {
                set_err(err, errlen, "ready needs a probe: [ready=tcp] or [ready=/readyz]");
                return SVC_EINVAL;
            }
            svc__words w;
            char werr[160];
            if (svc__words_split(val, env, &w, werr, sizeof werr) != SVC_OK) {
                set_err(err, errlen, "ready: %s", werr);
                return SVC_EINVAL;
            }
            const char *v = w.n == 1 ? w.argv[0] : "";
            int ok = 1;
            if (strcmp(v, "tcp") == 0) {
                e->ready = SVC__READY_TCP;
            } else if (v[0] == '/' && strlen(v) <= SVC__READY_PATH_MAX) {
                /* Goes into a request line as it is: visible ASCII only. */
                for (const char *c = v; *c && ok; c++) ok = *c > 0x20 && *c < 0x7f;
                e->ready = SVC__READY_HTTP;
                snprintf(e->ready_path, sizeof e->ready_path, "%s", v);
            } else {
                ok = 0;
            }
            if (!ok) set_err(err, errlen, "ready must be tcp or an HTTP path such as /readyz, got '%s'", w.n ? v : val);
            svc__words_free(&w);
            if (!ok) return SVC_EINVAL;
        } else {
            set_err(err, errlen, "unknown option '%.*s' (known: port=N, scale_port=N, stop=SIG, after=NAME, ready=PROBE, manual)",
                    (int)klen, key);
            return SVC_EINVAL;
        }
    }
    if (e->ready != SVC__READY_STARTED && !e->port) {
        set_err(err, errlen, "ready= probes the process's port: give it port=N too");
        return SVC_EINVAL;
    }
    if (e->ready == SVC__READY_STARTED && e->port) e->ready = SVC__READY_TCP;
    return SVC_OK;
}

/* Resolves every after=NAME to its entry and refuses cycles, naming the line
 * of the first entry on one and the whole loop. */
static int resolve_after(svc__procfile *pf, char *err, size_t errlen) {
    for (size_t i = 0; i < pf->n; i++) {
        svc__entry *e = &pf->entries[i];
        for (int k = 0; k < e->nafter; k++) {
            const svc__entry *d = svc__procfile_find(pf, e->after[k]);
            if (!d) {
                svc_buf b = {0};
                for (size_t j = 0; j < pf->n; j++) svc_buf_printf(&b, "%s%s", j ? ", " : "", pf->entries[j].name);
                set_err(err, errlen, "line %d: after=%s: no such process (known: %s)", e->line, e->after[k],
                        b.data ? b.data : "none");
                svc_buf_free(&b);
                return SVC_EINVAL;
            }
            e->after_idx[k] = (int)(d - pf->entries);
        }
    }
    /* Depth-first, iteratively: 0 unvisited, 1 on the current path, 2 done. */
    unsigned char state[SVC__PROCFILE_MAX_ENTRIES] = {0};
    int path[SVC__PROCFILE_MAX_ENTRIES], next[SVC__PROCFILE_MAX_ENTRIES];
    for (size_t root = 0; root < pf->n; root++) {
        if (state[root]) continue;
        int depth = 0;
        path[0] = (int)root;
        next[0] = 0;
        state[root] = 1;
        while (depth >= 0) {
            const svc__entry *e = &pf->entries[path[depth]];
            if (next[depth] == e->nafter) {
                state[path[depth--]] = 2;
                continue;
            }
            int d = e->after_idx[next[depth]++];
            if (state[d] == 2) continue;
            if (state[d] == 1) {
                int from = depth;
                while (path[from] != d) from--;
                svc_buf b = {0};
                for (int j = from; j <= depth; j++) svc_buf_printf(&b, "%s -> ", pf->entries[path[j]].name);
                svc_buf_puts(&b, pf->entries[d].name);
                set_err(err, errlen, "line %d: after= makes a cycle: %s", pf->entries[d].line,
                        b.data ? b.data : "");
                svc_buf_free(&b);
                return SVC_EINVAL;
            }
            state[d] = 1;
            path[++depth] = d;
            next[depth] = 0;
        }
    }
    return SVC_OK;
}

/* Parses one non-empty, non-comment line into e. */
static int parse_line(const char *s, const svc__env *env, svc__entry *e, char *err, size_t errlen) {
    size_t i = 0, n0;
    while (is_blank(s[i])) i++;
    n0 = i;
    while (is_proc_char(s[i])) i++;
    size_t nlen = i - n0;
    if (nlen == 0) {
        set_err(err, errlen, "expected 'name: command', with a name of letters, digits, '_' or '-'");
        return SVC_EINVAL;
    }
    if (nlen > SVC__NAME_MAX) {
        set_err(err, errlen, "process name longer than %d bytes", SVC__NAME_MAX);
        return SVC_ERANGE;
    }
    memcpy(e->name, s + n0, nlen);
    e->name[nlen] = '\0';
    while (is_blank(s[i])) i++;
    if (s[i] == '[') {
        const char *end = strchr(s + i, ']');
        if (!end) {
            set_err(err, errlen, "'[' without ']'");
            return SVC_EINVAL;
        }
        int rc = parse_options(s + i + 1, (size_t)(end - s - i - 1), env, e, err, errlen);
        if (rc != SVC_OK) return rc;
        i = (size_t)(end - s) + 1;
        while (is_blank(s[i])) i++;
    }
    if (s[i] != ':') {
        set_err(err, errlen, "expected ':' after the process name '%s'", e->name);
        return SVC_EINVAL;
    }
    i++;
    while (is_blank(s[i])) i++;
    size_t end = strlen(s);
    while (end > i && is_blank(s[end - 1])) end--;
    if (end == i) {
        set_err(err, errlen, "%s: empty command", e->name);
        return SVC_EINVAL;
    }
    /* Catch quoting mistakes now rather than at the first start. */
    svc__words w;
    char werr[160];
    int rc = svc__words_split(s + i, env, &w, werr, sizeof werr);
    if (rc != SVC_OK) {
        set_err(err, errlen, "%s: %s", e->name, werr);
        return rc;
    }
    int no_program = w.n == w.nassign;
    svc__words_free(&w);
    if (no_program) {
        set_err(err, errlen, "%s: no program to run", e->name);
        return SVC_EINVAL;
    }
    e->command = strndup(s + i, end - i);
    if (!e->command) {
        set_err(err, errlen, "out of memory");
        return SVC_ENOMEM;
    }
    return SVC_OK;
}

int svc__procfile_parse(const char *text, size_t len, const svc__env *env, svc__procfile *pf, char *err,
                        size_t errlen) {
    memset(pf, 0, sizeof *pf);
    char line[SVC__PROCFILE_MAX_LINE + 1];
    size_t pos = 0;
    int lineno = 0, rc = SVC_OK;
    if (len > SVC__PROCFILE_MAX_BYTES) {
        set_err(err, errlen, "larger than %d bytes", SVC__PROCFILE_MAX_BYTES);
        return SVC_ERANGE;
    }
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        if (llen && text[pos + llen - 1] == '\r') llen--;
        if (llen > SVC__PROCFILE_MAX_LINE) {
            set_err(err, errlen, "line %d: longer than %d bytes", lineno, SVC__PROCFILE_MAX_LINE);
            rc = SVC_ERANGE;
            goto fail;
        }
        memcpy(line, text + pos, llen);
        line[llen] = '\0';
        pos = nl ? (size_t)(nl - text) + 1 : len;
        if (memchr(line, '\0', llen) || strpbrk(line, "\r\v\f")) {
            set_err(err, errlen, "line %d: control character in the line", lineno);
            rc = SVC_EINVAL;
            goto fail;
        }
        size_t i = 0;
        while (is_blank(line[i])) i++;
        if (!line[i] || line[i] == '#') continue;
        if (pf->n == SVC__PROCFILE_MAX_ENTRIES) {
            set_err(err, errlen, "line %d: more than %d processes", lineno, SVC__PROCFILE_MAX_ENTRIES);
            rc = SVC_ERANGE;
            goto fail;
        }
        svc__entry e = {0};
        e.line = lineno;
        e.stop_signal = SIGTERM;
        char lerr[256];
        rc = parse_line(line, env, &e, lerr, sizeof lerr);
        if (rc != SVC_OK) {
            set_err(err, errlen, "line %d: %s", lineno, lerr);
            goto fail;
        }
        const svc__entry *dup = svc__procfile_find(pf, e.name);
        if (dup) {
            set_err(err, errlen, "line %d: '%s' is already defined on line %d", lineno, e.name, dup->line);
            free(e.command);
            rc = SVC_EINVAL;
            goto fail;
        }
        if (!pf->entries) {
            pf->entries = calloc(SVC__PROCFILE_MAX_ENTRIES, sizeof *pf->entries);
            if (!pf->entries) {
                free(e.command);
                set_err(err, errlen, "out of memory");
                rc = SVC_ENOMEM;
                goto fail;
            }
        }
        pf->entries[pf->n++] = e;
    }
    if ((rc = resolve_after(pf, err, errlen)) != SVC_OK) goto fail;
    return SVC_OK;
fail:
    svc__procfile_free(pf);
    return rc;
}

int svc__procfile_load(const char *path, const svc__env *env, svc__procfile *pf, char *err, size_t errlen) {
    memset(pf, 0, sizeof *pf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return SVC_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s is not a regular file", path);
        close(fd);
        return SVC_EIO;
    }
    if (st.st_size > SVC__PROCFILE_MAX_BYTES) {
        set_err(err, errlen, "%s is larger than %d bytes", path, SVC__PROCFILE_MAX_BYTES);
        close(fd);
        return SVC_ERANGE;
    }
    char *text = malloc((size_t)st.st_size + 1);
    if (!text) {
        close(fd);
        set_err(err, errlen, "out of memory");
        return SVC_ENOMEM;
    }
    size_t len = 0;
    for (;;) {
        if (len == (size_t)st.st_size) break; /* a file that grows while read is cut here */
        ssize_t r = read(fd, text + len, (size_t)st.st_size - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
            free(text);
            close(fd);
            return SVC_EIO;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    char perr[300];
    int rc = svc__procfile_parse(text, len, env, pf, perr, sizeof perr);
    free(text);
    if (rc != SVC_OK) set_err(err, errlen, "%s: %s", path, perr);
    return rc;
}
