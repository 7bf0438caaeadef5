/* Arena allocator: a chain of blocks, bump-allocated, freed together. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/core.h"

#define ALIGN 16
#define DEFAULT_BLOCK 4096

typedef struct block {
    struct block *next;
    size_t size;   /* usable bytes in data */
    size_t used;
    _Alignas(ALIGN) unsigned char data[];
} block;

struct svc_arena {
    block *head;        /* current block (newest) */
    size_t block_size;
    size_t bytes;       /* sum of block sizes */
};

static block *block_new(size_t size) {
    block *b = malloc(sizeof(block) + size);
    if (!b) return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

svc_arena *svc_arena_new(size_t block_size) {
    svc_arena *a = malloc(sizeof *a);
    if (!a) return NULL;
    a->block_size = block_size ? block_size : DEFAULT_BLOCK;
    a->head = NULL;
    a->bytes = 0;
    return a;
}

void svc_arena_free(svc_arena *a) {
    if (!a) return;
    block *b = a->head;
    while (b) {
        block *n = b->next;
        free(b);
        b = n;
    }
    free(a);
}

void svc_arena_reset(svc_arena *a) {
    if (!a || !a->head) return;
    /* Keep the oldest block (the last in the chain): it has the default size. */
    block *b = a->head, *keep = NULL;
    while (b) {
        block *n = b->next;
        if (!n) keep = b;
        else free(b);
        b = n;
    }
    keep->used = 0;
    keep->next = NULL;
    a->head = keep;
    a->bytes = keep->size;
}

void *svc_arena_alloc(svc_arena *a, size_t n) {
    if (n > SIZE_MAX / 2) return NULL;
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (n == 0) n = ALIGN;
    block *b = a->head;
    if (!b || b->size - b->used < n) {
        /* Big requests get a block of their own behind the current one, so the
         * current block's free space is not wasted. The first allocation of
         * an empty arena has nothing to waste: it starts a default block when
         * it fits one, which reset then keeps (a pooled request arena would
         * otherwise keep a block of the request's size and malloc a default
         * one for every request). */
        size_t size = n > a->block_size || (b && n > a->block_size / 4) ? n : a->block_size;
        block *nb = block_new(size);
        if (!nb) return NULL;
        a->bytes += size;
        if (b && size != a->block_size) {
            nb->next = b->next;
            b->next = nb;
            nb->used = n;
            return nb->data;
        }
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void *svc_arena_calloc(svc_arena *a, size_t n) {
    void *p = svc_arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

char *svc_arena_strndup(svc_arena *a, const char *s, size_t n) {
    char *p = svc_arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *svc_arena_strdup(svc_arena *a, const char *s) {
    return svc_arena_strndup(a, s, strlen(s));
}

char *svc_arena_printf(svc_arena *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return NULL;
    }
    char *p = svc_arena_alloc(a, (size_t)n + 1);
    if (p) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

size_t svc_arena_bytes(const svc_arena *a) { return a ? a->bytes : 0; }
