/* gs://bucket/prefix: Google Cloud Storage through its JSON API.
 *
 * GET: media download (alt=media), whole or by Range; a whole object is checked against
 * x-goog-hash (crc32c, else md5) and a mismatch is retried like a transient failure. Reads
 * accept gzip, so an object stored gzip-encoded comes as stored, matches its hash, and is
 * decoded by the engine (the server's transcoding would not match the hash).
 * HEAD: the object resource (its size). PUT: a multipart upload whose metadata carries the
 * object's crc32c, so the server verifies the bytes; create-if-absent with
 * ifGenerationMatch=0 (412 -> CFS_EEXISTS). A PUT of resumable_threshold bytes or more goes
 * up in a resumable session instead: a POST with the same metadata returns the session URI
 * (Location), then chunks of resumable_chunksize with Content-Range; a 308's Range says
 * what the server holds (send on from there); after a failed chunk a status query
 * (Content-Range: bytes * /N) asks before resending; a session gone (404/410) or an object
 * that does not match starts over. DELETE. DELETE_MANY: up to 100 DELETEs in one batch
 * request (multipart/mixed), per-key status by Content-ID. LIST: pages of prefix/delimiter
 * listings followed through nextPageToken (CFS_NEXT_AGAIN).
 *
 * Auth: a bearer token option, anonymous, or OAuth2 access tokens from a service-account
 * key (RS256 JWT grant), an authorized_user ADC file (refresh-token grant) or the metadata
 * server. A token request is one more step of the op that needs it, sent through the
 * engine like any other request (same retries, timeouts, TLS settings); the token is
 * cached in the backend's credential cache (core/cred_cache.h: one op fetches or refreshes
 * it while the others keep using it or are parked until it comes).
 *
 * This file: open/close (the URL, options, choosing credentials), the token cache and the
 * token step of an op ("tokens" below), and the ops table with what it declares. The
 * requests are built in request.c, responses read in response.c, resumable upload sessions
 * in resumable.c; gcs_internal.h has the structs they share. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/gcs/gcs_internal.h"
#include "util/keys.h"

extern const cfs_backend_ops cfs_gcs_backend;

#define DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define DEFAULT_METADATA_HOST "169.254.169.254"
#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
/* A token of lifetime L is refreshed (by one op) from min(300 s, L/2) before its expiry
 * and no longer used from min(60 s, L/10) before it: 3300 s and 3540 s into Google's usual
 * hour; a short-lived token (a metadata server's, near its own refresh) scales down. */
static const cfs_cred_policy TOKEN_POLICY = {
    .refresh_margin = 300,
    .expiry_margin = 60,
    .claim_timeout = 60,
    .refresh_backoff = 30,
    .failure_memory = 1,
    .max_fetches = 4, /* an op makes at most 4 token requests */
};
#define MIB (1024L * 1024L)
#define RESUMABLE_QUANTUM (256L * 1024L) /* a session's chunks are multiples of this */

/* The response headers gcs_finish reads (cfs_response.captured, in the order of
 * GCS_GOOG_HASH... in gcs_internal.h). */
static const char *const gcs_response_headers[] = {
    "x-goog-hash", /* crc32c and md5 of the object, two headers */
    "location",    /* a resumable upload's session URI */
    "range",       /* what a resumable upload's server has: "bytes=0-N" */
    NULL,
};
static const char *const gcs_secret_options[] = { "token", NULL };

/* ---------- open / close ---------- */

static void gcs_close(cfs_backend *b)
{
    gcs_backend *g = (gcs_backend *)b;
    if (!g)
        return;
    free(g->url);
    free(g->endpoint);
    free(g->bucket);
    free(g->root);
    cfs_tls_free(&g->tls);
    free(g->scope);
    cfs_gcs_credentials_clear(&g->cred);
    cfs_cred_cache_destroy(&g->tokens);
    free(g);
}

/* An endpoint from an option or STORAGE_EMULATOR_HOST ("host:port" or a URL). */
static char *normalize_endpoint(const char *e)
{
    size_t n = strlen(e);
    while (n > 0 && e[n - 1] == '/')
        n--;
    if (strstr(e, "://"))
        return strndup(e, n);
    return cfs_asprintf("http://%.*s", (int)n, e);
}

/* Running on Google Compute Engine (or GKE, Cloud Run...): the DMI product name says so,
 * as google-auth checks on Linux. No network probe. */
static int on_gce(void)
{
    FILE *f = fopen("/sys/class/dmi/id/product_name", "r");
    if (!f)
        return 0;
    char line[64] = "";
    int yes = fgets(line, sizeof line, f) && strncmp(line, "Google", 6) == 0;
    fclose(f);
    return yes;
}

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    fclose(f);
    return 1;
}

/* The well-known file of `gcloud auth application-default login`. */
static char *adc_well_known_path(void)
{
    const char *dir = getenv("CLOUDSDK_CONFIG");
    if (dir && *dir)
        return cfs_asprintf("%s/application_default_credentials.json", dir);
    const char *home = getenv("HOME");
    if (!home || !*home)
        return NULL;
    return cfs_asprintf("%s/.config/gcloud/application_default_credentials.json", home);
}

static int setup_metadata(gcs_backend *g, const char *host, char *err, size_t errlen)
{
    g->cred.kind = CFS_GCS_CRED_METADATA;
    char *base = normalize_endpoint(host);
    if (!base || !(g->cred.token_uri = cfs_asprintf("%s" METADATA_TOKEN_PATH, base))) {
        free(base);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(base);
    return 0;
}

/* Choose the credentials: explicit options first, then the application-default chain. */
static int choose_credentials(gcs_backend *g, const char *token, int anon, int anon_set,
                              const char *credentials, const char *token_uri,
                              const char *metadata_host, int emulator, char *err, size_t errlen)
{
    int explicit = (token != NULL) + (anon_set && anon) + (credentials != NULL);
    if (explicit > 1) {
        snprintf(err, errlen, "give at most one of token, anon=True and credentials");
        return -1;
    }
    if (token) {
        g->cred.kind = CFS_GCS_CRED_STATIC;
        if (!(g->cred.static_token = strdup(token))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (anon_set && anon) {
        g->cred.kind = CFS_GCS_CRED_ANON;
        return 0;
    }
    if (credentials)
        return cfs_gcs_credentials_load(credentials, token_uri, &g->cred, err, errlen);
    if (metadata_host)
        return setup_metadata(g, metadata_host, err, errlen);
    if (emulator) {
        /* an emulator from STORAGE_EMULATOR_HOST takes no credentials (as Google's clients) */
        g->cred.kind = CFS_GCS_CRED_ANON;
        return 0;
    }
    const char *adc = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    if (adc && *adc)
        return cfs_gcs_credentials_load(adc, token_uri, &g->cred, err, errlen);
    char *wk = adc_well_known_path();
    if (wk && file_exists(wk)) {
        int rc = cfs_gcs_credentials_load(wk, token_uri, &g->cred, err, errlen);
        free(wk);
        return rc;
    }
    free(wk);
    const char *mh = getenv("GCE_METADATA_HOST");
    if (mh && *mh)
        return setup_metadata(g, mh, err, errlen);
    if (on_gce())
        return setup_metadata(g, DEFAULT_METADATA_HOST, err, errlen);
    g->cred.kind = CFS_GCS_CRED_ANON; /* public buckets still work */
    return 0;
}

static cfs_backend *gcs_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    gcs_backend *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->base.ops = &cfs_gcs_backend;

    /* gs://bucket[/prefix...] */
    const char *p = strstr(url, "://") + 3;
    const char *slash = strchr(p, '/');
    size_t blen = slash ? (size_t)(slash - p) : strlen(p);
    if (blen == 0) {
        snprintf(err, errlen, "URL has no bucket: %s", url);
        goto fail;
    }
    if (!(g->bucket = strndup(p, blen)))
        goto oom;
    if (strpbrk(g->bucket, "?#%@:") || memchr(g->bucket, ' ', blen)) {
        snprintf(err, errlen, "invalid bucket name in %s", url);
        goto fail;
    }
    const char *prefix = slash ? slash + 1 : "";
    while (*prefix == '/')
        prefix++;
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    char why[128];
    if (plen && cfs_prefix_check(prefix, plen, why, sizeof why) < 0) {
        snprintf(err, errlen, "invalid prefix in %s: %s", url, why);
        goto fail;
    }
    g->root = plen ? cfs_asprintf("%.*s/", (int)plen, prefix) : strdup("");
    g->url = plen ? cfs_asprintf("gs://%s/%.*s", g->bucket, (int)plen, prefix)
                  : cfs_asprintf("gs://%s", g->bucket);
    if (!g->root || !g->url)
        goto oom;

    if (cfs_tls_take_options(&g->tls, opts, err, errlen) < 0)
        goto fail;
    long threshold = 8 * MIB, chunk = 8 * MIB;
    if (cfs_options_take_long(opts, "resumable_threshold", 1, LONG_MAX, &threshold, err, errlen) <
            0 ||
        cfs_options_take_long(opts, "resumable_chunksize", RESUMABLE_QUANTUM, 1024 * MIB, &chunk,
                              err, errlen) < 0)
        goto fail;
    if (chunk % RESUMABLE_QUANTUM != 0) {
        snprintf(err, errlen, "resumable_chunksize must be a multiple of 256 KiB (%ld), not %ld",
                 RESUMABLE_QUANTUM, chunk);
        goto fail;
    }
    g->resumable_threshold = (size_t)threshold;
    g->resumable_chunk = (size_t)chunk;
    int anon = 0;
    int anon_set = cfs_options_take_bool(opts, "anon", &anon, err, errlen);
    if (anon_set < 0)
        goto fail;
    const char *token = cfs_options_take(opts, "token");
    const char *credentials = cfs_options_take(opts, "credentials");
    const char *token_uri = cfs_options_take(opts, "token_uri");
    const char *metadata_host = cfs_options_take(opts, "metadata_host");
    const char *endpoint = cfs_options_take(opts, "endpoint_url");
    const char *scope = cfs_options_take(opts, "scope");
    if (token && !*token) {
        snprintf(err, errlen, "option token is empty");
        goto fail;
    }
    for (const char *t = token; t && *t; t++) {
        if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7E) {
            snprintf(err, errlen, "option token has characters a header cannot carry");
            goto fail;
        }
    }
    const char *emu = getenv("STORAGE_EMULATOR_HOST");
    int emulator = !endpoint && emu && *emu;
    g->endpoint = normalize_endpoint(endpoint ? endpoint : emulator ? emu : DEFAULT_ENDPOINT);
    g->scope = strdup(scope ? scope : CFS_GCS_SCOPE_READ_WRITE);
    if (!g->endpoint || !g->scope)
        goto oom;
    if (strncmp(g->endpoint, "http://", 7) != 0 && strncmp(g->endpoint, "https://", 8) != 0) {
        snprintf(err, errlen, "endpoint_url must be http:// or https://");
        goto fail;
    }
    if (choose_credentials(g, token, anon, anon_set, credentials, token_uri, metadata_host,
                           emulator, err, errlen) < 0)
        goto fail;
    if (g->cred.token_uri && cfs_cred_cache_init(&g->tokens, &TOKEN_POLICY, g->cred.token_uri,
                                                 cfs_engine_release_parked) < 0)
        goto oom;
    return &g->base;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    gcs_close(&g->base);
    return NULL;
}

/* ---------- tokens ---------- */

/* Add "Authorization: Bearer <token>" (tokens may be longer than a short header line). */
int add_bearer(cfs_request *req, const char *token)
{
    char *line = cfs_asprintf("Authorization: Bearer %s", token);
    if (!line)
        return -1;
    struct curl_slist *l = curl_slist_append(req->headers, line);
    cfs_secret_free(line);
    if (!l)
        return -1;
    req->headers = l;
    return 0;
}

typedef struct token_copy {
    cfs_op *op;
    char **token;
} token_copy;

static int copy_token(cfs_cred *cred, void *ctx)
{
    token_copy *c = ctx;
    if ((*c->token = strdup(cred->secret)))
        return 0;
    cfs_op_fail(c->op, CFS_ENOMEM, "out of memory");
    return -1;
}

/* What the next request of `op` carries (core/cred_cache.h): CFS_CRED_USE with a token
 * copied into *token (NULL: anonymous); or it fetches one first, waits for another op's
 * fetch, or has failed. */
static int token_decide(gcs_backend *g, gcs_state *st, cfs_op *op, char **token)
{
    *token = NULL;
    token_copy copy = { op, token };
    switch (g->cred.kind) {
    case CFS_GCS_CRED_ANON:
        return CFS_CRED_USE;
    case CFS_GCS_CRED_STATIC:
        return copy_token(&(cfs_cred){ .secret = g->cred.static_token }, &copy) == 0
                   ? CFS_CRED_USE
                   : CFS_CRED_FAILED;
    default:
        return cfs_cred_decide(&g->tokens, &st->ticket, op, copy_token, &copy);
    }
}

static int build_token_request(gcs_backend *g, cfs_op *op, cfs_request *req)
{
    char err[200];
    req->secret = 1; /* a refresh token, a client secret or a signed assertion */
    req->url = strdup(g->cred.token_uri);
    if (!req->url || cfs_op_set_where(op, g->cred.token_uri) < 0)
        goto oom;
    if (g->cred.kind == CFS_GCS_CRED_METADATA) {
        req->method = "GET";
        if (cfs_request_header(req, "Metadata-Flavor: Google") < 0)
            goto oom;
        return 0;
    }
    req->method = "POST";
    if (cfs_gcs_token_request_body(&req->body_owned, &g->cred, g->scope, (int64_t)time(NULL), err,
                                   sizeof err) < 0) {
        cfs_op_fail(op, CFS_EAUTH, "cannot make the token request: %s", err);
        return -1;
    }
    req->body = req->body_owned.data;
    req->body_len = req->body_owned.len;
    if (cfs_request_header(req, "Content-Type: application/x-www-form-urlencoded") < 0 ||
        cfs_request_header(req, "Accept: application/json") < 0)
        goto oom;
    return 0;
oom:
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a token request");
    return -1;
}

/* The token the op's next request carries (CFS_CRED_USE, *token set; NULL: anonymous), or
 * its token request built in req (CFS_CRED_FETCH), or CFS_CRED_WAIT, or CFS_CRED_FAILED. */
int token_step(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req, char **token)
{
    int t;
    while ((t = token_decide(g, st, op, token)) == CFS_CRED_FETCH) {
        if (build_token_request(g, op, req) == 0)
            break;
        cfs_request_clear(req);
        if (cfs_cred_fetch_failed(&g->tokens, &st->ticket, op, 0) != CFS_CRED_USE)
            return CFS_CRED_FAILED; /* else an early refresh failed: use the current token */
    }
    st->auth_step = t == CFS_CRED_FETCH;
    return t;
}

/* The token endpoint's answer. */
cfs_next finish_token(gcs_backend *g, cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    cfs_buf *body = resp->body;
    char detail[200];
    int outcome;
    if (resp->status == 200) {
        cfs_cred tok = { 0 };
        int64_t expires_in = 0;
        int rc = cfs_gcs_parse_token(body->data, body->len, &tok.secret, &expires_in, detail,
                                     sizeof detail);
        cfs_secret_wipe(body->data, body->len);
        if (rc == 0) {
            outcome = cfs_cred_fetched(&g->tokens, &st->ticket, &tok, (double)expires_in, op);
        } else {
            cfs_op_fail(op, CFS_EPROTOCOL, "token endpoint: %s", detail);
            outcome = cfs_cred_fetch_failed(&g->tokens, &st->ticket, op, 0);
        }
    } else {
        int transient = resp->status == 408 || resp->status == 429 || resp->status >= 500;
        cfs_gcs_error_message(body->data, body->len, detail, sizeof detail);
        cfs_op_fail(op, transient ? CFS_ETRANSIENT : CFS_EAUTH, "token %s: HTTP %ld: %s",
                    transient ? "endpoint" : "request refused", resp->status, detail);
        outcome = cfs_cred_fetch_failed(&g->tokens, &st->ticket, op,
                                        transient && !cfs_op_last_attempt(op));
    }
    st->auth_step = outcome == CFS_CRED_FETCH; /* else: done with it, or a token to use */
    return cfs_cred_next(op, outcome, op->step + 1);
}

static int gcs_configure_handle(cfs_backend *b, CURL *easy)
{
    return cfs_tls_configure(&((gcs_backend *)b)->tls, easy);
}

static const char *gcs_url(cfs_backend *b)
{
    return ((gcs_backend *)b)->url;
}

/* A rewrite can read from another bucket of the same endpoint (the caller makes sure the
 * stores share credentials). */
static int gcs_can_copy_from(const cfs_backend *dst, const cfs_backend *src)
{
    return dst->ops == src->ops &&
           !strcmp(((const gcs_backend *)dst)->endpoint, ((const gcs_backend *)src)->endpoint);
}

static const char *const gcs_schemes[] = { "gs", NULL };

const cfs_backend_ops cfs_gcs_backend = {
    .name = "gcs",
    .schemes = gcs_schemes,
    .delete_many_max = CFS_GCS_BATCH_MAX, /* parts per batch request */
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT | CFS_CAP_SERVER_COPY | CFS_CAP_CONTENT_TYPE |
                    CFS_CAP_OBJECT_ATTRS | CFS_CAP_STORAGE_CLASS,
    .secret_options = gcs_secret_options,
    .response_headers = gcs_response_headers,
    .open = gcs_open,
    .close = gcs_close,
    .build = gcs_build,
    .finish = gcs_finish,
    .verify = gcs_verify,
    .prepare = gcs_prepare,
    .can_copy_from = gcs_can_copy_from,
    .configure_handle = gcs_configure_handle,
    .url = gcs_url,
};
