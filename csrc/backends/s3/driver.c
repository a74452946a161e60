/* s3://bucket/prefix: Amazon S3 and S3-compatible services (MinIO, Ceph, R2, moto...).
 *
 * Addressing: virtual-hosted on AWS (https://bucket.s3.REGION.amazonaws.com/key), path-style
 * for a custom endpoint_url (http://host:port/bucket/key) unless addressing_style says
 * otherwise. Requests are signed with SigV4 (sigv4.c) unless anon; listings are
 * ListObjectsV2 pages parsed by xml.c; S3 error bodies map to op statuses with the S3
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
 * bodies, else UNSIGNED-PAYLOAD; Content-MD5 is always sent; by default only over http),
 * checksum_algorithm (crc32c: PUTs and parts carry x-amz-checksum-crc32c, multipart uploads
 * a FULL_OBJECT one; none: no additional checksums, for a service that refuses them),
 * verify_checksum (whole-object GETs ask for x-amz-checksum-* and are checked against a
 * FULL_OBJECT one), verify_etag (else against a plain-MD5 ETag; response.c says what is
 * checked when), multipart_threshold, multipart_chunksize, multipart_concurrency,
 * ca_bundle, verify, and the credential_* options above.
 *
 * This file: opening (URL, options, addressing) and closing the backend, the per-op state,
 * the credentials, and the ops table. Building requests is in request.c, reading
 * answers in response.c, multipart uploads in multipart.c (s3_internal.h lists them). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backends/s3/credentials.h"
#include "backends/s3/s3_internal.h"
#include "core/cred_cache.h"
#include "util/keys.h"
#include "util/secret.h"

#define MAX_PARTS 10000
#define MIB (1024L * 1024L)

#define IMDS_TOKEN_TTL "21600"

/* ------------------------------------------------------------------ helpers */

/* Header lines of any length (session tokens can be long), straight onto the list. */
int add_header_line(cfs_request *req, const char *name, const char *value)
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
            snprintf(err, errlen,
                     "credential_url, credential_token and credential_role_arn need "
                     "credential_source");
            return -1;
        }
        s->source = CRED_STATIC;
    } else if (!strcmp(src, "container") || !strcmp(src, "imds") || !strcmp(src, "web_identity")) {
        s->source = !strcmp(src, "container") ? CRED_CONTAINER
                    : !strcmp(src, "imds")    ? CRED_IMDS
                                              : CRED_WEB_IDENTITY;
        if (s->source == CRED_WEB_IDENTITY
                ? (s->cred_url && strncmp(s->cred_url, "http", 4) != 0)
                : (!s->cred_url || strncmp(s->cred_url, "http", 4) != 0)) {
            snprintf(err, errlen, "credential_source=%s needs an http(s) credential_url", src);
            return -1;
        }
        if (s->cred_url && strpbrk(s->cred_url, " \r\n")) {
            snprintf(err, errlen, "credential_url has spaces or line breaks");
            return -1;
        }
        if (s->source == CRED_WEB_IDENTITY && (!s->role_arn || !s->cred_auth_file)) {
            snprintf(err, errlen,
                     "credential_source=web_identity needs credential_role_arn and "
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
        snprintf(err, errlen,
                 "credential_source must be container, imds or web_identity, not %.40s", src);
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

static int open_oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* s3://bucket[/prefix...]: the bucket, the store's root inside it ("" or "a/b/") and the
 * canonical URL. */
static int open_url(s3_backend *s, const char *url, char *err, size_t errlen)
{
    const char *p = url + strlen("s3://");
    size_t blen = strcspn(p, "/");
    s->bucket = strndup(p, blen);
    if (!s->bucket)
        return open_oom(err, errlen);
    if (!valid_bucket(s->bucket)) {
        snprintf(err, errlen, "invalid bucket name in %.200s", url);
        return -1;
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
        return -1;
    }
    s->prefix = rlen ? cfs_asprintf("%.*s/", (int)rlen, root) : strdup("");
    s->url = rlen ? cfs_asprintf("s3://%s/%.*s", s->bucket, (int)rlen, root)
                  : cfs_asprintf("s3://%s", s->bucket);
    if (!s->prefix || !s->url)
        return open_oom(err, errlen);
    return 0;
}

/* The options but addressing: strings, TLS, flags, multipart sizes, the credential source
 * and the region. *endpoint (the caller frees it) and *style (borrowed from opts) are
 * left for open_addressing(). */
static int open_options(s3_backend *s, cfs_options *opts, char **endpoint, const char **style,
                        char *err, size_t errlen)
{
    if (take_string(opts, "endpoint_url", endpoint) < 0 ||
        take_string(opts, "region", &s->region) < 0 ||
        take_string(opts, "access_key_id", &s->access_key_id) < 0 ||
        take_string(opts, "secret_access_key", &s->secret_access_key) < 0 ||
        take_string(opts, "session_token", &s->session_token) < 0)
        return open_oom(err, errlen);
    if (cfs_tls_take_options(&s->tls, opts, err, errlen) < 0)
        return -1;
    if (cfs_options_take_bool(opts, "anon", &s->anon, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "requester_pays", &s->requester_pays, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "sign_payload", &s->sign_payload, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "verify_etag", &s->verify_etag, err, errlen) < 0 ||
        cfs_options_take_bool(opts, "verify_checksum", &s->verify_checksum, err, errlen) < 0)
        return -1;
    /* "none" (or False): a service that refuses x-amz-checksum-* headers. None is no option
     * at all, as everywhere: the default. */
    const char *algo = cfs_options_take(opts, "checksum_algorithm");
    if (algo && !strcasecmp(algo, "crc32c")) {
        s->checksum_crc32c = 1;
    } else if (algo && (!strcasecmp(algo, "none") || !strcasecmp(algo, "false"))) {
        s->checksum_crc32c = 0;
    } else if (algo) {
        snprintf(err, errlen, "checksum_algorithm must be crc32c or none, not %.40s", algo);
        return -1;
    }
    long threshold = 128 * MIB, chunk = 16 * MIB, parts_at_once = 8;
    if (cfs_options_take_long(opts, "multipart_threshold", 5 * MIB, LONG_MAX, &threshold, err,
                              errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_chunksize", 5 * MIB, 5 * 1024 * MIB, &chunk, err,
                              errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_concurrency", 1, 256, &parts_at_once, err, errlen) <
            0)
        return -1;
    /* S3 copies at most 5 GiB in one CopyObject; a larger source goes in UploadPartCopy
     * parts (lower thresholds are for tests against small objects) */
    long copy_threshold = 5 * 1024 * MIB, copy_chunk = 512 * MIB;
    if (cfs_options_take_long(opts, "multipart_copy_threshold", 5 * MIB, 5 * 1024 * MIB,
                              &copy_threshold, err, errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_copy_chunksize", 5 * MIB, 5 * 1024 * MIB,
                              &copy_chunk, err, errlen) < 0)
        return -1;
    s->mpu_copy_threshold = copy_threshold;
    s->mpu_copy_chunksize = (size_t)copy_chunk;
    s->mpu_threshold = (size_t)threshold;
    s->mpu_chunksize = (size_t)chunk;
    s->mpu_concurrency = (int)parts_at_once;
    if (open_cred_source(s, opts, err, errlen) < 0)
        return -1;
    *style = cfs_options_take(opts, "addressing_style");
    if (*style && strcmp(*style, "auto") && strcmp(*style, "path") && strcmp(*style, "virtual")) {
        snprintf(err, errlen, "addressing_style must be auto, path or virtual, not %.40s", *style);
        return -1;
    }
    if (!s->region && !(s->region = strdup("us-east-1")))
        return open_oom(err, errlen);
    for (const char *r = s->region; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-')) {
            snprintf(err, errlen, "invalid region %.60s", s->region);
            return -1;
        }
    return 0;
}

static int open_creds(s3_backend *s, char *err, size_t errlen); /* credentials below */

/* Credentials: both halves, or anonymous (or none yet, to be fetched); then the cache. */
static int open_credentials(s3_backend *s, char *err, size_t errlen)
{
    if (s->anon) {
        free(s->access_key_id);
        cfs_secret_free(s->secret_access_key);
        cfs_secret_free(s->session_token);
        s->access_key_id = s->secret_access_key = s->session_token = NULL;
    } else if (!s->access_key_id != !s->secret_access_key ||
               (s->source == CRED_STATIC && !s->access_key_id)) {
        snprintf(err, errlen, "%s",
                 s->access_key_id || s->secret_access_key
                     ? "access_key_id and secret_access_key go together"
                     : "no AWS credentials: give access_key_id and secret_access_key (or set "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE), or anon=True "
                       "for a public bucket");
        return -1;
    } else if (!header_safe(s->access_key_id) || !header_safe(s->session_token)) {
        snprintf(err, errlen, "credentials hold characters a header cannot carry");
        return -1;
    }
    return s->anon ? 0 : open_creds(s, err, errlen);
}

/* Where requests go: the origin, the Host header and the path before the key, for a
 * virtual-hosted or a path-style bucket. */
static int open_addressing(s3_backend *s, const char *endpoint, const char *style, char *err,
                           size_t errlen)
{
    char *scheme = NULL, *authority = NULL;
    int rc = -1;
    int virtual_host;
    if (endpoint) {
        if (parse_endpoint(endpoint, &scheme, &authority, err, errlen) < 0)
            goto done;
        virtual_host = style && !strcmp(style, "virtual");
    } else {
        if (!(scheme = strdup("https")) ||
            !(authority = cfs_asprintf("s3.%s.amazonaws.com", s->region))) {
            open_oom(err, errlen);
            goto done;
        }
        virtual_host = style ? (!strcmp(style, "virtual") ||
                                (!strcmp(style, "auto") && dns_compatible(s->bucket)))
                             : dns_compatible(s->bucket);
    }
    if (virtual_host && !dns_compatible(s->bucket) && strchr(s->bucket, '_')) {
        snprintf(err, errlen, "bucket %.100s cannot be a host name: use addressing_style='path'",
                 s->bucket);
        goto done;
    }
    if (virtual_host) {
        s->host = cfs_asprintf("%s.%s", s->bucket, authority);
        s->path_base = strdup("/");
    } else {
        s->host = strdup(authority);
        s->path_base = cfs_asprintf("/%s/", s->bucket);
    }
    if (!s->host || !s->path_base || !(s->origin = cfs_asprintf("%s://%s", scheme, s->host))) {
        open_oom(err, errlen);
        goto done;
    }
    /* As botocore does: over https, where TLS protects the body and Content-MD5 (and the
     * CRC32C) are sent, the payload hash is UNSIGNED-PAYLOAD, sparing a SHA-256 pass over
     * every byte uploaded; over plain http the body's SHA-256 is signed. */
    if (s->sign_payload < 0)
        s->sign_payload = strcmp(scheme, "https") != 0;
    rc = 0;
done:
    free(scheme);
    free(authority);
    return rc;
}

static cfs_backend *s3_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    s3_backend *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &cfs_s3_backend;
    s->sign_payload = -1; /* not given: decided by the endpoint's scheme (open_addressing) */
    s->verify_etag = 1;
    s->checksum_crc32c = 1;
    s->verify_checksum = 1;
    char *endpoint = NULL;
    const char *style = NULL;
    if (open_url(s, url, err, errlen) < 0 ||
        open_options(s, opts, &endpoint, &style, err, errlen) < 0 ||
        open_credentials(s, err, errlen) < 0 ||
        open_addressing(s, endpoint, style, err, errlen) < 0) {
        free(endpoint);
        s3_close(&s->base);
        return NULL;
    }
    free(endpoint);
    return &s->base;
}

/* ---------------------------------------------------------------- op state */

void s3_state_free(void *p)
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
    free(st->part_crc32c);
    free(st->part_etag);
    free(st->fail_where);
    cfs_buf_free(&st->complete);
    cfs_buf_free(&st->delete_body);
    free(st);
}

s3_state *s3_state_of(s3_backend *s, cfs_op *op)
{
    if (op->backend_state)
        return op->backend_state;
    s3_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    if (s3_is_multipart(s, op)) {
        size_t len = s3_multipart_len(op);
        st->part_size = op->kind == CFS_OP_COPY ? s->mpu_copy_chunksize : s->mpu_chunksize;
        if (len / st->part_size >= MAX_PARTS)
            st->part_size = len / MAX_PARTS + 1;
        st->n_parts = (len + st->part_size - 1) / st->part_size;
        if (st->n_parts == 0)
            st->n_parts = 1;
        st->etags = calloc(st->n_parts, sizeof *st->etags);
        st->part_crc32c = calloc(st->n_parts, sizeof *st->part_crc32c);
        if (!st->etags || !st->part_crc32c) {
            free(st->etags);
            free(st->part_crc32c);
            free(st);
            return NULL;
        }
        if (op->kind == CFS_OP_COPY)
            op->step = MPU_HEAD_SOURCE; /* its attributes first, then the upload */
    }
    op->backend_state = st;
    op->free_backend_state = s3_state_free;
    return st;
}

/* ------------------------------------------------------------- credentials */

/* The keys requests are signed with live in s->creds (core/cred_cache.h), static ones too.
 * Temporary ones are fetched from credential_source by one op (the others are parked until
 * they come) and refreshed by one op from min(600 s, L/2) before they expire while the
 * others keep signing with them; from min(60 s, L/10) before, they are not used. An op makes
 * at most 3 fetches. */
static const cfs_cred_policy CRED_POLICY = {
    .refresh_margin = 600,
    .expiry_margin = 60,
    .claim_timeout = 60,
    .refresh_backoff = 30,
    .failure_memory = 1,
    .max_fetches = 3,
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
                          ? CFS_CRED_FOREVER
                          : (double)(s->expiration - (int64_t)time(NULL));
        cfs_cred given = { .id = s->access_key_id,
                           .secret = s->secret_access_key,
                           .token = s->session_token };
        s->access_key_id = s->secret_access_key = s->session_token = NULL;
        cfs_cred_cache_seed(&s->creds, &given, life);
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void creds_view_clear(creds_view *v)
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
                cfs_op_fail(op, CFS_EAUTH,
                            "cannot read the container authorization token file %.200s",
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
            cfs_op_fail(op, CFS_EAUTH, "cannot read the web identity token file %.200s",
                        s->cred_auth_file);
            return -1;
        }
        req->method = "POST";
        int rc = cfs_aws_web_identity_body(&req->body_owned, s->role_arn, s->role_session, t);
        cfs_secret_free(t);
        req->body = req->body_owned.data;
        req->body_len = req->body_owned.len;
        if (rc < 0 || !(req->url = strdup(s->cred_url)) ||
            cfs_request_header(
                req, "Content-Type: application/x-www-form-urlencoded; charset=utf-8") < 0 ||
            cfs_request_header(req, "Accept: text/xml") < 0)
            goto oom;
    } else if (st->cred_step == 1) {
        req->timeout_ms = 1000;
        req->method = "PUT";
        req->body = "";
        req->body_len = 0;
        req->url = cfs_asprintf("%s/latest/api/token", s->cred_url);
        if (!req->url ||
            add_header_line(req, "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL) < 0)
            goto oom;
    } else {
        req->timeout_ms = 1000;
        req->url = st->cred_step == 2
                       ? cfs_asprintf("%s/latest/meta-data/iam/security-credentials/", s->cred_url)
                       : cfs_asprintf("%s/latest/meta-data/iam/security-credentials/%s",
                                      s->cred_url, st->imds_role);
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

int creds_step(s3_backend *s, cfs_op *op, s3_state *st, cfs_request *req, creds_view *v)
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

cfs_next finish_cred(s3_backend *s, cfs_op *op, s3_state *st, const cfs_response *resp)
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
            snprintf(detail, sizeof detail, "%s",
                     st->cred_step == 1 ? "bad IMDS token" : "no IAM role");
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
    cfs_op_fail(op, transient ? CFS_ETRANSIENT : CFS_EAUTH, "credentials from %s%s: %s",
                s->cred_url, transient ? "" : " refused", detail);
    outcome =
        cfs_cred_fetch_failed(&s->creds, &st->ticket, op, transient && !cfs_op_last_attempt(op));
    if (outcome != CFS_CRED_FETCH)
        st->cred_step = 0;
    return cfs_cred_next(op, outcome, op->step);
}

/* ---------------------------------------------------------------- ops table */

static int s3_configure_handle(cfs_backend *b, CURL *easy)
{
    return cfs_tls_configure(&((s3_backend *)b)->tls, easy);
}

static const char *s3_url(cfs_backend *b)
{
    return ((s3_backend *)b)->url;
}

/* The host of an origin without a leading "bucket." (virtual-hosted addressing). */
static const char *service_host(const s3_backend *s)
{
    const char *h = s->host;
    size_t n = strlen(s->bucket);
    if (!strncmp(h, s->bucket, n) && h[n] == '.')
        return h + n + 1;
    return h;
}

int s3_can_copy_from(const cfs_backend *dst, const cfs_backend *src)
{
    if (dst->ops != src->ops)
        return 0;
    const s3_backend *a = (const s3_backend *)dst, *b = (const s3_backend *)src;
    return !strcmp(a->region, b->region) && !strcmp(service_host(a), service_host(b)) &&
           !strncmp(a->origin, b->origin, 5) /* http: or https: alike */ && a->anon == b->anon;
}

static const char *const s3_schemes[] = { "s3", NULL };

/* The response headers s3_finish reads (cfs_response.captured, in the order of the
 * S3_CAPTURE_* indices in s3_internal.h). */
static const char *const s3_response_headers[] = { "x-amz-checksum-crc32c", "x-amz-checksum-type",
                                                   NULL };

static const char *const s3_secret_options[] = { "secret_access_key", "session_token",
                                                 "credential_token", NULL };

const cfs_backend_ops cfs_s3_backend = {
    .name = "s3",
    .schemes = s3_schemes,
    .delete_many_max = 1000, /* DeleteObjects' limit */
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT | CFS_CAP_SERVER_COPY | CFS_CAP_CONTENT_TYPE |
                    CFS_CAP_OBJECT_ATTRS | CFS_CAP_STORAGE_CLASS,
    .secret_options = s3_secret_options,
    .discover_options = "cloudfiles_store._aws:s3_backend_options", /* AWS config and env */
    .response_headers = s3_response_headers,
    .open = s3_open,
    .close = s3_close,
    .build = s3_build,
    .finish = s3_finish,
    .verify = s3_verify,
    .child_done = s3_child_done,
    .prepare = s3_prepare,
    .can_copy_from = s3_can_copy_from,
    .configure_handle = s3_configure_handle,
    .url = s3_url,
};
