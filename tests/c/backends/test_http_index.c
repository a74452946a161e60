// Unit tests of the nginx JSON directory index parser (csrc/backends/http_index.c).
// sources: csrc/backends/http_index.c csrc/core/attrs.c csrc/core/op.c csrc/core/buf.c
// pkg: libcjson
#include <stdio.h>
#include <string.h>

#include "backends/http_index.h"

#include "check.h"

typedef struct seen {
    int n, stop_at;
    char names[4][32], types[4][16];
    long long sizes[4];
} seen;

static int note(void *ctx, const char *name, const char *type, int64_t size, int64_t mtime_ms)
{
    (void)mtime_ms;
    seen *s = ctx;
    if (s->n < 4) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
        snprintf(s->types[s->n], sizeof s->types[0], "%s", type);
        s->sizes[s->n] = size;
    }
    return ++s->n == s->stop_at ? 5 : 0;
}

static int parse(const char *body, seen *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    return cfs_http_index_parse(body, strlen(body), note, s, err, errlen);
}

int main(void)
{
    seen s;
    char err[96];
    /* as nginx writes it (autoindex_format json) */
    const char *nginx =
        "[\n{ \"name\":\"dir\", \"type\":\"directory\", \"mtime\":\"Tue, 14 Nov 2023 22:13:20 GMT\" },\n"
        "{ \"name\":\"a b.txt\", \"type\":\"file\", \"mtime\":\"Tue, 14 Nov 2023 22:13:20 GMT\", \"size\":12 },\n"
        "{ \"name\":\"\\u00fc\", \"type\":\"other\", \"mtime\":\"Tue, 14 Nov 2023 22:13:20 GMT\" }\n]\n";
    CHECK(parse(nginx, &s, err, sizeof err) == 0 && s.n == 3, "nginx index: %s", err);
    CHECK(strcmp(s.names[0], "dir") == 0 && strcmp(s.types[0], "directory") == 0 && s.sizes[0] == -1,
          "dir");
    CHECK(strcmp(s.names[1], "a b.txt") == 0 && strcmp(s.types[1], "file") == 0 && s.sizes[1] == 12,
          "file");
    CHECK(strcmp(s.names[2], "\xc3\xbc") == 0 && strcmp(s.types[2], "other") == 0, "other");
    CHECK(parse(" [ ] ", &s, err, sizeof err) == 0 && s.n == 0, "empty");
    CHECK(cfs_http_index_parse(NULL, 0, note, &s, err, sizeof err) == -1, "no body");
    s.stop_at = 2;
    CHECK(cfs_http_index_parse(nginx, strlen(nginx), note, &s, err, sizeof err) == 5 && s.n == 2,
          "the callback's stop is handed back");

    static const char *const bad[] = {
        "",
        "{}",
        "[",
        "[{\"name\":\"a\",\"type\":\"file\"}",
        "[{\"name\":\"a\",\"type\":\"file\"},]",
        "[{\"name\":\"a\",\"type\":\"file\"}] x",
        "[{\"name\":\"a\"}]",
        "[{\"name\":5,\"type\":\"file\"}]",
        "[1]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK(parse(bad[i], &s, err, sizeof err) == -1 && err[0], "malformed index %zu accepted", i);
    }

    /* A size is a whole number of bytes below 2^53, else none (-1): a double too large for
     * int64_t was converted anyway, undefined behaviour (fuzzing, crash-size-1e20). */
    const char *sizes = "[{\"name\":\"a\",\"type\":\"file\",\"size\":192233720368547758072},"
                        "{\"name\":\"b\",\"type\":\"file\",\"size\":-5},"
                        "{\"name\":\"c\",\"type\":\"file\",\"size\":1e999},"
                        "{\"name\":\"d\",\"type\":\"file\",\"size\":4398046511104}]";
    CHECK(parse(sizes, &s, err, sizeof err) == 0 && s.n == 4, "sizes: %s", err);
    CHECK(s.sizes[0] == -1 && s.sizes[1] == -1 && s.sizes[2] == -1 && s.sizes[3] == 4398046511104LL,
          "sizes %lld %lld %lld %lld", s.sizes[0], s.sizes[1], s.sizes[2], s.sizes[3]);

    printf("http_index: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
