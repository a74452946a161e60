// Unit tests of the GCS JSON API pieces (csrc/backends/gcs/proto.c) and base64 (csrc/util/base64.c).
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c csrc/util/crc32c.c
// pkg: libcjson libdeflate
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64.h"
#include "util/crc32c.h"
#include "backends/gcs/proto.h"

#include "check.h"

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}
#define STREQ(a, b) streq((a), (b))

static void test_base64(void)
{
    static const struct {
        const char *in, *std, *url;
    } v[] = {
        { "", "", "" },
        { "f", "Zg==", "Zg" },
        { "fo", "Zm8=", "Zm8" },
        { "foo", "Zm9v", "Zm9v" },
        { "foob", "Zm9vYg==", "Zm9vYg" },
        { "fooba", "Zm9vYmE=", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
        { "\xfb\xff\xbf", "+/+/", "-_-_" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cfs_buf a = { 0 }, b = { 0 };
        size_t n = strlen(v[i].in);
        CHECK(cfs_base64_encode(&a, v[i].in, n, 0) == 0 && STREQ(a.data, v[i].std), "std %zu: %s",
              i, a.data);
        CHECK(cfs_base64_encode(&b, v[i].in, n, 1) == 0 && STREQ(b.data, v[i].url), "url %zu: %s",
              i, b.data);
        unsigned char out[16];
        long k = cfs_base64_decode(v[i].std, strlen(v[i].std), out, sizeof out);
        CHECK(k == (long)n && memcmp(out, v[i].in, n) == 0, "decode std %zu", i);
        k = cfs_base64_decode(v[i].url, strlen(v[i].url), out, sizeof out);
        CHECK(k == (long)n && memcmp(out, v[i].in, n) == 0, "decode url %zu", i);
        cfs_buf_free(&a);
        cfs_buf_free(&b);
    }
    unsigned char out[4];
    CHECK(cfs_base64_decode("Zm9vYmFy", 8, out, 4) == -1, "too long for the room");
    CHECK(cfs_base64_decode("Zm9v!", 5, out, 4) == -1, "bad character");
    CHECK(cfs_base64_decode("Z", 1, out, 4) == -1, "one char group");
    CHECK(cfs_base64_decode("Zh==", 4, out, 4) == -1, "non-canonical trailing bits");
}

static void test_urls(void)
{
    char *u =
        cfs_gcs_object_url("http://h:1", "bkt", "p/a b+c%/ü", strlen("p/a b+c%/ü"), "alt=media");
    CHECK(STREQ(u, "http://h:1/storage/v1/b/bkt/o/p%2Fa%20b%2Bc%25%2F%C3%BC?alt=media"),
          "object url %s", u);
    free(u);
    u = cfs_gcs_object_url("http://h:1", "bkt", "k", 1, NULL);
    CHECK(STREQ(u, "http://h:1/storage/v1/b/bkt/o/k"), "object url without query %s", u);
    free(u);
    u = cfs_gcs_list_url("https://e", "b", "root/d ir/", 0, NULL, 1000);
    CHECK(STREQ(u,
                "https://e/storage/v1/b/b/o?prefix=root%2Fd%20ir%2F&delimiter=%2F&maxResults=1000"),
          "list url %s", u);
    free(u);
    u = cfs_gcs_list_url("https://e", "b", "", 1, "tok+/=", 5);
    CHECK(STREQ(u, "https://e/storage/v1/b/b/o?prefix=&pageToken=tok%2B%2F%3D&maxResults=5"),
          "list url %s", u);
    free(u);
    u = cfs_gcs_upload_url("https://e", "b", 1);
    CHECK(STREQ(u, "https://e/upload/storage/v1/b/b/o?uploadType=multipart&ifGenerationMatch=0"),
          "upload %s", u);
    free(u);
}

static void test_hash(void)
{
    cfs_goog_hash h;
    /* "hello world": crc32c yZRlqg==, md5 XrY7u+Ae7tCTyyK7j1rNww== */
    CHECK(cfs_gcs_parse_hash("crc32c=yZRlqg==,md5=XrY7u+Ae7tCTyyK7j1rNww==", &h) == 0, "parse both");
    CHECK(h.has_crc32c && h.crc32c == 0xC99465AAu, "crc %08x", h.crc32c);
    CHECK(h.has_md5 && h.md5[0] == 0x5e && h.md5[15] == 0xc3, "md5");
    CHECK(cfs_gcs_parse_hash("md5=XrY7u+Ae7tCTyyK7j1rNww==, crc32c=yZRlqg==", &h) == 0 &&
              h.has_crc32c && h.has_md5,
          "either order, spaces");
    CHECK(cfs_gcs_parse_hash("crc32c=yZRlqg==", &h) == 0 && h.has_crc32c && !h.has_md5, "crc only");
    CHECK(cfs_gcs_parse_hash("sha1=abc,crc32c=yZRlqg==", &h) == 0 && h.has_crc32c,
          "unknown skipped");
    CHECK(cfs_gcs_parse_hash("crc32c=yZRl", &h) == -1, "short crc");
    CHECK(cfs_gcs_parse_hash("md5=!!", &h) == -1, "bad md5");
    CHECK(cfs_gcs_parse_hash("", &h) == 0 && !h.has_crc32c && !h.has_md5, "empty");
}

static const char PAGE[] =
    "{\"kind\":\"storage#objects\",\"nextPageToken\":\"CgNhYmM=\","
    "\"prefixes\":[\"root/dir/\",\"root/d\\u00fc/\"],"
    "\"items\":[{\"name\":\"root/a\",\"size\":\"12\"},{\"name\":\"root/b \\\"q\\\"\",\"size\":7},"
    "{\"name\":\"root/folder/\",\"size\":\"0\"},{\"name\":\"root/\",\"size\":\"0\"}]}";

static void test_list(void)
{
    cfs_entries e = { 0 };
    char *next = NULL, err[128];
    int oom;
    CHECK(cfs_gcs_parse_list(PAGE, strlen(PAGE), "root/", &e, &next, &oom, err, sizeof err) == 0,
          "%s", err);
    CHECK(STREQ(next, "CgNhYmM="), "next %s", next);
    CHECK(e.len == 4, "entries %zu", e.len);
    if (e.len == 4) {
        CHECK(STREQ(e.items[0].name, "a") && e.items[0].size == 12 && !e.items[0].is_dir, "a");
        CHECK(STREQ(e.items[1].name, "b \"q\"") && e.items[1].size == 7, "b: %s", e.items[1].name);
        CHECK(STREQ(e.items[2].name, "dir") && e.items[2].is_dir, "dir");
        CHECK(STREQ(e.items[3].name, "d\xc3\xbc") && e.items[3].is_dir, "dü");
    }
    free(next);
    cfs_entries_free(&e);

    const char *last = "{\"kind\":\"storage#objects\"}";
    CHECK(cfs_gcs_parse_list(last, strlen(last), "", &e, &next, &oom, err, sizeof err) == 0 &&
              next == NULL && e.len == 0,
          "empty last page");
    const char *bad[] = {
        "[]",
        "{\"items\":{}}",
        "{\"items\":[{\"size\":\"1\"}]}",
        "{\"items\":[{\"name\":\"x/a\"}]}",
        "{\"items\":[{\"name\":\"root/a\",\"size\":\"-1\"}]}",
        "{\"prefixes\":[1]}",
        "not json",
        "{\"nextPageToken\":5}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(cfs_gcs_parse_list(bad[i], strlen(bad[i]), "root/", &e, &next, &oom, err,
                                 sizeof err) == -1 &&
                  !oom && next == NULL,
              "bad page %zu accepted", i);
        cfs_entries_free(&e);
    }
    CHECK(cfs_gcs_parse_list(NULL, 0, "", &e, &next, &oom, err, sizeof err) == -1, "no body");
}

static void test_object_and_errors(void)
{
    int64_t size = 0;
    cfs_goog_hash h;
    const char *obj = "{\"name\":\"k\",\"size\":\"1234567890123\",\"crc32c\":\"yZRlqg==\"}";
    CHECK(cfs_gcs_parse_object(obj, strlen(obj), &size, &h) == 0 && size == 1234567890123LL &&
              h.has_crc32c && h.crc32c == 0xC99465AAu,
          "object");
    CHECK(cfs_gcs_parse_object("{\"size\":\"x\"}", 12, &size, &h) == -1, "bad size");
    CHECK(cfs_gcs_parse_object("{}", 2, &size, &h) == -1, "no size");

    cfs_object_attrs a = { .last_modified_ms = -1 };
    const char *res =
        "{\"size\":\"3\",\"etag\":\"CJ+h\",\"updated\":\"2024-01-02T03:04:05.678Z\","
        "\"contentType\":\"text/csv\",\"contentEncoding\":\"gzip\",\"cacheControl\":\"no-cache\","
        "\"storageClass\":\"NEARLINE\",\"metadata\":{\"Owner\":\"alice\",\"n\":null}}";
    CHECK(cfs_gcs_parse_object_attrs(res, strlen(res), &a) == 0 && STREQ(a.etag, "CJ+h") &&
              STREQ(a.content_type, "text/csv") && STREQ(a.content_encoding, "gzip") &&
              STREQ(a.cache_control, "no-cache") && STREQ(a.storage_class, "NEARLINE") &&
              !a.content_disposition && a.last_modified_ms == 1704164645678LL &&
              a.n_metadata == 2 && STREQ(a.metadata[0].name, "Owner") &&
              STREQ(a.metadata[0].value, "alice") && STREQ(a.metadata[1].value, ""),
          "object attrs");
    const char *bad_attrs[] = { "[]", "{\"contentType\":5}", "{\"metadata\":[1]}",
                                "{\"metadata\":{\"a\":1}}", NULL };
    for (int i = 0; bad_attrs[i]; i++)
        CHECK(cfs_gcs_parse_object_attrs(bad_attrs[i], strlen(bad_attrs[i]), &a) == -1 &&
                  a.n_metadata == 0 && !a.content_type,
              "bad attrs %s", bad_attrs[i]);
    cfs_buf many = { 0 };
    cfs_buf_append_str(&many, "{\"metadata\":{");
    for (int i = 0; i <= CFS_META_MAX; i++) {
        char kv[32];
        snprintf(kv, sizeof kv, "%s\"k%d\":\"v\"", i ? "," : "", i);
        cfs_buf_append_str(&many, kv);
    }
    cfs_buf_append_str(&many, "}}");
    CHECK(cfs_gcs_parse_object_attrs(many.data, many.len, &a) == -1,
          "more metadata than CFS_META_MAX");
    cfs_buf_free(&many);
    cfs_object_attrs_free(&a);

    /* what an upload stores: the attributes in its JSON, the type on the media part */
    cfs_object_attrs w = { .last_modified_ms = -1 };
    cfs_attr_set(&w.content_type, "text/csv", 8);
    cfs_attr_set(&w.storage_class, "COLDLINE", 8);
    cfs_object_attrs_add_meta(&w, "run", 3, "7", 1);
    cfs_buf up = { 0 };
    char bnd[64];
    CHECK(cfs_gcs_multipart_body(&up, bnd, "k", 1, "1,2", 3, 7, &w) == 0 &&
              cfs_buf_terminate(&up) == 0 && strstr(up.data, "\"contentType\":\"text/csv\"") &&
              strstr(up.data, "\"storageClass\":\"COLDLINE\"") &&
              strstr(up.data, "\"metadata\":{\"run\":\"7\"}") &&
              strstr(up.data, "\r\nContent-Type: text/csv\r\n\r\n1,2"),
          "upload attrs: %s", up.data ? up.data : "");
    cfs_buf_free(&up);
    cfs_object_attrs_free(&w);

    char msg[64];
    const char *e1 =
        "{\"error\":{\"code\":403,\"message\":\"a@b does not have\\nstorage.objects.get access\"}}";
    cfs_gcs_error_message(e1, strlen(e1), msg, sizeof msg);
    CHECK(STREQ(msg, "a@b does not have storage.objects.get access"), "%s", msg);
    const char *e2 =
        "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}";
    cfs_gcs_error_message(e2, strlen(e2), msg, sizeof msg);
    CHECK(STREQ(msg, "invalid_grant: Invalid JWT Signature."), "%s", msg);
    cfs_gcs_error_message("Service Unavailable\r\n", 21, msg, sizeof msg);
    CHECK(STREQ(msg, "Service Unavailable"), "%s", msg);
    cfs_gcs_error_message(NULL, 0, msg, sizeof msg);
    CHECK(msg[0] == '\0', "empty");
    char tiny[8];
    cfs_gcs_error_message(e1, strlen(e1), tiny, sizeof tiny);
    CHECK(strlen(tiny) == 7, "truncated to the room: %s", tiny);
}

static void test_multipart(void)
{
    const char data[] = "payload\r\n--with a dash line";
    uint32_t crc = cfs_crc32c(0, data, sizeof data - 1);
    cfs_buf b = { 0 };
    char boundary[64];
    CHECK(cfs_gcs_multipart_body(&b, boundary, "p/k\"ey", 6, data, sizeof data - 1, crc, NULL) == 0,
          "built");
    CHECK(cfs_buf_terminate(&b) == 0, "terminate");
    char expect_head[256];
    snprintf(expect_head, sizeof expect_head,
             "--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
             "{\"name\":\"p/k\\\"ey\",\"crc32c\":",
             boundary);
    CHECK(b.data && strncmp(b.data, expect_head, strlen(expect_head)) == 0, "head: %s", b.data);
    char tail[128];
    snprintf(tail, sizeof tail, "\r\n\r\n%s\r\n--%s--\r\n", data, boundary);
    CHECK(b.len > strlen(tail) && strcmp(b.data + b.len - strlen(tail), tail) == 0, "tail");
    CHECK(strstr(data, boundary) == NULL, "boundary not in data");
    cfs_buf_free(&b);

    /* data that holds the first boundary candidate gets another one */
    char first[64];
    CHECK(cfs_gcs_multipart_body(&b, first, "k", 1, "", 0, 7, NULL) == 0, "empty body");
    cfs_buf_free(&b);
    char tricky[128];
    snprintf(tricky, sizeof tricky, "xx%syy", first);
    CHECK(cfs_gcs_multipart_body(&b, boundary, "k", 1, tricky, strlen(tricky), 7, NULL) == 0,
          "tricky");
    CHECK(!STREQ(boundary, first), "boundary changed: %s", boundary);
    cfs_buf_free(&b);
}

static void test_resumable(void)
{
    char *u = cfs_gcs_resumable_url("http://h:1", "b", "p/a b+/ü", strlen("p/a b+/ü"), 0);
    CHECK(
        STREQ(u,
              "http://h:1/upload/storage/v1/b/b/o?uploadType=resumable&name=p%2Fa%20b%2B%2F%C3%BC"),
        "resumable url: %s", u);
    free(u);
    u = cfs_gcs_resumable_url("https://e", "b", "k", 1, 1);
    CHECK(STREQ(u,
                "https://e/upload/storage/v1/b/b/o?uploadType=resumable&name=k&ifGenerationMatch=0"),
          "conditional: %s", u);
    free(u);

    cfs_buf m = { 0 };
    CHECK(cfs_gcs_upload_metadata(&m, "d/\"q\"", 5, 0xE3069283u, NULL) == 0 &&
              cfs_buf_terminate(&m) == 0,
          "metadata");
    CHECK(m.data && strstr(m.data, "\"name\":\"d/\\\"q\\\"\"") &&
              strstr(m.data, "\"crc32c\":\"4waSgw==\"") &&
              strstr(m.data, "\"contentType\":\"application/octet-stream\""),
          "metadata: %s", m.data);
    cfs_buf_free(&m);

    int64_t have = -5;
    CHECK(cfs_gcs_parse_upload_range(NULL, &have) == 0 && have == 0, "no Range: nothing held");
    CHECK(cfs_gcs_parse_upload_range("bytes=0-0", &have) == 0 && have == 1, "one byte: %lld",
          (long long)have);
    CHECK(cfs_gcs_parse_upload_range("bytes=0-262143", &have) == 0 && have == 262144, "%lld",
          (long long)have);
    CHECK(cfs_gcs_parse_upload_range(" bytes=0-8388607 ", &have) == 0 && have == 8388608, "spaces");
    CHECK(cfs_gcs_parse_upload_range("bytes=0-9223372036854775806", &have) == 0 && have == INT64_MAX,
          "largest");
    static const char *const bad[] = {
        "",
        "bytes=",
        "bytes=0-",
        "bytes=1-5",
        "bytes=0-x",
        "bytes=0--1",
        "bytes=0-5,7-9",
        "bytes 0-5",
        "bytes=0-9223372036854775807",
        "bytes=0-99999999999999999999",
        "items=0-5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(cfs_gcs_parse_upload_range(bad[i], &have) == -1, "malformed accepted: %s", bad[i]);

    char cr[64];
    cfs_gcs_content_range(cr, sizeof cr, 0, 262144, 20971525);
    CHECK(STREQ(cr, "bytes 0-262143/20971525"), "%s", cr);
    cfs_gcs_content_range(cr, sizeof cr, 20971520, 5, 20971525);
    CHECK(STREQ(cr, "bytes 20971520-20971524/20971525"), "%s", cr);
    cfs_gcs_content_range(cr, sizeof cr, 7, 0, 20971525);
    CHECK(STREQ(cr, "bytes */20971525"), "query: %s", cr);
}

typedef struct seen_parts {
    int n;
    long id[8], status[8];
    char body[8][128];
} seen_parts;

static int note_part(void *ctx, long id, long status, const char *body, size_t len)
{
    seen_parts *sp = ctx;
    if (sp->n >= 8)
        return 7;
    sp->id[sp->n] = id;
    sp->status[sp->n] = status;
    snprintf(sp->body[sp->n], sizeof sp->body[0], "%.*s", (int)len, body);
    sp->n++;
    return 0;
}

static void test_batch(void)
{
    const char *names[] = { "p/a b", "p/ü=?" };
    size_t lens[] = { 5, strlen("p/ü=?") };
    size_t ids[] = { 3, 17 };
    cfs_buf b = { 0 };
    CHECK(cfs_gcs_batch_delete_body(&b, "bk", names, lens, ids, 2) == 0 &&
              cfs_buf_terminate(&b) == 0,
          "batch body");
    const char *want =
        "--==cfs-batch==\r\nContent-Type: application/http\r\nContent-ID: <3>\r\n\r\n"
        "DELETE /storage/v1/b/bk/o/p%2Fa%20b HTTP/1.1\r\n\r\n\r\n"
        "--==cfs-batch==\r\nContent-Type: application/http\r\nContent-ID: <17>\r\n\r\n"
        "DELETE /storage/v1/b/bk/o/p%2F%C3%BC%3D%3F HTTP/1.1\r\n\r\n\r\n"
        "--==cfs-batch==--\r\n";
    CHECK(STREQ(b.data, want), "batch body:\n%s", b.data);
    cfs_buf_free(&b);

    /* as fake-gcs-server answers (CRLF, Content-Id <response-N>) */
    const char *r1 =
        "--B1\r\nContent-Id: <response-3>\r\nContent-Type: application/http\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n\r\n"
        "--B1\r\nContent-Type: application/http\r\nContent-ID: <response-17>\r\n\r\n"
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n"
        "{\"error\":{\"code\":404,\"message\":\"Not Found\"}}\r\n\r\n"
        "--B1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n\r\n" /* no id: skipped */
        "--B1\r\nContent-ID: <response-4>\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n\r\nbusy\r\n"
        "--B1--\r\n";
    seen_parts sp = { 0 };
    char err[160] = "";
    int rc = cfs_gcs_parse_batch("multipart/mixed; boundary=B1", r1, strlen(r1), note_part, &sp,
                                 err, sizeof err);
    CHECK(rc == 0 && sp.n == 3, "parse: rc %d, %d parts, %s", rc, sp.n, err);
    CHECK(sp.id[0] == 3 && sp.status[0] == 204 && STREQ(sp.body[0], ""), "part 0: %ld %ld '%s'",
          sp.id[0], sp.status[0], sp.body[0]);
    CHECK(sp.id[1] == 17 && sp.status[1] == 404 &&
              STREQ(sp.body[1], "{\"error\":{\"code\":404,\"message\":\"Not Found\"}}\r\n"),
          "part 1: '%s'", sp.body[1]);
    CHECK(sp.id[2] == 4 && sp.status[2] == 503 && STREQ(sp.body[2], "busy"), "part 2: '%s'",
          sp.body[2]);

    /* a quoted boundary, LF line ends, a preamble, <N> ids */
    const char *r2 =
        "preamble\n--\"odd\n--x\"\nContent-ID: <2>\n\nHTTP/1.1 403 Forbidden\n\n{\"error\":{\"message\":\"no\"}}\n--x--";
    memset(&sp, 0, sizeof sp);
    rc = cfs_gcs_parse_batch("multipart/mixed; boundary=\"x\"", r2, strlen(r2), note_part, &sp, err,
                             sizeof err);
    CHECK(rc == 0 && sp.n == 1 && sp.id[0] == 2 && sp.status[0] == 403 &&
              STREQ(sp.body[0], "{\"error\":{\"message\":\"no\"}}"),
          "quoted: rc %d n %d id %ld status %ld '%s' %s", rc, sp.n, sp.id[0], sp.status[0],
          sp.body[0], err);

    /* the callback stops the parse */
    memset(&sp, 0, sizeof sp);
    sp.n = 8;
    CHECK(cfs_gcs_parse_batch("multipart/mixed; boundary=B1", r1, strlen(r1), note_part, &sp, err,
                              sizeof err) == 7,
          "callback value returned");

    static const struct {
        const char *ct, *body;
    } bad[] = {
        { "multipart/mixed", "--B1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n--B1--" }, /* no boundary */
        { "multipart/mixed; boundary=B1", "" }, /* no parts */
        { "multipart/mixed; boundary=B1", "--B1--\r\n" }, /* no parts */
        { "multipart/mixed; boundary=B1", "--B1\r\nContent-ID: <1>\r\n\r\nnot http\r\n--B1--" },
        { "multipart/mixed; boundary=B1",
          "--B1\r\nContent-ID: <1>\r\n\r\nHTTP/1.1 2x0 OK\r\n--B1--" },
        { "multipart/mixed; boundary=B1", "--B1\r\nContent-ID: <1>\r\n" }, /* truncated */
        { "multipart/mixed; boundary=\"B1", "--B1\r\n" }, /* unclosed quote */
        { NULL, "--B1\r\n" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&sp, 0, sizeof sp);
        CHECK(cfs_gcs_parse_batch(bad[i].ct, bad[i].body, strlen(bad[i].body), note_part, &sp, err,
                                  sizeof err) == -1,
              "malformed batch %zu accepted", i);
    }
}

int main(void)
{
    test_batch();
    test_resumable();
    test_base64();
    test_urls();
    test_hash();
    test_list();
    test_object_and_errors();
    test_multipart();
    printf("gcs_proto: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
