/* gs://bucket/prefix: Google Cloud Storage through its JSON API.
 *
 * GET: media download (alt=media), whole or by Range; a whole object is checked against
 * x-goog-hash (crc32c, else md5) and a mismatch is retried like a transient failure. Whole
 * reads accept gzip, so an object stored gzip-encoded comes as stored, matches its hash,
 * and is decompressed here (the server's transcoding would not match the hash).
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
 * it while the others keep using it or are parked until it comes). */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/cred_cache.h"
#include "core/engine.h"
#include "util/base64.h"
#include "util/crc32c.h"
#include "backends/gcs/auth.h"
#include "backends/gcs/proto.h"
#include "util/keys.h"

extern const cfs_backend_ops cfs_gcs_backend;

#define DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define DEFAULT_METADATA_HOST "169.254.169.254"
#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define LIST_PAGE_SIZE 1000
/* A token of lifetime L is refreshed (by one op) from min(300 s, L/2) before its expiry
 * and no longer used from min(60 s, L/10) before it: 3300 s and 3540 s into Google's usual
 * hour; a short-lived token (a metadata server's, near its own refresh) scales down. An op
 * makes at most 4 token requests (an endpoint that never gives a usable token). */
static const cfs_cred_policy TOKEN_POLICY = {
    .refresh_margin = 300, .expiry_margin = 60, .claim_timeout = 60, .refresh_backoff = 30,
    .failure_memory = 1, .max_fetches = 4,
};
#define MAX_NAME_BYTES 1024
#define MIB (1024L * 1024L)
#define RESUMABLE_QUANTUM (256L * 1024L) /* a session's chunks are multiples of this */

typedef struct gcs_backend {
    cfs_backend base;
    char *url;              /* gs://bucket[/prefix]: canonical, no secret */
    char *endpoint;         /* scheme://host[:port], no trailing '/' */
    char *bucket;
    char *root;             /* "prefix/" or "" */
    cfs_tls tls;
    char *scope;
    cfs_gcs_credentials cred;
    size_t resumable_threshold; /* PUTs of at least this many bytes go up in a session */
    size_t resumable_chunk;     /* bytes per request of a session */
    cfs_cred_cache tokens;  /* access tokens fetched (service account, user, metadata) */
} gcs_backend;

/* Per-op state: which request of the op is in flight. */
typedef struct gcs_state {
    int auth_step;          /* the current request fetches a token */
    cfs_cred_ticket ticket; /* its part in the token cache */
    int reauthed;           /* already fetched a fresh token after a 401 */
    char *page_token;       /* LIST: where the next page starts */
    char *rewrite_token;    /* COPY: where the next rewrite call continues */
    int have_crc;           /* PUT: crc32c of the body computed */
    uint32_t crc;
    /* GET of a whole object: what gcs_verify checks and undoes on a worker thread */
    cfs_goog_hash want;     /* the server's x-goog-hash */
    int gzipped;            /* stored gzip-encoded: decompress after the check */
    /* resumable PUT: a session (its URI is a capability: never in messages) */
    int rs_phase;           /* RS_START: ask for a session; RS_SEND: send bytes */
    char *session;          /* the session URI */
    size_t rs_offset;       /* bytes the server holds */
    size_t rs_sent_end;     /* end of the chunk in flight */
    int rs_query;           /* the next request asks the server what it holds */
    int rs_querying;        /* the request in flight is such a query */
    int rs_in_flight;       /* a request of the session was built and not answered: if it
                             * is built again, the transfer failed and the server may hold
                             * some of it */
    int rs_chunks;          /* chunk requests sent */
    int rs_restarts;        /* sessions started over from the first byte */
    /* DELETE_MANY: the keys still to delete (a batch retried for transient part failures
     * carries only those) */
    unsigned char *pending;
} gcs_state;

enum { RS_START = 0, RS_SEND = 1 };

static void state_free(void *p)
{
    gcs_state *s = p;
    cfs_cred_release(&s->ticket);
    free(s->page_token);
    free(s->rewrite_token);
    free(s->session);
    free(s->pending);
    free(s);
}

/* The response headers gcs_finish reads (cfs_response.captured, in this order). */
enum { GCS_GOOG_HASH, GCS_LOCATION, GCS_RANGE };
static const char *const gcs_response_headers[] = {
    "x-goog-hash", /* crc32c and md5 of the object, two headers */
    "location",    /* a resumable upload's session URI */
    "range",       /* what a resumable upload's server has: "bytes=0-N" */
    NULL,
};
static const char *const gcs_secret_options[] = {"token", NULL};

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
    if (cfs_options_take_long(opts, "resumable_threshold", 1, LONG_MAX, &threshold, err, errlen) < 0 ||
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
    if (g->cred.token_uri &&
        cfs_cred_cache_init(&g->tokens, &TOKEN_POLICY, g->cred.token_uri, cfs_engine_release_parked) < 0)
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
static int add_bearer(cfs_request *req, const char *token)
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
        return copy_token(&(cfs_cred){ .secret = g->cred.static_token }, &copy) == 0 ? CFS_CRED_USE
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
    if (cfs_gcs_token_request_body(&req->body_owned, &g->cred, g->scope, (int64_t)time(NULL),
                                   err, sizeof err) < 0) {
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
static int token_step(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req, char **token)
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
static cfs_next finish_token(gcs_backend *g, cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    cfs_buf *body = resp->body;
    char detail[200];
    int outcome;
    if (resp->status == 200) {
        cfs_cred tok = { 0 };
        int64_t expires_in = 0;
        int rc = cfs_gcs_parse_token(body->data, body->len, &tok.secret, &expires_in, detail, sizeof detail);
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
        outcome = cfs_cred_fetch_failed(&g->tokens, &st->ticket, op, transient && !cfs_op_last_attempt(op));
    }
    st->auth_step = outcome == CFS_CRED_FETCH; /* else: done with it, or a token to use */
    return cfs_cred_next(op, outcome, op->step + 1);
}

/* ---------- requests ---------- */

static gcs_state *state_of(cfs_op *op)
{
    if (!op->backend_state) {
        gcs_state *s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        op->backend_state = s;
        op->free_backend_state = state_free;
    }
    return op->backend_state;
}

static int is_resumable(const gcs_backend *g, const cfs_op *op)
{
    return op->kind == CFS_OP_PUT && op->body_len > 0 && op->body_len >= g->resumable_threshold;
}

/* Does the session URI belong to the endpoint (so it may carry our token)? */
static int session_on_endpoint(const gcs_backend *g, const char *session)
{
    size_t n = strlen(g->endpoint);
    return strncmp(session, g->endpoint, n) == 0 && session[n] == '/';
}

/* The next request of a resumable PUT: start a session (JSON metadata with the whole
 * object's crc32c), send the next chunk from what the server holds, or, when the last
 * request failed and the server may hold part of it, ask what it holds. Sets *where_set
 * (op->where names the start URL, never the session URI) and *may_auth. Returns 0 or -1
 * (out of memory). */
static int build_resumable(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req,
                           const char *name, size_t name_len, int *may_auth)
{
    *may_auth = 1;
    if (st->rs_phase == RS_START) {
        st->rs_in_flight = 0;
        req->method = "POST";
        req->url = cfs_gcs_resumable_url(g->endpoint, g->bucket, name, name_len, op->if_none_match);
        if (!req->url || cfs_op_set_where(op, req->url) < 0 ||
            cfs_gcs_upload_metadata(&req->body_owned, name, name_len, st->crc) < 0 ||
            cfs_request_header(req, "Content-Type: application/json; charset=UTF-8") < 0 ||
            cfs_request_header(req, "X-Upload-Content-Type: application/octet-stream") < 0 ||
            cfs_request_header(req, "X-Upload-Content-Length: %zu", op->body_len) < 0)
            return -1;
        req->body = req->body_owned.data;
        req->body_len = req->body_owned.len;
        return 0;
    }
    if (st->rs_in_flight)
        st->rs_query = 1; /* the last request got no answer: what did the server keep? */
    char range[96];
    req->method = "PUT";
    if (!(req->url = strdup(st->session)))
        return -1;
    *may_auth = session_on_endpoint(g, st->session);
    if (st->rs_query) {
        st->rs_querying = 1;
        req->body = "";
        req->body_len = 0;
        cfs_gcs_content_range(range, sizeof range, 0, 0, op->body_len);
    } else {
        st->rs_querying = 0;
        size_t left = op->body_len - st->rs_offset;
        size_t len = left < g->resumable_chunk ? left : g->resumable_chunk;
        req->body = op->body + st->rs_offset;
        req->body_len = len;
        st->rs_sent_end = st->rs_offset + len;
        st->rs_chunks++;
        cfs_gcs_content_range(range, sizeof range, st->rs_offset, len, op->body_len);
    }
    if (cfs_request_header(req, "Content-Range: %s", range) < 0 ||
        cfs_request_header(req, "Content-Type: application/octet-stream") < 0)
        return -1;
    st->rs_in_flight = 1;
    return 0;
}

/* A batch request deleting the keys of a DELETE_MANY op still pending (part i+1 for key
 * i). Returns CFS_BUILD_SEND, CFS_BUILD_DONE (nothing left), or -1 (out of memory). */
static int build_batch_delete(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req)
{
    if (!st->pending) {
        if (!(st->pending = malloc(op->n_keys ? op->n_keys : 1)))
            return -1;
        memset(st->pending, 1, op->n_keys);
    }
    size_t n = 0, rlen = strlen(g->root);
    char **names = calloc(op->n_keys ? op->n_keys : 1, sizeof *names);
    size_t *lens = calloc(op->n_keys ? op->n_keys : 1, sizeof *lens);
    size_t *ids = calloc(op->n_keys ? op->n_keys : 1, sizeof *ids);
    int rc = -1;
    if (!names || !lens || !ids)
        goto out;
    for (size_t i = 0; i < op->n_keys; i++) {
        if (!st->pending[i])
            continue;
        if (!(names[n] = cfs_asprintf("%s%s", g->root, op->keys[i])))
            goto out;
        lens[n] = rlen + strlen(op->keys[i]);
        ids[n] = i + 1;
        n++;
    }
    if (n == 0) {
        op->status = CFS_OK;
        rc = CFS_BUILD_DONE;
        goto out;
    }
    req->method = "POST";
    if (!(req->url = cfs_asprintf("%s/batch/storage/v1", g->endpoint)) ||
        cfs_op_set_where(op, req->url) < 0 ||
        cfs_gcs_batch_delete_body(&req->body_owned, g->bucket, (const char *const *)names, lens,
                                  ids, n) < 0 ||
        cfs_request_header(req, "Content-Type: multipart/mixed; boundary=\"" CFS_GCS_BATCH_BOUNDARY "\"") < 0)
        goto out;
    req->body = req->body_owned.data;
    req->body_len = req->body_owned.len;
    rc = CFS_BUILD_SEND;
out:
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(lens);
    free(ids);
    return rc;
}

/* {endpoint}/storage/v1/b/B/o/SOURCE/rewriteTo/b/B/o/DEST[?rewriteToken=T] */
static char *rewrite_url(const gcs_backend *g, const char *source, const char *dest,
                         size_t dest_len, const char *token)
{
    char *src_name = cfs_asprintf("%s%s", g->root, source);
    char *src_url = src_name ? cfs_gcs_object_url(g->endpoint, g->bucket, src_name, strlen(src_name), NULL) : NULL;
    cfs_buf u = { 0 };
    int rc = src_url ? 0 : -1;
    if (rc == 0)
        rc = cfs_buf_append_str(&u, src_url) < 0 || cfs_buf_append_str(&u, "/rewriteTo/b/") < 0 ||
                     cfs_url_encode(&u, g->bucket, strlen(g->bucket), 0) < 0 ||
                     cfs_buf_append_str(&u, "/o/") < 0 || cfs_url_encode(&u, dest, dest_len, 0) < 0 ? -1 : 0;
    if (rc == 0 && token)
        rc = cfs_buf_append_str(&u, "?rewriteToken=") < 0 || cfs_url_encode(&u, token, strlen(token), 0) < 0 ? -1 : 0;
    if (rc == 0)
        rc = cfs_buf_terminate(&u);
    free(src_name);
    free(src_url);
    if (rc < 0) {
        cfs_buf_free(&u);
        return NULL;
    }
    return cfs_buf_steal(&u, NULL);
}

static int gcs_build(cfs_backend *b, cfs_op *op, cfs_request *req)
{
    gcs_backend *g = (gcs_backend *)b;
    if (op->kind == CFS_OP_RMDIR) {
        /* a flat namespace has no directories to remove: complete at once, no request */
        op->status = CFS_OK;
        return 1;
    }
    gcs_state *st = state_of(op);
    char *token = NULL, *name = NULL;
    if (!st)
        goto oom;
    int t = token_step(g, op, st, req, &token);
    if (t != CFS_CRED_USE)
        return cfs_cred_build_answer(t);

    if (op->kind == CFS_OP_DELETE_MANY) {
        int rc = build_batch_delete(g, op, st, req);
        if (rc < 0)
            goto oom;
        if (rc == CFS_BUILD_SEND && token && add_bearer(req, token) < 0)
            goto oom;
        cfs_secret_free(token);
        return rc;
    }
    size_t name_len = strlen(g->root) + strlen(op->key);
    if (!(name = cfs_asprintf("%s%s", g->root, op->key)))
        goto oom;
    if (op->kind != CFS_OP_LIST) {
        if (name_len > MAX_NAME_BYTES || strpbrk(name, "\r\n")) {
            free(token);
            free(name);
            cfs_op_fail(op, CFS_EINVALID, "GCS object names are at most %d bytes, without CR or LF",
                        MAX_NAME_BYTES);
            return -1;
        }
    }
    switch (op->kind) {
    case CFS_OP_GET:
        req->method = "GET";
        req->url = cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, "alt=media");
        if (!req->url || cfs_request_range(req, &op->range) < 0)
            goto oom;
        /* An object stored gzip-encoded comes as stored (its x-goog-hash is of those bytes),
         * not decompressed by the server: checked, then decompressed here. A range of such
         * an object is served decompressed, whole, and is not checked. */
        if (op->range.kind == CFS_RANGE_NONE && cfs_request_header(req, "Accept-Encoding: gzip") < 0)
            goto oom;
        break;
    case CFS_OP_HEAD:
        req->method = "GET"; /* the object resource: JSON with its size */
        req->url = cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, "fields=size");
        if (!req->url)
            goto oom;
        break;
    case CFS_OP_PUT: {
        if (!st->have_crc) {
            st->crc = cfs_crc32c(0, op->body, op->body_len);
            st->have_crc = 1;
        }
        if (is_resumable(g, op)) {
            int may_auth = 1;
            if (build_resumable(g, op, st, req, name, name_len, &may_auth) < 0)
                goto oom;
            if (token && may_auth && add_bearer(req, token) < 0)
                goto oom;
            cfs_secret_free(token);
            free(name);
            return CFS_BUILD_SEND;
        }
        req->method = "POST";
        req->url = cfs_gcs_upload_url(g->endpoint, g->bucket, op->if_none_match);
        if (!req->url)
            goto oom;
        char boundary[64];
        if (cfs_gcs_multipart_body(&req->body_owned, boundary, name, name_len, op->body,
                                   op->body_len, st->crc) < 0 ||
            cfs_request_header(req, "Content-Type: multipart/related; boundary=%s", boundary) < 0)
            goto oom;
        req->body = req->body_owned.data;
        req->body_len = req->body_owned.len;
        break;
    }
    case CFS_OP_DELETE:
        req->method = "DELETE";
        req->url = cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, NULL);
        if (!req->url)
            goto oom;
        break;
    case CFS_OP_LIST:
        req->method = "GET";
        req->url = cfs_gcs_list_url(g->endpoint, g->bucket, name, op->recursive, st->page_token,
                                    LIST_PAGE_SIZE);
        if (!req->url)
            goto oom;
        break;
    case CFS_OP_COPY:
        /* rewrite: the server copies, in as many calls as it needs (rewriteToken) */
        req->method = "POST";
        req->url = rewrite_url(g, op->source, name, name_len, st->rewrite_token);
        if (!req->url || cfs_request_header(req, "Content-Type: application/json") < 0)
            goto oom;
        req->body = "{}";
        req->body_len = 2;
        break;
    case CFS_OP_RMDIR:
    case CFS_OP_DELETE_MANY: /* built above */
        break;
    }
    if (cfs_op_set_where(op, req->url) < 0)
        goto oom;
    if (token && add_bearer(req, token) < 0)
        goto oom;
    cfs_secret_free(token);
    free(name);
    return 0;
oom:
    cfs_secret_free(token);
    free(name);
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
    return -1;
}

/* ---------- responses ---------- */

/* Check a whole object's bytes (op->data) against the server's x-goog-hash. Returns 1 if
 * they match (or the server gave none), 0 on a mismatch (op failed), -1 if the hash cannot
 * be computed (op failed). */
static int verify_download(cfs_op *op, const cfs_goog_hash *want)
{
    const cfs_goog_hash h = *want;
    const cfs_buf *body = &op->data;
    if (h.has_crc32c) {
        uint32_t got = cfs_crc32c(0, body->data, body->len);
        if (got != h.crc32c) {
            cfs_op_fail(op, CFS_ECHECKSUM, "crc32c of the %zu bytes received is %08x, the server's is %08x",
                        body->len, got, h.crc32c);
            return 0;
        }
        return 1;
    }
    if (h.has_md5) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (EVP_Digest(body->data ? body->data : "", body->len, md, &md_len, EVP_md5(), NULL) != 1 ||
            md_len != 16) {
            cfs_op_fail(op, CFS_ENOMEM, "cannot compute an MD5");
            return -1;
        }
        if (memcmp(md, h.md5, 16) != 0) {
            cfs_op_fail(op, CFS_ECHECKSUM, "md5 of the %zu bytes received differs from the server's",
                        body->len);
            return 0;
        }
    }
    return 1;
}

/* Add the GCS error message to a failed op's message. */
static void describe_failure(cfs_op *op, const cfs_response *resp)
{
    char detail[200];
    cfs_gcs_error_message(resp->body->data, resp->body->len, detail, sizeof detail);
    if (detail[0])
        snprintf(op->message, sizeof op->message, "HTTP %ld: %s", resp->status, detail);
}

static cfs_next finish_list(cfs_op *op, gcs_state *st, const char *root, const cfs_response *resp)
{
    char err[160];
    char *next = NULL;
    int oom = 0;
    if (cfs_gcs_parse_list(resp->body->data, resp->body->len, root, &op->entries, &next, &oom,
                           err, sizeof err) < 0) {
        cfs_op_fail(op, oom ? CFS_ENOMEM : CFS_EPROTOCOL, "%s", err);
        return CFS_NEXT_DONE;
    }
    free(st->page_token);
    st->page_token = next;
    if (next) {
        op->step++;
        return CFS_NEXT_AGAIN;
    }
    return CFS_NEXT_DONE;
}

/* Start the session over (it is gone, or it made an object that is not ours): from the
 * first byte, with a retry counted. Each chunk gets the full retry budget (cfs_op_next_step), so
 * the restarts have their own: at most max_attempts of them, then the failure stands. */
static cfs_next restart_session(cfs_op *op, gcs_state *st)
{
    if (++st->rs_restarts >= cfs_op_max_attempts(op))
        return CFS_NEXT_DONE;
    free(st->session);
    st->session = NULL;
    st->rs_phase = RS_START;
    st->rs_offset = 0;
    st->rs_query = st->rs_querying = st->rs_in_flight = 0;
    return CFS_NEXT_RETRY;
}

/* The object resource that completes a session (or a simple upload): is it what we sent?
 * Returns 1 if so (or the server said nothing checkable), 0 after failing the op. */
static int check_stored(cfs_op *op, const gcs_state *st, const cfs_response *resp)
{
    cfs_goog_hash h;
    int64_t size = -1;
    if (cfs_gcs_parse_object(resp->body->data, resp->body->len, &size, &h) == 0) {
        if ((h.has_crc32c && h.crc32c != st->crc) || (size >= 0 && (size_t)size != op->body_len)) {
            cfs_op_fail(op, CFS_ECHECKSUM, "the server stored %lld bytes with crc32c %08x; "
                        "%zu bytes with crc32c %08x were sent", (long long)size, h.crc32c,
                        op->body_len, st->crc);
            return 0;
        }
    }
    return 1;
}

static cfs_next finish_resumable(cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    long code = resp->status;
    st->rs_in_flight = 0;
    if (st->rs_phase == RS_START) {
        if (code >= 200 && code < 300) {
            const char *loc = resp->captured[GCS_LOCATION];
            if (!loc || (strncmp(loc, "http://", 7) != 0 && strncmp(loc, "https://", 8) != 0)) {
                cfs_op_fail(op, CFS_EPROTOCOL, "resumable upload started without a session URI");
                return CFS_NEXT_DONE;
            }
            free(st->session);
            if (!(st->session = strdup(loc))) {
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
                return CFS_NEXT_DONE;
            }
            st->rs_phase = RS_SEND;
            st->rs_offset = 0;
            st->rs_query = 0;
            return cfs_op_next_step(op, op->step + 1);
        }
        cfs_next next = cfs_http_status_outcome(op, resp);
        describe_failure(op, resp);
        return next;
    }

    int querying = st->rs_querying;
    st->rs_querying = 0;
    if (code == 308) { /* incomplete: the Range header says how much the server holds */
        int64_t have = 0;
        if (cfs_gcs_parse_upload_range(resp->captured[GCS_RANGE], &have) < 0 || (uint64_t)have > op->body_len) {
            cfs_op_fail(op, CFS_EPROTOCOL, "resumable upload: bad Range in a 308 answer: %.80s",
                        resp->captured[GCS_RANGE] ? resp->captured[GCS_RANGE] : "");
            return CFS_NEXT_DONE;
        }
        size_t before = st->rs_offset;
        st->rs_offset = (size_t)have; /* may be less than sent: resend from there */
        st->rs_query = 0;
        if (st->rs_offset > before)
            return cfs_op_next_step(op, op->step + 1); /* progress: the next chunk has every try */
        if (querying) {
            /* after a failed chunk: resend it now (the backoff was before the query). The
             * query is not a try of the chunk: the budget counts the chunk's sends, so a
             * chunk that always fails ends after max_attempts of them. */
            if (op->attempts > 0)
                op->attempts--;
            op->step++;
            return CFS_NEXT_AGAIN;
        }
        /* a chunk the server kept nothing of: try it again, counted */
        cfs_op_fail(op, CFS_ETRANSIENT, "resumable upload: the server kept none of bytes %zu-%zu",
                    before, st->rs_sent_end);
        return CFS_NEXT_RETRY;
    }
    if (code == 200 || code == 201) { /* complete: is it ours? */
        if (!check_stored(op, st, resp))
            return restart_session(op, st);
        op->status = CFS_OK;
        return CFS_NEXT_DONE;
    }
    cfs_next next = cfs_http_status_outcome(op, resp);
    describe_failure(op, resp);
    if (code == 404 || code == 410) {
        /* the session expired or was cancelled: start again (counted as a retry) */
        cfs_op_fail(op, CFS_ETRANSIENT, "resumable upload session gone (HTTP %ld)", code);
        return restart_session(op, st);
    }
    if (code == 400 && (strstr(op->message, "CRC32C") || strstr(op->message, "MD5"))) {
        op->status = CFS_ECHECKSUM; /* the whole did not match our crc32c: send it again */
        return restart_session(op, st);
    }
    if (next == CFS_NEXT_RETRY)
        st->rs_query = 1; /* the server may hold part of the chunk: ask before resending */
    return next;
}

typedef struct batch_ctx {
    cfs_op *op;
    gcs_state *st;
    int last;               /* the op's last try: transient part failures are final */
    int retry;              /* some part failed transiently: send those keys again */
} batch_ctx;

static int is_transient_status(long code)
{
    return code == 408 || code == 429 || code >= 500;
}

static int batch_part(void *vctx, long id, long status, const char *body, size_t len)
{
    batch_ctx *c = vctx;
    cfs_op *op = c->op;
    if (id < 1 || (size_t)id > op->n_keys || !c->st->pending[id - 1])
        return 0; /* not a part we asked for (or answered twice): ignore it */
    size_t i = (size_t)id - 1;
    if ((status >= 200 && status < 300) || status == 404) { /* gone, or never there */
        c->st->pending[i] = 0;
        return 0;
    }
    if (is_transient_status(status) && !c->last) {
        c->retry = 1;
        return 0;
    }
    c->st->pending[i] = 0;
    char msg[200], detail[240];
    cfs_gcs_error_message(body, len, msg, sizeof msg);
    snprintf(detail, sizeof detail, "HTTP %ld: %s", status, msg[0] ? msg : "no message");
    cfs_status why = status == 401 || status == 403 ? CFS_EAUTH
                   : is_transient_status(status) ? CFS_ETRANSIENT
                   : status == 412 ? CFS_EEXISTS : CFS_EHTTP;
    return cfs_entries_add_failure(&op->entries, op->keys[i], why, detail) < 0 ? -2 : 0;
}

/* A batch of deletes answered: one HTTP status per part, matched by Content-ID. Parts that
 * failed transiently (or got no answer) are sent again after a backoff, the others are
 * done; what failed for good is in op->entries. */
static cfs_next finish_batch_delete(cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    if (resp->status != 200) {
        cfs_next next = cfs_http_status_outcome(op, resp);
        if (op->status == CFS_OK) /* another 2xx: not a batch response */
            cfs_op_fail(op, CFS_EPROTOCOL, "batch request answered HTTP %ld", resp->status);
        else
            describe_failure(op, resp);
        return next;
    }
    batch_ctx c = { op, st, cfs_op_last_attempt(op), 0 };
    char err[160];
    int rc = cfs_gcs_parse_batch(resp->content_type, resp->body->data, resp->body->len, batch_part,
                                 &c, err, sizeof err);
    if (rc == -2) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory reading a batch response");
        return CFS_NEXT_DONE;
    }
    if (rc < 0) {
        cfs_op_fail(op, CFS_EPROTOCOL, "bad batch response: %s", err);
        return CFS_NEXT_DONE;
    }
    for (size_t i = 0; i < op->n_keys; i++) {
        if (!st->pending[i])
            continue;
        if (!c.last) { /* no answer for it, or a transient one: again */
            c.retry = 1;
            continue;
        }
        st->pending[i] = 0;
        if (cfs_entries_add_failure(&op->entries, op->keys[i], CFS_ETRANSIENT,
                                    "no answer for this key in the batch response") < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
            return CFS_NEXT_DONE;
        }
    }
    if (c.retry) {
        cfs_op_fail(op, CFS_ETRANSIENT, "some deletes of the batch failed transiently");
        return CFS_NEXT_RETRY;
    }
    op->status = CFS_OK;
    return CFS_NEXT_DONE;
}

/* A rewrite answers {"done": true} or a rewriteToken to call again with. */
static cfs_next finish_rewrite(cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    cJSON *root = cJSON_ParseWithLength(resp->body->data ? resp->body->data : "", resp->body->len);
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(root, "done");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "rewriteToken");
    cfs_next next = CFS_NEXT_DONE;
    if (!cJSON_IsBool(done)) {
        cfs_op_fail(op, CFS_EPROTOCOL, "rewrite response without \"done\"");
    } else if (!cJSON_IsTrue(done)) {
        free(st->rewrite_token);
        st->rewrite_token = cJSON_IsString(token) ? strdup(token->valuestring) : NULL;
        if (!st->rewrite_token) {
            cfs_op_fail(op, CFS_EPROTOCOL, "unfinished rewrite without a rewriteToken");
        } else {
            op->step++;
            next = CFS_NEXT_AGAIN;
        }
    }
    cJSON_Delete(root);
    return next;
}

static cfs_next gcs_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp)
{
    gcs_backend *g = (gcs_backend *)b;
    gcs_state *st = op->backend_state;
    if (st->auth_step)
        return finish_token(g, op, st, resp);

    if (resp->status == 401 && g->cred.kind >= CFS_GCS_CRED_SERVICE_ACCOUNT && !st->reauthed) {
        /* the token was revoked or expired early: drop it (if still current), fetch anew */
        cfs_cred_invalidate(&g->tokens, &st->ticket);
        st->reauthed = 1;
        st->rs_in_flight = 0; /* refused: the server kept nothing of it */
        op->step++;
        return CFS_NEXT_AGAIN;
    }
    if (is_resumable(g, op))
        return finish_resumable(op, st, resp);
    if (op->kind == CFS_OP_DELETE_MANY)
        return finish_batch_delete(op, st, resp);

    /* a whole object is checked as received, then decompressed: both on a worker thread */
    int whole = op->kind == CFS_OP_GET && resp->status == 200 && op->range.kind == CFS_RANGE_NONE;
    if (whole) {
        memset(&st->want, 0, sizeof st->want);
        if (resp->captured[GCS_GOOG_HASH] && cfs_gcs_parse_hash(resp->captured[GCS_GOOG_HASH], &st->want) < 0) {
            cfs_op_fail(op, CFS_EPROTOCOL, "malformed x-goog-hash header");
            return CFS_NEXT_DONE;
        }
        st->gzipped = resp->content_encoding && strcasecmp(resp->content_encoding, "gzip") == 0;
    }

    cfs_next next = cfs_http_status_outcome(op, resp);
    if (whole && op->status == CFS_OK && (st->want.has_crc32c || st->want.has_md5 || st->gzipped))
        return CFS_NEXT_VERIFY;
    if (op->status != CFS_OK) {
        describe_failure(op, resp);
        if (op->kind == CFS_OP_PUT && resp->status == 400 &&
            (strstr(op->message, "CRC32C") || strstr(op->message, "MD5"))) {
            /* the server computed another checksum than ours: bytes damaged on the way */
            op->status = CFS_ECHECKSUM;
            return CFS_NEXT_RETRY;
        }
        if (op->kind == CFS_OP_LIST && op->status == CFS_ENOTFOUND)
            op->status = CFS_EHTTP; /* the bucket is missing: not a missing key */
        if (op->status == CFS_EAUTH && g->cred.kind == CFS_GCS_CRED_ANON) {
            size_t n = strlen(op->message);
            snprintf(op->message + n, sizeof op->message - n, " (anonymous request: no credentials)");
        }
        return next;
    }

    switch (op->kind) {
    case CFS_OP_HEAD: {
        cfs_goog_hash h;
        int64_t size = -1;
        if (cfs_gcs_parse_object(resp->body->data, resp->body->len, &size, &h) < 0) {
            cfs_op_fail(op, CFS_EPROTOCOL, "object resource without a size");
            return CFS_NEXT_DONE;
        }
        op->size = size;
        break;
    }
    case CFS_OP_PUT:
        if (!check_stored(op, st, resp))
            return CFS_NEXT_RETRY;
        break;
    case CFS_OP_LIST:
        return finish_list(op, st, g->root, resp);
    case CFS_OP_COPY:
        return finish_rewrite(op, st, resp);
    default:
        break;
    }
    return next;
}

static cfs_next gcs_verify(cfs_backend *b, cfs_op *op)
{
    (void)b;
    gcs_state *st = op->backend_state;
    int ok = verify_download(op, &st->want);
    if (ok == 0)
        return CFS_NEXT_RETRY;
    if (ok < 0 || !st->gzipped)
        return CFS_NEXT_DONE;
    cfs_buf plain = { 0 };
    int rc = cfs_gcs_gunzip(op->data.data, op->data.len, &plain);
    if (rc < 0) {
        cfs_buf_free(&plain);
        cfs_op_fail(op, rc == -2 ? CFS_ENOMEM : CFS_EPROTOCOL,
                    "the gzip-encoded object does not decompress");
        return CFS_NEXT_DONE;
    }
    cfs_buf_free(&op->data);
    op->data = plain;
    op->size = (int64_t)plain.len;
    return CFS_NEXT_DONE;
}

static int gcs_configure_handle(cfs_backend *b, CURL *easy)
{
    return cfs_tls_configure(&((gcs_backend *)b)->tls, easy);
}

static const char *gcs_url(cfs_backend *b)
{
    return ((gcs_backend *)b)->url;
}

static const char *const gcs_schemes[] = { "gs", NULL };

const cfs_backend_ops cfs_gcs_backend = {
    .name = "gcs",
    .schemes = gcs_schemes,
    .delete_many_max = CFS_GCS_BATCH_MAX, /* parts per batch request */
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT | CFS_CAP_SERVER_COPY,
    .secret_options = gcs_secret_options,
    .response_headers = gcs_response_headers,
    .open = gcs_open,
    .close = gcs_close,
    .build = gcs_build,
    .finish = gcs_finish,
    .verify = gcs_verify,
    .configure_handle = gcs_configure_handle,
    .url = gcs_url,
};
