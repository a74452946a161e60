/* AWS temporary credential documents (see credentials.h). */
#include "backends/s3/credentials.h"

#include <cjson/cJSON.h>
#include <expat.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/keys.h"
#include "util/secret.h"

void cfs_aws_creds_clear(cfs_aws_creds *c)
{
    if (!c)
        return;
    free(c->access_key_id);
    cfs_secret_free(c->secret_access_key);
    cfs_secret_free(c->session_token);
    memset(c, 0, sizeof *c);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int cfs_aws_parse_time(const char *s, int64_t *out)
{
    /* YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM] */
    int Y, M, D, h, m, sec;
    if (!s || strlen(s) < 19 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) ||
        s[7] != '-' || digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
            return -1;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = (int64_t)t - offset;
    return 0;
}

static const char *str_field(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int cfs_aws_creds_parse(const char *json, size_t len, cfs_aws_creds *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json ? json : "", len);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "credentials answer is not a JSON object");
        goto done;
    }
    const char *code = str_field(root, "Code");
    if (code && strcmp(code, "Success") != 0) {
        snprintf(err, errlen, "credentials answer has Code %.60s", code);
        goto done;
    }
    const char *key = str_field(root, "AccessKeyId"), *secret = str_field(root, "SecretAccessKey");
    const char *token = str_field(root, "Token");
    if (!token)
        token = str_field(root, "SessionToken");
    const char *expiration = str_field(root, "Expiration");
    if (!key || !secret) {
        snprintf(err, errlen, "credentials answer without AccessKeyId and SecretAccessKey");
        goto done;
    }
    if (!header_safe(key) || !header_safe(secret) || (token && !header_safe(token))) {
        snprintf(err, errlen, "credentials answer holds control characters");
        goto done;
    }
    if (expiration && cfs_aws_parse_time(expiration, &out->expiration) < 0) {
        snprintf(err, errlen, "credentials answer has a bad Expiration: %.40s", expiration);
        goto done;
    }
    out->access_key_id = strdup(key);
    out->secret_access_key = strdup(secret);
    out->session_token = token ? strdup(token) : NULL;
    if (!out->access_key_id || !out->secret_access_key || (token && !out->session_token)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = 0;
done:
    if (rc < 0)
        cfs_aws_creds_clear(out);
    cfs_secret_json_delete(root); /* cJSON's copies of the secrets wiped */
    return rc;
}

/* ------------------------------------------------------------ STS web identity */

static int form_pair(cfs_buf *out, const char *name, const char *value)
{
    if ((out->len && cfs_buf_append(out, "&", 1) < 0) || cfs_buf_append_str(out, name) < 0 ||
        cfs_buf_append(out, "=", 1) < 0)
        return -1;
    return cfs_url_encode(out, value, strlen(value), 0);
}

int cfs_aws_web_identity_body(cfs_buf *out, const char *role_arn, const char *session_name,
                              const char *token)
{
    if (form_pair(out, "Action", "AssumeRoleWithWebIdentity") < 0 ||
        form_pair(out, "Version", "2011-06-15") < 0 || form_pair(out, "RoleArn", role_arn) < 0 ||
        form_pair(out, "RoleSessionName", session_name) < 0 ||
        form_pair(out, "WebIdentityToken", token) < 0 || cfs_buf_terminate(out) < 0)
        return -1;
    return 0;
}

/* expat's memory, wiped when freed: its buffers hold the document, secrets included. */
static void *xml_malloc(size_t n)
{
    return malloc(n);
}

static void xml_free(void *p)
{
    if (p) {
        cfs_secret_wipe(p, malloc_usable_size(p));
        free(p);
    }
}

static void *xml_realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    size_t old = malloc_usable_size(p);
    void *q = malloc(n ? n : 1);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    xml_free(p);
    return q;
}

#define STS_DEPTH 4
#define STS_TEXT_MAX 8192 /* session tokens run to a few KiB */

typedef struct sts_doc {
    int depth;
    char names[STS_DEPTH + 1][48];  /* local names of the open elements, by depth */
    char text[STS_TEXT_MAX];        /* character data of the current element */
    size_t text_len;
    int too_long;
    char *key, *secret, *token;
    char expiration[64];
    char code[64], message[160];
    int oom;
} sts_doc;

static void XMLCALL sts_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    sts_doc *d = ud;
    d->depth++;
    const char *sep = strrchr(name, '\x01');
    if (d->depth <= STS_DEPTH)
        snprintf(d->names[d->depth], sizeof d->names[d->depth], "%s", sep ? sep + 1 : name);
    d->text_len = 0;
}

static int sts_at(const sts_doc *d, const char *l1, const char *l2, const char *l3)
{
    return d->depth == 4 && !strcmp(d->names[1], l1) && !strcmp(d->names[2], l2) &&
           !strcmp(d->names[3], l3);
}

/* The text into a short field, cut to fit. */
static void sts_copy(char *dst, size_t n, const sts_doc *d)
{
    size_t k = d->text_len < n ? d->text_len : n - 1;
    memcpy(dst, d->text, k);
    dst[k] = '\0';
}

static void sts_keep(sts_doc *d, char **field)
{
    cfs_secret_free(*field);
    if (!(*field = strndup(d->text, d->text_len)))
        d->oom = 1;
}

static void XMLCALL sts_end(void *ud, const XML_Char *name)
{
    (void)name;
    sts_doc *d = ud;
    d->text[d->text_len < STS_TEXT_MAX ? d->text_len : STS_TEXT_MAX - 1] = '\0';
    const char *leaf = d->depth <= STS_DEPTH ? d->names[d->depth] : "";
    const char *result = d->names[2];
    int creds = (!strcmp(d->names[1], "AssumeRoleWithWebIdentityResponse") &&
                 !strcmp(result, "AssumeRoleWithWebIdentityResult")) ||
                (!strcmp(d->names[1], "AssumeRoleResponse") && !strcmp(result, "AssumeRoleResult"));
    if (creds && sts_at(d, d->names[1], result, "Credentials")) {
        if (!strcmp(leaf, "AccessKeyId"))
            sts_keep(d, &d->key);
        else if (!strcmp(leaf, "SecretAccessKey"))
            sts_keep(d, &d->secret);
        else if (!strcmp(leaf, "SessionToken"))
            sts_keep(d, &d->token);
        else if (!strcmp(leaf, "Expiration"))
            sts_copy(d->expiration, sizeof d->expiration, d);
    } else if (d->depth == 3 && !strcmp(d->names[1], "ErrorResponse") &&
               !strcmp(d->names[2], "Error")) {
        if (!strcmp(leaf, "Code"))
            sts_copy(d->code, sizeof d->code, d);
        else if (!strcmp(leaf, "Message"))
            sts_copy(d->message, sizeof d->message, d);
    }
    d->text_len = 0;
    d->depth--;
}

static void XMLCALL sts_text(void *ud, const XML_Char *s, int len)
{
    sts_doc *d = ud;
    if (len <= 0)
        return;
    if (d->text_len + (size_t)len >= STS_TEXT_MAX) {
        d->too_long = 1;
        return;
    }
    memcpy(d->text + d->text_len, s, (size_t)len);
    d->text_len += (size_t)len;
}

static int header_safe_or_null(const char *s)
{
    return !s || header_safe(s);
}

int cfs_aws_sts_parse(const char *xml, size_t len, cfs_aws_creds *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    static const XML_Memory_Handling_Suite wiping = { xml_malloc, xml_realloc, xml_free };
    sts_doc *d = calloc(1, sizeof *d);
    XML_Parser p = d && len <= INT_MAX ? XML_ParserCreate_MM(NULL, &wiping, "\x01") : NULL;
    int rc = -1;
    if (!p) {
        snprintf(err, errlen, d ? "STS answer too large" : "out of memory");
        goto done;
    }
    XML_SetUserData(p, d);
    XML_SetElementHandler(p, sts_start, sts_end);
    XML_SetCharacterDataHandler(p, sts_text);
    int parsed = XML_Parse(p, xml ? xml : "", (int)len, 1) == XML_STATUS_OK;
    if (d->oom) {
        snprintf(err, errlen, "out of memory");
    } else if (d->code[0]) {
        snprintf(err, errlen, "STS error %.60s: %.150s", d->code,
                 d->message[0] ? d->message : "no message");
    } else if (!parsed) {
        snprintf(err, errlen, "STS answer is not XML (%s)", XML_ErrorString(XML_GetErrorCode(p)));
    } else if (d->too_long) {
        snprintf(err, errlen, "STS answer has a field too long");
    } else if (!d->key || !d->secret || !d->key[0] || !d->secret[0]) {
        snprintf(err, errlen, "STS answer without Credentials/AccessKeyId and SecretAccessKey");
    } else if (!header_safe(d->key) || !header_safe(d->secret) || !header_safe_or_null(d->token)) {
        snprintf(err, errlen, "STS answer holds control characters");
    } else if (d->expiration[0] && cfs_aws_parse_time(d->expiration, &out->expiration) < 0) {
        snprintf(err, errlen, "STS answer has a bad Expiration: %.40s", d->expiration);
    } else {
        out->access_key_id = d->key;
        out->secret_access_key = d->secret;
        out->session_token = d->token && d->token[0] ? d->token : NULL;
        if (!out->session_token)
            cfs_secret_free(d->token);
        d->key = d->secret = d->token = NULL;
        rc = 0;
    }
done:
    if (p)
        XML_ParserFree(p);
    if (d) {
        free(d->key);
        cfs_secret_free(d->secret);
        cfs_secret_free(d->token);
        cfs_secret_wipe(d, sizeof *d);
        free(d);
    }
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}
