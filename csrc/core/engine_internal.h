/* The engine's private structures and the functions its files share: only csrc/core/
 * includes this header (python/ and the backends use core/engine.h and core/backend.h).
 *
 * The engine's files: engine.c (overview, start-up, fork, worker threads, giving up,
 * stats), admission.c (limiters, the admission queues, completion), lane.c (the lanes'
 * threads: their loop, epoll and libcurl's socket and timer callbacks, inbound queues),
 * transfer.c (an op's requests: libcurl's callbacks, starting and finishing a transfer,
 * retries, child ops), throttle.c (adaptive concurrency per host), waiter.c
 * (cfs_waiter_*).
 *
 * Locking: `engine.lock` guards the limiter list, each limiter's queue and counts, the
 * worker queue and each lane's inbound lists (ready, verify_failed, children_done).
 * Everything about a lane's transfers in flight (easy handles, the active and retry lists,
 * libcurl's timer) belongs to that lane's thread alone. */
#ifndef CFS_ENGINE_INTERNAL_H
#define CFS_ENGINE_INTERNAL_H
#include "core/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

#include <curl/curl.h>

#include "core/backend.h"

#define WORKER_THREADS 8
#define MAX_LANES 4
#define HEADER_VALUE_MAX 512

/* What a worker thread does with a remote op (op->worker_job); local ops it executes. */
enum { JOB_VERIFY, JOB_PREPARE, JOB_ENCODE, JOB_DECODE };

/* A first-in first-out list of ops, linked by op->next. */
typedef struct op_queue {
    cfs_op *head, *tail;
} op_queue;

static inline void queue_push(op_queue *q, cfs_op *op)
{
    op->next = NULL;
    if (q->tail)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
}

static inline cfs_op *queue_pop(op_queue *q)
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
static inline cfs_op *list_pop(cfs_op **list)
{
    cfs_op *op = *list;
    if (op) {
        *list = op->next;
        op->next = NULL;
    }
    return op;
}

/* Everything queued, as a list linked by op->next; the queue is left empty. */
static inline cfs_op *queue_take_all(op_queue *q)
{
    cfs_op *list = q->head;
    q->head = q->tail = NULL;
    return list;
}

static inline int is_local(const cfs_op *op)
{
    return op->backend->ops->execute != NULL;
}

typedef struct cfs_host_window cfs_host_window;

/* ---------- hedged reads (transfer.c) ----------
 * A store's recent times to the first byte, as a histogram with exponential buckets
 * (HEDGE_SUB_BUCKETS per doubling from HEDGE_BUCKET0_NS), halved every HEDGE_WINDOW
 * samples so that it follows the recent past; the hedge delay (its quantile) is computed
 * again every HEDGE_RECOMPUTE samples. And the token bucket that bounds the hedges: each
 * first request earns hedge_budget of a token, a hedge costs one, at most HEDGE_BURST
 * saved (or hedge_budget x concurrency, if more). Every field is atomic: the lanes of a
 * store update it without a lock (the counts are approximate under a race, never
 * unbounded). */
#define HEDGE_BUCKETS 80
#define HEDGE_SUB_BUCKETS 4
#define HEDGE_BUCKET0_NS 25000ULL
#define HEDGE_WINDOW 1024u
#define HEDGE_RECOMPUTE 16u
#define HEDGE_MIN_SAMPLES 32u
#define HEDGE_TOKEN 1000L      /* a token, in thousandths */
#define HEDGE_BURST 10L        /* tokens saved at most */

typedef struct hedge_state {
    atomic_uint counts[HEDGE_BUCKETS];
    atomic_uint total;           /* samples in counts (about) */
    atomic_uint seen;            /* samples ever recorded */
    atomic_llong delay_ns;       /* the learned delay; 0 until HEDGE_MIN_SAMPLES */
    atomic_long tokens;          /* thousandths of a token */
} hedge_state;

struct cfs_limiter {
    cfs_transfer_config cfg;
    pid_t owner_pid;            /* the engine generation this limiter is registered with */
    int active;                 /* admitted and not yet completed */
    int lane_active[MAX_LANES]; /* ... of which on each lane */
    op_queue waiting;           /* submitted, waiting for admission */
    cfs_host_window *host;      /* where its requests go, once known (throttle.c) */
    cfs_limiter *next;
    hedge_state hedge;          /* lock-free: see above */
    atomic_llong upload_bytes_held; /* cfs_limiter_upload_bytes_held: lane threads add,
                                 * completions take back, Python reads */
};

/* One HTTP transfer in flight (its lane's thread only). */
typedef struct transfer {
    cfs_op *op;
    CURL *easy;
    cfs_request req;
    cfs_buf scratch;            /* bodies that are not object data: errors, listings */
    cfs_buf *body;              /* where the body goes: &op->data, &own or &scratch */
    cfs_buf own;                /* a hedge's object data until it wins (never op->data:
                                 * the two transfers of an op never write the same bytes) */
    size_t upload_pos;
    int upload_errno;           /* the body's file could not be read (-1: it was shorter) */
    long status;
    int64_t content_length;
    double retry_after;         /* seconds, -1 if none */
    char etag[HEADER_VALUE_MAX];
    char content_range[HEADER_VALUE_MAX];
    char content_type[HEADER_VALUE_MAX];
    char content_encoding[HEADER_VALUE_MAX];
    char captured[CFS_CAPTURE_MAX][CFS_CAPTURE_VALUE_MAX]; /* the backend's response_headers */
    cfs_buf head_headers;       /* HEAD: every header line, at most CFS_HEAD_HEADERS_MAX */
    int head_headers_truncated;
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
    unsigned park_gen; /* cfs_transfer_park_gen() before its build() said CFS_BUILD_WAIT */
    struct transfer *prev_active, *next_active; /* in lane.active while in the multi */
    /* hedging (transfer.c) */
    struct timespec started; /* when it was added to the multi handle */
    struct timespec hedge_at; /* when a hedge is due if still unanswered */
    int hedgeable; /* a read whose first-byte time counts and may be hedged */
    int is_hedge; /* the second request of its op */
    struct transfer *sibling; /* the op's other transfer while both run, else NULL */
    cfs_host_window *hedge_host; /* a hedge: the host window it counts in */
    int in_hedge_queue;
    struct transfer *prev_hedge, *next_hedge; /* in lane.hedge_head, by hedge_at */
} transfer;

struct engine;

/* One transfer thread and its multi handle. */
typedef struct lane {
    struct engine *e;
    int index;
    CURLM *multi;
    pthread_t thread;
    atomic_int wake_pending; /* a wakeup is on its way to the lane's thread */
    int epfd; /* the lane's epoll: sockets and wake_fd */
    int wake_fd; /* eventfd other threads write to wake it */
    /* under engine.lock: work other threads hand to this lane */
    op_queue ready; /* admitted, prepared, or child ops to start */
    op_queue verify_failed; /* verified ops to back off and retry */
    op_queue children_done; /* completed children of this lane's ops */
    /* the lane's thread only */
    struct timespec curl_deadline; /* when libcurl wants its timeout handled */
    int curl_timer_set;
    transfer *active; /* transfers in the multi handle */
    struct timespec next_stall_check;
    transfer *retries;
    transfer *hedge_head, *hedge_tail; /* reads that may be hedged, by hedge_at */
    unsigned cancel_gen; /* cfs_engine_cancel_gen() when the lane last looked for cancelled ops */
    unsigned park_gen; /* cfs_transfer_park_gen() when the lane last released parked ops */
    int turn_again; /* work came up for it during its own turn (a freed slot, a hand-over):
                       it takes another turn instead of sleeping */
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
    cfs_host_window *hosts; /* throttle.c: a window per host pushed back by */
    op_queue work; /* local ops to execute, remote ops to prepare or verify */
    lane lanes[MAX_LANES];
    int n_lanes;
    /* TLS sessions shared by every transfer of the process (all lanes, all stores): a new
     * connection resumes a session another one got instead of a full handshake. NULL if it
     * could not be made (each handle then keeps its own cache, libcurl's default). */
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
} engine;

/* ---------- time ---------- */

static inline struct timespec now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

static inline struct timespec after_seconds(double s)
{
    struct timespec t = now_mono();
    long long ns = (long long)(s * 1e9) + t.tv_nsec;
    t.tv_sec += ns / 1000000000LL;
    t.tv_nsec = ns % 1000000000LL;
    return t;
}

/* ---------- engine.c ---------- */

/* The engine of this process, started on first use. NULL if it cannot start. */
engine *cfs_engine_get(void);
/* The engine if it has started, else NULL (it is not started here). */
engine *cfs_engine_current(void);
/* Queue an op for a worker thread (under e->lock). */
void cfs_engine_push_work_locked(engine *e, cfs_op *op);
/* Give a remote op without a transfer to a worker thread, for its prepare() or verify(). */
void cfs_engine_hand_to_worker(engine *e, cfs_op *op, int job);
/* Whether an op whose caller gave up may be dropped now (the rule engine.h states). */
int cfs_engine_may_give_up(const cfs_op *op, int on_the_wire);
void cfs_engine_fail_cancelled(cfs_op *op);
/* Bumped by each cfs_engine_notice_cancel: lanes then look for ops to give up. */
unsigned cfs_engine_cancel_gen(void);

/* Whether the calling thread is one of the engine's worker threads. */
int cfs_engine_on_worker(void);

/* ---------- coding.c: content coding of bodies (worker threads) ---------- */

/* A PUT whose body is still to be encoded; encode it (0, or -1 with the op failed). */
int cfs_coding_needs_encode(const cfs_op *op);
int cfs_coding_encode(cfs_op *op);
/* A completed GET whose body is to be decoded; decode it (the op fails if it cannot). */
int cfs_coding_needs_decode(const cfs_op *op);
void cfs_coding_decode(cfs_op *op);
/* A remote GET that got a range of an encoded object: make it a whole-object read (the
 * range is cut after decoding). Returns 1 if it did, 0 if the op is fine as it is. */
int cfs_coding_refetch_whole(cfs_op *op);

/* ---------- admission.c ---------- */

/* Move admissible ops out of the limiter queues (under e->lock); returns the lanes given
 * ops (a bit per lane) for the caller to wake. */
unsigned cfs_admission_admit_locked(engine *e);
/* An op is done: a child goes back to its parent's lane; any other gives back its slot
 * and is handed to op->on_done (which may free it). */
void cfs_engine_complete(engine *e, cfs_op *op);

/* ---------- throttle.c: adaptive concurrency per host ---------- */

/* Count an op in the window of the host its request goes to (first request of the op;
 * takes e->lock). */
void cfs_throttle_attach(engine *e, cfs_op *op, const char *url);
/* Under e->lock: whether the limiter's host has room for another op; count an op just
 * admitted; uncount a completed one (a success widens the window). */
int cfs_throttle_has_room_locked(const cfs_limiter *l);
void cfs_throttle_admitted_locked(cfs_op *op);
void cfs_throttle_completed_locked(cfs_op *op);
/* A hedge for an op: count it in the op's host window unless that window (once pushed
 * back) is full. Returns 1 with *counted the window counted in (NULL: none; give it back
 * with cfs_throttle_hedge_end), or 0: no room, send no hedge. Both take e->lock. */
int cfs_throttle_hedge_begin(engine *e, cfs_op *op, cfs_host_window **counted);
void cfs_throttle_hedge_end(engine *e, cfs_host_window *h);
/* A 503 or 429: halve the op's host window (takes e->lock). */
void cfs_throttle_rejected(engine *e, cfs_op *op);
/* Window decreases so far, for stats (under e->lock). */
void cfs_throttle_stats_locked(engine *e, uint64_t *decreases);

/* ---------- lane.c ---------- */

/* A lane's epoll, eventfd and multi handle (0, or -1 with nothing open); closing them. */
int cfs_lane_open(engine *e, lane *ln, int index);
void cfs_lane_close(lane *ln);
/* The lane's thread (pthread_create's start routine, arg: the lane). */
void *cfs_lane_main(void *arg);
/* Wake a lane's thread; give an op to one of its inbound queues and wake it; have a lane
 * admit (a slot freed or ops submitted). */
void cfs_lane_wake(lane *ln);
void cfs_lane_hand(engine *e, lane *ln, op_queue *q, cfs_op *op);
void cfs_lane_wake_admission(engine *e);

/* ---------- transfer.c (on the lane's thread) ---------- */

/* Build and start an op's next request (the op completes on failure); a transfer ended;
 * park a failed one to retry; release one; give completed children to their parents. */
void cfs_transfer_start_request(lane *ln, cfs_op *op);
void cfs_transfer_done(lane *ln, CURL *easy, CURLcode rc);
void cfs_transfer_schedule_retry(lane *ln, transfer *t);
void cfs_transfer_free(lane *ln, transfer *t);
void cfs_transfer_hand_back_children(lane *ln, cfs_op *list);
/* After cfs_engine_release_parked: make this lane's parked ops due again. */
void cfs_transfer_release_parked(lane *ln);
/* A release happened (cfs_engine_release_parked): lanes then release their parked ops. */
void cfs_transfer_bump_park_gen(void);
/* Send the hedges that are due (reads still unanswered after their store's delay, while
 * its budget allows); lowers *timeout_ms to when the next is due. */
void cfs_transfer_start_hedges(lane *ln, long *timeout_ms);
/* The requests, retries and new connections counted so far (cfs_engine_get_stats). */
void cfs_transfer_counts(cfs_engine_stats *out);

/* Finish an op whose transfer (if any) is already released. */
static inline void finish_op(lane *ln, cfs_op *op)
{
    op->engine_priv = NULL;
    cfs_engine_complete(ln->e, op);
}

#endif
