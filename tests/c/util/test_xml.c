// Unit tests of the generic XML walker (csrc/util/xml.c): the events and names it reports
// through nesting and namespaces, text that expat splits across callbacks, malformed
// documents, handler failures, and its bounds (depth, name length, entity expansion).
// sources: csrc/util/xml.c csrc/core/buf.c
// pkg: expat
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xml.h"

#include "check.h"

/* Equal strings, neither NULL. */
static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Every event as one line: "+name@depth/parent" on start, "-name@depth=text" on end. */
typedef struct trace {
    cfs_buf log;
    int fail_at;        /* the event (1-based) whose handler refuses; 0: none */
    int with_message;   /* the refusal names its reason */
    int events;
    int stale;          /* times a name showed deeper than the current element */
} trace;

static int record(cfs_xml_walker *w, char sign)
{
    trace *t = w->ctx;
    char line[256];
    t->events++;
    if (cfs_xml_name(w, w->depth + 1)[0])
        t->stale++; /* a closed element's name, still in the stack */
    if (sign == '+')
        snprintf(line, sizeof line, "+%s@%d/%s\n", cfs_xml_name(w, w->depth), w->depth,
                 cfs_xml_name(w, w->depth - 1));
    else
        snprintf(line, sizeof line, "-%s@%d=%s\n", cfs_xml_name(w, w->depth), w->depth,
                 cfs_xml_text(w));
    if (cfs_buf_append_str(&t->log, line) < 0) {
        cfs_xml_fail_oom(w);
        return -1;
    }
    if (t->events == t->fail_at) {
        if (t->with_message)
            cfs_xml_fail(w, "refused at event %d", t->events);
        return -1;
    }
    return 0;
}

static int rec_start(cfs_xml_walker *w)
{
    return record(w, '+');
}

static int rec_end(cfs_xml_walker *w)
{
    return record(w, '-');
}

/* Walk doc with the recording handlers; the log (NUL-terminated) stays in t->log. */
static int walk_traced(const char *doc, size_t len, trace *t, cfs_xml_walker *w)
{
    memset(w, 0, sizeof *w);
    w->on_start = rec_start;
    w->on_end = rec_end;
    w->ctx = t;
    int rc = cfs_xml_walk(w, doc, len);
    cfs_buf_terminate(&t->log);
    return rc;
}

static void test_nesting(void)
{
    const char *doc = "<?xml version=\"1.0\"?>\n"
                      "<r xmlns=\"urn:a\" xmlns:n=\"urn:b\"><n:one>1</n:one>"
                      "<two><three>3</three><empty/></two></r>";
    trace t = { 0 };
    cfs_xml_walker w;
    CHECK(walk_traced(doc, strlen(doc), &t, &w) == 0, "nesting: %s", w.err);
    /* namespaces dropped; the parent's name is still there at depth - 1 */
    const char *want = "+r@1/\n"
                       "+one@2/r\n-one@2=1\n"
                       "+two@2/r\n+three@3/two\n-three@3=3\n+empty@3/two\n-empty@3=\n-two@2=\n"
                       "-r@1=\n";
    CHECK(streq(t.log.data, want), "events:\n%s", t.log.data ? t.log.data : "");
    CHECK(t.stale == 0, "names of closed elements seen %d times", t.stale);
    CHECK(w.depth == 0 && !w.failed && !w.oom, "after the walk: depth %d", w.depth);
    CHECK(w.text.data == NULL, "text buffer freed");
    cfs_buf_free(&t.log);

    /* no handlers at all: the document is only checked */
    cfs_xml_walker bare;
    memset(&bare, 0, sizeof bare);
    CHECK(cfs_xml_walk(&bare, doc, strlen(doc)) == 0, "no handlers: %s", bare.err);
}

static void test_text(void)
{
    /* expat calls the text handler at each entity, character reference, line end and
     * CDATA section: the element's text is the whole of it */
    const char *doc = "<a>one &amp; two\r\nthree<![CDATA[ <four> ]]>&#233;&lt;\n  five</a>";
    trace t = { 0 };
    cfs_xml_walker w;
    CHECK(walk_traced(doc, strlen(doc), &t, &w) == 0, "text: %s", w.err);
    const char *want = "+a@1/\n-a@1=one & two\nthree <four> \xc3\xa9<\n  five\n";
    CHECK(streq(t.log.data, want), "split text:\n%s", t.log.data ? t.log.data : "");
    cfs_buf_free(&t.log);

    /* mixed content: at an element's end, the text since its last child */
    const char *mixed = "<a>before<b>in</b>after</a>";
    memset(&t, 0, sizeof t);
    CHECK(walk_traced(mixed, strlen(mixed), &t, &w) == 0, "mixed: %s", w.err);
    CHECK(streq(t.log.data, "+a@1/\n+b@2/a\n-b@2=in\n-a@1=after\n"), "mixed:\n%s",
          t.log.data ? t.log.data : "");
    cfs_buf_free(&t.log);
}

/* The length of the root's text, and whether it has no NUL inside. */
typedef struct text_len {
    size_t len;
    int ok;
} text_len;

static int len_end(cfs_xml_walker *w)
{
    text_len *l = w->ctx;
    if (w->depth == 1) {
        l->len = w->text.len;
        l->ok = strlen(cfs_xml_text(w)) == w->text.len;
    }
    return 0;
}

/* A long text arrives in many pieces. */
static void test_long_text(void)
{
    cfs_buf big = { 0 };
    size_t want = 0;
    cfs_buf_append_str(&big, "<a>");
    for (int i = 0; i < 20000; i++) {
        cfs_buf_append_str(&big, i % 7 ? "x" : "&amp;\n");
        want += i % 7 ? 1 : 2;
    }
    cfs_buf_append_str(&big, "</a>");
    text_len l = { 0 };
    cfs_xml_walker w;
    memset(&w, 0, sizeof w);
    w.on_end = len_end;
    w.ctx = &l;
    CHECK(cfs_xml_walk(&w, big.data, big.len) == 0, "long text: %s", w.err);
    CHECK(l.len == want && l.ok, "long text: %zu bytes, want %zu", l.len, want);
    cfs_buf_free(&big);
}

static void test_malformed(void)
{
    const char *bad[] = {
        "",
        "not xml",
        "<a>",                      /* unclosed */
        "<a></b>",                  /* mismatched */
        "<a><b></a></b>",           /* crossed */
        "<a/><b/>",                 /* two roots */
        "<a>&undefined;</a>",       /* unknown entity */
        "<a>\xff\xfe</a>",          /* not UTF-8 */
        "<a x=\"1\" x=\"2\"/>",     /* repeated attribute */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        trace t = { 0 };
        cfs_xml_walker w;
        int rc = walk_traced(bad[i], strlen(bad[i]), &t, &w);
        CHECK(rc == -1 && w.failed && !w.oom, "malformed %zu accepted", i);
        CHECK(!strncmp(w.err, "malformed XML (", 15), "malformed %zu: message '%s'", i, w.err);
        CHECK(w.text.data == NULL, "malformed %zu: text buffer freed", i);
        cfs_buf_free(&t.log);
    }
    /* NULL with no bytes: an empty document, refused like "" */
    cfs_xml_walker w;
    memset(&w, 0, sizeof w);
    CHECK(cfs_xml_walk(&w, NULL, 0) == -1 && w.failed, "NULL document");
}

static void test_handler_failure(void)
{
    const char *doc = "<r><a>1</a><b>2</b><c>3</c></r>";
    /* a refusal without a message: "unexpected XML"; with one: that message */
    for (int with_message = 0; with_message <= 1; with_message++) {
        trace t = { .fail_at = 4, .with_message = with_message };
        cfs_xml_walker w;
        int rc = walk_traced(doc, strlen(doc), &t, &w);
        CHECK(rc == -1 && w.failed && !w.oom, "refusal %d", with_message);
        CHECK(streq(w.err, with_message ? "refused at event 4" : "unexpected XML"),
              "refusal message '%s'", w.err);
        /* no handler runs after the refusal */
        CHECK(t.events == 4, "events after a refusal: %d", t.events);
        CHECK(streq(t.log.data, "+r@1/\n+a@2/r\n-a@2=1\n+b@2/r\n"), "refusal log:\n%s", t.log.data);
        cfs_buf_free(&t.log);
    }
    /* the first failure's message is kept: a malformed tail does not replace it */
    const char *bad_tail = "<r><a>1</a><b>";
    trace t = { .fail_at = 1, .with_message = 1 };
    cfs_xml_walker w;
    CHECK(walk_traced(bad_tail, strlen(bad_tail), &t, &w) == -1, "refused then malformed");
    CHECK(streq(w.err, "refused at event 1"), "first message kept: '%s'", w.err);
    cfs_buf_free(&t.log);
}

/* For the depth test: the names seen at each depth, on the way in and on the way out. */
typedef struct depth_seen {
    int max_depth;
    int names_in_ok;        /* start: the name at each depth as expected */
    int names_out_ok;       /* end: the same, after deeper elements have come and gone */
    int text_ok;
} depth_seen;

static const char *expected_name(int d)
{
    static char name[16];
    if (d > CFS_XML_MAX_DEPTH)
        return "";
    snprintf(name, sizeof name, "e%d", d);
    return name;
}

static int depth_start(cfs_xml_walker *w)
{
    depth_seen *s = w->ctx;
    if (w->depth > s->max_depth)
        s->max_depth = w->depth;
    for (int d = 1; d <= w->depth; d++)
        if (!streq(cfs_xml_name(w, d), expected_name(d)))
            s->names_in_ok = 0;
    if (cfs_xml_name(w, w->depth + 1)[0] || cfs_xml_name(w, 0)[0] || cfs_xml_name(w, -1)[0])
        s->names_in_ok = 0; /* outside 1..depth: "" */
    return 0;
}

static int depth_end(cfs_xml_walker *w)
{
    depth_seen *s = w->ctx;
    if (!streq(cfs_xml_name(w, w->depth), expected_name(w->depth)) ||
        !cfs_xml_is(w, w->depth, expected_name(w->depth)))
        s->names_out_ok = 0;
    /* the innermost element holds "deep"; the others only the text after their child */
    if (!streq(cfs_xml_text(w), w->depth == 40 ? "deep" : ""))
        s->text_ok = 0;
    return 0;
}

static void test_depth(void)
{
    /* 40 levels, e1..e40: names are kept to CFS_XML_MAX_DEPTH, deeper ones read as "" */
    cfs_buf doc = { 0 };
    char tag[32];
    for (int d = 1; d <= 40; d++) {
        snprintf(tag, sizeof tag, "<e%d>", d);
        cfs_buf_append_str(&doc, tag);
    }
    cfs_buf_append_str(&doc, "deep");
    for (int d = 40; d >= 1; d--) {
        snprintf(tag, sizeof tag, "</e%d>", d);
        cfs_buf_append_str(&doc, tag);
    }
    depth_seen s = { 0, 1, 1, 1 };
    cfs_xml_walker w;
    memset(&w, 0, sizeof w);
    w.on_start = depth_start;
    w.on_end = depth_end;
    w.ctx = &s;
    CHECK(cfs_xml_walk(&w, doc.data, doc.len) == 0, "deep: %s", w.err);
    CHECK(s.max_depth == 40 && w.depth == 0, "depth counted: %d, back to %d", s.max_depth, w.depth);
    CHECK(s.names_in_ok && s.names_out_ok, "names by depth (in %d, out %d)", s.names_in_ok,
          s.names_out_ok);
    CHECK(s.text_ok, "text at depth");
    cfs_buf_free(&doc);

    /* very deep nesting: expat copes, the walker keeps nothing per level */
    cfs_buf deep = { 0 };
    for (int d = 0; d < 100000; d++)
        cfs_buf_append_str(&deep, "<d>");
    for (int d = 0; d < 100000; d++)
        cfs_buf_append_str(&deep, "</d>");
    memset(&w, 0, sizeof w);
    CHECK(cfs_xml_walk(&w, deep.data, deep.len) == 0 && w.depth == 0, "100,000 levels: %s", w.err);
    cfs_buf_free(&deep);
}

static int names_end(cfs_xml_walker *w)
{
    cfs_buf *out = w->ctx;
    cfs_buf_append_str(out, "[");
    cfs_buf_append_str(out, cfs_xml_name(w, w->depth));
    cfs_buf_append_str(out, "]");
    return 0;
}

static void test_name_length(void)
{
    /* names shorter than CFS_XML_NAME_MAX are kept; longer ones read as "" */
    char ok[CFS_XML_NAME_MAX], long_name[CFS_XML_NAME_MAX + 1];
    memset(ok, 'k', sizeof ok - 1);
    ok[sizeof ok - 1] = '\0';
    memset(long_name, 'l', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    char doc[512];
    snprintf(doc, sizeof doc, "<r><%s/><p:%s xmlns:p=\"urn:p\"/></r>", ok, long_name);
    cfs_buf seen = { 0 };
    cfs_xml_walker w;
    memset(&w, 0, sizeof w);
    w.on_end = names_end;
    w.ctx = &seen;
    CHECK(cfs_xml_walk(&w, doc, strlen(doc)) == 0, "names: %s", w.err);
    cfs_buf_terminate(&seen);
    char want[128];
    snprintf(want, sizeof want, "[%s][][r]", ok);
    CHECK(streq(seen.data, want), "names: %s", seen.data ? seen.data : "");
    cfs_buf_free(&seen);
}

static void test_entity_expansion(void)
{
    /* a billion laughs: expat 2.4 and later refuse it; the walker never holds the expansion */
    const char *doc =
        "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
        "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">"
        "<!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">"
        "<!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\"><!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\">]>"
        "<x>&h;</x>";
    XML_Expat_Version v = XML_ExpatVersionInfo();
    int guarded = v.major > 2 || (v.major == 2 && v.minor >= 4);
    text_len l = { 0 };
    cfs_xml_walker w;
    memset(&w, 0, sizeof w);
    w.on_end = len_end;
    w.ctx = &l;
    int rc = cfs_xml_walk(&w, doc, strlen(doc));
    if (guarded)
        CHECK(rc == -1 && !strncmp(w.err, "malformed XML (", 15), "billion laughs accepted: '%s'",
              w.err);
    else
        CHECK(rc == -1 || l.len == 100000000u, "billion laughs: rc %d, %zu bytes", rc, l.len);
    CHECK(w.text.data == NULL, "text buffer freed");
}

int main(void)
{
    test_nesting();
    test_text();
    test_long_text();
    test_malformed();
    test_handler_failure();
    test_depth();
    test_name_length();
    test_entity_expansion();
    printf("xml walker: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
