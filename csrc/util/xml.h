/* A small walker over expat for XML documents of a known shape (a service's answers): it
 * keeps the stack of element names and the text of the current element, and calls two
 * handlers; a document type is a pair of handlers and a context. Pure: no I/O, no global
 * state. Tested in tests/c/util/test_xml.c.
 *
 * Contract:
 * - Set on_start, on_end (either may be NULL) and ctx in a zeroed walker, then call
 *   cfs_xml_walk() once.
 * - on_start(w): an element just opened. w->depth is its depth (1: the root), and
 *   cfs_xml_name(w, d) the local name (namespace dropped) of the open element at depth d.
 * - on_end(w): the element at w->depth is about to close. cfs_xml_text(w) is the character
 *   data since the last tag, entities decoded and NUL-terminated (w->text.len bytes): for a
 *   leaf element its whole text, however expat split it; for an element with children only
 *   what follows its last child.
 * - A handler returns 0 to go on, or -1 to stop the walk, which then fails with the
 *   message the handler gave through cfs_xml_fail() (the first one counts), else with
 *   "unexpected XML". No handler is called after a failure.
 *
 * Bounds, for hostile input: names are kept for depths 1..CFS_XML_MAX_DEPTH and when
 * shorter than CFS_XML_NAME_MAX bytes; a deeper element or a longer name reads as "" (it is
 * counted in depth, never stored), so the walker's own memory does not grow with nesting.
 * The text buffer holds one element's text at a time: at most the document's bytes, or,
 * through internal entities, what expat's amplification guard lets through (expat 2.4 and
 * later refuse a document that expands past 100 times its size once beyond 8 MiB). */
#ifndef CFS_XML_H
#define CFS_XML_H
#include <stddef.h>

#include "core/buf.h"

#define CFS_XML_MAX_DEPTH 16
#define CFS_XML_NAME_MAX 40

typedef struct cfs_xml_walker cfs_xml_walker;
struct cfs_xml_walker {
    /* set by the caller */
    int (*on_start)(cfs_xml_walker *w);
    int (*on_end)(cfs_xml_walker *w);
    void *ctx;
    /* read by the handlers and the caller */
    int depth;                              /* of the element being read (1 = root) */
    cfs_buf text;                           /* character data since the last tag */
    int failed;
    char err[160];                          /* why, once failed */
    int oom;                                /* failed for want of memory */
    /* the walker's own */
    char names[CFS_XML_MAX_DEPTH + 1][CFS_XML_NAME_MAX]; /* names[d]: local name at depth d */
};

/* Walk a document (xml may be NULL when len is 0). Returns 0, or -1 with w->err set:
 * malformed XML, a handler's refusal, out of memory, or a document over INT_MAX bytes
 * (expat's limit for one buffer). Frees what it allocated either way. */
int cfs_xml_walk(cfs_xml_walker *w, const char *xml, size_t len);

/* Fail the walk with a message (kept only if the walk has not failed already). */
void cfs_xml_fail(cfs_xml_walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fail the walk for want of memory (w->oom). */
void cfs_xml_fail_oom(cfs_xml_walker *w);

/* The local name of the open element at depth d; "" beyond the kept depth, for an overlong
 * name, or for a d outside 1..depth. */
const char *cfs_xml_name(const cfs_xml_walker *w, int d);
/* Whether the open element at depth d is called `name`. */
int cfs_xml_is(const cfs_xml_walker *w, int d, const char *name);
/* The current text, NUL-terminated ("" if none); in on_end, the element's text. */
const char *cfs_xml_text(const cfs_xml_walker *w);

#endif
