/* The XML walker (see xml.h): expat's element and text callbacks kept as a stack of names
 * and the text of the current element, handed to the caller's two handlers. */
#include "util/xml.h"

#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* expat joins a namespace URI and a local name with this byte (one no name can hold) */
#define NS_SEP '\x01'

void cfs_xml_fail(cfs_xml_walker *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
}

void cfs_xml_fail_oom(cfs_xml_walker *w)
{
    w->oom = 1;
    cfs_xml_fail(w, "out of memory");
}

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, NS_SEP);
    return sep ? sep + 1 : name;
}

const char *cfs_xml_name(const cfs_xml_walker *w, int d)
{
    return (d >= 1 && d <= CFS_XML_MAX_DEPTH && d <= w->depth) ? w->names[d] : "";
}

int cfs_xml_is(const cfs_xml_walker *w, int d, const char *name)
{
    return strcmp(cfs_xml_name(w, d), name) == 0;
}

const char *cfs_xml_text(const cfs_xml_walker *w)
{
    return w->text.data ? w->text.data : "";
}

static void XMLCALL on_start_el(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    cfs_xml_walker *w = ud;
    if (w->failed)
        return;
    w->depth++;
    if (w->depth <= CFS_XML_MAX_DEPTH) {
        const char *ln = local_name(name);
        if (strlen(ln) < CFS_XML_NAME_MAX)
            strcpy(w->names[w->depth], ln);
        else
            w->names[w->depth][0] = '\0';
    }
    cfs_buf_reset(&w->text);
    if (w->on_start && w->on_start(w) < 0 && !w->failed)
        cfs_xml_fail(w, "unexpected XML");
}

static void XMLCALL on_end_el(void *ud, const XML_Char *name)
{
    (void)name;
    cfs_xml_walker *w = ud;
    if (w->failed)
        return;
    if (cfs_buf_terminate(&w->text) < 0) {
        cfs_xml_fail_oom(w);
        return;
    }
    if (w->on_end && w->on_end(w) < 0 && !w->failed)
        cfs_xml_fail(w, "unexpected XML");
    cfs_buf_reset(&w->text);
    w->depth--;
}

/* expat hands text in pieces (at entities, line ends, CDATA, buffer ends): join them */
static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    cfs_xml_walker *w = ud;
    if (w->failed || len <= 0)
        return;
    if (cfs_buf_append(&w->text, s, (size_t)len) < 0)
        cfs_xml_fail_oom(w);
}

int cfs_xml_walk(cfs_xml_walker *w, const char *xml, size_t len)
{
    if (len > INT_MAX) {
        cfs_xml_fail(w, "XML document too large");
        return -1;
    }
    XML_Parser p = XML_ParserCreateNS(NULL, NS_SEP);
    if (!p) {
        cfs_xml_fail_oom(w);
        return -1;
    }
    XML_SetUserData(p, w);
    XML_SetElementHandler(p, on_start_el, on_end_el);
    XML_SetCharacterDataHandler(p, on_text);
    if (XML_Parse(p, xml ? xml : "", (int)len, 1) != XML_STATUS_OK && !w->failed)
        cfs_xml_fail(w, "malformed XML (%s at line %lu)", XML_ErrorString(XML_GetErrorCode(p)),
                     (unsigned long)XML_GetCurrentLineNumber(p));
    XML_ParserFree(p);
    cfs_buf_free(&w->text);
    return w->failed ? -1 : 0;
}
