/* The transfer engine: a few lanes per process, each one transfer thread driving its own
 * libcurl multi handle from epoll (curl_multi_socket_action), and a small pool of worker
 * threads that run the local backends and the backends' prepare() and verify() steps
 * (hashing, decompression).
 *
 * Lanes: one transfer thread moves about 1.2 GB/s of large bodies, or 25,000 small
 * responses a second (2 cores here), and is then the limit; a lane per core (up to
 * MAX_LANES) spreads that work. An admitted op is given to the lane where its store has the fewest ops in
 * flight, so a store with concurrency C keeps at most about C/lanes connections per lane
 * (libcurl cannot share connections between multi handles across threads), and runs on
 * that lane to the end: its retries, its prepare()/verify() round trips and its child ops'
 * completions come back there.
 *
 * An op may fan out into child ops (the parts of a multipart upload): each child is a
 * transfer of its own, outside admission control, spread over the lanes, and goes back
 * to its parent's backend (child_done) on the parent's lane when it completes.
 *
 * Locking: `engine.lock` guards the limiter list, each limiter's queue and counts, the
 * worker queue and each lane's inbound lists (ready, verify_failed, children_done).
 * Everything about a lane's transfers in flight (easy handles, the active and retry lists,
 * libcurl's timer) belongs to that lane's thread alone. */
#include "core/engine.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <curl/curl.h>

#include "core/backend.h"

#define WORKER_THREADS 8
#define MAX_LANES 4
#define HEADER_VALUE_MAX 512
#define IDLE_POLL_MS 1000
/* How often the bytes moved by each transfer are sampled: a stall is seen at most about
 * two intervals after its timeout. */
#define STALL_SAMPLE_MS 250
/* Idle connections older than this are not reused: servers close theirs (S3 after about
 * 20 s, nginx 75 s) and a request sent on a closed one fails. */
#define MAX_IDLE_CONNECTION_S 20L
/* How long an op whose build() said CFS_BUILD_WAIT stays parked at most: it is built again
 * as soon as cfs_engine_release_parked() is called; this is only a safety net (a fetch
 * claimed by an op that vanished without a word is given up after a timeout). */
#define PARK_MAX_S 5.0

/* What a worker thread does with a remote op (op->worker_job); local ops it executes. */
enum { JOB_VERIFY, JOB_PREPARE };

/* A first-in first-out list of ops, linked by op->next. */
typedef struct op_queue {
    cfs_op *head, *tail;
} op_queue;

static void queue_push(op_queue *q, cfs_op *op)
{
    op->next = NULL;
    if (q->tail)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
}

static cfs_op *queue_pop(op_queue *q)
{
    cfs_op *op = q->head;
    if (op) {
        q->head = op->next;
        if (!q->head)
            q->tail = NULL;
        op->next = NULL;
    }
    return op;
}

/* The first op of a list linked by op->next, unlinked (NULL when the list is empty). */
static cfs_op *list_pop(cfs_op **list)
{
    cfs_op *op = *list;
    if (op) {
        *list = op->next;
        op->next = NULL;
    }
    return op;
}

/* Everything queued, as a list linked by op->next; the queue is left empty. */
static cfs_op *queue_take_all(op_queue *q)
{
    cfs_op *list = q->head;
    q->head = q->tail = NULL;
    return list;
}

struct cfs_limiter {
    cfs_transfer_config cfg;
    pid_t owner_pid;            /* the engine generation this limiter is registered with */
    int active;                 /* admitted and not yet completed */
    int lane_active[MAX_LANES]; /* ... of which on each lane */
    op_queue waiting;           /* submitted, waiting for admission */
    cfs_limiter *next;
};

/* One HTTP transfer in flight (its lane's thread only). */
typedef struct transfer {
    cfs_op *op;
    CURL *easy;
    cfs_request req;
    cfs_buf scratch;            /* bodies that are not object data: errors, listings */
    cfs_buf *body;              /* where the body goes: &op->data or &scratch */
    size_t upload_pos;
    long status;
    int64_t content_length;
    double retry_after;         /* seconds, -1 if none */
    char etag[HEADER_VALUE_MAX];
    char content_range[HEADER_VALUE_MAX];
    char content_type[HEADER_VALUE_MAX];
    char content_encoding[HEADER_VALUE_MAX];
    char captured[CFS_CAPTURE_MAX][CFS_CAPTURE_VALUE_MAX]; /* the backend's response_headers */
    char curl_error[CURL_ERROR_SIZE];
    struct timespec retry_at;
    struct transfer *next_retry;
    /* stall detection (libcurl's LOW_SPEED averages over seconds, too slow to notice):
     * the transfer thread samples the bytes moved every STALL_SAMPLE_MS */
    curl_off_t moved;
    struct timespec last_move;
    int stalled;
    int cancelled;              /* given up mid-transfer (cfs_engine_notice_cancel) */
    int parked;                 /* in lane.retries until released (CFS_BUILD_WAIT) */
    unsigned park_gen;          /* g_park_gen before its build() said CFS_BUILD_WAIT */
    struct transfer *prev_active, *next_active; /* in lane.active while in the multi */
} transfer;

struct engine;

/* One transfer thread and its multi handle. */
typedef struct lane {
    struct engine *e;
    int index;
    CURLM *multi;
    pthread_t thread;
    atomic_int wake_pending;        /* a wakeup is on its way to the lane's thread */
    int epfd;                       /* the lane's epoll: sockets and wake_fd */
    int wake_fd;                    /* eventfd other threads write to wake it */
    /* under engine.lock: work other threads hand to this lane */
    op_queue ready;                 /* admitted, prepared, or child ops to start */
    op_queue verify_failed;         /* verified ops to back off and retry */
    op_queue children_done;         /* completed children of this lane's ops */
    /* the lane's thread only */
    struct timespec curl_deadline;  /* when libcurl wants its timeout handled */
    int curl_timer_set;
    transfer *active;               /* transfers in the multi handle */
    struct timespec next_stall_check;
    transfer *retries;
    unsigned cancel_gen;            /* g_cancel_gen when the lane last looked for cancelled ops */
    unsigned park_gen;              /* g_park_gen when the lane last released parked ops */
    CURL *idle_easy[64];
    int n_idle_easy;
} lane;

typedef struct engine {
    pthread_mutex_t lock;
    pthread_cond_t work_cv;
    pid_t pid;
    pthread_t workers[WORKER_THREADS];
    int workers_started;
    cfs_limiter *limiters;
    op_queue work;                  /* local ops to execute, remote ops to prepare or verify */
    lane lanes[MAX_LANES];
    int n_lanes;
} engine;

static pthread_mutex_t g_engine_lock = PTHREAD_MUTEX_INITIALIZER;
static engine *g_engine;        /* guarded by g_engine_lock; reset in the child after fork */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_curl_ok;

static atomic_uint_fast64_t g_requests, g_retries, g_connections, g_parked;
static atomic_uint g_park_gen;   /* bumped by each cfs_engine_release_parked: lanes then look */
static atomic_uint g_cancel_gen; /* bumped by each cfs_engine_notice_cancel: lanes then look */
static _Thread_local lane *t_lane; /* the lane this thread runs, if any */

/* ---------- fork ---------- */

static void after_fork_child(void)
{
    /* The parent's threads do not exist here; its engine's state may be mid-update.
     * Abandon it (its sockets belong to the parent) and start fresh on first use. */
    pthread_mutex_init(&g_engine_lock, NULL);
    g_engine = NULL;
}

static void global_init(void)
{
    g_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* ---------- time ---------- */

static struct timespec now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

/* Milliseconds until t, rounded up (0 once t has passed): waiting that long never wakes
 * before t, so a deadline is not polled for in a busy loop. */
static long ms_until(struct timespec t)
{
    struct timespec n = now_mono();
    long long ns = (long long)(t.tv_sec - n.tv_sec) * 1000000000LL + (t.tv_nsec - n.tv_nsec);
    return ns <= 0 ? 0 : (long)((ns + 999999) / 1000000);
}

static struct timespec after_seconds(double s)
{
    struct timespec t = now_mono();
    long long ns = (long long)(s * 1e9) + t.tv_nsec;
    t.tv_sec += ns / 1000000000LL;
    t.tv_nsec = ns % 1000000000LL;
    return t;
}

/* Thread-safe uniform [0,1) without global state. */
static double random01(void)
{
    static _Thread_local unsigned int seed;
    if (!seed)
        seed = (unsigned int)(now_mono().tv_nsec ^ (long)getpid() ^ (long)(uintptr_t)&seed);
    return (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
}

/* ---------- completion ---------- */

/* Queue an op for a worker thread (under e->lock). */
static void push_work_locked(engine *e, cfs_op *op)
{
    queue_push(&e->work, op);
    pthread_cond_signal(&e->work_cv);
}

/* Give a remote op without a transfer to a worker thread, for its prepare() or verify(). */
static void hand_to_worker(engine *e, cfs_op *op, int job)
{
    op->engine_priv = NULL;
    op->worker_job = job;
    pthread_mutex_lock(&e->lock);
    push_work_locked(e, op);
    pthread_mutex_unlock(&e->lock);
}

/* Wake a lane's thread unless a wakeup is already on its way, or we are it. */
static void wake(lane *ln)
{
    if (t_lane == ln)
        return; /* it looks at its lists again before it next sleeps */
    if (!atomic_exchange(&ln->wake_pending, 1)) {
        uint64_t one = 1;
        ssize_t rc = write(ln->wake_fd, &one, sizeof one); /* fails only if already readable */
        (void)rc;
    }
}

/* Give an op to one of a lane's inbound queues and wake the lane. */
static void hand_to_lane(engine *e, lane *ln, op_queue *q, cfs_op *op)
{
    pthread_mutex_lock(&e->lock);
    queue_push(q, op);
    pthread_mutex_unlock(&e->lock);
    wake(ln);
}

/* Everything in one of a lane's inbound queues (on the lane's thread). */
static cfs_op *take_inbound(lane *ln, op_queue *q)
{
    pthread_mutex_lock(&ln->e->lock);
    cfs_op *list = queue_take_all(q);
    pthread_mutex_unlock(&ln->e->lock);
    return list;
}

/* A slot freed or ops submitted: have a lane admit (any lane admits for all of them),
 * unless this thread is a lane, which admits before it next sleeps. */
static void wake_admission(engine *e)
{
    if (!t_lane)
        wake(&e->lanes[0]);
}

/* Local ops never pass through the transfer thread: they are admitted here, at
 * submission and as each one completes (under e->lock). */
static void admit_local_locked(engine *e, cfs_limiter *l)
{
    while (l->waiting.head && l->active < l->cfg.concurrency) {
        l->active++;
        push_work_locked(e, queue_pop(&l->waiting));
    }
}

static int is_local(const cfs_op *op)
{
    return op->backend->ops->execute != NULL;
}

static void complete(engine *e, cfs_op *op)
{
    if (op->parent) {
        /* a child: its parent's backend hears of it on the parent's lane, never here
         * (this may be a worker thread, another lane, or the middle of starting the
         * parent's children) */
        lane *home = &e->lanes[op->parent->lane];
        hand_to_lane(e, home, &home->children_done, op);
        return;
    }
    int local = is_local(op);
    pthread_mutex_lock(&e->lock);
    op->limiter->active--;
    if (local)
        admit_local_locked(e, op->limiter);
    else
        op->limiter->lane_active[op->lane]--;
    pthread_mutex_unlock(&e->lock);
    if (!local)
        wake_admission(e);       /* a slot is free: admit more */
    op->on_done(op, op->ctx);    /* may free op: touch nothing after */
}

/* ---------- transfers ---------- */

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
        return len;
    }
    if (len <= 2) { /* end of headers: choose where the body goes */
        long code = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200)
            return len;
        t->status = code;
        t->body = (t->op->kind == CFS_OP_GET && code >= 200 && code < 300) ? &t->op->data
                                                                            : &t->scratch;
        /* + 1: room for the NUL that ends the bytes object the body may become */
        if (t->content_length > 0 && !t->req.no_body &&
            cfs_buf_reserve(t->body, (size_t)t->content_length + 1) < 0)
            return 0; /* out of memory: abort the transfer */
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return len;
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
    if (cfs_buf_append(t->body, data, len) < 0)
        return 0; /* CURLE_WRITE_ERROR */
    return len;
}

static size_t on_upload(char *dst, size_t size, size_t n, void *userp)
{
    transfer *t = userp;
    size_t room = size * n, left = t->req.body_len - t->upload_pos;
    size_t k = left < room ? left : room;
    if (k == 0)
        return 0;
    memcpy(dst, t->req.body + t->upload_pos, k);
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
    if (t->prev_active)
        t->prev_active->next_active = t->next_active;
    else if (ln->active == t)
        ln->active = t->next_active;
    if (t->next_active)
        t->next_active->prev_active = t->prev_active;
    t->prev_active = t->next_active = NULL;
}

static void transfer_free(lane *ln, transfer *t)
{
    unlink_active(ln, t);
    if (t->easy) {
        curl_multi_remove_handle(ln->multi, t->easy);
        give_easy(ln, t->easy);
    }
    cfs_request_clear(&t->req);
    cfs_buf_free(&t->scratch);
    free(t);
}

/* Finish an op whose transfer (if any) is already released. */
static void finish_op(lane *ln, cfs_op *op)
{
    op->engine_priv = NULL;
    complete(ln->e, op);
}

/* Whether an op whose caller gave up may be dropped now without leaving anything half
 * done (the rule engine.h states): a read at any point, a part of a multipart upload (its
 * parent aborts the upload), any other op while it is not on the wire and has not gone
 * past its first step. */
static int may_give_up(const cfs_op *op, int on_the_wire)
{
    const cfs_op *owner = op->parent ? op->parent : op;
    if (!owner->cancel || !atomic_load_explicit(owner->cancel, memory_order_relaxed))
        return 0;
    if (op->parent || op->kind == CFS_OP_GET || op->kind == CFS_OP_HEAD || op->kind == CFS_OP_LIST)
        return 1;
    return !on_the_wire && op->step == 0;
}

static void fail_cancelled(cfs_op *op)
{
    cfs_op_fail(op, CFS_ECANCELLED, "given up: the call was interrupted");
}

/* ---------- parked ops ----------
 * An op whose build() said CFS_BUILD_WAIT (another op is fetching what it needs) waits in
 * the lane's retry list without a deadline it would poll at: whoever ends that fetch calls
 * cfs_engine_release_parked(), and each lane then builds its parked ops again (those still
 * waiting park again). Being in the retry list, a parked op is given up like any other on
 * a cancel (give_up_cancelled). A release between the op's build() and its parking is not
 * lost: the op remembers g_park_gen from before build(). */

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

/* After a cfs_engine_release_parked: make the parked ops due (start_due_retries builds them). */
static void release_parked(lane *ln)
{
    unsigned gen = atomic_load(&g_park_gen);
    if (gen == ln->park_gen)
        return;
    ln->park_gen = gen;
    struct timespec now = now_mono();
    for (transfer *t = ln->retries; t; t = t->next_retry) {
        if (t->parked && t->park_gen != gen) {
            t->parked = 0;
            t->retry_at = now;
        }
    }
}

/* Have every lane of this process's engine look at its lists before it next sleeps. */
static void wake_every_lane(void)
{
    pthread_mutex_lock(&g_engine_lock);
    engine *e = g_engine;
    pthread_mutex_unlock(&g_engine_lock);
    if (!e || e->pid != getpid())
        return;
    for (int i = 0; i < e->n_lanes; i++)
        wake(&e->lanes[i]);
}

void cfs_engine_release_parked(void)
{
    atomic_fetch_add(&g_park_gen, 1);
    wake_every_lane(); /* each releases its parked ops */
}

/* Build and start the next request of an op. On failure the op completes. */
static void start_request(lane *ln, cfs_op *op)
{
    if (may_give_up(op, 0)) {
        fail_cancelled(op);
        finish_op(ln, op);
        return;
    }
    const cfs_transfer_config *cfg = &op->limiter->cfg;
    cfs_backend *b = op->backend;
    transfer *t = calloc(1, sizeof *t);
    if (!t) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory starting a transfer");
        finish_op(ln, op);
        return;
    }
    t->op = op;
    t->last_move = now_mono();
    t->content_length = -1;
    t->retry_after = -1;
    op->engine_priv = t;
    if (op->kind == CFS_OP_GET)
        cfs_buf_reset(&op->data);
    unsigned park_gen = atomic_load(&g_park_gen);
    int built = b->ops->build(b, op, &t->req);
    if (built == CFS_BUILD_WAIT) {
        park(ln, t, park_gen); /* no attempt counted */
        return;
    }
    if (built == CFS_BUILD_PREPARE) {
        transfer_free(ln, t);
        hand_to_worker(ln->e, op, JOB_PREPARE);
        return;
    }
    if (built != CFS_BUILD_SEND) {
        transfer_free(ln, t);
        finish_op(ln, op);
        return;
    }
    CURL *c = take_easy(ln);
    if (c && curl_easy_setopt(c, CURLOPT_BUFFERSIZE, cfg->buffer_size) != CURLE_OK) {
        /* libcurl refuses to resize the receive buffer of some reused handles (after
         * HTTP/2): start from a fresh one */
        curl_easy_cleanup(c);
        c = curl_easy_init();
        if (c && curl_easy_setopt(c, CURLOPT_BUFFERSIZE, cfg->buffer_size) != CURLE_OK) {
            curl_easy_cleanup(c);
            c = NULL;
        }
    }
    if (!c) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory creating a transfer handle");
        transfer_free(ln, t);
        finish_op(ln, op);
        return;
    }
    t->easy = c;
    CURLcode rc = CURLE_OK;
    const char *failed = NULL; /* what could not be set, for the error message */
#define SET(opt, val) \
    do { if (rc == CURLE_OK && (rc = curl_easy_setopt(c, opt, val)) != CURLE_OK) failed = #opt; } while (0)
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
    SET(CURLOPT_FRESH_CONNECT, (long)op->fresh_connection);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->curl_error);
    SET(CURLOPT_SOCKOPTFUNCTION, on_open_socket);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    /* libcurl would add "Expect: 100-continue" to large uploads: one round trip lost */
    if (rc == CURLE_OK && cfs_request_header(&t->req, "Expect:") < 0)
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
        if (t->req.body) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->req.body_len);
            SET(CURLOPT_POSTFIELDS, t->req.body);
        }
    }
#undef SET
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
        transfer_free(ln, t);
        finish_op(ln, op);
        return;
    }
    link_active(ln, t);
    op->attempts++;
    atomic_fetch_add(&g_requests, 1);
}

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

static void schedule_retry(lane *ln, transfer *t)
{
    cfs_op *op = t->op;
    const cfs_retry_policy *p = &op->limiter->cfg.retry;
    double delay = cfs_retry_delay(p, op->attempts, random01(), t->retry_after);
    atomic_fetch_add(&g_retries, 1);
    /* keep the failure text: it is what the caller sees if every retry fails */
    unlink_active(ln, t);
    if (t->easy) {
        curl_multi_remove_handle(ln->multi, t->easy);
        give_easy(ln, t->easy);
        t->easy = NULL;
    }
    t->retry_at = after_seconds(delay);
    t->next_retry = ln->retries;
    ln->retries = t;
}

static void on_transfer_done(lane *ln, CURL *easy, CURLcode rc)
{
    transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    cfs_op *op = t->op;
    cfs_backend *b = op->backend;
    const cfs_retry_policy *p = &op->limiter->cfg.retry;
    cfs_next next;

    if (rc != CURLE_OK) {
        const char *why = t->curl_error[0] ? t->curl_error : curl_easy_strerror(rc);
        if (t->cancelled) {
            fail_cancelled(op);
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
        op->http_status = t->status;
        op->status = CFS_OK;
        op->fresh_connection = 0;
        next = b->ops->finish(b, op, &resp);
    }

    if (next == CFS_NEXT_RETRY && op->attempts < p->max_attempts) {
        schedule_retry(ln, t);
        return;
    }
    if (next == CFS_NEXT_RETRY && op->status == CFS_OK)
        cfs_op_fail(op, CFS_ETRANSIENT, "still failing after %d attempts", op->attempts);
    transfer_free(ln, t);
    continue_op(ln, op, next);
}

/* Do what a backend's finish() or child_done() asked of an op that has no transfer. */
static void continue_op(lane *ln, cfs_op *op, cfs_next next)
{
    if (next == CFS_NEXT_AGAIN) {
        start_request(ln, op);
        return;
    }
    if (next == CFS_NEXT_CHILDREN) {
        op->engine_priv = NULL;
        start_children(ln, op);
        return;
    }
    if (next == CFS_NEXT_VERIFY) {
        hand_to_worker(ln->e, op, JOB_VERIFY);
        return;
    }
    finish_op(ln, op);
}

/* Start the children attached to op->children, spread over the lanes from this one on.
 * Each completes through complete(), which queues it for run_children_done() on this
 * lane, so none is handed back while this loop runs. */
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
            start_request(ln, child);
        } else {
            lane *other = &e->lanes[child->lane];
            hand_to_lane(e, other, &other->ready, child);
        }
    }
}

/* Give each completed child to its parent's backend, and move the parents on. */
static void hand_back_children(lane *ln, cfs_op *list)
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

/* Hand completed children back to their parents' backends. */
static void run_children_done(lane *ln)
{
    for (;;) {
        /* again until none is left: children started below may complete at once */
        cfs_op *list = take_inbound(ln, &ln->children_done);
        if (!list)
            return;
        hand_back_children(ln, list);
    }
}

/* Start what other threads handed to this lane: admitted ops, prepared ones (for their
 * request), children of another lane's op. */
static void start_ready(lane *ln)
{
    cfs_op *list = take_inbound(ln, &ln->ready);
    cfs_op *op;
    while ((op = list_pop(&list))) {
        start_request(ln, op);
    }
}

/* Verified ops that failed come back here to back off and try again. */
static void retry_verify_failures(lane *ln)
{
    cfs_op *list = take_inbound(ln, &ln->verify_failed);
    cfs_op *op;
    while ((op = list_pop(&list))) {
        transfer *t = calloc(1, sizeof *t);
        if (!t) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory retrying");
            finish_op(ln, op);
            continue;
        }
        t->op = op;
        t->retry_after = -1;
        op->engine_priv = t;
        schedule_retry(ln, t);
    }
}

/* Fail, for a retry, every transfer that has moved no byte for its stall timeout
 * (sampled every STALL_SAMPLE_MS). */
static void check_stalls(lane *ln)
{
    struct timespec now = now_mono();
    if (now.tv_sec < ln->next_stall_check.tv_sec ||
        (now.tv_sec == ln->next_stall_check.tv_sec && now.tv_nsec < ln->next_stall_check.tv_nsec))
        return;
    ln->next_stall_check = after_seconds(STALL_SAMPLE_MS / 1000.0);
    transfer *t = ln->active;
    while (t) {
        transfer *next = t->next_active; /* t may leave the list below */
        curl_off_t down = 0, up = 0;
        curl_easy_getinfo(t->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
        curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &up);
        if (down + up != t->moved) {
            t->moved = down + up;
            t->last_move = now;
        } else {
            double idle = (double)(now.tv_sec - t->last_move.tv_sec) +
                          (double)(now.tv_nsec - t->last_move.tv_nsec) / 1e9;
            if (idle >= (double)t->op->limiter->cfg.stall_timeout_s) {
                t->stalled = 1;
                on_transfer_done(ln, t->easy, CURLE_OPERATION_TIMEDOUT);
            }
        }
        t = next;
    }
}

/* After a cfs_engine_notice_cancel: drop what may be given up among the transfers on
 * the wire and those waiting to retry (ops about to start are checked in start_request). */
static void give_up_cancelled(lane *ln)
{
    unsigned gen = atomic_load(&g_cancel_gen);
    if (gen == ln->cancel_gen)
        return;
    ln->cancel_gen = gen;
    transfer *t = ln->active;
    while (t) {
        transfer *next = t->next_active; /* t leaves the list below */
        if (may_give_up(t->op, 1)) {
            t->cancelled = 1;
            on_transfer_done(ln, t->easy, CURLE_ABORTED_BY_CALLBACK);
        }
        t = next;
    }
    transfer **pp = &ln->retries;
    while (*pp) {
        t = *pp;
        if (!may_give_up(t->op, 0)) {
            pp = &t->next_retry;
            continue;
        }
        *pp = t->next_retry;
        cfs_op *op = t->op;
        transfer_free(ln, t);
        fail_cancelled(op);
        finish_op(ln, op);
    }
}

static void start_due_retries(lane *ln, long *timeout_ms)
{
    transfer **pp = &ln->retries;
    while (*pp) {
        transfer *t = *pp;
        long ms = ms_until(t->retry_at);
        if (ms > 0) {
            if (ms < *timeout_ms)
                *timeout_ms = ms;
            pp = &t->next_retry;
            continue;
        }
        *pp = t->next_retry;
        cfs_op *op = t->op;
        /* a retry rebuilds the request (fresh signature, date) and clears old results */
        op->status = CFS_OK;
        op->message[0] = '\0';
        transfer_free(ln, t);
        start_request(ln, op);
    }
}

/* ---------- local work ---------- */

static void *worker_main(void *arg)
{
    engine *e = arg;
    pthread_setname_np(pthread_self(), "cfs-worker");
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (!e->work.head)
            pthread_cond_wait(&e->work_cv, &e->lock);
        cfs_op *op = queue_pop(&e->work);
        pthread_mutex_unlock(&e->lock);
        const cfs_backend_ops *ops = op->backend->ops;
        if ((is_local(op) || op->worker_job == JOB_PREPARE) && may_give_up(op, 0)) {
            fail_cancelled(op); /* not executed, or not sent once prepared */
        } else if (is_local(op)) {
            op->attempts++;
            ops->execute(op->backend, op);
        } else if (op->worker_job == JOB_PREPARE) {
            if (ops->prepare(op->backend, op) == 0) { /* back to its lane for the request */
                lane *ln = &e->lanes[op->lane];
                hand_to_lane(e, ln, &ln->ready, op);
                continue;
            }
        } else if (ops->verify(op->backend, op) == CFS_NEXT_RETRY &&
                   op->attempts < op->limiter->cfg.retry.max_attempts) {
            lane *ln = &e->lanes[op->lane];
            hand_to_lane(e, ln, &ln->verify_failed, op);
            continue;
        }
        complete(e, op);
    }
    return NULL;
}

/* ---------- admission ---------- */

/* Move admissible ops out of the limiter queues (under the lock). Local ones go to the
 * worker queue; each remote one to the lane where its store has the fewest ops. Returns
 * the lanes given ops (a bit per lane) for the caller to wake. */
static unsigned admit_locked(engine *e)
{
    unsigned given = 0;
    for (cfs_limiter *l = e->limiters; l; l = l->next) {
        while (l->waiting.head && l->active < l->cfg.concurrency) {
            cfs_op *op = queue_pop(&l->waiting);
            l->active++;
            if (op->backend->ops->execute) {
                push_work_locked(e, op);
                continue;
            }
            int best = 0;
            for (int i = 1; i < e->n_lanes; i++)
                if (l->lane_active[i] < l->lane_active[best])
                    best = i;
            l->lane_active[best]++;
            op->lane = best;
            queue_push(&e->lanes[best].ready, op); /* the caller wakes the lane */
            given |= 1u << best;
        }
    }
    return given;
}

/* libcurl's socket callback: keep epoll's interest in step with what each socket waits
 * for. Event-driven, libcurl touches only the sockets that are ready (curl_multi_perform
 * polls every transfer's socket on every call: 13 poll() calls per request here). */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    lane *ln = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ln->epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(ln->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev = { .events = 0, .data.fd = fd };
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (socketp) {
        epoll_ctl(ln->epfd, EPOLL_CTL_MOD, fd, &ev);
    } else if (epoll_ctl(ln->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
        curl_multi_assign(ln->multi, fd, ln); /* any non-NULL mark: "registered" */
    }
    return 0;
}

/* libcurl's timer callback: when to call it back with CURL_SOCKET_TIMEOUT (-1: never). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    lane *ln = userp;
    ln->curl_timer_set = timeout_ms >= 0;
    if (ln->curl_timer_set)
        ln->curl_deadline = after_seconds((double)timeout_ms / 1000.0);
    return 0;
}

static void drain_messages(lane *ln)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ln->multi, &left)))
        if (msg->msg == CURLMSG_DONE)
            on_transfer_done(ln, msg->easy_handle, msg->data.result);
}

static void *transfer_main(void *arg)
{
    lane *ln = arg;
    engine *e = ln->e;
    t_lane = ln;
    pthread_setname_np(pthread_self(), "cfs-transfer");
    struct epoll_event events[256];
    int running = 0;
    for (;;) {
        atomic_store(&ln->wake_pending, 0); /* before admitting: later submits wake us again */
        pthread_mutex_lock(&e->lock);
        unsigned given = admit_locked(e);
        pthread_mutex_unlock(&e->lock);
        for (int i = 0; i < e->n_lanes; i++)
            if (given & (1u << i))
                wake(&e->lanes[i]); /* not this one: it starts its own below */

        long timeout_ms = ln->active ? STALL_SAMPLE_MS : IDLE_POLL_MS;
        start_ready(ln);
        run_children_done(ln);
        retry_verify_failures(ln);
        give_up_cancelled(ln);
        release_parked(ln);
        start_due_retries(ln, &timeout_ms);
        check_stalls(ln);
        if (ln->curl_timer_set) {
            long ms = ms_until(ln->curl_deadline);
            if (ms < timeout_ms)
                timeout_ms = ms;
        }

        int n = epoll_wait(ln->epfd, events, (int)(sizeof events / sizeof events[0]), (int)timeout_ms);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ln->wake_fd) {
                uint64_t count;
                ssize_t rc = read(ln->wake_fd, &count, sizeof count);
                (void)rc;
                continue;
            }
            int flags = 0;
            if (events[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (events[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(ln->multi, fd, flags, &running);
        }
        if (ln->curl_timer_set && ms_until(ln->curl_deadline) == 0) {
            ln->curl_timer_set = 0;
            curl_multi_socket_action(ln->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_messages(ln);
    }
    return NULL;
}

/* ---------- lifecycle ---------- */

static void lane_close(lane *ln)
{
    if (ln->multi)
        curl_multi_cleanup(ln->multi);
    if (ln->epfd >= 0)
        close(ln->epfd);
    if (ln->wake_fd >= 0)
        close(ln->wake_fd);
    ln->multi = NULL;
    ln->epfd = ln->wake_fd = -1;
}

/* A lane's epoll, eventfd and multi handle (its thread not started). 0, or -1 with
 * nothing left open. */
static int lane_open(engine *e, lane *ln, int index)
{
    ln->e = e;
    ln->index = index;
    ln->epfd = epoll_create1(EPOLL_CLOEXEC);
    ln->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event wake_ev = { .events = EPOLLIN, .data.fd = ln->wake_fd };
    if (ln->epfd < 0 || ln->wake_fd < 0 || epoll_ctl(ln->epfd, EPOLL_CTL_ADD, ln->wake_fd, &wake_ev) < 0 ||
        !(ln->multi = curl_multi_init())) {
        lane_close(ln);
        return -1;
    }
    curl_multi_setopt(ln->multi, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETDATA, ln);
    curl_multi_setopt(ln->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(ln->multi, CURLMOPT_TIMERDATA, ln);
    return 0;
}

/* A lane per core this process may run on (its CPU affinity), up to MAX_LANES. */
static int lanes_wanted(void)
{
    cpu_set_t cpus;
    long n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus)
                                                           : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_LANES ? MAX_LANES : (int)n;
}

/* The engine of this process, started on first use. NULL if it cannot start. */
static engine *get_engine(void)
{
    pthread_once(&g_once, global_init);
    if (!g_curl_ok)
        return NULL;
    pthread_mutex_lock(&g_engine_lock);
    engine *e = g_engine; /* a forked child finds NULL here (after_fork_child) */
    if (e) {
        pthread_mutex_unlock(&g_engine_lock);
        return e;
    }
    e = calloc(1, sizeof *e);
    if (!e)
        goto fail;
    e->pid = getpid();
    if (pthread_mutex_init(&e->lock, NULL) != 0)
        goto fail_free;
    if (pthread_cond_init(&e->work_cv, NULL) != 0)
        goto fail_mutex;
    int opened = 0, wanted = lanes_wanted();
    while (opened < wanted && lane_open(e, &e->lanes[opened], opened) == 0)
        opened++;
    if (opened == 0)
        goto fail_cond;
    /* n_lanes is read by the lanes (under the lock) as soon as they run */
    pthread_mutex_lock(&e->lock);
    e->n_lanes = opened;
    pthread_mutex_unlock(&e->lock);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int started = 0;
    while (started < opened && pthread_create(&e->lanes[started].thread, &attr, transfer_main,
                                              &e->lanes[started]) == 0)
        started++;
    if (started < opened) {
        /* fewer lanes: nothing was submitted yet, so nothing waits on the others */
        pthread_mutex_lock(&e->lock);
        e->n_lanes = started;
        pthread_mutex_unlock(&e->lock);
        for (int i = started; i < opened; i++)
            lane_close(&e->lanes[i]);
        if (started == 0) {
            pthread_attr_destroy(&attr);
            goto fail_cond;
        }
    }
    for (int i = 0; i < WORKER_THREADS; i++)
        if (pthread_create(&e->workers[i], &attr, worker_main, e) == 0)
            e->workers_started++;
    pthread_attr_destroy(&attr);
    /* its lanes are running, so the engine stays even if no worker could start (out of
     * threads): remote ops then still work, local ones and prepare/verify steps wait */
    g_engine = e;
    pthread_mutex_unlock(&g_engine_lock);
    return e;

fail_cond:
    pthread_cond_destroy(&e->work_cv);
fail_mutex:
    pthread_mutex_destroy(&e->lock);
fail_free:
    free(e);
fail:
    pthread_mutex_unlock(&g_engine_lock);
    return NULL;
}

cfs_limiter *cfs_limiter_new(const cfs_transfer_config *cfg)
{
    cfs_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (l->cfg.concurrency < 1)
        l->cfg.concurrency = 1;
    return l;
}

const cfs_transfer_config *cfs_limiter_config(const cfs_limiter *l)
{
    return &l->cfg;
}

int cfs_op_max_attempts(const cfs_op *op)
{
    return op->limiter->cfg.retry.max_attempts;
}

int cfs_op_last_attempt(const cfs_op *op)
{
    return op->attempts >= op->limiter->cfg.retry.max_attempts;
}

int cfs_op_children_running(const cfs_op *op)
{
    return op->children_running;
}

void cfs_limiter_free(cfs_limiter *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&g_engine_lock);
    engine *e = g_engine;
    pthread_mutex_unlock(&g_engine_lock);
    if (e && e->pid == getpid() && l->owner_pid == e->pid) {
        pthread_mutex_lock(&e->lock);
        for (cfs_limiter **pp = &e->limiters; *pp; pp = &(*pp)->next) {
            if (*pp == l) {
                *pp = l->next;
                break;
            }
        }
        pthread_mutex_unlock(&e->lock);
    }
    free(l);
}

int cfs_engine_submit(cfs_op *op)
{
    engine *e = get_engine();
    if (!e)
        return -1;
    cfs_limiter *l = op->limiter;
    pthread_mutex_lock(&e->lock);
    if (l->owner_pid != e->pid) {
        /* first use, or first use in a forked child: (re)register with this engine */
        l->owner_pid = e->pid;
        l->active = 0;
        memset(l->lane_active, 0, sizeof l->lane_active);
        l->waiting.head = l->waiting.tail = NULL;
        l->next = e->limiters;
        e->limiters = l;
    }
    queue_push(&l->waiting, op);
    int local = is_local(op);
    if (local)
        admit_local_locked(e, l);
    pthread_mutex_unlock(&e->lock);
    if (!local)
        wake_admission(e);
    return 0;
}

void cfs_engine_get_stats(cfs_engine_stats *out)
{
    out->requests = atomic_load(&g_requests);
    out->retries = atomic_load(&g_retries);
    out->connections = atomic_load(&g_connections);
    out->parked = atomic_load(&g_parked);
    out->lanes = 0;
    pthread_mutex_lock(&g_engine_lock);
    engine *e = g_engine;
    pthread_mutex_unlock(&g_engine_lock);
    if (e) {
        pthread_mutex_lock(&e->lock);
        out->lanes = e->n_lanes;
        pthread_mutex_unlock(&e->lock);
    }
}

/* ---------- waiter ---------- */

struct cfs_waiter {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    cfs_op *done;
    int n_done;
    int want;       /* the waiting caller's min_done: signal once n_done reaches it */
    atomic_int cancelled; /* op->cancel of its ops */
};

cfs_waiter *cfs_waiter_new(void)
{
    cfs_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    atomic_init(&w->cancelled, 0);
    return w;
}

void cfs_waiter_free(cfs_waiter *w)
{
    if (!w)
        return;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void cfs_waiter_done(cfs_op *op, void *ctx)
{
    cfs_waiter *w = ctx;
    pthread_mutex_lock(&w->lock);
    op->next = w->done;
    w->done = op;
    if (++w->n_done == w->want)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
}

cfs_op *cfs_waiter_take(cfs_waiter *w, int min_done, long timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &until);
        long long ns = until.tv_nsec + timeout_ms * 1000000LL;
        until.tv_sec += ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
    }
    pthread_mutex_lock(&w->lock);
    if (w->n_done < min_done) {
        w->want = min_done;
        while (w->n_done < min_done) {
            if (timeout_ms < 0)
                pthread_cond_wait(&w->cv, &w->lock);
            else if (pthread_cond_timedwait(&w->cv, &w->lock, &until) == ETIMEDOUT)
                break;
        }
        w->want = 0;
    }
    cfs_op *list = w->done;
    w->done = NULL;
    w->n_done = 0;
    pthread_mutex_unlock(&w->lock);
    return list;
}

const atomic_int *cfs_waiter_cancel_flag(cfs_waiter *w)
{
    return &w->cancelled;
}

void cfs_waiter_cancel(cfs_waiter *w)
{
    if (!atomic_exchange(&w->cancelled, 1))
        cfs_engine_notice_cancel();
}

void cfs_engine_notice_cancel(void)
{
    atomic_fetch_add(&g_cancel_gen, 1);
    wake_every_lane(); /* each drops its cancelled transfers */
}
