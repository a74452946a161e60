/* s3://bucket/prefix: Amazon S3 and S3-compatible services (MinIO, Ceph, R2, moto...).
 *
 * Addressing: virtual-hosted on AWS (https://bucket.s3.REGION.amazonaws.com/key), path-style
 * for a custom endpoint_url (http://host:port/bucket/key) unless addressing_style says
 * otherwise. Requests are signed with SigV4 (sigv4.c) unless anon; listings are
 * ListObjectsV2 pages parsed by s3_xml.c; S3 error bodies map to op statuses with the S3
 * code in op->message. A DELETE looks first (HEAD) so that a missing key is reported; a
 * PUT at or above multipart_threshold goes up in parts, multipart_concurrency at once (each
 * part a child op of the PUT, with its own retries), and is aborted on failure.
 *
 * Credentials: keys given as options, or where to fetch temporary ones (the Python layer,
 * cloudfiles_store/_aws.py, finds which the AWS way): credential_source = container (GET
 * credential_url with credential_token[_file] as Authorization), imds (IMDSv2 at
 * credential_url: token, role, role's keys) or web_identity (STS AssumeRoleWithWebIdentity
 * at credential_url, default https://sts.REGION.amazonaws.com/, with credential_role_arn,
 * credential_role_session_name and the token in credential_token_file). They are fetched
 * on first use and refreshed before they expire (core/cred_cache.h): the fetch is one more
 * step of the op that needs it, sent through the engine like any request.
 *
 * Options: endpoint_url, region, addressing_style (auto|path|virtual), access_key_id,
 * secret_access_key, session_token, anon, requester_pays, sign_payload (real SHA-256 of PUT
 * bodies, else UNSIGNED-PAYLOAD; Content-MD5 is always sent), verify_etag (check
 * whole-object GETs against a plain-MD5 ETag), multipart_threshold, multipart_chunksize,
 * multipart_concurrency, ca_bundle, verify, and the credential_* options above. */
#include <openssl/evp.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backends/s3/credentials.h"
#include "core/backend.h"
#include "core/cred_cache.h"
#include "core/engine.h"
#include "util/keys.h"
#include "util/secret.h"
#include "backends/s3/xml.h"
#include "backends/s3/sigv4.h"

extern const cfs_backend_ops cfs_s3_backend;

#define MD5_LEN 16
#define MD5_B64_LEN 24
#define MAX_SIGNED_HEADERS 8
#define MAX_PARTS 10000
#define MIB (1024L * 1024L)
/* PUT bodies this large are hashed on a worker thread (MD5 runs at about 700 MB/s: 90 us
 * for this much, which the transfer thread can afford inline) */
#define HASH_INLINE_MAX (64 * 1024)

#define IMDS_TOKEN_TTL "21600"

typedef enum cred_source {
    CRED_STATIC,        /* given as options (or none: anonymous) */
    CRED_CONTAINER,     /* GET credential_url (+ Authorization from a token or token file) */
    CRED_IMDS,          /* IMDSv2: PUT token, GET role, GET role credentials */
    CRED_WEB_IDENTITY,  /* POST STS AssumeRoleWithWebIdentity with the token file's token */
} cred_source;

typedef struct s3_backend {
    cfs_backend base;
    char *url;              /* s3://bucket[/prefix]: repr, pickling, errors */
    char *bucket;
    char *prefix;           /* "" or "a/b/": the store root inside the bucket */
    char *origin;           /* scheme://authority every request goes to */
    char *host;             /* the Host header (authority of origin) */
    char *path_base;        /* raw path before root+key: "/bucket/" (path-style) or "/" */
    char *region;
    cfs_tls tls;
    int anon;
    int requester_pays;
    int sign_payload;
    int verify_etag;
    size_t mpu_threshold;   /* PUT bodies this large go up in parts */
    size_t mpu_chunksize;   /* part size (grown to fit 10,000 parts) */
    int mpu_concurrency;    /* parts of one upload in flight at once */
    cred_source source;
    char *cred_url;         /* container: the full URL; IMDS: the base URL; STS endpoint */
    char *cred_auth;        /* container: the Authorization value (secret), or NULL */
    char *cred_auth_file;   /* container: a file holding it; web identity: the token file;
                             * read at each fetch (the platform rotates it) */
    char *role_arn;         /* web identity */
    char *role_session;
    /* keys given as options, until open moves them into creds */
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    int64_t expiration;     /* epoch seconds; 0: the keys given do not expire */
    cfs_cred_cache creds;   /* the keys requests are signed with */
} s3_backend;

/* ------------------------------------------------------------------ helpers */

/* Header lines of any length (session tokens can be long), straight onto the list. */
static int add_header_line(cfs_request *req, const char *name, const char *value)
{
    char *line = cfs_asprintf("%s: %s", name, value);
    if (!line)
        return -1;
    struct curl_slist *l = curl_slist_append(req->headers, line);
    cfs_secret_free(line); /* may hold a token */
    if (!l)
        return -1;
    req->headers = l;
    return 0;
}

static int md5_of(const void *data, size_t n, unsigned char out[MD5_LEN])
{
    unsigned int len = 0;
    return EVP_Digest(data, n, out, &len, EVP_md5(), NULL) == 1 && len == MD5_LEN ? 0 : -1;
}

/* A bucket name that can be a DNS label of a virtual host (and a TLS wildcard match). */
static int dns_compatible(const char *bucket)
{
    size_t n = strlen(bucket);
    if (n < 3 || n > 63)
        return 0;
    for (const char *p = bucket; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return bucket[0] != '-' && bucket[n - 1] != '-';
}

static int valid_bucket(const char *bucket)
{
    size_t n = strlen(bucket);
    if (n < 1 || n > 255)
        return 0;
    for (const char *p = bucket; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.' || *p == '_'))
            return 0;
    return 1;
}

static int header_safe(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* --------------------------------------------------------------------- open */

static void s3_close(cfs_backend *b)
{
    s3_backend *s = (s3_backend *)b;
    if (!s)
        return;
    free(s->url);
    free(s->bucket);
    free(s->prefix);
    free(s->origin);
    free(s->host);
    free(s->path_base);
    free(s->region);
    cfs_tls_free(&s->tls);
    free(s->cred_url);
    cfs_secret_free(s->cred_auth);
    free(s->cred_auth_file);
    free(s->role_arn);
    free(s->role_session);
    free(s->access_key_id);
    cfs_secret_free(s->secret_access_key);
    cfs_secret_free(s->session_token);
    cfs_cred_cache_destroy(&s->creds);
    free(s);
}

/* Split an endpoint URL into scheme and authority; only "/" may follow. */
static int parse_endpoint(const char *ep, char **scheme, char **authority, char *err, size_t errlen)
{
    const char *sep = strstr(ep, "://");
    if (!sep || !((sep - ep == 4 && !strncasecmp(ep, "http", 4)) ||
                  (sep - ep == 5 && !strncasecmp(ep, "https", 5)))) {
        snprintf(err, errlen, "endpoint_url must start with http:// or https://");
        return -1;
    }
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?#");
    const char *rest = a + alen;
    if (alen == 0 || memchr(a, '@', alen)) {
        snprintf(err, errlen, "endpoint_url needs a host (and no user@): %.100s", ep);
        return -1;
    }
    for (size_t i = 0; i < alen; i++)
        if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f) {
            snprintf(err, errlen, "endpoint_url host has invalid characters");
            return -1;
        }
    if (*rest && strcmp(rest, "/") != 0) {
        snprintf(err, errlen, "endpoint_url must not have a path: %.100s", ep);
        return -1;
    }
    *scheme = strndup(ep, (size_t)(sep - ep));
    *authority = strndup(a, alen);
    if (!*scheme || !*authority) {
        free(*scheme);
        free(*authority);
        *scheme = *authority = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *p = *scheme; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
    return 0;
}

static int take_string(cfs_options *opts, const char *name, char **dst)
{
    const char *v = cfs_options_take(opts, name);
    if (!v || !*v)
        return 0;
    *dst = strdup(v);
    return *dst ? 1 : -1;
}

/* The credential_* options: where temporary credentials are refreshed from. */
static int open_cred_source(s3_backend *s, cfs_options *opts, char *err, size_t errlen)
{
    const char *src = cfs_options_take(opts, "credential_source");
    const char *exp = cfs_options_take(opts, "credential_expiration");
    if (take_string(opts, "credential_url", &s->cred_url) < 0 ||
        take_string(opts, "credential_token", &s->cred_auth) < 0 ||
        take_string(opts, "credential_token_file", &s->cred_auth_file) < 0 ||
        take_string(opts, "credential_role_arn", &s->role_arn) < 0 ||
        take_string(opts, "credential_role_session_name", &s->role_session) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!src || !*src || !strcmp(src, "static")) {
        if (s->cred_url || s->cred_auth || s->cred_auth_file || s->role_arn || s->role_session) {
            snprintf(err, errlen, "credential_url, credential_token and credential_role_arn need "
                                  "credential_source");
            return -1;
        }
        s->source = CRED_STATIC;
    } else if (!strcmp(src, "container") || !strcmp(src, "imds") || !strcmp(src, "web_identity")) {
        s->source = !strcmp(src, "container") ? CRED_CONTAINER
                  : !strcmp(src, "imds")      ? CRED_IMDS : CRED_WEB_IDENTITY;
        if (s->source == CRED_WEB_IDENTITY ? (s->cred_url && strncmp(s->cred_url, "http", 4) != 0)
                                           : (!s->cred_url || strncmp(s->cred_url, "http", 4) != 0)) {
            snprintf(err, errlen, "credential_source=%s needs an http(s) credential_url", src);
            return -1;
        }
        if (s->cred_url && strpbrk(s->cred_url, " \r\n")) {
            snprintf(err, errlen, "credential_url has spaces or line breaks");
            return -1;
        }
        if (s->source == CRED_WEB_IDENTITY && (!s->role_arn || !s->cred_auth_file)) {
            snprintf(err, errlen, "credential_source=web_identity needs credential_role_arn and "
                                  "credential_token_file");
            return -1;
        }
        if (s->source == CRED_WEB_IDENTITY && !s->role_session &&
            !(s->role_session = cfs_asprintf("cloudfiles-store-%lld", (long long)time(NULL)))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (!header_safe(s->cred_auth)) {
            snprintf(err, errlen, "credential_token has characters a header cannot carry");
            return -1;
        }
        if (s->anon) {
            snprintf(err, errlen, "anon=True takes no credentials");
            return -1;
        }
    } else {
        snprintf(err, errlen, "credential_source must be container, imds or web_identity, not %.40s", src);
        return -1;
    }
    if (exp && *exp) {
        char *end;
        long long v = strtoll(exp, &end, 10);
        if (*end || v < 0) {
            snprintf(err, errlen, "credential_expiration must be epoch seconds");
            return -1;
        }
        s->expiration = (int64_t)v;
    }
    return 0;
}

static int open_creds(s3_backend *s, char *err, size_t errlen); /* credentials below */

static cfs_backend *s3_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    s3_backend *s = calloc(1, sizeof *s);
    char *scheme = NULL, *authority = NULL, *endpoint = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &cfs_s3_backend;
    s->sign_payload = 1;
    s->verify_etag = 1;

    /* s3://bucket[/prefix...] */
    const char *p = url + strlen("s3://");
    size_t blen = strcspn(p, "/");
    s->bucket = strndup(p, blen);
    if (!s->bucket)
        goto oom;
    if (!valid_bucket(s->bucket)) {
        snprintf(err, errlen, "invalid bucket name in %.200s", url);
        goto fail;
    }
    const char *root = p + blen;
    while (*root == '/')
        root++;
    size_t rlen = strlen(root);
    while (rlen && root[rlen - 1] == '/')
        rlen--;
    char kerr[128];
    if (rlen && cfs_key_check(root, rlen, kerr, sizeof kerr) < 0) {
        snprintf(err, errlen, "invalid prefix in %.200s: %s", url, kerr);
        goto fail;
    }
    s->prefix = rlen ? cfs_asprintf("%.*s/", (int)rlen, root) : strdup("");
    s->url = rlen ? cfs_asprintf("s3://%s/%.*s", s->bucket, (int)rlen, root) : cfs_asprintf("s3://%s", s->bucket);
    if (!s->prefix || !s->url)
        goto oom;

    /* Options. */
    if (take_string(opts, "endpoint_url", &endpoint) < 0 || take_string(opts, "region", &s->region) < 0 ||
        take_string(opts, "access_key_id", &s->access_key_id) < 0 ||
        take_string(opts, "secret_access_key", &s->secret_access_key) < 0 ||
        take_string(opts, "session_token", &s->session_token) < 0)
        goto oom;
    if (cfs_tls_take_options(&s->tls, opts, err, errlen) < 0)
        goto fail;
    if (cfs_options_take_bool(opts, "anon", &s->anon, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "requester_pays", &s->requester_pays, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "sign_payload", &s->sign_payload, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "verify_etag", &s->verify_etag, err, errlen) < 0)
        goto fail;
    long threshold = 128 * MIB, chunk = 16 * MIB, parts_at_once = 8;
    if (cfs_options_take_long(opts, "multipart_threshold", 5 * MIB, LONG_MAX, &threshold, err, errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_chunksize", 5 * MIB, 5 * 1024 * MIB, &chunk, err, errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_concurrency", 1, 256, &parts_at_once, err, errlen) < 0)
        goto fail;
    s->mpu_threshold = (size_t)threshold;
    s->mpu_chunksize = (size_t)chunk;
    s->mpu_concurrency = (int)parts_at_once;
    if (open_cred_source(s, opts, err, errlen) < 0)
        goto fail;
    const char *style = cfs_options_take(opts, "addressing_style");
    if (style && strcmp(style, "auto") && strcmp(style, "path") && strcmp(style, "virtual")) {
        snprintf(err, errlen, "addressing_style must be auto, path or virtual, not %.40s", style);
        goto fail;
    }
    if (!s->region && !(s->region = strdup("us-east-1")))
        goto oom;
    for (const char *r = s->region; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-')) {
            snprintf(err, errlen, "invalid region %.60s", s->region);
            goto fail;
        }

    /* Credentials: both halves, or anonymous. */
    if (s->anon) {
        free(s->access_key_id);
        cfs_secret_free(s->secret_access_key);
        cfs_secret_free(s->session_token);
        s->access_key_id = s->secret_access_key = s->session_token = NULL;
    } else if (!s->access_key_id != !s->secret_access_key || (s->source == CRED_STATIC && !s->access_key_id)) {
        snprintf(err, errlen, "%s",
                 s->access_key_id || s->secret_access_key
                     ? "access_key_id and secret_access_key go together"
                     : "no AWS credentials: give access_key_id and secret_access_key (or set "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE), or anon=True "
                       "for a public bucket");
        goto fail;
    } else if (!header_safe(s->access_key_id) || !header_safe(s->session_token)) {
        snprintf(err, errlen, "credentials hold characters a header cannot carry");
        goto fail;
    }
    if (!s->anon && open_creds(s, err, errlen) < 0)
        goto fail;

    /* Addressing. */
    int virtual_host;
    if (endpoint) {
        if (parse_endpoint(endpoint, &scheme, &authority, err, errlen) < 0)
            goto fail;
        virtual_host = style && !strcmp(style, "virtual");
    } else {
        if (!(scheme = strdup("https")) || !(authority = cfs_asprintf("s3.%s.amazonaws.com", s->region)))
            goto oom;
        virtual_host = style ? (!strcmp(style, "virtual") ||
                                (!strcmp(style, "auto") && dns_compatible(s->bucket)))
                             : dns_compatible(s->bucket);
    }
    if (virtual_host && !dns_compatible(s->bucket) && strchr(s->bucket, '_')) {
        snprintf(err, errlen, "bucket %.100s cannot be a host name: use addressing_style='path'", s->bucket);
        goto fail;
    }
    if (virtual_host) {
        s->host = cfs_asprintf("%s.%s", s->bucket, authority);
        s->path_base = strdup("/");
    } else {
        s->host = strdup(authority);
        s->path_base = cfs_asprintf("/%s/", s->bucket);
    }
    if (!s->host || !s->path_base || !(s->origin = cfs_asprintf("%s://%s", scheme, s->host)))
        goto oom;
    free(scheme);
    free(authority);
    free(endpoint);
    return &s->base;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(scheme);
    free(authority);
    free(endpoint);
    s3_close(&s->base);
    return NULL;
}

/* ---------------------------------------------------------------- op state */

/* Everything one op carries between its requests. */
typedef struct s3_state {
    /* credential fetch: a sub-step before the op's own request */
    int cred_step;          /* 0: none; container, STS: 1; IMDS: 1 token, 2 role, 3 credentials */
    cfs_cred_ticket ticket; /* its part in the credential cache */
    char *imds_token;       /* secret */
    char *imds_role;
    /* LIST: the token of the next page (NULL for the first) */
    char *list_token;
    /* PUT: hashes of the body (a single PUT or one part; the complete document) */
    int put_hashed;
    char md5_b64[MD5_B64_LEN + 1];
    char sha256[CFS_SHA256_HEX_LEN + 1];
    /* GET: the MD5 (hex) a plain ETag promised, checked by s3_verify on a worker thread */
    char etag_md5[33];
    /* DELETE_MANY: the <Delete> document (hashes in md5_b64/sha256 once put_hashed) */
    cfs_buf delete_body;
    /* multipart PUT (steps: enum mpu_step): the parts go up as child ops */
    char *upload_id;
    size_t part_size;
    size_t n_parts;
    size_t parts_started;
    char **etags;           /* of each part, by part number - 1 */
    cfs_buf complete;
    cfs_status fail_status; /* the first failure, kept while the upload is aborted */
    long fail_http_status;
    int fail_attempts;
    char *fail_where;       /* the URL that failed, when not the PUT's own */
    char fail_message[sizeof(((cfs_op *)0)->message)];
    /* one part (a child op): its number, the upload's state (its parent's), its ETag */
    size_t part_number;
    const struct s3_state *upload;
    char *part_etag;
} s3_state;

enum mpu_step {
    MPU_INITIATE,   /* CreateMultipartUpload */
    MPU_PARTS,      /* the parts, as child ops: no request of the PUT's own */
    MPU_COMPLETE,   /* CompleteMultipartUpload */
    MPU_ABORT,      /* AbortMultipartUpload, after a failure */
};

static void state_free(void *p)
{
    s3_state *st = p;
    if (!st)
        return;
    cfs_cred_release(&st->ticket);
    cfs_secret_free(st->imds_token);
    free(st->imds_role);
    free(st->list_token);
    free(st->upload_id);
    for (size_t i = 0; st->etags && i < st->n_parts; i++)
        free(st->etags[i]);
    free(st->etags);
    free(st->part_etag);
    free(st->fail_where);
    cfs_buf_free(&st->complete);
    cfs_buf_free(&st->delete_body);
    free(st);
}

static int is_part(const cfs_op *op)
{
    const s3_state *st = op->backend_state;
    return st && st->upload;
}

static int is_multipart(const s3_backend *s, const cfs_op *op)
{
    return op->kind == CFS_OP_PUT && op->body_len >= s->mpu_threshold && !is_part(op);
}

static int looks_before_delete(const cfs_op *op)
{
    return op->kind == CFS_OP_DELETE && op->step == 0 && !op->missing_ok;
}

static s3_state *state_of(s3_backend *s, cfs_op *op)
{
    if (op->backend_state)
        return op->backend_state;
    s3_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    if (is_multipart(s, op)) {
        st->part_size = s->mpu_chunksize;
        if (op->body_len / st->part_size >= MAX_PARTS)
            st->part_size = op->body_len / MAX_PARTS + 1;
        st->n_parts = (op->body_len + st->part_size - 1) / st->part_size;
        if (!(st->etags = calloc(st->n_parts, sizeof *st->etags))) {
            free(st);
            return NULL;
        }
    }
    op->backend_state = st;
    op->free_backend_state = state_free;
    return st;
}

static int hash_body(s3_backend *s, const char *body, size_t n, char md5_b64[MD5_B64_LEN + 1],
                     char sha256[CFS_SHA256_HEX_LEN + 1])
{
    unsigned char md5[MD5_LEN];
    if (md5_of(body ? body : "", n, md5) < 0 ||
        EVP_EncodeBlock((unsigned char *)md5_b64, md5, MD5_LEN) != MD5_B64_LEN)
        return -1;
    if (!s->sign_payload) {
        snprintf(sha256, CFS_SHA256_HEX_LEN + 1, "%s", CFS_SIGV4_UNSIGNED_PAYLOAD);
        return 0;
    }
    return cfs_sha256_hex(body ? body : "", n, sha256);
}

/* ------------------------------------------------------------- credentials */

/* The keys requests are signed with live in s->creds (core/cred_cache.h), static ones too.
 * Temporary ones are fetched from credential_source by one op (the others are parked until
 * they come) and refreshed by one op from min(600 s, L/2) before they expire while the
 * others keep signing with them; from min(60 s, L/10) before, they are not used. An op makes
 * at most 3 fetches. */
static const cfs_cred_policy CRED_POLICY = {
    .refresh_margin = 600, .expiry_margin = 60, .claim_timeout = 60, .refresh_backoff = 30,
    .failure_memory = 1, .max_fetches = 3,
};
_Static_assert(CFS_CRED_DERIVED_LEN == CFS_SHA256_LEN, "the signing key is the derived value");

/* Move the keys given as options into the cache (its `where` names the source). */
static int open_creds(s3_backend *s, char *err, size_t errlen)
{
    if (s->source == CRED_WEB_IDENTITY && !s->cred_url &&
        !(s->cred_url = cfs_asprintf("https://sts.%s.amazonaws.com/", s->region)))
        goto oom;
    if (cfs_cred_cache_init(&s->creds, &CRED_POLICY, s->cred_url ? s->cred_url : "the options",
                            cfs_engine_release_parked) < 0)
        goto oom;
    if (s->access_key_id) {
        double life = s->source == CRED_STATIC || !s->expiration
                          ? CFS_CRED_FOREVER : (double)(s->expiration - (int64_t)time(NULL));
        cfs_cred given = { .id = s->access_key_id, .secret = s->secret_access_key,
                           .token = s->session_token };
        s->access_key_id = s->secret_access_key = s->session_token = NULL;
        cfs_cred_cache_seed(&s->creds, &given, life);
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* What one request is signed with: copies taken under the cache's lock. */
typedef struct creds_view {
    char *access_key_id;
    char *session_token;    /* secret, may be NULL */
    unsigned char key[CFS_SHA256_LEN];
    char amz_date[17];
    int64_t now;
    const char *region;
    cfs_op *op;
} creds_view;

static void creds_view_clear(creds_view *v)
{
    free(v->access_key_id);
    cfs_secret_free(v->session_token);
    cfs_secret_wipe(v, sizeof *v);
}

/* cfs_cred_decide's use(): today's signing key (derived once a day, kept with the keys),
 * the key id and the session token. */
static int sign_with(cfs_cred *c, void *ctx)
{
    creds_view *v = ctx;
    if (strncmp(c->derived_tag, v->amz_date, 8) != 0) {
        char date8[9];
        memcpy(date8, v->amz_date, 8);
        date8[8] = '\0';
        if (cfs_sigv4_derive_key(c->secret, date8, v->region, "s3", c->derived) < 0) {
            c->derived_tag[0] = '\0';
            cfs_op_fail(v->op, CFS_EINVALID, "cannot derive the signing key");
            return -1;
        }
        memcpy(c->derived_tag, date8, sizeof date8);
    }
    memcpy(v->key, c->derived, CFS_SHA256_LEN);
    v->access_key_id = strdup(c->id);
    v->session_token = c->token ? strdup(c->token) : NULL;
    if (!v->access_key_id || (c->token && !v->session_token)) {
        cfs_op_fail(v->op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    return 0;
}

/* The request of credential sub-step st->cred_step. */
static int build_cred_request(s3_backend *s, cfs_op *op, s3_state *st, cfs_request *req)
{
    req->method = "GET";
    req->secret = 1;
    if (s->source == CRED_CONTAINER) {
        req->timeout_ms = 2000;
        req->url = strdup(s->cred_url);
        if (!req->url)
            goto oom;
        if (s->cred_auth_file) {
            char *t = cfs_secret_read_file(s->cred_auth_file, 16384);
            if (!t) {
                cfs_op_fail(op, CFS_EAUTH, "cannot read the container authorization token file %.200s",
                            s->cred_auth_file);
                return -1;
            }
            int rc = add_header_line(req, "Authorization", t);
            cfs_secret_free(t);
            if (rc < 0)
                goto oom;
        } else if (s->cred_auth && add_header_line(req, "Authorization", s->cred_auth) < 0) {
            goto oom;
        }
    } else if (s->source == CRED_WEB_IDENTITY) {
        char *t = cfs_secret_read_file(s->cred_auth_file, 65536); /* rotated: read at each fetch */
        if (!t) {
            cfs_op_fail(op, CFS_EAUTH, "cannot read the web identity token file %.200s", s->cred_auth_file);
            return -1;
        }
        req->method = "POST";
        int rc = cfs_aws_web_identity_body(&req->body_owned, s->role_arn, s->role_session, t);
        cfs_secret_free(t);
        req->body = req->body_owned.data;
        req->body_len = req->body_owned.len;
        if (rc < 0 || !(req->url = strdup(s->cred_url)) ||
            cfs_request_header(req, "Content-Type: application/x-www-form-urlencoded; charset=utf-8") < 0 ||
            cfs_request_header(req, "Accept: text/xml") < 0)
            goto oom;
    } else if (st->cred_step == 1) {
        req->timeout_ms = 1000;
        req->method = "PUT";
        req->body = "";
        req->body_len = 0;
        req->url = cfs_asprintf("%s/latest/api/token", s->cred_url);
        if (!req->url || add_header_line(req, "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL) < 0)
            goto oom;
    } else {
        req->timeout_ms = 1000;
        req->url = st->cred_step == 2
                       ? cfs_asprintf("%s/latest/meta-data/iam/security-credentials/", s->cred_url)
                       : cfs_asprintf("%s/latest/meta-data/iam/security-credentials/%s", s->cred_url, st->imds_role);
        if (!req->url || add_header_line(req, "X-aws-ec2-metadata-token", st->imds_token) < 0)
            goto oom;
    }
    if (cfs_op_set_where(op, req->url) < 0)
        goto oom;
    return 0;
oom:
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a credentials request");
    return -1;
}

/* The keys the op's next request is signed with (CFS_CRED_USE, *v filled), or the request
 * of its credential fetch (CFS_CRED_FETCH, in req), or CFS_CRED_WAIT, or CFS_CRED_FAILED. */
static int creds_step(s3_backend *s, cfs_op *op, s3_state *st, cfs_request *req, creds_view *v)
{
    memset(v, 0, sizeof *v);
    v->now = (int64_t)time(NULL);
    v->region = s->region;
    v->op = op;
    if (cfs_sigv4_format_time(v->now, v->amz_date) < 0) {
        cfs_op_fail(op, CFS_EINVALID, "system clock out of range");
        return CFS_CRED_FAILED;
    }
    for (;;) {
        if (!st->cred_step) {
            int d = cfs_cred_decide(&s->creds, &st->ticket, op, sign_with, v);
            if (d != CFS_CRED_FETCH)
                return d;
            st->cred_step = 1;
        }
        if (build_cred_request(s, op, st, req) == 0)
            return CFS_CRED_FETCH;
        cfs_request_clear(req);
        st->cred_step = 0;
        if (cfs_cred_fetch_failed(&s->creds, &st->ticket, op, 0) != CFS_CRED_USE)
            return CFS_CRED_FAILED; /* else an early refresh failed: sign with the current keys */
    }
}

/* The answer to a credential sub-step. */
static cfs_next finish_cred(s3_backend *s, cfs_op *op, s3_state *st, const cfs_response *resp)
{
    cfs_buf *body = resp->body;
    char detail[200] = "";
    int last = s->source != CRED_IMDS || st->cred_step == 3;
    int transient = resp->status >= 500 || resp->status == 429 || resp->status == 408;
    int outcome;
    if (resp->status < 200 || resp->status >= 300) {
        char why[160] = "";
        cfs_aws_creds e;
        if (s->source == CRED_WEB_IDENTITY &&
            cfs_aws_sts_parse(body->data, body->len, &e, why, sizeof why) == 0)
            cfs_aws_creds_clear(&e); /* keys with an error status: not used */
        snprintf(detail, sizeof detail, "HTTP %ld%s%s", resp->status, why[0] ? ": " : "", why);
        goto failed;
    }
    if (!last) {
        /* IMDS token (step 1) or role list (step 2, the first line) */
        size_t n = body->len;
        const char *d = body->data ? body->data : "";
        if (st->cred_step == 2)
            n = strcspn(d, "\r\n") < n ? strcspn(d, "\r\n") : n;
        char *v = strndup(d, n);
        if (!v || !n || !header_safe(v) || (st->cred_step == 2 && strchr(v, '/'))) {
            cfs_secret_free(v);
            snprintf(detail, sizeof detail, "%s", st->cred_step == 1 ? "bad IMDS token" : "no IAM role");
            goto failed;
        }
        if (st->cred_step == 1) {
            cfs_secret_free(st->imds_token);
            st->imds_token = v;
        } else {
            free(st->imds_role);
            st->imds_role = v;
        }
        cfs_secret_wipe(body->data, body->len);
        st->cred_step++;
        return cfs_op_next_step(op, op->step);
    }
    cfs_aws_creds c;
    int rc = (s->source == CRED_WEB_IDENTITY ? cfs_aws_sts_parse : cfs_aws_creds_parse)(
        body->data, body->len, &c, detail, sizeof detail);
    cfs_secret_wipe(body->data, body->len);
    if (rc < 0)
        goto failed;
    cfs_cred k = { .id = c.access_key_id, .secret = c.secret_access_key, .token = c.session_token };
    double life = c.expiration ? (double)(c.expiration - (int64_t)time(NULL)) : CFS_CRED_FOREVER;
    st->cred_step = 0;
    cfs_secret_free(st->imds_token);
    st->imds_token = NULL;
    return cfs_cred_next(op, cfs_cred_fetched(&s->creds, &st->ticket, &k, life, op), op->step);

failed:
    cfs_op_fail(op, transient ? CFS_ETRANSIENT : CFS_EAUTH, "credentials from %s%s: %s", s->cred_url,
                transient ? "" : " refused", detail);
    outcome = cfs_cred_fetch_failed(&s->creds, &st->ticket, op, transient && !cfs_op_last_attempt(op));
    if (outcome != CFS_CRED_FETCH)
        st->cred_step = 0;
    return cfs_cred_next(op, outcome, op->step);
}

/* ------------------------------------------------------------------- build */

/* What one request is, before signing: filled per op kind, then signed and sent by
 * emit_request(). Strings are borrowed (from the op, its state, or `scratch`). */
typedef struct req_spec {
    const char *method;
    cfs_buf path;                       /* raw (unencoded) path */
    cfs_sigv4_pair query[8];            /* raw names and values */
    size_t nq;
    cfs_sigv4_pair headers[MAX_SIGNED_HEADERS];
    size_t nh;
    const char *payload;                /* x-amz-content-sha256 */
    const char *body;
    size_t body_len;
    int no_body;
    char range[96];
    char part_number[24];
    char *scratch;                      /* owned: a string a pair points into */
} req_spec;

static void add_h(req_spec *r, const char *name, const char *value)
{
    if (r->nh < MAX_SIGNED_HEADERS)
        r->headers[r->nh++] = (cfs_sigv4_pair){name, value};
}

static void add_q(req_spec *r, const char *name, const char *value)
{
    if (r->nq < sizeof r->query / sizeof r->query[0])
        r->query[r->nq++] = (cfs_sigv4_pair){name, value};
}

/* Append the query pairs to a URL in the AWS encoding (for unsigned requests). */
static int append_query(cfs_buf *u, const cfs_sigv4_pair *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cfs_buf_append(u, i ? "&" : "?", 1) < 0 ||
            cfs_aws_uri_encode(u, q[i].name, strlen(q[i].name), 0) < 0 ||
            cfs_buf_append(u, "=", 1) < 0 ||
            cfs_aws_uri_encode(u, q[i].value, strlen(q[i].value), 0) < 0)
            return -1;
    }
    return 0;
}

/* Sign the spec (unless anonymous) and fill the engine's request. 0, or -1 after
 * cfs_op_fail(). */
static int emit_request(s3_backend *s, cfs_op *op, cfs_request *req, req_spec *r, const creds_view *cv)
{
    cfs_buf u = {0};
    cfs_sigv4_output sig;
    memset(&sig, 0, sizeof sig);
    req->method = r->method;
    req->body = r->body;
    req->body_len = r->body_len;
    req->no_body = r->no_body;
    if (s->requester_pays)
        add_h(r, "x-amz-request-payer", "requester");
    if (cfs_buf_terminate(&r->path) < 0 || cfs_buf_append_str(&u, s->origin) < 0)
        goto oom;
    if (s->anon) {
        if (cfs_aws_uri_encode(&u, r->path.data, r->path.len, 1) < 0 || append_query(&u, r->query, r->nq) < 0)
            goto oom;
    } else {
        char err[160] = "";
        cfs_sigv4_input in = {
            .method = r->method,
            .path = r->path.data,
            .path_mode = CFS_SIGV4_PATH_S3,
            .query = r->query,
            .n_query = r->nq,
            .headers = r->headers,
            .n_headers = r->nh,
            .payload_hash = r->payload ? r->payload : CFS_SIGV4_EMPTY_SHA256,
            .content_sha256_header = 1,
            .time = cv->now,
            .region = s->region,
            .service = "s3",
            .access_key_id = cv->access_key_id,
            .session_token = cv->session_token,
            .signing_key = cv->key,
        };
        if (cfs_sigv4_sign(&in, &sig, err, sizeof err) < 0) {
            cfs_op_fail(op, CFS_EINVALID, "cannot sign the request: %s", err);
            goto fail;
        }
        if (cfs_buf_append_str(&u, sig.canonical_path) < 0 ||
            (sig.canonical_query[0] && (cfs_buf_append(&u, "?", 1) < 0 ||
                                        cfs_buf_append_str(&u, sig.canonical_query) < 0)))
            goto oom;
    }
    if (cfs_buf_terminate(&u) < 0)
        goto oom;
    req->url = cfs_buf_steal(&u, NULL);
    if (cfs_op_set_where(op, req->url) < 0)
        goto oom;
    for (size_t i = 0; i < r->nh; i++)
        if (add_header_line(req, r->headers[i].name, r->headers[i].value) < 0)
            goto oom;
    if (!s->anon) {
        for (size_t i = 0; i < sig.n_extra_headers; i++) {
            struct curl_slist *l = curl_slist_append(req->headers, sig.extra_headers[i]);
            if (!l)
                goto oom;
            req->headers = l;
        }
        if (add_header_line(req, "Authorization", sig.authorization) < 0)
            goto oom;
    }
    cfs_sigv4_output_free(&sig);
    return 0;
oom:
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
fail:
    cfs_sigv4_output_free(&sig);
    cfs_buf_free(&u);
    return -1;
}

/* The PUT's own requests of a multipart upload (see enum mpu_step). */
static int spec_multipart(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r)
{
    if (op->step == MPU_INITIATE) {
        r->method = "POST";
        r->body = "";
        add_q(r, "uploads", "");
        add_h(r, "Content-Type", "application/octet-stream");
    } else if (op->step == MPU_COMPLETE) {
        if (!st->put_hashed) {
            if (cfs_s3_complete_body(&st->complete, st->etags, st->n_parts) < 0 ||
                hash_body(s, st->complete.data, st->complete.len, st->md5_b64, st->sha256) < 0)
                return -1;
            st->put_hashed = 1;
        }
        r->method = "POST";
        r->body = st->complete.data;
        r->body_len = st->complete.len;
        r->payload = st->sha256;
        add_q(r, "uploadId", st->upload_id);
        add_h(r, "Content-Type", "application/xml");
        add_h(r, "Content-MD5", st->md5_b64);
        if (op->if_none_match)
            add_h(r, "If-None-Match", "*");
    } else if (op->step == MPU_ABORT) {
        r->method = "DELETE";
        add_q(r, "uploadId", st->upload_id);
    } else {
        return -1; /* MPU_PARTS: the parts are child ops; the PUT itself sends nothing */
    }
    return 0;
}

/* UploadPart: a child op holding one slice of its parent's body. */
static int spec_part(s3_state *st, cfs_op *op, req_spec *r)
{
    r->method = "PUT";
    r->body = op->body;
    r->body_len = op->body_len;
    r->payload = st->sha256;
    snprintf(r->part_number, sizeof r->part_number, "%zu", st->part_number);
    add_q(r, "partNumber", r->part_number);
    add_q(r, "uploadId", st->upload->upload_id);
    add_h(r, "Content-MD5", st->md5_b64);
    return 0;
}

/* x-amz-copy-source: "/bucket/key", the key URL-encoded. */
static char *copy_source(const s3_backend *s, const char *source)
{
    cfs_buf v = {0};
    char *key = cfs_asprintf("%s%s", s->prefix, source);
    int rc = key ? 0 : -1;
    if (rc == 0)
        rc = cfs_buf_append(&v, "/", 1) < 0 || cfs_buf_append_str(&v, s->bucket) < 0 ||
                     cfs_buf_append(&v, "/", 1) < 0 || cfs_aws_uri_encode(&v, key, strlen(key), 1) < 0 ||
                     cfs_buf_terminate(&v) < 0 ? -1 : 0;
    free(key);
    if (rc < 0) {
        cfs_buf_free(&v);
        return NULL;
    }
    return cfs_buf_steal(&v, NULL);
}

/* The DeleteObjects document for op->keys (full object keys: the store's prefix added). */
static int delete_document(s3_backend *s, const cfs_op *op, cfs_buf *out)
{
    char **full = calloc(op->n_keys, sizeof *full);
    int rc = full ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < op->n_keys; i++)
        if (!(full[i] = cfs_asprintf("%s%s", s->prefix, op->keys[i])))
            rc = -1;
    if (rc == 0)
        rc = cfs_s3_delete_body(out, (const char *const *)full, op->n_keys);
    for (size_t i = 0; full && i < op->n_keys; i++)
        free(full[i]);
    free(full);
    return rc;
}

/* Hash a PUT body (a single PUT or one part) for Content-MD5 and the payload hash. */
static int s3_prepare(cfs_backend *b, cfs_op *op)
{
    s3_backend *s = (s3_backend *)b;
    s3_state *st = state_of(s, op);
    if (!st || hash_body(s, op->body, op->body_len, st->md5_b64, st->sha256) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory hashing the body");
        return -1;
    }
    st->put_hashed = 1;
    return 0;
}

static int s3_build(cfs_backend *b, cfs_op *op, cfs_request *req)
{
    s3_backend *s = (s3_backend *)b;
    if (op->kind == CFS_OP_RMDIR) {
        op->status = CFS_OK; /* a flat namespace has no directories to remove */
        return 1;
    }
    s3_state *st = state_of(s, op);
    if (!st) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    if (op->kind == CFS_OP_PUT && !st->put_hashed && !is_multipart(s, op)) { /* a PUT or a part */
        if (op->body_len > HASH_INLINE_MAX)
            return CFS_BUILD_PREPARE;
        if (s3_prepare(b, op) < 0)
            return -1;
    }
    creds_view cv;
    memset(&cv, 0, sizeof cv);
    int d = s->anon ? CFS_CRED_USE : creds_step(s, op, st, req, &cv);
    if (d != CFS_CRED_USE) {
        creds_view_clear(&cv);
        return cfs_cred_build_answer(d);
    }

    req_spec r;
    memset(&r, 0, sizeof r);
    add_h(&r, "Host", s->host);
    if (cfs_buf_append_str(&r.path, s->path_base) < 0)
        goto oom;
    if (op->kind == CFS_OP_LIST || op->kind == CFS_OP_DELETE_MANY) {
        if (r.path.len > 1)
            r.path.len--; /* path-style bucket requests are "/bucket", not "/bucket/" */
    } else if (cfs_buf_append_str(&r.path, s->prefix) < 0 || cfs_buf_append_str(&r.path, op->key) < 0) {
        goto oom;
    }

    switch (op->kind) {
    case CFS_OP_GET:
        r.method = "GET";
        if (op->range.kind != CFS_RANGE_NONE) {
            const cfs_range *g = &op->range;
            if (g->kind == CFS_RANGE_BOUNDED)
                snprintf(r.range, sizeof r.range, "bytes=%lld-%lld", (long long)g->start, (long long)g->end - 1);
            else if (g->kind == CFS_RANGE_FROM)
                snprintf(r.range, sizeof r.range, "bytes=%lld-", (long long)g->start);
            else
                snprintf(r.range, sizeof r.range, "bytes=-%lld", (long long)g->length);
            add_h(&r, "Range", r.range);
        }
        break;
    case CFS_OP_HEAD:
        r.method = "HEAD";
        r.no_body = 1;
        break;
    case CFS_OP_PUT:
        if (is_part(op) || is_multipart(s, op)) {
            if ((is_part(op) ? spec_part(st, op, &r) : spec_multipart(s, op, st, &r)) < 0)
                goto oom;
            break;
        }
        r.method = "PUT";
        r.body = op->body ? op->body : "";
        r.body_len = op->body_len;
        r.payload = st->sha256;
        add_h(&r, "Content-Type", "application/octet-stream");
        add_h(&r, "Content-MD5", st->md5_b64);
        if (op->if_none_match)
            add_h(&r, "If-None-Match", "*");
        break;
    case CFS_OP_DELETE:
        /* S3 answers 204 for a missing key too: look first, so a missing key is reported,
         * unless the caller ignores missing keys */
        r.method = looks_before_delete(op) ? "HEAD" : "DELETE";
        r.no_body = looks_before_delete(op);
        break;
    case CFS_OP_LIST:
        if (!(r.scratch = cfs_asprintf("%s%s", s->prefix, op->key)))
            goto oom;
        r.method = "GET";
        add_q(&r, "list-type", "2");
        add_q(&r, "prefix", r.scratch);
        add_q(&r, "encoding-type", "url");
        if (!op->recursive)
            add_q(&r, "delimiter", "/");
        if (st->list_token)
            add_q(&r, "continuation-token", st->list_token);
        break;
    case CFS_OP_RMDIR:
        break; /* handled above */
    case CFS_OP_COPY:
        r.method = "PUT";
        if (!(r.scratch = copy_source(s, op->source)))
            goto oom;
        add_h(&r, "x-amz-copy-source", r.scratch);
        break;
    case CFS_OP_DELETE_MANY:
        if (!st->put_hashed) {
            if (delete_document(s, op, &st->delete_body) < 0 ||
                hash_body(s, st->delete_body.data, st->delete_body.len, st->md5_b64, st->sha256) < 0)
                goto oom;
            st->put_hashed = 1;
        }
        r.method = "POST";
        add_q(&r, "delete", "");
        r.body = st->delete_body.data;
        r.body_len = st->delete_body.len;
        r.payload = st->sha256;
        add_h(&r, "Content-Type", "application/xml");
        add_h(&r, "Content-MD5", st->md5_b64); /* DeleteObjects requires it */
        break;
    }
    int rc = emit_request(s, op, req, &r, &cv);
    cfs_buf_free(&r.path);
    free(r.scratch);
    creds_view_clear(&cv);
    return rc;
oom:
    cfs_buf_free(&r.path);
    free(r.scratch);
    creds_view_clear(&cv);
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
    return -1;
}

/* ------------------------------------------------------------------- finish */

static int code_is(const char *code, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(code, *list))
            return 1;
    return 0;
}

static const char *const RETRY_CODES[] = {
    "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "OperationAborted",
    "RequestTimeTooSkewed", "ThrottlingException", "Throttling", "TooManyRequests", NULL,
};
static const char *const AUTH_CODES[] = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed", "InvalidSecurity", "AllAccessDisabled",
    "AccountProblem", "MissingSecurityHeader", "InvalidClientTokenId", "UnrecognizedClientException",
    "AuthFailure", "Unauthorized", NULL,
};

/* A non-2xx answer: status from the S3 error code if the body has one, else from HTTP. */
static cfs_next s3_error(cfs_op *op, const cfs_response *resp)
{
    cfs_s3_error e;
    int have = resp->body && resp->body->len &&
               cfs_s3_parse_error(resp->body->data, resp->body->len, &e) == 0 && e.code[0];
    cfs_next next = cfs_http_status_outcome(op, resp);
    if (!have)
        return next;
    cfs_status st = op->status;
    if (code_is(e.code, RETRY_CODES)) {
        st = CFS_ETRANSIENT;
        next = CFS_NEXT_RETRY;
    } else if (code_is(e.code, AUTH_CODES)) {
        st = CFS_EAUTH;
        next = CFS_NEXT_DONE;
    } else if (!strcmp(e.code, "NoSuchKey")) {
        st = CFS_ENOTFOUND;
    } else if (!strcmp(e.code, "NoSuchBucket")) {
        st = CFS_EHTTP; /* not a missing key: the store itself is missing */
    } else if (!strcmp(e.code, "PreconditionFailed")) {
        st = CFS_EEXISTS;
    } else if (!strcmp(e.code, "InvalidRange")) {
        st = CFS_ERANGE;
    }
    cfs_op_fail(op, st, "%s: %s (HTTP %ld)", e.code, e.message[0] ? e.message : "no message", resp->status);
    return next;
}

/* A quoted ETag that is a plain MD5 ("hex32"), lowercased into out; 0 if not one. */
static int etag_md5(const char *etag, char out[33])
{
    if (!etag)
        return 0;
    if (!strncmp(etag, "W/", 2))
        return 0;
    size_t n = strlen(etag);
    if (n == 34 && etag[0] == '"' && etag[33] == '"') {
        etag++;
        n = 32;
    }
    if (n != 32)
        return 0;
    for (size_t i = 0; i < 32; i++) {
        char c = etag[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c + 32);
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        out[i] = c;
    }
    out[32] = '\0';
    return 1;
}

/* A whole-object GET whose ETag is a plain MD5: hash the body on a worker thread. */
static cfs_next check_etag(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    char want[33];
    if (!s->verify_etag || op->range.kind != CFS_RANGE_NONE || resp->status != 200 ||
        !etag_md5(resp->etag, want))
        return CFS_NEXT_DONE;
    s3_state *st = state_of(s, op);
    if (!st) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return CFS_NEXT_DONE;
    }
    memcpy(st->etag_md5, want, sizeof want);
    return CFS_NEXT_VERIFY;
}

static cfs_next s3_verify(cfs_backend *b, cfs_op *op)
{
    (void)b;
    const char *want = ((s3_state *)op->backend_state)->etag_md5;
    unsigned char md5[MD5_LEN];
    char got[33];
    if (md5_of(op->data.data ? op->data.data : "", op->data.len, md5) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "cannot compute an MD5");
        return CFS_NEXT_DONE;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < MD5_LEN; i++) {
        got[2 * i] = hex[md5[i] >> 4];
        got[2 * i + 1] = hex[md5[i] & 15];
    }
    got[32] = '\0';
    if (strcmp(got, want) != 0) {
        cfs_op_fail(op, CFS_ECHECKSUM, "body MD5 %s does not match ETag %s (%zu bytes)", got, want,
                    op->data.len);
        return CFS_NEXT_RETRY;
    }
    return CFS_NEXT_DONE;
}

static cfs_next list_page(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    s3_state *st = op->backend_state;
    cfs_s3_list_page page;
    char err[200];
    if (cfs_s3_parse_list(resp->body->data, resp->body->len, &page, err, sizeof err) < 0) {
        cfs_op_fail(op, CFS_EPROTOCOL, "bad ListObjectsV2 response: %s", err);
        return CFS_NEXT_DONE;
    }
    size_t plen = strlen(s->prefix);
    cfs_buf name = {0};
    for (size_t i = 0; i < page.entries.len; i++) {
        const cfs_entry *e = &page.entries.items[i];
        cfs_buf_reset(&name);
        int rc = page.url_encoded ? cfs_url_decode(&name, e->name, strlen(e->name), 1)
                                  : cfs_buf_append_str(&name, e->name);
        if (rc < 0) {
            cfs_op_fail(op, CFS_EPROTOCOL, "bad URL encoding in a listed key");
            goto done;
        }
        if (name.len < plen || memcmp(name.data, s->prefix, plen) != 0)
            continue; /* outside the root: not ours */
        const char *rel = name.data + plen;
        size_t rlen = name.len - plen;
        if (e->is_dir && rlen && rel[rlen - 1] == '/')
            rlen--;
        char kerr[64];
        if (cfs_key_check(rel, rlen, kerr, sizeof kerr) < 0)
            continue; /* directory markers ("a/"), keys this store cannot name */
        if (cfs_entries_add(&op->entries, rel, rlen, e->size, e->is_dir) < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory listing");
            goto done;
        }
    }
    if (page.is_truncated) {
        free(st->list_token);
        st->list_token = page.next_token;
        page.next_token = NULL;
        cfs_buf_free(&name);
        cfs_s3_list_page_free(&page);
        return cfs_op_next_step(op, op->step + 1);
    }
done:
    cfs_buf_free(&name);
    cfs_s3_list_page_free(&page);
    return CFS_NEXT_DONE;
}

/* A multipart upload failed for good: keep the first failure (op's own, unless one was
 * kept already) and abort the upload. */
static cfs_next mpu_abort(cfs_op *op, s3_state *m)
{
    if (!m->fail_status) {
        m->fail_status = op->status != CFS_OK ? op->status : CFS_EPROTOCOL;
        m->fail_http_status = op->http_status;
        m->fail_attempts = op->attempts;
        memcpy(m->fail_message, op->message, sizeof m->fail_message);
        if (op->where && !(m->fail_where = strdup(op->where)))
            m->fail_status = CFS_ENOMEM;
    }
    return cfs_op_next_step(op, MPU_ABORT);
}

/* Attach the next parts as child ops, up to multipart_concurrency in flight. On
 * out-of-memory the failure is kept and no more parts start. */
static void attach_parts(s3_backend *s, cfs_op *op, s3_state *m)
{
    int in_flight = cfs_op_children_running(op);
    for (cfs_op *c = op->children; c; c = c->next)
        in_flight++;
    while (!m->fail_status && in_flight < s->mpu_concurrency && m->parts_started < m->n_parts) {
        size_t off = m->parts_started * m->part_size;
        cfs_op *part = cfs_op_new(CFS_OP_PUT, op->backend, op->key, strlen(op->key));
        s3_state *ps = part ? calloc(1, sizeof *ps) : NULL;
        if (!ps) {
            cfs_op_free(part);
            m->fail_status = CFS_ENOMEM;
            snprintf(m->fail_message, sizeof m->fail_message, "out of memory starting part %zu",
                     m->parts_started + 1);
            return;
        }
        part->body = op->body + off;
        part->body_len = op->body_len - off < m->part_size ? op->body_len - off : m->part_size;
        ps->part_number = ++m->parts_started;
        ps->upload = m;
        part->backend_state = ps;
        part->free_backend_state = state_free;
        part->next = op->children;
        op->children = part;
        in_flight++;
    }
}

/* The PUT's own requests of a multipart upload: initiate, complete, abort. */
static cfs_next mpu_finish(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    s3_state *m = op->backend_state;
    if (op->step == MPU_ABORT) { /* the abort is done (or not): report the failure */
        op->status = m->fail_status;
        op->http_status = m->fail_http_status;
        op->attempts = m->fail_attempts;
        memcpy(op->message, m->fail_message, sizeof m->fail_message);
        if (m->fail_where && cfs_op_set_where(op, m->fail_where) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return CFS_NEXT_DONE;
    }
    int ok = resp->status >= 200 && resp->status < 300;
    cfs_s3_error e;
    memset(&e, 0, sizeof e);
    /* CompleteMultipartUpload can answer 200 with an <Error> body */
    if (ok && op->step == MPU_COMPLETE && resp->body && resp->body->len &&
        cfs_s3_parse_error(resp->body->data, resp->body->len, &e) == 0 && e.code[0])
        ok = 0;
    if (!ok) {
        cfs_next next = s3_error(op, resp);
        if (op->status == CFS_OK) /* a 200 with an error body */
            cfs_op_fail(op, CFS_ETRANSIENT, "%s: %s (in a 200 answer)", e.code, e.message);
        if (resp->status >= 200 && resp->status < 300 && !strcmp(e.code, "InternalError"))
            next = CFS_NEXT_RETRY;
        if (op->step == MPU_INITIATE)
            return next; /* nothing uploaded yet: nothing to abort */
        if (next == CFS_NEXT_RETRY && !cfs_op_last_attempt(op))
            return CFS_NEXT_RETRY;
        return mpu_abort(op, m);
    }
    if (op->step == MPU_COMPLETE)
        return CFS_NEXT_DONE;
    char err[200];
    if (cfs_s3_parse_upload_id(resp->body->data, resp->body->len, &m->upload_id, err, sizeof err) < 0) {
        cfs_op_fail(op, CFS_EPROTOCOL, "bad CreateMultipartUpload answer: %s", err);
        return CFS_NEXT_DONE;
    }
    op->step = MPU_PARTS;
    attach_parts(s, op, m);
    return op->children ? CFS_NEXT_CHILDREN : mpu_abort(op, m);
}

/* UploadPart's answer, for the part's child op. */
static cfs_next part_finish(cfs_op *op, const cfs_response *resp)
{
    s3_state *st = op->backend_state;
    if (resp->status < 200 || resp->status >= 300)
        return s3_error(op, resp);
    if (!resp->etag) {
        cfs_op_fail(op, CFS_EPROTOCOL, "no ETag for part %zu", st->part_number);
        return CFS_NEXT_DONE;
    }
    free(st->part_etag);
    if (!(st->part_etag = strdup(resp->etag)))
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
    return CFS_NEXT_DONE;
}

/* A part is back: keep its ETag (or the first failure), start the next parts; once all
 * are back, complete the upload (or abort it). */
static cfs_next s3_child_done(cfs_backend *b, cfs_op *op, cfs_op *part)
{
    s3_backend *s = (s3_backend *)b;
    s3_state *m = op->backend_state, *ps = part->backend_state;
    if (part->status == CFS_OK) {
        m->etags[ps->part_number - 1] = ps->part_etag;
        ps->part_etag = NULL;
    } else if (!m->fail_status) {
        m->fail_status = part->status;
        m->fail_http_status = part->http_status;
        m->fail_attempts = part->attempts;
        snprintf(m->fail_message, sizeof m->fail_message, "part %zu of %zu: %.200s", ps->part_number,
                 m->n_parts, part->message);
        m->fail_where = part->where; /* reported once the upload is aborted */
        part->where = NULL;
    }
    cfs_op_free(part);
    attach_parts(s, op, m);
    if (op->children || cfs_op_children_running(op))
        return CFS_NEXT_CHILDREN;
    return m->fail_status ? mpu_abort(op, m) : cfs_op_next_step(op, MPU_COMPLETE);
}

typedef struct delete_errors {
    cfs_op *op;
    size_t prefix_len;
} delete_errors;

static int note_delete_error(void *ctx, const char *key, const char *code, const char *message)
{
    cfs_op *op = ((delete_errors *)ctx)->op;
    size_t plen = ((delete_errors *)ctx)->prefix_len;
    char detail[sizeof op->message];
    snprintf(detail, sizeof detail, "%s: %s", code[0] ? code : "error", message[0] ? message : "no message");
    cfs_status st = code_is(code, AUTH_CODES) ? CFS_EAUTH
                  : code_is(code, RETRY_CODES) ? CFS_ETRANSIENT : CFS_EHTTP;
    /* the server names full object keys: report them as the store's keys */
    const char *rel = strlen(key) >= plen ? key + plen : key;
    return cfs_entries_add_failure(&op->entries, rel, st, detail);
}

/* DeleteObjects answers 200 with the keys it could not delete (quiet mode). */
static cfs_next delete_result(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    char err[200];
    delete_errors ctx = { op, strlen(s->prefix) };
    cfs_entries_free(&op->entries);
    if (cfs_s3_parse_delete_result(resp->body->data ? resp->body->data : "", resp->body->len,
                                   note_delete_error, &ctx, err, sizeof err) < 0)
        cfs_op_fail(op, CFS_EPROTOCOL, "bad DeleteObjects response: %s", err);
    return CFS_NEXT_DONE;
}

/* CopyObject can fail after its 200 has been sent: the body is then an <Error>. */
static cfs_next copy_result(cfs_op *op, const cfs_response *resp)
{
    cfs_s3_error e;
    if (!resp->body->len || cfs_s3_parse_error(resp->body->data, resp->body->len, &e) < 0 || !e.code[0])
        return CFS_NEXT_DONE;
    cfs_status st = code_is(e.code, RETRY_CODES) ? CFS_ETRANSIENT
                  : code_is(e.code, AUTH_CODES) ? CFS_EAUTH : CFS_EHTTP;
    cfs_op_fail(op, st, "%s: %s (in a 200 answer)", e.code, e.message[0] ? e.message : "no message");
    return st == CFS_ETRANSIENT ? CFS_NEXT_RETRY : CFS_NEXT_DONE;
}

static cfs_next s3_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp)
{
    s3_backend *s = (s3_backend *)b;
    s3_state *st = op->backend_state;
    if (st && st->cred_step)
        return finish_cred(s, op, st, resp);
    if (is_part(op))
        return part_finish(op, resp);
    if (is_multipart(s, op))
        return mpu_finish(s, op, resp);
    if (resp->status < 200 || resp->status >= 300)
        return s3_error(op, resp);
    cfs_next next = cfs_http_status_outcome(op, resp);
    if (next != CFS_NEXT_DONE || op->status != CFS_OK)
        return next;
    switch (op->kind) {
    case CFS_OP_GET:
        return check_etag(s, op, resp);
    case CFS_OP_DELETE:
        if (looks_before_delete(op))
            return cfs_op_next_step(op, 1); /* it exists: now delete it */
        return CFS_NEXT_DONE;
    case CFS_OP_LIST:
        return list_page(s, op, resp);
    case CFS_OP_DELETE_MANY:
        return delete_result(s, op, resp);
    case CFS_OP_COPY:
        return copy_result(op, resp);
    default:
        return CFS_NEXT_DONE;
    }
}

static int s3_configure_handle(cfs_backend *b, CURL *easy)
{
    return cfs_tls_configure(&((s3_backend *)b)->tls, easy);
}

static const char *s3_url(cfs_backend *b)
{
    return ((s3_backend *)b)->url;
}

static const char *const s3_schemes[] = {"s3", NULL};

static const char *const s3_secret_options[] = {"secret_access_key", "session_token", "credential_token",
                                                NULL};

const cfs_backend_ops cfs_s3_backend = {
    .name = "s3",
    .schemes = s3_schemes,
    .delete_many_max = 1000, /* DeleteObjects' limit */
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT | CFS_CAP_SERVER_COPY,
    .secret_options = s3_secret_options,
    .open = s3_open,
    .close = s3_close,
    .build = s3_build,
    .finish = s3_finish,
    .verify = s3_verify,
    .child_done = s3_child_done,
    .prepare = s3_prepare,
    .configure_handle = s3_configure_handle,
    .url = s3_url,
};
