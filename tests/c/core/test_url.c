// Unit tests of store URL normalisation (core/url.c): case-insensitive schemes, the forms
// of file URLs, ~ expansion, mistyped URLs refused, passwords masked in messages.
// sources: csrc/core/url.c
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/url.h"

#include "check.h"

static int known(const char *scheme)
{
    const char *schemes[] = { "http", "https", "file", "mem", "s3", "gs", NULL };
    for (int i = 0; schemes[i]; i++)
        if (strcmp(schemes[i], scheme) == 0)
            return 1;
    return 0;
}

static void expect(const char *url, const char *want)
{
    char err[256] = "";
    char *got = cfs_url_normalize(url, known, err, sizeof err);
    if (!want) {
        CHECK(got == NULL, "%s: accepted as %s", url, got ? got : "");
        CHECK(err[0] != '\0', "%s: no message", url);
        CHECK(strstr(err, "hunter2") == NULL, "%s: the password in %s", url, err);
    } else {
        CHECK(got && strcmp(got, want) == 0, "%s -> %s, want %s (%s)", url, got ? got : "NULL",
              want, err);
    }
    free(got);
}

static void test_schemes(void)
{
    expect("s3://bucket/x", "s3://bucket/x");
    expect("S3://Bucket/X", "s3://Bucket/X");
    expect("HTTPS://Host/Path", "https://Host/Path");
    expect("Gs://b", "gs://b");
    expect("mem://name", "mem://name");
    expect("s3:/bucket/x", NULL);
    expect("gs:/b", NULL);
    expect("http:/h", NULL);
    expect("s3:bucket", NULL);
    expect("htp://alice:hunter2@host/", NULL);
    expect("ftp://host/x", NULL);
    expect("x-y.z+w://a", NULL);
    expect("", NULL);
}

static void test_files(void)
{
    expect("file:///tmp/x", "file:///tmp/x");
    expect("FILE:///tmp/x", "file:///tmp/x");
    expect("file:/tmp/x", "file:///tmp/x");
    expect("file://localhost/tmp/x", "file:///tmp/x");
    expect("file://otherhost/tmp/x", NULL);
    expect("file:tmp/x", NULL);
    expect("/abs/path", "/abs/path");
    expect("relative/path", "relative/path");
    expect("./odd:name", "./odd:name");
    expect("odd:name", NULL); /* looks like a URL with an unknown scheme */
    expect("1:2", "1:2");     /* a scheme starts with a letter */
}

static void test_home(void)
{
    setenv("HOME", "/home/tester/", 1);
    expect("~", "/home/tester");
    expect("~/data", "/home/tester/data");
    expect("~root/x", "/root/x");
    expect("~no-such-user-cfs/x", "~no-such-user-cfs/x"); /* unchanged, as expanduser */
    expect("a/~/b", "a/~/b");
}

static void test_redact(void)
{
    char out[128];
    cfs_url_redact("http://alice:hunter2@host:8080/p?q=1", out, sizeof out);
    CHECK(strcmp(out, "http://alice:***@host:8080/p?q=1") == 0,
          "strcmp(out, 'http://alice:***@host:8080/p?q=1') == 0");
    cfs_url_redact("http://alice@host/p", out, sizeof out);
    CHECK(strcmp(out, "http://alice@host/p") == 0, "strcmp(out, 'http://alice@host/p') == 0");
    cfs_url_redact("http://a:b:c@d@host/p@x", out, sizeof out);
    CHECK(strcmp(out, "http://a:***@host/p@x") == 0, "strcmp(out, 'http://a:***@host/p@x') == 0");
    cfs_url_redact("/plain/path", out, sizeof out);
    CHECK(strcmp(out, "/plain/path") == 0, "strcmp(out, '/plain/path') == 0");
}

int main(void)
{
    test_schemes();
    test_files();
    test_home();
    test_redact();
    printf("test_url: %d checks, %d failures\n", checks, failures);
    return failures != 0;
}
