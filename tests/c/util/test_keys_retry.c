// Unit tests of the pure pieces the engine and every backend share: key validation, URL
// encoding/decoding (keys.c) and the retry policy (retry.c).
// sources: csrc/util/keys.c csrc/core/retry.c csrc/core/buf.c
// pkg:
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/keys.h"
#include "core/retry.h"

#include "check.h"

static int key_ok(const char *k, size_t n)
{
    char err[128];
    return cfs_key_check(k, n, err, sizeof err) == 0;
}

static int prefix_ok(const char *k)
{
    char err[128];
    return cfs_prefix_check(k, strlen(k), err, sizeof err) == 0;
}

static void test_keys(void)
{
    const char *good[] = { "a",         "a/b",       ".zarray",
                           "a/.zattrs", "c/0/0",     "...",
                           "a/..b",     "x y+%#?~=", "\xc3\xbc/\xe2\x82\xac",
                           "a.b/c..",   NULL };
    for (const char **k = good; *k; k++)
        CHECK(key_ok(*k, strlen(*k)), "key %s should be accepted", *k);
    const char *bad[] = {
        "", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b", "../a", "a/..", NULL
    };
    for (const char **k = bad; *k; k++)
        CHECK(!key_ok(*k, strlen(*k)), "key '%s' should be refused", *k);
    CHECK(!key_ok("a\0b", 3), "NUL inside a key must be refused");
    CHECK(prefix_ok(""), "empty prefix is the root");
    CHECK(prefix_ok("a/"), "trailing slash on a prefix");
    CHECK(prefix_ok("a/b"), "partial prefix");
    CHECK(!prefix_ok("a//"), "double slash in a prefix");
    CHECK(!prefix_ok("../"), "dot-dot in a prefix");
    CHECK(!prefix_ok("/"), "a lone slash is not a prefix");
}

static void test_encoding(void)
{
    struct {
        const char *in;
        int keep_slash;
        const char *out;
    } cases[] = {
        { "a/b", 1, "a/b" },
        { "a/b", 0, "a%2Fb" },
        { "x y+%#?~=", 1, "x%20y%2B%25%23%3F~%3D" },
        { "AZaz09-_.~", 1, "AZaz09-_.~" },
        { "\xc3\xbc", 1, "%C3%BC" },
        { "", 1, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfs_buf b = { 0 };
        CHECK(cfs_url_encode(&b, cases[i].in, strlen(cases[i].in), cases[i].keep_slash) == 0,
              "encode");
        CHECK(strcmp(b.data, cases[i].out) == 0, "encode(%s) = %s, want %s", cases[i].in, b.data,
              cases[i].out);
        cfs_buf d = { 0 };
        CHECK(cfs_url_decode(&d, b.data, b.len, 0) == 0, "decode");
        CHECK(d.len == strlen(cases[i].in) && memcmp(d.data, cases[i].in, d.len) == 0,
              "decode(encode(%s)) round trip", cases[i].in);
        cfs_buf_free(&b);
        cfs_buf_free(&d);
    }
    const char *malformed[] = { "%", "%4", "%G0", "a%2", NULL };
    for (const char **m = malformed; *m; m++) {
        cfs_buf d = { 0 };
        CHECK(cfs_url_decode(&d, *m, strlen(*m), 0) < 0, "decode(%s) must fail", *m);
        cfs_buf_free(&d);
    }
    char *j = cfs_path_join("/root/", "/a/b");
    CHECK(j && strcmp(j, "/root/a/b") == 0, "path_join: %s", j ? j : "(null)");
    free(j);
}

static void test_retry(void)
{
    cfs_retry_policy p = { 6, 0.5, 4.0 };
    /* full jitter: the delay is random01 times a window doubling from base up to cap */
    CHECK(fabs(cfs_retry_delay(&p, 1, 0.5, -1) - 0.25) < 1e-9, "attempt 1 window is base");
    CHECK(fabs(cfs_retry_delay(&p, 2, 0.5, -1) - 0.5) < 1e-9, "attempt 2 window doubles");
    CHECK(fabs(cfs_retry_delay(&p, 3, 0.999999, -1) - 2.0) < 1e-5, "attempt 3 window 2 s");
    CHECK(fabs(cfs_retry_delay(&p, 10, 0.999999, -1) - 4.0) < 1e-5, "window capped");
    CHECK(cfs_retry_delay(&p, 1, 0.0, -1) == 0.0, "jitter reaches zero");
    CHECK(fabs(cfs_retry_delay(&p, 1, 0.1, 3.0) - 3.0) < 1e-9, "Retry-After wins when longer");
    CHECK(fabs(cfs_retry_delay(&p, 1, 0.1, 100.0) - 4.0) < 1e-9, "Retry-After bounded by the cap");
    for (long s = 100; s < 600; s++) {
        int want = s == 408 || s == 429 || (s >= 500 && s != 501 && s != 505);
        CHECK(cfs_retry_status_is_transient(s) == want, "status %ld transient=%d", s, want);
    }
    CHECK(cfs_retry_after_parse("7", 0) == 7.0, "delta seconds");
    CHECK(cfs_retry_after_parse(" 1.5 ", 0) == 1.5, "fractional seconds");
    CHECK(cfs_retry_after_parse("soon", 0) < 0, "garbage");
    CHECK(cfs_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", 784111767) == 10.0, "HTTP date");
    CHECK(cfs_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", 784111787) == 0.0,
          "date in the past");
}

int main(void)
{
    test_keys();
    test_encoding();
    test_retry();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
