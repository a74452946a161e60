/* AWS Signature Version 4 (see sigv4.h). Pure: every input comes in through the struct,
 * every result goes out through the output; OpenSSL libcrypto does SHA-256 and HMAC.
 *
 * cfs_sigv4_sign() runs the steps botocore's SigV4Auth names, one function each: the
 * credential scope; the canonical request from the canonical URI, headers, signed headers,
 * query and payload hash; the string to sign; the signature; then the Authorization header
 * or, presigning, the X-Amz-* query. Above them: URI encoding, hashing, key derivation and
 * the canonical forms of paths, queries and headers. */
#include "backends/s3/sigv4.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"

static const char HEX_UPPER[] = "0123456789ABCDEF";
static const char HEX_LOWER[] = "0123456789abcdef";

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

int cfs_aws_uri_encode(cfs_buf *out, const char *s, size_t n, int keep_slash)
{
    /* Worst case triples the length; reserve once. */
    if (n > (SIZE_MAX - 1) / 3 || cfs_buf_reserve(out, n * 3 + 1) < 0)
        return -1;
    char *p = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = HEX_UPPER[c >> 4];
            *p++ = HEX_UPPER[c & 15];
        }
    }
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;
}

char *cfs_aws_uri_encode_dup(const char *s, size_t n, int keep_slash)
{
    cfs_buf b = { 0 };
    if (cfs_aws_uri_encode(&b, s, n, keep_slash) < 0 || cfs_buf_terminate(&b) < 0) {
        cfs_buf_free(&b);
        return NULL;
    }
    return cfs_buf_steal(&b, NULL);
}

static void hex_lower(const unsigned char *md, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX_LOWER[md[i] >> 4];
        out[2 * i + 1] = HEX_LOWER[md[i] & 15];
    }
    out[2 * n] = '\0';
}

int cfs_sha256_hex(const void *data, size_t n, char out[CFS_SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len != CFS_SHA256_LEN)
        return -1;
    cfs_sha256_to_hex(md, out);
    return 0;
}

void cfs_sha256_to_hex(const unsigned char md[CFS_SHA256_LEN], char out[CFS_SHA256_HEX_LEN + 1])
{
    hex_lower(md, CFS_SHA256_LEN, out);
}

static int hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                       unsigned char out[CFS_SHA256_LEN])
{
    unsigned int len = 0;
    if (keylen > (size_t)INT32_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len) || len != CFS_SHA256_LEN)
        return -1;
    return 0;
}

int cfs_sigv4_format_time(int64_t t, char out[17])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if ((int64_t)tt != t || !gmtime_r(&tt, &tm) || tm.tm_year < 0 || tm.tm_year > 9999 - 1900)
        return -1;
    if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -1;
    return 0;
}

int cfs_sigv4_derive_key(const char *secret_access_key, const char *date8, const char *region,
                         const char *service, unsigned char key[CFS_SHA256_LEN])
{
    size_t slen = strlen(secret_access_key);
    char *k = malloc(slen + 5);
    if (!k)
        return -1;
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret_access_key, slen + 1);
    unsigned char a[CFS_SHA256_LEN], b[CFS_SHA256_LEN];
    int rc = -1;
    if (hmac_sha256(k, slen + 4, date8, strlen(date8), a) == 0 &&
        hmac_sha256(a, sizeof a, region, strlen(region), b) == 0 &&
        hmac_sha256(b, sizeof b, service, strlen(service), a) == 0 &&
        hmac_sha256(a, sizeof a, "aws4_request", 12, key) == 0)
        rc = 0;
    OPENSSL_cleanse(k, slen + 4);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    free(k);
    return rc;
}

/* ---- canonical path ---- */

static int path_normalized(cfs_buf *out, const char *path)
{
    size_t n = strlen(path);
    /* Segment boundaries: at most n/2 + 1 segments. */
    size_t cap = n / 2 + 2, count = 0;
    size_t *start = malloc(cap * sizeof *start), *len = malloc(cap * sizeof *len);
    int rc = -1, trailing = 0;
    if (!start || !len)
        goto done;
    for (size_t i = 0; i < n;) {
        while (i < n && path[i] == '/')
            i++;
        if (i >= n)
            break;
        size_t j = i;
        while (j < n && path[j] != '/')
            j++;
        size_t sl = j - i;
        trailing = j < n; /* followed by a '/' */
        if (sl == 1 && path[i] == '.') {
            trailing = 1;
        } else if (sl == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (count)
                count--;
            trailing = 1;
        } else {
            start[count] = i;
            len[count] = sl;
            count++;
        }
        i = j;
    }
    if (cfs_buf_append(out, "/", 1) < 0)
        goto done;
    for (size_t s = 0; s < count; s++) {
        if (s && cfs_buf_append(out, "/", 1) < 0)
            goto done;
        if (cfs_aws_uri_encode(out, path + start[s], len[s], 0) < 0)
            goto done;
    }
    if (count && trailing && cfs_buf_append(out, "/", 1) < 0)
        goto done;
    rc = 0;
done:
    free(start);
    free(len);
    return rc;
}

static int canonical_path(cfs_buf *out, const char *path, cfs_sigv4_path_mode mode)
{
    if (!path || !*path)
        return cfs_buf_append(out, "/", 1);
    switch (mode) {
    case CFS_SIGV4_PATH_ENCODED:
        return cfs_buf_append_str(out, path);
    case CFS_SIGV4_PATH_S3:
        return cfs_aws_uri_encode(out, path, strlen(path), 1);
    case CFS_SIGV4_PATH_NORMALIZE:
        return path_normalized(out, path);
    }
    return -1;
}

/* ---- query ---- */

typedef struct enc_param {
    char *name;
    char *value;
} enc_param;

static int cmp_param(const void *a, const void *b)
{
    const enc_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static void free_params(enc_param *p, size_t n)
{
    if (!p)
        return;
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].value);
    }
    free(p);
}

static int add_param(enc_param *p, size_t *n, const char *name, const char *value)
{
    p[*n].name = cfs_aws_uri_encode_dup(name, strlen(name), 0);
    p[*n].value = cfs_aws_uri_encode_dup(value ? value : "", value ? strlen(value) : 0, 0);
    (*n)++;
    return p[*n - 1].name && p[*n - 1].value ? 0 : -1;
}

static int join_params(cfs_buf *out, const enc_param *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((i && cfs_buf_append(out, "&", 1) < 0) || cfs_buf_append_str(out, p[i].name) < 0 ||
            cfs_buf_append(out, "=", 1) < 0 || cfs_buf_append_str(out, p[i].value) < 0)
            return -1;
    }
    return 0;
}

/* ---- headers ---- */

typedef struct canon_header {
    char *name;     /* lowercase */
    char *value;    /* trimmed, whitespace runs collapsed */
    size_t order;   /* input position: a stable sort keeps repeated names in order */
} canon_header;

static int cmp_header(const void *a, const void *b)
{
    const canon_header *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static int is_tchar(unsigned char c)
{
    return is_unreserved(c) || (c && strchr("!#$%&'*+^`|", c) != NULL);
}

static char *lower_name(const char *name)
{
    size_t n = strlen(name);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        s[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
    s[n] = '\0';
    return s;
}

static char *trim_value(const char *v)
{
    size_t n = strlen(v);
    char *s = malloc(n + 1), *p = s;
    if (!s)
        return NULL;
    int pending_space = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_space(v[i])) {
            pending_space = p != s;
            continue;
        }
        if (pending_space)
            *p++ = ' ';
        pending_space = 0;
        *p++ = v[i];
    }
    *p = '\0';
    return s;
}

static void free_headers(canon_header *h, size_t n)
{
    if (!h)
        return;
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static int add_header(canon_header *h, size_t *n, const char *name, const char *value)
{
    h[*n].name = lower_name(name);
    h[*n].value = trim_value(value);
    h[*n].order = *n;
    (*n)++;
    return h[*n - 1].name && h[*n - 1].value ? 0 : -1;
}

static int valid_token(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

static int valid_field(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x21 || c == 0x7f || c == '/')
            return 0;
    }
    return 1;
}

static int reserved_header(const char *lower)
{
    return !strcmp(lower, "x-amz-date") || !strcmp(lower, "x-amz-security-token") ||
           !strcmp(lower, "x-amz-content-sha256") || !strcmp(lower, "authorization");
}

/* ---- the signer ---- */

void cfs_sigv4_output_free(cfs_sigv4_output *out)
{
    if (!out)
        return;
    free(out->canonical_path);
    free(out->canonical_query);
    free(out->canonical_request);
    free(out->string_to_sign);
    free(out->signed_headers);
    free(out->authorization);
    free(out->presigned_query);
    for (size_t i = 0; i < out->n_extra_headers; i++)
        free(out->extra_headers[i]);
    memset(out, 0, sizeof *out);
}

static char *buf_string(cfs_buf *b)
{
    if (cfs_buf_terminate(b) < 0)
        return NULL;
    return cfs_buf_steal(b, NULL);
}

/* One signing in progress: the steps below read the input, fill the output and share the
 * rest. Every step returns 0, or -1 with a message in err. */
typedef struct signer {
    const cfs_sigv4_input *in;
    cfs_sigv4_output *out;
    int presign;                /* query signing (X-Amz-* parameters), not a header */
    const char *token;          /* the session token, NULL if none */
    const char *payload;        /* the payload hash */
    char date8[9];              /* "YYYYMMDD" of the request time */
    char *scope;                /* date8/region/service/aws4_request */
    char *credential;           /* access_key_id/scope */
    canon_header *hdrs;         /* the headers to sign, sorted by name */
    size_t n_hdrs;
    enc_param *params;          /* the query, encoded and sorted (X-Amz-* ones included
                                 * when presigning) */
    size_t n_params;
    unsigned char key[CFS_SHA256_LEN]; /* the signing key, when derived here (secret) */
    cfs_buf b;                  /* scratch for each string being built */
    char *err;
    size_t errlen;
} signer;

static int oom(signer *g)
{
    set_err(g->err, g->errlen, "SigV4: out of memory");
    return -1;
}

static int crypto_failure(signer *g)
{
    set_err(g->err, g->errlen, "SigV4: OpenSSL failure");
    return -1;
}

/* What can be refused before any work: method, scope, credentials, payload hash, path. */
static int check_input(const cfs_sigv4_input *in, const char *token, const char *payload, char *err,
                       size_t errlen)
{
    if (!in->method || !*in->method) {
        set_err(err, errlen, "SigV4: no method");
        return -1;
    }
    for (const char *m = in->method; *m; m++)
        if (*m < 'A' || *m > 'Z') {
            set_err(err, errlen, "SigV4: bad method");
            return -1;
        }
    if (!valid_field(in->region) || !valid_field(in->service)) {
        set_err(err, errlen, "SigV4: bad region or service");
        return -1;
    }
    if (!valid_field(in->access_key_id) ||
        (!in->signing_key && (!in->secret_access_key || !*in->secret_access_key))) {
        set_err(err, errlen, "SigV4: missing credentials");
        return -1;
    }
    if (strpbrk(in->access_key_id, "\r\n") || (token && strpbrk(token, "\r\n"))) {
        set_err(err, errlen, "SigV4: control characters in credentials");
        return -1;
    }
    if (!*payload || strpbrk(payload, " \t\r\n")) {
        set_err(err, errlen, "SigV4: bad payload hash");
        return -1;
    }
    if (in->path && in->path_mode != CFS_SIGV4_PATH_ENCODED && *in->path && in->path[0] != '/') {
        set_err(err, errlen, "SigV4: path must begin with '/'");
        return -1;
    }
    if (in->path && in->path_mode == CFS_SIGV4_PATH_ENCODED) {
        for (const char *p = in->path; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#') {
                set_err(err, errlen, "SigV4: encoded path holds a byte that must be encoded");
                return -1;
            }
    }
    return 0;
}

/* The credential scope "date/region/service/aws4_request", and the credential (the access
 * key id before it). */
static int credential_scope(signer *g)
{
    const cfs_sigv4_input *in = g->in;
    g->scope = cfs_asprintf("%s/%s/%s/aws4_request", g->date8, in->region, in->service);
    g->credential = cfs_asprintf("%s/%s", in->access_key_id, g->scope ? g->scope : "");
    return g->scope && g->credential ? 0 : oom(g);
}

static int canonical_uri(signer *g)
{
    if (canonical_path(&g->b, g->in->path, g->in->path_mode) < 0 ||
        !(g->out->canonical_path = buf_string(&g->b)))
        return oom(g);
    return 0;
}

/* The headers to sign: the caller's (Host among them, none the signer sets), then
 * X-Amz-Date, X-Amz-Security-Token and x-amz-content-sha256 unless presigning; lowercase
 * names, trimmed values, sorted by name (a stable sort: repeated names keep their order). */
static int canonical_headers(signer *g)
{
    const cfs_sigv4_input *in = g->in;
    if (in->n_headers > SIZE_MAX / sizeof *g->hdrs - 4)
        return oom(g);
    g->hdrs = calloc(in->n_headers + 4, sizeof *g->hdrs);
    if (!g->hdrs)
        return oom(g);
    int have_host = 0;
    for (size_t i = 0; i < in->n_headers; i++) {
        const char *name = in->headers[i].name, *value = in->headers[i].value;
        if (!valid_token(name)) {
            set_err(g->err, g->errlen, "SigV4: bad header name");
            return -1;
        }
        if (!value || strpbrk(value, "\r\n")) {
            set_err(g->err, g->errlen, "SigV4: bad value for header %s", name);
            return -1;
        }
        if (add_header(g->hdrs, &g->n_hdrs, name, value) < 0)
            return oom(g);
        if (reserved_header(g->hdrs[g->n_hdrs - 1].name)) {
            set_err(g->err, g->errlen, "SigV4: header %s is set by the signer", name);
            return -1;
        }
        if (!strcmp(g->hdrs[g->n_hdrs - 1].name, "host"))
            have_host = 1;
    }
    if (!have_host) {
        set_err(g->err, g->errlen, "SigV4: no Host header");
        return -1;
    }
    if (!g->presign) {
        if (add_header(g->hdrs, &g->n_hdrs, "x-amz-date", g->out->amz_date) < 0)
            return oom(g);
        if (g->token && !in->omit_session_token &&
            add_header(g->hdrs, &g->n_hdrs, "x-amz-security-token", g->token) < 0)
            return oom(g);
        if (in->content_sha256_header &&
            add_header(g->hdrs, &g->n_hdrs, "x-amz-content-sha256", g->payload) < 0)
            return oom(g);
    }
    qsort(g->hdrs, g->n_hdrs, sizeof *g->hdrs, cmp_header);
    return 0;
}

/* "host;x-amz-date;...": each name once. */
static int signed_headers(signer *g)
{
    for (size_t i = 0; i < g->n_hdrs; i++) {
        if (i && !strcmp(g->hdrs[i].name, g->hdrs[i - 1].name))
            continue;
        if ((i && cfs_buf_append(&g->b, ";", 1) < 0) ||
            cfs_buf_append_str(&g->b, g->hdrs[i].name) < 0)
            return oom(g);
    }
    if (!(g->out->signed_headers = buf_string(&g->b)))
        return oom(g);
    return 0;
}

/* The request's own query, encoded and sorted: what the URL carries. Room is left for
 * the presigning parameters. */
static int canonical_query(signer *g)
{
    const cfs_sigv4_input *in = g->in;
    if (in->n_query > SIZE_MAX / sizeof *g->params - 8)
        return oom(g);
    g->params = calloc(in->n_query + 8, sizeof *g->params);
    if (!g->params)
        return oom(g);
    for (size_t i = 0; i < in->n_query; i++) {
        if (!in->query[i].name) {
            set_err(g->err, g->errlen, "SigV4: query parameter without a name");
            return -1;
        }
        if (add_param(g->params, &g->n_params, in->query[i].name, in->query[i].value) < 0)
            return oom(g);
    }
    qsort(g->params, g->n_params, sizeof *g->params, cmp_param);
    if (join_params(&g->b, g->params, g->n_params) < 0 ||
        !(g->out->canonical_query = buf_string(&g->b)))
        return oom(g);
    return 0;
}

/* Presigning signs the X-Amz-* parameters too (not the signature itself). */
static int presign_params(signer *g)
{
    char expires[32];
    snprintf(expires, sizeof expires, "%ld", g->in->expires);
    if (add_param(g->params, &g->n_params, "X-Amz-Algorithm", ALGORITHM) < 0 ||
        add_param(g->params, &g->n_params, "X-Amz-Credential", g->credential) < 0 ||
        add_param(g->params, &g->n_params, "X-Amz-Date", g->out->amz_date) < 0 ||
        add_param(g->params, &g->n_params, "X-Amz-Expires", expires) < 0 ||
        add_param(g->params, &g->n_params, "X-Amz-SignedHeaders", g->out->signed_headers) < 0)
        return oom(g);
    if (g->token && !g->in->omit_session_token &&
        add_param(g->params, &g->n_params, "X-Amz-Security-Token", g->token) < 0)
        return oom(g);
    qsort(g->params, g->n_params, sizeof *g->params, cmp_param);
    return 0;
}

/* method \n canonical URI \n canonical query \n canonical headers (one "name:values" line
 * each) \n \n signed headers \n payload hash */
static int canonical_request(signer *g)
{
    cfs_buf *b = &g->b;
    if (cfs_buf_append_str(b, g->in->method) < 0 || cfs_buf_append(b, "\n", 1) < 0 ||
        cfs_buf_append_str(b, g->out->canonical_path) < 0 || cfs_buf_append(b, "\n", 1) < 0 ||
        join_params(b, g->params, g->n_params) < 0 || cfs_buf_append(b, "\n", 1) < 0)
        return oom(g);
    for (size_t i = 0; i < g->n_hdrs; i++) {
        /* a repeated name: its values joined with ',' on one line */
        int first = i == 0 || strcmp(g->hdrs[i].name, g->hdrs[i - 1].name) != 0;
        if (first) {
            if ((i && cfs_buf_append(b, "\n", 1) < 0) ||
                cfs_buf_append_str(b, g->hdrs[i].name) < 0 || cfs_buf_append(b, ":", 1) < 0)
                return oom(g);
        } else if (cfs_buf_append(b, ",", 1) < 0) {
            return oom(g);
        }
        if (cfs_buf_append_str(b, g->hdrs[i].value) < 0)
            return oom(g);
    }
    if (cfs_buf_append(b, "\n\n", 2) < 0 || cfs_buf_append_str(b, g->out->signed_headers) < 0 ||
        cfs_buf_append(b, "\n", 1) < 0 || cfs_buf_append_str(b, g->payload) < 0 ||
        !(g->out->canonical_request = buf_string(b)))
        return oom(g);
    return 0;
}

/* ALGORITHM \n amz_date \n scope \n hex(SHA-256(canonical request)) */
static int string_to_sign(signer *g)
{
    char creq_hash[CFS_SHA256_HEX_LEN + 1];
    if (cfs_sha256_hex(g->out->canonical_request, strlen(g->out->canonical_request), creq_hash) < 0)
        return crypto_failure(g);
    if (!(g->out->string_to_sign =
              cfs_asprintf(ALGORITHM "\n%s\n%s\n%s", g->out->amz_date, g->scope, creq_hash)))
        return oom(g);
    return 0;
}

/* hex(HMAC(signing key, string to sign)), with the caller's signing key or one derived
 * here from the secret. */
static int signature(signer *g)
{
    const unsigned char *skey = g->in->signing_key;
    unsigned char sig[CFS_SHA256_LEN];
    if (!skey) {
        if (cfs_sigv4_derive_key(g->in->secret_access_key, g->date8, g->in->region, g->in->service,
                                 g->key) < 0)
            return crypto_failure(g);
        skey = g->key;
    }
    if (hmac_sha256(skey, CFS_SHA256_LEN, g->out->string_to_sign, strlen(g->out->string_to_sign),
                    sig) < 0)
        return crypto_failure(g);
    hex_lower(sig, sizeof sig, g->out->signature);
    return 0;
}

/* The X-Amz-* parameters to append to the URL, in the order AWS SDKs use, signature last. */
static int presigned_query(signer *g)
{
    cfs_buf *b = &g->b;
    const char *sh = g->out->signed_headers;
    char expires[32];
    snprintf(expires, sizeof expires, "%ld", g->in->expires);
    if (cfs_buf_append_str(b, "X-Amz-Algorithm=" ALGORITHM "&X-Amz-Credential=") < 0 ||
        cfs_aws_uri_encode(b, g->credential, strlen(g->credential), 0) < 0 ||
        cfs_buf_append_str(b, "&X-Amz-Date=") < 0 || cfs_buf_append_str(b, g->out->amz_date) < 0 ||
        cfs_buf_append_str(b, "&X-Amz-SignedHeaders=") < 0 ||
        cfs_aws_uri_encode(b, sh, strlen(sh), 0) < 0 ||
        cfs_buf_append_str(b, "&X-Amz-Expires=") < 0 || cfs_buf_append_str(b, expires) < 0)
        return oom(g);
    if (g->token && (cfs_buf_append_str(b, "&X-Amz-Security-Token=") < 0 ||
                     cfs_aws_uri_encode(b, g->token, strlen(g->token), 0) < 0))
        return oom(g);
    if (cfs_buf_append_str(b, "&X-Amz-Signature=") < 0 ||
        cfs_buf_append_str(b, g->out->signature) < 0 || !(g->out->presigned_query = buf_string(b)))
        return oom(g);
    return 0;
}

/* The Authorization header, and the signer's headers to send with it. */
static int authorization_headers(signer *g)
{
    cfs_sigv4_output *out = g->out;
    if (!(out->authorization =
              cfs_asprintf(ALGORITHM " Credential=%s, SignedHeaders=%s, Signature=%s",
                           g->credential, out->signed_headers, out->signature)))
        return oom(g);
    if (!(out->extra_headers[out->n_extra_headers++] =
              cfs_asprintf("X-Amz-Date: %s", out->amz_date)))
        return oom(g);
    if (g->token && !(out->extra_headers[out->n_extra_headers++] =
                          cfs_asprintf("X-Amz-Security-Token: %s", g->token)))
        return oom(g);
    if (g->in->content_sha256_header && !(out->extra_headers[out->n_extra_headers++] =
                                              cfs_asprintf("x-amz-content-sha256: %s", g->payload)))
        return oom(g);
    return 0;
}

int cfs_sigv4_sign(const cfs_sigv4_input *in, cfs_sigv4_output *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    signer g = {
        .in = in,
        .out = out,
        .presign = in->expires > 0,
        .token = in->session_token && *in->session_token ? in->session_token : NULL,
        .payload = in->payload_hash ? in->payload_hash : CFS_SIGV4_EMPTY_SHA256,
        .err = err,
        .errlen = errlen,
    };
    if (check_input(in, g.token, g.payload, err, errlen) < 0)
        return -1;
    if (cfs_sigv4_format_time(in->time, out->amz_date) < 0) {
        set_err(err, errlen, "SigV4: time out of range");
        return -1;
    }
    memcpy(g.date8, out->amz_date, 8);
    g.date8[8] = '\0';

    /* The steps of botocore's SigV4Auth; the headers are checked before the query. */
    int failed = credential_scope(&g) < 0 || canonical_uri(&g) < 0 || canonical_headers(&g) < 0 ||
                 signed_headers(&g) < 0 || canonical_query(&g) < 0 ||
                 (g.presign && presign_params(&g) < 0) || canonical_request(&g) < 0 ||
                 string_to_sign(&g) < 0 || signature(&g) < 0 ||
                 (g.presign ? presigned_query(&g) : authorization_headers(&g)) < 0;
    if (failed)
        cfs_sigv4_output_free(out);
    OPENSSL_cleanse(g.key, sizeof g.key);
    free_params(g.params, g.n_params);
    free_headers(g.hdrs, g.n_hdrs);
    cfs_buf_free(&g.b);
    free(g.scope);
    free(g.credential);
    return failed ? -1 : 0;
}
