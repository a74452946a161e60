/* Object attributes (op.h cfs_object_attrs): copies, user metadata pairs, the times
 * servers write, listing details, and what a HEAD response's headers say (backend.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/backend.h"
#include "core/op.h"

int cfs_attr_set(char **field, const char *v, size_t len)
{
    char *copy = v ? strndup(v, len) : NULL;
    if (v && !copy)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

int cfs_object_attrs_add_meta(cfs_object_attrs *a, const char *name, size_t name_len,
                              const char *value, size_t value_len)
{
    if (a->n_metadata >= CFS_META_MAX)
        return -1;
    cfs_meta_pair *p = realloc(a->metadata, (a->n_metadata + 1) * sizeof *p);
    if (!p)
        return -1;
    a->metadata = p;
    char *n = strndup(name, name_len), *v = strndup(value, value_len);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    p[a->n_metadata++] = (cfs_meta_pair){ n, v };
    return 0;
}

int cfs_object_attrs_copy(cfs_object_attrs *dst, const cfs_object_attrs *src)
{
    cfs_object_attrs_free(dst);
    const char *const s[] = { src->content_encoding,    src->content_type,  src->cache_control,
                              src->content_disposition, src->storage_class, src->etag };
    char **d[] = { &dst->content_encoding,    &dst->content_type,  &dst->cache_control,
                   &dst->content_disposition, &dst->storage_class, &dst->etag };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (s[i] && cfs_attr_set(d[i], s[i], strlen(s[i])) < 0)
            goto fail;
    dst->last_modified_ms = src->last_modified_ms;
    for (size_t i = 0; i < src->n_metadata; i++)
        if (cfs_object_attrs_add_meta(dst, src->metadata[i].name, strlen(src->metadata[i].name),
                                      src->metadata[i].value, strlen(src->metadata[i].value)) < 0)
            goto fail;
    return 0;
fail:
    cfs_object_attrs_free(dst);
    return -1;
}

int cfs_entries_set_info(cfs_entries *e, int64_t mtime_ms, const char *etag, size_t etag_len)
{
    if (e->len == 0)
        return 0;
    cfs_entry *last = &e->items[e->len - 1];
    last->mtime_ms = mtime_ms;
    return etag ? cfs_attr_set(&last->etag, etag, etag_len) : 0;
}

/* ---------- times ---------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int valid_time(int y, int mo, int d, int h, int mi, int s)
{
    return y >= 1900 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 &&
           h <= 23 && mi >= 0 && mi <= 59 && s >= 0 && s <= 60;
}

static int64_t to_ms(int y, int mo, int d, int h, int mi, int s)
{
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000LL + s * 1000LL;
}

/* -1 stands for "no time" in every attribute and listing entry, so a time before 1970
 * (which no object store writes) is refused rather than handed on as a negative. */
static int epoch_ms(int64_t t, int64_t *ms)
{
    if (t < 0)
        return -1;
    *ms = t;
    return 0;
}

int cfs_parse_http_date(const char *s, int64_t *ms)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char wd[4], mon[4], zone[4];
    int d, y, h, mi, sec, used = 0;
    if (!s ||
        sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", wd, &d, mon, &y, &h, &mi,
               &sec, zone, &used) != 8 ||
        s[used] != '\0' || strcmp(zone, "GMT") != 0)
        return -1;
    const char *m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
    if (!m || (m - months) % 3)
        return -1;
    int mo = (int)(m - months) / 3 + 1;
    if (!valid_time(y, mo, d, h, mi, sec))
        return -1;
    return epoch_ms(to_ms(y, mo, d, h, mi, sec), ms);
}

int cfs_parse_rfc3339(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec, used = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
        used != 19 || !valid_time(y, mo, d, h, mi, sec))
        return -1;
    const char *p = s + used;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59)
            return -1;
        offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 1 + n;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    return epoch_ms(to_ms(y, mo, d, h, mi, sec) + frac - offset_min * 60000LL, ms);
}

/* ---------- a HEAD response's headers ---------- */

/* Calls fn for each "name: value" line of the block (values trimmed, not NUL-terminated).
 * Stops at a nonzero return and returns it. */
static int each_header(const cfs_response *resp,
                       int (*fn)(void *ctx, const char *n, size_t nl, const char *v, size_t vl),
                       void *ctx)
{
    const char *p = resp->headers, *end = p ? p + resp->headers_len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon) {
            const char *v = colon + 1, *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            int rc = fn(ctx, p, (size_t)(colon - p), v, (size_t)(ve - v));
            if (rc)
                return rc;
        }
        p = eol ? eol + 1 : end;
    }
    return 0;
}

typedef struct attrs_ctx {
    cfs_object_attrs *a;
    const char *meta_prefix;
    size_t prefix_len;
} attrs_ctx;

static int take_header(void *vctx, const char *n, size_t nl, const char *v, size_t vl)
{
    attrs_ctx *c = vctx;
    cfs_object_attrs *a = c->a;
#define IS(name) (nl == sizeof(name) - 1 && strncasecmp(n, name, nl) == 0)
    char **field = NULL;
    if (IS("cache-control"))
        field = &a->cache_control;
    else if (IS("content-disposition"))
        field = &a->content_disposition;
    else if (IS("x-amz-storage-class"))
        field = &a->storage_class;
    else if (IS("last-modified")) {
        char tmp[64];
        int64_t ms;
        if (vl < sizeof tmp) {
            memcpy(tmp, v, vl);
            tmp[vl] = '\0';
            if (cfs_parse_http_date(tmp, &ms) == 0)
                a->last_modified_ms = ms;
        }
        return 0;
    } else if (c->meta_prefix && nl > c->prefix_len &&
               strncasecmp(n, c->meta_prefix, c->prefix_len) == 0) {
        /* S3 gives names in lower case (HTTP names are case-insensitive) */
        if (a->n_metadata >= CFS_META_MAX)
            return -2;
        char name[256];
        size_t len = nl - c->prefix_len;
        if (len >= sizeof name)
            return -2;
        for (size_t i = 0; i < len; i++)
            name[i] = (char)tolower((unsigned char)n[c->prefix_len + i]);
        return cfs_object_attrs_add_meta(a, name, len, v, vl) < 0 ? -1 : 0;
    }
#undef IS
    if (field && !*field && cfs_attr_set(field, v, vl) < 0)
        return -1;
    return 0;
}

int cfs_attrs_from_headers(cfs_op *op, const cfs_response *resp, const char *meta_prefix)
{
    cfs_object_attrs *a = &op->attrs;
    cfs_object_attrs_free(a);
    if (resp->headers_truncated) {
        cfs_op_fail(op, CFS_EPROTOCOL, "the response headers exceed %d bytes", CFS_HEAD_HEADERS_MAX);
        return -1;
    }
    if ((resp->etag && cfs_attr_set(&a->etag, resp->etag, strlen(resp->etag)) < 0) ||
        (resp->content_type &&
         cfs_attr_set(&a->content_type, resp->content_type, strlen(resp->content_type)) < 0) ||
        (resp->content_encoding && cfs_attr_set(&a->content_encoding, resp->content_encoding,
                                                strlen(resp->content_encoding)) < 0)) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    attrs_ctx c = { a, meta_prefix, meta_prefix ? strlen(meta_prefix) : 0 };
    int rc = each_header(resp, take_header, &c);
    if (rc == -2) {
        cfs_op_fail(op, CFS_EPROTOCOL,
                    "more than %d user metadata headers, or a name over 255 bytes", CFS_META_MAX);
        return -1;
    }
    if (rc < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    return 0;
}
