/* An op's requests on its lane's thread: libcurl's callbacks for a transfer (headers,
 * body, upload), starting the op's next request (the backend builds it, then an easy handle
 * is set up for it and added to the lane's multi handle), and finishing a transfer: the
 * backend's finish(), a retry scheduled with backoff, or the op's next step (another
 * request, a worker's verify(), child ops, done). Also the request, retry and connection
 * counts.
 *
 * Hedged reads (the store option hedge): a GET or HEAD of an op's own (not a credential
 * fetch, not a child, not a step of a longer op) waits, once started, in its lane's queue
 * of candidates until its store's delay has passed (hedge_at). If it has had no response
 * header by then and its store has a token, a hedge is sent: a copy of the same built
 * request (no second build(): a backend's build may claim a credential fetch) on another
 * easy handle, thus another connection. The two are siblings until one ends: a failure
 * (a transient status, a transfer error, a stall, a cancel) drops that one and the other
 * carries on alone; an answer cancels the other (curl_multi_remove_handle) and goes to
 * the backend's finish() as the op's only response. A hedge writes object data into its
 * own buffer, moved into op->data only when it wins, so two bodies never mix and finish()
 * runs once. Both belong to the lane's thread, like every transfer. */
#include "core/engine_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Idle connections older than this are not reused: servers close theirs (S3 after about
 * 20 s, nginx 75 s) and a request sent on a closed one fails. */
#define MAX_IDLE_CONNECTION_S 20L
/* How long an op whose build() said CFS_BUILD_WAIT stays parked at most: it is built again
 * as soon as cfs_engine_release_parked() is called; this is only a safety net (a fetch
 * claimed by an op that vanished without a word is given up after a timeout). */
#define PARK_MAX_S 5.0

static atomic_uint_fast64_t g_requests, g_retries, g_connections, g_parked, g_hedges, g_hedges_won;
static atomic_uint g_park_gen; /* bumped by each cfs_engine_release_parked: lanes then look */

/* Thread-safe uniform [0,1) without global state. */
static double random01(void)
{
    static _Thread_local unsigned int seed;
    if (!seed)
        seed = (unsigned int)(now_mono().tv_nsec ^ (long)getpid() ^ (long)(uintptr_t)&seed);
    return (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
}

/* ---------- hedged reads: the store's delay and budget ----------
 * (engine_internal.h: hedge_state). All lock-free: any lane of a store may be here. */

static uint64_t ns_between(struct timespec a, struct timespec b)
{
    long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    return ns < 0 ? 0 : (uint64_t)ns;
}

/* The bucket of a time: 0 below HEDGE_BUCKET0_NS, then HEDGE_SUB_BUCKETS per doubling. */
static int hedge_bucket(uint64_t ns)
{
    uint64_t u = ns / HEDGE_BUCKET0_NS;
    if (u == 0)
        return 0;
    int oct = 63 - __builtin_clzll(u); /* floor(log2(u)) */
    /* the two bits after the leading one (u's own bits when it has them) */
    uint64_t frac = oct >= 2 ? (u >> (oct - 2)) & 3u : (u << (2 - oct)) & 3u;
    long idx = 1 + (long)oct * HEDGE_SUB_BUCKETS + (long)frac;
    return idx < HEDGE_BUCKETS ? (int)idx : HEDGE_BUCKETS - 1;
}

/* The upper edge of a bucket, in ns. */
static uint64_t hedge_bucket_top(int idx)
{
    if (idx == 0)
        return HEDGE_BUCKET0_NS;
    int oct = (idx - 1) / HEDGE_SUB_BUCKETS, sub = (idx - 1) % HEDGE_SUB_BUCKETS;
    return HEDGE_BUCKET0_NS * ((uint64_t)(HEDGE_SUB_BUCKETS + sub + 1) << oct) / HEDGE_SUB_BUCKETS;
}

/* Compute the delay again: the store's quantile of the times counted. */
static void hedge_recompute(hedge_state *h, double q)
{
    unsigned c[HEDGE_BUCKETS];
    uint64_t sum = 0;
    for (int i = 0; i < HEDGE_BUCKETS; i++) {
        c[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        sum += c[i];
    }
    if (sum == 0)
        return;
    uint64_t want = (uint64_t)(q * (double)sum), cum = 0;
    if (want < 1)
        want = 1;
    int i = 0;
    for (; i < HEDGE_BUCKETS - 1; i++) {
        cum += c[i];
        if (cum >= want)
            break;
    }
    atomic_store(&h->delay_ns, (long long)hedge_bucket_top(i));
}

/* A hedgeable transfer got its response's headers: count its time to the first byte. */
static void hedge_sample(transfer *t)
{
    hedge_state *h = &t->op->limiter->hedge;
    uint64_t ns = ns_between(t->started, now_mono());
    atomic_fetch_add_explicit(&h->counts[hedge_bucket(ns)], 1, memory_order_relaxed);
    unsigned n = atomic_fetch_add(&h->total, 1) + 1;
    if (n == HEDGE_WINDOW) {
        /* exactly one thread sees each crossing: halve, keeping counts added meanwhile */
        unsigned removed = 0;
        for (int i = 0; i < HEDGE_BUCKETS; i++) {
            unsigned v = atomic_load_explicit(&h->counts[i], memory_order_relaxed) / 2;
            atomic_fetch_sub_explicit(&h->counts[i], v, memory_order_relaxed);
            removed += v;
        }
        atomic_fetch_sub(&h->total, removed);
    }
    unsigned seen = atomic_fetch_add(&h->seen, 1) + 1;
    if (seen >= HEDGE_MIN_SAMPLES && seen % HEDGE_RECOMPUTE == 0)
        hedge_recompute(h, t->op->limiter->cfg.hedge_quantile);
}

/* The most tokens a store saves: HEDGE_BURST, or its budget of a full window of requests
 * in flight if more (hedge_budget=1 may hedge every read in flight). Tokens come only
 * with new requests: the reads still unanswered at the end of a batch live on what was
 * saved. */
static long hedge_cap(const cfs_limiter *l)
{
    double window = l->cfg.hedge_budget * l->cfg.concurrency;
    long cap = window > HEDGE_BURST ? (long)window : HEDGE_BURST;
    return cap * HEDGE_TOKEN;
}

static void hedge_earn(hedge_state *h, long amount, long cap)
{
    long cur = atomic_load(&h->tokens);
    while (cur < cap &&
           !atomic_compare_exchange_weak(&h->tokens, &cur, cur + amount > cap ? cap : cur + amount))
        ;
}

static int hedge_spend(hedge_state *h)
{
    long cur = atomic_load(&h->tokens);
    while (cur >= HEDGE_TOKEN)
        if (atomic_compare_exchange_weak(&h->tokens, &cur, cur - HEDGE_TOKEN))
            return 1;
    return 0;
}

/* ---------- hedged reads: the lane's queue of candidates, by hedge_at ---------- */

static int before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

static void hedge_queue_add(lane *ln, transfer *t)
{
    /* from the tail: the delays of a store change slowly, so this is about O(1) */
    transfer *after = ln->hedge_tail;
    while (after && before(t->hedge_at, after->hedge_at))
        after = after->prev_hedge;
    t->prev_hedge = after;
    t->next_hedge = after ? after->next_hedge : ln->hedge_head;
    if (t->next_hedge)
        t->next_hedge->prev_hedge = t;
    else
        ln->hedge_tail = t;
    if (after)
        after->next_hedge = t;
    else
        ln->hedge_head = t;
    t->in_hedge_queue = 1;
}

static void hedge_queue_remove(lane *ln, transfer *t)
{
    if (!t->in_hedge_queue)
        return;
    if (t->prev_hedge)
        t->prev_hedge->next_hedge = t->next_hedge;
    else
        ln->hedge_head = t->next_hedge;
    if (t->next_hedge)
        t->next_hedge->prev_hedge = t->prev_hedge;
    else
        ln->hedge_tail = t->prev_hedge;
    t->prev_hedge = t->next_hedge = NULL;
    t->in_hedge_queue = 0;
}

/* ---------- libcurl callbacks ---------- */

/* Keep a header the op's backend asked for (response_headers); a repeated one has its
 * values joined by ','. Returns 1 if the name was one of them. */
static int capture_header(transfer *t, const char *name, size_t name_len, const char *v, size_t vlen)
{
    const char *const *wanted = t->op->backend->ops->response_headers;
    for (int i = 0; wanted && wanted[i] && i < CFS_CAPTURE_MAX; i++) {
        if (strlen(wanted[i]) != name_len || strncasecmp(wanted[i], name, name_len) != 0)
            continue;
        char *dst = t->captured[i];
        size_t have = strlen(dst), sep = have ? 1 : 0;
        if (have + sep + vlen < CFS_CAPTURE_VALUE_MAX) {
            if (sep)
                dst[have] = ',';
            memcpy(dst + have + sep, v, vlen);
            dst[have + sep + vlen] = '\0';
        }
        return 1;
    }
    return 0;
}

static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    transfer *t = userp;
    size_t len = size * n;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* a new response (after 100-continue): forget the previous headers */
        t->content_length = -1;
        t->retry_after = -1;
        t->etag[0] = t->content_range[0] = t->content_type[0] = '\0';
        t->content_encoding[0] = '\0';
        for (int i = 0; i < CFS_CAPTURE_MAX; i++)
            t->captured[i][0] = '\0';
        cfs_buf_reset(&t->head_headers);
        t->head_headers_truncated = 0;
        return len;
    }
    if (len <= 2) { /* end of headers: choose where the body goes */
        long code = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200)
            return len;
        if (t->hedgeable && t->status == 0)
            hedge_sample(t);
        t->status = code;
        /* object data into op->data, a hedge's into its own buffer until it wins */
        t->body = (t->op->kind == CFS_OP_GET && code >= 200 && code < 300)
                      ? (t->is_hedge ? &t->own : &t->op->data)
                      : &t->scratch;
        /* a first part of the announced length (+ 1: room for the NUL that ends the bytes
         * object the body may become); the rest as it arrives (on_body) */
        if (t->content_length > 0 && !t->req.no_body &&
            cfs_buf_reserve_expected(t->body, 1, (size_t)t->content_length + 1) < 0)
            return 0; /* out of memory: abort the transfer */
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return len;
    if (t->op->kind == CFS_OP_HEAD || !strcmp(t->req.method, "HEAD")) {
        /* kept whole, bounded: cfs_attrs_from_headers (a HEAD op, or another op's HEAD
         * step) */
        if (t->head_headers.len + len > CFS_HEAD_HEADERS_MAX)
            t->head_headers_truncated = 1;
        else if (cfs_buf_append(&t->head_headers, line, len) < 0)
            return 0; /* out of memory: abort the transfer */
    }
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
    char *dst = NULL;
#define IS(name) (name_len == sizeof(name) - 1 && strncasecmp(line, name, name_len) == 0)
    if (IS("etag"))
        dst = t->etag;
    else if (IS("content-range"))
        dst = t->content_range;
    else if (IS("content-type"))
        dst = t->content_type;
    else if (IS("content-encoding"))
        dst = t->content_encoding;
    else if (capture_header(t, line, name_len, v, vlen))
        return len;
    else if (IS("content-length")) {
        char tmp[32];
        if (vlen < sizeof tmp) {
            memcpy(tmp, v, vlen);
            tmp[vlen] = '\0';
            char *ep;
            long long cl = strtoll(tmp, &ep, 10);
            if (*ep == '\0' && cl >= 0)
                t->content_length = cl;
        }
        return len;
    } else if (IS("retry-after")) {
        char tmp[64];
        if (vlen < sizeof tmp) {
            memcpy(tmp, v, vlen);
            tmp[vlen] = '\0';
            t->retry_after = cfs_retry_after_parse(tmp, (int64_t)time(NULL));
        }
        return len;
    }
#undef IS
    if (dst && vlen < HEADER_VALUE_MAX) {
        memcpy(dst, v, vlen);
        dst[vlen] = '\0';
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    transfer *t = userp;
    size_t len = size * n;
    if (!t->body)
        t->body = &t->scratch;
    if (t->content_length > 0 &&
        cfs_buf_reserve_expected(t->body, len, (size_t)t->content_length + 1) < 0)
        return 0; /* CURLE_WRITE_ERROR */
    if (cfs_buf_append(t->body, data, len) < 0)
        return 0;
    return len;
}

static size_t on_upload(char *dst, size_t size, size_t n, void *userp)
{
    transfer *t = userp;
    size_t room = size * n, left = t->req.body_len - t->upload_pos;
    size_t k = left < room ? left : room;
    if (k == 0)
        return 0;
    if (t->req.body_file) { /* from the page cache, as a memcpy would be */
        ssize_t got;
        do
            got = pread(t->req.body_file->fd, dst, k,
                        (off_t)(t->req.body_offset + (int64_t)t->upload_pos));
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            t->upload_errno = got < 0 ? errno : -1;
            return CURL_READFUNC_ABORT;
        }
        k = (size_t)got;
    } else {
        memcpy(dst, t->req.body + t->upload_pos, k);
    }
    t->upload_pos += k;
    return k;
}

/* libcurl rewinds an upload to resend it on a fresh connection. */
static int on_seek(void *userp, curl_off_t offset, int origin)
{
    transfer *t = userp;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > t->req.body_len)
        return CURL_SEEKFUNC_FAIL;
    t->upload_pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static int on_open_socket(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    (void)clientp;
    (void)fd;
    if (purpose == CURLSOCKTYPE_IPCXN)
        atomic_fetch_add(&g_connections, 1);
    return CURL_SOCKOPT_OK;
}

/* ---------- easy handles and the active list ---------- */

static CURL *take_easy(lane *ln)
{
    if (ln->n_idle_easy > 0) {
        CURL *c = ln->idle_easy[--ln->n_idle_easy];
        curl_easy_reset(c);
        return c;
    }
    return curl_easy_init();
}

static void give_easy(lane *ln, CURL *c)
{
    if (ln->n_idle_easy < (int)(sizeof ln->idle_easy / sizeof ln->idle_easy[0]))
        ln->idle_easy[ln->n_idle_easy++] = c;
    else
        curl_easy_cleanup(c);
}

static void link_active(lane *ln, transfer *t)
{
    t->prev_active = NULL;
    t->next_active = ln->active;
    if (ln->active)
        ln->active->prev_active = t;
    ln->active = t;
}

static void unlink_active(lane *ln, transfer *t)
{
    hedge_queue_remove(ln, t); /* off the wire: no longer a candidate */
    if (t->prev_active)
        t->prev_active->next_active = t->next_active;
    else if (ln->active == t)
        ln->active = t->next_active;
    if (t->next_active)
        t->next_active->prev_active = t->prev_active;
    t->prev_active = t->next_active = NULL;
}

/* A hedge no longer counts in its host's window. */
static void release_hedge_host(lane *ln, transfer *t)
{
    if (t->hedge_host) {
        cfs_throttle_hedge_end(ln->e, t->hedge_host);
        t->hedge_host = NULL;
    }
}

void cfs_transfer_free(lane *ln, transfer *t)
{
    unlink_active(ln, t);
    if (t->easy) {
        curl_multi_remove_handle(ln->multi, t->easy);
        give_easy(ln, t->easy);
    }
    if (t->sibling)
        t->sibling->sibling = NULL;
    release_hedge_host(ln, t);
    cfs_request_clear(&t->req);
    cfs_buf_free(&t->scratch);
    cfs_buf_free(&t->own);
    cfs_buf_free(&t->head_headers);
    free(t);
}

/* ---------- starting a request ---------- */

/* A transfer for the op's next request, attached to the op (NULL on out-of-memory). */
static transfer *transfer_new(cfs_op *op)
{
    transfer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->op = op;
    t->last_move = now_mono();
    t->content_length = -1;
    t->retry_after = -1;
    op->engine_priv = t;
    return t;
}

/* ---------- parked ops ----------
 * An op whose build() said CFS_BUILD_WAIT (another op is fetching what it needs) waits in
 * the lane's retry list without a deadline it would poll at: whoever ends that fetch calls
 * cfs_engine_release_parked(), and each lane then builds its parked ops again (those still
 * waiting park again). Being in the retry list, a parked op is given up like any other on
 * a cancel. A release between the op's build() and its parking is not lost: the op
 * remembers g_park_gen from before build(). */

static void park(lane *ln, transfer *t, unsigned gen_before_build)
{
    cfs_request_clear(&t->req);
    atomic_fetch_add(&g_parked, 1);
    t->park_gen = gen_before_build;
    t->parked = atomic_load(&g_park_gen) == gen_before_build; /* else released already */
    t->retry_at = after_seconds(t->parked ? PARK_MAX_S : 0);
    t->next_retry = ln->retries;
    ln->retries = t;
}

void cfs_transfer_release_parked(lane *ln)
{
    unsigned gen = atomic_load(&g_park_gen);
    if (gen == ln->park_gen)
        return;
    ln->park_gen = gen;
    struct timespec now = now_mono();
    for (transfer *t = ln->retries; t; t = t->next_retry) {
        if (t->parked && t->park_gen != gen) {
            t->parked = 0;
            t->retry_at = now; /* start_due_retries builds it */
        }
    }
}

void cfs_transfer_bump_park_gen(void)
{
    atomic_fetch_add(&g_park_gen, 1);
}

/* Have the op's backend build its next request into t->req. Returns 1 if it is to be
 * sent; 0 if the op went elsewhere: parked to be built again, handed to a worker for its
 * prepare(), or finished (done without a request, or failed). */
static int build_request(lane *ln, cfs_op *op, transfer *t)
{
    cfs_backend *b = op->backend;
    if (op->kind == CFS_OP_GET)
        cfs_buf_reset(&op->data);
    if (cfs_coding_needs_encode(op)) { /* the body is encoded first, on a worker */
        cfs_transfer_free(ln, t);
        cfs_engine_hand_to_worker(ln->e, op, JOB_ENCODE);
        return 0;
    }
    unsigned park_gen = atomic_load(&g_park_gen);
    int built = b->ops->build(b, op, &t->req);
    if (built == CFS_BUILD_WAIT) {
        park(ln, t, park_gen); /* no attempt counted */
        return 0;
    }
    if (built == CFS_BUILD_PREPARE) {
        cfs_transfer_free(ln, t);
        cfs_engine_hand_to_worker(ln->e, op, JOB_PREPARE);
        return 0;
    }
    if (built != CFS_BUILD_SEND) {
        cfs_transfer_free(ln, t);
        finish_op(ln, op);
        return 0;
    }
    return 1;
}

/* An easy handle (one of the lane's idle ones if it has any) with the store's receive
 * buffer size; NULL on out-of-memory. */
static CURL *easy_with_buffer(lane *ln, long buffer_size)
{
    CURL *c = take_easy(ln);
    if (c && curl_easy_setopt(c, CURLOPT_BUFFERSIZE, buffer_size) != CURLE_OK) {
        /* libcurl refuses to resize the receive buffer of some reused handles (after
         * HTTP/2): start from a fresh one */
        curl_easy_cleanup(c);
        c = curl_easy_init();
        if (c && curl_easy_setopt(c, CURLOPT_BUFFERSIZE, buffer_size) != CURLE_OK) {
            curl_easy_cleanup(c);
            c = NULL;
        }
    }
    return c;
}

/* Set an option of t->easy unless an earlier one failed; *failed names the one that
 * failed, for the error message. */
#define SET(opt, val)                                                                 \
    do {                                                                              \
        if (rc == CURLE_OK && (rc = curl_easy_setopt(t->easy, opt, val)) != CURLE_OK) \
            *failed = #opt;                                                           \
    } while (0)

/* The options every request has: the engine's callbacks, the HTTP version, timeouts and
 * connection reuse. */
static CURLcode set_transfer_options(transfer *t, const cfs_transfer_config *cfg,
                                     const char **failed)
{
    CURLcode rc = CURLE_OK;
    SET(CURLOPT_PRIVATE, t);
    SET(CURLOPT_URL, t->req.url);
    SET(CURLOPT_NOSIGNAL, 1L);
    if (cfg->http2) {
        /* HTTP/2 where TLS negotiates it; wait for a stream on a connection being set up
         * rather than opening one connection per request */
        SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        SET(CURLOPT_PIPEWAIT, 1L);
    } else {
        SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    SET(CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    if (t->req.timeout_ms > 0) { /* a request with a limit of its own (credential endpoints) */
        SET(CURLOPT_TIMEOUT_MS, t->req.timeout_ms);
        if (t->req.timeout_ms < cfg->connect_timeout_ms)
            SET(CURLOPT_CONNECTTIMEOUT_MS, t->req.timeout_ms);
    }
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_MAXAGE_CONN, MAX_IDLE_CONNECTION_S);
    SET(CURLOPT_FRESH_CONNECT, (long)t->op->fresh_connection);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->curl_error);
    SET(CURLOPT_SOCKOPTFUNCTION, on_open_socket);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    return rc;
}

/* The request's headers, method and body. */
static CURLcode set_request_options(transfer *t, const char **failed)
{
    CURLcode rc = CURLE_OK;
    /* libcurl would add "Expect: 100-continue" to large uploads: one round trip lost */
    if (cfs_request_header(&t->req, "Expect:") < 0)
        rc = CURLE_OUT_OF_MEMORY;
    SET(CURLOPT_HTTPHEADER, t->req.headers);
    if (strcmp(t->req.method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(t->req.method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(t->req.method, "PUT") == 0) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_upload);
        SET(CURLOPT_READDATA, t);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, t);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->req.body_len);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, t->req.method);
        if (t->req.body_file) { /* only a PUT streams its body from a file */
            *failed = "a body from a file with a method other than PUT";
            rc = CURLE_BAD_FUNCTION_ARGUMENT;
        } else if (t->req.body) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->req.body_len);
            SET(CURLOPT_POSTFIELDS, t->req.body);
        }
    }
    return rc;
}
#undef SET

/* Give a built transfer an easy handle set up for its request, and add that to the lane's
 * multi handle. 0, or -1 with the op failed and t->easy NULL. */
static int attach_handle(lane *ln, transfer *t)
{
    cfs_op *op = t->op;
    cfs_backend *b = op->backend;
    const cfs_transfer_config *cfg = &op->limiter->cfg;
    CURL *c = easy_with_buffer(ln, cfg->buffer_size);
    if (!c) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory creating a transfer handle");
        return -1;
    }
    t->easy = c;
    const char *failed = NULL; /* what could not be set, for the error message */
    CURLcode rc = set_transfer_options(t, cfg, &failed);
    if (rc == CURLE_OK && ln->e->share &&
        (rc = curl_easy_setopt(c, CURLOPT_SHARE, ln->e->share)) != CURLE_OK)
        failed = "CURLOPT_SHARE";
    if (rc == CURLE_OK)
        rc = set_request_options(t, &failed);
    if (rc == CURLE_OK && b->ops->configure_handle && b->ops->configure_handle(b, c) < 0) {
        rc = CURLE_BAD_FUNCTION_ARGUMENT;
        failed = "the backend's handle options";
    }
    CURLMcode mrc = CURLM_OK;
    if (rc == CURLE_OK && (mrc = curl_multi_add_handle(ln->multi, c)) != CURLM_OK) {
        rc = CURLE_FAILED_INIT;
        failed = curl_multi_strerror(mrc);
    }
    if (rc != CURLE_OK) {
        if (op->status == CFS_OK)
            cfs_op_fail(op, CFS_EINVALID, "cannot set up the transfer (%s): %s",
                        failed ? failed : "?", curl_easy_strerror(rc));
        t->easy = NULL;
        give_easy(ln, c);
        return -1;
    }
    return 0;
}

static void hedge_consider(lane *ln, transfer *t);

/* Build and start the next request of an op. On failure the op completes. */
void cfs_transfer_start_request(lane *ln, cfs_op *op)
{
    if (cfs_engine_may_give_up(op, 0)) {
        cfs_engine_fail_cancelled(op);
        finish_op(ln, op);
        return;
    }
    transfer *t = transfer_new(op);
    if (!t) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory starting a transfer");
        finish_op(ln, op);
        return;
    }
    if (!build_request(ln, op, t))
        return;
    if (!op->host)
        cfs_throttle_attach(ln->e, op, t->req.url);
    if (attach_handle(ln, t) < 0) {
        cfs_transfer_free(ln, t);
        finish_op(ln, op);
        return;
    }
    link_active(ln, t);
    op->attempts++;
    atomic_fetch_add(&g_requests, 1);
    hedge_consider(ln, t);
}

/* ---------- hedged reads: sending them ---------- */

/* Whether a request just started is a read of the store's own (not a credential fetch,
 * not a step of a longer op) whose store hedges. */
static int is_hedgeable(const transfer *t)
{
    const cfs_op *op = t->op;
    if (!op->limiter->cfg.hedge || op->parent || t->is_hedge)
        return 0;
    const char *want = op->kind == CFS_OP_GET ? "GET" : op->kind == CFS_OP_HEAD ? "HEAD" : NULL;
    return want && strcmp(t->req.method, want) == 0 && !t->req.secret && t->req.timeout_ms == 0 &&
           !t->req.body && t->req.url;
}

/* A request started: if hedgeable, it earns its store's budget and, once the store knows
 * its delay, waits in the lane's queue for a hedge to be due. */
static void hedge_consider(lane *ln, transfer *t)
{
    if (!is_hedgeable(t))
        return;
    t->started = now_mono();
    t->hedgeable = 1;
    const cfs_transfer_config *cfg = &t->op->limiter->cfg;
    hedge_state *h = &t->op->limiter->hedge;
    long earn = (long)(cfg->hedge_budget * HEDGE_TOKEN + 0.5);
    hedge_earn(h, earn < 1 ? 1 : earn, hedge_cap(t->op->limiter));
    long long delay =
        cfg->hedge_delay > 0 ? (long long)(cfg->hedge_delay * 1e9) : atomic_load(&h->delay_ns);
    if (delay <= 0)
        return; /* not enough samples yet */
    t->hedge_at = t->started;
    long long ns = t->hedge_at.tv_nsec + delay;
    t->hedge_at.tv_sec += (time_t)(ns / 1000000000LL);
    t->hedge_at.tv_nsec = (long)(ns % 1000000000LL);
    hedge_queue_add(ln, t);
}

/* A copy of a built GET or HEAD request (no body; the same signature). 0 or -1. */
static int clone_request(cfs_request *dst, const cfs_request *src)
{
    memset(dst, 0, sizeof *dst);
    dst->method = src->method;
    dst->no_body = src->no_body;
    dst->timeout_ms = src->timeout_ms;
    dst->url = strdup(src->url);
    if (!dst->url)
        return -1;
    for (const struct curl_slist *l = src->headers; l; l = l->next) {
        if (strcmp(l->data, "Expect:") == 0)
            continue; /* attach_handle adds it again */
        struct curl_slist *n = curl_slist_append(dst->headers, l->data);
        if (!n) {
            cfs_request_clear(dst);
            return -1;
        }
        dst->headers = n;
    }
    return 0;
}

/* Send a hedge for t, still unanswered. 1: sent; 0: not now (no token, or its host's
 * window is full), try again; -1: never (out of memory). */
static int send_hedge(lane *ln, transfer *t)
{
    cfs_op *op = t->op;
    hedge_state *hs = &op->limiter->hedge;
    if (!hedge_spend(hs))
        return 0;
    cfs_host_window *counted = NULL;
    if (!cfs_throttle_hedge_begin(ln->e, op, &counted)) {
        hedge_earn(hs, HEDGE_TOKEN, hedge_cap(op->limiter));
        return 0;
    }
    transfer *h = calloc(1, sizeof *h);
    if (!h) {
        if (counted)
            cfs_throttle_hedge_end(ln->e, counted);
        hedge_earn(hs, HEDGE_TOKEN, hedge_cap(op->limiter));
        return -1;
    }
    h->op = op;
    h->is_hedge = 1;
    h->hedgeable = 1; /* its time to the first byte counts too; it is not hedged itself */
    h->hedge_host = counted;
    h->content_length = -1;
    h->retry_after = -1;
    h->last_move = h->started = now_mono();
    /* attach_handle records a failure on the op: not this one's, whose first request runs */
    cfs_status status = op->status;
    char message[sizeof op->message];
    memcpy(message, op->message, sizeof message);
    if (clone_request(&h->req, &t->req) < 0 || attach_handle(ln, h) < 0) {
        op->status = status;
        memcpy(op->message, message, sizeof message);
        cfs_transfer_free(ln, h); /* gives back the host window */
        hedge_earn(hs, HEDGE_TOKEN, hedge_cap(op->limiter));
        return -1;
    }
    link_active(ln, h);
    t->sibling = h;
    h->sibling = t;
    atomic_fetch_add(&g_requests, 1);
    atomic_fetch_add(&g_hedges, 1);
    return 1;
}

/* How often a lane looks again at due candidates it could not hedge yet (no token). */
#define HEDGE_STARVED_MS 2

void cfs_transfer_start_hedges(lane *ln, long *timeout_ms)
{
    if (!ln->hedge_head)
        return;
    struct timespec now = now_mono();
    int starved = 0;
    transfer *t = ln->hedge_head;
    while (t) {
        transfer *next = t->next_hedge;
        if (before(now, t->hedge_at)) {
            long long ns = (long long)ns_between(now, t->hedge_at);
            long ms = (long)((ns + 999999) / 1000000);
            if (ms < *timeout_ms)
                *timeout_ms = ms;
            break;
        }
        /* answered (its body on the way), given up, or hedged already: no hedge */
        int r = -1;
        if (t->status == 0 && !t->cancelled && !t->stalled && !t->sibling &&
            !cfs_engine_may_give_up(t->op, 1))
            r = send_hedge(ln, t);
        if (r == 0)
            starved = 1; /* stays: the oldest candidates get the next tokens */
        else
            hedge_queue_remove(ln, t);
        t = next;
    }
    if (starved && *timeout_ms > HEDGE_STARVED_MS)
        *timeout_ms = HEDGE_STARVED_MS;
}

/* An op's two transfers: t ended while the other still runs. Returns 1 if t's outcome is
 * the op's (an answer: the other is cancelled, its bytes dropped), 0 if t was dropped (a
 * failure, a 503 on the hedge say: the other carries on). */
static int settle_pair(lane *ln, transfer *t, CURLcode rc)
{
    transfer *other = t->sibling;
    cfs_op *op = t->op;
    int answer = rc == CURLE_OK && !t->cancelled && !cfs_retry_status_is_transient(t->status);
    if (!answer) {
        if (rc == CURLE_OK && (t->status == 503 || t->status == 429))
            cfs_throttle_rejected(ln->e, op); /* still push-back from the host */
        if (op->engine_priv == t)
            op->engine_priv = other;
        cfs_transfer_free(ln, t); /* unlinks the pair */
        return 0;
    }
    cfs_transfer_free(ln, other); /* curl_multi_remove_handle: it sends nothing more */
    return 1;
}

/* t's outcome is the op's: a hedge's object data becomes op->data. */
static void adopt(transfer *t, CURLcode rc)
{
    cfs_op *op = t->op;
    op->engine_priv = t;
    if (!t->is_hedge)
        return;
    if (rc == CURLE_OK && !cfs_retry_status_is_transient(t->status))
        atomic_fetch_add(&g_hedges_won, 1);
    if (t->body == &t->own) {
        cfs_buf_free(&op->data); /* the first request's bytes, if any: never mixed */
        op->data = t->own;
        memset(&t->own, 0, sizeof t->own);
        t->body = &op->data;
    }
}

/* ---------- finishing a transfer ---------- */

static int curl_error_is_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_FAIL_REWIND:
        return 1;
    default:
        return 0;
    }
}

static void continue_op(lane *ln, cfs_op *op, cfs_next next);
static void start_children(lane *ln, cfs_op *op);

/* Take a failed transfer out of the multi handle and park it with the lane's retries, due
 * after the store's backoff (or the server's Retry-After). */
void cfs_transfer_schedule_retry(lane *ln, transfer *t)
{
    cfs_op *op = t->op;
    const cfs_retry_policy *p = &op->limiter->cfg.retry;
    double delay = cfs_retry_delay(p, op->attempts, random01(), t->retry_after);
    atomic_fetch_add(&g_retries, 1);
    /* keep the failure text: it is what the caller sees if every retry fails */
    unlink_active(ln, t);
    release_hedge_host(ln, t);
    if (t->easy) {
        curl_multi_remove_handle(ln->multi, t->easy);
        give_easy(ln, t->easy);
        t->easy = NULL;
    }
    t->retry_at = after_seconds(delay);
    t->next_retry = ln->retries;
    ln->retries = t;
}

/* A GET's op->attrs.content_encoding: what this response said (NULL: identity). */
static int set_content_encoding(cfs_op *op, const char *value)
{
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return -1;
    free(op->attrs.content_encoding);
    op->attrs.content_encoding = copy;
    return 0;
}

/* A transfer ended (rc from libcurl, or as the lane gave it up: stalled or cancelled):
 * have the backend read the response, then retry or move the op on. */
void cfs_transfer_done(lane *ln, CURL *easy, CURLcode rc)
{
    transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    if (t->sibling && !settle_pair(ln, t, rc))
        return; /* dropped: the op's other transfer carries on */
    adopt(t, rc);
    cfs_op *op = t->op;
    cfs_backend *b = op->backend;
    const cfs_retry_policy *p = &op->limiter->cfg.retry;
    cfs_next next;

    if (rc != CURLE_OK) {
        const char *why = t->curl_error[0] ? t->curl_error : curl_easy_strerror(rc);
        if (t->cancelled) {
            cfs_engine_fail_cancelled(op);
            next = CFS_NEXT_DONE;
        } else if (t->upload_errno) { /* the file changed under us: a retry reads the same */
            cfs_op_fail_body_file(op, t->upload_errno > 0 ? t->upload_errno : 0);
            next = CFS_NEXT_DONE;
        } else if (t->stalled) {
            cfs_op_fail(op, CFS_ETRANSIENT, "stalled: no data for %ld s",
                        op->limiter->cfg.stall_timeout_s);
            next = CFS_NEXT_RETRY;
        } else if (curl_error_is_transient(rc)) {
            /* a reused connection the server had closed: do not pick another stale one */
            op->fresh_connection = rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
                                   rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_FAIL_REWIND;
            cfs_op_fail(op, CFS_ETRANSIENT, "%s", why);
            next = CFS_NEXT_RETRY;
        } else {
            cfs_op_fail(op, CFS_ENETWORK, "%s", why);
            next = CFS_NEXT_DONE;
        }
    } else {
        cfs_response resp = {
            .status = t->status,
            .body = t->body ? t->body : &t->scratch,
            .content_length = t->content_length,
            .etag = t->etag[0] ? t->etag : NULL,
            .content_range = t->content_range[0] ? t->content_range : NULL,
            .content_type = t->content_type[0] ? t->content_type : NULL,
            .content_encoding = t->content_encoding[0] ? t->content_encoding : NULL,
        };
        for (int i = 0; i < CFS_CAPTURE_MAX; i++)
            resp.captured[i] = t->captured[i][0] ? t->captured[i] : NULL;
        if (op->kind == CFS_OP_HEAD || !strcmp(t->req.method, "HEAD")) {
            resp.headers = t->head_headers.data ? t->head_headers.data : "";
            resp.headers_len = t->head_headers.len;
            resp.headers_truncated = t->head_headers_truncated;
        }
        op->http_status = t->status;
        op->status = CFS_OK;
        op->fresh_connection = 0;
        if (op->kind == CFS_OP_GET && t->status >= 200 && t->status < 300 &&
            set_content_encoding(op, resp.content_encoding) < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
            next = CFS_NEXT_DONE;
        } else {
            next = b->ops->finish(b, op, &resp);
        }
        if (next == CFS_NEXT_DONE && cfs_coding_refetch_whole(op))
            next = CFS_NEXT_AGAIN; /* a range of an encoded object: read it whole */
    }

    if (next == CFS_NEXT_RETRY && (t->status == 503 || t->status == 429))
        cfs_throttle_rejected(ln->e, op); /* the host pushes back: send less at once */
    if (next == CFS_NEXT_RETRY && op->attempts < p->max_attempts) {
        cfs_transfer_schedule_retry(ln, t);
        return;
    }
    if (next == CFS_NEXT_RETRY && op->status == CFS_OK)
        cfs_op_fail(op, CFS_ETRANSIENT, "still failing after %d attempts", op->attempts);
    cfs_transfer_free(ln, t);
    continue_op(ln, op, next);
}

/* Do what a backend's finish() or child_done() asked of an op that has no transfer. */
static void continue_op(lane *ln, cfs_op *op, cfs_next next)
{
    if (next == CFS_NEXT_AGAIN) {
        cfs_transfer_start_request(ln, op);
        return;
    }
    if (next == CFS_NEXT_CHILDREN) {
        op->engine_priv = NULL;
        start_children(ln, op);
        return;
    }
    if (next == CFS_NEXT_VERIFY) {
        cfs_engine_hand_to_worker(ln->e, op, JOB_VERIFY);
        return;
    }
    finish_op(ln, op);
}

/* ---------- child ops ---------- */

/* Start the children attached to op->children, spread over the lanes from this one on.
 * Each completes through cfs_engine_complete(), which queues it for run_children_done()
 * (lane.c) on this lane, so none is handed back while this loop runs. */
static void start_children(lane *ln, cfs_op *op)
{
    engine *e = ln->e;
    cfs_op *list = op->children;
    op->children = NULL;
    if (!list && op->children_running == 0) {
        if (op->status == CFS_OK)
            cfs_op_fail(op, CFS_EPROTOCOL, "internal error: %s waits for no child op",
                        cfs_op_kind_name(op->kind));
        finish_op(ln, op);
        return;
    }
    cfs_op *child;
    while ((child = list_pop(&list))) {
        child->parent = op;
        child->backend = op->backend;
        child->limiter = op->limiter;
        child->lane = (ln->index + op->children_running) % e->n_lanes;
        op->children_running++;
        if (child->lane == ln->index) {
            cfs_transfer_start_request(ln, child);
        } else {
            lane *other = &e->lanes[child->lane];
            cfs_lane_hand(e, other, &other->ready, child);
        }
    }
}

/* Give each completed child to its parent's backend, and move the parents on. */
void cfs_transfer_hand_back_children(lane *ln, cfs_op *list)
{
    cfs_op *child;
    while ((child = list_pop(&list))) {
        child->engine_priv = NULL;
        cfs_op *parent = child->parent;
        cfs_backend *b = parent->backend;
        parent->children_running--;
        cfs_next next = b->ops->child_done(b, parent, child); /* child is the backend's now */
        if (parent->children) {
            start_children(ln, parent); /* more parts: they start at once */
            continue;
        }
        if (parent->children_running > 0)
            continue; /* the parent moves on once every child is back */
        if (next == CFS_NEXT_RETRY) {
            cfs_op_fail(parent, CFS_EPROTOCOL, "internal error: a retry asked after child ops");
            next = CFS_NEXT_DONE;
        }
        continue_op(ln, parent, next);
    }
}

int cfs_op_children_running(const cfs_op *op)
{
    return op->children_running;
}

/* ---------- counts ---------- */

void cfs_transfer_counts(cfs_engine_stats *out)
{
    out->requests = atomic_load(&g_requests);
    out->retries = atomic_load(&g_retries);
    out->connections = atomic_load(&g_connections);
    out->parked = atomic_load(&g_parked);
    out->hedges = atomic_load(&g_hedges);
    out->hedges_won = atomic_load(&g_hedges_won);
}
