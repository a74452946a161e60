#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cfs_buf_reserve(cfs_buf *b, size_t need)
{
    if (need <= b->cap - b->len)
        return 0;
    if (need > SIZE_MAX - b->len)
        return -1;
    size_t want = b->len + need;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cfs_buf_append(cfs_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (cfs_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cfs_buf_append_str(cfs_buf *b, const char *s)
{
    return cfs_buf_append(b, s, strlen(s));
}

int cfs_buf_terminate(cfs_buf *b)
{
    if (cfs_buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len] = '\0';
    return 0;
}

void cfs_buf_reset(cfs_buf *b)
{
    b->len = 0;
}

void cfs_buf_free(cfs_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *cfs_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

char *cfs_buf_steal(cfs_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
