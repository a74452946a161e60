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
 * Credentials arrive as options (the Python layer, cloudfiles_store/_aws.py, finds them the
 * AWS way). Temporary ones from the container endpoint or the instance metadata service
 * (credential_source = container | imds, credential_url, credential_expiration...) are
 * refreshed here before they expire: the fetch is one more step of the op that needs it,
 * sent through the engine like any request; one op refreshes ahead of time while the
 * others keep signing with the current key.
 *
 * Options: endpoint_url, region, addressing_style (auto|path|virtual), access_key_id,
 * secret_access_key, session_token, anon, requester_pays, sign_payload (real SHA-256 of PUT
 * bodies, else UNSIGNED-PAYLOAD; Content-MD5 is always sent), checksum_algorithm (crc32c:
 * PUTs and parts carry x-amz-checksum-crc32c, multipart uploads a FULL_OBJECT one; none:
 * no additional checksums, for a service that refuses them), verify_checksum (whole-object
 * GETs ask for x-amz-checksum-* and are checked against a FULL_OBJECT one), verify_etag
 * (else against a plain-MD5 ETag; response.c says what is checked when), multipart_threshold,
 * multipart_chunksize, multipart_concurrency, ca_bundle, verify, and the credential_*
 * options above.
 *
 * This file: opening (URL, options, addressing) and closing the backend, the per-op state,
 * the credential refresh, and the ops table. Building requests is in request.c, reading
 * answers in response.c, multipart uploads in multipart.c (s3_internal.h lists them). */
#include <openssl/evp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backends/s3/credentials.h"
#include "backends/s3/s3_internal.h"
#include "util/keys.h"

#define MAX_PARTS 10000
#define MIB (1024L * 1024L)

/* Temporary credentials: one op refreshes them from ADVISORY_MARGIN seconds before their
 * expiry (the others keep using them); from MANDATORY_MARGIN on, they are not used. */
#define ADVISORY_MARGIN 600
#define MANDATORY_MARGIN 60
#define REFRESH_CLAIM_TIMEOUT 60.0  /* an op refreshing longer than this has given up */
#define REFRESH_BACKOFF 30          /* after a failed early refresh, seconds before the next */
#define IMDS_TOKEN_TTL "21600"

/* ------------------------------------------------------------------ helpers */

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Lock the credentials. In a forked child the early refresh a parent's thread had
 * claimed will never finish there: forget the claim. */
static void creds_lock(s3_backend *s)
{
    if (cfs_fork_mutex_lock(&s->lock))
        s->refresh_claimed = 0;
}

/* Header lines of any length (session tokens can be long), straight onto the list. */
int add_header_line(cfs_request *req, const char *name, const char *value)
{
    char *line = cfs_asprintf("%s: %s", name, value);
    if (!line)
        return -1;
    struct curl_slist *l = curl_slist_append(req->headers, line);
    OPENSSL_cleanse(line, strlen(line)); /* may hold a token */
    free(line);
    if (!l)
        return -1;
    req->headers = l;
    return 0;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
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
    free_secret(s->cred_auth);
    free(s->cred_auth_file);
    free(s->access_key_id);
    free_secret(s->secret_access_key);
    free_secret(s->session_token);
    OPENSSL_cleanse(s->signing_key, sizeof s->signing_key);
    cfs_fork_mutex_destroy(&s->lock);
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
        take_string(opts, "credential_token_file", &s->cred_auth_file) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!src || !*src || !strcmp(src, "static")) {
        if (s->cred_url || s->cred_auth || s->cred_auth_file) {
            snprintf(err, errlen, "credential_url/credential_token need credential_source");
            return -1;
        }
        s->source = CRED_STATIC;
    } else if (!strcmp(src, "container") || !strcmp(src, "imds")) {
        s->source = !strcmp(src, "container") ? CRED_CONTAINER : CRED_IMDS;
        if (!s->cred_url || strncmp(s->cred_url, "http", 4) != 0 || strpbrk(s->cred_url, " \r\n")) {
            snprintf(err, errlen, "credential_source=%s needs an http(s) credential_url", src);
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
        snprintf(err, errlen, "credential_source must be container or imds, not %.40s", src);
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
    s->url = rlen ? cfs_asprintf("s3://%s/%.*s", s->bucket, (int)rlen, root) : cfs_asprintf("s3://%s", s->bucket);
    if (!s->prefix || !s->url)
        return open_oom(err, errlen);
    return 0;
}

/* The options but addressing: strings, TLS, flags, multipart sizes, the credential source
 * and the region. *endpoint (the caller frees it) and *style (borrowed from opts) are
 * left for open_addressing(). */
static int open_options(s3_backend *s, cfs_options *opts, char **endpoint, const char **style, char *err,
                        size_t errlen)
{
    if (take_string(opts, "endpoint_url", endpoint) < 0 || take_string(opts, "region", &s->region) < 0 ||
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
    if (cfs_options_take_long(opts, "multipart_threshold", 5 * MIB, LONG_MAX, &threshold, err, errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_chunksize", 5 * MIB, 5 * 1024 * MIB, &chunk, err, errlen) < 0 ||
        cfs_options_take_long(opts, "multipart_concurrency", 1, 256, &parts_at_once, err, errlen) < 0)
        return -1;
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

/* Credentials: both halves, or anonymous. */
static int open_credentials(s3_backend *s, char *err, size_t errlen)
{
    if (s->anon) {
        free(s->access_key_id);
        free_secret(s->secret_access_key);
        free_secret(s->session_token);
        s->access_key_id = s->secret_access_key = s->session_token = NULL;
    } else if (!s->access_key_id || !s->secret_access_key) {
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
    return 0;
}

/* Where requests go: the origin, the Host header and the path before the key, for a
 * virtual-hosted or a path-style bucket. */
static int open_addressing(s3_backend *s, const char *endpoint, const char *style, char *err, size_t errlen)
{
    char *scheme = NULL, *authority = NULL;
    int rc = -1;
    int virtual_host;
    if (endpoint) {
        if (parse_endpoint(endpoint, &scheme, &authority, err, errlen) < 0)
            goto done;
        virtual_host = style && !strcmp(style, "virtual");
    } else {
        if (!(scheme = strdup("https")) || !(authority = cfs_asprintf("s3.%s.amazonaws.com", s->region))) {
            open_oom(err, errlen);
            goto done;
        }
        virtual_host = style ? (!strcmp(style, "virtual") ||
                                (!strcmp(style, "auto") && dns_compatible(s->bucket)))
                             : dns_compatible(s->bucket);
    }
    if (virtual_host && !dns_compatible(s->bucket) && strchr(s->bucket, '_')) {
        snprintf(err, errlen, "bucket %.100s cannot be a host name: use addressing_style='path'", s->bucket);
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
    s->sign_payload = 1;
    s->verify_etag = 1;
    s->checksum_crc32c = 1;
    s->verify_checksum = 1;
    if (cfs_fork_mutex_init(&s->lock) < 0) {
        free(s);
        snprintf(err, errlen, "cannot create a mutex");
        return NULL;
    }
    char *endpoint = NULL;
    const char *style = NULL;
    if (open_url(s, url, err, errlen) < 0 || open_options(s, opts, &endpoint, &style, err, errlen) < 0 ||
        open_credentials(s, err, errlen) < 0 || open_addressing(s, endpoint, style, err, errlen) < 0) {
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
    free_secret(st->imds_token);
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
        st->part_size = s->mpu_chunksize;
        if (op->body_len / st->part_size >= MAX_PARTS)
            st->part_size = op->body_len / MAX_PARTS + 1;
        st->n_parts = (op->body_len + st->part_size - 1) / st->part_size;
        st->etags = calloc(st->n_parts, sizeof *st->etags);
        st->part_crc32c = calloc(st->n_parts, sizeof *st->part_crc32c);
        if (!st->etags || !st->part_crc32c) {
            free(st->etags);
            free(st->part_crc32c);
            free(st);
            return NULL;
        }
    }
    op->backend_state = st;
    op->free_backend_state = s3_state_free;
    return st;
}

/* ------------------------------------------------------------- credentials */

void creds_view_clear(creds_view *v)
{
    free(v->access_key_id);
    free_secret(v->session_token);
    OPENSSL_cleanse(v->key, sizeof v->key);
    memset(v, 0, sizeof *v);
}

/* Sign with the current credentials, or fetch new ones first (this op). Under the lock:
 * copies the key id, token and today's signing key into *v. */
int creds_decide(s3_backend *s, s3_state *st, creds_view *v, cfs_op *op)
{
    memset(v, 0, sizeof *v);
    v->now = (int64_t)time(NULL);
    if (cfs_sigv4_format_time(v->now, v->amz_date) < 0) {
        cfs_op_fail(op, CFS_EINVALID, "system clock out of range");
        return CREDS_ERROR;
    }
    int rc = CREDS_USE;
    creds_lock(s);
    if (s->source != CRED_STATIC && !st->fetched) {
        int usable = s->access_key_id && (s->expiration == 0 || v->now < s->expiration - MANDATORY_MARGIN);
        double mono = now_mono();
        int claim_free = s->refresh_claimed == 0 || mono - s->refresh_claimed > REFRESH_CLAIM_TIMEOUT;
        if (!usable) {
            rc = CREDS_FETCH;
        } else if (s->expiration && v->now >= s->expiration - ADVISORY_MARGIN && claim_free &&
                   v->now >= s->refresh_not_before) {
            s->refresh_claimed = mono; /* this op refreshes; the others keep the current key */
            st->claimed = 1;
            rc = CREDS_FETCH;
        }
    }
    if (rc == CREDS_USE) {
        if (s->source != CRED_STATIC && s->expiration && v->now >= s->expiration) {
            cfs_op_fail(op, CFS_EAUTH, "the credentials from %s expired", s->cred_url);
            rc = CREDS_ERROR;
        } else if (strncmp(s->key_date, v->amz_date, 8) != 0) {
            char date8[9];
            memcpy(date8, v->amz_date, 8);
            date8[8] = '\0';
            if (cfs_sigv4_derive_key(s->secret_access_key, date8, s->region, "s3", s->signing_key) == 0) {
                memcpy(s->key_date, date8, sizeof date8);
            } else {
                s->key_date[0] = '\0';
                cfs_op_fail(op, CFS_EINVALID, "cannot derive the signing key");
                rc = CREDS_ERROR;
            }
        }
        if (rc == CREDS_USE) {
            memcpy(v->key, s->signing_key, CFS_SHA256_LEN);
            v->access_key_id = strdup(s->access_key_id);
            v->session_token = s->session_token ? strdup(s->session_token) : NULL;
            if (!v->access_key_id || (s->session_token && !v->session_token)) {
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
                rc = CREDS_ERROR;
            }
        }
    }
    cfs_fork_mutex_unlock(&s->lock);
    if (rc != CREDS_USE)
        creds_view_clear(v);
    return rc;
}

void creds_release_claim(s3_backend *s, s3_state *st, int failed)
{
    if (!st->claimed)
        return;
    creds_lock(s);
    s->refresh_claimed = 0;
    if (failed)
        s->refresh_not_before = (int64_t)time(NULL) + REFRESH_BACKOFF;
    cfs_fork_mutex_unlock(&s->lock);
    st->claimed = 0;
}

/* Read the container authorization token file (rotated by the platform). */
static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    char *t = header_safe(buf) && n ? strdup(buf) : NULL;
    OPENSSL_cleanse(buf, sizeof buf);
    return t;
}

/* The request of credential sub-step st->cred_step. */
int build_cred_request(s3_backend *s, cfs_op *op, s3_state *st, cfs_request *req)
{
    req->method = "GET";
    if (s->source == CRED_CONTAINER) {
        req->url = strdup(s->cred_url);
        if (!req->url)
            goto oom;
        if (s->cred_auth_file) {
            char *t = read_token_file(s->cred_auth_file);
            if (!t) {
                cfs_op_fail(op, CFS_EAUTH, "cannot read the container authorization token file %.200s",
                            s->cred_auth_file);
                return -1;
            }
            int rc = add_header_line(req, "Authorization", t);
            free_secret(t);
            if (rc < 0)
                goto oom;
        } else if (s->cred_auth && add_header_line(req, "Authorization", s->cred_auth) < 0) {
            goto oom;
        }
    } else if (st->cred_step == 1) {
        req->method = "PUT";
        req->body = "";
        req->body_len = 0;
        req->url = cfs_asprintf("%s/latest/api/token", s->cred_url);
        if (!req->url || add_header_line(req, "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL) < 0)
            goto oom;
    } else {
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

/* The answer to a credential sub-step. */
cfs_next finish_cred(s3_backend *s, cfs_op *op, s3_state *st, const cfs_response *resp)
{
    cfs_buf *body = resp->body;
    char detail[160] = "";
    int last = s->source == CRED_CONTAINER || st->cred_step == 3;
    if (resp->status < 200 || resp->status >= 300) {
        snprintf(detail, sizeof detail, "HTTP %ld", resp->status);
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
            free_secret(v);
            snprintf(detail, sizeof detail, "%s", st->cred_step == 1 ? "bad IMDS token" : "no IAM role");
            goto failed;
        }
        if (st->cred_step == 1) {
            free_secret(st->imds_token);
            st->imds_token = v;
        } else {
            free(st->imds_role);
            st->imds_role = v;
        }
        if (body->data)
            OPENSSL_cleanse(body->data, body->len);
        st->cred_step++;
        return cfs_op_next_step(op, op->step);
    }
    cfs_aws_creds c;
    int rc = cfs_aws_creds_parse(body->data, body->len, &c, detail, sizeof detail);
    if (body->data)
        OPENSSL_cleanse(body->data, body->len);
    if (rc < 0)
        goto failed;
    int64_t now = (int64_t)time(NULL);
    if (c.expiration && now >= c.expiration - MANDATORY_MARGIN) {
        cfs_aws_creds_clear(&c);
        snprintf(detail, sizeof detail, "the credentials given expire at once");
        goto failed;
    }
    creds_lock(s);
    free(s->access_key_id);
    free_secret(s->secret_access_key);
    free_secret(s->session_token);
    s->access_key_id = c.access_key_id;
    s->secret_access_key = c.secret_access_key;
    s->session_token = c.session_token;
    s->expiration = c.expiration;
    s->key_date[0] = '\0'; /* new secret: derive the signing key again */
    cfs_fork_mutex_unlock(&s->lock);
    memset(&c, 0, sizeof c); /* moved into the backend */
    creds_release_claim(s, st, 0);
    st->fetched = 1;
    st->cred_step = 0;
    free_secret(st->imds_token);
    st->imds_token = NULL;
    return cfs_op_next_step(op, op->step); /* now the op's own request */

failed:
    /* An early refresh that failed: carry on with the current credentials. */
    if (st->claimed) {
        creds_release_claim(s, st, 1);
        creds_lock(s);
        int usable = s->access_key_id &&
                     (s->expiration == 0 || (int64_t)time(NULL) < s->expiration - MANDATORY_MARGIN);
        cfs_fork_mutex_unlock(&s->lock);
        if (usable) {
            st->cred_step = 0;
            st->fetched = 1;
            return cfs_op_next_step(op, op->step);
        }
    }
    if (resp->status >= 500 || resp->status == 429 || resp->status == 408) {
        cfs_op_fail(op, CFS_ETRANSIENT, "credentials from %s: %s", s->cred_url, detail);
        return CFS_NEXT_RETRY;
    }
    cfs_op_fail(op, CFS_EAUTH, "credentials from %s refused: %s", s->cred_url, detail);
    return CFS_NEXT_DONE;
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

static const char *const s3_schemes[] = {"s3", NULL};

/* The response headers s3_finish reads (cfs_response.captured, in the order of the
 * S3_CAPTURE_* indices in s3_internal.h). */
static const char *const s3_response_headers[] = {"x-amz-checksum-crc32c", "x-amz-checksum-type", NULL};

static const char *const s3_secret_options[] = {"secret_access_key", "session_token", "credential_token",
                                                NULL};

const cfs_backend_ops cfs_s3_backend = {
    .name = "s3",
    .schemes = s3_schemes,
    .delete_many_max = 1000, /* DeleteObjects' limit */
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT | CFS_CAP_SERVER_COPY,
    .secret_options = s3_secret_options,
    .response_headers = s3_response_headers,
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
