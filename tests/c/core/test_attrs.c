// Unit tests of object attributes (csrc/core/attrs.c): the times servers write, copies and
// metadata limits, listing details, and a HEAD's headers read into attributes (bounded).
// sources: csrc/core/attrs.c csrc/core/op.c csrc/core/buf.c
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "core/backend.h"

#define STREQ(a, b) ((a) && (b) && strcmp((a), (b)) == 0)

static void test_times(void)
{
    int64_t ms = 0;
    CHECK(cfs_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &ms) == 0 && ms == 784111777000LL,
          "%lld", (long long)ms);
    CHECK(cfs_parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", &ms) == 0 && ms == 0, "epoch");
    CHECK(cfs_parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT", &ms) == 0 && ms == 1835481599000LL,
          "leap");
    const char *bad_http[] = { "",
                               "Sun, 06 Nov 1994 08:49:37",
                               "Sun, 06 Nov 1994 08:49:37 UTC",
                               "Sun, 06 Xyz 1994 08:49:37 GMT",
                               "Sun, 06 Nov 1994 25:49:37 GMT",
                               "Sun, 06 Nov 1994 08:49:37 GMT trailing",
                               "ebM",
                               "Wed, 31 Dec 1969 23:59:59 GMT", /* before 1970: no time */
                               NULL };
    for (int i = 0; bad_http[i]; i++)
        CHECK(cfs_parse_http_date(bad_http[i], &ms) == -1, "bad http date %s", bad_http[i]);
    CHECK(cfs_parse_http_date(NULL, &ms) == -1, "NULL");
    CHECK(cfs_parse_rfc3339("1994-11-06T08:49:37.000Z", &ms) == 0 && ms == 784111777000LL,
          "rfc3339");
    CHECK(cfs_parse_rfc3339("1994-11-06T08:49:37.5Z", &ms) == 0 && ms == 784111777500LL, "fraction");
    CHECK(cfs_parse_rfc3339("1994-11-06T08:49:37.123456789Z", &ms) == 0 && ms == 784111777123LL,
          "nanos");
    CHECK(cfs_parse_rfc3339("1994-11-06T10:49:37+02:00", &ms) == 0 && ms == 784111777000LL,
          "offset");
    CHECK(cfs_parse_rfc3339("1994-11-06T08:49:37Z", &ms) == 0 && ms == 784111777000LL,
          "no fraction");
    const char *bad[] = { "",
                          "1994-11-06",
                          "1994-11-06T08:49:37",
                          "1994-11-06T08:49:37.Z",
                          "1994-13-06T08:49:37Z",
                          "1994-11-06T08:49:37Zjunk",
                          "1994-11-06T08:49:37+2",
                          "1969-12-31T23:59:59Z",
                          "1970-01-01T00:30:00+01:00",
                          NULL };
    for (int i = 0; bad[i]; i++)
        CHECK(cfs_parse_rfc3339(bad[i], &ms) == -1, "bad rfc3339 %s", bad[i]);
}

static void test_copy_and_limits(void)
{
    cfs_object_attrs a = { .last_modified_ms = -1 }, b = { .last_modified_ms = -1 };
    CHECK(cfs_attr_set(&a.content_type, "text/plain", 10) == 0, "set");
    for (int i = 0; i < CFS_META_MAX; i++) {
        char n[16];
        snprintf(n, sizeof n, "k%d", i);
        CHECK(cfs_object_attrs_add_meta(&a, n, strlen(n), "v", 1) == 0, "add %d", i);
    }
    CHECK(cfs_object_attrs_add_meta(&a, "one", 3, "more", 4) == -1, "bounded at CFS_META_MAX");
    a.last_modified_ms = 5;
    CHECK(cfs_object_attrs_copy(&b, &a) == 0 && STREQ(b.content_type, "text/plain") &&
              b.n_metadata == CFS_META_MAX && STREQ(b.metadata[63].name, "k63") &&
              b.last_modified_ms == 5,
          "copy");
    cfs_object_attrs_free(&a);
    CHECK(a.n_metadata == 0 && a.last_modified_ms == -1 && !a.content_type, "freed");
    CHECK(cfs_object_attrs_copy(&b, &a) == 0 && b.n_metadata == 0 && !b.content_type, "copy over");
    cfs_object_attrs_free(&b);

    cfs_entries e = { 0 };
    CHECK(cfs_entries_set_info(&e, 1, "x", 1) == 0, "no entry: nothing to set");
    CHECK(cfs_entries_add(&e, "a", 1, 3, 0) == 0 && e.items[0].mtime_ms == -1 && !e.items[0].etag,
          "added");
    CHECK(cfs_entries_set_info(&e, 42, "\"abc\"xyz", 5) == 0 && e.items[0].mtime_ms == 42 &&
              STREQ(e.items[0].etag, "\"abc\""),
          "info");
    CHECK(cfs_entries_add(&e, "a", 1, 3, 0) == 0, "again");
    cfs_entries_sort_unique(&e); /* frees the repeat's fields */
    CHECK(e.len == 1, "unique");
    cfs_entries_free(&e);
}

static cfs_response response(const char *headers, int truncated)
{
    cfs_response r;
    memset(&r, 0, sizeof r);
    r.status = 200;
    r.content_length = -1;
    r.headers = headers;
    r.headers_len = strlen(headers);
    r.headers_truncated = truncated;
    return r;
}

static void test_headers(void)
{
    cfs_op *op = cfs_op_new(CFS_OP_HEAD, NULL, "k", 1);
    const char *h = "HTTP/1.1 200 OK\r\n"  /* no colon in a name: skipped */
                    "ETag: \"e1\"\r\n"
                    "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                    "cache-control:   max-age=5  \r\n"
                    "Content-Disposition: inline\r\n"
                    "x-amz-storage-class: GLACIER\r\n"
                    "X-Amz-Meta-Owner: Alice: admin\r\n"
                    "x-amz-meta-run-id: 42\r\n"
                    "x-amz-meta-: empty name is no metadata\r\n"
                    "x-amz-metadata-directive: COPY";  /* no CRLF at the end */
    cfs_response r = response(h, 0);
    r.etag = "\"e1\"";
    r.content_type = "text/csv";
    CHECK(cfs_attrs_from_headers(op, &r, "x-amz-meta-") == 0, "parsed: %s", op->message);
    const cfs_object_attrs *a = &op->attrs;
    CHECK(STREQ(a->etag, "\"e1\"") && STREQ(a->content_type, "text/csv") && !a->content_encoding,
          "common");
    CHECK(STREQ(a->cache_control, "max-age=5") && STREQ(a->content_disposition, "inline") &&
              STREQ(a->storage_class, "GLACIER") && a->last_modified_ms == 784111777000LL,
          "attrs");
    CHECK(a->n_metadata == 2 && STREQ(a->metadata[0].name, "owner") &&
              STREQ(a->metadata[0].value, "Alice: admin") && STREQ(a->metadata[1].name, "run-id") &&
              STREQ(a->metadata[1].value, "42"),
          "metadata %zu", a->n_metadata);

    /* without a prefix (HTTP): no metadata */
    CHECK(cfs_attrs_from_headers(op, &r, NULL) == 0 && op->attrs.n_metadata == 0 &&
              STREQ(op->attrs.storage_class, "GLACIER"),
          "no prefix");

    /* truncated headers: an error, never a partial answer */
    cfs_response t = response("x-amz-meta-a: 1\r\n", 1);
    CHECK(cfs_attrs_from_headers(op, &t, "x-amz-meta-") == -1 && op->status == CFS_EPROTOCOL &&
              op->attrs.n_metadata == 0,
          "truncated");

    /* more metadata headers than CFS_META_MAX: an error */
    size_t cap = (CFS_META_MAX + 2) * 32;
    char *many = malloc(cap), *p = many;
    for (int i = 0; i < CFS_META_MAX + 1; i++)
        p += snprintf(p, cap - (size_t)(p - many), "x-amz-meta-k%d: v\r\n", i);
    cfs_response m = response(many, 0);
    op->status = CFS_OK;
    CHECK(cfs_attrs_from_headers(op, &m, "x-amz-meta-") == -1 && op->status == CFS_EPROTOCOL,
          "too many");
    free(many);

    /* a bad date is no date */
    cfs_response d = response("Last-Modified: yesterday\r\n", 0);
    op->status = CFS_OK;
    CHECK(cfs_attrs_from_headers(op, &d, NULL) == 0 && op->attrs.last_modified_ms == -1, "bad date");
    cfs_op_free(op);
}

int main(void)
{
    test_times();
    test_copy_and_limits();
    test_headers();
    printf("attrs: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
