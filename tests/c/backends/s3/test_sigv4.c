// Unit tests of the SigV4 signer: every aws-c-auth vector (header and query signing), the
// AWS S3 documentation example, the URI encoder, and the signer's input checks.
// sources: csrc/backends/s3/sigv4.c csrc/core/buf.c
// pkg: libcrypto libcjson
// args: tests/data/aws-sigv4
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backends/s3/sigv4.h"

#include "check.h"

static void check_str(const char *what, const char *got, const char *want)
{
    checks++;
    if (!got || !want || strcmp(got, want) != 0) {
        failures++;
        fprintf(stderr, "FAIL %s\n--- got:\n%s\n--- want:\n%s\n---\n", what, got ? got : "(null)",
                want ? want : "(null)");
    }
}

/* Read a whole file; NULL if it cannot be read (a missing optional file). */
static char *read_file(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    if (!s) {
        fclose(f);
        return NULL;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *t = realloc(s, cap * 2);
            if (!t) {
                free(s);
                fclose(f);
                return NULL;
            }
            s = t;
            cap *= 2;
        }
        size_t r = fread(s + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into a new string. */
static char *pct_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1), *p = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *p++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            *p++ = s[i];
        }
    }
    *p = '\0';
    return o;
}

#define MAXH 32

typedef struct parsed_request {
    char *method;
    char *target;         /* path?query as in the request line */
    char *path;           /* raw path */
    char *query_raw;      /* NULL if none */
    cfs_sigv4_pair query[MAXH];
    size_t n_query;
    cfs_sigv4_pair headers[MAXH];
    size_t n_headers;
    const char *body;
    size_t body_len;
} parsed_request;

static char *dupn(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (!o) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memcpy(o, s, n);
    o[n] = '\0';
    return o;
}

static void free_request(parsed_request *r)
{
    free(r->method);
    free(r->target);
    free(r->path);
    free(r->query_raw);
    for (size_t i = 0; i < r->n_query; i++) {
        free((char *)r->query[i].name);
        free((char *)r->query[i].value);
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        free((char *)r->headers[i].name);
        free((char *)r->headers[i].value);
    }
}

/* Parse request.txt: request line, headers (with obsolete line folding), body. */
static int parse_request(char *text, size_t len, parsed_request *r)
{
    memset(r, 0, sizeof *r);
    char *end = text + len;
    char *eol = memchr(text, '\n', len);
    if (!eol)
        eol = end;
    char *sp1 = memchr(text, ' ', (size_t)(eol - text));
    char *sp2 = NULL;
    for (char *p = eol - 1; p > text; p--)
        if (*p == ' ') {
            sp2 = p;
            break;
        }
    if (!sp1 || !sp2 || sp2 <= sp1)
        return -1;
    r->method = dupn(text, (size_t)(sp1 - text));
    r->target = dupn(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    char *q = strchr(r->target, '?');
    r->path = dupn(r->target, q ? (size_t)(q - r->target) : strlen(r->target));
    if (q) {
        r->query_raw = dupn(q + 1, strlen(q + 1));
        char *s = q + 1;
        while (*s) {
            char *amp = strchr(s, '&');
            size_t n = amp ? (size_t)(amp - s) : strlen(s);
            char *eq = memchr(s, '=', n);
            if (r->n_query >= MAXH)
                return -1;
            size_t nl = eq ? (size_t)(eq - s) : n;
            r->query[r->n_query].name = pct_decode(s, nl);
            r->query[r->n_query].value = eq ? pct_decode(eq + 1, n - nl - 1) : dupn("", 0);
            r->n_query++;
            s += n;
            if (*s == '&')
                s++;
        }
    }
    char *line = eol < end ? eol + 1 : end;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *le = nl ? nl : end;
        if (le == line) { /* blank line: the body follows */
            r->body = le + 1 <= end ? le + 1 : end;
            r->body_len = (size_t)(end - r->body);
            if (nl == NULL)
                r->body_len = 0;
            break;
        }
        if ((*line == ' ' || *line == '\t') && r->n_headers) {
            /* obs-fold: the continuation joins the previous value with a space */
            cfs_sigv4_pair *h = &r->headers[r->n_headers - 1];
            size_t ol = strlen(h->value), al = (size_t)(le - line);
            char *v = malloc(ol + al + 2);
            if (!v)
                return -1;
            memcpy(v, h->value, ol);
            v[ol] = ' ';
            memcpy(v + ol + 1, line, al);
            v[ol + 1 + al] = '\0';
            free((char *)h->value);
            h->value = v;
        } else {
            char *colon = memchr(line, ':', (size_t)(le - line));
            if (!colon || r->n_headers >= MAXH)
                return -1;
            r->headers[r->n_headers].name = dupn(line, (size_t)(colon - line));
            r->headers[r->n_headers].value = dupn(colon + 1, (size_t)(le - colon - 1));
            r->n_headers++;
        }
        line = nl ? nl + 1 : end;
    }
    return 0;
}

/* The value of header `name` in a signed-request file (first match), copied. */
static char *find_header_line(const char *text, const char *name)
{
    size_t nl = strlen(name);
    const char *p = text;
    while (p && *p) {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *e = strchr(p, '\n');
            return dupn(p + nl + 1, e ? (size_t)(e - p - nl - 1) : strlen(p + nl + 1));
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

static int64_t parse_timestamp(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static const char *json_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_bool(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsTrue(v);
}

static void run_vector(const char *root, const char *name)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    size_t req_len = 0;
    char *ctx_text = read_file(dir, "context.json", NULL);
    char *req_text = read_file(dir, "request.txt", &req_len);
    CHECK(ctx_text && req_text, "%s: context.json or request.txt missing", name);
    if (!ctx_text || !req_text) {
        free(ctx_text);
        free(req_text);
        return;
    }
    cJSON *ctx = cJSON_Parse(ctx_text);
    CHECK(ctx != NULL, "%s: bad context.json", name);
    parsed_request r;
    int prc = parse_request(req_text, req_len, &r);
    CHECK(prc == 0, "%s: cannot parse request.txt", name);
    if (!ctx || prc != 0) {
        cJSON_Delete(ctx);
        free_request(&r);
        free(ctx_text);
        free(req_text);
        return;
    }
    const cJSON *cred = cJSON_GetObjectItemCaseSensitive(ctx, "credentials");
    char body_hash[CFS_SHA256_HEX_LEN + 1];
    CHECK(cfs_sha256_hex(r.body ? r.body : "", r.body_len, body_hash) == 0, "sha256");
    cfs_sigv4_input in = {
        .method = r.method,
        .path = r.path,
        .path_mode = json_bool(ctx, "normalize") ? CFS_SIGV4_PATH_NORMALIZE : CFS_SIGV4_PATH_S3,
        .query = r.query,
        .n_query = r.n_query,
        .headers = r.headers,
        .n_headers = r.n_headers,
        .payload_hash = body_hash,
        .content_sha256_header = json_bool(ctx, "sign_body"),
        .time = parse_timestamp(json_str(ctx, "timestamp")),
        .region = json_str(ctx, "region"),
        .service = json_str(ctx, "service"),
        .access_key_id = json_str(cred, "access_key_id"),
        .secret_access_key = json_str(cred, "secret_access_key"),
        .session_token = json_str(cred, "token"),
        .omit_session_token = json_bool(ctx, "omit_session_token"),
    };
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(ctx, "expiration_in_seconds");

    for (int mode = 0; mode < 2; mode++) {
        const char *pre = mode == 0 ? "header" : "query";
        char fname[64], what[512];
        snprintf(fname, sizeof fname, "%s-canonical-request.txt", pre);
        char *want_creq = read_file(dir, fname, NULL);
        snprintf(fname, sizeof fname, "%s-string-to-sign.txt", pre);
        char *want_sts = read_file(dir, fname, NULL);
        snprintf(fname, sizeof fname, "%s-signature.txt", pre);
        char *want_sig = read_file(dir, fname, NULL);
        snprintf(fname, sizeof fname, "%s-signed-request.txt", pre);
        char *want_signed = read_file(dir, fname, NULL);
        CHECK(want_creq && want_sts && want_sig && want_signed, "%s: %s files missing", name, pre);
        if (want_creq && want_sts && want_sig && want_signed) {
            cfs_sigv4_output out;
            char err[256] = "";
            in.expires = mode == 0 ? 0 : (long)(cJSON_IsNumber(exp) ? exp->valuedouble : 3600);
            int rc = cfs_sigv4_sign(&in, &out, err, sizeof err);
            CHECK(rc == 0, "%s/%s: sign failed: %s", name, pre, err);
            if (rc == 0) {
                snprintf(what, sizeof what, "%s/%s canonical request", name, pre);
                check_str(what, out.canonical_request, want_creq);
                snprintf(what, sizeof what, "%s/%s string to sign", name, pre);
                check_str(what, out.string_to_sign, want_sts);
                snprintf(what, sizeof what, "%s/%s signature", name, pre);
                check_str(what, out.signature, want_sig);
                if (mode == 0) {
                    char *auth = find_header_line(want_signed, "Authorization");
                    snprintf(what, sizeof what, "%s/header Authorization", name);
                    check_str(what, out.authorization, auth);
                    free(auth);
                    CHECK(out.presigned_query == NULL, "%s: presigned query in header mode", name);
                    /* Every extra header the signer asks for is in the signed request. */
                    for (size_t i = 0; i < out.n_extra_headers; i++) {
                        const char *line = out.extra_headers[i];
                        const char *colon = strchr(line, ':');
                        char *hname = dupn(line, (size_t)(colon - line));
                        char *v = find_header_line(want_signed, hname);
                        snprintf(what, sizeof what, "%s/header extra header %s", name, hname);
                        check_str(what, colon + 2, v);
                        free(v);
                        free(hname);
                    }
                } else {
                    /* Request line: the original target, then the presigned parameters. */
                    char *got_line = NULL;
                    if (asprintf(&got_line, "%s %s%s%s HTTP/1.1", r.method, r.target,
                                 r.query_raw ? "&" : "?", out.presigned_query) < 0)
                        got_line = NULL;
                    const char *e = strchr(want_signed, '\n');
                    char *want_line =
                        dupn(want_signed, e ? (size_t)(e - want_signed) : strlen(want_signed));
                    snprintf(what, sizeof what, "%s/query signed request line", name);
                    check_str(what, got_line, want_line);
                    free(got_line);
                    free(want_line);
                    CHECK(out.authorization == NULL && out.n_extra_headers == 0,
                          "%s: headers in query mode", name);
                }
            }
            cfs_sigv4_output_free(&out);
        }
        free(want_creq);
        free(want_sts);
        free(want_sig);
        free(want_signed);
    }
    cJSON_Delete(ctx);
    free_request(&r);
    free(ctx_text);
    free(req_text);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_vectors(const char *root)
{
    DIR *d = opendir(root);
    if (!d) {
        fprintf(stderr, "FAIL cannot open vectors directory %s\n", root);
        failures++;
        return 0;
    }
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        if (e->d_name[0] == '.')
            continue;
        char probe[4096];
        snprintf(probe, sizeof probe, "%s/%s/context.json", root, e->d_name);
        FILE *f = fopen(probe, "rb");
        if (!f)
            continue;
        fclose(f);
        names[n++] = dupn(e->d_name, strlen(e->d_name));
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);
    for (size_t i = 0; i < n; i++) {
        run_vector(root, names[i]);
        free(names[i]);
    }
    return (int)n;
}

/* The GET example of the S3 SigV4 documentation ("Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk"). */
static void test_s3_doc_example(void)
{
    cfs_sigv4_pair headers[] = {
        { "Host", "examplebucket.s3.amazonaws.com" },
        { "Range", "bytes=0-9" },
    };
    cfs_sigv4_input in = {
        .method = "GET",
        .path = "/test.txt",
        .path_mode = CFS_SIGV4_PATH_S3,
        .headers = headers,
        .n_headers = 2,
        .payload_hash = CFS_SIGV4_EMPTY_SHA256,
        .content_sha256_header = 1,
        .time = 1369353600, /* 20130524T000000Z */
        .region = "us-east-1",
        .service = "s3",
        .access_key_id = "AKIAIOSFODNN7EXAMPLE",
        .secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    };
    cfs_sigv4_output out;
    char err[256] = "";
    CHECK(cfs_sigv4_sign(&in, &out, err, sizeof err) == 0, "s3 doc example: %s", err);
    check_str(
        "s3 doc example canonical request", out.canonical_request,
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_str("s3 doc example signature", out.signature,
              "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    check_str("s3 doc example authorization", out.authorization,
              "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK(out.n_extra_headers == 2, "extra headers: %zu", out.n_extra_headers);
    if (out.n_extra_headers == 2) {
        check_str("extra 0", out.extra_headers[0], "X-Amz-Date: 20130524T000000Z");
        check_str(
            "extra 1", out.extra_headers[1],
            "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    /* A precomputed signing key gives the same signature. */
    unsigned char key[CFS_SHA256_LEN];
    CHECK(cfs_sigv4_derive_key(in.secret_access_key, "20130524", "us-east-1", "s3", key) == 0,
          "derive");
    cfs_sigv4_input in2 = in;
    in2.secret_access_key = NULL;
    in2.signing_key = key;
    cfs_sigv4_output out2;
    CHECK(cfs_sigv4_sign(&in2, &out2, err, sizeof err) == 0, "with key: %s", err);
    check_str("signing key signature", out2.signature, out.signature);
    cfs_sigv4_output_free(&out);
    cfs_sigv4_output_free(&out2);
}

static void check_encode(const char *in, int keep_slash, const char *want)
{
    char *got = cfs_aws_uri_encode_dup(in, strlen(in), keep_slash);
    char what[256];
    snprintf(what, sizeof what, "uri encode '%s' keep_slash=%d", in, keep_slash);
    check_str(what, got, want);
    free(got);
}

static void test_uri_encode(void)
{
    check_encode("", 0, "");
    check_encode("AZaz09-_.~", 0, "AZaz09-_.~");
    check_encode("a b+c!d:e*f%g~h/i", 1, "a%20b%2Bc%21d%3Ae%2Af%25g~h/i");
    check_encode("a b+c!d:e*f%g~h/i", 0, "a%20b%2Bc%21d%3Ae%2Af%25g~h%2Fi");
    check_encode("\xe1\x88\xb4", 0, "%E1%88%B4");
    check_encode("=&?#[]@$',;()", 0, "%3D%26%3F%23%5B%5D%40%24%27%2C%3B%28%29");
    /* Every byte value. */
    char all[256];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    char *enc = cfs_aws_uri_encode_dup(all, 255, 0);
    CHECK(enc != NULL, "encode all");
    if (enc) {
        size_t unreserved = 26 * 2 + 10 + 4;
        CHECK(strlen(enc) == unreserved + (255 - unreserved) * 3, "encoded length %zu", strlen(enc));
        for (const char *p = enc; *p; p++)
            CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%", *p),
                  "unexpected byte %02x", (unsigned char)*p);
    }
    free(enc);
    /* Embedded NUL is encoded too (length-based). */
    char *z = cfs_aws_uri_encode_dup("a\0b", 3, 0);
    check_str("encode NUL", z, "a%00b");
    free(z);
}

static void sign_path(const char *path, cfs_sigv4_path_mode mode, const char *want)
{
    cfs_sigv4_pair h[] = { { "host", "h" } };
    cfs_sigv4_input in = { .method = "GET",
                           .path = path,
                           .path_mode = mode,
                           .headers = h,
                           .n_headers = 1,
                           .time = 0,
                           .region = "r",
                           .service = "s",
                           .access_key_id = "AK",
                           .secret_access_key = "SK" };
    cfs_sigv4_output out;
    char err[256] = "", what[256];
    int rc = cfs_sigv4_sign(&in, &out, err, sizeof err);
    CHECK(rc == 0, "sign path %s: %s", path, err);
    snprintf(what, sizeof what, "canonical path of '%s' mode %d", path, (int)mode);
    check_str(what, out.canonical_path, want);
    cfs_sigv4_output_free(&out);
}

static void test_paths(void)
{
    sign_path("", CFS_SIGV4_PATH_S3, "/");
    sign_path("/", CFS_SIGV4_PATH_S3, "/");
    sign_path("/bucket/a//b/../c/./d e", CFS_SIGV4_PATH_S3, "/bucket/a//b/../c/./d%20e");
    sign_path("/bucket/k+!:*%~\xc3\xa9", CFS_SIGV4_PATH_S3, "/bucket/k%2B%21%3A%2A%25~%C3%A9");
    sign_path("/a%20b/c", CFS_SIGV4_PATH_ENCODED, "/a%20b/c");
    sign_path("/a/b/..", CFS_SIGV4_PATH_NORMALIZE, "/a/");
    sign_path("/a/b/.", CFS_SIGV4_PATH_NORMALIZE, "/a/b/");
    sign_path("/../..", CFS_SIGV4_PATH_NORMALIZE, "/");
    sign_path("/a//b", CFS_SIGV4_PATH_NORMALIZE, "/a/b");
    sign_path("/a b/", CFS_SIGV4_PATH_NORMALIZE, "/a%20b/");
}

static void expect_error(const char *what, const cfs_sigv4_input *in)
{
    cfs_sigv4_output out;
    char err[256] = "";
    int rc = cfs_sigv4_sign(in, &out, err, sizeof err);
    CHECK(rc == -1, "%s: expected an error", what);
    CHECK(rc == 0 || err[0] != '\0', "%s: no message", what);
    CHECK(rc == 0 || (out.canonical_request == NULL && out.authorization == NULL),
          "%s: output not cleared", what);
    cfs_sigv4_output_free(&out);
}

static void test_errors(void)
{
    cfs_sigv4_pair host[] = { { "Host", "h" } };
    cfs_sigv4_input base = { .method = "GET",
                             .path = "/",
                             .path_mode = CFS_SIGV4_PATH_S3,
                             .headers = host,
                             .n_headers = 1,
                             .time = 0,
                             .region = "r",
                             .service = "s",
                             .access_key_id = "AK",
                             .secret_access_key = "SK" };
    cfs_sigv4_input in = base;
    in.n_headers = 0;
    expect_error("no host", &in);
    cfs_sigv4_pair bad_name[] = { { "Host", "h" }, { "Bad Name", "v" } };
    in = base;
    in.headers = bad_name;
    in.n_headers = 2;
    expect_error("header name with space", &in);
    cfs_sigv4_pair crlf[] = { { "Host", "h" }, { "X-A", "v\r\nX-Injected: 1" } };
    in.headers = crlf;
    expect_error("header value with CRLF", &in);
    cfs_sigv4_pair reserved[] = { { "Host", "h" }, { "X-Amz-Date", "20150830T123600Z" } };
    in.headers = reserved;
    expect_error("x-amz-date given by the caller", &in);
    in = base;
    in.secret_access_key = "";
    expect_error("empty secret", &in);
    in = base;
    in.access_key_id = NULL;
    expect_error("no access key", &in);
    in = base;
    in.method = "get";
    expect_error("lowercase method", &in);
    in = base;
    in.region = "us east";
    expect_error("bad region", &in);
    in = base;
    in.path = "relative";
    expect_error("relative path", &in);
    in = base;
    in.path = "/a b";
    in.path_mode = CFS_SIGV4_PATH_ENCODED;
    expect_error("unencoded byte in an encoded path", &in);
    in = base;
    in.payload_hash = "abc def";
    expect_error("bad payload hash", &in);
    in = base;
    in.time = (int64_t)1 << 60;
    expect_error("time out of range", &in);

    /* Header values are trimmed and repeated names joined; query values sorted. */
    cfs_sigv4_pair hs[] = {
        { "Host", "h" }, { "X-B", "  two   words  " }, { "x-a", "1" }, { "X-A", "0" }
    };
    cfs_sigv4_pair qs[] = {
        { "b", "2" }, { "a", "z" }, { "a", "y" }, { "prefix", "dir/sub dir/" }, { "flag", NULL }
    };
    in = base;
    in.headers = hs;
    in.n_headers = 4;
    in.query = qs;
    in.n_query = 5;
    in.session_token = "TOKEN/+=";
    cfs_sigv4_output out;
    char err[256] = "";
    CHECK(cfs_sigv4_sign(&in, &out, err, sizeof err) == 0, "sign: %s", err);
    check_str("canonical query", out.canonical_query, "a=y&a=z&b=2&flag=&prefix=dir%2Fsub%20dir%2F");
    check_str("signed headers", out.signed_headers, "host;x-a;x-amz-date;x-amz-security-token;x-b");
    CHECK(out.canonical_request && strstr(out.canonical_request, "\nx-a:1,0\n") &&
              strstr(out.canonical_request, "\nx-b:two words\n") &&
              strstr(out.canonical_request, "\nx-amz-security-token:TOKEN/+=\n"),
          "canonical headers: %s", out.canonical_request);
    CHECK(out.n_extra_headers == 2 &&
              !strcmp(out.extra_headers[1], "X-Amz-Security-Token: TOKEN/+="),
          "token header");
    cfs_sigv4_output_free(&out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
        return 2;
    }
    int n = run_vectors(argv[1]);
    CHECK(n >= 30, "expected the aws-c-auth vectors, found %d", n);
    test_s3_doc_example();
    test_uri_encode();
    test_paths();
    test_errors();
    printf("sigv4: %d vectors, %d checks, %d failures\n", n, checks, failures);
    return failures ? 1 : 0;
}
