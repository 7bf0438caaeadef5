/*
 * `svckit new NAME [DIR]`: writes the skeleton of a service built on the
 * installed svckit (main.c with one route, an in-process test, a Makefile
 * that finds svckit with pkg-config, a Dockerfile, a README) into DIR, which
 * must not exist yet. The files come from templates/, compiled into the
 * binary by embed.sh; {{NAME}} and {{SVCKIT_VERSION}} are filled in.
 * Whatever fails, what was written is removed again.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: svckit new NAME [DIR]\n"
    "\n"
    "Writes the skeleton of a service named NAME into DIR (default ./NAME),\n"
    "which must not exist: main.c with one route (GET /hello), a test that\n"
    "calls it in-process (svckit/test.h), a Makefile that finds svckit with\n"
    "pkg-config, a Dockerfile and a README.\n"
    "\n"
    "NAME: 1 to 40 of a-z, 0-9 and '-', not starting or ending with '-'.\n"
    "Documentation: docs/cli.md\n";

/* Files and folders one skeleton may create (templates and their folders). */
#define NEW_MAX_PATHS 64

/* Paths written so far, for the clean-up after a failure. */
typedef struct created {
    char *paths[NEW_MAX_PATHS];
    int is_dir[NEW_MAX_PATHS];
    int n;
} created;

int svc__service_name_ok(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= SVC__SERVICE_NAME_MAX) return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return 0;
    }
    return n > 0 && s[0] != '-' && s[n - 1] != '-';
}

static int note(created *c, const char *path, int is_dir) {
    if (c->n == NEW_MAX_PATHS) return -1;
    char *p = strdup(path);
    if (!p) return -1;
    c->paths[c->n] = p;
    c->is_dir[c->n++] = is_dir;
    return 0;
}

static void undo(created *c) {
    for (int i = c->n - 1; i >= 0; i--) {
        if (c->is_dir[i]) rmdir(c->paths[i]);
        else unlink(c->paths[i]);
    }
}

static void created_free(created *c) {
    for (int i = 0; i < c->n; i++) free(c->paths[i]);
    c->n = 0;
}

/* The template's text with its placeholders filled in. */
static void render(const svc__template *t, const char *name, svc_buf *out) {
    static const struct {
        const char *key;
        const char *value;
    } vars[] = {{"{{NAME}}", NULL}, {"{{SVCKIT_VERSION}}", SVC_VERSION}};
    const char *s = (const char *)t->data, *end = s + t->len;
    while (s < end) {
        const char *open = strstr(s, "{{");
        if (!open) open = end;
        svc_buf_append(out, s, (size_t)(open - s));
        s = open;
        if (s == end) break;
        size_t i = 0, nvars = sizeof vars / sizeof vars[0];
        for (; i < nvars; i++)
            if (strncmp(s, vars[i].key, strlen(vars[i].key)) == 0) break;
        if (i == nvars) {
            svc_buf_append(out, s, 2);
            s += 2;
            continue;
        }
        svc_buf_puts(out, vars[i].value ? vars[i].value : name);
        s += strlen(vars[i].key);
    }
}

static int write_file(const char *path, const svc_buf *b) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(fd, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        off += (size_t)n;
    }
    return close(fd) == 0 ? 0 : -errno;
}

/* Creates DIR/<the folders of rel>, noting each it made. */
static int make_parents(const char *dir, const char *rel, created *c) {
    char path[PATH_MAX];
    for (const char *slash = strchr(rel, '/'); slash; slash = strchr(slash + 1, '/')) {
        if (snprintf(path, sizeof path, "%s/%.*s", dir, (int)(slash - rel), rel) >= (int)sizeof path)
            return -ENAMETOOLONG;
        if (mkdir(path, 0755) == 0) {
            if (note(c, path, 1) != 0) return -ENOMEM;
        } else if (errno != EEXIST) {
            return -errno;
        }
    }
    return 0;
}

/* Where this binary's own svckit.pc would be: <prefix>/bin/svckit beside
 * <prefix>/lib/pkgconfig. Empty when not there. */
static void own_pkgconfig_dir(char *out, size_t cap) {
    out[0] = '\0';
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = '\0';
    char pc[PATH_MAX + 64];
    snprintf(pc, sizeof pc, "%s/../lib/pkgconfig/svckit.pc", exe);
    char real[PATH_MAX];
    if (!realpath(pc, real)) return;
    char *end = strrchr(real, '/');
    if (!end) return;
    *end = '\0';
    snprintf(out, cap, "%s", real);
}

int svc__cmd_new(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return SVC__EXIT_OK;
    }
    if (argc < 2 || argc > 3) {
        fputs(usage, stderr);
        return SVC__EXIT_USAGE;
    }
    const char *name = argv[1];
    const char *dir = argc == 3 ? argv[2] : name;
    if (!svc__service_name_ok(name)) {
        fprintf(stderr, "svckit new: bad NAME: expected 1 to %d of a-z, 0-9 and '-', not starting or ending "
                        "with '-'\n", SVC__SERVICE_NAME_MAX);
        return SVC__EXIT_USAGE;
    }
    if (!*dir || strlen(dir) > PATH_MAX - 64) {
        fprintf(stderr, "svckit new: bad DIR\n");
        return SVC__EXIT_USAGE;
    }
    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST) fprintf(stderr, "svckit new: %s already exists; not overwriting it\n", dir);
        else fprintf(stderr, "svckit new: cannot create %s: %s\n", dir, strerror(errno));
        return SVC__EXIT_FAIL;
    }
    created c = {0};
    int rc = note(&c, dir, 1) == 0 ? 0 : -ENOMEM;
    svc_buf b = {0};
    const char *failed = dir;
    char path[PATH_MAX];
    for (size_t i = 0; i < svc__templates_count && rc == 0; i++) {
        const svc__template *t = &svc__templates[i];
        snprintf(path, sizeof path, "%s/%s", dir, t->path);
        failed = path;
        if ((rc = make_parents(dir, t->path, &c)) != 0) break;
        b.len = 0;
        render(t, name, &b);
        if (b.oom) rc = -ENOMEM;
        else if (note(&c, path, 0) != 0) rc = -ENOMEM;
        else rc = write_file(path, &b);
    }
    svc_buf_free(&b);
    if (rc != 0) {
        fprintf(stderr, "svckit new: cannot write %s: %s; removed what was written\n", failed, strerror(-rc));
        undo(&c);
        created_free(&c);
        return SVC__EXIT_FAIL;
    }
    created_free(&c);

    printf("created %s: the service %s (svckit %s)\n", dir, name, SVC_VERSION);
    for (size_t i = 0; i < svc__templates_count; i++) printf("  %s/%s\n", dir, svc__templates[i].path);
    char pcdir[PATH_MAX];
    own_pkgconfig_dir(pcdir, sizeof pcdir);
    printf("\nnext:\n");
    if (*pcdir) printf("  export PKG_CONFIG_PATH=%s\n", pcdir);
    printf("  cd %s && make test && make run\n", dir);
    return SVC__EXIT_OK;
}
